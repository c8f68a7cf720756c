"""National data opt-out.

``srdose optout import FILE`` reads a list of patient IDs (one per line; in a
CSV the first column; blank lines and ``#`` comments skipped), hashes each
with the site key exactly as ingest does (:meth:`Pseudonymiser.patient`, so
they match ``studies.patient_pseudonym``) and stores the hashes only. An ID
written with spaces or dashes (``943 476 5919``) is also matched in its
compact form. ``--replace`` makes the file the whole list (the national
service sends complete lists; a patient who opts back in drops out of it).

Opted-out patients are left out of every research export and research
report made afterwards; clinical audit reports follow
``[governance] optout_clinical_audit`` (include | exclude).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

from srdose.pseudonym import Pseudonymiser
from srdose.store.governance import add_optouts

_SEPARATORS = re.compile(r"[\s-]+")


def read_ids(path: Path) -> Iterator[str]:
    """Patient IDs in a list file (never logged or stored)."""
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        for line in fh:
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            first = text.split(",", 1)[0].strip().strip('"').strip()
            if first:
                yield first


def pseudonyms_of(ids, pseudonymiser) -> set[str]:
    out = set()
    for pid in ids:
        for variant in {pid, _SEPARATORS.sub("", pid)}:
            p = pseudonymiser.patient(variant)
            if p:
                out.add(p)
    return out


def import_file(store, path: Path, pseudonymiser: Pseudonymiser, replace: bool = False) -> dict:
    """Hash and store the IDs of ``path``; returns counts (``ids`` read, ``added``, ...)."""
    path = Path(path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    ids = list(read_ids(path))
    counts = add_optouts(store, pseudonyms_of(ids, pseudonymiser), sha, replace=replace)
    counts["ids"] = len(set(ids))
    counts["sha256"] = sha
    return counts


def excluded_from(purpose: str, settings) -> bool:
    """Whether opted-out patients are left out of a report for ``purpose``
    (``research`` always; ``clinical_audit`` as configured)."""
    if purpose == "research":
        return True
    return str(settings.governance.optout_clinical_audit).lower() == "exclude"
