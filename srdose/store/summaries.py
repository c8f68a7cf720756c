"""Per study, the dose each breast received: as the unit reported it (TID 10005's accumulated AGD)
and as srdose recalculated it (the sum of the breast's recalculated event MGDs). The FHIR export
reads these. Only pseudonyms: the database holds no patient identifier."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, select

from srdose.store import models as M


@dataclass
class BreastDose:
    laterality: str  # L | R
    reported_mgy: float | None = None  # accumulated AGD of the RDSR(s), summed over them
    recalculated_mgy: float | None = None  # sum of the breast's recalculated event MGDs
    events: int = 0
    recalculated_events: int = 0  # of ``events``; fewer: the sum is not the breast's dose
    methods: set[str] = field(default_factory=set)
    factor_sets: set[str] = field(default_factory=set)


@dataclass
class StudyDose:
    study_uid: str
    study_date: str | None  # YYYYMMDD
    patient_pseudonym: str | None
    manufacturer: str
    model: str
    serial: str
    source_uids: list[str]  # the live dose reports of the study
    breasts: dict[str, BreastDose]


def study_doses(
    store: Any, since: str | None = None, until: str | None = None, study_uid: str | None = None
) -> Iterator[StudyDose]:
    """The studies with a live RDSR (from ``since`` to ``until``, YYYYMMDD or YYYY-MM-DD; or the
    one ``study_uid``), oldest first, with their breasts' doses; patients' studies only (a QA
    phantom's study is none). Four set-wise queries, whatever the number of studies."""
    St, S, E, R, A, D = M.Study, M.SourceObject, M.Event, M.RecalcResult, M.AccumulatedDose, M.Device
    live_rdsr = and_(S.superseded_by.is_(None), S.kind == "rdsr")
    chosen = select(St.id).where(St.not_patient.is_(False), St.id.in_(select(S.study_id).where(live_rdsr)))
    if since:
        chosen = chosen.where(St.study_date >= since.replace("-", ""))
    if until:
        chosen = chosen.where(St.study_date <= until.replace("-", ""))
    if study_uid:
        chosen = chosen.where(St.study_instance_uid == study_uid)
    with store.engine.connect() as conn:
        sources: dict[int, list[str]] = {}
        for sid, uid in conn.execute(select(S.study_id, S.sop_instance_uid).where(live_rdsr, S.study_id.in_(chosen))):
            sources.setdefault(sid, []).append(uid)
        breasts: dict[int, dict[str, BreastDose]] = {}
        for sid, lat, agd in conn.execute(
            select(A.study_id, A.laterality, func.sum(A.agd_mgy))
            .join(S, A.source_object_id == S.id)
            .where(S.superseded_by.is_(None), A.study_id.in_(chosen), A.laterality.in_(("L", "R")))
            .group_by(A.study_id, A.laterality)
        ):
            if agd is not None:
                breasts.setdefault(sid, {}).setdefault(lat, BreastDose(lat)).reported_mgy = agd
        for sid, lat, method, factor_set, events, recalculated, mgd in conn.execute(
            select(E.study_id, E.laterality, R.method, R.factor_set, func.count(E.id), func.count(R.mgd_recalc_mgy))
            .add_columns(func.sum(R.mgd_recalc_mgy))
            .join(S, E.source_object_id == S.id)
            .outerjoin(R, R.event_id == E.id)
            .where(S.superseded_by.is_(None), E.study_id.in_(chosen), E.laterality.in_(("L", "R")))
            .group_by(E.study_id, E.laterality, R.method, R.factor_set)
        ):
            b = breasts.setdefault(sid, {}).setdefault(lat, BreastDose(lat))
            b.events += events
            if recalculated:
                b.recalculated_events += recalculated
                b.recalculated_mgy = (b.recalculated_mgy or 0.0) + mgd
                b.methods.add(method)
                if factor_set:
                    b.factor_sets.add(factor_set)
        studies = conn.execute(
            select(St.id, St.study_instance_uid, St.study_date, St.patient_pseudonym, D.manufacturer, D.model, D.serial)
            .outerjoin(D, St.device_id == D.id)
            .where(St.id.in_(chosen))
            .order_by(St.study_date, St.id)
        ).all()
    for sid, uid, day, pseudonym, manufacturer, model, serial in studies:
        yield StudyDose(
            uid,
            day,
            pseudonym,
            manufacturer or "",
            model or "",
            serial or "",
            sources.get(sid, []),
            breasts.get(sid, {}),
        )
