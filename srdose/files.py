"""The files srdose writes: readable by their owner only, and CSV/XLSX cells no spreadsheet runs.

Every export, report table and research extract goes through these writers, so that a serial or a
station of ``=1+2`` stays text everywhere and nothing that carries pseudonyms or unit identities is
created readable by others.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from srdose.dates import parse_day, parse_iso_datetime


def private_dir(path: Path) -> Path:
    """Create a folder (and its parents) readable by the owner only; an existing one is left as it is."""
    path = Path(path)
    if not path.is_dir():
        for parent in reversed(path.parents):
            if not parent.exists():
                parent.mkdir(mode=0o700, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
    return path


#: Output formats of the tables srdose writes.
FORMATS = ("csv", "xlsx")

# A spreadsheet reads a cell starting with one of these as a formula (or, tab and CR, mangles it).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
# characters an XLSX (XML 1.0) cell cannot hold
_XLSX_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: Columns holding a calendar day (written as a date cell in XLSX).
DATE_COLUMNS = frozenset({"study_date", "study date"})
#: Columns holding a date and time (ISO text) written as a date-time cell in XLSX.
DATETIME_COLUMNS = frozenset({"event_datetime"})


def inert(value):
    """A cell value no spreadsheet runs: text starting with = + - @, tab or CR gets a leading
    apostrophe, so a serial or station of ``=1+2`` stays text. Numbers, and text that is just a
    number (``-0.5``), are left as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def xlsx_value(value):
    """A cell value openpyxl can store and no spreadsheet runs (control characters become '?')."""
    if isinstance(value, str):
        return inert(_XLSX_ILLEGAL.sub("?", value))
    return value


def as_date(value) -> dt.date | None:
    """A DICOM (YYYYMMDD) or ISO (YYYY-MM-DD) day as a date; None if it is not one."""
    return parse_day(value)


def as_datetime(value) -> dt.datetime | None:
    return parse_iso_datetime(value)


@contextmanager
def private_file(path: Path, mode: str = "w", **kwargs):
    """Open a file for writing, created (or made) readable by the owner only: exports and reports
    carry pseudonyms and unit identities."""
    path = Path(path)
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except OSError:  # someone else's file we may write: its mode is theirs
        pass
    with os.fdopen(fd, mode, **kwargs) as fh:
        yield fh


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        # 34.300000000000004 (a sum of µAs/1000) is written 34.3
        return repr(round(value, 6))
    return inert(value)


def csv_text(rows: Iterable[tuple], columns: Sequence[str], rows_per_chunk: int = 2000) -> Iterator[str]:
    """The CSV of ``rows`` under a header of ``columns``, in pieces of ``rows_per_chunk`` rows (a
    download is sent as it is read)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    n = 0
    for row in rows:
        writer.writerow([_cell(v) for v in row])
        n += 1
        if n % rows_per_chunk == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def write_csv(rows: Iterable[tuple], out: Path, columns: Sequence[str]) -> int:
    """Write rows to ``out``; returns the number of rows."""
    counted = _Counted(rows)
    with private_file(out, "w", newline="", encoding="utf-8") as fh:
        for text in csv_text(counted, columns):
            fh.write(text)
    return counted.n


class _Counted:
    """An iterable that counts what it gives."""

    def __init__(self, rows: Iterable[tuple]):
        self.rows, self.n = rows, 0

    def __iter__(self) -> Iterator[tuple]:
        for row in self.rows:
            self.n += 1
            yield row


def xlsx_sheet(wb, name: str, columns: Sequence[str], widths: Sequence[int] | None = None):
    """A streamed sheet whose first row is a bold header, frozen, with filters (see :func:`close_sheet`).
    Returns (sheet, converter): the converter turns a row into cells (dates as dates, text inert)."""
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    ws = wb.create_sheet(name[:31])
    for k, col in enumerate(columns, start=1):
        width = widths[k - 1] if widths else max(10, min(40, len(str(col)) + 2))
        ws.column_dimensions[get_column_letter(k)].width = width
    ws.freeze_panes = "A2"  # written before the rows: the header stays in view
    bold = Font(bold=True)
    header = []
    for col in columns:
        cell = WriteOnlyCell(ws, value=xlsx_value(str(col)))
        cell.font = bold
        header.append(cell)
    ws.append(header)
    names = [str(c).lower() for c in columns]
    dates = [k for k, c in enumerate(names) if c in DATE_COLUMNS]
    times = [k for k, c in enumerate(names) if c in DATETIME_COLUMNS]

    def convert(row, plain=lambda v: v):
        cells = [xlsx_value(plain(v)) for v in row]
        for k in dates:
            day = as_date(row[k])
            if day is not None:
                cells[k] = day
        for k in times:
            when = as_datetime(row[k])
            if when is not None:
                cells[k] = when
        return cells

    return ws, convert


def close_sheet(ws, n_columns: int, n_rows: int) -> None:
    """Filters on the header row over every written row."""
    from openpyxl.utils import get_column_letter

    if n_columns:
        ws.auto_filter.ref = f"A1:{get_column_letter(n_columns)}{n_rows + 1}"


def save_workbook(wb, out: Path) -> Path:
    with private_file(out, "wb") as fh:
        wb.save(fh)
    return Path(out)


def write_xlsx(rows: Iterable[tuple], out: Path, columns: Sequence[str], sheet: str = "events") -> int:
    """Write rows to an XLSX workbook (streaming, so large exports fit in memory)."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws, convert = xlsx_sheet(wb, sheet, list(columns))
    n = 0
    for row in rows:
        ws.append(convert(row, lambda v: round(v, 6) if isinstance(v, float) else v))
        n += 1
    close_sheet(ws, len(columns), n)
    save_workbook(wb, out)
    return n
