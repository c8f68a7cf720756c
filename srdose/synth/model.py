"""Vendor-neutral model of a screening study: the woman, her breasts, the exposures.

A study is planned first (:func:`srdose.synth.plan.plan_study`) as the plain dataclasses here,
holding the *physical truth* of every exposure; the vendor encoders in
:mod:`srdose.synth.rdsr` and :mod:`srdose.synth.mg` then write that truth
the way each vendor would, quirks included.  Keeping the two apart is what
lets an RDSR and the matching image headers describe the same exposures.

The exposure model is deliberately simple but self-consistent:

* target/filter and kV follow an AEC-like rule on compressed thickness;
* HVL is a linear function of kV per target/filter;
* the AGD is drawn around a thickness trend (1-3 mGy for typical breasts);
* the incident air kerma K follows from AGD = K·g·c·s (·T for DBT) with a
  smooth fit of the Dance g table and rough c and s factors;
* the mAs follows from K, a tube output per mAs and the inverse-square law.

So a recalculation from the written kV/mAs/HVL/thickness lands close to the
written AGD, as it does on real units.  None of these numbers is a
reference value: they are only plausible.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from . import vendors as _vendors

__all__ = [
    "Patient",
    "Pulse",
    "Event",
    "Study",
    "uid_from_rng",
    "g_factor",
    "hvl_mm",
    "tube_output",
]


# --------------------------------------------------------------------------
# Dataclasses
# --------------------------------------------------------------------------
@dataclass
class Patient:
    """Synthetic patient identity (all values invented)."""

    name: str
    patient_id: str
    birth_date: _dt.date
    age_years: int
    sex: str = "F"

    @property
    def age_string(self) -> str:
        """Patient's Age in DICOM AS form, e.g. ``"056Y"``."""
        return f"{self.age_years:03d}Y"


@dataclass
class Pulse:
    """One pulse (GE pre-pulse / main pulse) or one DBT projection."""

    kvp: float
    ma: float
    width_ms: float
    angle_deg: float = 0.0

    @property
    def mas(self) -> float:
        """Tube loading of this pulse in mAs."""
        return self.ma * self.width_ms / 1000.0


@dataclass
class Event:
    """One irradiation event as it physically happened.

    Doses are the truth the vendor's report is built from; the encoders
    round them and, for some vendors, misreport them on purpose (Siemens
    DBT mAs of one projection, Hologic 20 kV events with zero dose).
    """

    uid: str
    start: _dt.datetime
    laterality: str  # "R" or "L"
    view: str  # CC, MLO, ML, LM, XCCL
    mode: str  # "2D" or "DBT"
    protocol: str
    thickness_mm: float
    force_n: float
    target: str
    filter: str
    filter_mm: float
    kvp: float
    ma: float
    mas: float  # total tube loading of the event
    exposure_time_ms: float
    hvl_mm: float
    esak_mgy: float  # incident air kerma at the breast surface
    k_ref_mgy: float  # air kerma at the 4.2 cm reference point (Hologic)
    agd_mgy: float
    sid_mm: float
    positioner_angle: float
    angle_start: float | None = None
    angle_end: float | None = None
    pulses: list[Pulse] = field(default_factory=list)
    zero_dose: bool = False  # Hologic 20 kV event reported with AGD = HVL = 0
    repeat: bool = False
    image_uids: list[str] = field(default_factory=list)
    image_series_uid: str = ""
    n_projections: int = 1
    support_gap_mm: float = 20.0

    @property
    def is_dbt(self) -> bool:
        """True for a tomosynthesis sweep."""
        return self.mode == "DBT"

    @property
    def distance_to_surface_mm(self) -> float:
        """Focus to breast entrance surface."""
        return self.sid_mm - self.support_gap_mm - self.thickness_mm


@dataclass
class Study:
    """A planned screening study: one woman, one unit, one visit."""

    vendor: str
    unit: _vendors.Unit
    patient: Patient
    study_uid: str
    series_uid: str
    sop_uid: str
    accession: str
    study_id: str
    study_datetime: _dt.datetime
    content_datetime: _dt.datetime
    description: str
    kind: str  # "2D", "DBT", "COMBO"
    events: list[Event]
    referring_physician: str = ""
    index: int = 0

    def identifiers(self) -> dict:
        """Identifying values written into this study's objects.

        Returns
        -------
        dict
            Patient name, ID, birth date, age, accession number, study UID,
            referring physician and the unit's identity; what a test needs
            to prove that nothing identifying leaks downstream.
        """
        u = self.unit
        return {
            "vendor": self.vendor,
            "patient_name": self.patient.name,
            "patient_id": self.patient.patient_id,
            "patient_birth_date": self.patient.birth_date.strftime("%Y%m%d"),
            "patient_age": self.patient.age_string,
            "accession_number": self.accession,
            "study_id": self.study_id,
            "referring_physician": self.referring_physician,
            "study_instance_uid": self.study_uid,
            "sop_instance_uid": self.sop_uid,
            "study_date": self.study_datetime.strftime("%Y%m%d"),
            "institution_name": u.institution,
            "station_name": u.station,
            "device_serial_number": u.serial,
            "manufacturer_model_name": u.model,
        }

    def truth(self) -> list[dict]:
        """Per-event physical values behind the report (before vendor quirks)."""
        out = []
        for e in self.events:
            out.append(
                {
                    "irradiation_event_uid": e.uid,
                    "laterality": e.laterality,
                    "view": e.view,
                    "mode": e.mode,
                    "thickness_mm": e.thickness_mm,
                    "force_n": round(e.force_n, 1),
                    "target": e.target,
                    "filter": e.filter,
                    "filter_mm": e.filter_mm,
                    "kvp": e.kvp,
                    "mas": round(e.mas, 3),
                    "hvl_mm": round(e.hvl_mm, 4),
                    "esak_mgy": round(e.esak_mgy, 4),
                    "agd_mgy": round(e.agd_mgy, 4),
                    "n_projections": e.n_projections,
                    "zero_dose": e.zero_dose,
                }
            )
        return out


# --------------------------------------------------------------------------
# The synthetic scanner's own dose model
# --------------------------------------------------------------------------
# These numbers play the part of a vendor's internal AGD estimate, which is
# what an RDSR reports: plausible, deliberately not reference-grade, and
# NEVER used by srdose's own recalculation (srdose.physics), which takes its
# factors from cited tables only. Tests must not check srdose's physics
# against the values made here.
# ln g = a + b ln t + c h + d h ln t + e (ln t)^2, t in cm, h = HVL in mm Al:
# a least-squares fit to the Dance g table (50 % glandular), within ~7 %.
_G_FIT = (-0.7949, -0.7596, 1.1867, 0.5129, -0.1394)

#: Spectrum factor s (Dance 2009 values where public; W/Al and Rh/Ag rough).
_S_FACTOR = {
    ("MO", "MO"): 1.000,
    ("MO", "RH"): 1.017,
    ("RH", "RH"): 1.061,
    ("RH", "AG"): 1.06,
    ("W", "RH"): 1.042,
    ("W", "AG"): 1.042,
    ("W", "AL"): 1.06,
}

#: HVL (mm Al) at 28 kV and its slope per kV, by target/filter.
_HVL = {
    ("MO", "MO"): (0.345, 0.011),
    ("MO", "RH"): (0.405, 0.011),
    ("RH", "RH"): (0.425, 0.011),
    ("RH", "AG"): (0.470, 0.012),
    ("W", "RH"): (0.510, 0.015),
    ("W", "AG"): (0.555, 0.012),
    ("W", "AL"): (0.485, 0.0175),
}

#: Tube output per mAs at 1 m and 28 kV (uGy/mAs), and the kV exponent.
_OUTPUT = {
    ("MO", "MO"): (22.0, 3.0),
    ("MO", "RH"): (19.0, 3.0),
    ("RH", "RH"): (18.0, 3.0),
    ("RH", "AG"): (17.0, 3.0),
    ("W", "RH"): (13.0, 2.8),
    ("W", "AG"): (14.5, 2.8),
    ("W", "AL"): (24.0, 2.6),
}


def g_factor(thickness_mm: float, hvl: float) -> float:
    """Approximate Dance g factor (mGy/mGy) for a 50 % glandular breast."""
    lt = math.log(max(thickness_mm, 20.0) / 10.0)
    h = min(max(hvl, 0.25), 0.75)
    a, b, c, d, e = _G_FIT
    return math.exp(a + b * lt + c * h + d * h * lt + e * lt * lt)


def c_factor(thickness_mm: float) -> float:
    """Rough c factor for typical glandularity of women aged 50-64."""
    return min(1.2, max(0.88, 1.0 + 0.0042 * (thickness_mm - 40.0)))


def s_factor(target: str, filt: str) -> float:
    """Spectrum factor s (1.0 when unknown)."""
    return _S_FACTOR.get((target, filt), 1.0)


def hvl_mm(kvp: float, target: str, filt: str) -> float:
    """Half value layer (mm Al) for a kV and target/filter."""
    h28, slope = _HVL[(target, filt)]
    return h28 + slope * (kvp - 28.0)


def tube_output(kvp: float, target: str, filt: str) -> float:
    """Air kerma per mAs at 1 m (uGy/mAs)."""
    y28, n = _OUTPUT[(target, filt)]
    return y28 * (kvp / 28.0) ** n


# --------------------------------------------------------------------------
# Random helpers
# --------------------------------------------------------------------------
def uid_from_rng(rng: np.random.Generator) -> str:
    """Return a UID that is unique yet reproducible from the generator state.

    Same form as ``pydicom.uid.generate_uid(prefix=None)`` (``2.25.`` and
    the integer of a version-4 UUID, PS3.5 B.2), but the 122 random bits
    come from ``rng``: the same seed gives the same UIDs, distinct draws
    never collide in practice.
    """
    return uuid_uid(int.from_bytes(rng.bytes(16), "big"))


def uuid_uid(bits: int) -> str:
    """``2.25.`` UID of the version-4 UUID built from 128 bits."""
    return f"2.25.{uuid.UUID(int=bits & ((1 << 128) - 1), version=4).int}"


def stable_uid(*keys: object) -> str:
    """A UID that depends only on ``keys`` (unit identities, constants)."""
    digest = hashlib.sha256("|".join(map(str, keys)).encode()).digest()
    return uuid_uid(int.from_bytes(digest[:16], "big"))


def stable_rng(*keys: object) -> np.random.Generator:
    """A generator seeded from the given keys (independent of any run seed)."""
    digest = hashlib.sha256("|".join(map(str, keys)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))
