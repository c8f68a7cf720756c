"""Planning a screening study: the woman, her views and the exposures the vendor's AEC chooses.

:func:`plan_study` draws a :class:`~srdose.synth.model.Study` from a vendor
profile (:mod:`srdose.synth.vendors`) and the exposure model of
:mod:`srdose.synth.model`. It lives apart from both because it needs both:
the vendor profiles are built on the model's records.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass

import numpy as np

from . import vendors as _vendors
from .model import (
    Event,
    Patient,
    Study,
    c_factor,
    g_factor,
    hvl_mm,
    s_factor,
    tube_output,
    uid_from_rng,
)
from .names import make_accession, make_patient_id, make_person_name

__all__ = ["DATE_RANGE", "plan_study"]


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


def _plan_views(
    rng: np.random.Generator, profile: _vendors.VendorProfile, kind: str, order: tuple[tuple[str, str], ...], opts: dict
) -> list[_View]:
    """Sequence of exposures for a study of the given kind."""
    thick = _breast_thicknesses(rng)
    views: list[_View] = []
    repeat_p = opts.get("repeat_rate", 0.08)
    extra_p = opts.get("extra_view_rate", 0.05)

    def add(
        lat: str, view: str, mode: str, gap: float, repeat: bool = False, t: float | None = None, f: float | None = None
    ) -> None:
        views.append(
            _View(
                lat,
                view,
                mode,
                thick[(lat, view)] if t is None else t,
                _force(rng, view) if f is None else f,
                gap,
                repeat,
            )
        )

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
        views.insert(
            at,
            _View(
                src.laterality,
                src.view,
                src.mode,
                t,
                _force(rng, src.view),
                float(rng.uniform(40.0, 90.0)),
                repeat=True,
            ),
        )
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
        v = _View(
            src.laterality, src.view, "2D", src.thickness, src.force, float(rng.uniform(20.0, 60.0)), zero_dose=True
        )
        views.append(v)
    return views


def _make_event(
    rng: np.random.Generator, profile: _vendors.VendorProfile, unit: _vendors.Unit, v: _View, start: _dt.datetime
) -> Event:
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
        uid="",
        start=start,
        laterality=v.laterality,
        view=v.view,
        mode=mode,
        protocol=profile.protocol_name(mode, v.view, v.laterality, v.zero_dose),
        thickness_mm=t,
        force_n=round(v.force, 1),
        target=target,
        filter=filt,
        filter_mm=filt_mm,
        kvp=kv,
        ma=ma,
        mas=mas,
        exposure_time_ms=exposure_time,
        hvl_mm=hvl,
        esak_mgy=k_surface,
        k_ref_mgy=k_ref,
        agd_mgy=agd,
        sid_mm=sid,
        positioner_angle=angle,
        angle_start=a0,
        angle_end=a1,
        pulses=pulses,
        zero_dose=v.zero_dose,
        repeat=v.repeat,
        n_projections=n_proj,
        support_gap_mm=gap,
    )


_PLAN_OPTIONS = frozenset({"repeat_rate", "extra_view_rate", "zero_agd_rate", "date_range", "age_range"})


def plan_study(
    vendor: str,
    rng: np.random.Generator,
    unit: int | _vendors.Unit = 0,
    *,
    kind: str | None = None,
    dbt_fraction: float | None = None,
    index: int = 0,
    **opts,
) -> Study:
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
        vendor=vendor,
        unit=u,
        patient=patient,
        study_uid=study_uid,
        series_uid=series_uid,
        sop_uid=sop_uid,
        accession=accession,
        study_id=str(int(rng.integers(1, 99999))),
        study_datetime=when,
        content_datetime=content,
        description=profile.study_description(kind),
        kind=kind,
        events=events,
        referring_physician=referring,
        index=index,
    )
