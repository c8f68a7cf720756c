"""Unit conversion to the canonical units (kV, mA, mAs, ms, mm, N, mGy)."""

import pytest

from srdose import units


@pytest.mark.parametrize(
    "value,unit,quantity,expected",
    [
        (34300, "uAs", "charge", 34.3),  # Hologic
        (13370, "uA.s", "charge", 13.37),  # IMS Giotto
        (0.6095, "s", "time", 609.5),  # GE Irradiation Duration
        (0.01373, "dGy", "dose", 1.373),  # MG header OrganDose
        (1.5, "Gym2", "dose_area", 1.5),  # Siemens Artis
        (150.0, "dGy.cm2", "dose_area", 0.0015),
        (4.2, "cm", "length", 42.0),
        (12.0, "daN", "force", 120.0),
        (500.0, "mGycm", "dose_length", 500.0),
    ],
)
def test_known_spellings(value, unit, quantity, expected):
    assert units.convert(value, unit, quantity) == pytest.approx(expected)


def test_unknown_and_mismatched_units_are_refused():
    with pytest.raises(units.UnitError, match="unknown unit 'kVolt'"):
        units.factor("kVolt", "voltage")
    with pytest.raises(units.UnitError, match="measures time, not dose"):
        units.factor("ms", "dose")
