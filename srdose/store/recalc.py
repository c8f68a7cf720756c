"""Database side of the MGD recalculation: the only SQL it needs.

Physics sets (a unit's dated QA measurements), factor-set provenance, the
recalculation inputs as numpy arrays, and writing the results.
:mod:`srdose.recalc` calls these; nothing else in it touches the database.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable

import numpy as np
from sqlalchemy import ColumnElement, delete, func, insert, select

from srdose.store import models as M
from srdose.vocab import Acquisition


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


# --- physics sets -------------------------------------------------------------------------


def add_physics_set(store, pf, replace: bool = False) -> tuple[int, str]:
    """Store a parsed physics file; returns (id, 'added' | 'unchanged' | 'replaced').

    A file for the same unit and ``valid_from`` as a stored one is
    'unchanged' when identical; otherwise it replaces it only with
    ``replace`` (results computed with the old one are then recomputed by the
    next ``srdose recalc``), else :class:`ValueError`.
    """
    P = M.PhysicsSet
    with store.begin() as conn:
        row = conn.execute(
            select(P.id, P.sha256).where(
                P.serial == pf.serial, P.manufacturer == pf.manufacturer, P.valid_from == pf.valid_from
            )
        ).first()
        outcome = "added"
        if row is not None:
            if row.sha256 == pf.sha256:
                return row.id, "unchanged"
            if not replace:
                raise ValueError(
                    f"unit {pf.serial} already has physics data valid from {pf.valid_from} (another file); "
                    "use --replace to replace it, or give the new measurements their own valid_from"
                )
            conn.execute(delete(M.PhysicsPoint).where(M.PhysicsPoint.physics_set_id == row.id))
            conn.execute(delete(P).where(P.id == row.id))
            outcome = "replaced"
        set_id = conn.execute(
            insert(P).values(
                manufacturer=pf.manufacturer,
                model=pf.model,
                serial=pf.serial,
                valid_from=pf.valid_from,
                valid_to=pf.valid_to,
                fdd_mm=pf.fdd_mm,
                support_gap_mm=pf.support_gap_mm,
                d_ref_mm=pf.d_ref_mm,
                measured_by=pf.measured_by,
                notes=pf.notes,
                source_file=pf.source_file,
                sha256=pf.sha256,
                imported_at=_now(),
            )
        ).inserted_primary_key[0]
        conn.execute(
            insert(M.PhysicsPoint),
            [
                {
                    "physics_set_id": set_id,
                    "target": p.target,
                    "filter_material": p.filter,
                    "filter_mm": p.filter_mm,
                    "kvp": p.kv,
                    "output_ugy_per_mas": p.output_ugy_per_mas,
                    "hvl_mm": p.hvl_mm_al,
                }
                for p in pf.points
            ],
        )
    return set_id, outcome


def physics_sets(store, serial: str | None = None) -> list[dict]:
    """Stored physics sets (oldest first), each with its ``points``."""
    P, Pt = M.PhysicsSet, M.PhysicsPoint
    with store.engine.connect() as conn:
        q = select(*P.__table__.columns).order_by(P.serial, P.valid_from, P.id)
        if serial:
            q = q.where(P.serial == serial)
        sets = [dict(r._mapping) for r in conn.execute(q)]
        if not sets:
            return []
        ids = [s["id"] for s in sets]
        points: dict[int, list] = {}
        for r in conn.execute(
            select(*Pt.__table__.columns)
            .where(Pt.physics_set_id.in_(ids))
            .order_by(Pt.physics_set_id, Pt.target, Pt.filter_material, Pt.filter_mm, Pt.kvp)
        ):
            points.setdefault(r.physics_set_id, []).append(dict(r._mapping))
    for s in sets:
        s["points"] = points.get(s["id"], [])
    return sets


def devices(store, serial: str | None = None) -> list[dict]:
    D = M.Device
    with store.engine.connect() as conn:
        q = select(D.id, D.manufacturer, D.model, D.serial)
        if serial:
            q = q.where(D.serial == serial)
        return [dict(r._mapping) for r in conn.execute(q)]


# --- factor sets --------------------------------------------------------------------------


def register_factor_set(store, factor_set) -> int:
    """The id of the stored record of ``factor_set`` (created on first use)."""
    F = M.FactorSetRecord
    with store.begin() as conn:
        row = conn.execute(select(F.id).where(F.sha256 == factor_set.sha256)).first()
        if row is not None:
            return row.id
        return conn.execute(
            insert(F).values(
                name=factor_set.name,
                version=factor_set.version,
                kind=factor_set.kind,
                sha256=factor_set.sha256,
                provenance=json.dumps(factor_set.provenance(), sort_keys=True),
                content=factor_set.content,
                registered_at=_now(),
            )
        ).inserted_primary_key[0]


def find_factor_set(store, name: str) -> dict | None:
    """The newest stored user factor set called ``name`` (or ``name@version``)."""
    F = M.FactorSetRecord
    q = select(*F.__table__.columns).where(F.kind == "user").order_by(F.registered_at.desc(), F.id.desc())
    if "@" in name:
        n, v = name.split("@", 1)
        q = q.where(F.name == n, F.version == v)
    else:
        q = q.where(F.name == name)
    with store.engine.connect() as conn:
        row = conn.execute(q).first()
    return None if row is None else dict(row._mapping)


def factor_set_records(store) -> list[dict]:
    F = M.FactorSetRecord
    with store.engine.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(select(F.id, F.name, F.version, F.kind, F.sha256, F.registered_at).order_by(F.id))
        ]


# --- inputs and results ---------------------------------------------------------------------

#: Numeric inputs of the recalculation, as float arrays (NaN = missing).
NUMERIC_INPUTS = (
    "kvp",
    "mas",
    "n_pulses",
    "filter_thickness_mm",
    "compressed_thickness_mm",
    "hvl_mm",
    "entrance_exposure_mgy",
    "agd_mgy",
    "source_detector_mm",
    "age_years",
    "positioner_primary_angle_deg",
    "positioner_primary_end_angle_deg",
    "source_rp_mm",
)
#: Text inputs, as lists.
TEXT_INPUTS = (
    "manufacturer",
    "model",
    "serial",
    "study_date",
    "acquisition",
    "anode",
    "filter_material",
    "reference_point",
)


def recalc_inputs(
    store,
    serial: str | None = None,
    since: str | None = None,
    until: str | None = None,
    phantom: bool = False,
    protocol_like: str | None = None,
) -> dict:
    """Every live event's recalculation inputs and its stored result state.

    Returns a dict of arrays: ``event_id``, ``device_id`` (int; -1 none),
    the :data:`NUMERIC_INPUTS` (float, NaN missing), the
    :data:`TEXT_INPUTS` (lists of str or None), and ``r_factor_set_id``,
    ``r_physics_set_id`` (int; -1 none), ``r_params`` (list) of the stored
    result, ``has_result`` (bool).
    """
    E, S, St, D, R = M.Event, M.SourceObject, M.Study, M.Device, M.RecalcResult
    # the unit's names come from the devices table, not a copy per event; the study's date from
    # the event's own copy; rows straight from the driver's cursor (a million events: SQLAlchemy's
    # rows cost as much again as reading them)
    cols = [
        E.id,
        E.device_id,
        E.kvp,
        E.mas,
        E.n_pulses,
        E.filter_thickness_mm,
        E.compressed_thickness_mm,
        E.hvl_mm,
        E.entrance_exposure_mgy,
        E.agd_mgy,
        E.source_detector_mm,
        St.age_years,
        E.positioner_primary_angle_deg,
        E.positioner_primary_end_angle_deg,
        E.source_rp_mm,
        E.study_date,
        E.acquisition,
        E.anode,
        E.filter_material,
        E.reference_point,
        R.factor_set_id,
        R.physics_set_id,
        R.params_hash,
        R.event_id,
    ]
    conds = _selected(serial, since, until)
    if phantom:  # phantom QC: not-a-patient studies, or events whose protocol matches
        cond: ColumnElement[bool] = St.not_patient.is_(True)
        if protocol_like:
            cond = cond | E.protocol.ilike(protocol_like)
        conds.append(cond)
    q = (
        select(*cols)
        .join(S, E.source_object_id == S.id)
        .join(St, E.study_id == St.id)
        .outerjoin(R, R.event_id == E.id)
        .where(S.superseded_by.is_(None), *conds)
        .order_by(E.id)
    )
    with store.engine.connect() as conn:
        devices = {
            d.id: (d.manufacturer, d.model, d.serial)
            for d in conn.execute(select(D.id, D.manufacturer, D.model, D.serial))
        }
        rows = conn.execute(q).cursor.fetchall()
        pulses = conn.execute(
            select(
                M.Pulse.event_id,
                M.Pulse.pulse_index,
                M.Pulse.exposure_mas,
                M.Pulse.tube_current_ma,
                M.Pulse.pulse_width_ms,
            )
            .join(E, M.Pulse.event_id == E.id)
            .join(S, E.source_object_id == S.id)
            .join(St, E.study_id == St.id)
            .where(S.superseded_by.is_(None), E.acquisition == Acquisition.DBT, *conds)
        ).cursor.fetchall()
    cols_t = list(zip(*rows)) if rows else [()] * len(cols)
    out: dict = {
        "event_id": np.array(cols_t[0], dtype=np.int64),
        "device_id": np.array([-1 if v is None else v for v in cols_t[1]], dtype=np.int64),
    }
    for k, name in enumerate(NUMERIC_INPUTS, start=2):
        out[name] = np.array(cols_t[k], dtype=float) if rows else np.zeros(0)
    # per event, its unit's manufacturer, model and serial
    unknown = (None, None, None)
    per_event = [devices.get(d, unknown) for d in out["device_id"].tolist()]
    for k, name in enumerate(("manufacturer", "model", "serial")):
        out[name] = [names[k] for names in per_event]
    base = 2 + len(NUMERIC_INPUTS)
    for k, name in enumerate(TEXT_INPUTS[3:], start=base):
        out[name] = list(cols_t[k])
    base += len(TEXT_INPUTS) - 3
    out["r_factor_set_id"] = np.array([-1 if v is None else v for v in cols_t[base]], dtype=np.int64)
    out["r_physics_set_id"] = np.array([-1 if v is None else v for v in cols_t[base + 1]], dtype=np.int64)
    out["r_params"] = list(cols_t[base + 2])
    out["has_result"] = np.array([v is not None for v in cols_t[base + 3]], dtype=bool)
    out["pulse_event"], out["pulse_weight"] = _dbt_pulse_weights(out["event_id"], pulses)
    if phantom:
        out.update(_event_labels(store, out["event_id"]))
    return out


def _selected(serial: str | None, since: str | None, until: str | None) -> list:
    """The conditions of a unit (by serial) and a period (study dates, YYYYMMDD)."""
    E, D = M.Event, M.Device
    conds: list = []
    if serial:
        conds.append(E.device_id.in_(select(D.id).where(D.serial == serial)))
    if since:
        conds.append(E.study_date >= since)
    if until:
        conds.append(E.study_date <= until)
    return conds


def _event_labels(store, event_id: np.ndarray) -> dict:
    """Study date, view, laterality and unit label of the given events (phantom QC listing)."""
    E, St, D = M.Event, M.Study, M.Device
    ids = event_id.tolist()
    labels: dict = {}
    with store.engine.connect() as conn:
        for k in range(0, len(ids), 5000):
            for r in conn.execute(
                select(E.id, St.study_date, E.view, E.acquisition, D.serial, D.display_name, D.station)
                .join(St, E.study_id == St.id)
                .outerjoin(D, E.device_id == D.id)
                .where(E.id.in_(ids[k : k + 5000]))
            ):
                labels[r.id] = r
    rows = [labels[i] for i in ids]
    return {
        "label_date": [r.study_date for r in rows],
        "label_view": [r.view for r in rows],
        "label_unit": [r.display_name or r.serial for r in rows],
    }


def _dbt_pulse_weights(event_id: np.ndarray, rows: list) -> tuple[np.ndarray, np.ndarray]:
    """Tube loading per projection of the DBT events, in projection order.

    ``rows``: (event id, pulse index, mAs, mA, pulse width ms) of the DBT events' pulses. Returns
    (position of the event in ``event_id``, weight) per pulse: the pulse's mAs, else its mA x
    pulse width, else NaN (unknown).
    """
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0)
    ev, idx, mas, ma, width = np.array(rows, dtype=float).T  # one pass in C (None: NaN)
    order = np.lexsort((idx, ev))
    ev, mas, ma, width = ev[order], mas[order], ma[order], width[order]
    ev_ids = ev.astype(np.int64)
    known = np.isin(ev_ids, event_id)  # pulses of events the selection left out
    ev_ids, mas, ma, width = ev_ids[known], mas[known], ma[known], width[known]
    weight = np.where(np.isfinite(mas), mas, ma * width / 1000.0)
    pos = np.searchsorted(event_id, ev_ids)
    return pos.astype(np.int64), weight


RESULT_COLUMNS = (
    "event_id",
    "method",
    "mgd_recalc_mgy",
    "mgd_u_mgy",
    "k_mgy",
    "hvl_used_mm",
    "hvl_source",
    "g",
    "c",
    "s",
    "t_factor",
    "factor_set",
    "factor_set_id",
    "physics_set_id",
    "ratio_recalc_to_reported",
    "flags",
    "params_hash",
)


def write_recalc_results(store, rows: Iterable[tuple], chunk: int = 50000, progress=None) -> int:
    """Write ``rows`` (tuples in :data:`RESULT_COLUMNS` order), each replacing the event's earlier
    result if it has one, in chunks of one transaction each (SQLite: one INSERT OR REPLACE executed
    for the whole chunk; PostgreSQL: COPY and one upsert); ``progress(n)`` is called after each.
    Returns how many."""
    now = _now()
    columns = (*RESULT_COLUMNS, "computed_at")
    names = ", ".join(columns)
    sql = f"INSERT OR REPLACE INTO recalc_results ({names}) VALUES ({', '.join('?' * len(columns))})"
    n = 0
    batch: list[tuple] = []

    def flush() -> None:
        nonlocal n, batch
        if batch:
            with store.begin() as conn:
                if conn.dialect.name == "postgresql":
                    _copy_upsert(conn, columns, batch)
                else:
                    conn.exec_driver_sql(sql, batch)  # the driver's executemany over plain tuples
            n += len(batch)
            if progress:
                progress(len(batch))
            batch = []

    for row in rows:
        batch.append((*row, now))
        if len(batch) >= chunk:
            flush()
    flush()
    return n


def _copy_upsert(conn, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """PostgreSQL: ``rows`` by COPY into a temporary table (emptied at commit), then one upsert
    from it: the bulk path of the driver, not a statement per row."""
    names = ", ".join(columns)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != "event_id")
    raw = conn.connection.driver_connection  # psycopg, in this transaction
    with raw.cursor() as cur:
        cur.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS recalc_results_in "
            "(LIKE recalc_results INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        with cur.copy(f"COPY recalc_results_in ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        # rows locked in event order: two writers upserting overlapping events (two listeners
        # recalculating one unit's day) wait for each other rather than deadlock
        cur.execute(
            f"INSERT INTO recalc_results ({names}) SELECT {names} FROM recalc_results_in ORDER BY event_id "
            f"ON CONFLICT (event_id) DO UPDATE SET {updates}"
        )


def recalc_summary(store) -> dict:
    """Counts of stored results by method and how many carry no MGD."""
    R = M.RecalcResult
    with store.engine.connect() as conn:
        by_method = dict(conn.execute(select(R.method, func.count()).group_by(R.method)).all())
        no_mgd = conn.execute(select(func.count()).select_from(R).where(R.mgd_recalc_mgy.is_(None))).scalar_one()
    return {"by_method": by_method, "no_mgd": no_mgd}


def results_by_event(store) -> list[dict]:
    """Each recalculated event with its unit, reported AGD and result, in event order."""
    E, R, D = M.Event, M.RecalcResult, M.Device
    q = (
        select(
            D.manufacturer,
            D.model,
            E.acquisition,
            E.compressed_thickness_mm,
            E.agd_mgy,
            R.mgd_recalc_mgy,
            R.mgd_u_mgy,
            R.ratio_recalc_to_reported,
            R.flags,
        )
        .join(R, R.event_id == E.id)
        .join(D, D.id == E.device_id)
        .order_by(E.id)
    )
    with store.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(q)]
