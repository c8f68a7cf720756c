"""Database side of the curation pages: the flagged events of one infeasible-value rule, paged.

Counts per rule and unit, units, aliases and protocol names are in :mod:`srdose.store.governance`
(shared with ``srdose check``, ``srdose units`` and ``srdose protocols``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, literal, select

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
