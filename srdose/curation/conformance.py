"""Each unit's dose reports against the templates and the standard, and a verdict on whether its
data can enter a national survey (``srdose conformance``).

Two sources, both per unit:

* the database: every live event's flags, as the parser and the recalculation set them (a value
  written as 0, a value with an empty measured value or in a unit srdose cannot read, a view or
  material code it does not know, a DBT sweep's mAs reported for one projection...), counted with
  the first and last study date they were seen on;
* a sample of the unit's objects themselves (files or folders given), read through highdicom as
  ``srdose inspect`` reads them: codes in the wrong place (:data:`srdose.codes.VENDOR_DEVIATIONS`),
  legacy and private coding schemes, units that are not UCUM, empty measured values, items
  highdicom refuses, and objects srdose would refuse.

The verdict is srdose's rule, not the standard's. *fail*: some events lack a value the survey
needs (:data:`SURVEY_NEEDS`) because of how they were encoded (missing, unreadable unit, unknown
code, empty or impossible value), or a sampled object is refused; *pass with quirks*: every event
is usable but deviations were found (including values written as 0, which the device means as
"not measured"); *pass*: nothing found.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from srdose.parse.inspect import Inspection, inspect_path
from srdose.store import curation as Q

PASS, QUIRKS, FAIL = "pass", "pass with quirks", "fail"

#: What every event needs for the national survey and for srdose's recalculated MGD.
SURVEY_NEEDS = frozenset(
    {"agd_mgy", "kvp", "mas", "compressed_thickness_mm", "anode", "filter_material", "view", "laterality"}
)


@dataclass
class Finding:
    """One kind of deviation of one unit: how often, over which study dates, from where."""

    rule: str  # e.g. "missing:compressed_thickness_mm", "vendor_code:DCM:113632"
    what: str  # plain words
    fails: bool  # events it touches cannot enter the survey
    source: str  # "database" (every event) or "sample" (objects read with highdicom)
    count: int = 0
    first: str | None = None  # study date, YYYYMMDD
    last: str | None = None

    def seen(self, day: str | None, n: int = 1) -> None:
        self.count += n
        if day:
            self.first = min(self.first or day, day)
            self.last = max(self.last or day, day)


@dataclass
class UnitConformance:
    serial: str
    manufacturer: str
    model: str
    events: int = 0
    first: str | None = None
    last: str | None = None
    sampled: int = 0  # objects of the sample read
    findings: dict[str, Finding] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        if any(f.fails and f.count for f in self.findings.values()):
            return FAIL
        return QUIRKS if self.findings else PASS

    def finding(self, rule: str, what: str, fails: bool, source: str) -> Finding:
        key = f"{source}:{rule}"
        if key not in self.findings:
            self.findings[key] = Finding(rule, what, fails, source)
        return self.findings[key]


def classify_flag(flag: str) -> tuple[str, str, bool] | None:
    """(rule, plain words, fails) for a flag that says how a report was encoded; None for flags
    of other matters (physics, curation, the recalculation's own assumptions)."""
    kind, _, rest = flag.partition(":")
    name = rest.split(":", 1)[0]
    needed = name in SURVEY_NEEDS
    if kind == "zero":
        return flag, f"{name} written as 0 (the device's 'not measured'; not kept)", False
    if kind == "absurd":
        return flag, f"{name} outside what is physically possible (not kept)", needed
    if kind == "no_value":
        return flag, f"{name} item with an empty measured value", needed
    if kind == "unit":
        unit = rest.split(":", 1)[1] if ":" in rest else "?"
        return flag, f"{name} in a unit srdose cannot read ({unit})", needed
    if kind == "missing":
        return flag, f"{name} not reported", needed
    if flag == "view:unknown_code":
        return flag, "a view code srdose does not know", True
    if flag in ("anode:unknown_material", "filter:unknown_material"):
        return flag, f"{kind} material code srdose does not know", True
    if flag == "filter:several_materials":
        return flag, "several filter materials in one event", False
    if kind == "truncated":
        return flag, f"{name} longer than srdose keeps (cut)", False
    if flag == "invalid:datetime_started":
        return flag, "DateTime Started not a valid DICOM date-time", False
    if flag == "dbt_mas_one_projection":
        return flag, "DBT reported with one projection's mAs, not the sweep's", False
    if flag == "no_irradiation_events":
        return flag, "a dose report without irradiation events", True
    return None


#: The plain words of the sample's rules (from :mod:`srdose.parse.inspect`), by rule prefix.
_SAMPLE_WORDS = {
    "vendor_code": "a vendor's code where the standard names another concept",
    "legacy_scheme": "legacy coding scheme",
    "private_scheme": "private coding scheme",
    "unit": "unit not UCUM, or not one srdose knows",
    "unit_scheme": "unit coded outside UCUM",
    "empty_value": "NUM item with an empty measured value",
    "highdicom_refused": "content item highdicom refuses",
}


def _split(flags: str | None) -> list[str]:
    return [f for f in (flags or "").split(";") if f]


def from_database(
    store, serial: str | None = None, since: str | None = None, until: str | None = None
) -> dict[int, UnitConformance]:
    """Each unit's findings from the flags of its live events (see :func:`classify_flag`), of
    studies from ``since`` to ``until`` (YYYYMMDD; None: open)."""
    units = {
        u["id"]: UnitConformance(u["serial"], u["manufacturer"], u["model"], u["events"], u["first"], u["last"])
        for u in Q.unit_event_spans(store, serial, since, until)
    }
    for device_id, day, event_flags, recalc_flags, source_flags in Q.unit_flag_rows(store, serial, since, until):
        unit = units.get(device_id)
        if unit is None:
            continue
        # the recalculation's own flags speak of its inputs (a "missing:" there repeats the
        # parser's), but one: the DBT sweep it finds reported as one projection
        recalc = [f for f in _split(recalc_flags) if f == "dbt_mas_one_projection"]
        for flag in set(_split(event_flags) + recalc + _split(source_flags)):
            known = classify_flag(flag)
            if known is not None:
                unit.finding(*known, source="database").seen(day)
    return units


def add_sample(units: dict[int, UnitConformance], paths: Iterable[Path]) -> list[Inspection]:
    """Read the sample's objects through highdicom and add their findings to their units (matched
    by serial; a unit the database does not hold is added; files that are not DICOM are passed
    over). Returns the readings."""
    by_serial = {u.serial: u for u in units.values()}
    readings = []
    for path in paths:
        r = inspect_path(path)
        readings.append(r)
        if not r.header:  # not DICOM (a note, a checksum list): no unit's object
            continue
        serial = r.header.get("DeviceSerialNumber", "")
        unit = by_serial.get(serial)
        if unit is None:
            unit = UnitConformance(serial, r.header.get("Manufacturer", ""), r.header.get("ManufacturerModelName", ""))
            by_serial[serial] = unit
            units[-len(by_serial)] = unit  # not in the database: no device id
        unit.sampled += 1
        day = r.header.get("StudyDate") or None
        if r.refused:
            unit.finding("refused", f"srdose refuses the object: {r.refused}", True, "sample").seen(day)
        for rule in sorted({rule for rule, _ in r.rules}):
            words = _SAMPLE_WORDS.get(rule.split(":", 1)[0], rule)
            detail = rule.split(":", 1)[1] if ":" in rule else ""
            unit.finding(rule, f"{words} ({detail})" if detail else words, False, "sample").seen(day)
    return readings


def sample_files(paths: Iterable[Path]) -> list[Path]:
    """The DICOM files among ``paths`` (folders walked), in a stable order."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        out += sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    return out


def merged(units: Iterable[UnitConformance]) -> UnitConformance:
    """One unit's conformance from its devices' (a unit known under several device records)."""
    units = list(units)
    first = units[0]
    whole = UnitConformance(first.serial, first.manufacturer, first.model)
    for u in units:
        whole.events += u.events
        whole.sampled += u.sampled
        whole.first = min(filter(None, (whole.first, u.first)), default=None)
        whole.last = max(filter(None, (whole.last, u.last)), default=None)
        for f in u.findings.values():
            mine = whole.finding(f.rule, f.what, f.fails, f.source)
            mine.count += f.count
            for day in (f.first, f.last):
                if day:
                    mine.first = min(mine.first or day, day)
                    mine.last = max(mine.last or day, day)
    return whole
