"""Per study, the dose each breast received: as the unit reported it (TID 10005's accumulated AGD)
and as srdose recalculated it (the sum of the breast's recalculated event MGDs). The FHIR export
reads these. Only pseudonyms: the database holds no patient identifier."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

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
    phantom's study is none)."""
    St, S, E, R, A, D = M.Study, M.SourceObject, M.Event, M.RecalcResult, M.AccumulatedDose, M.Device
    q = (
        select(St.id, St.study_instance_uid, St.study_date, St.patient_pseudonym, D.manufacturer, D.model, D.serial)
        .outerjoin(D, St.device_id == D.id)
        .where(St.not_patient.is_(False))
        .where(St.id.in_(select(S.study_id).where(S.superseded_by.is_(None), S.kind == "rdsr")))
        .order_by(St.study_date, St.id)
    )
    if since:
        q = q.where(St.study_date >= since.replace("-", ""))
    if until:
        q = q.where(St.study_date <= until.replace("-", ""))
    if study_uid:
        q = q.where(St.study_instance_uid == study_uid)
    with store.engine.connect() as conn:
        for sid, uid, day, pseudonym, manufacturer, model, serial in conn.execute(q).all():
            breasts: dict[str, BreastDose] = {}
            sources = conn.execute(
                select(S.sop_instance_uid).where(S.study_id == sid, S.superseded_by.is_(None), S.kind == "rdsr")
            ).scalars()
            for lat, agd in conn.execute(
                select(A.laterality, A.agd_mgy)
                .join(S, A.source_object_id == S.id)
                .where(A.study_id == sid, S.superseded_by.is_(None))
            ):
                if lat in ("L", "R") and agd is not None:
                    b = breasts.setdefault(lat, BreastDose(lat))
                    b.reported_mgy = (b.reported_mgy or 0.0) + agd
            for lat, mgd, method, factor_set in conn.execute(
                select(E.laterality, R.mgd_recalc_mgy, R.method, R.factor_set)
                .join(S, E.source_object_id == S.id)
                .outerjoin(R, R.event_id == E.id)
                .where(E.study_id == sid, S.superseded_by.is_(None))
            ):
                if lat not in ("L", "R"):
                    continue
                b = breasts.setdefault(lat, BreastDose(lat))
                b.events += 1
                if mgd is not None:
                    b.recalculated_events += 1
                    b.recalculated_mgy = (b.recalculated_mgy or 0.0) + mgd
                    b.methods.add(method)
                    if factor_set:
                        b.factor_sets.add(factor_set)
            yield StudyDose(uid, day, pseudonym, manufacturer or "", model or "", serial or "", list(sources), breasts)
