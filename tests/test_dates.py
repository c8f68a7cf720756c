"""The one date parser: DICOM DA, TM, DT (PS3.5 Table 6.2-1) and ISO days."""

import datetime as dt
import math

import pytest

from srdose import dates


def test_da_is_yyyymmdd():
    assert dates.parse_da("20240131") == dt.date(2024, 1, 31)
    assert dates.parse_da(" 20240229 ") == dt.date(2024, 2, 29)
    assert dates.da_or_none("20240131") == "20240131"


def test_da_legacy_dotted_form_only_where_asked():
    assert dates.parse_da("2024.01.31") is None
    assert dates.parse_da("2024.01.31", dotted=True) == dt.date(2024, 1, 31)
    assert dates.da_or_none("2024.01.31") == "20240131"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        None,
        "2024013",
        "202401311",
        "20240230",
        "20241301",
        "2024-01-31",
        "2024/01/31",
        "31012024x",
        "２０２４０１３１",
        "2024.1.31",
    ],
)
def test_da_refuses(bad):
    assert dates.parse_da(bad) is None
    assert dates.da_or_none(bad) is None


def test_iso_and_either_day():
    assert dates.parse_iso_day("2024-12-31") == dt.date(2024, 12, 31)
    assert dates.parse_day("2024-12-31") == dates.parse_day("20241231") == dt.date(2024, 12, 31)
    assert dates.parse_day(dt.datetime(2024, 5, 1, 9)) == dt.date(2024, 5, 1)
    for bad in ("2024/12/31", "2024-1-5", "2024-02-30", "31-12-2024", 20241231, "２０２４-１２-３１"):
        assert dates.parse_day(bad) is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0930", "0930"),
        ("09", "09"),
        ("093000", "093000"),
        ("093000.123456", "093000"),
        ("235960", "235960"),
        ("09:30:00", "093000"),
    ],
)
def test_tm(text, expected):
    assert dates.tm_or_none(text) == expected


@pytest.mark.parametrize(
    "bad", ["", None, "9", "2400", "0960", "093061", "093000.1234567", "0930.5x", "093", "０９３０"]
)
def test_tm_refuses(bad):
    assert dates.tm_or_none(bad) is None


def test_dt_with_offset_and_fraction():
    text = "20240131093000.123456+0100"
    assert dates.dt_or_none(text) == text
    assert dates.parse_dt(text) == dt.datetime(2024, 1, 31, 9, 30, 0, 123456)
    assert dates.parse_dt("202401310930") == dt.datetime(2024, 1, 31, 9, 30)
    assert dates.parse_dt("2024") == dt.datetime(2024, 1, 1)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        None,
        "20240131093000.1234567",
        "202401310930.5",
        "20240132",
        "2024013125",
        "20240131093000+1500",
        "20240131093000+0160",
        "20240131T093000",
        "2024-01-31",
        "２０２４０１３１",
    ],
)
def test_dt_refuses(bad):
    assert dates.dt_or_none(bad) is None
    assert dates.parse_dt(bad) is None


def test_dt_seconds():
    assert dates.dt_seconds("20240101000005.5") - dates.dt_seconds("20231231235955") == 10.5
    assert dates.dt_seconds("202401010930+0100") == dt.date(2024, 1, 1).toordinal() * 86400.0 + 9.5 * 3600
    for bad in ("20240101", "2024010109", "x", None, "20240132093000"):
        assert math.isnan(dates.dt_seconds(bad))


def test_iso_datetime():
    assert dates.parse_iso_datetime("2024-01-31T09:30:00") == dt.datetime(2024, 1, 31, 9, 30)
    assert dates.parse_iso_datetime("yesterday") is None
