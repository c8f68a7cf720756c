"""Database side of the alerts: the rules, the alerts they fired, and the queries rules ask.

A rule fires once for a subject and period: :func:`fire` inserts an alert under a unique key
and gives None when that key is already held, so evaluating twice (or from two processes)
never fires twice. Every query here returns units by serial and dates; no pseudonym or UID
leaves this module.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import and_, false, func, insert, select, update
from sqlalchemy import exc as sa_exc

from srdose.store import models as M

#: The kinds of rule :mod:`srdose.web.alerting` evaluates.
KINDS = ("mgd", "ratio", "drift", "silent", "listener", "quarantine")

_RULE_COLUMNS = (
    "id",
    "kind",
    "serial",
    "view",
    "band_min_mm",
    "band_max_mm",
    "threshold",
    "days",
    "enabled",
    "created_by",
    "created_at",
)
_ALERT_COLUMNS = (
    "id",
    "rule_id",
    "unit",
    "fired_at",
    "message",
    "key",
    "emailed_at",
    "acknowledged_at",
    "acknowledged_by",
)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


# --- rules ------------------------------------------------------------------------------------


def add_rule(
    store,
    kind: str,
    created_by: str,
    *,
    serial: str | None = None,
    view: str | None = None,
    band_mm: tuple[float, float] | None = None,
    threshold: float | None = None,
    days: int | None = None,
    at: dt.datetime | None = None,
) -> int:
    """Store a new, enabled rule; returns its id. ``serial`` None: every unit."""
    if kind not in KINDS:
        raise ValueError(f"unknown alert rule kind {kind!r}; known: {', '.join(KINDS)}")
    values = dict(
        kind=kind,
        serial=serial or None,
        view=(view or "").upper() or None,
        band_min_mm=band_mm[0] if band_mm else None,
        band_max_mm=band_mm[1] if band_mm else None,
        threshold=threshold,
        days=days,
        enabled=True,
        created_by=created_by[:128],
        created_at=at or _now(),
    )
    with store.begin() as conn:
        key = conn.execute(insert(M.AlertRule).values(**values)).inserted_primary_key
        assert key is not None  # a single-row INSERT has one
        return int(key[0])


def set_rule_enabled(store, rule_id: int, enabled: bool) -> bool:
    """Enable or disable a rule; False when there is no such rule."""
    if not M.fits_integer(rule_id):
        return False  # no such id; PostgreSQL would refuse to compare it
    with store.begin() as conn:
        res = conn.execute(update(M.AlertRule).where(M.AlertRule.id == rule_id).values(enabled=enabled))
        return bool(res.rowcount)


def rules(store, enabled_only: bool = False) -> list[dict]:
    """The rules, oldest first."""
    R = M.AlertRule
    q = select(*(getattr(R, c) for c in _RULE_COLUMNS)).order_by(R.id)
    if enabled_only:
        q = q.where(R.enabled)
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


# --- alerts -----------------------------------------------------------------------------------


def fire(store, rule_id: int, key: str, message: str, unit: str | None, at: dt.datetime) -> int | None:
    """Record an alert under ``key``; its id, or None when the key has fired before."""
    A = M.Alert
    with store.begin() as conn:
        if conn.execute(select(A.id).where(A.key == key)).first() is not None:
            return None
        try:
            # another process may insert the same key between the check and here
            with conn.begin_nested():
                new = conn.execute(
                    insert(A).values(
                        rule_id=rule_id, key=key[:512], message=message, unit=unit and unit[:256], fired_at=at
                    )
                ).inserted_primary_key
        except sa_exc.IntegrityError:
            return None
        assert new is not None  # a single-row INSERT has one
        return int(new[0])


def alerts(
    store, *, ids: Iterable[int] | None = None, unsent: bool = False, open_only: bool = False, limit: int | None = None
) -> list[dict]:
    """Alerts, newest first; ``unsent``: not yet e-mailed (oldest first); ``open_only``: not acknowledged."""
    A = M.Alert
    R = M.AlertRule
    q = select(*(getattr(A, c) for c in _ALERT_COLUMNS), R.kind).join(R, R.id == A.rule_id)
    if ids is not None:
        q = q.where(A.id.in_(list(ids)))
    if unsent:
        q = q.where(A.emailed_at.is_(None)).order_by(A.id)
    else:
        q = q.order_by(A.id.desc())
    if open_only:
        q = q.where(A.acknowledged_at.is_(None))
    if limit:
        q = q.limit(limit)
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def mark_emailed(store, ids: Iterable[int], at: dt.datetime) -> int:
    ids = list(ids)
    if not ids:
        return 0
    with store.begin() as conn:
        return int(conn.execute(update(M.Alert).where(M.Alert.id.in_(ids)).values(emailed_at=at)).rowcount)


def acknowledge(store, alert_id: int, who: str, at: dt.datetime | None = None) -> bool:
    """Mark an alert seen; False when there is no such alert or it was acknowledged already."""
    A = M.Alert
    if not M.fits_integer(alert_id):
        return False  # no such id; PostgreSQL would refuse to compare it
    with store.begin() as conn:
        res = conn.execute(
            update(A)
            .where(A.id == alert_id, A.acknowledged_at.is_(None))
            .values(acknowledged_at=at or _now(), acknowledged_by=who[:128])
        )
        return bool(res.rowcount)


# --- what the rules ask -----------------------------------------------------------------------


def _live_patient_events(q, serial: str | None, view: str | None, band: tuple[float | None, float | None]):
    """Restrict an event query: live events (not superseded) of patients' studies, of the
    unit, view and compressed-thickness band asked (None: any)."""
    E, S, St, D = M.Event, M.SourceObject, M.Study, M.Device
    q = (
        q.join(S, S.id == E.source_object_id)
        .join(St, St.id == E.study_id)
        .join(D, D.id == E.device_id)
        .where(S.superseded_by.is_(None), ~func.coalesce(St.not_patient, false()))
    )
    if serial:
        q = q.where(D.serial == serial)
    if view:
        q = q.where(func.upper(E.view) == view.upper())
    lo, hi = band
    if lo is not None:
        q = q.where(E.compressed_thickness_mm >= lo)
    if hi is not None:
        q = q.where(E.compressed_thickness_mm <= hi)
    return q


def mgd_above(
    store,
    level_mgy: float,
    since_date: str,
    *,
    serial: str | None = None,
    view: str | None = None,
    band: tuple[float | None, float | None] = (None, None),
) -> list[dict]:
    """Per unit and study date (YYYYMMDD, from ``since_date`` on): the patient exposures whose
    MGD (recalculated, else the reported AGD) is above ``level_mgy``: ``serial``,
    ``study_date``, ``n`` and the highest ``mgd_mgy``."""
    E, D, St, R = M.Event, M.Device, M.Study, M.RecalcResult
    mgd = func.coalesce(R.mgd_recalc_mgy, E.agd_mgy)
    q = select(D.serial, St.study_date, func.count().label("n"), func.max(mgd).label("mgd_mgy")).select_from(E)
    q = _live_patient_events(q, serial, view, band).outerjoin(R, R.event_id == E.id)
    q = (
        q.where(mgd > level_mgy, St.study_date >= since_date)
        .group_by(D.serial, St.study_date)
        .order_by(D.serial, St.study_date)
    )
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def ratio_outside(
    store,
    low: float,
    high: float,
    since_date: str,
    *,
    serial: str | None = None,
    view: str | None = None,
    band: tuple[float | None, float | None] = (None, None),
) -> list[dict]:
    """Per unit and study date: patient exposures whose recalculated/reported MGD ratio lies
    outside ``low``..``high``: ``serial``, ``study_date``, ``n``, ``lowest``, ``highest``."""
    E, D, St, R = M.Event, M.Device, M.Study, M.RecalcResult
    ratio = R.ratio_recalc_to_reported
    q = select(
        D.serial,
        St.study_date,
        func.count().label("n"),
        func.min(ratio).label("lowest"),
        func.max(ratio).label("highest"),
    ).select_from(E)
    q = _live_patient_events(q, serial, view, band).join(R, R.event_id == E.id)
    q = (
        q.where(and_(ratio.is_not(None), (ratio < low) | (ratio > high)), St.study_date >= since_date)
        .group_by(D.serial, St.study_date)
        .order_by(D.serial, St.study_date)
    )
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def last_study_dates(store, serial: str | None = None) -> list[dict]:
    """Per unit (serial): the date (YYYYMMDD) of its latest study with live events."""
    E, S, St, D = M.Event, M.SourceObject, M.Study, M.Device
    q = (
        select(D.serial, func.max(St.study_date).label("last_study"))
        .select_from(E)
        .join(S, S.id == E.source_object_id)
        .join(St, St.id == E.study_id)
        .join(D, D.id == E.device_id)
        .where(S.superseded_by.is_(None), St.study_date.is_not(None))
        .group_by(D.serial)
        .order_by(D.serial)
    )
    if serial:
        q = q.where(D.serial == serial)
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def unit_serials(store) -> list[str]:
    with store.engine.connect() as conn:
        return sorted({s for s in conn.execute(select(M.Device.serial)).scalars() if s})
