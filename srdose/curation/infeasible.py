"""Infeasible values: domain limits per field, one readable table.

The table (``infeasible_rules.csv`` beside this module, or the CSV named by
``[curation] infeasible_rules``) has one row per limit::

    rule,field,applies_to,min,max,unit,description
    kvp,kvp,all,20,49,kV,...
    exposure_time,exposure_time_ms,all,>0,,ms,...
    study_date,study_date,all,19900101,today,date,...
    pulse_count,n_pulses,2D,1,3,pulses,...

``min`` and ``max`` are inclusive; ``>x`` / ``<x`` make them exclusive; empty
means no limit; ``today`` (for dates, YYYYMMDD) is the day of the check.
``applies_to`` is ``all``, ``2D`` or ``DBT`` (the event's acquisition). A
rule name may have several rows (one per acquisition). A missing value breaks
no rule (missing values are flagged by the parser).

An event breaking rule ``kvp`` gets the flag ``infeasible:kvp`` in
``events.flags``; the event is kept, and reports leave it out of DRL
statistics (and count it).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

PACKAGED = Path(__file__).with_name("infeasible_rules.csv")
FLAG_PREFIX = "infeasible:"
#: Fields a rule may name: event columns, plus ``study_date`` (of the event's study).
FIELDS = (
    "kvp",
    "mas",
    "tube_current_ma",
    "exposure_time_ms",
    "irradiation_duration_ms",
    "n_pulses",
    "compressed_thickness_mm",
    "compression_force_n",
    "compression_pressure_kpa",
    "hvl_mm",
    "entrance_exposure_mgy",
    "agd_mgy",
    "source_detector_mm",
    "filter_thickness_mm",
    "focal_spot_mm",
    "positioner_primary_angle_deg",
    "study_date",
)
COLUMNS = ("rule", "field", "applies_to", "min", "max", "unit", "description")


class RulesError(ValueError):
    """The rules table cannot be used; the message names the row."""


@dataclass(frozen=True)
class Limit:
    value: float | None
    exclusive: bool = False
    today: bool = False

    def resolve(self, today: str) -> float | None:
        return float(today) if self.today else self.value


@dataclass(frozen=True)
class Rule:
    """One row of the table."""

    name: str
    field: str
    applies_to: str  # all | 2D | DBT
    low: Limit
    high: Limit
    unit: str = ""
    description: str = ""

    def broken_by(self, value: Any, acquisition: str | None, today: str) -> bool:
        if value is None or value == "":
            return False
        if self.applies_to != "all" and (acquisition or "").upper() != self.applies_to.upper():
            return False
        try:
            v = float(str(value)[:8]) if self.field == "study_date" else float(value)
        except (TypeError, ValueError):
            return False
        lo, hi = self.low.resolve(today), self.high.resolve(today)
        if lo is not None and (v <= lo if self.low.exclusive else v < lo):
            return True
        if hi is not None and (v >= hi if self.high.exclusive else v > hi):
            return True
        return False

    def limits_text(self) -> str:
        def one(lim: Limit, side: str) -> str:
            if lim.today:
                return "today"
            if lim.value is None:
                return ""
            v = f"{lim.value:g}"
            return (">" if side == "lo" else "<") + v if lim.exclusive else v

        return f"{one(self.low, 'lo')}..{one(self.high, 'hi')}"


def _limit(text: str | None, where: str) -> Limit:
    text = (text or "").strip()
    if not text:
        return Limit(None)
    if text.lower() == "today":
        return Limit(None, today=True)
    exclusive = text[0] in "<>"
    try:
        return Limit(float(text[1:] if exclusive else text), exclusive)
    except ValueError:
        raise RulesError(f"{where}: limit {text!r} is not a number, '>number', '<number' or 'today'") from None


def parse_rules(text: str, source: str = "rules") -> tuple[Rule, ...]:
    """Rules from the CSV text of a table."""
    reader = csv.DictReader(io.StringIO(text))
    missing = set(COLUMNS[:5]) - set(reader.fieldnames or ())
    if missing:
        raise RulesError(f"{source}: missing column(s) {', '.join(sorted(missing))}; expected {','.join(COLUMNS)}")
    rules = []
    for n, row in enumerate(reader, start=2):
        where = f"{source} line {n}"
        name = (row.get("rule") or "").strip()
        if not name or name.startswith("#"):
            continue
        if not all(c.isalnum() or c in "_-" for c in name):
            raise RulesError(f"{where}: rule name {name!r} must be letters, digits, _ or -")
        field = (row.get("field") or "").strip()
        if field not in FIELDS:
            raise RulesError(f"{where}: unknown field {field!r}; known: {', '.join(FIELDS)}")
        applies = (row.get("applies_to") or "all").strip() or "all"
        if applies.upper() not in ("ALL", "2D", "DBT"):
            raise RulesError(f"{where}: applies_to must be all, 2D or DBT, not {applies!r}")
        rules.append(
            Rule(
                name,
                field,
                "all" if applies.upper() == "ALL" else applies.upper(),
                _limit(row.get("min"), where),
                _limit(row.get("max"), where),
                (row.get("unit") or "").strip(),
                (row.get("description") or "").strip(),
            )
        )
    if not rules:
        raise RulesError(f"{source}: no rules")
    return tuple(rules)


@lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> tuple[Rule, ...]:
    return parse_rules(Path(path).read_text(encoding="utf-8"), path)


def load_rules(path: str | Path | None = None) -> tuple[Rule, ...]:
    """The rules of ``path``, else of the packaged table."""
    p = Path(path).expanduser() if path else PACKAGED
    if not p.is_file():
        raise RulesError(f"infeasible-value rules file {p} does not exist")
    return _load(str(p), p.stat().st_mtime)


def rules_from_settings(settings) -> tuple[Rule, ...]:
    return load_rules(settings.curation.infeasible_rules or None)


def today_text() -> str:
    return dt.date.today().strftime("%Y%m%d")


def broken_rules(
    values: Mapping[str, Any] | Any, rules: Iterable[Rule], study_date: str | None = None, today: str | None = None
) -> list[str]:
    """Names of the rules an event breaks, in table order, each once.

    ``values`` is a mapping (a database row) or an object with the event's
    attributes (:class:`srdose.parse.records.IrradiationEvent`).
    """
    today = today or today_text()
    get = values.get if isinstance(values, Mapping) else (lambda k: getattr(values, k, None))
    acquisition = get("acquisition")
    out: list[str] = []
    for rule in rules:
        value = study_date if rule.field == "study_date" else get(rule.field)
        if rule.field == "study_date" and value is None:
            value = get("study_date")
        if rule.name not in out and rule.broken_by(value, acquisition, today):
            out.append(rule.name)
    return out


def merge_flags(existing: str | None, broken: Iterable[str]) -> str | None:
    """``events.flags`` with the ``infeasible:*`` flags replaced by ``broken``."""
    kept = [f for f in (existing or "").split(";") if f and not f.startswith(FLAG_PREFIX)]
    kept += [FLAG_PREFIX + name for name in broken]
    return ";".join(kept) or None


def is_flagged(flags: str | None) -> bool:
    """True when an ``events.flags`` value holds an infeasible-value flag."""
    return flags is not None and FLAG_PREFIX in flags


def flag_report(report, rules: Iterable[Rule], today: str | None = None) -> int:
    """Add ``infeasible:<rule>`` to the events of a parsed report; returns how many were flagged."""
    rules = tuple(rules)
    n = 0
    for ev in report.events:
        broken = broken_rules(ev, rules, report.study.study_date, today)
        for name in broken:
            ev.flag(FLAG_PREFIX + name)
        n += bool(broken)
    return n
