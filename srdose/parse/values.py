"""Checks of single DICOM values: UIDs, dates, times, date-times.

A UID is an identity the database keys on: one that breaks PS3.5 9.1 is
refused with the dataset (a 72-character or NUL-containing UID cannot be
stored and cannot be trusted to name the same object twice). A date or time
that is not one becomes NULL plus a flag: the dose values are still good.
"""

from __future__ import annotations

from srdose.dates import da_or_none, dt_or_none, tm_or_none
from srdose.parse.errors import Malformed

#: PS3.5 9.1: a UID is at most 64 characters.
UID_MAX = 64
_DIGITS = frozenset("0123456789")


def uid_problem(value: str) -> str | None:
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


def check_uid(value: str | None, what: str) -> str | None:
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
        raise Malformed(
            f"{what} {shown} is not a valid DICOM UID: {problem} (PS3.5 9.1); "
            "the sending system must be fixed before this object can be stored"
        )
    return value


def date_or_none(value: str | None) -> str | None:
    """A DA value as YYYYMMDD when it is a real date (the old ``YYYY.MM.DD`` form is
    accepted), else None."""
    return da_or_none(value)


def time_or_none(value: str | None) -> str | None:
    """A TM value as HH[MM[SS]] (fraction dropped; the old ``HH:MM:SS`` form is
    accepted) when it is a time of day, else None."""
    return tm_or_none(value)


def datetime_or_none(value: str | None) -> str | None:
    """A DT value, as written, when every part of it is in range, else None."""
    return dt_or_none(value)
