"""The physics file: one unit's QA measurements (tube output and HVL), dated.

A CSV a physicist can write in a text editor or a spreadsheet. Lines
starting with ``#`` are comments. First ``key,value`` rows describe the
unit and the geometry, then a header row starting with ``target`` opens
the measurement table (template: ``sample_data/physics/physics_template.csv``)::

    manufacturer,"HOLOGIC, Inc."
    model,Selenia Dimensions
    serial,SDM9876543
    valid_from,2024-01-15
    valid_to,
    fdd_mm,700
    support_gap_mm,25
    d_ref_mm,600
    measured_by,J. Physicist
    notes,annual QA
    target,filter,filter_mm,kv,output_ugy_per_mas,hvl_mm_al
    W,Rh,0.05,25,28.1,0.474
    ...

Keys
----
``serial`` (required) identifies the unit with ``manufacturer`` (optional:
when given it must match the unit's, case-insensitively). ``valid_from``
(required) and ``valid_to`` (optional, inclusive) are dates (YYYY-MM-DD or
YYYYMMDD): an event uses the set valid on its study date, the latest
``valid_from`` winning. ``fdd_mm`` is the focus-to-detector distance,
``support_gap_mm`` the breast-support-to-detector distance and ``d_ref_mm``
the focus distance at which the output was measured (all mm).

Table
-----
``target``, ``filter`` (element symbols), ``filter_mm`` (optional),
``kv``, ``output_ugy_per_mas`` (air kerma per mAs at ``d_ref_mm``, free in
air, no backscatter, µGy/mAs) and ``hvl_mm_al`` (mm Al). At least one row
per target/filter; several kV per target/filter for a fit.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from srdose.dates import parse_day

#: Plausible ranges: a value outside is a typing error, refused with its row.
RANGES = {
    "kv": (15.0, 50.0),
    "output_ugy_per_mas": (0.5, 1000.0),
    "hvl_mm_al": (0.1, 1.5),
    "filter_mm": (0.0, 3.0),
    "fdd_mm": (400.0, 1200.0),
    "support_gap_mm": (0.0, 100.0),
    "d_ref_mm": (100.0, 1200.0),
}

ELEMENTS = {"MO": "Mo", "RH": "Rh", "W": "W", "AG": "Ag", "AL": "Al", "CU": "Cu", "SN": "Sn", "TI": "Ti"}


class PhysicsFileError(ValueError):
    """The physics file cannot be used; the message says where and why."""


@dataclass
class PhysicsPoint:
    target: str
    filter: str
    filter_mm: float | None
    kv: float
    output_ugy_per_mas: float
    hvl_mm_al: float


@dataclass
class PhysicsFile:
    manufacturer: str
    model: str
    serial: str
    valid_from: str  # YYYYMMDD
    valid_to: str | None
    fdd_mm: float
    support_gap_mm: float
    d_ref_mm: float
    measured_by: str | None = None
    notes: str | None = None
    points: list[PhysicsPoint] = field(default_factory=list)
    sha256: str = ""
    source_file: str | None = None

    def beams(self) -> dict[tuple, list[PhysicsPoint]]:
        """Points grouped by (target, filter, filter_mm)."""
        out: dict[tuple, list] = {}
        for p in self.points:
            out.setdefault((p.target, p.filter, p.filter_mm), []).append(p)
        return out


def _date(text: str, what: str) -> str:
    day = parse_day(text.strip())
    if day is not None:
        return day.strftime("%Y%m%d")
    raise PhysicsFileError(f"{what} {text!r} is not a date (YYYY-MM-DD)")


def _number(text: str, what: str, where: str) -> float:
    try:
        value = float(text.strip())
    except (ValueError, AttributeError):
        raise PhysicsFileError(f"{where}: {what} {text!r} is not a number") from None
    lo, hi = RANGES.get(what, (float("-inf"), float("inf")))
    if not lo <= value <= hi:
        raise PhysicsFileError(f"{where}: {what} = {value:g} is outside {lo:g}-{hi:g}")
    return value


def _element(text: str, what: str, where: str) -> str:
    e = ELEMENTS.get((text or "").strip().upper())
    if e is None:
        raise PhysicsFileError(
            f"{where}: {what} {text!r} is not an element symbol ({', '.join(sorted(set(ELEMENTS.values())))})"
        )
    return e


def parse(source) -> PhysicsFile:
    """Parse a physics file from a path or its text."""
    if isinstance(source, (str, Path)) and "\n" not in str(source):
        path = Path(source)
        if not path.is_file():
            raise PhysicsFileError(f"{path} does not exist")
        raw = path.read_bytes()
        name = str(path)
    else:
        raw = str(source).encode("utf-8")
        name = "physics file"
    text = raw.decode("utf-8-sig")
    meta: dict[str, str] = {}
    header: list[str] | None = None
    points: list[PhysicsPoint] = []
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        where = f"{name}: line {lineno}"
        cells = [c.strip() for c in row]
        if header is None:
            if cells[0].lower() == "target":
                header = [c.lower() for c in cells]
                need = {"target", "filter", "kv", "output_ugy_per_mas", "hvl_mm_al"}
                if not need <= set(header):
                    raise PhysicsFileError(f"{where}: the table header needs {', '.join(sorted(need))}")
                continue
            key = re.sub(r"\W+", "_", cells[0].lower()).strip("_")
            meta[key] = ",".join(c for c in cells[1:] if c) if len(cells) > 1 else ""
            continue
        rec = dict(zip(header, cells))
        mm = rec.get("filter_mm", "")
        points.append(
            PhysicsPoint(
                target=_element(rec.get("target", ""), "target", where),
                filter=_element(rec.get("filter", ""), "filter", where),
                filter_mm=_number(mm, "filter_mm", where) if mm else None,
                kv=_number(rec.get("kv", ""), "kv", where),
                output_ugy_per_mas=_number(rec.get("output_ugy_per_mas", ""), "output_ugy_per_mas", where),
                hvl_mm_al=_number(rec.get("hvl_mm_al", ""), "hvl_mm_al", where),
            )
        )
    for key in ("serial", "valid_from", "fdd_mm", "support_gap_mm", "d_ref_mm"):
        if not meta.get(key):
            raise PhysicsFileError(f"{name}: '{key}' is required (a '{key},VALUE' row before the table)")
    if not points:
        raise PhysicsFileError(
            f"{name}: no measurement rows (a 'target,filter,kv,output_ugy_per_mas,hvl_mm_al' header followed by rows)"
        )
    pf = PhysicsFile(
        manufacturer=meta.get("manufacturer", ""),
        model=meta.get("model", ""),
        serial=meta["serial"],
        valid_from=_date(meta["valid_from"], "valid_from"),
        valid_to=_date(meta["valid_to"], "valid_to") if meta.get("valid_to") else None,
        fdd_mm=_number(meta["fdd_mm"], "fdd_mm", name),
        support_gap_mm=_number(meta["support_gap_mm"], "support_gap_mm", name),
        d_ref_mm=_number(meta["d_ref_mm"], "d_ref_mm", name),
        measured_by=meta.get("measured_by") or None,
        notes=meta.get("notes") or None,
        points=points,
        sha256=hashlib.sha256(raw).hexdigest(),
        source_file=name if name != "physics file" else None,
    )
    if pf.valid_to and pf.valid_to < pf.valid_from:
        raise PhysicsFileError(f"{name}: valid_to {pf.valid_to} is before valid_from {pf.valid_from}")
    if pf.fdd_mm - pf.support_gap_mm < 300:
        raise PhysicsFileError(
            f"{name}: fdd_mm - support_gap_mm leaves {pf.fdd_mm - pf.support_gap_mm:g} mm: check the geometry"
        )
    seen = set()
    for p in points:
        k = (p.target, p.filter, p.filter_mm, p.kv)
        if k in seen:
            raise PhysicsFileError(f"{name}: {p.target}/{p.filter} at {p.kv:g} kV is given twice")
        seen.add(k)
    return pf
