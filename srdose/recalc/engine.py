"""The recalculation engine: events in, Dance-model MGD out, vectorised.

Two methods per event (issue #6):

``measured``
    The unit has a physics set valid on the study date with measurements of
    the event's target/filter: K from the fitted tube output Y(kV), the
    event's mAs and the set's geometry; HVL from the fitted HVL(kV).
``rdsr``
    Otherwise: the RDSR's own entrance exposure at its reference point,
    moved to the breast surface with the inverse-square law, and the RDSR's
    HVL.

Then MGD = K·g·c·s (2D) or K·g·c·s·T (DBT) with the factor set's tables.
Anything missing or doubtful is a named flag on the event, never a crash
and never a guess.

Vendor rules (each has a test)
------------------------------
* Reference point. "Entrance exposure to a 4.2 cm breast thickness"
  (Hologic) is 42 mm above the breast support whatever the thickness; "At
  Surface of Patient" (GE, IMS Giotto, ...) is the breast surface. The height
  is read from the RDSR's text (``N cm`` / ``N mm`` / "surface"); when the
  text is absent the maker's known definition is used and flagged
  ``reference_point:vendor_rule``. Moving the kerma needs the support gap,
  which the RDSR lacks: it comes from the unit's physics set when there is
  one, else from ``[recalc] rdsr_support_gap_mm`` (flagged
  ``assumed:support_gap_mm``; K changes by < 1.5 % per 25 mm of gap error
  for 20-90 mm breasts at FDD 700 mm).
* Hologic 20 kV events with AGD = HVL = entrance exposure = 0: the parser
  stores those as missing; the rdsr method flags ``missing:hvl_mm`` and
  ``missing:entrance_exposure_mgy`` and gives no MGD; the ratio is not
  formed (``missing:agd_mgy``).
* GE pre-pulse. The event's mAs is the sum over all its pulses, pre-pulse
  included. PS3.16 TID 10003 reports the *irradiation event*, and the
  pre-pulse is part of it: it is emitted through the breast in the same
  position, before the main pulse (it is how the AEC measures the breast),
  so it delivers dose. K is computed at the main pulse's kV (the kV of the
  two differ by ~0.1 kV in the public Pristina file). The pre-pulse is
  ~0.6 % of the mAs there (2 mA × 51 ms against 30.5 mA × 558 ms).
* IMS Giotto DBT: 11 projections, the first at about half the mAs; K_T is
  from the total mAs of all 11 (Dance 2011: total tube loading); the
  uneven weights are in T (the Monte Carlo table's sweep uses them).
* Siemens DBT reporting one projection (OpenREM issue #780): a Siemens DBT
  event whose mAs is below ``[recalc] dbt_min_sweep_mas`` (default 20 mAs),
  or whose mAs-derived K is under a third of the K its own entrance exposure
  implies, is flagged ``dbt_mas_one_projection``. Rationale: a full sweep of
  25 projections delivering a typical 1-2.5 mGy needs tens to hundreds of
  mAs, one projection 1/25 of that (2-8 mAs); 20 mAs lies between. With the
  measured method the suspect mAs is not used: the RDSR's entrance exposure
  is (method ``rdsr``, flag ``fallback:rdsr``) when present; nothing is
  scaled by a guessed number of projections.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np

from srdose.physics import dance
from srdose.physics.factors import FactorSet, system_key

ENGINE_VERSION = "1"

METHODS = ("measured", "rdsr")


@dataclass(frozen=True)
class Params:
    """Settings of a recalculation (``[recalc]`` in the config)."""

    ratio_band: float = 0.25
    kv_margin: float = 1.0
    fit_degree: int = 2
    rdsr_support_gap_mm: float = 0.0
    dbt_min_sweep_mas: float = 20.0

    @classmethod
    def from_settings(cls, section: dict) -> "Params":
        return cls(ratio_band=float(section["ratio_band"]), kv_margin=float(section["kv_margin"]),
                   fit_degree=int(section["fit_degree"]),
                   rdsr_support_gap_mm=float(section["rdsr_support_gap_mm"]),
                   dbt_min_sweep_mas=float(section["dbt_min_sweep_mas"]))

    def digest(self) -> str:
        text = json.dumps({"engine": ENGINE_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class Flags:
    """Named flags per event as bits of an int64 (up to 63 distinct names)."""

    def __init__(self, n: int):
        self.bits = np.zeros(n, dtype=np.int64)
        self.names: list[str] = []

    def add(self, name: str, mask) -> None:
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        if name not in self.names:
            if len(self.names) >= 63:
                name = "more_flags"
                if name not in self.names:
                    self.names.append(name)
            else:
                self.names.append(name)
        self.bits[mask] |= np.int64(1) << np.int64(self.names.index(name))

    def has(self, name: str) -> np.ndarray:
        if name not in self.names:
            return np.zeros(self.bits.shape, dtype=bool)
        return (self.bits >> np.int64(self.names.index(name))) & 1 == 1

    def strings(self, index=None) -> list[Optional[str]]:
        """';'-joined flag names per event (None when none)."""
        bits = self.bits if index is None else self.bits[index]
        uniq, inv = np.unique(bits, return_inverse=True)
        text = []
        for b in uniq.tolist():
            names = [n for k, n in enumerate(self.names) if (b >> k) & 1]
            text.append(";".join(names) or None)
        return [text[i] for i in inv.tolist()]

    def counts(self) -> dict[str, int]:
        return {n: int(self.has(n).sum()) for n in self.names}


# --- physics: fits and their lookup ---------------------------------------------------------


@dataclass
class PhysicsFits:
    """The fits of all stored physics sets, stacked for vectorised use."""

    sets: list[dict]  # as returned by srdose.store.recalc.physics_sets (with 'points')
    beam_fits: list[tuple]  # (set index, target, filter, filter_mm, output KvFit, hvl KvFit)
    coef_out: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    coef_hvl: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    kv_range: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))

    @classmethod
    def build(cls, sets: list[dict], degree: int = 2) -> "PhysicsFits":
        fits = []
        for si, s in enumerate(sets):
            beams: dict[tuple, list] = {}
            for p in s["points"]:
                beams.setdefault((p["target"], p["filter_material"], p["filter_mm"]), []).append(p)
            for (target, filt, mm), pts in sorted(beams.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)):
                kv = [p["kvp"] for p in pts]
                fits.append((si, target, filt, mm, dance.fit_kv(kv, [p["output_ugy_per_mas"] for p in pts], degree),
                             dance.fit_kv(kv, [p["hvl_mm"] for p in pts], degree)))
        pf = cls(sets, fits)
        if fits:
            pf.coef_out = np.array([f[4].coef for f in fits])
            pf.coef_hvl = np.array([f[5].coef for f in fits])
            pf.kv_range = np.array([(f[4].kv_min, f[4].kv_max) for f in fits])
        return pf

    def fit_for(self, set_index: int, target: Optional[str], filt: Optional[str],
                filter_mm: Optional[float]) -> tuple[int, bool]:
        """Index of the fit for a beam in a set (-1 none) and whether the filter mm was the nearest."""
        t, f = (target or "").upper(), (filt or "").upper()
        cands = [k for k, fit in enumerate(self.beam_fits)
                 if fit[0] == set_index and fit[1].upper() == t and fit[2].upper() == f]
        if not cands:
            return -1, False
        if len(cands) == 1:
            return cands[0], False
        if filter_mm is not None and not np.isnan(filter_mm):
            exact = [k for k in cands if self.beam_fits[k][3] is not None and abs(self.beam_fits[k][3] - filter_mm) < 1e-3]
            if exact:
                return exact[0], False
            with_mm = [k for k in cands if self.beam_fits[k][3] is not None]
            if with_mm:
                return min(with_mm, key=lambda k: abs(self.beam_fits[k][3] - filter_mm)), True
        return cands[0], True


def _norm(text: Optional[str]) -> str:
    return re.sub(r"[^a-z0-9]", "", (text or "").lower())


def applicable_sets(sets: list[dict], manufacturer: list, serial: list, study_date: list) -> np.ndarray:
    """Index into ``sets`` of the set valid on each event's study date (-1: none).

    A set applies to a unit with its serial (and its manufacturer, when the
    physics file gives one) on dates from ``valid_from`` to ``valid_to``
    (inclusive, open when empty); of several, the latest ``valid_from`` wins.
    """
    n = len(serial)
    out = np.full(n, -1, dtype=np.int64)
    if not sets or n == 0:
        return out
    unit_code, units = _codes(list(zip(manufacturer, serial)))
    date_code, date_keys = _codes(study_date)
    dates = np.array([int(d) if d and str(d).isdigit() else -1 for d in date_keys], dtype=np.int64)[date_code]
    order = sorted(range(len(sets)), key=lambda k: (sets[k]["valid_from"], sets[k]["id"]))
    for u, (m, s) in enumerate(units):
        mine = [k for k in order if sets[k]["serial"] == s
                and (not sets[k]["manufacturer"] or _norm(sets[k]["manufacturer"]) == _norm(m))]
        if not mine:
            continue
        idx = np.nonzero(unit_code == u)[0]
        d = dates[idx]
        for k in mine:  # ascending valid_from: later sets overwrite earlier ones
            vf = int(sets[k]["valid_from"])
            vt = int(sets[k]["valid_to"]) if sets[k]["valid_to"] else 99999999
            hit = (d >= vf) & (d <= vt)
            out[idx[hit]] = k
    return out


# --- reference point ----------------------------------------------------------------------------

#: Reference-point height above the breast support (mm; NaN = the breast
#: surface) by maker, when the RDSR does not say (../shared/physics/README.md,
#: "Vendor facts": Hologic 4.2 cm breast thickness; GE and IMS Giotto at the
#: surface of the patient).
VENDOR_REFERENCE_POINT = {"hologic": 42.0, "ge": np.nan, "giotto": np.nan}


def reference_point_height(text: Optional[str], manufacturer: Optional[str]) -> tuple[float, str]:
    """(height above the support in mm, NaN for the surface; 'rdsr' | 'vendor_rule' | 'unknown')."""
    t = (text or "").lower()
    if t:
        m = re.search(r"(\d+(?:\.\d+)?)\s*(cm|mm)\b", t)
        if m:
            return float(m.group(1)) * (10.0 if m.group(2) == "cm" else 1.0), "rdsr"
        if "surface" in t:
            return float("nan"), "rdsr"
    key = system_key(manufacturer)
    if key in VENDOR_REFERENCE_POINT:
        return VENDOR_REFERENCE_POINT[key], "vendor_rule"
    return float("nan"), "unknown"


# --- the prepared batch ------------------------------------------------------------------------


@dataclass
class Batch:
    """Events as arrays, strings already turned into codes (see :func:`prepare`)."""

    n: int
    is_dbt: np.ndarray
    kvp: np.ndarray
    mas: np.ndarray
    thickness_mm: np.ndarray
    hvl_rdsr: np.ndarray
    k_rp: np.ndarray  # entrance exposure at the RDSR's reference point (mGy)
    rp_height_mm: np.ndarray  # NaN: at the breast surface
    rp_status: np.ndarray  # 0 rdsr, 1 vendor rule, 2 unknown
    sdd_mm: np.ndarray
    agd: np.ndarray
    age: np.ndarray
    siemens: np.ndarray
    acquisition_missing: np.ndarray
    beam: np.ndarray  # code into beams
    beams: list  # (target, filter, filter_mm)
    system: np.ndarray  # code into systems
    systems: list
    set_index: np.ndarray  # applicable physics set (-1 none)
    fit_index: np.ndarray  # fit of the event's beam in that set (-1 none)
    fit_nearest_mm: np.ndarray
    fdd_mm: np.ndarray
    gap_mm: np.ndarray
    d_ref_mm: np.ndarray

    def take(self, idx) -> "Batch":
        """The events at ``idx`` (codes and lists shared)."""
        kw = {}
        for name, value in self.__dict__.items():
            if isinstance(value, np.ndarray):
                kw[name] = value[idx]
            else:
                kw[name] = value
        kw["n"] = int(kw["is_dbt"].shape[0])
        return Batch(**kw)


def _codes(keys: list) -> tuple[np.ndarray, list]:
    table: dict = {}
    codes = np.fromiter((table.setdefault(k, len(table)) for k in keys), dtype=np.int64, count=len(keys))
    return codes, list(table)


def prepare(inputs: dict, fits: PhysicsFits) -> Batch:
    """Turn :func:`srdose.store.recalc.recalc_inputs` output into a :class:`Batch`."""
    n = len(inputs["event_id"])
    manu = inputs["manufacturer"]
    manu_code, manu_keys = _codes(manu)
    acq_code, acq_keys = _codes(inputs["acquisition"])
    is_dbt = np.array([a == "DBT" for a in acq_keys], dtype=bool)[acq_code] if n else np.zeros(0, bool)
    acq_missing = np.array([a is None for a in acq_keys], dtype=bool)[acq_code] if n else np.zeros(0, bool)
    fmm = inputs["filter_thickness_mm"]
    mm_keys = np.where(np.isnan(fmm), -1.0, np.round(fmm, 4)).tolist()
    beam_raw, beam_raw_keys = _codes(list(zip(inputs["anode"], inputs["filter_material"], mm_keys)))
    beam_keys = [(a, f, None if m < 0 else m) for a, f, m in beam_raw_keys]
    beam, beams = beam_raw, beam_keys
    manu_system = [system_key(m) for m in manu_keys]
    sys_of_manu, systems = _codes(manu_system)
    sys_codes = sys_of_manu[manu_code] if n else np.zeros(0, np.int64)
    rp_codes, rp_keys = _codes(list(zip(inputs["reference_point"], manu_code.tolist())))
    rp_table = [reference_point_height(text, manu_keys[mc]) for text, mc in rp_keys]
    status_code = {"rdsr": 0, "vendor_rule": 1, "unknown": 2}
    rp_height = np.array([h for h, _ in rp_table], dtype=float)[rp_codes] if n else np.zeros(0)
    rp_status = np.array([status_code[s] for _, s in rp_table], dtype=np.int64)[rp_codes] if n else np.zeros(0, np.int64)
    siemens = np.array([k == "siemens" for k in systems], dtype=bool)[sys_codes] if n else np.zeros(0, bool)

    set_index = applicable_sets(fits.sets, manu, inputs["serial"], inputs["study_date"])
    # fit per (set, beam): few distinct pairs
    pair_codes, pairs = _codes(list(zip(set_index.tolist(), beam.tolist())))
    pair_fit = np.full(len(pairs), -1, dtype=np.int64)
    pair_near = np.zeros(len(pairs), dtype=bool)
    for k, (si, b) in enumerate(pairs):
        if si >= 0:
            target, filt, mm = beams[b]
            pair_fit[k], pair_near[k] = fits.fit_for(si, target, filt, mm)
    fit_index = pair_fit[pair_codes] if n else np.zeros(0, np.int64)
    fit_near = pair_near[pair_codes] if n else np.zeros(0, bool)
    geo = np.array([[s["fdd_mm"], s["support_gap_mm"], s["d_ref_mm"]] for s in fits.sets] + [[np.nan] * 3],
                   dtype=float)
    g = geo[np.where(set_index >= 0, set_index, len(fits.sets))]
    return Batch(
        n=n, is_dbt=is_dbt, kvp=inputs["kvp"], mas=inputs["mas"], thickness_mm=inputs["compressed_thickness_mm"],
        hvl_rdsr=inputs["hvl_mm"], k_rp=inputs["entrance_exposure_mgy"], rp_height_mm=rp_height,
        rp_status=rp_status, sdd_mm=inputs["source_detector_mm"], agd=inputs["agd_mgy"], age=inputs["age_years"],
        siemens=siemens, acquisition_missing=acq_missing, beam=beam, beams=beams, system=sys_codes,
        systems=systems, set_index=set_index, fit_index=fit_index, fit_nearest_mm=fit_near,
        fdd_mm=g[:, 0], gap_mm=g[:, 1], d_ref_mm=g[:, 2],
    )


# --- the numpy core -------------------------------------------------------------------------------


@dataclass
class Result:
    """Per-event results of :func:`compute` (NaN: not computed)."""

    method: np.ndarray  # 0 measured, 1 rdsr
    mgd: np.ndarray
    k: np.ndarray
    hvl: np.ndarray
    g: np.ndarray
    c: np.ndarray
    s: np.ndarray
    t: np.ndarray  # NaN for 2D
    ratio: np.ndarray
    flags: Flags


def _clamp_flags(flags: Flags, name: str, r: dance.Interpolated, where: np.ndarray) -> None:
    flags.add(f"clamped:{name}:hvl", where & r.clamped_hvl)
    flags.add(f"clamped:{name}:thickness", where & r.clamped_thickness)
    flags.add(f"suspect_cell:{name}", where & r.suspect)


def compute(b: Batch, fits: PhysicsFits, fs: FactorSet, params: Params) -> Result:
    """Recalculate every event of the batch (pure numpy; no I/O)."""
    n = b.n
    flags = Flags(n)
    nan = np.full(n, np.nan)
    t_mm = b.thickness_mm
    t_cm = t_mm / 10.0

    # --- method and K ---
    measured = b.fit_index >= 0
    flags.add("fallback:rdsr:no_physics_for_beam", (b.set_index >= 0) & ~measured)
    flags.add("physics:nearest_filter_mm", measured & b.fit_nearest_mm)
    if fits.beam_fits:
        y, outside = dance.evaluate_fits(fits.coef_out, fits.kv_range, b.fit_index, b.kvp, params.kv_margin)
        hvl_fit, _ = dance.evaluate_fits(fits.coef_hvl, fits.kv_range, b.fit_index, b.kvp, params.kv_margin)
        flags.add("kv_outside_measured", outside)
        k_meas = dance.kerma_from_output(y, b.mas, b.d_ref_mm, b.fdd_mm, b.gap_mm, t_mm)
    else:
        hvl_fit, k_meas = nan, nan

    # rdsr method: entrance exposure moved from the reference point to the breast surface
    has_set = b.set_index >= 0
    gap = np.where(has_set, b.gap_mm, params.rdsr_support_gap_mm)
    at_height = ~np.isnan(b.rp_height_mm)
    d_surface = b.sdd_mm - gap - t_mm
    d_rp = b.sdd_mm - gap - b.rp_height_mm
    k_rdsr = np.where(at_height, dance.move_kerma(b.k_rp, d_rp, d_surface), b.k_rp)
    k_rdsr = np.where(b.rp_status == 2, np.nan, k_rdsr)

    # Siemens DBT reporting the mAs of one projection (OpenREM #780)
    with np.errstate(invalid="ignore"):
        one_proj = b.is_dbt & b.siemens & ((b.mas < params.dbt_min_sweep_mas) | (k_meas < k_rdsr / 3.0))
    flags.add("dbt_mas_one_projection", one_proj)
    swap = measured & one_proj & np.isfinite(k_rdsr)
    flags.add("fallback:rdsr", swap)
    measured = measured & ~swap
    rdsr = ~measured

    k = np.where(measured, k_meas, k_rdsr)
    hvl = np.where(measured, hvl_fit, b.hvl_rdsr)
    flags.add("reference_point:vendor_rule", rdsr & (b.rp_status == 1))
    flags.add("assumed:support_gap_mm", rdsr & at_height & ~has_set)

    # missing inputs, named
    def missing(name, arr, where):
        flags.add(f"missing:{name}", where & np.isnan(arr))

    missing("compressed_thickness_mm", t_mm, np.ones(n, bool))
    missing("kvp", b.kvp, measured)
    missing("mas", b.mas, measured)
    missing("hvl_mm", b.hvl_rdsr, rdsr)
    missing("entrance_exposure_mgy", b.k_rp, rdsr)
    missing("source_detector_mm", b.sdd_mm, rdsr & at_height)
    flags.add("missing:reference_point", rdsr & (b.rp_status == 2))
    flags.add("missing:acquisition", b.acquisition_missing)

    # --- g ---
    if fs.g is None:
        g = nan.copy()
        flags.add("missing_factor:g", np.ones(n, bool))
    else:
        r = dance.interpolate(fs.g, hvl, t_cm)
        g = r.value
        _clamp_flags(flags, "g", r, np.ones(n, bool))

    # --- c: typical breast of the woman's age group (Dance et al. 2000) ---
    group, nearest, no_age = dance.age_group(b.age)
    flags.add("missing:age_years", no_age)
    c = nan.copy()
    for gi, name in enumerate(dance.AGE_GROUPS):
        sel = group == gi
        if not sel.any():
            continue
        flags.add(f"age_outside_groups:used_{name}", sel & nearest)
        grid = fs.c.get(name)
        if grid is None:
            flags.add(f"missing_factor:c:{name}", sel)
            continue
        idx = np.nonzero(sel)[0]
        r = dance.interpolate(grid, hvl[idx], t_cm[idx])
        c[idx] = r.value
        m = np.zeros(n, bool)
        for attr in ("clamped_hvl", "clamped_thickness", "suspect"):
            m[:] = False
            m[idx] = getattr(r, attr)
            flags.add({"clamped_hvl": "clamped:c:hvl", "clamped_thickness": "clamped:c:thickness",
                       "suspect": "suspect_cell:c"}[attr], m)

    # --- s: per target/filter ---
    s = nan.copy()
    for code, (target, filt, mm) in enumerate(b.beams):
        sel = b.beam == code
        if not sel.any():
            continue
        if not target or not filt:
            flags.add("missing:target_filter", sel)
            continue
        sf, note = fs.spectrum_factor(target, filt, mm)
        if sf is None:
            flags.add(f"missing_factor:s:{target}/{filt}", sel)
            continue
        if note:
            flags.add(f"s:{note}", sel)
        if sf.grid.is_constant:
            s[sel] = sf.grid.values[0, 0]
            continue
        idx = np.nonzero(sel)[0]
        r = dance.interpolate(sf.grid, hvl[idx], t_cm[idx])
        s[idx] = r.value
        for attr, fname in (("clamped_hvl", "clamped:s:hvl"), ("clamped_thickness", "clamped:s:thickness")):
            m = np.zeros(n, bool)
            m[idx] = getattr(r, attr)
            flags.add(fname, m)

    # --- T: DBT sweep of the event's system (Dance et al. 2011) ---
    t_factor = nan.copy()
    for code, key in enumerate(b.systems):
        sel = (b.system == code) & b.is_dbt
        if not sel.any():
            continue
        grid = fs.T.get(key)
        if grid is None:
            flags.add(f"missing_factor:T:{key or 'unknown_system'}", sel)
            continue
        if grid.meta.get("unverified"):
            flags.add("T:sweep_geometry_unverified", sel)
        idx = np.nonzero(sel)[0]
        r = dance.interpolate(grid, hvl[idx], t_cm[idx])
        t_factor[idx] = r.value
        for attr, fname in (("clamped_hvl", "clamped:T:hvl"), ("clamped_thickness", "clamped:T:thickness")):
            m = np.zeros(n, bool)
            m[idx] = getattr(r, attr)
            flags.add(fname, m)

    mgd = dance.mgd(k, g, c, s, np.where(b.is_dbt, t_factor, 1.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(b.agd > 0, mgd / b.agd, np.nan)
        flags.add("missing:agd_mgy", ~(b.agd > 0))
        flags.add("ratio_outside_band", np.abs(ratio - 1.0) > params.ratio_band)
    flags.add("no_mgd", np.isnan(mgd))
    return Result(np.where(measured, 0, 1).astype(np.int8), mgd, k, hvl, g, c, s,
                  np.where(b.is_dbt, t_factor, np.nan), ratio, flags)
