"""Export: the events table as CSV or XLSX (a column contract other tools rely on).

One row per irradiation event, columns in :data:`EVENT_EXPORT_COLUMNS` order,
values in canonical units, empty where unknown. Only pseudonyms leave the
database: no patient name, ID, birth date or accession number is exported.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from srdose.files import FORMATS, write_csv, write_xlsx
from srdose.store.database import EVENT_EXPORT_COLUMNS, iter_event_rows


def export_events(store, out: Path, fmt: str | None = None, serials: Sequence[str] | None = None, **filters) -> int:
    """Export the events table; the format follows ``fmt`` or the file suffix. ``serials``: only
    the events of these units."""
    out = Path(out)
    fmt = (fmt or out.suffix.lstrip(".") or "csv").lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: use csv or xlsx")
    if serials and len(serials) == 1:
        filters["serial"] = serials[0]
    rows = iter_event_rows(store, **filters)
    if serials and len(serials) > 1:
        k = EVENT_EXPORT_COLUMNS.index("device_serial")
        wanted = set(serials)
        rows = (r for r in rows if r[k] in wanted)
    if fmt == "csv":
        return write_csv(rows, out, EVENT_EXPORT_COLUMNS)
    return write_xlsx(rows, out, EVENT_EXPORT_COLUMNS)
