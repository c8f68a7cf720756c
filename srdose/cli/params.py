"""Parameter types every ``srdose`` command shares: a date, a unit, an output file.

One definition each, so that ``--from 2024/12/31`` or ``--unit NOSUCH`` is refused the same
way (exit 2, saying what was expected) by every command, instead of being read as something
else and silently selecting nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from srdose.dates import parse_iso_day
from srdose.store.governance import units
from srdose.terminal import plain_text


class DateType(click.ParamType):
    """A calendar day written YYYY-MM-DD; converts to :class:`datetime.date`."""

    name = "YYYY-MM-DD"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> dt.date:
        if isinstance(value, dt.date):
            return value
        day = parse_iso_day(str(value))
        if day is not None:
            return day
        self.fail(f"{plain_text(value)!r} is not a date: expected YYYY-MM-DD, e.g. 2024-12-31", param, ctx)


DATE = DateType()


def dicom_day(day: dt.date | None) -> str | None:
    """A date as DICOM stores it (YYYYMMDD), None stays None."""
    return day.strftime("%Y%m%d") if day else None


def iso_day(day: dt.date | None) -> str | None:
    return day.isoformat() if day else None


@dataclass(frozen=True)
class Unit:
    """The unit(s) a user's ``--unit`` names: several devices may share a station or display name."""

    ref: str
    serials: tuple
    device_ids: tuple

    def __str__(self) -> str:
        return self.ref

    def one_serial(self, param_hint: str = "--unit") -> str:
        """The serial of a command that works on one unit; usage error when the name covers several."""
        if len(self.serials) != 1:
            raise click.BadParameter(
                f"{plain_text(self.ref)!r} names {len(self.serials)} units (serials "
                f"{', '.join(plain_text(s) for s in self.serials)}): give one serial",
                param_hint=param_hint,
            )
        return self.serials[0]


def flatten_serials(units: Sequence[Unit]) -> list[str]:
    """The serials of several ``--unit`` options, in order, without repeats."""
    out: list[str] = []
    for u in units or ():
        out += [s for s in u.serials if s not in out]
    return out


def resolve_unit(devices: list[dict], ref: str) -> Unit | None:
    """The devices ``ref`` names: exactly a serial, else any case a serial, a station name or the name
    the unit is shown under (rename or alias). None when nothing matches."""
    exact = [d for d in devices if d["serial"] == ref]
    if not exact:
        key = ref.strip().casefold()
        exact = [
            d
            for d in devices
            if any(
                (d.get(f) or "").strip().casefold() == key for f in ("serial", "station", "display_name", "shown_as")
            )
        ]
    matched = [d for d in exact if d["serial"]]
    if not matched:
        return None
    serials = tuple(dict.fromkeys(d["serial"] for d in matched))
    return Unit(ref, serials, tuple(d["id"] for d in matched))


def describe_units(devices: list[dict], limit: int = 30) -> str:
    """The known units for an error message: serial, and the name shown and station where they differ."""
    parts = []
    for d in devices:
        if not d["serial"]:
            continue
        extra = [x for x in dict.fromkeys((d.get("shown_as"), d.get("station"))) if x and x != d["serial"]]
        parts.append(plain_text(d["serial"]) + (f" ({', '.join(plain_text(x) for x in extra)})" if extra else ""))
    if not parts:
        return "none: the database holds no unit yet"
    more = f", ... and {len(parts) - limit} more (srdose units list)" if len(parts) > limit else ""
    return ", ".join(parts[:limit]) + more


class UnitType(click.ParamType):
    """A unit of the database, by serial, station name or the name it is shown under, any case;
    converts to :class:`Unit`. Unknown: a usage error listing the known units."""

    name = "UNIT"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> Unit:
        if isinstance(value, Unit):
            return value
        obj = ctx.find_root().obj if ctx is not None else None
        if obj is None:  # outside a command (e.g. completion): nothing to check against
            return Unit(str(value), (str(value),), ())
        devices = units(obj.store(write=False))
        unit = resolve_unit(devices, str(value))
        if unit is None:
            self.fail(
                f"no unit {plain_text(value)!r} in the database; known units: {describe_units(devices)}", param, ctx
            )
        return unit


UNIT = UnitType()


def output_format(path: Path, fmt: str | None, supported: Sequence[str] = ("csv", "xlsx")) -> str:
    """The format of an output file: ``fmt`` when given, else its suffix (none: the first supported).
    Any other suffix is a usage error naming the supported ones."""
    if fmt:
        return fmt.lower()
    suffix = path.suffix.lower().lstrip(".")
    if not suffix:
        return supported[0]
    if suffix not in supported:
        raise click.BadParameter(
            f"{plain_text(path.name)!r}: the format follows the suffix, and srdose writes "
            f"{' or '.join('.' + s for s in supported)} (or give --format)",
            param_hint="--out",
        )
    return suffix
