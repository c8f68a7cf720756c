"""Phantom QC: the MGD of the breast a PMMA phantom stands for, from the unit's own dose reports.

The European protocol (European guidelines, 4th ed., dosimetry; after Dance et al. 2000) expresses
a unit's dose with PMMA blocks: each PMMA thickness stands for a breast of an equivalent
thickness and glandularity (:func:`srdose.physics.factors.load_pmma_equivalence`), and

    MGD = K · g · c · s        (2D; × T for tomosynthesis)

with K the incident air kerma at the upper surface of the PMMA (no backscatter), g and c for the
equivalent breast (c at its glandularity, not the typical breast's) and s for the spectrum. The
result is compared with the protocol's acceptable and achievable levels per PMMA thickness.

The phantom exposures are the events of studies marked not-a-patient at ingest (or matched by
protocol name). Which PMMA thickness an exposure is comes from its compressed thickness:
``convention = "breast"`` (the protocol's practice: spacers hold the paddle at the equivalent
breast thickness, so the displayed thickness is that) or ``"pmma"`` (paddle on the PMMA).
A thickness matching no row within ``tolerance_mm`` gets no result, only a flag.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from srdose.physics import dance
from srdose.physics.factors import FactorSet
from srdose.recalc.engine import (
    Batch,
    Flags,
    Params,
    PhysicsFits,
    _g_factor,
    _measured_kerma,
    _rdsr_kerma,
    _s_factor,
    _support_gap,
    _t_factor,
    kerma_inconsistent,
)

CONVENTIONS = ("breast", "pmma")


@dataclass
class PhantomResult:
    """Per exposure (NaN: not computed)."""

    pmma_mm: np.ndarray
    breast_mm: np.ndarray
    glandularity: np.ndarray  # fraction
    method: np.ndarray  # 0 measured, 1 rdsr
    k: np.ndarray  # at the PMMA surface
    hvl: np.ndarray
    g: np.ndarray
    c: np.ndarray
    s: np.ndarray
    t: np.ndarray
    mgd: np.ndarray
    acceptable: np.ndarray
    achievable: np.ndarray
    verdict: list  # "achievable" | "acceptable" | "above acceptable" | None
    flags: Flags


def _c_at_glandularity(fs: FactorSet, hvl, t_cm, gl, flags: Flags) -> np.ndarray:
    """c at each glandularity: bilinear in HVL and thickness at each node, linear in glandularity."""
    n = hvl.shape[0]
    if fs.c_glandularity is None:
        flags.add("missing_factor:c_glandularity", np.ones(n, bool))
        return np.full(n, np.nan)
    nodes, grids = fs.c_glandularity
    vals = []
    for grid in grids:
        r = dance.interpolate(grid, hvl, t_cm)
        flags.add("out_of_table:c:hvl", r.clamped_hvl)
        flags.add("out_of_table:c:thickness", r.clamped_thickness)
        vals.append(np.where(r.clamped_hvl | r.clamped_thickness, np.nan, r.value))
    at_nodes = np.stack(vals, axis=1)
    out = np.full(n, np.nan)
    inside = (gl >= nodes[0]) & (gl <= nodes[-1])
    flags.add("out_of_table:c:glandularity", ~inside & np.isfinite(gl))
    j = np.clip(np.searchsorted(nodes, gl, side="right") - 1, 0, len(nodes) - 2)
    w = (gl - nodes[j]) / (nodes[j + 1] - nodes[j])
    rows = np.arange(n)
    val = at_nodes[rows, j] + w * (at_nodes[rows, j + 1] - at_nodes[rows, j])
    out[inside] = val[inside]
    return out


def compute_phantom(
    b: Batch,
    fits: PhysicsFits,
    fs: FactorSet,
    params: Params,
    pmma_rows: list[dict],
    levels: list[dict] | None = None,
    convention: str = "breast",
    tolerance_mm: float = 3.0,
) -> PhantomResult:
    """The equivalent-breast MGD of each phantom exposure of the batch (pure numpy)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention {convention!r}: expected one of {', '.join(CONVENTIONS)}")
    n = b.n
    flags = Flags(n)
    pmma = np.array([float(r["pmma_mm"]) for r in pmma_rows])
    breast = np.array([float(r["equivalent_breast_mm"]) for r in pmma_rows])
    gland = np.array([float(r["glandularity_pct"]) / 100.0 for r in pmma_rows])
    key = breast if convention == "breast" else pmma
    with np.errstate(invalid="ignore"):
        dist = np.abs(b.thickness_mm[:, None] - key[None, :])
        row = np.argmin(np.where(np.isfinite(dist), dist, np.inf), axis=1) if len(key) else np.zeros(n, int)
        matched = np.isfinite(b.thickness_mm) & (dist[np.arange(n), row] <= tolerance_mm)
    flags.add("qc:thickness_not_in_table", ~matched)
    pmma_mm = np.where(matched, pmma[row], np.nan)
    breast_mm = np.where(matched, breast[row], np.nan)
    gl = np.where(matched, gland[row], np.nan)

    # K at the upper surface of the PMMA
    at_pmma = replace(b, thickness_mm=pmma_mm)
    k_meas, hvl_fit, _ = _measured_kerma(at_pmma, fits, params, flags)
    k_rp, moved, has_set = _rdsr_kerma(b, params)  # at the reference point's surface (the paddle)
    gap = _support_gap(b, params)
    k_rdsr = dance.move_kerma(k_rp, b.sdd_mm - gap - b.thickness_mm, b.sdd_mm - gap - pmma_mm)
    inconsistent = kerma_inconsistent(k_meas, k_rdsr, params.k_vs_mas_tolerance)
    flags.add("inconsistent:k_vs_mas", inconsistent)
    flags.add("assumed:support_gap_mm", ~has_set & (np.abs(b.thickness_mm - pmma_mm) > 0.5))
    measured = np.isfinite(k_meas) & np.isfinite(hvl_fit) & ~inconsistent
    k = np.where(measured, k_meas, k_rdsr)
    hvl = np.where(measured, hvl_fit, b.hvl_rdsr)
    flags.add("missing:hvl_mm", ~measured & np.isnan(b.hvl_rdsr))
    flags.add("missing:entrance_exposure_mgy", ~measured & np.isnan(b.k_rp))

    # factors of the equivalent breast
    eq = replace(b, thickness_mm=breast_mm)
    t_cm = breast_mm / 10.0
    g, _, _ = _g_factor(fs, hvl, t_cm, flags)
    c = _c_at_glandularity(fs, hvl, t_cm, gl, flags)
    s, _ = _s_factor(eq, fs, hvl, t_cm, flags)
    t = _t_factor(eq, fs, hvl, t_cm, flags)
    mgd = k * g * c * s * np.where(b.is_dbt, t, 1.0)

    acc = np.full(n, np.nan)
    ach = np.full(n, np.nan)
    for lv in levels or []:
        sel = np.isclose(pmma_mm, float(lv["pmma_cm"]) * 10.0) & ~b.is_dbt
        acc[sel], ach[sel] = float(lv["acceptable_mgy"]), float(lv["achievable_mgy"])
    flags.add("qc:no_level_for_dbt", b.is_dbt & matched)
    verdict: list = []
    for m, a, h in zip(mgd.tolist(), acc.tolist(), ach.tolist()):
        if np.isnan(m) or np.isnan(a):
            verdict.append(None)
        else:
            verdict.append("achievable" if m <= h else "acceptable" if m <= a else "above acceptable")
    flags.add("no_mgd", np.isnan(mgd))
    return PhantomResult(
        pmma_mm,
        breast_mm,
        gl,
        np.where(measured, 0, 1).astype(np.int8),
        k,
        hvl,
        g,
        c,
        s,
        np.where(b.is_dbt, t, np.nan),
        mgd,
        acc,
        ach,
        verdict,
        flags,
    )
