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
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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


# --- CSV from columns -------------------------------------------------------------------------
#
# Ten million rows through csv.writer and a Python call per cell take minutes. These build the same
# bytes a column at a time in Arrow's C: numbers formatted exactly as Python would, and only the
# rare text that must be made inert or quoted handled in Python.

#: Largest |x|·10^digits formatted in C: integers below it are exact in a double, and a decimal
#: of at most 15 significant digits round-trips, so its shortest repr is its digits.
_FIXED_LIMIT = 1e15


def decimal_text(values: np.ndarray, digits: int, short: bool = False) -> pa.Array:
    """``values`` as text, NaN as NULL: ``repr(round(x, digits))`` (``28.0``, ``34.3``), or with
    ``short`` ``f"{x:.{digits}f}"`` without its trailing zeros and point (``28``, ``34.3``; a
    negative zero is ``0``). Exactly Python's text for every value: the few a double cannot
    settle (a product within an ulp of a half, beyond 10^15, or a repr Python writes with an
    exponent) are formatted by Python itself."""
    x = np.asarray(values, dtype=float)
    scale = 10.0**digits
    p = x * scale
    n = np.rint(p)
    ap = np.abs(p)
    with np.errstate(invalid="ignore"):
        # rint(p) is the correctly rounded x·10^digits unless p's own rounding error (half an
        # ulp) could have carried it across a half
        settled = (ap < _FIXED_LIMIT) & (np.abs(0.5 - np.abs(p - n)) > 2 * np.spacing(ap))
        if not short:
            # repr writes 0 < |y| < 1e-4 with an exponent (1e-05)
            settled &= (n == 0) | (np.abs(n) >= 10.0 ** (digits - 4))
    nan = np.isnan(x)
    settled &= ~nan
    whole = np.where(settled, np.abs(n), 0).astype(np.int64)
    int_part = pc.cast(pa.array(whole // int(scale)), pa.string())
    frac = pc.cast(pa.array(whole % int(scale)), pa.string())
    frac = pc.utf8_rtrim(pc.utf8_lpad(frac, width=digits, padding="0"), characters="0")
    no_frac = pc.equal(pc.binary_length(frac), 0)
    joined = pc.binary_join_element_wise(int_part, frac, ".")
    text = pc.if_else(
        no_frac, pc.binary_join_element_wise(int_part, pa.scalar("0"), ".") if not short else int_part, joined
    )
    negative = np.signbit(n) & settled
    if short:
        negative &= whole != 0
    if negative.any():
        text = pc.if_else(pa.array(negative), pc.binary_join_element_wise(pa.scalar("-"), text, ""), text)
    if nan.any():
        text = pc.if_else(pa.array(nan), pa.scalar(None, pa.string()), text)
    odd = np.flatnonzero(~settled & ~nan)
    if odd.size:
        if short:
            python = [_short(float(v), digits) for v in x[odd]]
        else:
            python = [repr(round(float(v), digits)) for v in x[odd]]
        mask = np.zeros(x.size, dtype=bool)
        mask[odd] = True
        text = pc.replace_with_mask(text, pa.array(mask), pa.array(python, pa.string()))
    return text


def _short(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


# text :func:`inert` might change (its first character) or CSV must quote (RE2 syntax)
_ODD_TEXT = r'^[=+\-@\t\r]|[,"\r\n]'


def _csv_field(text: str) -> str:
    """One field as :func:`csv.writer` writes it (quoted when it holds a comma, a quote or a line
    break)."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def text_cells(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column as the cells of CSV, NULL as empty: numbers as :func:`_cell` writes them, text
    made inert and quoted."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if pa.types.is_floating(kind):
        return pc.fill_null(decimal_text(column.to_numpy(zero_copy_only=False), 6), "")
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        if pa.types.is_boolean(kind):
            column = pc.if_else(column, "True", "False")
        return pc.fill_null(pc.cast(column, pa.string()), "")
    if pa.types.is_null(kind):
        return pa.array([""] * len(column), pa.string())
    text = pc.cast(column, pa.string())
    # only text a spreadsheet would run or CSV must quote needs Python: rare, and done one by one
    odd = pc.fill_null(pc.match_substring_regex(text, _ODD_TEXT), False)
    if pc.any(odd).as_py():
        values = pc.filter(text, odd).to_pylist()
        text = pc.replace_with_mask(text, odd, pa.array([_csv_field(inert(v)) for v in values], pa.string()))
    return pc.fill_null(text, "")


def csv_bytes(cells: Sequence[pa.Array]) -> bytes:
    """The CSV lines (``\\r\\n`` ended, as :func:`csv.writer`) of columns of cells already
    quoted (:func:`text_cells`)."""
    if not cells or len(cells[0]) == 0:
        return b""
    *first, last = cells
    lines = pc.binary_join_element_wise(*first, pc.binary_join_element_wise(last, pa.scalar(""), "\r\n"), ",")
    _, offsets, data = lines.buffers()
    first, end = np.frombuffer(offsets, dtype=np.int32)[[lines.offset, lines.offset + len(lines)]]
    return data.slice(int(first), int(end - first)).to_pybytes()


def _table_csv(piece: Callable[[], pa.Table]) -> tuple[bytes, int]:
    table = piece()
    return csv_bytes([text_cells(c) for c in table.columns]), table.num_rows


def write_csv_tables(pieces: Iterable[Callable[[], pa.Table]], out: Path, columns: Sequence[str]) -> int:
    """Arrow tables (their columns in ``columns`` order), each given as a function that returns
    it, as one CSV under a header of ``columns``: the same bytes :func:`write_csv` writes of their
    rows. Returns the number of rows.

    A thread makes and formats each table while the next piece is read: Arrow's functions let go
    of the GIL, so reading (the driver, in Python) and formatting run on two cores."""
    n = 0
    pending: deque[Future] = deque()

    def write_first() -> None:
        nonlocal n
        text, rows = pending.popleft().result()
        fh.write(text)
        n += rows

    with private_file(out, "wb") as fh, ThreadPoolExecutor(1) as pool:
        fh.write(",".join(_csv_field(inert(str(c))) for c in columns).encode() + b"\r\n")
        for piece in pieces:
            pending.append(pool.submit(_table_csv, piece))
            while len(pending) > 2:  # a few pieces in hand at most
                write_first()
        while pending:
            write_first()
    return n


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


#: Rows of a worksheet, its header included (Excel's specifications and limits: 1,048,576 rows
#: by 16,384 columns). A workbook with more rows in a sheet is one Excel refuses to open.
XLSX_MAX_ROWS = 1_048_576


def write_xlsx(
    rows: Iterable[tuple], out: Path, columns: Sequence[str], sheet: str = "events", max_rows: int = XLSX_MAX_ROWS
) -> int:
    """Write rows to an XLSX workbook (streaming, so large exports fit in memory). Rows beyond
    what a sheet holds (``max_rows``, the header included) go on in sheets named
    "``sheet`` (2)", "``sheet`` (3)", ..., each with the header. Returns how many rows."""
    from openpyxl import Workbook

    if max_rows < 2:
        raise ValueError(f"a sheet holds the header and at least one row, not {max_rows} rows")
    wb = Workbook(write_only=True)
    per_sheet = max_rows - 1
    ws, convert = xlsx_sheet(wb, sheet, list(columns))
    n = in_sheet = 0
    for row in rows:
        if in_sheet == per_sheet:
            close_sheet(ws, len(columns), in_sheet)
            ws, convert = xlsx_sheet(wb, f"{sheet[:24]} ({n // per_sheet + 1})", list(columns))
            in_sheet = 0
        ws.append(convert(row, lambda v: round(v, 6) if isinstance(v, float) else v))
        n += 1
        in_sheet += 1
    close_sheet(ws, len(columns), in_sheet)
    save_workbook(wb, out)
    return n
