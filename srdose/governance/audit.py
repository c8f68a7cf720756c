"""The audit trail: who (the OS user), when, what, with which parameters, how many rows.

Every export, report, re-identification, purge and opt-out import is
appended with :func:`record`; ``srdose audit`` lists it. Parameters must not
hold identifiers: callers pass pseudonyms, paths and counts only.
"""

from __future__ import annotations

import getpass
import os

from srdose.store.governance import record_audit


def who() -> str:
    """The OS user running srdose."""
    try:
        return getpass.getuser()
    except Exception:  # no login name (some containers)
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def record(
    store, action: str, parameters: dict | None = None, rows: int | None = None, detail: dict | None = None
) -> int:
    """Append one entry (``action`` like ``export.research``, ``report``, ``reidentify``,
    ``purge``); returns its id."""
    return record_audit(store, action, who(), parameters, rows, detail)
