"""Database side of the web application's pages: the overview, the event list, a study, the audit.

Nothing here returns a patient identifier: the database holds none, and the pseudonyms it holds are
keyed HMACs. The event list is filtered, sorted and paged in SQL so that a deep page of a million
events costs one indexed query, not a scan in Python.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from sqlalchemy import Select, and_, false, func, or_, select
from sqlalchemy.sql.util import find_tables

from srdose.store import cache
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
    #: the ids of the devices of ``serial``, once looked up (see :func:`_resolved`)
    device_ids: tuple[int, ...] | None = None
    #: the superseded source objects that still have events, once looked up (None: not looked up,
    #: or too many to name: live events are found by joining their source objects)
    superseded: tuple[int, ...] | None = None


#: At most this many superseded source objects with events are named in the list's query.
_SUPERSEDED_NAMED = 1000


def _resolved(conn, f: EventFilter) -> EventFilter:
    """``f`` with its unit's device ids and the superseded source objects looked up.

    A filter on ``events.device_id IN (...)`` is one the planners estimate from their statistics
    (PostgreSQL's, for a join to the unit's serial, guessed a few thousand events and walked every
    study since the date instead). Ingest deletes the events of a replaced RDSR, so superseded
    objects normally have none: the list then needs no join to the source objects at all (a probe
    per event, or on PostgreSQL a hash of every source object, for each page)."""
    E, S = M.Event, M.SourceObject
    if f.serial and f.device_ids is None:
        ids = conn.execute(select(M.Device.id).where(M.Device.serial == f.serial)).scalars().all()
        f = replace(f, device_ids=tuple(ids))
    if f.superseded is None:
        held = (
            conn.execute(
                select(E.source_object_id)
                .where(E.source_object_id.in_(select(S.id).where(S.superseded_by.is_not(None))))
                .distinct()
                .limit(_SUPERSEDED_NAMED + 1)
            )
            .scalars()
            .all()
        )
        if len(held) <= _SUPERSEDED_NAMED:
            f = replace(f, superseded=tuple(held))
    return f


def _columns():
    E, St, D, R = M.Event, M.Study, M.Device, M.RecalcResult
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
    }


def _dated(f: EventFilter):
    """The study date and time the filter and order use: for a unit, the copies its events carry
    (one index then gives the unit's events by view, newest first); otherwise the studies' own
    (their index walks every unit's newest studies first)."""
    E, St = M.Event, M.Study
    return (E.study_date, E.study_time) if f.device_ids is not None else (St.study_date, St.study_time)


def _conditions(f: EventFilter) -> list:
    E, St, D, R = M.Event, M.Study, M.Device, M.RecalcResult
    day, _ = _dated(f)
    conds = []
    if f.since:
        conds.append(day >= f.since)
    if f.until:
        conds.append(day <= f.until)
    if f.device_ids is not None:
        conds.append(E.device_id.in_(f.device_ids) if f.device_ids else false())
    elif f.serial:
        conds.append(D.serial == f.serial)
    if f.view:
        # without a unit, `view || ''` keeps SQLite from reading every unit's views by skip-scanning
        # ix_events_unit_date (sorting them all); it reads the newest studies first and stops
        conds.append(E.view == f.view if f.serial else E.view.concat("") == f.view)
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
        # case-insensitive on both engines: SQLite's LIKE ignores case, PostgreSQL's does not
        conds.append(or_(E.flags.icontains(f.flag, autoescape=True), R.flags.icontains(f.flag, autoescape=True)))
    if f.method:
        conds.append(R.method == f.method)
    if f.ratio_outside is not None:
        conds.append(
            or_(
                R.ratio_recalc_to_reported < 1.0 - f.ratio_outside,
                R.ratio_recalc_to_reported > 1.0 + f.ratio_outside,
            )
        )
    return conds


def _order(f: EventFilter) -> list:
    day, time = _dated(f)
    cols = {**_columns(), "study_date": day}
    order = []
    for name, desc in f.sort:
        if name in SORTABLE:
            col = cols[name]
            # NULLs last either way, the same on SQLite and PostgreSQL
            order.append((col.desc() if desc else col.asc()).nulls_last())
    # ties broken the same way every time, so pages do not overlap; newest first is the order of
    # the indexes (SQLite: ix_studies_date_time and ix_events_unit_date read from their end, NULL
    # being lowest; PostgreSQL: ix_studies_newest and ix_events_unit_newest, declared in this order)
    return [*order, day.desc().nulls_last(), time.desc().nulls_last(), M.Event.id.desc()]


def _filtered(f: EventFilter, what, ordered: bool = False) -> Select:
    """The filtered live events' ``what``, in the list's order when ``ordered``.

    Only the tables that ``what``, the filter and the order name are joined: a unit's page of ids,
    or a count, then reads the events' index alone (a join left for the planner to drop was kept by
    SQLite when it chose to scan a small table)."""
    E, S, St, D, R = M.Event, M.SourceObject, M.Study, M.Device, M.RecalcResult
    conds = _conditions(f)
    order = _order(f) if ordered else []
    used = {t for e in (*what, *conds, *order) for t in find_tables(e, check_columns=True)}
    q = select(*what).select_from(E)
    if ordered and f.device_ids is None:
        q = q.join(St, E.study_id == St.id)  # newest studies first, from their index
    elif St.__table__ in used:
        # every event has a study: the rows of a join, in whatever order suits the filter
        q = q.outerjoin(St, E.study_id == St.id)
    if D.__table__ in used:
        q = q.outerjoin(D, E.device_id == D.id)
    if R.__table__ in used:
        q = q.outerjoin(R, R.event_id == E.id)
    if f.superseded is None:
        q = q.join(S, E.source_object_id == S.id).where(S.superseded_by.is_(None))
    elif f.superseded:
        q = q.where(E.source_object_id.not_in(f.superseded))
    if conds:
        q = q.where(and_(*conds))
    return q.order_by(*order)


def _snapshot(store):
    """A connection whose reads see one state of the database (SQLite's transaction does already;
    PostgreSQL's default gives each statement its own), so that a count agrees with its rows."""
    conn = store.engine.connect()
    if conn.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    return conn


def event_count(store, f: EventFilter) -> int:
    with store.engine.connect() as conn:
        return _count(conn, _resolved(conn, f))


def _page_ids(conn, f: EventFilter, offset: int, limit: int, counted: bool = False) -> tuple[list[int], int | None]:
    """The ids of one page in the list's order, and (``counted``) how many events the filter
    gives (None when the page is empty). The sort carries ids and sort keys only, not every column
    of every filtered event; in the default order (newest first) it reads the newest studies from
    their index and stops once the page is full. ``counted`` makes it read every filtered event:
    a window over the rows it sorts, when it has to sort them all anyway."""
    what = [M.Event.id, func.count().over()] if counted else [M.Event.id]
    rows = conn.execute(_filtered(f, what, ordered=True).offset(offset).limit(limit)).all()
    return [r[0] for r in rows], (rows[0][1] if counted and rows else None)


def _count(conn, f: EventFilter, limit: int | None = None) -> int:
    """The filtered events; counted up to ``limit`` + 1 at most (None: all)."""
    if limit is None:
        return conn.execute(_filtered(f, [func.count(M.Event.id)])).scalar_one()
    some = _filtered(f, [M.Event.id]).limit(limit + 1).subquery()
    return conn.execute(select(func.count()).select_from(some)).scalar_one()


def _rows_of(conn, ids: list[int]) -> list[dict]:
    """The list's columns of these events, in the order of ``ids``."""
    if not ids:
        return []
    cols = _columns()
    q = _filtered(EventFilter(), [cols[c].label(c) for c in EVENT_COLUMNS]).where(M.Event.id.in_(ids))
    by_id = {r.event_id: dict(r._mapping) for r in conn.execute(q)}
    return [by_id[i] for i in ids if i in by_id]


#: The event list counts the filtered events up to this many, and says "more than" past it: an
#: exact count of a million events reads them all, for every page (the downloads have them all).
COUNT_LIMIT = 10_000


@dataclass(frozen=True)
class EventList:
    """A page of the event list: its number (1-based; the last page when asked for one past the
    end), its rows, and how many events the filter gives: ``total``, exact when ``exact``, else
    more than :data:`COUNT_LIMIT` (and ``pages`` the pages of those)."""

    page: int
    rows: list[dict]
    total: int
    exact: bool
    size: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.size))

    @property
    def has_next(self) -> bool:
        return self.page < self.pages or not self.exact


def event_list(store, f: EventFilter, page: int, size: int, count_limit: int = COUNT_LIMIT) -> EventList:
    """Page ``page`` (from 1) of ``size`` filtered, sorted events and their count, read in one
    transaction (so that they agree)."""
    with _snapshot(store) as conn:
        f = _resolved(conn, f)
        offset = (page - 1) * size
        # SQLite reads a unit's events from the unit's index (sorting them all, unless one view is
        # asked for): they are counted in the same pass while the count is still wanted (a page
        # before the limit), exactly, for about the price of a capped count. Otherwise (and on
        # PostgreSQL) the page stops once full and the count is capped.
        counted = bool(f.serial) and conn.dialect.name == "sqlite" and offset + size < count_limit
        # ids are 32-bit: a larger offset is past every row (and could overflow PostgreSQL's bigint)
        # one id past the page: whether another page follows
        ids, total = _page_ids(conn, f, offset, size + 1, counted) if offset <= M.MAX_INTEGER else ([], None)
        more, ids = len(ids) > size, ids[:size]
        if total is not None:
            return EventList(page, _rows_of(conn, ids), total, True, size)
        if (ids and not more) or (not ids and page == 1):  # the last page: the count is known
            return EventList(page, _rows_of(conn, ids), offset + len(ids), True, size)
        if not ids:  # past the end: count them all, show the last page
            total = _count(conn, f)
            page = max(1, math.ceil(total / size))
            ids = _page_ids(conn, f, (page - 1) * size, size)[0] if total else []
            return EventList(page, _rows_of(conn, ids), total, True, size)
        if offset + size >= count_limit:  # events past this page, and past the limit: no count needed
            return EventList(page, _rows_of(conn, ids), count_limit, False, size)
        n = _count(conn, f, count_limit)
        return EventList(page, _rows_of(conn, ids), min(n, count_limit), n <= count_limit, size)


def _all_rows(f: EventFilter) -> Select:
    cols = _columns()
    return _filtered(f, [cols[c].label(c) for c in EVENT_COLUMNS], ordered=True)


def iter_events(store, f: EventFilter) -> Iterator[tuple]:
    """Every filtered event, in the list's order, as tuples of :data:`EVENT_COLUMNS`; streamed."""
    with store.engine.connect() as conn:
        f = _resolved(conn, f)
        for row in conn.execution_options(stream_results=True, yield_per=5000).execute(_all_rows(f)):
            yield tuple(row)


class EventRows:
    """Every filtered event (as :func:`iter_events`) and, before the first, how many there are:
    a download sent as it is read knows its rows for the audit trail. One connection, given back
    when the rows have been read or :meth:`close` is called (either, any number of times, from any
    thread: a server closes an abandoned download while a worker thread may be fetching its rows,
    so a close waits for that fetch and the rows then stop)."""

    def __init__(self, store, f: EventFilter):
        self._lock = threading.Lock()
        self._closed = False
        self._conn = _snapshot(store)
        try:
            f = _resolved(self._conn, f)
            self.count = _count(self._conn, f)
            result = self._conn.execution_options(stream_results=True, yield_per=5000).execute(_all_rows(f))
            self._rows = iter(result)
        except BaseException:
            self._conn.close()
            raise

    def __iter__(self) -> Iterator[tuple]:
        try:
            while True:
                with self._lock:
                    row = None if self._closed else next(self._rows, None)
                if row is None:
                    return
                yield tuple(row)
        finally:
            self.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._conn.close()


def filter_choices(store, seconds: float) -> dict[str, list]:
    """Values the filter's drop-downs offer: units, views, target/filter pairs, methods.

    Kept ``seconds`` per store: three scans of every event, so at most one a minute.
    (Indexes on these columns would make this cheap, but without statistics SQLite's planner
    then starts the filtered event list from them, e.g. half the events for view = MLO.)"""
    return cache.cached(store, "filter_choices", lambda: _filter_choices(store), seconds)


def _filter_choices(store) -> dict[str, list]:
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


def overview(store, today: dt.date, seconds: float, weeks: int = 26, recent: int = 20) -> dict:
    """Units (last study, events this month), events per week for ``weeks`` weeks up to ``today``,
    the most recent flagged events, and the table sizes.

    Kept ``seconds`` per store and arguments (shared: callers must not change it)."""
    key = f"overview:{today}:{weeks}:{recent}"
    return cache.cached(store, key, lambda: _overview(store, today, weeks, recent), seconds)


#: The recent flagged events are looked for in this many days first (then in all events).
_FLAGGED_WINDOW_DAYS = 7


def _overview(store, today: dt.date, weeks: int, recent: int) -> dict:
    E, S, St, D, R = M.Event, M.SourceObject, M.Study, M.Device, M.RecalcResult
    month = today.replace(day=1).strftime("%Y%m%d")
    first_week = today - dt.timedelta(days=today.weekday() + 7 * (weeks - 1))
    live = S.superseded_by.is_(None)
    with store.engine.connect() as conn:
        units = [
            dict(r._mapping, last_study=None, events=0, events_month=0)
            for r in conn.execute(
                select(D.id, D.serial, D.manufacturer, D.model, D.station, D.last_seen).order_by(
                    D.manufacturer, D.model, D.serial, D.id
                )
            )
        ]
        by_id = {u["id"]: u for u in units}
        # live events per unit: all of its events (ix_events_unit_date alone) less those of the
        # few superseded source objects (ix_source_objects_superseded_by)
        had_events = set()
        for device_id, n in conn.execute(select(E.device_id, func.count()).group_by(E.device_id)):
            if device_id in by_id:
                by_id[device_id]["events"] += n
                had_events.add(device_id)
        superseded = list(conn.execute(select(S.id).where(S.superseded_by.is_not(None))).scalars())
        for i in range(0, len(superseded), 500):
            for device_id, n in conn.execute(
                select(E.device_id, func.count())
                .where(E.source_object_id.in_(superseded[i : i + 500]))
                .group_by(E.device_id)
            ):
                if device_id in by_id:
                    by_id[device_id]["events"] -= n
        for u in list(by_id.values()):
            if u["events"] == 0 and u["id"] in had_events:  # every event superseded: not listed (as a join)
                del by_id[u["id"]]
        units = [u for u in units if u["id"] in by_id]
        # this month's events and last study of every unit with events this month (from the
        # studies of the month, ix_studies_date_time); the other units one by one
        # (the month's studies as a subquery, so that the plan follows the date index, not the unit's)
        for day, device_id, n in conn.execute(
            select(St.study_date, E.device_id, func.count())
            .select_from(St)
            .join(E, E.study_id == St.id)
            .join(S, E.source_object_id == S.id)
            .where(live, St.study_date >= month, E.study_id.in_(select(St.id).where(St.study_date >= month)))
            .group_by(St.study_date, E.device_id)
        ):
            if device_id in by_id:
                u = by_id[device_id]
                u["events_month"] += n
                u["last_study"] = max(u["last_study"] or day, day)
        for u in units:
            if u["events"] and u["last_study"] is None:
                u["last_study"] = conn.execute(
                    select(func.max(St.study_date))
                    .select_from(E)
                    .join(S, E.source_object_id == S.id)
                    .join(St, E.study_id == St.id)
                    .where(live, E.device_id == u["id"])
                ).scalar()
        per_day = conn.execute(
            select(St.study_date, func.count(E.id))
            .select_from(St)
            .join(E, E.study_id == St.id)
            .join(S, E.source_object_id == S.id)
            .where(live, St.study_date >= first_week.strftime("%Y%m%d"), St.study_date <= today.strftime("%Y%m%d"))
            .group_by(St.study_date)
        ).all()
        flagged_q = (
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
            .select_from(St)
            .join(E, E.study_id == St.id)
            .join(S, E.source_object_id == S.id)
            .outerjoin(D, E.device_id == D.id)
            .outerjoin(R, R.event_id == E.id)
            .where(live, or_(E.flags.is_not(None) & (E.flags != ""), R.flags.is_not(None) & (R.flags != "")))
            .order_by(St.study_date.desc(), E.id.desc())
            .limit(recent)
        )
        # the newest days first: when they hold enough flagged events, those are the newest of all
        # (a NULL date sorts first on PostgreSQL, last on SQLite: kept in the window either way)
        cutoff = (today - dt.timedelta(days=_FLAGGED_WINDOW_DAYS)).strftime("%Y%m%d")
        newest = select(St.id).where(or_(St.study_date >= cutoff, St.study_date.is_(None)))
        rows = conn.execute(flagged_q.where(E.study_id.in_(newest))).all()
        if len(rows) < recent:
            rows = conn.execute(flagged_q).all()
        flagged = [dict(r._mapping) for r in rows]
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
    if not M.fits_integer(study_id):
        return None  # no such id; PostgreSQL would refuse to compare it
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
    if offset > M.MAX_INTEGER:
        return []  # past every row (ids are 32-bit); a larger OFFSET can overflow PostgreSQL's bigint
    q = select(A.id, A.at, A.who, A.action, A.parameters, A.rows, A.detail).order_by(A.id.desc())
    if who:
        q = q.where(A.who == who)
    if action:
        # a literal prefix ("_" and "%" too), case-insensitive on both engines as SQLite's LIKE is
        q = q.where(A.action.istartswith(action, autoescape=True))
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q.offset(offset).limit(limit))]
