"""Per-project keys: the second pseudonym and the date shift of research exports.

The project key is ``HMAC-SHA256(site secret, "project:" + name)``. From it:

* the project pseudonym of a patient, ``HMAC(project key, "patient\\0" + site
  pseudonym)``: stable within a project, unrelated across projects, and
  without the site secret nobody can go from it back to the site pseudonym;
* a date shift per patient, ``±(1..max_days)`` days from
  ``HMAC(project key, "shift\\0" + site pseudonym)``: every date of one patient
  moves by the same number of days, so intervals are kept.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re

from srdose.dates import parse_da, parse_dt

PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_project(name: str) -> str:
    if not PROJECT_NAME.match(name or ""):
        raise ValueError(
            f"project name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


class ProjectKeys:
    """Keyed transformations for one research project."""

    def __init__(self, site_secret: bytes, project: str, max_shift_days: int = 365):
        self.project = check_project(project)
        self._key = hmac.new(bytes(site_secret), b"project:" + project.encode("utf-8"), hashlib.sha256).digest()
        self.max_shift_days = max(1, int(max_shift_days))

    def _mac(self, kind: str, value: str) -> bytes:
        return hmac.new(self._key, f"{kind}\x00{value}".encode(), hashlib.sha256).digest()

    def pseudonym(self, kind: str, value: str | None, length: int = 32) -> str | None:
        if value is None or value == "":
            return None
        return self._mac(kind, value).hex()[:length]

    def patient(self, site_pseudonym: str | None) -> str | None:
        return self.pseudonym("patient", site_pseudonym)

    def study(self, study_uid: str | None) -> str | None:
        return self.pseudonym("study", study_uid, 24)

    def unit(self, manufacturer: str | None, model: str | None, serial: str | None) -> str:
        return "unit-" + self._mac("unit", f"{manufacturer or ''}|{model or ''}|{serial or ''}").hex()[:8]

    def shift_days(self, patient_key: str | None) -> int:
        """Days every date of this patient moves: ±1..max_shift_days, never 0."""
        mac = self._mac("shift", patient_key or "")
        n = int.from_bytes(mac[:8], "big")
        days = 1 + (n >> 1) % self.max_shift_days
        return days if n & 1 else -days


def shift_date(yyyymmdd: str | None, days: int) -> str | None:
    """A DICOM date moved by ``days``, as ISO ``YYYY-MM-DD``; None if unreadable."""
    if not yyyymmdd:
        return None
    d = parse_da(str(yyyymmdd)[:8])
    if d is None:
        return None
    return (d + dt.timedelta(days=days)).isoformat()


def shift_datetime(value: str | None, days: int) -> str | None:
    """A DICOM DT (``YYYYMMDDHHMMSS[.ffffff][&ZZXX]``) moved by ``days``, as ISO; None if unreadable."""
    if not value:
        return None
    text = re.split(r"[+-]", str(value), maxsplit=1)[0]
    main, _, frac = text.partition(".")
    t = parse_dt(value)
    if t is None or len(main) < 8:  # a DT without its day is no date to shift
        return None
    return (t.replace(microsecond=0) + dt.timedelta(days=days)).isoformat(timespec="seconds") + (
        "." + frac if frac else ""
    )


def age_band(age_years: float | None, width: int) -> str | None:
    """Age as a band of ``width`` years (``"50-54"``), or rounded to a year when width is 0."""
    if age_years is None:
        return None
    if not width or width <= 0:
        return str(int(age_years))
    lo = int(age_years // width) * width
    return f"{lo}-{lo + width - 1}"
