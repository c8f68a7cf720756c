"""Database side of information governance and curation: the only SQL they need.

For the report code:

* :func:`not_patient_expr` -- ``studies.not_patient`` as a boolean SQL expression
  (phantom / QA studies: leave them out of patient statistics, count them);
* :func:`opted_out_pseudonyms` / :func:`opted_out_expr` -- patients who opted
  out (national data opt-out), for research reports (and clinical audit
  reports when ``[governance] optout_clinical_audit = "exclude"``);
* :func:`display_names` / :func:`display_name` -- the name each unit is shown
  (and grouped) under: units with the same display name are one unit in
  statistics;
* :func:`record_audit` -- append to the audit trail (every report written).

Infeasible-value flags are ``infeasible:<rule>`` items in ``events.flags``
(see :mod:`srdose.curation.infeasible`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator

from sqlalchemy import and_, case, delete, false, func, insert, or_, select, true, update
from sqlalchemy.engine import Connection

from srdose.dates import parse_da
from srdose.store import models as M

FLAG_INFEASIBLE = "infeasible:"
ALIAS_FIELDS = ("serial", "station", "institution")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


# --- not a patient --------------------------------------------------------------------


def not_patient_expr():
    """True for a study that is not a patient's (test / QA phantom); use in a query
    that joins :class:`~srdose.store.models.Study`."""
    return func.coalesce(M.Study.not_patient, false())


def not_patient_count(store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(M.Study).where(M.Study.not_patient)).scalar_one()


# --- opt-out --------------------------------------------------------------------------


def opted_out_pseudonyms(store) -> set[str]:
    """Site pseudonyms (``studies.patient_pseudonym``) of patients who opted out."""
    with store.engine.connect() as conn:
        return set(conn.execute(select(M.OptOut.patient_pseudonym)).scalars())


def opted_out_expr():
    """True for a study of an opted-out patient (false, never NULL, for a study without a
    patient pseudonym, so ``~opted_out_expr()`` keeps those); use in a query that joins ``Study``."""
    return and_(
        M.Study.patient_pseudonym.is_not(None), M.Study.patient_pseudonym.in_(select(M.OptOut.patient_pseudonym))
    )


def add_optouts(store, pseudonyms: Iterable[str], source_sha256: str | None, replace: bool = False) -> dict:
    """Store opt-outs (pseudonyms only); ``replace`` makes them the whole list.

    Returns counts: ``added``, ``already``, ``removed`` (with ``replace``),
    ``total`` and ``studies`` (held studies of opted-out patients).
    """
    wanted = {p for p in pseudonyms if p}
    now = _now()
    with store.begin() as conn:
        held = set(conn.execute(select(M.OptOut.patient_pseudonym)).scalars())
        removed = 0
        if replace:
            gone = held - wanted
            for chunk in _chunks(sorted(gone)):
                removed += conn.execute(delete(M.OptOut).where(M.OptOut.patient_pseudonym.in_(chunk))).rowcount
            held -= gone
        new = sorted(wanted - held)
        if new:
            conn.execute(
                insert(M.OptOut),
                [{"patient_pseudonym": p, "added_at": now, "source_sha256": source_sha256} for p in new],
            )
        total = conn.execute(select(func.count()).select_from(M.OptOut)).scalar_one()
        studies = conn.execute(select(func.count()).select_from(M.Study).where(opted_out_expr())).scalar_one()
    return {
        "added": len(new),
        "already": len(wanted) - len(new),
        "removed": removed,
        "total": total,
        "studies": studies,
    }


def _chunks(items: list, n: int = 500) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


# --- re-identification ----------------------------------------------------------------


def has_reidentification(conn: Connection, pseudonym: str) -> bool:
    return (
        conn.execute(
            select(M.Reidentification.patient_pseudonym).where(M.Reidentification.patient_pseudonym == pseudonym)
        ).first()
        is not None
    )


def add_reidentification(conn: Connection, pseudonym: str, nonce: str, ciphertext: str, key_id: str) -> None:
    conn.execute(
        insert(M.Reidentification).values(
            patient_pseudonym=pseudonym, nonce=nonce, ciphertext=ciphertext, key_id=key_id, created_at=_now()
        )
    )


def reidentification_entry(store, pseudonym: str) -> tuple[str, str, str] | None:
    """(nonce, ciphertext, key_id) of a pseudonym, or None."""
    R = M.Reidentification
    with store.engine.connect() as conn:
        row = conn.execute(select(R.nonce, R.ciphertext, R.key_id).where(R.patient_pseudonym == pseudonym)).first()
    return tuple(row) if row else None


def pseudonym_known(store, pseudonym: str) -> bool:
    with store.engine.connect() as conn:
        return (
            conn.execute(select(M.Study.id).where(M.Study.patient_pseudonym == pseudonym).limit(1)).first() is not None
        )


# --- audit trail ----------------------------------------------------------------------


def record_audit(
    store,
    action: str,
    who: str,
    parameters: dict | None = None,
    rows: int | None = None,
    detail: dict | None = None,
    conn: Connection | None = None,
) -> int:
    """Append one entry to the audit trail; returns its id. Nothing updates or deletes entries."""
    values = dict(
        at=_now(),
        who=who[:128],
        action=action[:64],
        parameters=json.dumps(parameters or {}, sort_keys=True, default=str),
        rows=rows,
        detail=json.dumps(detail, sort_keys=True, default=str) if detail else None,
    )
    if conn is not None:
        key = conn.execute(insert(M.AuditEntry).values(**values)).inserted_primary_key
        assert key is not None  # a single-row INSERT has one
        return key[0]
    with store.begin() as c:
        return c.execute(insert(M.AuditEntry).values(**values)).inserted_primary_key[0]


def audit_entries(
    store, action: str | None = None, since: dt.datetime | None = None, limit: int | None = None
) -> list[dict]:
    """Audit entries, newest first."""
    A = M.AuditEntry
    q = select(A.id, A.at, A.who, A.action, A.parameters, A.rows, A.detail).order_by(A.id.desc())
    if action:
        q = q.where(or_(A.action == action, A.action.like(action + ".%")))
    if since:
        q = q.where(A.at >= since)
    if limit:
        q = q.limit(limit)
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


# --- research export ------------------------------------------------------------------


RESEARCH_SOURCE_COLUMNS = (
    "patient_pseudonym",
    "study_instance_uid",
    "study_date",
    "study_time",
    "age_years",
    "sex",
    "description",
    "manufacturer",
    "model",
    "serial",
    "datetime_started",
    "acquisition",
    "laterality",
    "view",
    "protocol",
    "label",
    "kvp",
    "mas",
    "exposure_time_ms",
    "n_pulses",
    "anode",
    "filter_material",
    "filter_thickness_mm",
    "compressed_thickness_mm",
    "compression_force_n",
    "hvl_mm",
    "entrance_exposure_mgy",
    "agd_mgy",
    "mgd_recalc_mgy",
    "flags",
)


def research_counts(store, since: str | None = None, until: str | None = None) -> dict:
    """Live events of the period: all, of not-a-patient studies, of opted-out patients."""
    E, S, St = M.Event, M.SourceObject, M.Study
    base = (
        select(func.count(E.id))
        .join(S, E.source_object_id == S.id)
        .join(St, E.study_id == St.id)
        .where(S.superseded_by.is_(None))
    )
    base = _period(base, since, until)
    with store.engine.connect() as conn:
        return {
            "events": conn.execute(base).scalar_one(),
            "not_patient": conn.execute(base.where(not_patient_expr())).scalar_one(),
            "opted_out": conn.execute(base.where(opted_out_expr(), ~not_patient_expr())).scalar_one(),
        }


def _period(q, since, until):
    if since:
        q = q.where(M.Study.study_date >= since)
    if until:
        q = q.where(M.Study.study_date <= until)
    return q


def iter_research_rows(store, since: str | None = None, until: str | None = None) -> Iterator[dict]:
    """Live events of patients (not phantoms, not opted out), with the site pseudonym and
    identity columns the research export then transforms; never written as they are."""
    E, S, St, D, R = M.Event, M.SourceObject, M.Study, M.Device, M.RecalcResult
    q = (
        select(
            St.patient_pseudonym,
            St.study_instance_uid,
            St.study_date,
            St.study_time,
            St.age_years,
            St.sex,
            St.description,
            D.manufacturer,
            D.model,
            D.serial,
            E.datetime_started,
            E.acquisition,
            E.laterality,
            E.view,
            E.protocol,
            E.label,
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
            E.agd_mgy,
            R.mgd_recalc_mgy,
            E.flags,
        )
        .join(S, E.source_object_id == S.id)
        .join(St, E.study_id == St.id)
        .outerjoin(D, E.device_id == D.id)
        .outerjoin(R, R.event_id == E.id)
        .where(S.superseded_by.is_(None), ~not_patient_expr(), ~opted_out_expr())
        .order_by(St.study_date, St.study_time, St.id, E.datetime_started, E.id)
    )
    q = _period(q, since, until)
    with store.engine.connect() as conn:
        for row in conn.execution_options(stream_results=True, yield_per=5000).execute(q):
            yield dict(row._mapping)


# --- curation: infeasible values ------------------------------------------------------


def iter_events_for_check(store, fields: Iterable[str]) -> Iterator[dict]:
    """Every live event's ``fields`` (event columns; ``study_date`` is always there), with its
    study date and flags. Curation names the fields its rules check."""
    E, S, St = M.Event, M.SourceObject, M.Study
    cols = [getattr(E, f) for f in fields if f != "study_date"]
    q = (
        select(E.id, E.acquisition, E.flags, St.study_date, *cols)
        .join(S, E.source_object_id == S.id)
        .join(St, E.study_id == St.id)
        .where(S.superseded_by.is_(None))
        .order_by(E.id)
    )
    with store.engine.connect() as conn:
        for row in conn.execution_options(stream_results=True, yield_per=5000).execute(q):
            yield dict(row._mapping)


def set_event_flags(store, changes: dict[int, str | None]) -> int:
    """Write ``events.flags`` of the given event ids; returns how many."""
    if not changes:
        return 0
    with store.begin() as conn:
        for event_id, flags in changes.items():
            conn.execute(update(M.Event).where(M.Event.id == event_id).values(flags=flags))
    return len(changes)


def flag_counts(store) -> list[dict]:
    """Live events per unit and infeasible-value rule: device_id, rule, events;
    plus, per unit, the events and not-a-patient events."""
    E, S, St = M.Event, M.SourceObject, M.Study
    q = (
        select(E.device_id, E.flags)
        .join(S, E.source_object_id == S.id)
        .join(St, E.study_id == St.id)
        .where(S.superseded_by.is_(None), E.flags.like(f"%{FLAG_INFEASIBLE}%"))
    )
    counts: dict[tuple, int] = {}
    with store.engine.connect() as conn:
        for device_id, flags in conn.execute(q):
            for f in (flags or "").split(";"):
                if f.startswith(FLAG_INFEASIBLE):
                    key = (device_id, f[len(FLAG_INFEASIBLE) :])
                    counts[key] = counts.get(key, 0) + 1
    return [
        {"device_id": d, "rule": r, "events": n}
        for (d, r), n in sorted(counts.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1]))
    ]


def unit_event_counts(store) -> dict[int | None, dict]:
    """Per device id: live events, events flagged infeasible, events of not-a-patient studies."""
    E, S, St = M.Event, M.SourceObject, M.Study
    q = (
        select(E.device_id, func.count(E.id), func.sum(case((not_patient_expr(), 1), else_=0)))
        .join(S, E.source_object_id == S.id)
        .join(St, E.study_id == St.id)
        .where(S.superseded_by.is_(None))
        .group_by(E.device_id)
    )
    out = {}
    with store.engine.connect() as conn:
        for device_id, n, notp in conn.execute(q):
            out[device_id] = {"events": n, "not_patient": int(notp or 0), "flagged": 0}
        for device_id, n in conn.execute(
            select(E.device_id, func.count(E.id))
            .join(S, E.source_object_id == S.id)
            .where(S.superseded_by.is_(None), E.flags.like(f"%{FLAG_INFEASIBLE}%"))
            .group_by(E.device_id)
        ):
            out.setdefault(device_id, {"events": 0, "not_patient": 0, "flagged": 0})["flagged"] = n
    return out


# --- units: display names and aliases ------------------------------------------------


def default_label(manufacturer, model, serial, station) -> str:
    return station or " ".join(x for x in (manufacturer, model, serial) if x) or "unknown unit"


def units(store) -> list[dict]:
    """Every unit: id, manufacturer, model, serial, station, institution, display_name (set
    explicitly), shown_as (the name in force) and how it was chosen."""
    D = M.Device
    with store.engine.connect() as conn:
        devices = [
            dict(r._mapping)
            for r in conn.execute(
                select(
                    D.id,
                    D.manufacturer,
                    D.model,
                    D.serial,
                    D.station,
                    D.institution,
                    D.display_name,
                    D.first_seen,
                    D.last_seen,
                ).order_by(D.manufacturer, D.model, D.serial)
            )
        ]
        aliases = {
            (a.match_field, a.match_value): a.display_name
            for a in conn.execute(select(M.UnitAlias.match_field, M.UnitAlias.match_value, M.UnitAlias.display_name))
        }
    for d in devices:
        d["shown_as"], d["named_by"] = _resolve(d, aliases)
    return devices


def _resolve(d: dict, aliases: dict) -> tuple[str, str]:
    if d.get("display_name"):
        return d["display_name"], "rename"
    for field in ALIAS_FIELDS:
        value = d.get(field)
        if value and (field, value) in aliases:
            return aliases[(field, value)], f"alias:{field}"
    return default_label(d.get("manufacturer"), d.get("model"), d.get("serial"), d.get("station")), "default"


def display_names(store) -> dict[int, str]:
    """Display name of every unit, by ``devices.id``. Units sharing a name are one unit
    in statistics (group by this name, not by device id)."""
    return {d["id"]: d["shown_as"] for d in units(store)}


def display_name(store, device_id: int | None) -> str:
    """Display name of one unit (``devices.id``)."""
    if device_id is None:
        return "unknown unit"
    return display_names(store).get(device_id, "unknown unit")


def find_devices(store, ref: str) -> list[int]:
    """Device ids a user's reference names: an id, a serial, a station or a display name."""
    D = M.Device
    with store.engine.connect() as conn:
        # a number beyond an id's range is no id (PostgreSQL refuses to compare it)
        if ref.isdigit() and M.fits_integer(int(ref)):
            row = conn.execute(select(D.id).where(D.id == int(ref))).first()
            if row:
                return [row[0]]
        ids = list(
            conn.execute(select(D.id).where(or_(D.serial == ref, D.station == ref, D.display_name == ref))).scalars()
        )
    if not ids:
        ids = [i for i, name in display_names(store).items() if name == ref]
    return sorted(set(ids))


def rename_units(store, device_ids: list[int], name: str | None) -> int:
    """Set (or, with None, clear) the display name of units."""
    with store.begin() as conn:
        return conn.execute(
            update(M.Device).where(M.Device.id.in_(device_ids)).values(display_name=name or None)
        ).rowcount


def set_alias(store, field: str, value: str, name: str | None) -> str:
    """Add, change or (``name`` None) remove an alias rule; returns what was done."""
    if field not in ALIAS_FIELDS:
        raise ValueError(f"alias field must be one of {', '.join(ALIAS_FIELDS)}")
    A = M.UnitAlias
    with store.begin() as conn:
        row = conn.execute(select(A.id).where(A.match_field == field, A.match_value == value)).first()
        if name is None:
            if row:
                conn.execute(delete(A).where(A.id == row[0]))
                return "removed"
            return "absent"
        if row:
            conn.execute(update(A).where(A.id == row[0]).values(display_name=name))
            return "changed"
        conn.execute(insert(A).values(match_field=field, match_value=value, display_name=name, created_at=_now()))
        return "added"


def aliases(store) -> list[dict]:
    A = M.UnitAlias
    with store.engine.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(
                select(A.match_field, A.match_value, A.display_name).order_by(A.match_field, A.match_value)
            )
        ]


# --- protocols ------------------------------------------------------------------------


def protocol_names(store) -> list[tuple[str | None, int]]:
    """Distinct protocol names of live events with their event counts."""
    E, S = M.Event, M.SourceObject
    q = (
        select(E.protocol, func.count(E.id))
        .join(S, E.source_object_id == S.id)
        .where(S.superseded_by.is_(None))
        .group_by(E.protocol)
        # equal counts by name: the same order on every engine and every load
        .order_by(func.count(E.id).desc(), E.protocol)
    )
    with store.engine.connect() as conn:
        return [(p, n) for p, n in conn.execute(q)]


# --- retention ------------------------------------------------------------------------


def purge_before(store, before: str, dry_run: bool = False) -> dict:
    """Remove studies older than ``before`` (YYYYMMDD, by study date; a study without a
    date by when its objects were received) with their source objects, events and
    everything hanging off them; also quarantine records of before then.

    Returns row counts per table and the quarantine files (``stored_as``) whose
    records were removed, for the caller to delete. Devices, opt-outs and the
    audit trail are kept.
    """
    St, S, E = M.Study, M.SourceObject, M.Event
    day = parse_da(before)
    if day is None:
        raise ValueError(f"purge before {before!r}: not a YYYYMMDD date")
    cutoff = dt.datetime.combine(day, dt.time())
    counts: dict[str, int] = {}
    with store.begin() as conn:
        undated_old = select(S.study_id).group_by(S.study_id).having(func.max(S.received_at) < cutoff)
        study_ids = list(
            conn.execute(
                select(St.id).where(
                    or_(
                        and_(St.study_date.is_not(None), St.study_date != "", St.study_date < before),
                        and_(or_(St.study_date.is_(None), St.study_date == ""), St.id.in_(undated_old)),
                    )
                )
            ).scalars()
        )
        counts["studies"] = len(study_ids)
        source_ids, event_ids, pseudonyms = [], [], set()
        for chunk in _chunks(study_ids):
            source_ids += list(conn.execute(select(S.id).where(S.study_id.in_(chunk))).scalars())
            event_ids += list(conn.execute(select(E.id).where(E.study_id.in_(chunk))).scalars())
            pseudonyms |= set(conn.execute(select(St.patient_pseudonym).where(St.id.in_(chunk))).scalars())
        counts["source_objects"] = len(source_ids)
        counts["events"] = len(event_ids)
        for name, model, col in (
            ("pulses", M.Pulse, M.Pulse.event_id),
            ("filters", M.Filter, M.Filter.event_id),
            ("recalc_results", M.RecalcResult, M.RecalcResult.event_id),
        ):
            counts[name] = sum(
                conn.execute(select(func.count()).select_from(model).where(col.in_(c))).scalar_one()
                for c in _chunks(event_ids)
            )
        counts["accumulated_doses"] = sum(
            conn.execute(
                select(func.count()).select_from(M.AccumulatedDose).where(M.AccumulatedDose.study_id.in_(c))
            ).scalar_one()
            for c in _chunks(study_ids)
        )
        Q = M.Quarantine
        quarantine_rows = conn.execute(select(Q.id, Q.stored_as).where(Q.at < cutoff)).all()
        counts["quarantine"] = len(quarantine_rows)
        pseudonyms.discard(None)
        # pseudonyms whose every study goes: their re-identification entries go too
        kept = set()
        for chunk in _chunks(sorted(pseudonyms)):
            kept |= set(
                conn.execute(
                    select(St.patient_pseudonym).where(
                        St.patient_pseudonym.in_(chunk), St.id.not_in(study_ids) if study_ids else true()
                    )
                ).scalars()
            )
        gone_pseudonyms = sorted(pseudonyms - kept)
        counts["reidentification"] = sum(
            conn.execute(
                select(func.count()).select_from(M.Reidentification).where(M.Reidentification.patient_pseudonym.in_(c))
            ).scalar_one()
            for c in _chunks(gone_pseudonyms)
        )
        if not dry_run:
            for c in _chunks(event_ids):
                conn.execute(delete(M.RecalcResult).where(M.RecalcResult.event_id.in_(c)))
                conn.execute(delete(M.Pulse).where(M.Pulse.event_id.in_(c)))
                conn.execute(delete(M.Filter).where(M.Filter.event_id.in_(c)))
                conn.execute(delete(E).where(E.id.in_(c)))
            for c in _chunks(study_ids):
                conn.execute(delete(M.AccumulatedDose).where(M.AccumulatedDose.study_id.in_(c)))
            for c in _chunks(source_ids):
                # objects of one study name each other (superseded_by): unlink before deleting in chunks
                conn.execute(update(S).where(S.superseded_by.in_(c)).values(superseded_by=None))
            for c in _chunks(source_ids):
                conn.execute(delete(S).where(S.id.in_(c)))
            for c in _chunks(study_ids):
                conn.execute(delete(St).where(St.id.in_(c)))
            for c in _chunks(gone_pseudonyms):
                conn.execute(delete(M.Reidentification).where(M.Reidentification.patient_pseudonym.in_(c)))
            for c in _chunks([r.id for r in quarantine_rows]):
                conn.execute(delete(Q).where(Q.id.in_(c)))
    return {**counts, "quarantine_files": [r.stored_as for r in quarantine_rows if r.stored_as]}


def opted_out_study_count(store) -> int:
    """Held studies of patients on the opt-out list."""
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(M.Study).where(opted_out_expr())).scalar_one()
