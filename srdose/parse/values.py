"""Checks of single DICOM values: UIDs, dates, times, date-times.

A UID is an identity the database keys on: one that breaks PS3.5 9.1 is
refused with the dataset (a 72-character or NUL-containing UID cannot be
stored and cannot be trusted to name the same object twice). A date or time
that is not one becomes NULL plus a flag: the dose values are still good.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Optional

from srdose.parse.errors import Malformed

#: PS3.5 9.1: a UID is at most 64 characters.
UID_MAX = 64
_DIGITS = frozenset("0123456789")


def uid_problem(value: str) -> Optional[str]:
    """What makes ``value`` an invalid UID (PS3.5 9.1), or None when it is valid."""
    if not value:
        return "it is empty"
    if len(value) > UID_MAX:
        return f"it is {len(value)} characters long (at most {UID_MAX})"
    if any(c not in _DIGITS and c != "." for c in value):
        return "it holds characters other than digits and dots"
    for component in value.split("."):
        if not component:
            return "it has an empty component"
        if len(component) > 1 and component[0] == "0":
            return f"its component {component!r} starts with a zero"
    return None


def check_uid(value: Optional[str], what: str) -> Optional[str]:
    """``value`` when it is a valid UID (or absent); else refuse the dataset.

    Raises
    ------
    Malformed
        Naming the attribute, the value (escaped, cut to 80 characters) and the rule broken.
    """
    if value is None:
        return None
    problem = uid_problem(value)
    if problem:
        shown = repr(value[:80]) + ("..." if len(value) > 80 else "")
        raise Malformed(f"{what} {shown} is not a valid DICOM UID: {problem} (PS3.5 9.1); "
                        "the sending system must be fixed before this object can be stored")
    return value


def date_or_none(value: Optional[str]) -> Optional[str]:
    """A DA value as YYYYMMDD when it is a real date (the old ``YYYY.MM.DD`` form is
    accepted), else None."""
    if not value:
        return None
    text = value.strip()
    if len(text) == 10 and text[4] == "." and text[7] == ".":
        text = text.replace(".", "")
    if len(text) != 8 or any(c not in _DIGITS for c in text):
        return None
    try:
        _dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None
    return text


_TM = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?$")


def time_or_none(value: Optional[str]) -> Optional[str]:
    """A TM value as HH[MM[SS]] (fraction dropped; the old ``HH:MM:SS`` form is
    accepted) when it is a time of day, else None."""
    if not value:
        return None
    text = value.strip()
    if len(text) >= 5 and text[2] == ":":
        text = text.replace(":", "")
    m = _TM.match(text)
    if not m:
        return None
    hh, mm, ss = m.group(1), m.group(2), m.group(3)
    if int(hh) > 23 or (mm and int(mm) > 59) or (ss and int(ss) > 60):
        return None
    return hh + (mm or "") + (ss or "")


_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,6})?([+-]\d{4})?$")


def datetime_or_none(value: Optional[str]) -> Optional[str]:
    """A DT value, as written, when every part of it is in range, else None."""
    if not value:
        return None
    text = value.strip()
    m = _DT.match(text)
    if not m:
        return None
    year, month, day, hh, mm, ss, frac, zone = m.groups()
    if frac and not ss:
        return None
    try:
        _dt.date(int(year), int(month or 1), int(day or 1))
    except ValueError:
        return None
    if (hh and int(hh) > 23) or (mm and int(mm) > 59) or (ss and int(ss) > 60):
        return None
    if zone and (int(zone[1:3]) > 14 or int(zone[3:5]) > 59):
        return None
    return text
