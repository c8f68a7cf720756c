"""Statistics of the reports: pure functions of numpy arrays (no database, no I/O).

Percentiles use numpy's default (linear interpolation between order
statistics, Hyndman and Fan type 7, as R's ``quantile`` and Excel's
``PERCENTILE.INC``). NaN values are ignored everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def describe(x) -> dict:
    """n, mean, sd, median, p25, p75, min, max of the finite values of ``x`` (NaN when n = 0)."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return {
            "n": 0,
            "mean": np.nan,
            "sd": np.nan,
            "median": np.nan,
            "p25": np.nan,
            "p75": np.nan,
            "min": np.nan,
            "max": np.nan,
        }
    p25, med, p75 = np.percentile(x, [25, 50, 75])
    return {
        "n": n,
        "mean": float(x.mean()),
        "sd": float(x.std(ddof=1)) if n > 1 else np.nan,
        "median": float(med),
        "p25": float(p25),
        "p75": float(p75),
        "min": float(x.min()),
        "max": float(x.max()),
    }


def group_index(keys) -> tuple[np.ndarray, np.ndarray]:
    """(unique keys sorted, index of each element's key)."""
    keys = np.asarray(keys)
    if keys.dtype == object:
        keys = keys.astype(str)
    return np.unique(keys, return_inverse=True)


def group_medians(values, groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median of the finite ``values`` per group: (group keys, medians, counts), groups with
    no finite value left out."""
    values = np.asarray(values, dtype=float)
    ok = np.isfinite(values)
    keys, idx = group_index(np.asarray(groups)[ok])
    v = values[ok]
    meds = np.array([np.median(v[idx == g]) for g in range(keys.size)], dtype=float)
    counts = np.bincount(idx, minlength=keys.size) if keys.size else np.zeros(0, dtype=int)
    return keys, meds, counts


@dataclass
class DRL:
    """ICRP 135 statistics of a set of room medians."""

    rooms: int
    local_drl: float  # median of the room medians (the "typical value" of a service)
    national_style_drl: float  # 75th percentile of the room medians
    p25: float
    minimum: float
    maximum: float


def drl_from_room_medians(medians) -> DRL:
    """Local DRL = median of room medians; national-style DRL = their 75th percentile (type 7)."""
    m = np.asarray(medians, dtype=float)
    m = m[np.isfinite(m)]
    if m.size == 0:
        return DRL(0, np.nan, np.nan, np.nan, np.nan, np.nan)
    p25, p50, p75 = np.percentile(m, [25, 50, 75])
    return DRL(int(m.size), float(p50), float(p75), float(p25), float(m.min()), float(m.max()))


def in_band(x, lo: float, hi: float) -> np.ndarray:
    """lo <= x <= hi (NaN is outside)."""
    x = np.asarray(x, dtype=float)
    with np.errstate(invalid="ignore"):
        return (x >= lo) & (x <= hi)


@dataclass
class ExpFit:
    """MGD = a * exp(b * thickness), least squares on ln(MGD)."""

    a: float
    b: float
    n: int
    r2: float
    n_outliers: int = 0

    def __call__(self, t):
        return self.a * np.exp(self.b * np.asarray(t, dtype=float))


def fit_exponential(t, y, outlier_factor: float | None = 2.0) -> ExpFit | None:
    """Fit y = a·exp(b·t) by least squares on ln(y), over the finite pairs with y > 0.

    With ``outlier_factor``, points further than that factor from the first
    fit are left out and the fit repeated once (``n_outliers`` counts them):
    a few very low-dose exposures (e.g. 20 kV events) must not bend the
    curve. None with fewer than 3 points or no spread in t.
    """
    t = np.asarray(t, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(t) & np.isfinite(y) & (y > 0)

    def fit(mask):
        if mask.sum() < 3 or np.ptp(t[mask]) == 0:
            return None
        b, ln_a = np.polyfit(t[mask], np.log(y[mask]), 1)
        return float(b), float(ln_a)

    first = fit(ok)
    if first is None:
        return None
    b, ln_a = first
    used = ok
    if outlier_factor:
        with np.errstate(invalid="ignore", divide="ignore"):
            resid = np.abs(np.log(y) - (ln_a + b * t))
        keep = ok & (resid <= np.log(outlier_factor))
        if keep.sum() < ok.sum():
            second = fit(keep)
            if second is not None:
                (b, ln_a), used = second, keep
    ly = np.log(y[used])
    pred = ln_a + b * t[used]
    ss_res = float(((ly - pred) ** 2).sum())
    ss_tot = float(((ly - ly.mean()) ** 2).sum())
    return ExpFit(
        float(np.exp(ln_a)),
        b,
        int(used.sum()),
        1.0 - ss_res / ss_tot if ss_tot > 0 else np.nan,
        int(ok.sum() - used.sum()),
    )


def bland_altman(a, b) -> dict:
    """Differences a - b against the means: n, bias (mean difference), sd, 95 % limits of agreement."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    n = int(d.size)
    if n == 0:
        return {"n": 0, "bias": np.nan, "sd": np.nan, "lower": np.nan, "upper": np.nan}
    bias = float(d.mean())
    sd = float(d.std(ddof=1)) if n > 1 else np.nan
    return {"n": n, "bias": bias, "sd": sd, "lower": bias - 1.96 * sd, "upper": bias + 1.96 * sd}


def occurrence_number(group, key) -> np.ndarray:
    """1 for the first row of each (group, key) pair, 2 for the second, ... in row order."""
    group = np.asarray(group)
    key = np.asarray(key)
    n = group.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    # integer keys are their own codes; others are coded by their text
    kcode = key if key.dtype.kind in "iu" else np.unique(key.astype(str), return_inverse=True)[1].reshape(-1)
    order = np.lexsort((np.arange(n), kcode, group))
    g, k = group[order], kcode[order]
    new = np.ones(n, dtype=bool)
    new[1:] = (g[1:] != g[:-1]) | (k[1:] != k[:-1])
    start = np.maximum.accumulate(np.where(new, np.arange(n), 0))
    out = np.empty(n, dtype=np.int64)
    out[order] = np.arange(n) - start + 1
    return out


def sequence_number(group) -> np.ndarray:
    """1, 2, ... numbering the distinct values of ``group`` in order of first appearance."""
    group = np.asarray(group)
    if group.size == 0:
        return np.zeros(0, dtype=np.int64)
    _, first, inv = np.unique(group, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(1, first.size + 1)
    return rank[inv]


def exam_timing(study, t) -> tuple[np.ndarray, np.ndarray]:
    """Exam durations (last minus first event start, one per study with >= 2 timed events)
    and the gaps between consecutive exposures of a study, in seconds.

    Rows need not be sorted; events without a start time are ignored.
    """
    study = np.asarray(study)
    t = np.asarray(t, dtype=float)
    ok = np.isfinite(t)
    s, tt = study[ok], t[ok]
    if s.size == 0:
        return np.zeros(0), np.zeros(0)
    order = np.lexsort((tt, s))
    s, tt = s[order], tt[order]
    same = s[1:] == s[:-1]
    gaps = (tt[1:] - tt[:-1])[same]
    keys, idx = np.unique(s, return_inverse=True)
    counts = np.bincount(idx)
    lo = np.full(keys.size, np.inf)
    hi = np.full(keys.size, -np.inf)
    np.minimum.at(lo, idx, tt)
    np.maximum.at(hi, idx, tt)
    durations = (hi - lo)[counts >= 2]
    return durations, gaps
