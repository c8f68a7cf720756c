"""Local and national-style diagnostic reference levels (``srdose report drl``), ICRP 135 practice.

Per room (X-ray unit) the median MGD of a standard exposure set (default: 2D
MLO views of 50–60 mm compressed thickness, recalculated MGD; see the
``[report] drl_*`` settings). A room enters the statistics with at least
``drl_min_events`` exposures in the set. Then

* local DRL (the service's typical value) = median of the room medians;
* national-style DRL = 75th percentile of the room medians (numpy's default
  linear interpolation, Hyndman–Fan type 7).

Excluded from the set, and counted per room: studies that are not a
patient's, events with any ``infeasible:`` flag, events without the dose.
The national DRL shown beside them comes only from ``[report]
national_drl_mgy`` with its ``national_drl_source``: srdose has no built-in
value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from srdose.report import common as C
from srdose.report import stats


@dataclass
class DRLSettings:
    views: tuple[str, ...] = ("MLO",)
    band: tuple[float, float] = (50.0, 60.0)
    acquisition: str = "2D"
    dose: str = "recalc"  # recalc | reported
    min_events: int = 20
    national_mgy: Optional[float] = None
    national_source: str = ""

    @classmethod
    def from_settings(cls, section: dict, band: Optional[str] = None, views=None, acquisition=None,
                      dose=None, min_events=None) -> "DRLSettings":
        """From ``[report]`` with command-line overrides; ValueError on a bad value."""
        lo, hi = stats.parse_band(band or section["drl_band_mm"])
        vs = tuple(v.strip().upper() for v in (views or section["drl_views"]) if str(v).strip())
        if not vs:
            raise ValueError("no DRL views given")
        acq = (acquisition or section["drl_acquisition"]).strip().upper()
        if acq not in ("2D", "DBT"):
            raise ValueError(f"DRL acquisition {acq!r}: 2D or DBT")
        d = (dose or section["drl_dose"]).strip().lower()
        if d not in ("recalc", "reported"):
            raise ValueError(f"DRL dose {d!r}: recalc or reported")
        m = int(section["drl_min_events"] if min_events is None else min_events)
        if m < 1:
            raise ValueError("drl_min_events must be at least 1")
        raw = section.get("national_drl_mgy", "")
        national = None
        if raw not in ("", None):
            try:
                national = float(raw)
            except (TypeError, ValueError):
                raise ValueError(f"[report] national_drl_mgy = {raw!r}: a number of mGy, or empty") from None
            if not national > 0:
                raise ValueError("[report] national_drl_mgy must be positive")
            if not str(section.get("national_drl_source", "")).strip():
                raise ValueError("[report] national_drl_mgy is set without national_drl_source: cite where "
                                 "the value comes from")
        return cls(vs, (lo, hi), acq, d, m, national, str(section.get("national_drl_source", "")).strip())

    def describe(self) -> str:
        return (f"{self.acquisition} {'/'.join(self.views)} views, compressed thickness "
                f"{self.band[0]:g}–{self.band[1]:g} mm, {'recalculated MGD' if self.dose == 'recalc' else 'AGD as reported'}")


@dataclass
class RoomStats:
    """Per room (arrays aligned with ``rooms``)."""

    rooms: np.ndarray  # device ids
    in_set: np.ndarray  # exposures in the standard set (before exclusions)
    not_patient: np.ndarray
    infeasible: np.ndarray
    no_dose: np.ndarray
    used: np.ndarray
    median: np.ndarray
    p25: np.ndarray
    p75: np.ndarray
    mean: np.ndarray
    qualifies: np.ndarray


def standard_set(cols: dict, s: DRLSettings) -> np.ndarray:
    return (np.isin(cols["view"].astype(str), list(s.views)) & stats.in_band(cols["compressed_thickness_mm"], *s.band)
            & (C.modality(cols) == s.acquisition))


def room_statistics(room, dose, in_set, not_patient, infeasible, min_events: int, rooms=None) -> RoomStats:
    """Counts and dose statistics per room of the events ``in_set``: pure numpy.

    An event counts as used when in the set, a patient's, without an
    ``infeasible:`` flag and with a finite dose; a room qualifies with at
    least ``min_events`` used events. Exclusions are counted in that order
    (an event is counted under its first reason only).
    """
    room = np.asarray(room)
    dose = np.asarray(dose, dtype=float)
    in_set = np.asarray(in_set, bool)
    np_ = in_set & np.asarray(not_patient, bool)
    inf = in_set & ~np_ & np.asarray(infeasible, bool)
    nod = in_set & ~np_ & ~inf & ~np.isfinite(dose)
    used = in_set & ~np_ & ~inf & ~nod
    rooms = np.unique(room) if rooms is None else np.asarray(rooms)
    k = rooms.size
    out = RoomStats(rooms, *(np.zeros(k, dtype=np.int64) for _ in range(5)),
                    *(np.full(k, np.nan) for _ in range(4)), np.zeros(k, dtype=bool))
    for j, r in enumerate(rooms):
        here = room == r
        out.in_set[j] = int((in_set & here).sum())
        out.not_patient[j] = int((np_ & here).sum())
        out.infeasible[j] = int((inf & here).sum())
        out.no_dose[j] = int((nod & here).sum())
        v = dose[used & here]
        out.used[j] = v.size
        if v.size:
            out.p25[j], out.median[j], out.p75[j] = np.percentile(v, [25, 50, 75])
            out.mean[j] = float(v.mean())
        out.qualifies[j] = v.size >= min_events
    return out


def drl_values(rs: RoomStats) -> stats.DRL:
    return stats.drl_from_room_medians(rs.median[rs.qualifies])


def dose_column(cols: dict, s: DRLSettings) -> np.ndarray:
    return C.recalc_mgd(cols) if s.dose == "recalc" else C.reported_agd(cols)
