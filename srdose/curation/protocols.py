"""Protocol names: free text from the units to a small standard set.

The mapping is a CSV (``match,standard``; ``match`` a case-insensitive regular
expression searched in the name, first match wins), packaged as
``protocols.csv`` and overridable with ``[curation] protocol_map``. It is
applied at report time, so editing it changes every later report without
touching the database. ``srdose protocols`` shows the names in the database
and what they map to.

The caller passes the mapping (or its path, ``[curation] protocol_map`` of its
settings): this module never looks the settings up.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

PACKAGED = Path(__file__).with_name("protocols.csv")
OTHER, UNKNOWN = "other", "unknown"
#: A loaded mapping: (pattern, standard name) rows, first match wins.
ProtocolMap = tuple[tuple[re.Pattern, str], ...]


class ProtocolMapError(ValueError):
    pass


def parse_mapping(text: str, source: str = "protocol map") -> ProtocolMap:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    if not reader.fieldnames or {"match", "standard"} - set(reader.fieldnames):
        raise ProtocolMapError(f"{source}: needs the columns match,standard")
    out = []
    for n, row in enumerate(reader, start=2):
        pattern, standard = (row.get("match") or "").strip(), (row.get("standard") or "").strip()
        if not pattern or not standard:
            continue
        try:
            out.append((re.compile(pattern, re.IGNORECASE), standard))
        except re.error as exc:
            raise ProtocolMapError(f"{source} row {n}: {pattern!r} is not a valid regular expression: {exc}") from None
    return tuple(out)


@lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> ProtocolMap:
    return parse_mapping(Path(path).read_text(encoding="utf-8"), path)


def load_mapping(path: str | Path | None = None) -> ProtocolMap:
    """The mapping of ``path``, else the packaged one."""
    p = Path(path).expanduser() if path else PACKAGED
    if not p.is_file():
        raise ProtocolMapError(f"protocol map {p} does not exist")
    return _load(str(p), p.stat().st_mtime)


def standard_protocol(name: str | None, mapping: ProtocolMap | None = None) -> str:
    """The standard protocol of a free-text protocol name.

    ``mapping`` is what :func:`load_mapping` returns; None: the packaged one
    (for many names use :func:`protocol_mapper`). Names no row matches are
    ``"other"``, empty names ``"unknown"``.
    """
    if name is None or not str(name).strip():
        return UNKNOWN
    rows = mapping if mapping is not None else load_mapping()
    text = str(name)
    for rx, standard in rows:
        if rx.search(text):
            return standard
    return OTHER


def protocol_mapper(path: str | Path | None = None) -> Callable[[str | None], str]:
    """A function name -> standard protocol with the mapping of ``path`` (``[curation]
    protocol_map``; None: the packaged one) loaded once and memoised per name: for code
    mapping many events."""
    rows = load_mapping(path)
    return lru_cache(maxsize=4096)(lambda name: standard_protocol(name, rows))
