"""Database side of the curation pages: the flagged events of one infeasible-value rule, paged.

Counts per rule and unit, units, aliases and protocol names are in :mod:`srdose.store.governance`
(shared with ``srdose check``, ``srdose units`` and ``srdose protocols``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import and_, func, literal, or_, select

from srdose.store import models as M
from srdose.store.governance import FLAG_INFEASIBLE


def _has_flag(flag: str) -> Any:
    # flags are ";"-joined: match the whole item, so rule "mas" does not also find "mas_high"
    return (literal(";") + M.Event.flags + literal(";")).contains(f";{flag};", autoescape=True)


def flagged_events(store: Any, rule: str, field: str | None, offset: int, limit: int) -> list[dict]:
    """Live events flagged ``infeasible:<rule>``, oldest first: event_id, study_id, study_date,
    device_id, serial, acquisition and ``value`` (the event's ``field``, or None without one)."""
    E, S, St, D = M.Event, M.SourceObject, M.Study, M.Device
    if field == "study_date":
        value: Any = St.study_date
    elif field and field in E.__table__.columns:
        value = E.__table__.columns[field]
    else:
        value = literal(None)
    q = (
        select(
            E.id.label("event_id"),
            E.study_id,
            St.study_date,
            E.device_id,
            D.serial,
            E.acquisition,
            value.label("value"),
        )
        .join(S, E.source_object_id == S.id)
        .join(St, E.study_id == St.id)
        .outerjoin(D, E.device_id == D.id)
        .where(S.superseded_by.is_(None), _has_flag(FLAG_INFEASIBLE + rule))
        .order_by(E.id)
        .offset(offset)
        .limit(limit)
    )
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def flagged_count(store: Any, rule: str) -> int:
    """Live events flagged ``infeasible:<rule>``."""
    E, S = M.Event, M.SourceObject
    q = (
        select(func.count(E.id))
        .join(S, E.source_object_id == S.id)
        .where(S.superseded_by.is_(None), _has_flag(FLAG_INFEASIBLE + rule))
    )
    with store.engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


def _period(q: Any, since: str | None, until: str | None) -> Any:
    """``q`` of the studies from ``since`` to ``until`` (YYYYMMDD or YYYY-MM-DD)."""
    if since:
        q = q.where(M.Event.study_date >= since.replace("-", ""))
    if until:
        q = q.where(M.Event.study_date <= until.replace("-", ""))
    return q


def unit_flag_rows(
    store: Any, serial: str | None = None, since: str | None = None, until: str | None = None
) -> Iterator[tuple]:
    """(device_id, study_date, event flags, recalculation flags, source object flags) of every live
    event with a flag, of the unit ``serial`` (or every unit), studies from ``since`` to ``until``
    (YYYYMMDD, inclusive; None: open), streamed: the conformance report tallies them."""
    E, S, R, D = M.Event, M.SourceObject, M.RecalcResult, M.Device
    flagged = or_(
        and_(E.flags.is_not(None), E.flags != ""),
        and_(R.flags.is_not(None), R.flags != ""),
        and_(S.flags.is_not(None), S.flags != ""),
    )
    q = (
        select(E.device_id, E.study_date, E.flags, R.flags, S.flags)
        .join(S, E.source_object_id == S.id)
        .outerjoin(R, R.event_id == E.id)
        .where(S.superseded_by.is_(None), flagged)
    )
    if serial is not None:
        q = q.where(E.device_id.in_(select(D.id).where(D.serial == serial)))
    with store.engine.connect() as conn:
        yield from conn.execution_options(stream_results=True, yield_per=5000).execute(_period(q, since, until))


def unit_event_spans(
    store: Any, serial: str | None = None, since: str | None = None, until: str | None = None
) -> list[dict]:
    """Per device: id, serial, manufacturer, model, live events and their first and last study date
    (studies from ``since`` to ``until``, as :func:`unit_flag_rows`)."""
    E, S, D = M.Event, M.SourceObject, M.Device
    q = (
        select(
            D.id,
            D.serial,
            D.manufacturer,
            D.model,
            func.count(E.id).label("events"),
            func.min(E.study_date).label("first"),
            func.max(E.study_date).label("last"),
        )
        .join(E, E.device_id == D.id)
        .join(S, E.source_object_id == S.id)
        .where(S.superseded_by.is_(None))
        .group_by(D.id, D.serial, D.manufacturer, D.model)
        .order_by(D.manufacturer, D.model, D.serial)
    )
    if serial is not None:
        q = q.where(D.serial == serial)
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(_period(q, since, until))]
