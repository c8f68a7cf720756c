"""The recalculation engine: events in, Dance-model MGD out, vectorised.

Two methods per event:

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

Vendor rules (each has a test; the evidence is in docs/vendors.md)
------------------------------------------------------------------
* Reference point. Decided per maker from evidence
  (:data:`VENDOR_REFERENCE_POINT`), overridable per maker or model with
  ``[recalc] reference_point`` after a phantom check. Hologic's "Entrance
  exposure to a 4.2 cm breast thickness" is taken at the breast surface (its
  kerma per mAs follows the breast surface across thicknesses), flagged
  ``assumed:reference_point`` while that rests on inference. An image
  header's entrance dose is at its Distance Source to Entrance (GE writes
  SID − thickness there, without the support gap). Moving a kerma needs the
  support gap: from the unit's physics set, else ``[recalc]
  rdsr_support_gap_mm`` (flagged ``assumed:support_gap_mm``).
* Kerma against mAs, every vendor: where the unit has physics data and the
  RDSR a kerma, the kerma implied by output × mAs is compared with the
  RDSR's; beyond ``[recalc] k_vs_mas_tolerance`` the measured MGD is
  withheld (``inconsistent:k_vs_mas``) and the rdsr method's MGD kept
  (``fallback:rdsr``). GE's DBT per-pulse mA and pulse width sum to about an
  eighth of the mAs its own kerma implies; Siemens DBT RDSRs are said to
  report one projection's mAs (also flagged ``dbt_mas_one_projection`` below
  ``[recalc] dbt_min_sweep_mas``).
* Hologic 20 kV events with AGD = HVL = entrance exposure = 0: stored as
  missing; flagged, no MGD.
* GE pre-pulse: part of the irradiation event (PS3.16 TID 10003), so its mAs
  counts; K at the main pulse's kV.
* Tomosynthesis: T = Σ αᵢ t(θᵢ) over the event's own sweep (positioner
  start/end angles, the projections listed or Number of Pulses, the tube
  loading per projection); a system's documented sweep
  (:mod:`srdose.physics.sweeps`) fills what the RDSR lacks, flagged
  ``assumed:sweep_arc`` / ``assumed:sweep_projections``. K_T is from the
  total mAs of the sweep (Dance 2011).
* Outside every factor table there is no MGD, only ``out_of_table:<factor>:<axis>``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field

import numpy as np

from srdose.columns import CodedColumn
from srdose.config import RecalcSettings
from srdose.physics import dance
from srdose.physics.factors import FactorSet, system_key
from srdose.physics.sweeps import documented_sweep
from srdose.vocab import Acquisition, Method

ENGINE_VERSION = "2"

#: Method names by the code in :attr:`Result.method` (0 measured, 1 rdsr), as stored.
METHODS = (Method.MEASURED.value, Method.RDSR.value)


#: Reference-point rules by maker, decided from evidence (docs/vendors.md):
#: (rule, assumed). ``surface``: the kerma is at the upper breast surface;
#: ``rdsr``: as the RDSR's reference-point text says. ``assumed`` marks a
#: rule that rests on inference; its results carry ``assumed:reference_point``
#: until a physicist confirms or overrides it (``[recalc] reference_point``).
VENDOR_REFERENCE_POINT = {
    # Text "Entrance exposure to a 4.2 cm breast thickness"; kerma per mAs of three
    # otherwise identical sweeps rises +0.43 %/mm with thickness (surface: +0.29 %/mm,
    # fixed point: 0): the breast surface, inferred.
    "hologic": ("surface", True),
    # "At Surface of Patient", and Distance Source to RP = SID - 23.2 mm - thickness.
    "ge": ("rdsr", False),
    # "At Surface of Patient"; kerma per mAs across 44 and 47 mm follows the surface.
    "giotto": ("rdsr", False),
}


@dataclass(frozen=True)
class UncertaintyBudget:
    """Standard uncertainties (k = 1) of the inputs of one MGD, with their basis.

    Relative values are fractions. Each is a default a physicist can replace
    with the figures of their own service (``[recalc]`` ``u_*`` keys); the
    validation dossier lists them with the reasoning.
    """

    #: Dosemeter calibration of the output measurement (a certificate's 5 % at k = 2).
    dosemeter: float = 0.025
    #: The unit's own kerma (rdsr method): not verified by srdose; 10 % until checked.
    rdsr_kerma: float = 0.10
    #: Displayed compressed thickness: a +-5 mm tolerance taken as rectangular (mm).
    thickness_mm: float = 2.9
    #: HVL, measured (mm Al) and as reported by the unit (mm Al).
    hvl_measured_mm: float = 0.02
    hvl_rdsr_mm: float = 0.03
    #: g: published table, interpolation in ln(g) (leave-one-out ~1 %) and a single public copy.
    g_published: float = 0.015
    #: Monte Carlo factors beyond statistics: agreement with the published cells.
    monte_carlo_model: float = 0.02
    #: c when the woman's age is unknown (the 40-49 and 50-64 tables differ by up to ~5 %).
    age_group_assumed: float = 0.05
    #: s of a beam whose filter thickness is assumed.
    filter_assumed: float = 0.02
    #: T when the sweep arc or the number of projections is assumed.
    sweep_assumed: float = 0.01

    @classmethod
    def from_settings(cls, section: RecalcSettings) -> UncertaintyBudget:
        return cls(
            dosemeter=section.u_dosemeter,
            rdsr_kerma=section.u_rdsr_kerma,
            thickness_mm=section.u_thickness_mm,
            hvl_measured_mm=section.u_hvl_measured_mm,
            hvl_rdsr_mm=section.u_hvl_rdsr_mm,
        )


@dataclass(frozen=True)
class Params:
    """Settings of a recalculation (``[recalc]`` in the config).

    ``ratio_bands`` refine ``ratio_band`` per method and maker
    (``("rdsr:hologic", 0.15)``; the most specific wins);
    ``reference_point`` overrides :data:`VENDOR_REFERENCE_POINT` per maker or
    model (``("hologic", "surface")``, ``("selenia dimensions", "42mm")``).
    """

    ratio_band: float = 0.25
    kv_margin: float = 1.0
    fit_degree: int = 2
    rdsr_support_gap_mm: float = 0.0
    dbt_min_sweep_mas: float = 20.0
    k_vs_mas_tolerance: float = 0.30
    ratio_bands: tuple[tuple[str, float], ...] = (("rdsr", 0.15), ("rdsr:ge", 0.25), ("measured", 0.20))
    reference_point: tuple[tuple[str, str], ...] = ()
    budget: UncertaintyBudget = UncertaintyBudget()

    @classmethod
    def from_settings(cls, section: RecalcSettings) -> Params:
        return cls(
            ratio_band=section.ratio_band,
            kv_margin=section.kv_margin,
            fit_degree=section.fit_degree,
            rdsr_support_gap_mm=section.rdsr_support_gap_mm,
            dbt_min_sweep_mas=section.dbt_min_sweep_mas,
            k_vs_mas_tolerance=section.k_vs_mas_tolerance,
            ratio_bands=section.ratio_bands,
            reference_point=section.reference_point,
            budget=UncertaintyBudget.from_settings(section),
        )

    def band_for(self, method: str, maker: str) -> float:
        bands: dict[str, float] = dict(self.ratio_bands)
        return bands.get(f"{method}:{maker}", bands.get(method, self.ratio_band))

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

    def strings(self, index=None) -> list[str | None]:
        """';'-joined flag names per event (None when none)."""
        return self.coded(index).tolist()

    def coded(self, index=None) -> CodedColumn:
        """:meth:`strings`, as a code per event into the texts."""
        bits = self.bits if index is None else self.bits[index]
        uniq, inv = np.unique(bits, return_inverse=True)
        text = []
        for b in uniq.tolist():
            names = [n for k, n in enumerate(self.names) if (b >> k) & 1]
            text.append(";".join(names) or None)
        return CodedColumn(inv.reshape(-1).astype(np.int64), text)

    def counts(self) -> dict[str, int]:
        return {n: int(self.has(n).sum()) for n in self.names}


# --- physics: fits and their lookup ---------------------------------------------------------


@dataclass(frozen=True)
class BeamFit:
    """The tube output and HVL of one beam (target/filter) of a physics set, fitted against kV."""

    set_index: int  # into PhysicsFits.sets
    target: str
    filter_material: str
    filter_mm: float | None
    output: dance.KvFit  # µGy/mAs at the set's reference distance
    hvl: dance.KvFit  # mm Al


@dataclass
class PhysicsFits:
    """The fits of all stored physics sets, stacked for vectorised use."""

    sets: list[dict]  # as returned by srdose.store.recalc.physics_sets (with 'points')
    beam_fits: list[BeamFit]
    coef_out: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    coef_hvl: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    kv_range: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    n_kv: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # distinct kV per fit
    out_rel_rms: np.ndarray = field(default_factory=lambda: np.zeros(0))  # output fit residual / mean output

    @classmethod
    def build(cls, sets: list[dict], degree: int = 2) -> PhysicsFits:
        fits = []
        for si, s in enumerate(sets):
            beams: dict[tuple, list] = {}
            for p in s["points"]:
                beams.setdefault((p["target"], p["filter_material"], p["filter_mm"]), []).append(p)
            for (target, filt, mm), pts in sorted(beams.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)):
                kv = [p["kvp"] for p in pts]
                fits.append(
                    BeamFit(
                        si,
                        target,
                        filt,
                        mm,
                        dance.fit_kv(kv, [p["output_ugy_per_mas"] for p in pts], degree),
                        dance.fit_kv(kv, [p["hvl_mm"] for p in pts], degree),
                    )
                )
        pf = cls(sets, fits)
        if fits:
            pf.coef_out = np.array([f.output.coef for f in fits])
            pf.coef_hvl = np.array([f.hvl.coef for f in fits])
            pf.kv_range = np.array([(f.output.kv_min, f.output.kv_max) for f in fits])
            pf.n_kv = np.array([f.output.n_kv for f in fits], dtype=np.int64)
            pf.out_rel_rms = np.array([f.output.rel_rms for f in fits])
        return pf

    def fit_for(
        self, set_index: int, target: str | None, filt: str | None, filter_mm: float | None
    ) -> tuple[int, bool]:
        """Index of the fit for a beam in a set (-1 none) and whether the filter mm was the nearest."""
        t, f = (target or "").upper(), (filt or "").upper()
        cands = [
            k
            for k, fit in enumerate(self.beam_fits)
            if fit.set_index == set_index and fit.target.upper() == t and fit.filter_material.upper() == f
        ]
        if not cands:
            return -1, False
        if len(cands) == 1:
            return cands[0], False
        mms = {k: mm for k in cands if (mm := self.beam_fits[k].filter_mm) is not None}  # the fits with a filter mm
        if filter_mm is not None and not np.isnan(filter_mm):
            exact = [k for k in cands if k in mms and abs(mms[k] - filter_mm) < 1e-3]
            if exact:
                return exact[0], False
            with_mm = [k for k in cands if k in mms]
            if with_mm:
                return min(with_mm, key=lambda k: abs(mms[k] - filter_mm)), True
        return cands[0], True


def _norm(text: str | None) -> str:
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
    unit_code, units = _codes(manufacturer, serial)
    date_code, date_keys = _codes(study_date)
    dates = np.array([int(d) if d and str(d).isdigit() else -1 for d in date_keys], dtype=np.int64)[date_code]
    order = sorted(range(len(sets)), key=lambda k: (sets[k]["valid_from"], sets[k]["id"]))
    for u, (m, s) in enumerate(units):
        mine = [
            k
            for k in order
            if sets[k]["serial"] == s and (not sets[k]["manufacturer"] or _norm(sets[k]["manufacturer"]) == _norm(m))
        ]
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

#: Reference-point status codes of a batch.
RP_RDSR, RP_RULE, RP_ASSUMED, RP_UNKNOWN, RP_SITE = 0, 1, 2, 3, 4
#: Height code for "at the object's own Distance Source to RP" (an image header's
#: Distance Source to Entrance): the kerma is moved from that distance.
AT_SOURCE_DISTANCE = -1.0


def _from_text(text: str) -> float | None:
    """Height above the support (mm) named in a reference-point text; NaN for 'surface'; None if neither."""
    t = (text or "").lower()
    if "distance source to entrance" in t:
        return AT_SOURCE_DISTANCE
    m = re.search(r"(\d+(?:\.\d+)?)\s*(cm|mm)\b", t)
    if m:
        return float(m.group(1)) * (10.0 if m.group(2) == "cm" else 1.0)
    if "surface" in t:
        return float("nan")
    return None


def reference_point_height(
    text: str | None, manufacturer: str | None, model: str | None = None, site_rules: tuple = ()
) -> tuple[float, int]:
    """(height above the support in mm, NaN for the breast surface; status code RP_*).

    A site rule (``[recalc] reference_point``, matched on the model name, then
    the maker) wins; then the maker's rule from :data:`VENDOR_REFERENCE_POINT`;
    then the RDSR's own text.
    """
    key = system_key(manufacturer)
    rules = dict(site_rules)
    rule, status = None, RP_SITE
    for k in ((model or "").strip().lower(), (manufacturer or "").strip().lower(), key):
        if k and k in rules:
            rule = rules[k]
            break
    if rule is None and key in VENDOR_REFERENCE_POINT:
        rule, assumed = VENDOR_REFERENCE_POINT[key]
        status = RP_ASSUMED if assumed else RP_RULE
    if rule == "surface":
        return float("nan"), status
    if rule is not None and rule.endswith("mm"):
        return float(rule[:-2]), status
    h = _from_text(text or "")
    if h is None:
        return float("nan"), RP_UNKNOWN
    return h, (RP_RDSR if rule is None else status)


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
    rp_height_mm: np.ndarray  # NaN: at the breast surface; AT_SOURCE_DISTANCE: at source_rp_mm
    rp_status: np.ndarray  # RP_* code
    rp_text_height_mm: np.ndarray  # the height the RDSR's text names (NaN: surface or none)
    sdd_mm: np.ndarray
    source_rp_mm: np.ndarray
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
    angle_start: np.ndarray  # positioner primary angle (start) of the sweep, degrees
    angle_end: np.ndarray  # positioner primary end angle
    n_pulses: np.ndarray
    #: tube loading per projection, (n, max projections), NaN-padded; rows of 2D events are NaN
    proj_weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def take(self, idx) -> Batch:
        """The events at ``idx`` (codes and lists shared)."""
        kw = {}
        for name, value in self.__dict__.items():
            if isinstance(value, np.ndarray):
                kw[name] = value[idx]
            else:
                kw[name] = value
        kw["n"] = int(kw["is_dbt"].shape[0])
        return Batch(**kw)


def _column_codes(values) -> tuple[np.ndarray, list]:
    """A code per value (equal values, equal codes) and the distinct values, by code."""
    if isinstance(values, np.ndarray):
        distinct, codes = np.unique(values, return_inverse=True)
        return codes.astype(np.int64).reshape(-1), distinct.tolist()
    return (values if isinstance(values, CodedColumn) else CodedColumn.of(values)).distinct()


def _codes(*columns) -> tuple[np.ndarray, list]:
    """A code per row of ``columns`` (lists or arrays of equal length; equal rows, equal codes)
    and the distinct rows by code: their values, or tuples of them for several columns.

    Each column is coded on its own and the codes are combined as numbers, so a million events
    cost a few dict look-ups each rather than a tuple and a Python call per event."""
    codes, keys = _column_codes(columns[0])
    if len(columns) == 1:
        return codes, keys
    rows: list[tuple] = [(k,) for k in keys]
    for column in columns[1:]:
        more, more_keys = _column_codes(column)
        # renumbered after each column, so the combined number stays below (events)²
        distinct, codes = np.unique(codes * len(more_keys) + more, return_inverse=True)
        codes = codes.astype(np.int64).reshape(-1)
        rows = [rows[c // len(more_keys)] + (more_keys[c % len(more_keys)],) for c in distinct.tolist()]
    return codes, rows


def _projection_weights(n: int, pulse_event: np.ndarray, pulse_weight: np.ndarray) -> np.ndarray:
    """(n, max projections) tube loading per projection, NaN-padded, from CSR-like pulse arrays."""
    if pulse_event.size == 0:
        return np.full((n, 1), np.nan)
    counts = np.bincount(pulse_event, minlength=n)
    width = max(int(counts.max()), 1)
    out = np.full((n, width), np.nan)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    col = np.arange(pulse_event.size) - start[pulse_event]
    out[pulse_event, col] = pulse_weight
    return out


def prepare(inputs: dict, fits: PhysicsFits, params: Params | None = None) -> Batch:
    """Turn :func:`srdose.store.recalc.recalc_inputs` output into a :class:`Batch`."""
    params = params or Params()
    n = len(inputs["event_id"])
    manu = inputs["manufacturer"]
    model = inputs.get("model") or [None] * n
    manu_code, manu_keys = _codes(manu, model)
    acq_code, acq_keys = _codes(inputs["acquisition"])
    is_dbt = np.array([a == Acquisition.DBT for a in acq_keys], dtype=bool)[acq_code] if n else np.zeros(0, bool)
    acq_missing = np.array([a is None for a in acq_keys], dtype=bool)[acq_code] if n else np.zeros(0, bool)
    fmm = inputs["filter_thickness_mm"]
    mm_keys = np.where(np.isnan(fmm), -1.0, np.round(fmm, 4))
    beam_raw, beam_raw_keys = _codes(inputs["anode"], inputs["filter_material"], mm_keys)
    beam_keys = [(a, f, None if m < 0 else m) for a, f, m in beam_raw_keys]
    beam, beams = beam_raw, beam_keys
    manu_system = [system_key(m) for m, _ in manu_keys]
    sys_of_manu, systems = _codes(manu_system)
    sys_codes = sys_of_manu[manu_code] if n else np.zeros(0, np.int64)
    rp_codes, rp_keys = _codes(inputs["reference_point"], manu_code)
    rp_table = [
        reference_point_height(text, manu_keys[mc][0], manu_keys[mc][1], site_rules=params.reference_point)
        for text, mc in rp_keys
    ]
    rp_height = np.array([h for h, _ in rp_table], dtype=float)[rp_codes] if n else np.zeros(0)
    rp_status = np.array([s for _, s in rp_table], dtype=np.int64)[rp_codes] if n else np.zeros(0, np.int64)
    rp_text = (
        np.array([_from_text(text or "") or np.nan for text, _ in rp_keys], dtype=float)[rp_codes] if n else np.zeros(0)
    )
    rp_text = np.where(rp_text > 0, rp_text, np.nan)
    siemens = np.array([k == "siemens" for k in systems], dtype=bool)[sys_codes] if n else np.zeros(0, bool)

    set_index = applicable_sets(fits.sets, manu, inputs["serial"], inputs["study_date"])
    # fit per (set, beam): few distinct pairs
    pair_codes, pairs = _codes(set_index, beam)
    pair_fit = np.full(len(pairs), -1, dtype=np.int64)
    pair_near = np.zeros(len(pairs), dtype=bool)
    for k, (si, b) in enumerate(pairs):
        if si >= 0:
            target, filt, mm = beams[b]
            pair_fit[k], pair_near[k] = fits.fit_for(si, target, filt, mm)
    fit_index = pair_fit[pair_codes] if n else np.zeros(0, np.int64)
    fit_near = pair_near[pair_codes] if n else np.zeros(0, bool)
    geo = np.array([[s["fdd_mm"], s["support_gap_mm"], s["d_ref_mm"]] for s in fits.sets] + [[np.nan] * 3], dtype=float)
    g = geo[np.where(set_index >= 0, set_index, len(fits.sets))]
    nan = np.full(n, np.nan)
    weights = _projection_weights(
        n, inputs.get("pulse_event", np.zeros(0, np.int64)), inputs.get("pulse_weight", np.zeros(0))
    )
    return Batch(
        n=n,
        is_dbt=is_dbt,
        kvp=inputs["kvp"],
        mas=inputs["mas"],
        thickness_mm=inputs["compressed_thickness_mm"],
        hvl_rdsr=inputs["hvl_mm"],
        k_rp=inputs["entrance_exposure_mgy"],
        rp_height_mm=rp_height,
        rp_status=rp_status,
        rp_text_height_mm=rp_text,
        sdd_mm=inputs["source_detector_mm"],
        source_rp_mm=inputs.get("source_rp_mm", nan),
        agd=inputs["agd_mgy"],
        age=inputs["age_years"],
        siemens=siemens,
        acquisition_missing=acq_missing,
        beam=beam,
        beams=beams,
        system=sys_codes,
        systems=systems,
        set_index=set_index,
        fit_index=fit_index,
        fit_nearest_mm=fit_near,
        fdd_mm=g[:, 0],
        gap_mm=g[:, 1],
        d_ref_mm=g[:, 2],
        angle_start=inputs.get("positioner_primary_angle_deg", nan),
        angle_end=inputs.get("positioner_primary_end_angle_deg", nan),
        n_pulses=inputs.get("n_pulses", nan),
        proj_weight=weights,
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
    mgd_u: np.ndarray = field(default_factory=lambda: np.zeros(0))  # expanded uncertainty, k = 2


def _lookup(grid: dance.Grid, hvl, t_cm, name: str, flags: Flags, where: np.ndarray) -> np.ndarray:
    """Interpolated factor, NaN (and ``out_of_table:<name>:<axis>``) outside the table."""
    r = dance.interpolate(grid, hvl, t_cm)
    flags.add(f"out_of_table:{name}:hvl", where & r.clamped_hvl)
    flags.add(f"out_of_table:{name}:thickness", where & r.clamped_thickness)
    flags.add(f"suspect_cell:{name}", where & r.suspect)
    return np.where(r.clamped_hvl | r.clamped_thickness, np.nan, r.value)


def _mask(n: int, idx: np.ndarray, sub: np.ndarray) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[idx] = sub
    return out


def _measured_kerma(b: Batch, fits: PhysicsFits, params: Params, flags: Flags):
    """K and HVL from the unit's fitted output and HVL; NaN where the fit may not be used."""
    n = b.n
    if not fits.beam_fits:
        return np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    has_fit = b.fit_index >= 0
    fi = np.where(has_fit, b.fit_index, 0)
    few = has_fit & (fits.n_kv[fi] < 3)
    # A fit through one or two kV (a constant or a line) is used only inside the measured range.
    margin = np.where(few, 0.0, params.kv_margin)
    y, outside = dance.evaluate_fits(fits.coef_out, fits.kv_range, b.fit_index, b.kvp, margin)
    hvl_fit, _ = dance.evaluate_fits(fits.coef_hvl, fits.kv_range, b.fit_index, b.kvp, margin)
    flags.add("physics:few_kv_points", few)
    flags.add("kv_outside_measured", outside)
    with np.errstate(invalid="ignore"):
        beyond = has_fit & ~outside & ((b.kvp < fits.kv_range[fi, 0]) | (b.kvp > fits.kv_range[fi, 1]))
    flags.add("physics:kv_within_margin", beyond)
    flags.add("suspect:support_gap_zero", has_fit & (b.gap_mm == 0.0))
    k_meas = dance.kerma_from_output(y, b.mas, b.d_ref_mm, b.fdd_mm, b.gap_mm, b.thickness_mm)
    u_fit = np.where(has_fit, fits.out_rel_rms[fi], np.nan)
    return k_meas, hvl_fit, u_fit


def _support_gap(b: Batch, params: Params) -> np.ndarray:
    """Breast support to detector (mm): the unit's physics set, else ``[recalc] rdsr_support_gap_mm``."""
    return np.where(b.set_index >= 0, b.gap_mm, params.rdsr_support_gap_mm)


def kerma_inconsistent(k_meas, k_rdsr, tolerance: float) -> np.ndarray:
    """Where the kerma implied by output × mAs and the RDSR's own differ by more than ``tolerance``
    (symmetric in the ratio); False where either is missing."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = k_meas / k_rdsr
        ok = np.isfinite(ratio) & (ratio > 0)
        return ok & (np.abs(np.log(np.where(ok, ratio, 1.0))) > np.log1p(tolerance))


def _rdsr_kerma(b: Batch, params: Params):
    """The RDSR's entrance exposure moved from its reference point to the breast surface."""
    has_set = b.set_index >= 0
    gap = _support_gap(b, params)
    at_distance = b.rp_height_mm == AT_SOURCE_DISTANCE
    at_height = ~np.isnan(b.rp_height_mm) & ~at_distance
    d_surface = b.sdd_mm - gap - b.thickness_mm
    d_rp = np.where(at_distance, b.source_rp_mm, b.sdd_mm - gap - b.rp_height_mm)
    moved = at_height | at_distance
    k = np.where(moved, dance.move_kerma(b.k_rp, d_rp, d_surface), b.k_rp)
    return np.where(b.rp_status == RP_UNKNOWN, np.nan, k), moved, has_set


def _g_factor(fs: FactorSet, hvl, t_cm, flags: Flags):
    """g from the published table, else the Monte Carlo extension, else no value (flagged); with the
    slopes of ln g against thickness (per cm) and HVL (per mm Al) of the table each value came from."""
    n = hvl.shape[0]
    if fs.g is None:
        flags.add("missing_factor:g", np.ones(n, bool))
        nan = np.full(n, np.nan)
        return nan, nan, nan
    r = dance.interpolate(fs.g, hvl, t_cm, slopes=True)
    inside = ~(r.clamped_hvl | r.clamped_thickness)
    flags.add("suspect_cell:g", inside & r.suspect)
    g = np.where(inside, r.value, np.nan)
    d_t, d_h = r.d_thickness, r.d_hvl
    assert d_t is not None and d_h is not None  # interpolate(..., slopes=True) returns the slopes
    out_h, out_t = r.clamped_hvl, r.clamped_thickness
    if fs.g_ext is not None and not inside.all():
        idx = np.nonzero(~inside)[0]
        e = dance.interpolate(fs.g_ext, hvl[idx], t_cm[idx], slopes=True)
        ok = ~(e.clamped_hvl | e.clamped_thickness)
        g[idx] = np.where(ok, e.value, np.nan)
        d_t[idx], d_h[idx] = e.d_thickness, e.d_hvl
        flags.add("g:monte_carlo_extension", _mask(n, idx, ok & np.isfinite(e.value)))
        out_h = _mask(n, idx, e.clamped_hvl)
        out_t = _mask(n, idx, e.clamped_thickness)
    flags.add("out_of_table:g:hvl", out_h)
    flags.add("out_of_table:g:thickness", out_t)
    with np.errstate(invalid="ignore", divide="ignore"):
        return g, d_t / g, d_h / g


def _c_factor(b: Batch, fs: FactorSet, hvl, t_cm, flags: Flags) -> np.ndarray:
    """c of the typical breast of the woman's age group (Dance et al. 2000)."""
    n = b.n
    group, nearest, no_age = dance.age_group(b.age)
    flags.add("assumed:age_group:50-64", no_age)
    c = np.full(n, np.nan)
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
        sub = Flags(idx.size)
        c[idx] = _lookup(grid, hvl[idx], t_cm[idx], "c", sub, np.ones(idx.size, bool))
        for fname in sub.names:
            flags.add(fname, _mask(n, idx, sub.has(fname)))
    return c


def _s_factor(b: Batch, fs: FactorSet, hvl, t_cm, flags: Flags):
    """s per target/filter; also whether it came from a per-spectrum Monte Carlo table."""
    n = b.n
    s = np.full(n, np.nan)
    mc = np.zeros(n, bool)
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
        if sf.grid.meta.get("monte_carlo"):
            mc |= sel
            if mm is None:  # the s of this beam depends on the filter thickness the RDSR did not give
                flags.add(f"assumed:filter_thickness_mm:{sf.filter_mm:g}", sel)
        if sf.grid.is_constant:
            s[sel] = sf.grid.values[0, 0]
            continue
        idx = np.nonzero(sel)[0]
        sub = Flags(idx.size)
        s[idx] = _lookup(sf.grid, hvl[idx], t_cm[idx], "s", sub, np.ones(idx.size, bool))
        for fname in sub.names:
            flags.add(fname, _mask(n, idx, sub.has(fname)))
    return s, mc


def _sweeps(b: Batch, idx: np.ndarray, flags: Flags):
    """The sweep of each DBT event ``idx``: (arc in degrees, projections, first projection's relative
    loading, whether the RDSR lists the loading of every projection, unknown).

    From the RDSR: arc = |end - start| of the positioner primary angle,
    projections = the per-pulse items (else Number of Pulses), loading = the
    per-projection tube loading. What the RDSR lacks comes from the system's
    documented sweep (srdose.physics.sweeps), flagged.
    """
    n = b.n
    m = idx.size
    with np.errstate(invalid="ignore"):
        arc = np.abs(b.angle_end[idx] - b.angle_start[idx])
        arc_ok = np.isfinite(arc) & (arc > 0.5)
    w_rdsr = b.proj_weight[idx]
    n_listed = np.sum(np.isfinite(w_rdsr) & (w_rdsr > 0), axis=1)
    n_items = np.where(np.isfinite(b.n_pulses[idx]), b.n_pulses[idx], 0)
    n_proj = np.where(n_listed >= 2, n_listed, np.where(n_items >= 2, n_items, 0)).astype(np.int64)
    doc_arc = np.full(m, np.nan)
    doc_n = np.zeros(m, np.int64)
    doc_first = np.ones(m)
    for code, key in enumerate(b.systems):
        d = documented_sweep(key)
        if d is None:
            continue
        sel = b.system[idx] == code
        doc_arc[sel], doc_n[sel], doc_first[sel] = d.arc_deg, d.projections, d.first_weight
    need_n = n_proj < 2
    arc = np.where(arc_ok, arc, doc_arc)
    n_proj = np.where(need_n, doc_n, n_proj)
    flags.add("assumed:sweep_arc", _mask(n, idx, ~arc_ok & np.isfinite(doc_arc)))
    flags.add("assumed:sweep_projections", _mask(n, idx, need_n & (doc_n >= 2)))
    unknown = ~np.isfinite(arc) | (n_proj < 2)
    flags.add("missing:sweep_geometry", _mask(n, idx, unknown))
    listed = (n_listed == n_proj) & ~need_n
    first = np.where(need_n, doc_first, 1.0)
    return arc, n_proj, first, listed, unknown


def _node_weights(angles: np.ndarray, weights: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Each projection's loading shared linearly between its two angle nodes: (rows, len(grid)).

    ``angles`` and ``weights`` are (rows, projections), the weights summing to 1 per row; an angle
    beyond the grid puts its weight on the last node (the caller flags it).
    """
    rows = np.arange(angles.shape[0])
    W = np.zeros((angles.shape[0], len(grid)))
    for p in range(angles.shape[1]):
        ap = np.minimum(np.nan_to_num(np.abs(angles[:, p]), nan=0.0), grid[-1])
        j = np.clip(np.searchsorted(grid, ap, side="right") - 1, 0, len(grid) - 2)
        f = (ap - grid[j]) / (grid[j + 1] - grid[j])
        W[rows, j] += weights[:, p] * (1.0 - f)
        W[rows, j + 1] += weights[:, p] * f
    return W


def _sweep_node_weights(b: Batch, idx: np.ndarray, arc, n_proj, first, listed, unknown, grid) -> np.ndarray:
    """Node weights of the sweeps of events ``idx``; events with the same equal-loading sweep share a row."""
    W = np.zeros((idx.size, len(grid)))
    eq = ~listed & ~unknown
    if eq.any():
        # one int64 key per sweep: arc to 1e-4 degree, projections, first projection's share to 1e-3
        key = (
            (np.round(arc[eq] * 1e4).astype(np.int64) << 24)
            | (n_proj[eq].astype(np.int64) << 12)
            | np.round(first[eq] * 1e3).astype(np.int64)
        )
        ukey, inv = np.unique(key, return_inverse=True)
        uniq = np.stack([(ukey >> 24) / 1e4, (ukey >> 12) & 0xFFF, (ukey & 0xFFF) / 1e3], axis=1).astype(float)
        width = int(uniq[:, 1].max())
        k = np.arange(width)[None, :]
        nk = uniq[:, 1:2]
        ang = -uniq[:, 0:1] / 2.0 + uniq[:, 0:1] * k / (nk - 1)
        wts = np.where(k < nk, 1.0, 0.0)
        wts[:, 0] = uniq[:, 2]
        W[eq] = _node_weights(ang, wts / wts.sum(axis=1, keepdims=True), grid)[inv.ravel()]
    ls = listed & ~unknown
    if ls.any():
        width = int(n_proj[ls].max())
        w_rows = np.nan_to_num(b.proj_weight[idx[ls]][:, :width], nan=0.0)
        k = np.arange(width)[None, :]
        nk = n_proj[ls][:, None]
        ang = -arc[ls][:, None] / 2.0 + arc[ls][:, None] * k / np.maximum(nk - 1, 1)
        w_rows = np.where(k < nk, w_rows, 0.0)
        W[ls] = _node_weights(ang, w_rows / w_rows.sum(axis=1, keepdims=True), grid)
    return W


def _t_factor(b: Batch, fs: FactorSet, hvl, t_cm, flags: Flags) -> np.ndarray:
    """T = sum_i alpha_i t(theta_i) over each DBT event's sweep (Dance et al. 2011, eq. 3).

    Each sweep becomes weights on the angle nodes of the t(theta) table (linear in
    angle); events with the same sweep share them.
    """
    n = b.n
    T = np.full(n, np.nan)
    dbt = np.nonzero(b.is_dbt)[0]
    if dbt.size == 0:
        return T
    arc, n_proj, first, listed, unknown = _sweeps(b, dbt, flags)
    beam = b.beam[dbt]
    for code in np.unique(beam).tolist():
        target, filt, mm = b.beams[code]
        sel = beam == code
        idx = dbt[sel]
        tt, note = fs.t_theta_for(target, filt, mm)
        if tt is None:
            for scode, key in enumerate(b.systems):  # a user set's T per system
                grid = fs.T.get(key)
                ssel = b.system[idx] == scode
                if grid is None or not ssel.any():
                    continue
                sidx = idx[ssel]
                sub = Flags(sidx.size)
                T[sidx] = _lookup(grid, hvl[sidx], t_cm[sidx], "T", sub, np.ones(sidx.size, bool))
                for fname in sub.names:
                    flags.add(fname, _mask(n, sidx, sub.has(fname)))
                flags.add("T:system_table", _mask(n, sidx, np.ones(sidx.size, bool)))
            flags.add(f"missing_factor:t_theta:{target}/{filt}", _mask(n, idx, np.isnan(T[idx])))
            continue
        everyone = np.ones(idx.size, bool)
        if note:
            flags.add(f"t_theta:{note}", _mask(n, idx, everyone))
        if mm is None:
            flags.add(f"assumed:filter_thickness_mm:{tt.filter_mm:g}", _mask(n, idx, everyone))
        grid = tt.angles
        W = _sweep_node_weights(b, idx, arc[sel], n_proj[sel], first[sel], listed[sel], unknown[sel], grid)
        reach = int(np.max(np.nonzero(W.any(axis=0))[0], initial=1)) + 1
        nodes, ch, ct = tt.at_nodes(hvl[idx], t_cm[idx], max(reach, 2))
        flags.add("out_of_table:t_theta:hvl", _mask(n, idx, ch))
        flags.add("out_of_table:t_theta:thickness", _mask(n, idx, ct))
        beyond = ~unknown[sel] & (arc[sel] / 2.0 > grid[-1] + 1e-9)
        flags.add("out_of_table:t_theta:angle", _mask(n, idx, beyond))
        with np.errstate(invalid="ignore"):
            val = np.einsum("ij,ij->i", W[:, : nodes.shape[1]], nodes)
        T[idx] = np.where(beyond | unknown[sel] | np.isnan(val), np.nan, val)
    return T


@dataclass
class Kerma:
    """The air kerma at the breast surface chosen per event, and where it came from."""

    k: np.ndarray  # mGy
    hvl: np.ndarray  # mm Al: the fitted HVL (measured) or the RDSR's
    measured: np.ndarray  # True: the unit's physics set; False: the RDSR's own kerma
    u_fit: np.ndarray  # relative residual of the output fit (NaN without one)
    moved: np.ndarray  # the RDSR's kerma was moved from its reference point


@dataclass
class Factors:
    """The conversion factors of each event, NaN outside every table."""

    g: np.ndarray
    dlng_dt: np.ndarray  # slope of ln g against thickness (per cm)
    dlng_dh: np.ndarray  # slope of ln g against HVL (per mm Al)
    c: np.ndarray
    s: np.ndarray
    s_monte_carlo: np.ndarray  # s from a per-spectrum Monte Carlo table
    t: np.ndarray  # NaN for 2D


def _choose_kerma(b: Batch, fits: PhysicsFits, params: Params, flags: Flags) -> Kerma:
    """K: the unit's measured output (measured) or the RDSR's own kerma (rdsr)."""
    has_fit = b.fit_index >= 0
    flags.add("fallback:rdsr:no_physics_for_beam", (b.set_index >= 0) & ~has_fit)
    flags.add("physics:nearest_filter_mm", has_fit & b.fit_nearest_mm)
    k_meas, hvl_fit, u_fit = _measured_kerma(b, fits, params, flags)
    k_rdsr, moved, has_set = _rdsr_kerma(b, params)

    # Kerma implied by output x mAs against the RDSR's own kerma, for every vendor.
    inconsistent = kerma_inconsistent(k_meas, k_rdsr, params.k_vs_mas_tolerance)
    with np.errstate(invalid="ignore"):
        # Siemens DBT said to report the mAs of one projection (unsourced; docs/vendors.md)
        one_proj = b.is_dbt & b.siemens & ((b.mas < params.dbt_min_sweep_mas) | (k_meas < k_rdsr / 3.0))
    flags.add("inconsistent:k_vs_mas", has_fit & inconsistent)
    flags.add("dbt_mas_one_projection", one_proj)
    measured = has_fit & np.isfinite(k_meas) & np.isfinite(hvl_fit) & ~inconsistent & ~one_proj
    flags.add("fallback:rdsr", has_fit & ~measured & np.isfinite(k_rdsr))
    rdsr = ~measured
    flags.add("assumed:reference_point", rdsr & (b.rp_status == RP_ASSUMED))
    flags.add("reference_point:site_rule", rdsr & (b.rp_status == RP_SITE))
    flags.add("assumed:support_gap_mm", rdsr & moved & ~has_set)
    return Kerma(np.where(measured, k_meas, k_rdsr), np.where(measured, hvl_fit, b.hvl_rdsr), measured, u_fit, moved)


def _flag_missing_inputs(b: Batch, kerma: Kerma, flags: Flags) -> None:
    """``missing:<input>`` where an input the event's method needs is absent."""
    has_fit = b.fit_index >= 0
    rdsr = ~kerma.measured

    def missing(name: str, arr: np.ndarray, where: np.ndarray) -> None:
        flags.add(f"missing:{name}", where & np.isnan(arr))

    missing("compressed_thickness_mm", b.thickness_mm, np.ones(b.n, bool))
    missing("kvp", b.kvp, has_fit)
    missing("mas", b.mas, has_fit)
    missing("hvl_mm", b.hvl_rdsr, rdsr)
    missing("entrance_exposure_mgy", b.k_rp, rdsr)
    missing("source_detector_mm", b.sdd_mm, rdsr & kerma.moved)
    flags.add("missing:reference_point", rdsr & (b.rp_status == RP_UNKNOWN))
    flags.add("missing:acquisition", b.acquisition_missing)


def _factors(b: Batch, fs: FactorSet, hvl: np.ndarray, flags: Flags) -> Factors:
    """g, c, s and T: outside every table there is no value, only a flag."""
    t_cm = b.thickness_mm / 10.0
    g, dlng_dt, dlng_dh = _g_factor(fs, hvl, t_cm, flags)
    c = _c_factor(b, fs, hvl, t_cm, flags)
    s, s_mc = _s_factor(b, fs, hvl, t_cm, flags)
    t_factor = _t_factor(b, fs, hvl, t_cm, flags)
    return Factors(g, dlng_dt, dlng_dh, c, s, s_mc, t_factor)


def _mgd(b: Batch, params: Params, kerma: Kerma, f: Factors, flags: Flags) -> tuple[np.ndarray, np.ndarray]:
    """MGD = K·g·c·s (·T for DBT), and its ratio to the unit's own AGD, flagged outside the band."""
    mgd = dance.mgd(kerma.k, f.g, f.c, f.s, np.where(b.is_dbt, f.t, 1.0))
    band = np.full(b.n, params.ratio_band)
    for code, key in enumerate(b.systems):
        sel = b.system == code
        band[sel & kerma.measured] = params.band_for(Method.MEASURED, key)
        band[sel & ~kerma.measured] = params.band_for(Method.RDSR, key)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(b.agd > 0, mgd / b.agd, np.nan)
        flags.add("missing:agd_mgy", ~(b.agd > 0))
        flags.add("ratio_outside_band", np.abs(ratio - 1.0) > band)
    flags.add("no_mgd", np.isnan(mgd))
    return mgd, ratio


def compute(b: Batch, fits: PhysicsFits, fs: FactorSet, params: Params) -> Result:
    """Recalculate every event of the batch (pure numpy; no I/O).

    The steps add their flags in a fixed order: a flag's bit, and its place in the stored text,
    follow that order.
    """
    flags = Flags(b.n)
    kerma = _choose_kerma(b, fits, params, flags)
    _flag_missing_inputs(b, kerma, flags)
    f = _factors(b, fs, kerma.hvl, flags)
    mgd, ratio = _mgd(b, params, kerma, f, flags)
    u = relative_uncertainty(
        b,
        flags,
        params.budget,
        kerma.measured,
        f.dlng_dt,
        f.dlng_dh,
        kerma.u_fit,
        f.s_monte_carlo,
        _support_gap(b, params),
    )
    return Result(
        np.where(kerma.measured, 0, 1).astype(np.int8),
        mgd,
        kerma.k,
        kerma.hvl,
        f.g,
        f.c,
        f.s,
        np.where(b.is_dbt, f.t, np.nan),
        ratio,
        flags,
        2.0 * u * mgd,
    )


# --- uncertainty ----------------------------------------------------------------------------------


def relative_uncertainty(
    b: Batch, flags: Flags, budget: UncertaintyBudget, measured, dlng_dt, dlng_dh, u_fit, s_mc, gap
) -> np.ndarray:
    """Combined relative standard uncertainty of each MGD (k = 1), vectorised.

    Components: K (fit residual and dosemeter, or the unit's own kerma and,
    for an inferred reference point, the spread between the two readings);
    compressed thickness and HVL through the slope of ln g (and of K by the
    inverse-square law); the factor tables; every "assumed" flag.
    """
    n = b.n
    var = np.zeros(n)
    # K
    var += np.where(measured, np.nan_to_num(u_fit) ** 2 + budget.dosemeter**2, budget.rdsr_kerma**2)
    rp_alt = (b.rp_status == RP_ASSUMED) & ~measured
    if rp_alt.any():
        # the reading the rule replaced: the fixed height the RDSR's text names (a rectangular spread)
        with np.errstate(invalid="ignore", divide="ignore"):
            spread = np.abs(
                2.0 * np.log((b.sdd_mm - gap - b.rp_text_height_mm) / (b.sdd_mm - gap - b.thickness_mm))
            ) / np.sqrt(3.0)
        var += np.where(rp_alt, np.nan_to_num(spread) ** 2, 0.0)
    # thickness and HVL through the slope of ln g (and K's inverse square for the measured method)
    with np.errstate(invalid="ignore", divide="ignore"):
        dlnk_dt = np.where(measured, 2.0 * 10.0 / (b.fdd_mm - b.gap_mm - b.thickness_mm), 0.0)
    var += np.nan_to_num((dlng_dt + dlnk_dt) * (budget.thickness_mm / 10.0)) ** 2
    var += np.nan_to_num(dlng_dh * np.where(measured, budget.hvl_measured_mm, budget.hvl_rdsr_mm)) ** 2
    # factor tables
    ext = flags.has("g:monte_carlo_extension")
    var += np.where(ext, budget.monte_carlo_model**2, budget.g_published**2)
    var += budget.monte_carlo_model**2  # c (Monte Carlo for the typical breast)
    var += np.where(s_mc, budget.monte_carlo_model**2, 0.0)
    var += np.where(b.is_dbt, budget.monte_carlo_model**2, 0.0)
    # assumptions
    var += np.where(flags.has("assumed:age_group:50-64"), budget.age_group_assumed**2, 0.0)
    assumed_filter = np.zeros(n, bool)
    for name in flags.names:
        if name.startswith("assumed:filter_thickness_mm"):
            assumed_filter |= flags.has(name)
    var += np.where(assumed_filter, budget.filter_assumed**2, 0.0)
    sweep = flags.has("assumed:sweep_arc") | flags.has("assumed:sweep_projections")
    var += np.where(sweep, budget.sweep_assumed**2, 0.0)
    return np.sqrt(var)
