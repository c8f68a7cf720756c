"""Files of the physics: the one place :mod:`srdose.physics` reads or writes them.

The rest of the subpackage computes on numbers and text it is given. Tables
are CSV files with ``#`` comment lines (provenance, and ``# key: value``
metadata in a user factor set); the packaged ones live in
``srdose/physics/tables/`` and the public copy of the published tables in
``srdose/physics/data/dance_public_factors.json``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

#: The package whose data files these are.
PACKAGE = "srdose.physics"
#: The public copy of the published tables, inside the package.
PUBLIC_FACTORS = "data/dance_public_factors.json"

_META = re.compile(r"\s*#\s*([A-Za-z_]+)\s*:\s*(.*)$")


@dataclass(frozen=True)
class CommentedCSV:
    """A CSV table with ``#`` comment lines."""

    #: the comment lines in order, without the ``#`` and the one space after it
    comments: tuple[str, ...] = ()
    #: ``# key: value`` comment lines, keys in lower case, the first of a key kept
    meta: dict[str, str] = field(default_factory=dict)
    #: the data rows, by the header's column names
    rows: list[dict] = field(default_factory=list)


def parse_commented_csv(text: str) -> CommentedCSV:
    """The comments, metadata and rows of CSV text; blank lines are skipped."""
    comments: list[str] = []
    meta: dict[str, str] = {}
    lines = []
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("#"):
            comment = stripped[1:]
            comments.append(comment[1:] if comment.startswith(" ") else comment)
            m = _META.match(line)
            if m:
                meta.setdefault(m.group(1).lower(), m.group(2).strip())
            continue
        if line.strip():
            lines.append(line)
    return CommentedCSV(tuple(comments), meta, list(csv.DictReader(io.StringIO("\n".join(lines)))))


def read_commented_csv(path: Path) -> CommentedCSV:
    """:func:`parse_commented_csv` of a file (UTF-8, a byte-order mark allowed)."""
    return parse_commented_csv(Path(path).read_text(encoding="utf-8-sig"))


def file_bytes(path: Path | str) -> bytes | None:
    """The bytes of a file; None when ``path`` is not a file."""
    p = Path(path)
    return p.read_bytes() if p.is_file() else None


def package_bytes(relative: str) -> bytes | None:
    """A data file of the installed package (``tables/g_factors.csv``); None when it is not installed."""
    try:
        p = resources.files(PACKAGE).joinpath(relative)
        return p.read_bytes() if p.is_file() else None
    except (FileNotFoundError, ModuleNotFoundError):
        return None


def table_bytes(name: str, tables_dir: Path | None = None) -> bytes | None:
    """A Monte Carlo table of ``tables_dir``, else of the package; None when absent."""
    return file_bytes(Path(tables_dir) / name) if tables_dir is not None else package_bytes(f"tables/{name}")


def package_table(name: str) -> CommentedCSV:
    """A packaged Monte Carlo table (``g_factors.csv``, ...)."""
    data = package_bytes(f"tables/{name}")
    if data is None:
        raise FileNotFoundError(f"the packaged table srdose/physics/tables/{name} is not installed")
    return parse_commented_csv(data.decode("utf-8-sig"))


def public_factors_bytes(public_json: Path | None = None) -> bytes | None:
    """The public copy of the published tables: ``public_json``, else the packaged one (None: not installed)."""
    return Path(public_json).read_bytes() if public_json else package_bytes(PUBLIC_FACTORS)


def load_public_factors(public_json: Path | None = None) -> dict:
    """The ``factors`` of the public copy of the published tables (``public_json``, else the packaged one)."""
    raw = public_factors_bytes(public_json)
    if raw is None:
        raise FileNotFoundError(f"the published factors (srdose/physics/{PUBLIC_FACTORS}) are not installed")
    doc = json.loads(raw)
    return doc.get("factors", doc)


def write_tables(out_dir: Path, tables: dict[str, list[list]], header: Sequence[str]) -> list[Path]:
    """Write each table as CSV with '#' provenance lines and a ``# table: NAME`` line."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in tables.items():
        path = out_dir / name
        with path.open("w", newline="") as fh:
            for line in header:
                fh.write(f"# {line}\n")
            fh.write(f"# table: {name}\n")
            csv.writer(fh).writerows(rows)
        written.append(path)
    return written


def save_arrays(path: Path, **arrays: Iterable) -> Path:
    """Write named arrays to a compressed ``.npz`` (its folder created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # mypy matches a **dict[str, ...] against the keyword-only allow_pickle: bool as well
    np.savez_compressed(path, **{name: np.asarray(values) for name, values in arrays.items()})  # type: ignore[arg-type]
    return path


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """The named arrays of an ``.npz`` file."""
    with np.load(path) as d:
        return {name: d[name] for name in d.files}


def copy_file(source: Path, target: Path) -> Path:
    """Copy a file's bytes (its folder created)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(Path(source).read_bytes())
    return target
