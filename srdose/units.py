"""Measurement units: every value is stored in one canonical unit per quantity.

Devices write UCUM (``mA``, ``uA.s``), almost-UCUM (``uAs``) or private
spellings (``Gym2``, ``mGycm``). Each spelling seen is listed here once with its
quantity and its factor to the canonical unit; anything else is refused with
:class:`UnitError` so that the parser can flag it instead of guessing.
"""

from __future__ import annotations

#: The canonical unit of each quantity srdose stores.
CANONICAL = {
    "voltage": "kV",
    "current": "mA",
    "charge": "mAs",
    "time": "ms",
    "length": "mm",
    "force": "N",
    "dose": "mGy",
    "dose_area": "Gy.m2",
    "dose_length": "mGy.cm",
    "angle": "deg",
    "pressure": "kPa",
    "area": "mm2",
    "count": "1",
}

# unit as written -> (quantity, factor to the canonical unit)
_UNITS: dict[str, tuple[str, float]] = {
    "kV": ("voltage", 1.0),
    "V": ("voltage", 1e-3),
    "mA": ("current", 1.0),
    "uA": ("current", 1e-3),
    "A": ("current", 1e3),
    "mAs": ("charge", 1.0),
    "mA.s": ("charge", 1.0),
    "uAs": ("charge", 1e-3),  # Hologic: not UCUM, means µA·s
    "uA.s": ("charge", 1e-3),  # IMS Giotto: UCUM µA·s
    "As": ("charge", 1e3),
    "A.s": ("charge", 1e3),
    "ms": ("time", 1.0),
    "s": ("time", 1e3),
    "us": ("time", 1e-3),
    "min": ("time", 60e3),
    "mm": ("length", 1.0),
    "mm[Al]": ("length", 1.0),  # HVL written with its material
    "cm": ("length", 10.0),
    "m": ("length", 1e3),
    "um": ("length", 1e-3),
    "N": ("force", 1.0),
    "daN": ("force", 10.0),
    "kN": ("force", 1e3),
    "mGy": ("dose", 1.0),
    "Gy": ("dose", 1e3),
    "dGy": ("dose", 1e2),
    "cGy": ("dose", 10.0),
    "uGy": ("dose", 1e-3),
    "Gy.m2": ("dose_area", 1.0),
    "Gym2": ("dose_area", 1.0),  # Siemens Artis: not UCUM, means Gy·m²
    "dGy.cm2": ("dose_area", 1e-5),
    "cGy.cm2": ("dose_area", 1e-6),
    "mGy.cm2": ("dose_area", 1e-7),
    "uGy.m2": ("dose_area", 1e-6),
    "mGy.cm": ("dose_length", 1.0),
    "mGycm": ("dose_length", 1.0),  # CT DLP spelling seen in the wild
    "deg": ("angle", 1.0),
    "rad": ("angle", 57.29577951308232),
    "kPa": ("pressure", 1.0),
    "Pa": ("pressure", 1e-3),
    "hPa": ("pressure", 0.1),
    "mm2": ("area", 1.0),
    "cm2": ("area", 100.0),
    "m2": ("area", 1e6),
    "1": ("count", 1.0),
    "{pulses}": ("count", 1.0),
    "{pulse}": ("count", 1.0),
    "{count}": ("count", 1.0),
    "{events}": ("count", 1.0),
    "no units": ("count", 1.0),
}


#: Spellings above that are not UCUM (The Unified Code for Units of Measure: units multiply with
#: ".", annotations go in braces; "As" alone is the attosecond), with the UCUM srdose reads them as.
NOT_UCUM = {
    "mAs": "mA.s",
    "uAs": "uA.s",
    "As": "A.s",
    "mm[Al]": "mm",
    "Gym2": "Gy.m2",
    "mGycm": "mGy.cm",
    "no units": "1",
}


def ucum_status(unit: str | None) -> str | None:
    """None when ``unit`` is a UCUM spelling srdose knows; otherwise what is wrong with it."""
    unit = (unit or "").strip()
    if unit in NOT_UCUM:
        return f"unit {unit!r} is not UCUM (srdose reads it as {NOT_UCUM[unit]})"
    if unit not in _UNITS:
        return f"unit {unit!r} is not one srdose knows"
    return None


class UnitError(ValueError):
    """A unit that cannot be converted to the quantity asked for."""


def factor(unit: str | None, quantity: str) -> float:
    """Factor that turns a value in ``unit`` into the canonical unit of ``quantity``.

    Parameters
    ----------
    unit
        Unit code value as written in the file (UCUM or a known deviation).
    quantity
        One of the keys of :data:`CANONICAL`.

    Raises
    ------
    UnitError
        When the unit is unknown or measures another quantity.
    """
    entry = _UNITS.get((unit or "").strip())
    if entry is None:
        raise UnitError(f"unknown unit {unit!r} (expected {CANONICAL[quantity]})")
    if entry[0] != quantity:
        raise UnitError(f"unit {unit!r} measures {entry[0]}, not {quantity} ({CANONICAL[quantity]})")
    return entry[1]


def convert(value: float, unit: str | None, quantity: str) -> float:
    """``value`` in ``unit``, converted to the canonical unit of ``quantity``."""
    return value * factor(unit, quantity)
