"""Export: the events table as CSV or XLSX (the column contract of issue #3).

One row per irradiation event, columns in :data:`EVENT_EXPORT_COLUMNS` order,
values in canonical units, empty where unknown. Only pseudonyms leave the
database: no patient name, ID, birth date or accession number is exported.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Optional

from srdose.store.database import EVENT_EXPORT_COLUMNS, iter_event_rows


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        # 34.300000000000004 (a sum of µAs/1000) is written 34.3
        return repr(round(value, 6))
    return value


def write_csv(rows: Iterable[tuple], out: Path, columns=EVENT_EXPORT_COLUMNS) -> int:
    """Write rows to ``out``; returns the number of rows."""
    n = 0
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(v) for v in row])
            n += 1
    return n


def write_xlsx(rows: Iterable[tuple], out: Path, columns=EVENT_EXPORT_COLUMNS,
               sheet: str = "events") -> int:
    """Write rows to an XLSX workbook (streaming, so large exports fit in memory)."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet)
    ws.append(list(columns))
    n = 0
    for row in rows:
        ws.append([None if v is None else (round(v, 6) if isinstance(v, float) else v) for v in row])
        n += 1
    wb.save(out)
    return n


def export_events(store, out: Path, fmt: Optional[str] = None, **filters) -> int:
    """Export the events table; the format follows ``fmt`` or the file suffix."""
    out = Path(out)
    fmt = (fmt or out.suffix.lstrip(".") or "csv").lower()
    rows = iter_event_rows(store, **filters)
    if fmt == "csv":
        return write_csv(rows, out)
    if fmt == "xlsx":
        return write_xlsx(rows, out)
    raise ValueError(f"unknown export format {fmt!r}: use csv or xlsx")
