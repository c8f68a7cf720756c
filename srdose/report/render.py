"""Rendering: Jinja templates (``srdose/templates``) to self-contained HTML, tables to CSV and XLSX."""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from srdose import __version__


@dataclass
class Table:
    """One report table: shown in the HTML (up to ``max_listed`` rows), written whole as CSV and
    as a sheet of the report's XLSX workbook."""

    name: str  # file and sheet name: letters, digits, underscores
    title: str
    columns: Sequence[str]
    rows: list
    note: str = ""
    numeric: Sequence[int] = field(default_factory=tuple)  # columns right-aligned in HTML
    digits: dict = field(default_factory=dict)  # column -> decimals in HTML (default 2)
    wrap: Sequence[int] = field(default_factory=tuple)  # long text columns, broken anywhere in HTML


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

    env = Environment(loader=PackageLoader("srdose", "templates"), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt
    return env


def render_html(template: str, path: Path, **context) -> Path:
    context.setdefault("generated", dt.datetime.now().strftime("%Y-%m-%d %H:%M"))
    context.setdefault("version", __version__)
    html = _env().get_template(template).render(**context)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path


def safe_name(text: str) -> str:
    """A file-name-safe form of a serial or label."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "unknown"


def write_csv(path: Path, columns: Sequence[str], rows, raw: bool = False) -> Path:
    """Rows as CSV; ``raw``: the values are already what to write (no NaN/numpy conversion)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        w.writerows(rows if raw else ([plain(v) for v in row] for row in rows))
    return path


def write_tables(prefix: Path, tables: Sequence[Table]) -> list[Path]:
    """``<prefix>_<table>.csv`` per table and ``<prefix>_tables.xlsx`` with a sheet per table."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    written = []
    for t in tables:
        written.append(write_csv(prefix.parent / f"{prefix.name}_{t.name}.csv", t.columns, t.rows))
    wb = Workbook(write_only=True)  # streamed: long listings stay fast
    bold = Font(bold=True)
    for t in tables:
        ws = wb.create_sheet(t.name[:31])
        for k, col in enumerate(t.columns, start=1):
            ws.column_dimensions[get_column_letter(k)].width = max(10, min(40, len(str(col)) + 2))
        header = []
        for col in t.columns:
            cell = WriteOnlyCell(ws, value=str(col))
            cell.font = bold
            header.append(cell)
        ws.append(header)
        for row in t.rows:
            ws.append([plain(v) for v in row])
    xlsx = prefix.parent / f"{prefix.name}_tables.xlsx"
    wb.save(xlsx)
    written.append(xlsx)
    return written


def html_table(t: Table, max_rows: Optional[int] = None, digits: int = 2) -> dict:
    """What the templates' table macro needs."""
    rows = t.rows if max_rows is None else t.rows[:max_rows]
    return {"title": t.title, "columns": list(t.columns), "note": t.note, "numeric": set(t.numeric), "wrap": set(t.wrap),
            "rows": [[fmt(v, t.digits.get(k, digits)) for k, v in enumerate(r)] for r in rows],
            "total": len(t.rows),
            "truncated": max_rows is not None and len(t.rows) > max_rows, "name": t.name}
