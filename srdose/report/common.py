"""Helpers the reports share: what a build returns, masks over the columns of
:func:`srdose.store.reports.report_events`, unit labels, dose columns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from srdose.vocab import Acquisition

#: Told each step of a build, for a status line.
Progress = Callable[[str], None] | None


@dataclass
class Built:
    """What a report build wrote (the HTML first) and the notes for the command to print."""

    html: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    partial: bool = False


def period_tag(since: str, until: str) -> str:
    """The period of a report in its file names: YYYYMMDD-YYYYMMDD."""
    return f"{since.replace('-', '')}-{until.replace('-', '')}"


VIEW_ORDER = ("CC", "MLO", "ML", "LM", "LMO", "XCCL", "XCCM", "FB", "SIO", "ISO", "CV", "AT")


def per_text(texts: np.ndarray, test: Callable[[str | None], bool]) -> np.ndarray:
    """Elementwise ``test`` of a text column (str or None), called once per distinct value.

    The column's equal texts are mostly one object (report_events builds them from its
    categories), so a set of them is cheap; converting the column to a numpy string array
    instead cost 4 bytes per character of its longest value for every event (gigabytes for ten
    million events' flags) and sorting them all."""
    values = np.asarray(texts, dtype=object).tolist()
    verdict = {t: bool(test(t)) for t in set(values)}
    return np.fromiter(map(verdict.__getitem__, values), dtype=bool, count=len(values))


def contains(texts: np.ndarray, needle: str) -> np.ndarray:
    """Elementwise: ``needle`` occurs in the (lower-cased) text; None is False."""
    return per_text(texts, lambda t: isinstance(t, str) and needle in t.lower())


def infeasible(cols: dict) -> np.ndarray:
    """Events carrying any ``infeasible:<rule>`` flag (written by srdose's curation)."""
    return contains(cols["flags"], "infeasible:")


def infeasible_rules(flags) -> list[str]:
    return [f for f in (flags or "").split(";") if f.startswith("infeasible:")]


def reported_agd(cols: dict) -> np.ndarray:
    """Reported AGD, NaN where missing or not positive (e.g. Hologic's 0 on 20 kV events)."""
    a = cols["agd_mgy"].copy()
    with np.errstate(invalid="ignore"):
        a[~(a > 0)] = np.nan
    return a


def recalc_mgd(cols: dict) -> np.ndarray:
    m = cols["mgd_recalc_mgy"].copy()
    with np.errstate(invalid="ignore"):
        m[~(m > 0)] = np.nan
    return m


def modality(cols: dict) -> np.ndarray:
    """'2D', 'DBT' or '' per event (acquisition as parsed)."""
    acq = cols["acquisition"]
    out = np.full(acq.size, "", dtype=object)
    out[acq == Acquisition.TWO_D] = Acquisition.TWO_D.value
    out[acq == Acquisition.DBT] = Acquisition.DBT.value
    return out


def view_group(views: np.ndarray) -> np.ndarray:
    """CC, MLO, or 'other' / 'none'."""
    out = np.full(views.size, "other", dtype=object)
    out[views == "CC"] = "CC"
    out[views == "MLO"] = "MLO"
    out[views == None] = "none"  # noqa: E711
    return out


def unit_label(u: dict) -> str:
    bits = [u.get("manufacturer") or "", u.get("model") or "", f"serial {u.get('serial') or '?'}"]
    if u.get("station"):
        bits.append(f"station {u['station']}")
    return " · ".join(b for b in bits if b)


def iso(day: str) -> str:
    """YYYYMMDD -> YYYY-MM-DD."""
    return f"{day[:4]}-{day[4:6]}-{day[6:8]}" if day and len(day) == 8 else (day or "")


def time_of_day(t: float) -> str:
    """Seconds since midnight (or any multiple of a day) -> HH:MM:SS; '' when not finite."""
    if not np.isfinite(t):
        return ""
    s = int(round(t % 86400.0))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
