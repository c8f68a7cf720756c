"""Rendering: Jinja templates (``srdose/templates``) to self-contained HTML, tables to CSV and XLSX."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srdose import __version__
from srdose.files import close_sheet, inert, private_file, save_workbook, xlsx_sheet


@dataclass(frozen=True)
class Column:
    """One column of a report table and how the HTML shows it (CSV and XLSX take the values as they are)."""

    name: str
    numeric: bool = False  # right-aligned in HTML
    digits: int = 2  # decimals of a number in HTML
    wrap: bool = False  # long text, broken anywhere in HTML


def text_columns(*names: str, wrap: bool = False) -> list[Column]:
    return [Column(n, wrap=wrap) for n in names]


def number_columns(*names: str, digits: int = 2) -> list[Column]:
    return [Column(n, numeric=True, digits=digits) for n in names]


@dataclass
class Table:
    """One report table: shown in the HTML (up to ``max_listed`` rows), written whole as CSV and
    as a sheet of the report's XLSX workbook. A column given by its name alone is plain text."""

    name: str  # file and sheet name: letters, digits, underscores
    title: str
    columns: Sequence[Column | str]
    rows: list
    note: str = ""

    def __post_init__(self) -> None:
        self.columns = self.specs

    @property
    def specs(self) -> list[Column]:
        """The columns, each a :class:`Column` (as ``__post_init__`` has made them)."""
        return [c if isinstance(c, Column) else Column(str(c)) for c in self.columns]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.specs]


def fmt(value: Any, digits: int = 2) -> str:
    """A number for a table: fixed decimals, '' for None/NaN; other values as text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:,.{digits}f}"
    try:
        import numpy as np

        if isinstance(value, np.integer):
            return f"{int(value):,}"
        if isinstance(value, np.floating):
            return fmt(float(value), digits)
    except ImportError:  # pragma: no cover
        pass
    return str(value)


def plain(value: Any) -> Any:
    """A cell value for CSV/XLSX: numbers as numbers, NaN as empty."""
    try:
        import numpy as np

        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.floating):
            value = float(value)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return float(f"{value:.6g}")
    return value


def _env():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("srdose", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = fmt
    return env


def render_html(template: str, path: Path, **context) -> Path:
    context.setdefault("generated", dt.datetime.now().strftime("%Y-%m-%d %H:%M"))
    context.setdefault("version", __version__)
    html = _env().get_template(template).render(**context)
    with private_file(path, "w", encoding="utf-8") as fh:
        fh.write(html)
    return path


#: Longest file-name part made from data: a whole report file name stays far below the 255 bytes
#: file systems allow.
SAFE_NAME_MAX = 48


def safe_name(text: str) -> str:
    """A file-name-safe form of a serial or label: letters, digits, '.', '_' and '-', at most
    :data:`SAFE_NAME_MAX` characters. Where that changed the text, a short hash of the original
    follows, so that two units never share a file name."""
    original = str(text)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", original).strip("_.") or "unknown"
    if name == original and len(name) <= SAFE_NAME_MAX:
        return name
    digest = hashlib.sha256(original.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{name[: SAFE_NAME_MAX - 9].rstrip('_.')}-{digest}"


def write_csv(path: Path, columns: Sequence[str], rows, raw: bool = False) -> Path:
    """Rows as CSV; ``raw``: the values are already what to write (no NaN/numpy conversion).
    Text a spreadsheet would run as a formula is made inert either way."""
    with private_file(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([inert(str(c)) for c in columns])
        convert = (lambda v: inert(v)) if raw else (lambda v: inert(plain(v)))
        w.writerows([convert(v) for v in row] for row in rows)
    return path


def write_tables(prefix: Path, tables: Sequence[Table]) -> list[Path]:
    """``<prefix>_<table>.csv`` per table and ``<prefix>_tables.xlsx`` with a sheet per table
    (header row frozen and with filters, dates as dates)."""
    from openpyxl import Workbook

    written = []
    for t in tables:
        written.append(write_csv(prefix.parent / f"{prefix.name}_{t.name}.csv", t.names, t.rows))
    wb = Workbook(write_only=True)  # streamed: long listings stay fast
    for t in tables:
        ws, convert = xlsx_sheet(wb, t.name, t.names)
        for row in t.rows:
            ws.append(convert(row, plain))
        close_sheet(ws, len(t.columns), len(t.rows))
    written.append(save_workbook(wb, prefix.parent / f"{prefix.name}_tables.xlsx"))
    return written


def html_table(t: Table, max_rows: int | None = None) -> dict:
    """What the templates' table macro needs."""
    rows = t.rows if max_rows is None else t.rows[:max_rows]
    digits = [c.digits for c in t.specs]
    return {
        "title": t.title,
        "columns": t.names,
        "note": t.note,
        "numeric": {k for k, c in enumerate(t.specs) if c.numeric},
        "wrap": {k for k, c in enumerate(t.specs) if c.wrap},
        "rows": [[fmt(v, digits[k]) for k, v in enumerate(r)] for r in rows],
        "total": len(t.rows),
        "truncated": max_rows is not None and len(t.rows) > max_rows,
        "name": t.name,
    }


def html_tables(tables: Sequence[Table], max_listed: int) -> dict[str, dict]:
    """The template context of a report's tables, by table name."""
    return {t.name: html_table(t, max_listed) for t in tables}
