"""Mean glandular dose with the Dance model: pure functions on numpy arrays.

No I/O here: the factor tables arrive as :class:`Grid` objects (built by
:mod:`srdose.physics.factors`), the unit's measurements as arrays. Every
function takes and returns arrays so that one call handles every event of a
recalculation; NaN marks a missing input and propagates.

Formulas
--------
2D (Dance 1990; Dance et al. 2000, eq. 1; UK/European/IAEA protocols)::

    MGD = K · g · c · s

DBT (Dance, Young & van Engen 2011, eq. 2 and 3)::

    MGD = K_T · g · c · s · T,      T = Σ αᵢ t(θᵢ)

with K_T the incident air kerma of the whole sweep (total tube loading) at
the 0° geometry and αᵢ the fraction of the tube loading in projection i.

Incident air kerma K at the upper breast surface, free in air, no
backscatter, from the unit's measured tube output (how national surveys do
it; Dance et al. 2000 section 2)::

    K = Y(kV) · mAs · (d_ref / (FDD − gap − t))²

Y is the output per mAs measured at distance d_ref from the focus, FDD the
focus–detector distance, gap the breast-support-to-detector distance and t
the compressed thickness. A kerma reported at another point on the central
ray (the RDSR's reference point) is moved to the breast surface with the
inverse-square law (:func:`move_kerma`).

Interpolation (from a leave-one-out test of the g table: linear in
ln(g) against thickness errs ~1 %, linear in g ~3 %): linear in HVL; for g
linear in ln(g) against thickness; c, s and T bilinear. :func:`interpolate`
reports which inputs lie outside a table; the caller gives those no value
(a flag names the factor and axis): never clamped, never extrapolated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Age groups of the typical-glandularity table (Dance et al. 2000: typical
#: glandularity of women aged 40-49 and 50-64 by compressed thickness).
AGE_GROUPS = ("40-49", "50-64")


# --- interpolation -----------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """A factor tabulated against HVL (mm Al) and thickness (cm).

    Either axis may be ``None`` (the factor does not depend on it); a factor
    with neither is a constant. ``values`` has shape ``(len(hvl) or 1,
    len(thickness) or 1)``.

    Parameters
    ----------
    hvl, thickness
        Ascending axes, or ``None``.
    values
        Tabulated values.
    log_thickness
        Interpolate ln(value) in thickness (the g table: README "Interpolation").
    suspect
        Cells known to be doubtful (same shape as ``values``); an interpolation
        that gives such a cell a non-zero weight is flagged.
    source
        Where the numbers come from (paper, table, file).
    """

    hvl: np.ndarray | None
    thickness: np.ndarray | None
    values: np.ndarray
    log_thickness: bool = False
    suspect: np.ndarray | None = None
    source: str = ""
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        v = np.asarray(self.values, dtype=float)
        nh = 1 if self.hvl is None else len(self.hvl)
        nt = 1 if self.thickness is None else len(self.thickness)
        if v.shape != (nh, nt):
            raise ValueError(f"grid values have shape {v.shape}, axes need {(nh, nt)}")
        for name, axis in (("hvl", self.hvl), ("thickness", self.thickness)):
            if axis is not None and len(axis) > 1 and np.any(np.diff(axis) <= 0):
                raise ValueError(f"{name} axis must be strictly ascending")
        if not np.all(np.isfinite(v)):
            raise ValueError("grid values must all be finite")
        if self.log_thickness and np.any(v <= 0):
            raise ValueError("log interpolation needs positive values")
        object.__setattr__(self, "values", v)

    @property
    def is_constant(self) -> bool:
        return self.hvl is None and self.thickness is None

    def range_text(self) -> str:
        parts = []
        if self.hvl is not None:
            parts.append(f"HVL {self.hvl[0]:g}-{self.hvl[-1]:g} mm Al")
        if self.thickness is not None:
            parts.append(f"thickness {self.thickness[0]:g}-{self.thickness[-1]:g} cm")
        return ", ".join(parts) or "constant"


def _axis_position(axis: np.ndarray | None, x: np.ndarray):
    """Left node index, weight of the right node and the clamped mask."""
    n = x.shape[0]
    if axis is None or len(axis) == 1:
        return np.zeros(n, dtype=np.intp), np.zeros(n), np.zeros(n, dtype=bool)
    with np.errstate(invalid="ignore"):
        clamped = (x < axis[0]) | (x > axis[-1])
    xc = np.clip(x, axis[0], axis[-1])
    i = np.searchsorted(axis, xc, side="right") - 1
    np.clip(i, 0, len(axis) - 2, out=i)
    w = (xc - axis[i]) / (axis[i + 1] - axis[i])
    return i, w, clamped


@dataclass
class Interpolated:
    """The result of :func:`interpolate`: values and what happened on the way.

    ``clamped_*`` mark inputs outside an axis (their ``value`` is the edge's,
    for the caller to discard); ``d_hvl`` and ``d_thickness`` are the
    derivatives of the interpolant (per mm Al, per cm) when asked for.
    """

    value: np.ndarray
    clamped_hvl: np.ndarray
    clamped_thickness: np.ndarray
    suspect: np.ndarray
    d_hvl: np.ndarray | None = None
    d_thickness: np.ndarray | None = None


def interpolate(grid: Grid, hvl, thickness_cm, slopes: bool = False) -> Interpolated:
    """Interpolate ``grid`` at each (HVL, thickness) pair.

    Linear in HVL; in thickness linear, or linear in ln(value) when
    ``grid.log_thickness`` (g). Values outside an axis are reported in the
    ``clamped_*`` masks (their value is the edge's). NaN inputs give NaN.
    With ``slopes`` the derivatives of the interpolant are returned too (on
    a node, those of the cell the interpolation uses; zero along an absent
    axis).
    """
    hvl = np.asarray(hvl, dtype=float)
    t = np.asarray(thickness_cm, dtype=float)
    n = max(hvl.size, t.size)
    hvl = np.broadcast_to(hvl, (n,)) if hvl.size != n else hvl.reshape(n)
    t = np.broadcast_to(t, (n,)) if t.size != n else t.reshape(n)
    i, wi, ch = _axis_position(grid.hvl, hvl)
    j, wj, ct = _axis_position(grid.thickness, t)
    v = np.log(grid.values) if grid.log_thickness else grid.values
    nh, nt = v.shape
    i1 = np.minimum(i + 1, nh - 1)
    j1 = np.minimum(j + 1, nt - 1)
    lo = v[i, j] + wj * (v[i, j1] - v[i, j])  # along thickness, lower HVL row
    hi = v[i1, j] + wj * (v[i1, j1] - v[i1, j])  # upper HVL row
    if grid.log_thickness:
        lo, hi = np.exp(lo), np.exp(hi)
    value = lo + wi * (hi - lo)
    d_h = d_t = None
    if slopes:
        dh_axis = np.diff(grid.hvl)[np.minimum(i, nh - 2)] if grid.hvl is not None and nh > 1 else None
        dt_axis = np.diff(grid.thickness)[np.minimum(j, nt - 2)] if grid.thickness is not None and nt > 1 else None
        d_h = (hi - lo) / dh_axis if dh_axis is not None else np.zeros(n)
        if dt_axis is None:
            d_t = np.zeros(n)
        else:
            s_lo = (v[i, j1] - v[i, j]) / dt_axis
            s_hi = (v[i1, j1] - v[i1, j]) / dt_axis
            if grid.log_thickness:  # d/dt exp(L) = exp(L) dL/dt
                s_lo, s_hi = lo * s_lo, hi * s_hi
            d_t = s_lo + wi * (s_hi - s_lo)
    # a missing input gives a missing value, whatever the axis
    if grid.hvl is not None:
        value = np.where(np.isnan(hvl), np.nan, value)
    if grid.thickness is not None:
        value = np.where(np.isnan(t), np.nan, value)
    if grid.suspect is not None and grid.suspect.any():
        s = grid.suspect
        suspect = (
            (s[i, j] & ((1 - wi) * (1 - wj) > 0))
            | (s[i, j1] & ((1 - wi) * wj > 0))
            | (s[i1, j] & (wi * (1 - wj) > 0))
            | (s[i1, j1] & (wi * wj > 0))
        )
    else:
        suspect = np.zeros(n, dtype=bool)
    return Interpolated(value, ch, ct, suspect, d_h, d_t)


# --- tube output and HVL fits -------------------------------------------------------


@dataclass(frozen=True)
class KvFit:
    """A polynomial in kV fitted to measured points (one target/filter).

    ``coef`` is highest power first (``numpy.polyfit`` order), padded to
    three terms (a quadratic) so fits of different degree stack into one
    array. ``kv_min``/``kv_max`` are the measured range.
    """

    coef: tuple
    degree: int
    kv_min: float
    kv_max: float
    residuals: tuple  # measured − fitted, per point, in the points' order
    n_points: int
    n_kv: int = 0  # distinct kV measured
    mean_value: float = 0.0

    @property
    def rms(self) -> float:
        r = np.asarray(self.residuals)
        return float(np.sqrt(np.mean(r * r))) if r.size else 0.0

    @property
    def rel_rms(self) -> float:
        """RMS residual relative to the mean fitted quantity (0 for an exact fit)."""
        return self.rms / abs(self.mean_value) if self.mean_value else 0.0


def fit_kv(kv, y, degree: int = 2) -> KvFit:
    """Least-squares polynomial of ``y`` against kV.

    Quadratic by default (tube output and HVL are smooth and slightly curved
    over the 25-35 kV of a mammography unit; a quadratic has residuals well
    inside QA measurement uncertainty on such data). With fewer points than
    the degree needs, the degree drops to ``n - 1`` (one point: a constant).
    """
    kv = np.asarray(kv, dtype=float)
    y = np.asarray(y, dtype=float)
    if kv.size == 0:
        raise ValueError("no points to fit")
    deg = int(min(degree, len(np.unique(kv)) - 1))
    deg = max(deg, 0)
    coef = np.polyfit(kv, y, deg) if deg > 0 else np.array([float(np.mean(y))])
    residuals = y - np.polyval(coef, kv)
    padded = np.concatenate([np.zeros(3 - len(coef)), coef])
    return KvFit(
        tuple(float(c) for c in padded),
        deg,
        float(kv.min()),
        float(kv.max()),
        tuple(float(r) for r in residuals),
        int(kv.size),
        int(len(np.unique(kv))),
        float(np.mean(y)),
    )


def evaluate_fits(coef: np.ndarray, kv_range: np.ndarray, group: np.ndarray, kv, margin_kv):
    """Evaluate stacked quadratic fits per event.

    Parameters
    ----------
    coef
        ``(n_fits, 3)`` coefficients, highest power first.
    kv_range
        ``(n_fits, 2)`` measured kV range of each fit.
    group
        Fit index per event (``-1``: no fit; gives NaN).
    kv
        Tube voltage per event.
    margin_kv
        How far past the measured range the fit may be used (a number, or
        one per event). Further out there is no value (NaN and the
        ``outside`` mask): a fit is never extrapolated beyond it, nor is the
        kV clamped.

    Returns
    -------
    value, outside
        The fitted values and the mask of events whose kV was past the
        measured range by more than the margin.
    """
    kv = np.asarray(kv, dtype=float)
    group = np.asarray(group)
    ok = group >= 0
    g = np.where(ok, group, 0)
    lo = kv_range[g, 0] - margin_kv
    hi = kv_range[g, 1] + margin_kv
    with np.errstate(invalid="ignore"):
        outside = ok & ((kv < lo) | (kv > hi))
    a, b, c = coef[g, 0], coef[g, 1], coef[g, 2]
    value = (a * kv + b) * kv + c
    value = np.where(ok & ~outside, value, np.nan)
    return value, outside


# --- kerma ---------------------------------------------------------------------------


def kerma_from_output(output_ugy_per_mas, mas, d_ref_mm, fdd_mm, gap_mm, thickness_mm):
    """Incident air kerma (mGy) at the upper breast surface from the tube output.

    K = Y · mAs · (d_ref / (FDD − gap − t))², Y in µGy/mAs at d_ref
    (Dance et al. 2000 section 2; UK/European protocol). NaN where the
    geometry leaves no room for the breast.
    """
    d_surface = np.asarray(fdd_mm, dtype=float) - gap_mm - thickness_mm
    with np.errstate(invalid="ignore", divide="ignore"):
        d_surface = np.where(d_surface > 0, d_surface, np.nan)
        return np.asarray(output_ugy_per_mas) * np.asarray(mas) / 1000.0 * (d_ref_mm / d_surface) ** 2


def move_kerma(k_mgy, from_distance_mm, to_distance_mm):
    """Air kerma moved along the central ray with the inverse-square law."""
    with np.errstate(invalid="ignore", divide="ignore"):
        to = np.where(np.asarray(to_distance_mm, dtype=float) > 0, to_distance_mm, np.nan)
        return np.asarray(k_mgy) * (np.asarray(from_distance_mm) / to) ** 2


def mgd(k, g, c, s, t_factor=1.0):
    """Mean glandular dose: K·g·c·s (2D) or K·g·c·s·T (DBT, Dance 2011)."""
    return np.asarray(k) * g * c * s * t_factor


def sweep_T(weights, t_theta) -> float:
    """T = Σ αᵢ t(θᵢ), αᵢ = weightᵢ / Σ weights (Dance et al. 2011, eq. 3)."""
    w = np.asarray(weights, dtype=float)
    return float(np.sum(w / w.sum() * np.asarray(t_theta, dtype=float)))


# --- age -----------------------------------------------------------------------------


def age_group(age_years):
    """Typical-glandularity group per woman (index into :data:`AGE_GROUPS`).

    40-49 → 0, 50-64 → 1 (Dance et al. 2000). Other ages take the nearest
    group (``nearest`` mask); a missing age takes 50-64, the screening
    programme's group (``missing`` mask). Both are flagged by the caller.
    """
    age = np.asarray(age_years, dtype=float)
    missing = np.isnan(age)
    with np.errstate(invalid="ignore"):
        group = np.where(age < 50.0, 0, 1)
        nearest = ~missing & ((age < 40.0) | (age >= 65.0))
    group = np.where(missing, 1, group)
    return group.astype(np.intp), nearest, missing
