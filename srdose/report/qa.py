"""Physics QA review of one unit (``srdose report qa``): the pure parts.

Recalculated against reported MGD (ratio, Bland–Altman, by kV and by
target/filter, the flagged events and why), the AEC behaviour (kV,
target/filter, mAs against thickness), compression force and thickness per
view, exam timing from event start times, data-quality flags.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from srdose.report import common as C
from srdose.report import stats


def target_filter(cols: dict) -> np.ndarray:
    return _target_filter_fast(cols["anode"], cols["filter_material"])


def _target_filter_fast(a, f) -> np.ndarray:
    cache: dict = {}
    out = np.empty(a.size, dtype=object)
    for i, key in enumerate(zip(a, f)):
        v = cache.get(key)
        if v is None:
            v = cache[key] = f"{key[0] or '?'}/{key[1] or '?'}"
        out[i] = v
    return out


def ratio(cols: dict) -> np.ndarray:
    """Recalculated MGD / reported AGD (NaN where either is missing or not positive)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return C.recalc_mgd(cols) / C.reported_agd(cols)


def flagged_events(cols: dict, band: float) -> tuple[np.ndarray, np.ndarray]:
    """(indices, reasons) of the events a physicist should look at: ratio outside 1 ± band,
    no recalculated MGD, or a data-quality flag from the parse (missing or zero values, ...).

    The recalculation's own flags (interpolation clamped, suspect table cell, fallback
    method, ...) are counted in :func:`flag_counts` and given here as part of the reason, but
    do not on their own put an event on the list: on a busy unit they mark most events.
    """
    r = ratio(cols)
    rec = C.recalc_mgd(cols)
    lo, hi = 1.0 - band, 1.0 + band
    with np.errstate(invalid="ignore"):
        outside = np.isfinite(r) & ((r < lo) | (r > hi))
    no_mgd = ~np.isfinite(rec)
    has_flags = cols["flags"] != None  # noqa: E711
    idx = np.flatnonzero(outside | no_mgd | has_flags)
    # ratio outside the band first, then by row order
    idx = idx[np.argsort(~outside[idx], kind="stable")]
    cache: dict = {}
    why = np.empty(idx.size, dtype=object)
    for j, i in enumerate(idx):
        key = (cols["flags"][i], cols["recalc_flags"][i], bool(no_mgd[i]), cols["method"][i] is None)
        tail = cache.get(key)
        if tail is None:
            parts = []
            if key[2]:
                parts.append("not recalculated" if key[3] else "no recalculated MGD")
            parts += [f.replace(";", "; ") for f in key[:2] if f]
            tail = cache[key] = "; ".join(parts)
        head = f"ratio {r[i]:.2f} outside {lo:.2f}–{hi:.2f}" if outside[i] else ""
        why[j] = "; ".join(p for p in (head, tail) if p)
    return idx, why


def flag_counts(cols: dict) -> list[tuple[str, str, int]]:
    """(source, flag, events) for every event flag and recalculation flag, most frequent first."""
    rows = []
    for source, name in (("event (parse)", "flags"), ("recalculation", "recalc_flags")):
        values, counts = np.unique(np.where(cols[name] == None, "", cols[name]).astype(str),  # noqa: E711
                                   return_counts=True) if cols["n"] else ([], [])
        c: Counter = Counter()
        for v, k in zip(values, counts):
            for f in v.split(";"):
                if f:
                    c[f] += int(k)
        rows += [(source, f, k) for f, k in c.most_common()]
    return rows


def by_group(values, groups, order=None) -> list[list]:
    """[group, n, mean, median, p25, p75] per group."""
    groups = np.asarray(groups).astype(str)
    names = order if order is not None else sorted(set(groups.tolist()))
    out = []
    for g in names:
        d = stats.describe(np.asarray(values, float)[groups == str(g)])
        if d["n"]:
            out.append([g, d["n"], d["mean"], d["median"], d["p25"], d["p75"]])
    return out


def kv_group(kvp) -> np.ndarray:
    """kV rounded to whole kV, as text ('?' missing)."""
    kvp = np.asarray(kvp, float)
    out = np.full(kvp.size, "?", dtype=object)
    ok = np.isfinite(kvp)
    out[ok] = np.round(kvp[ok]).astype(int).astype(str)
    return out


def thickness_bands(t, width: float = 10.0) -> np.ndarray:
    t = np.asarray(t, float)
    out = np.full(t.size, "?", dtype=object)
    ok = np.isfinite(t)
    lo = (np.floor(t[ok] / width) * width).astype(int)
    if ok.any():
        out[ok] = np.char.add(np.char.add(np.char.zfill(lo.astype(str), 3), "–"),
                              np.char.zfill((lo + int(width)).astype(str), 3))
    return out


def aec_table(cols: dict) -> list[list]:
    """Per 10 mm thickness band: exposures, mean kV, mean mAs, the target/filter shares."""
    t = cols["compressed_thickness_mm"]
    bands = thickness_bands(t)
    tf = target_filter(cols)
    rows = []
    for b in sorted(set(bands.tolist()) - {"?"}) + (["?"] if (bands == "?").any() else []):
        s = bands == b
        k, c = np.unique(tf[s].astype(str), return_counts=True)
        shares = ", ".join(f"{k[j]} {100.0 * c[j] / s.sum():.0f}%" for j in np.argsort(-c))
        rows.append([b.replace("?", "no thickness"), int(s.sum()), stats.describe(cols["kvp"][s])["mean"],
                     stats.describe(cols["mas"][s])["mean"], shares])
    return rows


def timing(cols: dict) -> tuple[np.ndarray, np.ndarray]:
    """(exam durations, gaps between consecutive exposures) in seconds."""
    return stats.exam_timing(cols["study_id"], cols["t_start"])
