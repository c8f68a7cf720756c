"""Database side of the web app's unit page: the data of its charts, JSON-ready.

:func:`unit_charts` gathers everything the page draws for one unit (by serial
number; every device carrying that serial counts): MGD against compressed
thickness with the reference levels, the recalculated/reported ratio as a
control chart (:func:`ratio_drift`, which the alerts call too), the AEC's kV
and target/filter against thickness, compression force per view, monthly
medians, the unit's physics data with their fits, and the RDSR quirks seen.

Size: a unit may hold hundreds of thousands of events, so nothing sends them
all to the browser. :func:`unit_charts` reads the narrow columns it needs of the
unit's events once, with the driver's cursor (one indexed query, not one per
chart), and computes everything from them here: the scatter charts get a
pseudo-random sample (at most ``max_points``, 2,000 by default, per chart,
chosen by a hash of the event id); the medians are reduced to one point per
day, week or month; flags and target/filter pairs are counted. Only live events
of patient studies count (not superseded by a later RDSR, not a test or phantom
study). No pseudonym or UID leaves this module.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
from sqlalchemy import Select, false, func, select

from srdose import reference
from srdose.physics.dance import fit_kv
from srdose.store import models as M
from srdose.store.bulk import raw_chunks
from srdose.store.recalc import physics_sets

#: Points per scatter chart at most: enough to show the cloud, small enough to draw at once.
MAX_POINTS = 2000
#: Western Electric run rule: this many consecutive points on one side of the centre line.
RUN_LENGTH = 8
#: d2 for moving ranges of two points: sigma of an individuals chart = mean moving range / d2
#: (Montgomery, Introduction to Statistical Quality Control, individuals control chart).
D2_MOVING_RANGE = 1.128
#: Multiplier of the pseudo-random sample (a prime; Knuth's multiplicative hash) and the
#: prime it is reduced by, so that the sample does not follow the order of views in a study.
_HASH_MULTIPLIER = 2654435761
_HASH_PRIME = 4294967291


# --- reference levels ---------------------------------------------------------------------


def eu_levels() -> dict:
    """European Guidelines acceptable / achievable MGD at the equivalent breast thickness
    (``thickness_mm``), with the table's label, status and source: the rows of
    :func:`srdose.reference.eu_levels` as the charts use them."""
    eu = reference.eu_levels()
    return {
        "label": eu["label"],
        "status": eu.get("status_short", eu["status"]),
        "source": eu["source"],
        "rows": [
            {
                "thickness_mm": round(r["equivalent_breast_cm"] * 10.0, 6),
                "pmma_cm": r["pmma_cm"],
                "acceptable_mgy": r["acceptable_mgy"],
                "achievable_mgy": r["achievable_mgy"],
            }
            for r in eu["rows"]
        ],
    }


# --- the unit's events ----------------------------------------------------------------------


def _live_patient(q: Select, device_ids: list[int]) -> Select:
    """Restrict a query over events joined to their source object and study to the unit's live
    events of patient studies."""
    not_patient = func.coalesce(M.Study.not_patient, false())
    return q.where(
        M.Event.device_id.in_(device_ids),
        M.SourceObject.superseded_by.is_(None),
        not_patient.is_(false()),
    )


def _events_query(*cols: Any) -> Select:
    E, S, St, R = M.Event, M.SourceObject, M.Study, M.RecalcResult
    return (
        select(*cols)
        .select_from(E)
        .join(S, E.source_object_id == S.id)
        .join(St, E.study_id == St.id)
        .outerjoin(R, R.event_id == E.id)
    )


def unit_devices(store, serial: str) -> list[dict]:
    """The devices with this serial number (one unless two makers share a serial)."""
    D = M.Device
    q = select(D.id, D.manufacturer, D.model, D.serial, D.station, D.display_name, D.first_seen, D.last_seen)
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q.where(D.serial == serial).order_by(D.id))]
    for r in rows:
        for key in ("first_seen", "last_seen"):
            r[key] = r[key].isoformat(timespec="seconds") if r[key] is not None else None
    return rows


def _to_day_columns(dates: list, mgd: list, agd: list, ratio: list) -> dict[str, np.ndarray]:
    """The arrays of :func:`_day_columns` from parallel lists (dates as YYYYMMDD, not None)."""
    day = np.array([f"{d[:4]}-{d[4:6]}-{d[6:8]}" for d in dates], dtype="datetime64[D]")
    order = np.argsort(day, kind="stable")
    out = {"day": day[order]}
    for name, raw in (("mgd", mgd), ("agd", agd), ("ratio", ratio)):
        v = np.array(raw, dtype=float).reshape(-1)
        with np.errstate(invalid="ignore"):
            v[~(v > 0)] = np.nan
        out[name] = v[order]
    return out


def _day_columns(store, device_ids: list[int], acquisition: str | None = None) -> dict[str, np.ndarray]:
    """Study date (datetime64[D]), recalculated MGD, reported AGD and their stored ratio of the
    unit's events, NaN where missing or not positive; ordered by date."""
    E, St, R = M.Event, M.Study, M.RecalcResult
    q = _live_patient(_events_query(St.study_date, R.mgd_recalc_mgy, E.agd_mgy, R.ratio_recalc_to_reported), device_ids)
    q = q.where(St.study_date.is_not(None))
    if acquisition:
        q = q.where(E.acquisition == acquisition)
    cols: list[list] = [[], [], [], []]
    with store.engine.connect() as conn:
        for part in raw_chunks(conn, q, 50000):
            for k, c in enumerate(zip(*part)):
                cols[k].extend(c)
    return _to_day_columns(*cols)


def _group_medians(keys: np.ndarray, values: np.ndarray, min_n: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(key, median, n) per distinct key of sorted ``keys`` over the finite ``values``."""
    ok = np.isfinite(values)
    keys, values = keys[ok], values[ok]
    if keys.size == 0:
        return keys, np.zeros(0), np.zeros(0, dtype=np.int64)
    order = np.lexsort((values, keys))
    keys, values = keys[order], values[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    counts = np.diff(np.r_[starts, keys.size])
    medians = np.array([float(np.median(values[s : s + n])) for s, n in zip(starts, counts)])
    keep = counts >= min_n
    return keys[starts][keep], medians[keep], counts[keep]


def _round(x: float | None, digits: int = 4) -> float | None:
    """Significant digits enough for a chart; None for missing."""
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.{digits}g}")


# --- the control chart of the ratio -----------------------------------------------------------


def _week_start(day: np.ndarray) -> np.ndarray:
    # 1970-01-01 was a Thursday: shift by 3 days so that weeks start on Monday
    n = day.astype(np.int64)
    return (n - (n + 3) % 7).astype("datetime64[D]")


def control_chart(
    values: np.ndarray,
    baseline: np.ndarray,
    sigma_floor: float = 0.01,
    run_length: int = RUN_LENGTH,
) -> dict:
    """Centre line, ±3σ limits and rule violations of an individuals chart.

    The centre is the mean of the baseline points and σ their mean moving range / 1.128, not less
    than ``sigma_floor`` × centre (a near-constant baseline would otherwise flag differences too
    small to matter; a point within that of the centre counts as on it). Two of the Western
    Electric rules (Western Electric Company, Statistical
    Quality Control Handbook, 1956; Montgomery, Introduction to Statistical Quality Control):
    ``beyond_3sigma``, a point outside the limits; ``run_of_8``, ``run_length`` consecutive points
    on one side of the centre line (each point from the 8th of the run on is flagged).

    ``baseline`` is a boolean mask over ``values``. Returns ``centre``, ``sigma``, ``ucl``,
    ``lcl`` and ``flags`` (a list of rule names per point).
    """
    values = np.asarray(values, dtype=float)
    base = values[baseline]
    centre = float(np.mean(base))
    mr = np.abs(np.diff(base))
    sigma = float(np.mean(mr)) / D2_MOVING_RANGE if mr.size else 0.0
    sigma = max(sigma, sigma_floor * abs(centre))
    ucl, lcl = centre + 3.0 * sigma, centre - 3.0 * sigma
    flags: list[list[str]] = [[] for _ in values]
    # closer to the centre than sigma_floor x centre counts as on the line: such differences do
    # not matter for dose, and counting them would make chance runs of noise a signal
    side = np.sign(values - centre)
    side[np.abs(values - centre) < sigma_floor * abs(centre)] = 0
    run = 0
    for i, v in enumerate(values):
        if v > ucl or v < lcl:
            flags[i].append("beyond_3sigma")
        # a point on the centre line ends a run
        run = run + 1 if i > 0 and side[i] != 0 and side[i] == side[i - 1] else (1 if side[i] != 0 else 0)
        if run >= run_length:
            flags[i].append(f"run_of_{run_length}")
    return {"centre": centre, "sigma": sigma, "ucl": ucl, "lcl": lcl, "flags": flags}


def ratio_drift(
    store,
    serial: str,
    *,
    since: str | None = None,
    until: str | None = None,
    period: str = "auto",
    baseline_points: int = 20,
    baseline_until: str | None = None,
    min_events: int = 10,
    sigma_floor: float = 0.01,
    run_length: int = RUN_LENGTH,
    acquisition: str | None = None,
    _columns: dict | None = None,
) -> dict:
    """The recalculated/reported MGD ratio of a unit as a control chart, and whether it drifted.

    One point per day (``period="day"``) or per week starting on Monday (``"week"``): the median
    ratio of the unit's events of that day or week, kept when it has at least ``min_events``
    events with a ratio. ``"auto"``: days, unless that gives more than 180 points or fewer
    than weeks would (a unit too quiet for ``min_events`` a day). The centre
    line and ±3σ limits come from a baseline: the points up to ``baseline_until`` (YYYY-MM-DD)
    when given, else the first ``baseline_points`` points; rules as :func:`control_chart`.
    ``since``/``until`` (YYYY-MM-DD, inclusive) limit the points; ``acquisition`` (2D | DBT)
    the events.

    Returns a JSON-ready dict: ``period``; ``points`` (``date`` of the day or week start,
    ``median``, ``n``, ``flags``); ``centre``, ``sigma``, ``ucl``, ``lcl`` (None without a
    baseline); ``baseline`` (``from``, ``until``, ``points``); ``drift`` (True when any point is
    flagged); ``signals`` (flagged points); ``first_signal`` and ``last_signal`` (dates or None);
    ``reason`` when no chart could be made (too few points).
    """
    if period not in ("auto", "day", "week"):
        raise ValueError(f"period must be auto, day or week, not {period!r}")
    if baseline_points < 2:
        raise ValueError("baseline_points must be at least 2")
    if _columns is None:
        devices = [d["id"] for d in unit_devices(store, serial)]
        _columns = _day_columns(store, devices, acquisition)
    day, ratio = _columns["day"], _columns["ratio"]
    keep = np.ones(day.size, dtype=bool)
    if since:
        keep &= day >= np.datetime64(since, "D")
    if until:
        keep &= day <= np.datetime64(until, "D")
    day, ratio = day[keep], ratio[keep]
    if period == "day":
        dates, medians, counts = _group_medians(day, ratio, min_n=min_events)
    elif period == "week":
        dates, medians, counts = _group_medians(_week_start(day), ratio, min_n=min_events)
    else:
        by_day = _group_medians(day, ratio, min_n=min_events)
        by_week = _group_medians(_week_start(day), ratio, min_n=min_events)
        # days while they are not too many and enough of them reach min_events (a quiet unit: weeks)
        daily = by_day[0].size <= 180 and by_day[0].size >= by_week[0].size
        period = "day" if daily else "week"
        dates, medians, counts = by_day if daily else by_week
    out: dict[str, Any] = {
        "serial": serial,
        "period": period,
        "rules": {
            "beyond_3sigma": "a point outside centre ± 3σ (Western Electric rule 1)",
            f"run_of_{run_length}": f"{run_length} consecutive points on one side of the centre line "
            "(Western Electric run rule)",
        },
        "min_events": min_events,
        "points": [],
        "centre": None,
        "sigma": None,
        "ucl": None,
        "lcl": None,
        "baseline": None,
        "drift": False,
        "signals": 0,
        "first_signal": None,
        "last_signal": None,
    }
    if baseline_until:
        baseline = dates <= np.datetime64(baseline_until, "D")
    else:
        baseline = np.arange(dates.size) < baseline_points
    iso = [str(d) for d in dates]
    if int(baseline.sum()) < 2:
        out["points"] = [
            {"date": d, "median": _round(m, 5), "n": int(n), "flags": []} for d, m, n in zip(iso, medians, counts)
        ]
        out["reason"] = f"too few points for a baseline ({int(baseline.sum())}; at least 2 needed)"
        return out
    chart = control_chart(medians, baseline, sigma_floor=sigma_floor, run_length=run_length)
    out["points"] = [
        {"date": d, "median": _round(m, 5), "n": int(n), "flags": f}
        for d, m, n, f in zip(iso, medians, counts, chart["flags"])
    ]
    for name in ("centre", "sigma", "ucl", "lcl"):
        out[name] = _round(chart[name], 5)
    used = np.flatnonzero(baseline)
    out["baseline"] = {"from": iso[used[0]], "until": iso[used[-1]], "points": int(used.size)}
    flagged = [p["date"] for p in out["points"] if p["flags"]]
    out["drift"] = bool(flagged)
    out["signals"] = len(flagged)
    out["first_signal"] = flagged[0] if flagged else None
    out["last_signal"] = flagged[-1] if flagged else None
    return out


# --- the scatter charts ---------------------------------------------------------------------


#: The columns :func:`_unit_rows` reads, in order.
_UNIT_COLUMNS = (
    "id",
    "study_date",
    "mgd",
    "agd",
    "ratio",
    "thickness",
    "kvp",
    "anode",
    "filter",
    "force",
    "view",
    "event_flags",
    "object_flags",
    "recalc_flags",
)


def _unit_rows(store, device_ids: list[int]) -> dict[str, list]:
    """Every column the unit page needs of the unit's live patient events, read in one query
    (by :data:`_UNIT_COLUMNS`; lists in event id order)."""
    E, S, St, R = M.Event, M.SourceObject, M.Study, M.RecalcResult
    q = _live_patient(
        _events_query(
            E.id,
            St.study_date,
            R.mgd_recalc_mgy,
            E.agd_mgy,
            R.ratio_recalc_to_reported,
            E.compressed_thickness_mm,
            E.kvp,
            E.anode,
            E.filter_material,
            E.compression_force_n,
            E.view,
            E.flags,
            S.flags,
            R.flags,
        ),
        device_ids,
    ).order_by(E.id)
    cols: list[list] = [[] for _ in _UNIT_COLUMNS]
    with store.engine.connect() as conn:
        for part in raw_chunks(conn, q, 50000):
            for k, c in enumerate(zip(*part)):
                cols[k].extend(c)
    return dict(zip(_UNIT_COLUMNS, cols))


def _sample_rows(unit: dict[str, list], max_points: int) -> tuple[list[tuple], int, bool]:
    """A pseudo-random sample (about ``max_points``) of the unit's live patient events (as read
    by :func:`_unit_rows`): thickness, recalculated MGD, reported AGD, kV, target, filter, force,
    view; and how many events there are in all; whether it is a sample."""
    ids = np.array(unit["id"], dtype=np.int64)
    n = int(ids.size)
    keep = np.array([t is not None for t in unit["thickness"]], dtype=bool)
    step = max(1, math.ceil(n / max_points))
    if step > 1:
        # a hash of the event id, not id % step: views repeat in the same order in every study
        # (ids are 32-bit, so the product fits in 64 bits)
        keep &= (ids * _HASH_MULTIPLIER % _HASH_PRIME) % step == 0
    chosen = np.flatnonzero(keep)[: 2 * max_points]  # the lowest ids: the rows are in id order
    names = ("thickness", "mgd", "agd", "kvp", "anode", "filter", "force", "view")
    rows = [tuple(unit[c][i] for c in names) for i in chosen.tolist()]
    return rows, n, step > 1


def _positive(v: Any) -> float | None:
    return float(v) if v is not None and v > 0 and math.isfinite(v) else None


def _scatter(rows: list[tuple]) -> dict:
    mgd: list[list] = []
    reported: list[list] = []
    kv: dict[str, list[list]] = {}
    force: dict[str, list[list]] = {}
    for t, rec, agd, kvp, anode, filt, f, view in rows:
        t = _round(t)
        if (m := _positive(rec)) is not None:
            mgd.append([t, _round(m)])
        if (a := _positive(agd)) is not None:
            reported.append([t, _round(a)])
        if kvp is not None:
            kv.setdefault(f"{anode or '?'}/{filt or '?'}", []).append([t, _round(kvp)])
        if f is not None:
            group = view if view in ("CC", "MLO") else "other"
            force.setdefault(group, []).append([t, _round(f)])
    return {"mgd": mgd, "reported": reported, "kv": kv, "force": force}


def _target_filter_counts(unit: dict[str, list]) -> list[dict]:
    """Events per target/filter over all the unit's events (the scatter shows a sample)."""
    counts = Counter(zip(unit["anode"], unit["filter"]))
    return sorted(
        ({"target_filter": f"{a or '?'}/{f or '?'}", "events": int(n)} for (a, f), n in counts.items()),
        # equal counts by name
        key=lambda r: (-r["events"], r["target_filter"]),
    )


# --- quirks and physics -------------------------------------------------------------------------


def _flag_counts(unit: dict[str, list]) -> list[dict]:
    """Flags seen on the unit's live events, from the columns :func:`_unit_rows` read:
    ``source`` (``event`` as parsed from the RDSR, ``object`` on the dose report as a whole,
    ``recalculation``), ``flag`` and ``events``; most frequent first."""
    out = []
    for source, column in (("event", "event_flags"), ("object", "object_flags"), ("recalculation", "recalc_flags")):
        counts: Counter = Counter()
        for value, n in Counter(v for v in unit[column] if v is not None).items():
            for flag in str(value).split(";"):
                if flag:
                    counts[flag] += int(n)
        # equal counts by name
        ranked = sorted(counts.items(), key=lambda fn: (-fn[1], fn[0]))
        out += [{"source": source, "flag": f, "events": n} for f, n in ranked]
    return out


def _iso(day: str | None) -> str | None:
    return f"{day[:4]}-{day[4:6]}-{day[6:8]}" if day else None


def _curve(fit, margin_kv: float) -> list[list]:
    lo, hi = fit.kv_min - margin_kv, fit.kv_max + margin_kv
    kv = np.linspace(lo, hi, max(2, int(round((hi - lo) / 0.5)) + 1))
    return [[_round(k), _round(v)] for k, v in zip(kv, np.polyval(fit.coef, kv))]


def unit_physics(store, serial: str, degree: int = 2, margin_kv: float = 1.0) -> list[dict]:
    """The unit's physics sets (oldest first), each beam (target/filter) with its measured points
    and its output and HVL fits against kV, as the recalculation fits them
    (:class:`srdose.recalc.engine.PhysicsFits`: :func:`srdose.physics.dance.fit_kv`)."""
    out = []
    for s in physics_sets(store, serial):
        beams: dict[tuple, list] = {}
        for p in s["points"]:
            beams.setdefault((p["target"], p["filter_material"], p["filter_mm"]), []).append(p)
        entry = {
            "valid_from": _iso(s["valid_from"]),
            "valid_to": _iso(s["valid_to"]),
            "manufacturer": s["manufacturer"],
            "model": s["model"],
            "d_ref_mm": s["d_ref_mm"],
            "fdd_mm": s["fdd_mm"],
            "measured_by": s["measured_by"],
            "beams": [],
        }
        for (target, filt, mm), pts in sorted(beams.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)):
            kv = [p["kvp"] for p in pts]
            output = fit_kv(kv, [p["output_ugy_per_mas"] for p in pts], degree)
            hvl = fit_kv(kv, [p["hvl_mm"] for p in pts], degree)
            entry["beams"].append(
                {
                    "target": target,
                    "filter": filt,
                    "filter_mm": mm,
                    "points": [{"kv": p["kvp"], "output": p["output_ugy_per_mas"], "hvl": p["hvl_mm"]} for p in pts],
                    "output_fit": {"coef": list(output.coef), "rms": output.rms, "curve": _curve(output, margin_kv)},
                    "hvl_fit": {"coef": list(hvl.coef), "rms": hvl.rms, "curve": _curve(hvl, margin_kv)},
                }
            )
        out.append(entry)
    return out


# --- the page -------------------------------------------------------------------------------


def monthly_medians(columns: dict) -> list[dict]:
    """Per calendar month: events, and the medians of recalculated MGD, reported AGD and ratio."""
    month = columns["day"].astype("datetime64[M]")
    rows: dict[str, dict] = {}
    for name in ("mgd", "agd", "ratio"):
        keys, medians, counts = _group_medians(month, columns[name])
        for k, m, n in zip(keys, medians, counts):
            row = rows.setdefault(str(k), {"month": str(k)})
            row[f"{name}_median"] = _round(m, 5)
            row[f"{name}_n"] = int(n)
    months, n = np.unique(month, return_counts=True)
    for k, c in zip(months, n):
        rows.setdefault(str(k), {"month": str(k)})["events"] = int(c)
    return [dict({"mgd_median": None, "agd_median": None, "ratio_median": None}, **rows[k]) for k in sorted(rows)]


def unit_charts(store, serial: str, settings, max_points: int = MAX_POINTS) -> dict:
    """Everything the unit page draws, JSON-ready (numbers rounded to 4-5 significant digits).

    Keys: ``serial``, ``devices``, ``events`` (live patient events), ``first``/``last`` (dates),
    ``max_points``; ``mgd`` (``recalc`` and ``reported`` as [thickness mm, mGy] pairs of a
    sample, ``sampled``, ``drl`` {mgy, source} or None, ``eu`` as :func:`eu_levels`); ``ratio``
    (:func:`ratio_drift`); ``kv`` (``series`` {target/filter: [thickness, kV]},
    ``target_filter`` counts over all events); ``force`` (``series`` {CC|MLO|other:
    [thickness, N]}); ``monthly`` (:func:`monthly_medians`); ``physics``
    (:func:`unit_physics`); ``quirks`` (:func:`_flag_counts`).
    ``settings`` is :class:`srdose.config.Settings` (the DRL, the fit degree and kV margin).
    """
    devices = unit_devices(store, serial)
    ids = [d["id"] for d in devices]
    # one read of the unit's events; counts, medians and the sample are computed from it here
    unit = _unit_rows(store, ids)
    dated = [i for i, d in enumerate(unit["study_date"]) if d is not None]
    columns = _to_day_columns(*([unit[c][i] for i in dated] for c in ("study_date", "mgd", "agd", "ratio")))
    rows, n, sampled = _sample_rows(unit, max_points)
    scatter = _scatter(rows)
    drl = settings.report.national_drl_mgy
    days = columns["day"]
    return {
        "serial": serial,
        "devices": devices,
        "events": n,
        "first": str(days[0]) if days.size else None,
        "last": str(days[-1]) if days.size else None,
        "max_points": max_points,
        "mgd": {
            "recalc": scatter["mgd"],
            "reported": scatter["reported"],
            "sampled": sampled,
            "drl": None if drl is None else {"mgy": drl, "source": settings.report.national_drl_source},
            "eu": eu_levels(),
        },
        "ratio": ratio_drift(store, serial, _columns=columns),
        "kv": {"series": scatter["kv"], "target_filter": _target_filter_counts(unit)},
        "force": {"series": scatter["force"]},
        "monthly": monthly_medians(columns),
        "physics": unit_physics(store, serial, settings.recalc.fit_degree, settings.recalc.kv_margin),
        "quirks": _flag_counts(unit),
    }


__all__ = [
    "MAX_POINTS",
    "control_chart",
    "eu_levels",
    "monthly_medians",
    "ratio_drift",
    "unit_charts",
    "unit_devices",
    "unit_physics",
]
