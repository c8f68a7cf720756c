"""Database side of the web application's pages: the overview, the event list, a study, the audit.

Nothing here returns a patient identifier: the database holds none, and the pseudonyms it holds are
keyed HMACs. The event list is filtered, sorted and paged in SQL so that a deep page of a million
events costs one indexed query, not a scan in Python.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import Select, and_, case, func, or_, select

from srdose.store import models as M

#: Columns of the event list and its downloads, in order.
EVENT_COLUMNS = (
    "event_id",
    "study_id",
    "study_date",
    "study_time",
    "patient_pseudonym",
    "age_years",
    "device_serial",
    "manufacturer",
    "model",
    "station",
    "acquisition",
    "laterality",
    "view",
    "kvp",
    "mas",
    "anode",
    "filter",
    "compressed_thickness_mm",
    "compression_force_n",
    "agd_reported_mgy",
    "mgd_recalc_mgy",
    "mgd_u_mgy",
    "ratio_recalc_to_reported",
    "method",
    "factor_set",
    "flags",
    "recalc_flags",
)

#: What ``sort`` may name (a leading "-" sorts descending).
SORTABLE = (
    "study_date",
    "device_serial",
    "view",
    "laterality",
    "acquisition",
    "kvp",
    "mas",
    "compressed_thickness_mm",
    "compression_force_n",
    "age_years",
    "agd_reported_mgy",
    "mgd_recalc_mgy",
    "ratio_recalc_to_reported",
)


@dataclass(frozen=True)
class EventFilter:
    """The event list's filter, every bound inclusive; None: not filtered."""

    since: str | None = None  # YYYYMMDD
    until: str | None = None
    serial: str | None = None
    view: str | None = None
    acquisition: str | None = None
    laterality: str | None = None
    tmin: float | None = None
    tmax: float | None = None
    amin: float | None = None
    amax: float | None = None
    kv_min: float | None = None
    kv_max: float | None = None
    anode: str | None = None
    filter_material: str | None = None
    flag: str | None = None  # a text within the event's or its recalculation's flags
    method: str | None = None
    ratio_outside: float | None = None  # |ratio - 1| above this band
    sort: tuple[tuple[str, bool], ...] = field(default=(("study_date", True),))  # (column, descending)


def _columns():
    E, S, St, D, R = M.Event, M.SourceObject, M.Study, M.Device, M.RecalcResult
    return {
        "event_id": E.id,
        "study_id": St.id,
        "study_date": St.study_date,
        "study_time": St.study_time,
        "patient_pseudonym": St.patient_pseudonym,
        "age_years": St.age_years,
        "device_serial": D.serial,
        "manufacturer": D.manufacturer,
        "model": D.model,
        "station": D.station,
        "acquisition": E.acquisition,
        "laterality": E.laterality,
        "view": E.view,
        "kvp": E.kvp,
        "mas": E.mas,
        "anode": E.anode,
        "filter": E.filter_material,
        "compressed_thickness_mm": E.compressed_thickness_mm,
        "compression_force_n": E.compression_force_n,
        "agd_reported_mgy": E.agd_mgy,
        "mgd_recalc_mgy": R.mgd_recalc_mgy,
        "mgd_u_mgy": R.mgd_u_mgy,
        "ratio_recalc_to_reported": R.ratio_recalc_to_reported,
        "method": R.method,
        "factor_set": R.factor_set,
        "flags": E.flags,
        "recalc_flags": R.flags,
        "_source": S.superseded_by,
    }


def _filtered(f: EventFilter, what) -> Select:
    E, S, St, D, R = M.Event, M.SourceObject, M.Study, M.Device, M.RecalcResult
    q = (
        select(*what)
        .select_from(E)
        .join(S, E.source_object_id == S.id)
        .join(St, E.study_id == St.id)
        .outerjoin(D, E.device_id == D.id)
        .outerjoin(R, R.event_id == E.id)
        .where(S.superseded_by.is_(None))
    )
    conds = []
    if f.since:
        conds.append(St.study_date >= f.since)
    if f.until:
        conds.append(St.study_date <= f.until)
    if f.serial:
        conds.append(D.serial == f.serial)
    if f.view:
        conds.append(E.view == f.view)
    if f.acquisition:
        conds.append(E.acquisition == f.acquisition)
    if f.laterality:
        conds.append(E.laterality == f.laterality)
    if f.tmin is not None:
        conds.append(E.compressed_thickness_mm >= f.tmin)
    if f.tmax is not None:
        conds.append(E.compressed_thickness_mm <= f.tmax)
    if f.amin is not None:
        conds.append(St.age_years >= f.amin)
    if f.amax is not None:
        conds.append(St.age_years <= f.amax)
    if f.kv_min is not None:
        conds.append(E.kvp >= f.kv_min)
    if f.kv_max is not None:
        conds.append(E.kvp <= f.kv_max)
    if f.anode:
        conds.append(E.anode == f.anode)
    if f.filter_material:
        conds.append(E.filter_material == f.filter_material)
    if f.flag:
        like = "%" + f.flag.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conds.append(or_(E.flags.like(like, escape="\\"), R.flags.like(like, escape="\\")))
    if f.method:
        conds.append(R.method == f.method)
    if f.ratio_outside is not None:
        conds.append(
            or_(
                R.ratio_recalc_to_reported < 1.0 - f.ratio_outside,
                R.ratio_recalc_to_reported > 1.0 + f.ratio_outside,
            )
        )
    if conds:
        q = q.where(and_(*conds))
    return q


def _ordered(q: Select, f: EventFilter) -> Select:
    cols = _columns()
    order = []
    for name, desc in f.sort:
        if name in SORTABLE:
            col = cols[name]
            # NULLs last either way, the same on SQLite and PostgreSQL
            order += [col.is_(None), col.desc() if desc else col.asc()]
    St, E = M.Study, M.Event
    # ties broken the same way every time, so pages do not overlap
    order += [St.study_date.desc(), St.study_time.desc(), E.id.desc()]
    return q.order_by(*order)


def event_count(store, f: EventFilter) -> int:
    with store.engine.connect() as conn:
        return conn.execute(_filtered(f, [func.count(M.Event.id)])).scalar_one()


def event_page(store, f: EventFilter, offset: int, limit: int) -> list[dict]:
    """One page of the filtered, sorted events (dicts keyed by :data:`EVENT_COLUMNS`)."""
    cols = _columns()
    q = _ordered(_filtered(f, [cols[c].label(c) for c in EVENT_COLUMNS]), f).offset(offset).limit(limit)
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def iter_events(store, f: EventFilter) -> Iterator[tuple]:
    """Every filtered event, in the list's order, as tuples of :data:`EVENT_COLUMNS`; streamed."""
    cols = _columns()
    q = _ordered(_filtered(f, [cols[c].label(c) for c in EVENT_COLUMNS]), f)
    with store.engine.connect() as conn:
        for row in conn.execution_options(stream_results=True, yield_per=5000).execute(q):
            yield tuple(row)


def filter_choices(store) -> dict[str, list]:
    """Values the filter's drop-downs offer: units, views, target/filter pairs, methods."""
    E, D, R = M.Event, M.Device, M.RecalcResult
    with store.engine.connect() as conn:
        return {
            "units": [
                dict(r._mapping)
                for r in conn.execute(
                    select(D.serial, D.manufacturer, D.model, D.station).order_by(D.manufacturer, D.model, D.serial)
                )
            ],
            "views": [v for v in conn.execute(select(E.view).distinct().order_by(E.view)).scalars() if v],
            "target_filters": [
                f"{a}/{b}"
                for a, b in conn.execute(
                    select(E.anode, E.filter_material).distinct().order_by(E.anode, E.filter_material)
                )
                if a and b
            ],
            "methods": [m for m in conn.execute(select(R.method).distinct().order_by(R.method)).scalars() if m],
        }


# --- the overview --------------------------------------------------------------------


def overview(store, today: dt.date, weeks: int = 26, recent: int = 20) -> dict:
    """Units (last study, events this month), events per week for ``weeks`` weeks up to ``today``,
    the most recent flagged events, and the table sizes."""
    E, S, St, D, R = M.Event, M.SourceObject, M.Study, M.Device, M.RecalcResult
    month = today.replace(day=1).strftime("%Y%m%d")
    first_week = today - dt.timedelta(days=today.weekday() + 7 * (weeks - 1))
    live = S.superseded_by.is_(None)
    with store.engine.connect() as conn:
        units = [
            dict(r._mapping)
            for r in conn.execute(
                select(
                    D.id,
                    D.serial,
                    D.manufacturer,
                    D.model,
                    D.station,
                    D.last_seen,
                    func.max(St.study_date).label("last_study"),
                    func.count(E.id).label("events"),
                    func.sum(case((St.study_date >= month, 1), else_=0)).label("events_month"),
                )
                .select_from(D)
                .outerjoin(E, E.device_id == D.id)
                .outerjoin(S, E.source_object_id == S.id)
                .outerjoin(St, E.study_id == St.id)
                .where(or_(E.id.is_(None), live))
                .group_by(D.id, D.serial, D.manufacturer, D.model, D.station, D.last_seen)
                .order_by(D.manufacturer, D.model, D.serial)
            )
        ]
        per_day = conn.execute(
            select(St.study_date, func.count(E.id))
            .select_from(E)
            .join(S, E.source_object_id == S.id)
            .join(St, E.study_id == St.id)
            .where(live, St.study_date >= first_week.strftime("%Y%m%d"), St.study_date <= today.strftime("%Y%m%d"))
            .group_by(St.study_date)
        ).all()
        flagged = [
            dict(r._mapping)
            for r in conn.execute(
                select(
                    E.id.label("event_id"),
                    St.id.label("study_id"),
                    St.study_date,
                    D.serial.label("device_serial"),
                    E.view,
                    E.laterality,
                    E.flags,
                    R.flags.label("recalc_flags"),
                )
                .select_from(E)
                .join(S, E.source_object_id == S.id)
                .join(St, E.study_id == St.id)
                .outerjoin(D, E.device_id == D.id)
                .outerjoin(R, R.event_id == E.id)
                .where(live, or_(E.flags.is_not(None) & (E.flags != ""), R.flags.is_not(None) & (R.flags != "")))
                .order_by(St.study_date.desc(), E.id.desc())
                .limit(recent)
            )
        ]
    week_counts = {first_week + dt.timedelta(weeks=i): 0 for i in range(weeks)}
    for day, n in per_day:
        try:
            d = dt.datetime.strptime(day, "%Y%m%d").date()
        except (TypeError, ValueError):
            continue
        week = d - dt.timedelta(days=d.weekday())
        if week in week_counts:
            week_counts[week] += n
    return {
        "units": units,
        "weeks": [{"week": w.isoformat(), "events": n} for w, n in sorted(week_counts.items())],
        "flagged": flagged,
        "counts": store.counts(),
    }


# --- a study --------------------------------------------------------------------------


def study(store, study_id: int) -> dict | None:
    """A study: its own fields, unit, source objects (provenance) and live events, each with its
    recalculation, pulses and filters. None when there is no such study."""
    E, S, St, D, R = M.Event, M.SourceObject, M.Study, M.Device, M.RecalcResult
    with store.engine.connect() as conn:
        row = conn.execute(
            select(
                St.id,
                St.study_date,
                St.study_time,
                St.description,
                St.procedure,
                St.patient_pseudonym,
                St.age_years,
                St.sex,
                St.not_patient,
                D.serial.label("device_serial"),
                D.manufacturer,
                D.model,
                D.station,
            )
            .outerjoin(D, St.device_id == D.id)
            .where(St.id == study_id)
        ).first()
        if row is None:
            return None
        out = dict(row._mapping)
        out["sources"] = [
            dict(r._mapping)
            for r in conn.execute(
                select(
                    S.id,
                    S.sop_instance_uid,
                    S.sop_class_uid,
                    S.kind,
                    S.received_at,
                    S.received_from,
                    S.superseded_by,
                    S.flags,
                )
                .where(S.study_id == study_id)
                .order_by(S.received_at, S.id)
            )
        ]
        events = [
            dict(r._mapping)
            for r in conn.execute(
                select(
                    E.id,
                    E.source_object_id,
                    E.datetime_started,
                    E.acquisition,
                    E.protocol,
                    E.view,
                    E.laterality,
                    E.kvp,
                    E.mas,
                    E.exposure_time_ms,
                    E.n_pulses,
                    E.anode,
                    E.filter_material,
                    E.filter_thickness_mm,
                    E.compressed_thickness_mm,
                    E.compression_force_n,
                    E.hvl_mm,
                    E.entrance_exposure_mgy,
                    E.reference_point,
                    E.agd_mgy,
                    E.flags,
                    R.method,
                    R.mgd_recalc_mgy,
                    R.mgd_u_mgy,
                    R.k_mgy,
                    R.hvl_used_mm,
                    R.hvl_source,
                    R.g,
                    R.c,
                    R.s,
                    R.t_factor,
                    R.factor_set,
                    R.ratio_recalc_to_reported,
                    R.flags.label("recalc_flags"),
                    R.computed_at,
                )
                .join(S, E.source_object_id == S.id)
                .outerjoin(R, R.event_id == E.id)
                .where(E.study_id == study_id, S.superseded_by.is_(None))
                .order_by(E.datetime_started, E.id)
            )
        ]
        ids = [e["id"] for e in events]
        pulses: dict[int, list] = {}
        filters: dict[int, list] = {}
        if ids:
            P, F = M.Pulse, M.Filter
            for r in conn.execute(
                select(P.event_id, P.pulse_index, P.kvp, P.tube_current_ma, P.exposure_mas, P.pulse_width_ms)
                .where(P.event_id.in_(ids))
                .order_by(P.event_id, P.pulse_index)
            ):
                pulses.setdefault(r.event_id, []).append(dict(r._mapping))
            for r in conn.execute(
                select(F.event_id, F.filter_index, F.material, F.filter_type, F.thickness_min_mm, F.thickness_max_mm)
                .where(F.event_id.in_(ids))
                .order_by(F.event_id, F.filter_index)
            ):
                filters.setdefault(r.event_id, []).append(dict(r._mapping))
    for e in events:
        e["pulses"] = pulses.get(e["id"], [])
        e["filters"] = filters.get(e["id"], [])
    out["events"] = events
    return out


def unit(store, serial: str) -> list[dict]:
    """The devices with this serial number (one, usually), with their event counts."""
    D, E = M.Device, M.Event
    with store.engine.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(
                select(
                    D.id,
                    D.serial,
                    D.manufacturer,
                    D.model,
                    D.station,
                    D.institution,
                    D.software,
                    D.first_seen,
                    D.last_seen,
                    func.count(E.id).label("events"),
                )
                .outerjoin(E, E.device_id == D.id)
                .where(D.serial == serial)
                .group_by(D.id)
            )
        ]


# --- the audit trail --------------------------------------------------------------------


def audit_page(store, offset: int, limit: int, who: str | None = None, action: str | None = None) -> list[dict]:
    """Audit entries, newest first, optionally of one ``who`` and an action prefix."""
    A = M.AuditEntry
    q = select(A.id, A.at, A.who, A.action, A.parameters, A.rows, A.detail).order_by(A.id.desc())
    if who:
        q = q.where(A.who == who)
    if action:
        q = q.where(A.action.like(action.replace("%", "") + "%"))
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q.offset(offset).limit(limit))]
