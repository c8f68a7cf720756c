"""Database side of the MGD recalculation: the only SQL it needs.

Physics sets (a unit's dated QA measurements), factor-set provenance, the
recalculation inputs as numpy arrays, and writing the results.
:mod:`srdose.recalc` calls these; nothing else in it touches the database.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Mapping
from functools import partial

import numpy as np
import pyarrow as pa
from sqlalchemy import (
    ColumnElement,
    Float,
    and_,
    cast,
    delete,
    func,
    insert,
    literal_column,
    select,
)

from srdose.columns import CodedColumn
from srdose.store import bulk
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
    ids: tuple[int, int | None] | None = None,
    with_results: bool = True,
    coded: bool = False,
) -> dict:
    """Every live event's recalculation inputs and its stored result state (of the events whose
    id is within ``ids``, both ends included, None: no end, if given). Without ``with_results``
    (a run that recomputes every event whatever its result) the stored results are not read and
    each event is given none.

    Returns a dict of arrays, in event order: ``event_id``, ``device_id`` (int; -1 none),
    the :data:`NUMERIC_INPUTS` (float, NaN missing), the
    :data:`TEXT_INPUTS` (lists of str or None; with ``coded``, each a
    :class:`srdose.columns.CodedColumn`), and ``r_factor_set_id``,
    ``r_physics_set_id`` (int; -1 none), ``r_params`` (a text column too) of the stored
    result, ``has_result`` (bool).
    """
    E, S, St, R = M.Event, M.SourceObject, M.Study, M.RecalcResult
    # the unit's names come from the devices table, not a copy per event; the study's date from
    # the event's own copy
    numeric = [
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
    ]
    text = [E.study_date, E.acquisition, E.anode, E.filter_material, E.reference_point]
    if with_results:
        numeric += [R.factor_set_id, R.physics_set_id, R.event_id]
        text.append(R.params_hash)
    conds = _selected(serial, since, until)
    conds.extend(_within(E.id, ids))
    if phantom:  # phantom QC: not-a-patient studies, or events whose protocol matches
        cond: ColumnElement[bool] = St.not_patient.is_(True)
        if protocol_like:
            cond = cond | E.protocol.ilike(protocol_like)
        conds.append(cond)

    # the result's join bounded too: PostgreSQL then reads a range of its key, not all of it
    result_of = and_(R.event_id == E.id, *_within(R.event_id, ids))

    def events(*cols, ordered: bool = True):
        q = select(*cols).join(S, E.source_object_id == S.id).join(St, E.study_id == St.id)
        if with_results:
            q = q.outerjoin(R, result_of)
        q = q.where(S.superseded_by.is_(None), *conds)
        return q.order_by(E.id) if ordered else q

    def event_texts(*cols):
        """Columns of the events (and their results) alone, without the joins to their objects
        and studies: ``conds`` are the events' own but for phantom QC's."""
        q = select(*cols)
        if with_results:
            q = q.outerjoin(R, result_of)
        return q.where(*conds)

    def dbt_pulses(*cols):
        return (
            select(*cols)
            .join(E, M.Pulse.event_id == E.id)
            .join(S, E.source_object_id == S.id)
            .join(St, E.study_id == St.id)
            .where(S.superseded_by.is_(None), E.acquisition == Acquisition.DBT, *conds)
        )

    # a DBT event's projections: the pulse's mAs, else its mA x pulse width (NULL: unknown)
    weight = func.coalesce(M.Pulse.exposure_mas, M.Pulse.tube_current_ma * M.Pulse.pulse_width_ms / 1000.0)
    pulse_columns = [M.Pulse.event_id, M.Pulse.pulse_index, weight]
    with store.reading() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            # the numbers and the texts are two statements: they must see the same events
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            # compiling each query to machine code cost 80-100 ms, more than running a range's
            conn.exec_driver_sql("SET LOCAL jit = off")
        devices = _devices(conn)
        texts: list  # of lists, or of CodedColumn
        if postgres and not phantom:
            values, columns = _postgres_columns(conn, partial(events, ordered=False), numeric, event_texts, text)
            texts = columns if coded else [c.tolist() for c in columns]
            pulses = bulk.copy_floats(conn, dbt_pulses(*map(_as_float, pulse_columns)), len(pulse_columns))
        else:
            values, lists = read_columns(conn, events, numeric, text)
            texts = [CodedColumn.of(t) for t in lists] if coded else lists
            pulses, _ = read_columns(conn, dbt_pulses, pulse_columns, [])
    event_id = values[:, 0].astype(np.int64)
    out: dict = {"event_id": event_id, "device_id": _ids(values[:, 1])}
    for k, name in enumerate(NUMERIC_INPUTS, start=2):
        out[name] = np.ascontiguousarray(values[:, k])
    base = 2 + len(NUMERIC_INPUTS)
    if with_results:
        out["r_factor_set_id"] = _ids(values[:, base])
        out["r_physics_set_id"] = _ids(values[:, base + 1])
        out["has_result"] = ~np.isnan(values[:, base + 2])
    else:
        out["r_factor_set_id"] = out["r_physics_set_id"] = np.full(len(event_id), -1, dtype=np.int64)
        out["has_result"] = np.zeros(len(event_id), dtype=bool)
        none = CodedColumn(np.zeros(len(event_id), dtype=np.int64), [None])
        texts = [*texts, none if coded else none.tolist()]
    out.update(_unit_names(devices, out["device_id"], coded))
    for name, column in zip((*TEXT_INPUTS[3:], "r_params"), texts):
        out[name] = column
    out["pulse_event"], out["pulse_weight"] = _dbt_pulse_weights(event_id, pulses)
    if phantom:
        out.update(_event_labels(store, out["event_id"]))
    return out


def _as_float(column) -> ColumnElement:
    """A column as ``double precision``, NaN for NULL (see :func:`srdose.store.bulk.copy_floats`)."""
    return func.coalesce(cast(column, Float(53)), literal_column("'NaN'::float8"))


def _postgres_columns(conn, events, numeric: list, event_texts, text: list) -> tuple[np.ndarray, list[CodedColumn]]:
    """PostgreSQL: :func:`read_columns`'s numbers, in event order, and texts, coded.

    The numbers come by one binary COPY of ``events(*numeric)`` (the joins), unsorted: sorting
    a range's wide rows cost the server as much as joining them, sorting their ids here costs
    little. The texts come by a CSV COPY of ``event_texts(*text)`` (the events alone, a walk
    of their key, in the same snapshot), each coded by pyarrow as it parses, and are matched
    to the numbers by id. (Coding the texts on the server, by their distinct values, cost it
    more than it saved here.)
    """
    E = M.Event
    values = bulk.copy_floats(conn, events(*map(_as_float, numeric)), len(numeric))
    values = values[np.argsort(values[:, 0], kind="stable")]
    ids = values[:, 0].astype(np.int64)
    types = [pa.int64()] + [pa.dictionary(pa.int32(), pa.string())] * len(text)
    table = bulk.copy_table(conn, event_texts(E.id, *text), types)
    text_ids = table.column(0).to_numpy()
    order = np.argsort(text_ids, kind="stable")
    at = order[np.searchsorted(text_ids, ids, sorter=order)] if len(text_ids) else np.zeros(0, np.int64)
    if len(ids) and (len(text_ids) == 0 or not np.array_equal(text_ids[at], ids)):
        raise RuntimeError("an event's texts were not read with its numbers")  # one snapshot: never
    return values, [bulk.coded(table.column(k + 1))[at] for k in range(len(text))]


def recalc_state(
    store, serial: str | None = None, since: str | None = None, ids: tuple[int, int | None] | None = None
) -> dict:
    """What decides whether the stored results of the live events whose id is within ``ids`` are
    current, counted by kind: for each distinct unit, study date and stored result's factor set,
    physics set and settings, ``events`` (how many). Its other columns are those of
    :func:`recalc_inputs`: ``device_id``, ``manufacturer``, ``model``, ``serial``,
    ``study_date``, ``has_result``, ``r_factor_set_id``, ``r_physics_set_id``, ``r_params``.

    The database counts: a range of a quarter of a million events is a few thousand rows here
    (reading each event's took most of the time of a run where nothing had changed)."""
    E, S, R = M.Event, M.SourceObject, M.RecalcResult
    conds = [*_selected(serial, since, None), *_within(E.id, ids)]
    has_result = R.event_id.is_not(None)
    keys = [E.device_id, E.study_date, has_result, R.factor_set_id, R.physics_set_id, R.params_hash]
    q = (
        select(*keys, func.count())
        .join(S, E.source_object_id == S.id)
        .outerjoin(R, and_(R.event_id == E.id, *_within(R.event_id, ids)))
        .where(S.superseded_by.is_(None), *conds)
        .group_by(*keys)
    )
    with store.reading() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL jit = off")
        devices = _devices(conn)
        rows = conn.execute(q).all()
    device, day, has, fs_id, ps_id, params, events = (list(c) for c in zip(*rows)) if rows else ([],) * 7
    out: dict = {"device_id": _ids(np.array(device, dtype=float))}  # None: NaN, then -1
    out.update(_unit_names(devices, out["device_id"]))
    out["study_date"], out["r_params"] = day, params
    out["has_result"] = np.array(has, dtype=bool)
    out["r_factor_set_id"] = _ids(np.array(fs_id, dtype=float))
    out["r_physics_set_id"] = _ids(np.array(ps_id, dtype=float))
    out["events"] = np.array(events, dtype=np.int64)
    return out


def _devices(conn) -> dict[int, tuple]:
    D = M.Device
    rows = conn.execute(select(D.id, D.manufacturer, D.model, D.serial))
    return {d.id: (d.manufacturer, d.model, d.serial) for d in rows}


def _unit_names(devices: dict[int, tuple], device_id: np.ndarray, coded: bool = False) -> dict:
    """Per event, its unit's ``manufacturer``, ``model`` and ``serial`` (None: no unit), as
    lists or (``coded``) :class:`srdose.columns.CodedColumn`."""
    codes, inverse = np.unique(device_id, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    unknown = (None, None, None)
    names = [devices.get(d, unknown) for d in codes.tolist()]
    out: dict = {}
    for k, name in enumerate(("manufacturer", "model", "serial")):
        column = CodedColumn(inverse, [n[k] for n in names])
        out[name] = column if coded else column.tolist()
    return out


def event_id_ranges(
    store, size: int, serial: str | None = None, since: str | None = None
) -> tuple[int, list[tuple[int, int | None]]]:
    """The events of ``serial`` from ``since``, as ranges of ids holding ``size`` of them each
    (oldest first; both ends included, None: no end), and how many there are (an upper bound:
    events of superseded objects are counted).

    Each range's start is found by stepping ``size`` events on from the last along the id
    index, so that the whole costs one walk of it (numbering every event with a window
    function took a second per million on SQLite)."""
    E = M.Event
    conds = _selected(serial, since, None)
    starts: list[int] = []
    with store.reading() as conn:
        total = conn.execute(select(func.count(E.id)).where(*conds)).scalar_one()
        start = conn.execute(select(func.min(E.id)).where(*conds)).scalar()
        while start is not None:
            starts.append(start)
            start = conn.execute(
                select(E.id).where(*conds, E.id >= start).order_by(E.id).limit(1).offset(size)
            ).scalar()
    ends: list[int | None] = [b - 1 for b in starts[1:]] + [None]
    return total, list(zip(starts, ends))


def _within(column, ids: tuple[int, int | None] | None) -> list:
    if ids is None:
        return []
    lo, hi = ids
    return [column >= lo] if hi is None else [column.between(lo, hi)]


def _ids(values: np.ndarray) -> np.ndarray:
    """Row ids read as floats, as integers (-1: none)."""
    return np.where(np.isnan(values), -1, values).astype(np.int64)


# --- bulk reads and writes: columns, not row objects (see srdose.store.bulk) -------------------


def read_columns(conn, build, numeric: list, text: list) -> tuple[np.ndarray, list[list]]:
    """The rows of ``build(*numeric, *text)``: the numeric columns as one (n, len(numeric))
    float array (NaN for NULL), the text columns as lists of str or None.

    PostgreSQL reads them with one COPY; SQLite with one query for each kind, so that the
    numbers go from the driver's tuples to a float array in one call in C.
    """
    nnum = len(numeric)
    if conn.dialect.name == "postgresql":
        table = bulk.copy_table(conn, build(*numeric, *text), [pa.float64()] * nnum + [pa.string()] * len(text))
        values = np.empty((table.num_rows, nnum))
        for k in range(nnum):
            values[:, k] = table.column(k).to_numpy(zero_copy_only=False)  # NULL: NaN
        return values, [table.column(nnum + k).to_pylist() for k in range(len(text))]
    with bulk.gc_paused():
        rows = conn.execute(build(*numeric)).cursor.fetchall()
        values = np.array(rows, dtype=float).reshape(len(rows), nnum)  # None: NaN, in C
        del rows
        if not text:
            return values, []
        rows = conn.execute(build(*text)).cursor.fetchall()
        return values, [list(col) for col in zip(*rows)] if rows else [[] for _ in text]


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


def _dbt_pulse_weights(event_id: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tube loading per projection of the DBT events, in projection order.

    ``rows``: (event id, pulse index, weight) of the DBT events' pulses, the weight the pulse's
    mAs, else its mA x pulse width, else NaN (unknown). Returns (position of the event in
    ``event_id``, weight) per pulse.
    """
    if not len(rows):
        return np.zeros(0, np.int64), np.zeros(0)
    ev, idx, weight = rows.T
    order = np.lexsort((idx, ev))
    ev_ids, weight = ev[order].astype(np.int64), weight[order]
    known = np.isin(ev_ids, event_id)  # pulses of events the selection left out
    ev_ids, weight = ev_ids[known], weight[known]
    pos = np.searchsorted(event_id, ev_ids)
    return pos.astype(np.int64), np.ascontiguousarray(weight)


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
    "physics_set_id",
    "ratio_recalc_to_reported",
    "flags",
)
#: Written once for a whole run: the factor set's label and id, the settings' digest, the time.
RUN_COLUMNS = ("factor_set", "factor_set_id", "params_hash", "computed_at")


def write_recalc_results(
    store,
    results: Mapping[str, np.ndarray | list | CodedColumn],
    factor_set: str,
    factor_set_id: int,
    params_hash: str,
    chunk: int = 100_000,
) -> int:
    """Write the results of one run, each replacing the event's earlier result if it has one.

    ``results``: a column per :data:`RESULT_COLUMNS` name, one value per event: float arrays
    (NaN: none), integer arrays (``physics_set_id``: -1 none), or texts: lists of str or None,
    or :class:`srdose.columns.CodedColumn`. Written
    in chunks of one transaction each (SQLite: one INSERT OR REPLACE executed over the chunk's
    rows; PostgreSQL: COPY, then one UPDATE and one INSERT). Returns how many of the events had
    no result before (the rows the table gained).
    """
    n = len(results["event_id"])
    run = {"factor_set": factor_set, "factor_set_id": factor_set_id, "params_hash": params_hash, "computed_at": _now()}
    added = 0
    for start in range(0, n, chunk):
        part = {c: results[c][start : start + chunk] for c in RESULT_COLUMNS}
        with store.begin() as conn:
            if conn.dialect.name == "postgresql":
                added += _copy_upsert(conn, part, run)
            else:
                added += _sqlite_replace(conn, part, run)
    return added


def _values(column: np.ndarray | list | CodedColumn) -> list:
    """A column as the driver's values: NULL for -1 in an id column; a float NaN is bound as
    NULL by SQLite itself."""
    if isinstance(column, CodedColumn):
        return column.tolist()
    if isinstance(column, np.ndarray) and column.dtype.kind == "i":
        return [None if v < 0 else v for v in column.tolist()]
    return column.tolist() if isinstance(column, np.ndarray) else list(column)


def _sqlite_replace(conn, part: Mapping[str, np.ndarray | list | CodedColumn], run: Mapping) -> int:
    """SQLite: the chunk's results, each replacing the event's earlier one; returns how many
    events had none (the count of the chunk's range of ids before and after, in this
    transaction: nobody else writes in between)."""
    names = (*RESULT_COLUMNS, *RUN_COLUMNS)
    sql = f"INSERT OR REPLACE INTO recalc_results ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    n = len(part["event_id"])
    if not n:
        return 0
    ids = np.asarray(part["event_id"])
    count = "SELECT count(*) FROM recalc_results WHERE event_id BETWEEN ? AND ?"
    bounds = (int(ids.min()), int(ids.max()))
    before = conn.exec_driver_sql(count, bounds).scalar_one()
    # the time as SQLAlchemy stores it in SQLite, formatted once rather than by the driver per row
    shared = dict(run, computed_at=run["computed_at"].strftime("%Y-%m-%d %H:%M:%S.%f"))
    with bulk.gc_paused():
        columns = [_values(part[c]) for c in RESULT_COLUMNS] + [itertools.repeat(shared[c], n) for c in RUN_COLUMNS]
        conn.exec_driver_sql(sql, list(zip(*columns)))  # the driver's executemany over plain tuples
    return conn.exec_driver_sql(count, bounds).scalar_one() - before


#: Result columns that are text (sent to PostgreSQL as codes) and row ids (-1: none).
TEXT_RESULTS = ("method", "hvl_source", "flags")
ID_RESULTS = ("event_id", "physics_set_id")
#: The largest local buffer pool a PostgreSQL session writing results asks for: a chunk of
#: 100,000 results in the table that carries them is about 16 MB. With the server's default of
#: 8 MB the table spilled to disk and each COPY took half as long again.
TEMP_BUFFERS = "64MB"


def _copy_upsert(conn, part: Mapping[str, np.ndarray | list | CodedColumn], run: Mapping) -> int:
    """PostgreSQL: the chunk's columns by binary COPY (:func:`srdose.store.bulk.copy_in`) into a
    temporary table (emptied at commit), then one UPDATE of the events that have a result and
    one INSERT of those that have none: the bulk path of the server, not a statement per row.

    Text columns travel as codes into their few distinct values (passed once, as arrays), NaN
    and -1 as themselves: every row has the same width, and is turned into NULL on the server.
    Updating by a join took a third of the time of an upsert of every row (ON CONFLICT), which
    probes the key and locks each row one at a time. Returns how many events had no result.
    """
    params: dict = dict(run)
    sent: dict[str, np.ndarray] = {}
    value: dict[str, str] = {"event_id": "i.event_id"}
    for c in RESULT_COLUMNS:
        column = part[c]
        if c in TEXT_RESULTS:
            codes, names = _text_codes(column)
            sent[c], params[f"{c}_names"] = codes, names
            value[c] = f"(%({c}_names)s::text[])[i.{c}]"  # code 0: before the array's start, NULL
        elif c in ID_RESULTS:
            sent[c] = np.asarray(column, dtype=np.int64)
            value.setdefault(c, f"nullif(i.{c}, -1)")
        else:
            sent[c] = np.asarray(column, dtype=np.float64)
            value[c] = f"nullif(i.{c}, 'NaN'::float8)"  # NaN equals NaN in PostgreSQL
    ids = sent["event_id"]
    if not len(ids):
        return 0
    params["lo"], params["hi"] = int(ids.min()), int(ids.max())
    run_values = {c: f"%({c})s" for c in RUN_COLUMNS}
    raw = conn.connection.driver_connection  # psycopg, in this transaction
    with raw.cursor() as cur:
        cur.execute("SELECT to_regclass('pg_temp.recalc_results_coded') IS NULL")
        row = cur.fetchone()
        if row is not None and row[0]:
            _ask_temp_buffers(raw)
            kinds = ", ".join(f"{c} {'double precision' if sent[c].dtype.kind == 'f' else 'integer'}" for c in sent)
            cur.execute(f"CREATE TEMPORARY TABLE recalc_results_coded ({kinds}) ON COMMIT DELETE ROWS")
        bulk.copy_in(conn, "recalc_results_coded", sent)
        # Rows are locked in event order whatever the plan (the chunk is in event order, and so
        # is the key): two writers of overlapping events (two listeners recalculating one unit's
        # day) wait for each other rather than deadlock.
        every = {**{c: value[c] for c in RESULT_COLUMNS}, **run_values}
        cur.execute(
            "UPDATE recalc_results AS r SET "
            + ", ".join(f"{c} = {v}" for c, v in every.items() if c != "event_id")
            + " FROM recalc_results_coded AS i"
            " WHERE r.event_id = i.event_id AND r.event_id BETWEEN %(lo)s AND %(hi)s",
            params,
        )
        replaced = cur.rowcount
        if replaced == len(ids):
            # every event had a result: none to add (searching for them took 0.1 s per 100,000)
            return 0
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in every if c != "event_id")
        cur.execute(
            f"INSERT INTO recalc_results ({', '.join(every)}) SELECT {', '.join(every.values())} "
            "FROM recalc_results_coded AS i WHERE NOT EXISTS (SELECT 1 FROM recalc_results AS r "
            "WHERE r.event_id = i.event_id AND r.event_id BETWEEN %(lo)s AND %(hi)s) "
            # written by another writer since the UPDATE: replaced, as the UPDATE would have
            f"ORDER BY i.event_id ON CONFLICT (event_id) DO UPDATE SET {updates}",
            params,
        )
    return len(ids) - replaced


def _text_codes(column: np.ndarray | list | CodedColumn) -> tuple[np.ndarray, list[str]]:
    """A code per value of a text column (0: None; k: the k-th of the distinct values returned)."""
    if not isinstance(column, CodedColumn):
        column = CodedColumn.of(column.tolist() if isinstance(column, np.ndarray) else column)
    codes, distinct = column.distinct()
    names = [v for v in distinct if v is not None]
    code_of = {v: k for k, v in enumerate(names, start=1)}
    renumber = np.array([code_of.get(v, 0) for v in distinct], dtype=np.int64)
    return (renumber[codes] if len(distinct) else codes), names


def _ask_temp_buffers(raw) -> None:
    """Ask for :data:`TEMP_BUFFERS` of local buffers, before this session's first temporary
    table. A session that has used one already keeps the size it has (PostgreSQL refuses the
    change then): the writing is slower, not wrong."""
    import psycopg

    try:
        with raw.transaction():  # a savepoint: a refusal leaves the transaction usable
            raw.execute(f"SET temp_buffers = '{TEMP_BUFFERS}'")
    except psycopg.errors.InvalidParameterValue:
        pass


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
