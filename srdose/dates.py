"""The one reader of dates and times: DICOM DA, TM and DT (PS3.5 Table 6.2-1) and ISO days.

Every function returns None (or NaN) for a value that is not a real date or time, never a guess:
a dataset's dates are checked here once, and whatever is stored was read the same way.
"""

from __future__ import annotations

import datetime as dt
import re

_DA = re.compile(r"(\d{4})(\d{2})(\d{2})", re.ASCII)
#: the dotted form ACR-NEMA wrote and some old modalities still send
_DA_DOTTED = re.compile(r"(\d{4})\.(\d{2})\.(\d{2})", re.ASCII)
_ISO_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)
_TM = re.compile(r"(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?", re.ASCII)
_DT = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,6})?([+-]\d{4})?", re.ASCII)


def _day(match: re.Match | None) -> dt.date | None:
    if not match:
        return None
    try:
        return dt.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def parse_da(value: str | None, dotted: bool = False) -> dt.date | None:
    """A DICOM DA (``YYYYMMDD``; with ``dotted``, also ``YYYY.MM.DD``) as a date."""
    if not value:
        return None
    text = str(value).strip()
    day = _day(_DA.fullmatch(text))
    if day is None and dotted:
        day = _day(_DA_DOTTED.fullmatch(text))
    return day


def parse_iso_day(value: str | None) -> dt.date | None:
    """An ISO 8601 calendar day (``YYYY-MM-DD``) as a date."""
    if not value:
        return None
    return _day(_ISO_DAY.fullmatch(str(value).strip()))


def parse_day(value) -> dt.date | None:
    """A day given as a date, a datetime, DICOM DA or ISO ``YYYY-MM-DD``."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str):
        return None
    return parse_da(value) or parse_iso_day(value)


def da_or_none(value: str | None) -> str | None:
    """A DA value as ``YYYYMMDD`` when it is a real date (``YYYY.MM.DD`` accepted), else None."""
    day = parse_da(value, dotted=True)
    return f"{day.year:04d}{day.month:02d}{day.day:02d}" if day else None


def tm_or_none(value: str | None) -> str | None:
    """A TM value as ``HH[MM[SS]]`` (fraction dropped; ``HH:MM:SS`` accepted) when it is a time
    of day, else None. Seconds may be 60 (a leap second)."""
    if not value:
        return None
    text = value.strip()
    if len(text) >= 5 and text[2] == ":":
        text = text.replace(":", "")
    m = _TM.fullmatch(text)
    if not m:
        return None
    hh, mm, ss, _ = m.groups()
    if int(hh) > 23 or (mm and int(mm) > 59) or (ss and int(ss) > 60):
        return None
    return hh + (mm or "") + (ss or "")


def _dt_match(value: str | None) -> re.Match | None:
    """The parts of a DT value when every part is in range."""
    if not value:
        return None
    m = _DT.fullmatch(value.strip())
    if not m:
        return None
    year, month, day, hh, mm, ss, frac, zone = m.groups()
    if frac and not ss:
        return None
    try:
        dt.date(int(year), int(month or 1), int(day or 1))
    except ValueError:
        return None
    if (hh and int(hh) > 23) or (mm and int(mm) > 59) or (ss and int(ss) > 60):
        return None
    if zone and (int(zone[1:3]) > 14 or int(zone[3:5]) > 59):
        return None
    return m


def dt_or_none(value: str | None) -> str | None:
    """A DT value, as written, when every part of it is in range, else None."""
    return value.strip() if value is not None and _dt_match(value) else None


def parse_dt(value: str | None) -> dt.datetime | None:
    """A DT value as a naive datetime in its own zone (the offset is not applied); parts the value
    leaves out are their least (month 1, hour 0). None for a leap second: datetime has none."""
    m = _dt_match(value)
    if not m:
        return None
    year, month, day, hh, mm, ss, frac, _ = m.groups()
    if ss and int(ss) == 60:
        return None
    micro = int(round(float(frac) * 1e6)) if frac else 0
    return dt.datetime(
        int(year), int(month or 1), int(day or 1), int(hh or 0), int(mm or 0), int(ss or 0), min(micro, 999999)
    )


def dt_seconds(value: str | None) -> float:
    """A DT with at least a time of day (``YYYYMMDDHHMM``) as seconds on a day-number scale; NaN
    when unreadable or without one.

    Differences are exact within and across days; the zone is ignored (the events compared carry
    the same one).
    """
    m = _dt_match(value)
    if not m or m.group(5) is None:
        return float("nan")
    year, month, day, hh, mm, ss, frac, _ = m.groups()
    sec: float = int(hh) * 3600 + int(mm) * 60
    if ss:
        sec += float(ss + (frac or ""))
    return dt.date(int(year), int(month), int(day)).toordinal() * 86400.0 + sec


def parse_iso_datetime(value) -> dt.datetime | None:
    """An ISO 8601 date and time (as the database and exports write them) as a datetime."""
    if isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
