"""Vendor-neutral model of a screening study: the woman, her breasts, the exposures.

A study is planned here first (:func:`plan_study`) as plain dataclasses
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

from .names import make_accession, make_patient_id, make_person_name

if TYPE_CHECKING:  # pragma: no cover
    from . import vendors as _vendors

__all__ = [
    "Patient",
    "Pulse",
    "Event",
    "Study",
    "plan_study",
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
    unit: "_vendors.Unit"
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
            out.append({
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
            })
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
    ("MO", "MO"): 1.000, ("MO", "RH"): 1.017, ("RH", "RH"): 1.061,
    ("RH", "AG"): 1.06, ("W", "RH"): 1.042, ("W", "AG"): 1.042, ("W", "AL"): 1.06,
}

#: HVL (mm Al) at 28 kV and its slope per kV, by target/filter.
_HVL = {
    ("MO", "MO"): (0.345, 0.011), ("MO", "RH"): (0.405, 0.011),
    ("RH", "RH"): (0.425, 0.011), ("RH", "AG"): (0.470, 0.012),
    ("W", "RH"): (0.510, 0.015), ("W", "AG"): (0.555, 0.012),
    ("W", "AL"): (0.485, 0.0175),
}

#: Tube output per mAs at 1 m and 28 kV (uGy/mAs), and the kV exponent.
_OUTPUT = {
    ("MO", "MO"): (22.0, 3.0), ("MO", "RH"): (19.0, 3.0), ("RH", "RH"): (18.0, 3.0),
    ("RH", "AG"): (17.0, 3.0), ("W", "RH"): (13.0, 2.8), ("W", "AG"): (14.5, 2.8),
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


def _age_on(birth: _dt.date, on: _dt.date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def _birth_date_for_age(rng: np.random.Generator, study_date: _dt.date, age: int) -> _dt.date:
    """A birth date giving exactly ``age`` completed years on ``study_date``."""
    try:
        latest = study_date.replace(year=study_date.year - age)
    except ValueError:  # 29 February
        latest = study_date.replace(year=study_date.year - age, day=28)
    birth = latest - _dt.timedelta(days=int(rng.integers(0, 365)))
    while _age_on(birth, study_date) > age:
        birth += _dt.timedelta(days=1)
    while _age_on(birth, study_date) < age:
        birth -= _dt.timedelta(days=1)
    return birth


def _study_datetime(rng: np.random.Generator, start: _dt.date, end: _dt.date) -> _dt.datetime:
    """A weekday in [start, end] during screening hours."""
    span = (end - start).days
    while True:
        day = start + _dt.timedelta(days=int(rng.integers(0, span + 1)))
        if day.weekday() < 5:
            break
    seconds = int(rng.integers(8 * 3600, 17 * 3600))
    return _dt.datetime.combine(day, _dt.time()) + _dt.timedelta(seconds=seconds)


# --------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------
#: Default date range of synthetic studies.
DATE_RANGE = (_dt.date(2023, 1, 2), _dt.date(2025, 6, 30))


@dataclass
class _View:
    laterality: str
    view: str
    mode: str
    thickness: float
    force: float
    gap_s: float  # seconds after the previous event
    repeat: bool = False
    zero_dose: bool = False


def _breast_thicknesses(rng: np.random.Generator) -> dict[tuple[str, str], float]:
    """Compressed thickness per (laterality, view).

    Breast size ~ N(60, 13) mm; MLO compresses a few mm thicker than CC,
    and the two breasts differ a little.
    """
    base = float(rng.normal(60.0, 13.0))
    out = {}
    for lat in ("R", "L"):
        b = base + float(rng.normal(0.0, 2.5))
        for view, shift in (("CC", -2.5), ("MLO", 2.5), ("ML", 3.0), ("LM", 3.0), ("XCCL", -1.5)):
            out[(lat, view)] = float(np.clip(b + shift + rng.normal(0.0, 1.5), 20.0, 110.0))
    return out


def _force(rng: np.random.Generator, view: str) -> float:
    f = rng.normal(95.0, 18.0) + (8.0 if view in ("MLO", "ML", "LM") else 0.0)
    return float(np.clip(f, 60.0, 150.0))


def _plan_views(rng: np.random.Generator, profile: "_vendors.VendorProfile", kind: str,
                order: tuple[tuple[str, str], ...], opts: dict) -> list[_View]:
    """Sequence of exposures for a study of the given kind."""
    thick = _breast_thicknesses(rng)
    views: list[_View] = []
    repeat_p = opts.get("repeat_rate", 0.08)
    extra_p = opts.get("extra_view_rate", 0.05)

    def add(lat: str, view: str, mode: str, gap: float, repeat: bool = False,
            t: float | None = None, f: float | None = None) -> None:
        views.append(_View(lat, view, mode, thick[(lat, view)] if t is None else t,
                           _force(rng, view) if f is None else f, gap, repeat))

    for lat, view in order:
        gap = float(rng.uniform(20.0, 60.0)) if views else float(rng.uniform(30.0, 120.0))
        if kind == "2D":
            add(lat, view, "2D", gap)
        elif kind == "DBT":
            add(lat, view, "DBT", gap)
        else:  # COMBO: the vendor's combo order under one compression
            first, second = profile.combo_order
            add(lat, view, first, gap)
            prev = views[-1]
            add(lat, view, second, float(rng.uniform(6.0, 15.0)), t=prev.thickness, f=prev.force)

    # An occasional repeat of a view (new compression, a little different).
    n_extra = 0
    if rng.random() < repeat_p:
        n_extra += 1
        if rng.random() < 0.3:
            n_extra += 1
    for _ in range(n_extra):
        src = views[int(rng.integers(0, len(views)))]
        t = float(np.clip(src.thickness + rng.normal(0.0, 2.5), 20.0, 110.0))
        at = views.index(src) + 1
        views.insert(at, _View(src.laterality, src.view, src.mode, t, _force(rng, src.view),
                               float(rng.uniform(40.0, 90.0)), repeat=True))
    # An occasional extra view (ML, LM or XCCL) at the end.
    if rng.random() < extra_p:
        lat = "R" if rng.random() < 0.5 else "L"
        view = str(rng.choice(["ML", "LM", "XCCL"]))
        mode = "DBT" if kind == "DBT" else "2D"
        add(lat, view, mode, float(rng.uniform(40.0, 120.0)))
    # Hologic: rare 20 kV exposures reported with AGD = HVL = K = 0.
    zero_p = opts.get("zero_agd_rate", profile.zero_agd_rate)
    if zero_p and rng.random() < zero_p:
        src = views[int(rng.integers(0, len(views)))]
        v = _View(src.laterality, src.view, "2D", src.thickness, src.force,
                  float(rng.uniform(20.0, 60.0)), zero_dose=True)
        views.append(v)
    return views


def _make_event(rng: np.random.Generator, profile: "_vendors.VendorProfile",
                unit: "_vendors.Unit", v: _View, start: _dt.datetime) -> Event:
    """Turn a planned view into an exposure with self-consistent physics."""
    t = round(v.thickness, profile.thickness_decimals)
    mode = v.mode
    if v.zero_dose:
        target, filt, filt_mm, kv = profile.zero_dose_technique(unit, rng)
    else:
        target, filt, filt_mm, kv = profile.technique(unit, mode, t, rng)
    hvl = hvl_mm(kv, target, filt) + unit.hvl_offset

    # AGD around a thickness trend (1.45 mGy at 55 mm), per vendor and mode.
    agd = 1.45 * math.exp(0.0175 * (t - 55.0)) * profile.agd_factor * unit.dose_factor
    if mode == "DBT":
        agd *= profile.dbt_agd_ratio
    agd *= float(rng.lognormal(0.0, 0.08))
    T = profile.dbt_T if mode == "DBT" else 1.0
    factors = g_factor(t, hvl) * c_factor(t) * s_factor(target, filt) * T
    k_surface = agd / factors

    sid = unit.sid_mm
    gap = unit.support_gap_mm
    d_surface = sid - gap - t
    y = tube_output(kv, target, filt) * unit.output_factor  # uGy/mAs at 1 m
    mas = k_surface * 1000.0 / (y * (1000.0 / d_surface) ** 2)
    if v.zero_dose:
        # As in the real Hologic file: 20 kV, 40 mA, ~450 ms.
        mas = float(rng.uniform(16.0, 19.0))

    angle = profile.positioner_angle(v.view, v.laterality, rng)
    a0 = a1 = None
    if mode == "DBT":
        a0, a1 = profile.sweep(angle, rng)
    ma, pulses, n_proj = profile.pulses(unit, mode, kv, mas, t, a0, a1, rng)
    # The vendor's rounding of the pulses is the truth from here on.
    mas = sum(p.mas for p in pulses)
    exposure_time = sum(p.width_ms for p in pulses)
    k_surface = y * mas * (1000.0 / d_surface) ** 2 / 1000.0
    d_ref = sid - gap - 42.0
    k_ref = y * mas * (1000.0 / d_ref) ** 2 / 1000.0
    agd = k_surface * factors
    return Event(
        uid="", start=start, laterality=v.laterality, view=v.view, mode=mode,
        protocol=profile.protocol_name(mode, v.view, v.laterality, v.zero_dose),
        thickness_mm=t, force_n=round(v.force, 1), target=target, filter=filt,
        filter_mm=filt_mm, kvp=kv, ma=ma, mas=mas, exposure_time_ms=exposure_time,
        hvl_mm=hvl, esak_mgy=k_surface, k_ref_mgy=k_ref, agd_mgy=agd, sid_mm=sid,
        positioner_angle=angle, angle_start=a0, angle_end=a1, pulses=pulses,
        zero_dose=v.zero_dose, repeat=v.repeat, n_projections=n_proj,
        support_gap_mm=gap,
    )


_PLAN_OPTIONS = frozenset({"repeat_rate", "extra_view_rate", "zero_agd_rate", "date_range",
                           "age_range"})


def plan_study(vendor: str, rng: np.random.Generator, unit: int | "_vendors.Unit" = 0, *,
               kind: str | None = None, dbt_fraction: float | None = None,
               index: int = 0, **opts) -> Study:
    """Plan one synthetic screening study.

    Parameters
    ----------
    vendor : str
        One of :data:`srdose.synth.VENDORS`.
    rng : numpy.random.Generator
        Source of every random choice (seed it for reproducible output).
    unit : int or Unit
        Unit index (0-based) or a :class:`~srdose.synth.vendors.Unit`.
    kind : {"2D", "DBT", "COMBO"}, optional
        Force the study type; drawn from ``dbt_fraction`` otherwise.
    dbt_fraction : float, optional
        Probability that a study uses tomosynthesis (DBT-only or combo);
        the vendor's default when None.
    index : int
        Study number within a batch (used in names only).
    **opts
        ``repeat_rate``, ``extra_view_rate``, ``zero_agd_rate``,
        ``date_range`` (two dates), ``age_range`` (two ints).

    Returns
    -------
    Study
    """
    from . import vendors as _vendors  # vendors imports this module

    unknown = set(opts) - _PLAN_OPTIONS
    if unknown:
        raise TypeError(f"unknown study option(s): {', '.join(sorted(unknown))}")
    profile = _vendors.get_profile(vendor)
    u = unit if isinstance(unit, _vendors.Unit) else _vendors.make_unit(vendor, int(unit))

    # Draw the patient first so the same seed gives the same woman whatever
    # study options follow.
    start, end = opts.get("date_range", DATE_RANGE)
    when = _study_datetime(rng, start, end)
    lo, hi = opts.get("age_range", (50, 70))
    age = int(rng.integers(lo, hi + 1))
    patient = Patient(
        name=make_person_name(rng, u.locale),
        patient_id=make_patient_id(rng, u.locale),
        birth_date=_birth_date_for_age(rng, when.date(), age),
        age_years=age,
    )
    accession = make_accession(rng, u, when)

    if kind is None:
        p_dbt = profile.dbt_fraction if dbt_fraction is None else dbt_fraction
        if rng.random() < p_dbt:
            kind = "COMBO" if rng.random() < profile.combo_share else "DBT"
        else:
            kind = "2D"
    kind = kind.upper()
    if kind not in ("2D", "DBT", "COMBO"):
        raise ValueError(f"unknown study kind {kind!r}")
    if not u.dbt_capable:
        kind = "2D"

    views = _plan_views(rng, profile, kind, u.view_order, opts)
    events: list[Event] = []
    t = when
    for v in views:
        t = t + _dt.timedelta(seconds=round(v.gap_s))
        ev = _make_event(rng, profile, u, v, t)
        ev.uid = uid_from_rng(rng)
        events.append(ev)

    study_uid = uid_from_rng(rng)
    series_uid = uid_from_rng(rng)
    sop_uid = uid_from_rng(rng)
    # Image references: one presentation image per 2D event; the DBT
    # objects per vendor (reconstruction or projections).
    img_series = {mode: uid_from_rng(rng) for mode in ("2D", "DBT")}
    for ev in events:
        ev.image_series_uid = img_series[ev.mode]
        n = profile.images_per_event(ev)
        ev.image_uids = [uid_from_rng(rng) for _ in range(n)]

    content = events[-1].start + _dt.timedelta(seconds=int(rng.integers(60, 300)))
    referring = make_person_name(rng, u.locale, female=None) if profile.referring_physician else ""
    return Study(
        vendor=vendor, unit=u, patient=patient, study_uid=study_uid, series_uid=series_uid,
        sop_uid=sop_uid, accession=accession, study_id=str(int(rng.integers(1, 99999))),
        study_datetime=when, content_datetime=content,
        description=profile.study_description(kind), kind=kind, events=events,
        referring_physician=referring, index=index,
    )
