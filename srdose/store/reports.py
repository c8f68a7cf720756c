"""Database side of the reports (``srdose report``): the only SQL they need.

:func:`report_events` returns the live irradiation events of a period as
columns (numpy arrays), streamed in chunks so that 400,000 events stay well
inside a gigabyte: numbers as float arrays (NaN missing), texts as object
arrays whose equal values share one string, and the woman as an integer code.
Patient pseudonyms, accession pseudonyms and UIDs never leave this module.

Which studies count as patients is decided in one place,
:func:`_not_patient_expr`: the ``not_patient`` study marker (information
governance) reaches every report as the boolean column
``not_patient``, which the reports exclude and count.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import false, func, null, select

from srdose.store import bulk
from srdose.store import models as M
from srdose.store.bulk import raw_chunks
from srdose.store.database import REPORT_WORK_MEM, dt_seconds

#: Float columns of :func:`report_events` (NaN = missing).
NUMERIC = (
    "age_years",
    "kvp",
    "mas",
    "exposure_time_ms",
    "filter_thickness_mm",
    "compressed_thickness_mm",
    "compression_force_n",
    "hvl_mm",
    "entrance_exposure_mgy",
    "agd_mgy",
    "mgd_recalc_mgy",
    "ratio_recalc_to_reported",
    "mgd_u_mgy",
)
#: Text columns (object arrays of str or None).
TEXT = (
    "study_date",
    "acquisition",
    "event_type",
    "protocol",
    "label",
    "view",
    "view_modifiers",
    "laterality",
    "anode",
    "filter_material",
    "flags",
    "method",
    "recalc_flags",
)


def _not_patient_expr():
    """True for a study that is not a patient's (QA, test, phantom): the ``not_patient`` study
    marker of srdose's curation, when the schema has it. The single place that
    decides it."""
    column = getattr(M.Study, "not_patient", None)
    return false() if column is None else func.coalesce(column, false())


def _patient_study(q):
    """Restrict an event query to live events (not superseded by a later RDSR)."""
    return q.where(M.SourceObject.superseded_by.is_(None))


def _day(text: str | None) -> str | None:
    return text.replace("-", "") if text else None


def period_units(store, since: str | None = None, until: str | None = None, serial: str | None = None) -> list[dict]:
    """Units with live events in the period: id, manufacturer, model, serial,
    station, events, first and last study date; ordered by manufacturer,
    model, serial."""
    E, S, St, D = M.Event, M.SourceObject, M.Study, M.Device
    q = (
        select(
            D.id,
            D.manufacturer,
            D.model,
            D.serial,
            D.station,
            func.count(E.id).label("events"),
            func.min(St.study_date).label("first"),
            func.max(St.study_date).label("last"),
        )
        .join(E, E.device_id == D.id)
        .join(S, E.source_object_id == S.id)
        .join(St, E.study_id == St.id)
        .group_by(D.id, D.manufacturer, D.model, D.serial, D.station)
        .order_by(D.manufacturer, D.model, D.serial, D.id)
    )
    q = _patient_study(q)
    if since:
        q = q.where(St.study_date >= _day(since))
    if until:
        q = q.where(St.study_date <= _day(until))
    if serial:
        q = q.where(D.serial == serial)
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def unit_event_counts(
    store, since: str | None = None, until: str | None = None, serial: str | None = None
) -> list[dict]:
    """Units with events in the period as :func:`period_units` lists them (without first and last
    dates), ``events`` counting superseded events too: an upper bound, from the events alone (they
    carry their study's date), without the joins that make period_units' exact count cost seconds
    at ten million events."""
    E, D = M.Event, M.Device
    counts = select(E.device_id, func.count().label("events")).group_by(E.device_id)
    if since:
        counts = counts.where(E.study_date >= _day(since))
    if until:
        counts = counts.where(E.study_date <= _day(until))
    c = counts.subquery()
    q = (
        select(D.id, D.manufacturer, D.model, D.serial, D.station, c.c.events)
        .join(c, c.c.device_id == D.id)
        .order_by(D.manufacturer, D.model, D.serial, D.id)
    )
    if serial:
        q = q.where(D.serial == serial)
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def known_serials(store) -> list[str]:
    with store.engine.connect() as conn:
        return sorted(set(conn.execute(select(M.Device.serial)).scalars()))


def _types(names: list[str]) -> list[pa.DataType]:
    """The Arrow types of :func:`report_events`' columns ``names``."""
    known = {"id": pa.int64(), "study_id": pa.int64(), "device_id": pa.int64(), "not_patient": pa.bool_()}
    return [known.get(n, pa.float64() if n in NUMERIC else pa.string()) for n in names]


def _coded(column: pa.ChunkedArray, lookup: dict, none: bool = False) -> np.ndarray:
    """A text column as codes into ``lookup`` (value -> code, extended in order of first
    appearance): -1 for NULL, or with ``none`` NULL coded as the value None."""
    encoded = column.combine_chunks().dictionary_encode()
    codes = [lookup.setdefault(v, len(lookup)) for v in encoded.dictionary.to_pylist()]
    codes.append(lookup.setdefault(None, len(lookup)) if none else -1)  # NULL: the slot after the values
    index = encoded.indices.fill_null(len(codes) - 1).to_numpy(zero_copy_only=False)
    return np.array(codes, dtype=np.int64)[index]


def _order(E, St) -> tuple:
    """The reports' order of events: by unit, study date and time, study, start time, event (what
    is unknown last, on either engine)."""
    return (
        E.device_id,
        St.study_date.asc().nulls_last(),
        St.study_time.asc().nulls_last(),
        St.id,
        E.datetime_started.asc().nulls_last(),
        E.id,
    )


def _decoded(lookup: dict, codes: np.ndarray) -> np.ndarray:
    """Codes into ``lookup`` (value -> code) as an object array of the values: equal texts are
    one string object."""
    if not codes.size:
        return np.empty(0, dtype=object)
    values = np.empty(len(lookup), dtype=object)
    for value, code in lookup.items():
        values[code] = value
    return values[codes]


def _events_query(since, until, device_ids, skip: set[str], ordered: bool = True, extra: tuple = (), woman=None):
    """The SELECT of :func:`report_events` (the columns in ``skip`` as NULL), with the columns
    ``extra`` after its own and ``woman`` read in place of the patient pseudonym; returns (query,
    column names)."""
    E, S, St, R = M.Event, M.SourceObject, M.Study, M.RecalcResult
    cols = [
        E.id,
        E.study_id,
        E.device_id,
        St.patient_pseudonym if woman is None else woman,
        E.datetime_started,
        _not_patient_expr().label("not_patient"),
        St.age_years,
        E.kvp,
        E.mas,
        E.exposure_time_ms,
        E.filter_thickness_mm,
        E.compressed_thickness_mm,
        E.compression_force_n,
        E.hvl_mm,
        E.entrance_exposure_mgy,
        E.agd_mgy,
        R.mgd_recalc_mgy,
        R.ratio_recalc_to_reported,
        R.mgd_u_mgy,
        St.study_date,
        E.acquisition,
        E.event_type,
        E.protocol,
        E.label,
        E.view,
        E.view_modifiers,
        E.laterality,
        E.anode,
        E.filter_material,
        E.flags,
        R.method,
        R.flags.label("recalc_flags"),
    ]
    names = ["id", "study_id", "device_id", "patient_pseudonym", "datetime_started", "not_patient", *NUMERIC, *TEXT]
    cols = [null().label(name) if name in skip else c for name, c in zip(names, cols)]
    q = (
        select(*cols, *extra)
        .join(S, E.source_object_id == S.id)
        .join(St, E.study_id == St.id)
        .outerjoin(R, R.event_id == E.id)
    )
    if ordered:
        q = q.order_by(*_order(E, St))
    q = _patient_study(q)
    if since:
        q = q.where(St.study_date >= _day(since))
    if until:
        q = q.where(St.study_date <= _day(until))
    if device_ids is not None:
        q = q.where(E.device_id.in_(list(device_ids)))
    return q, [*names, *(c.name for c in extra)]


def report_events(
    store,
    since: str | None = None,
    until: str | None = None,
    device_ids: Iterable[int] | None = None,
    chunk: int = 20000,
    times: bool = True,
    skip: Iterable[str] = (),
    ordered: bool = True,
) -> dict:
    """Live events of the period as columns, ordered by unit, study and start time (in no
    particular order without ``ordered``: the database then need not sort them all).

    Returns
    -------
    dict
        ``event_id``, ``study_id``, ``device_id``, ``woman`` (int64; ``woman``
        numbers the distinct patient pseudonyms in order of appearance, -1
        none), ``t_start`` (float seconds, see :func:`srdose.store.database.dt_seconds`; NaN for every
        event with ``times=False``, which saves parsing them), ``not_patient``
        (bool), the :data:`NUMERIC` columns (float, NaN
        missing) and the :data:`TEXT` columns (object arrays). ``n`` is the
        number of events. Columns named in ``skip`` are not read: all NaN /
        None, as read-only views that take no memory (ten million events'
        unused columns would take gigabytes); faster on large periods.
        ``patient_pseudonym`` skipped makes ``woman`` -1 throughout, and
        ``times=False`` ``t_start`` NaN, both as such views.
    """
    skip = set(skip)
    if not times:
        skip.add("datetime_started")
    q, names = _events_query(since, until, device_ids, skip, ordered=ordered)
    n_num = len(NUMERIC)
    ints: list[list] = [[], [], []]
    women: list[np.ndarray] = []
    starts: list[np.ndarray] = []
    notp: list[np.ndarray] = []
    nums: list[list[np.ndarray]] = [[] for _ in NUMERIC]
    texts: list[list[np.ndarray]] = [[] for _ in TEXT]
    lookups: list[dict] = [{} for _ in TEXT]
    wlookup: dict = {}
    read_women = "patient_pseudonym" not in skip
    with store.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # C, a piece at a time; the sort and the joins in memory where they fit
            for piece in bulk.copy_out(conn, q, _types(names), work_mem=REPORT_WORK_MEM):
                for k in range(3):
                    ints[k].append(piece.column(k).fill_null(-1).to_numpy())
                if read_women:
                    women.append(_coded(piece.column(3), wlookup))
                if times:
                    starts.append(
                        np.fromiter(map(dt_seconds, piece.column(4).to_pylist()), dtype=float, count=piece.num_rows)
                    )
                notp.append(piece.column(5).fill_null(False).to_numpy(zero_copy_only=False))
                for k in range(n_num):
                    if NUMERIC[k] not in skip:
                        nums[k].append(piece.column(6 + k).to_numpy(zero_copy_only=False))
                for k in range(len(TEXT)):
                    if TEXT[k] not in skip:
                        texts[k].append(_coded(piece.column(6 + n_num + k), lookups[k], none=True).astype(np.int32))
        else:
            for part in raw_chunks(conn, q, chunk):
                c = list(zip(*part))
                for k in range(3):
                    ints[k].append(np.array([-1 if v is None else v for v in c[k]], dtype=np.int64))
                if read_women:
                    women.append(
                        np.fromiter(
                            (-1 if v is None else wlookup.setdefault(v, len(wlookup)) for v in c[3]),
                            dtype=np.int64,
                            count=len(part),
                        )
                    )
                if times:
                    starts.append(np.fromiter((dt_seconds(v) for v in c[4]), dtype=float, count=len(part)))
                notp.append(np.array([bool(v) for v in c[5]], dtype=bool))
                for k in range(n_num):
                    if NUMERIC[k] not in skip:
                        nums[k].append(np.array(c[6 + k], dtype=float))
                for k in range(len(TEXT)):
                    if TEXT[k] in skip:
                        continue
                    look, column = lookups[k], c[6 + n_num + k]
                    for value in set(column).difference(look):  # new categories, at C speed
                        look[value] = len(look)
                    texts[k].append(np.fromiter(map(look.__getitem__, column), dtype=np.int32, count=len(part)))
    del wlookup  # the pseudonyms go no further

    def cat(parts: list, dtype) -> np.ndarray:
        # the pieces let go as soon as they are joined: ten million events' columns are not held twice
        joined = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
        parts.clear()
        return joined

    out: dict = {"event_id": cat(ints[0], np.int64), "study_id": cat(ints[1], np.int64)}
    out["device_id"] = cat(ints[2], np.int64)
    n = out["event_id"].size
    # what was not read takes no memory: read-only views
    out["woman"] = np.broadcast_to(np.int64(-1), n) if "patient_pseudonym" in skip else cat(women, np.int64)
    out["t_start"] = cat(starts, float) if times else np.broadcast_to(np.nan, n)
    out["not_patient"] = cat(notp, bool)
    n = out["event_id"].size
    for k, name in enumerate(NUMERIC):
        out[name] = np.broadcast_to(np.nan, n) if name in skip else cat(nums[k], float)
    for k, name in enumerate(TEXT):
        if name in skip:
            out[name] = np.broadcast_to(np.array(None, dtype=object), n)
            continue
        out[name] = _decoded(lookups[k], cat(texts[k], np.int32))
    out["n"] = int(out["event_id"].size)
    bulk.release_unused()  # the pieces' buffers, freed as their columns were joined
    return out


def subset(cols: dict, mask: np.ndarray) -> dict:
    """The rows of :func:`report_events` output selected by a boolean mask or index array (the
    columns not read stay views that take no memory)."""
    n = int(cols["event_id"][mask].size)

    def rows(v):
        if not isinstance(v, np.ndarray):
            return v
        if v.ndim == 1 and v.size and v.strides[0] == 0:
            return np.broadcast_to(v[:1], n)
        return v[mask]

    out = {k: rows(v) for k, v in cols.items()}
    out["n"] = n
    return out


#: The woman key of an event whose study has no pseudonym, in a batch's temporary file.
_NO_WOMAN = np.iinfo(np.int64).min


def report_event_batches(
    store,
    since: str | None,
    until: str | None,
    batches: list[list[int]],
    times: bool = True,
    skip: Iterable[str] = (),
    progress=None,
) -> Iterator[dict]:
    """The live events of the period of each batch of units (lists of device ids, no unit in two),
    batch after batch, each as :func:`report_events` returns them in its order.

    The database is read once, without a sort: each piece's rows go as columns (numbers, and texts
    as codes) to a temporary file of their batch, and each batch is sorted here when it is
    returned. A query per batch would join every study and recalculation result of the period
    again for each batch (at ten million events, 15 s a batch), and sorting all the events at
    once needs them all in memory. ``woman`` numbers the distinct patients within the batch; on
    PostgreSQL it is read as a 64-bit hash of the pseudonym (two pseudonyms of the same hash, about
    one chance in 10¹² at a million women, would count as one woman), so that no pseudonym leaves
    the database and none is kept in memory. The temporary files, in a directory only this
    user can open, hold no text but start times, and go when the generator ends.
    ``progress(events)`` is called as the events are read.
    """
    skip = set(skip)
    batch_of = {d: k for k, ids in enumerate(batches) for d in ids}
    if len(batch_of) < sum(map(len, batches)):
        raise ValueError("a unit is in more than one batch")
    if not batch_of:
        return
    devices = np.array(sorted(batch_of), dtype=np.int64)
    which = np.array([batch_of[d] for d in devices.tolist()], dtype=np.int64)
    pg = store.engine.dialect.name == "postgresql"
    read_women = "patient_pseudonym" not in skip
    woman = (
        func.hashtextextended(M.Study.patient_pseudonym, 0).label("patient_pseudonym") if pg and read_women else None
    )
    q, names = _events_query(
        since,
        until,
        devices.tolist(),
        skip,
        ordered=False,
        extra=(M.Study.study_date.label("order_date"), M.Study.study_time.label("order_time")),
        woman=woman,
    )
    types = _types(names)
    types[3] = pa.int64() if woman is not None else pa.string()
    lookups: dict[str, dict] = {name: {} for name in (*TEXT, "order_date", "order_time") if name not in skip}
    wlookup: dict = {}
    coding = threading.Lock()  # the codes of texts are shared by the parts read at once
    read = [0]
    parts = _id_ranges(store, READ_PARTS if pg else 1)

    def spill(lo: int, hi: int, paths: list[Path]) -> None:
        """The events of ids lo to hi (excluded) into this part's file of each batch."""
        E = M.Event
        writers: list = [None] * len(batches)
        try:
            with store.engine.connect() as conn:
                query = q.where(E.id >= lo, E.id < hi) if len(parts) > 1 else q
                for make in bulk.read_pieces(conn, query, types, work_mem=REPORT_WORK_MEM):
                    piece = make()
                    with coding:
                        columns = _spill_columns(
                            piece, names, skip, lookups, wlookup if read_women and not pg else None
                        )
                    batch = which[np.searchsorted(devices, columns["device_id"])]
                    for k in np.unique(batch).tolist():
                        rows = np.flatnonzero(batch == k)
                        chunk = pa.record_batch(
                            [
                                v.take(pa.array(rows)) if isinstance(v, pa.Array) else pa.array(v[rows])
                                for v in columns.values()
                            ],
                            names=list(columns),
                        )
                        if writers[k] is None:
                            writers[k] = pa.ipc.new_file(str(paths[k]), chunk.schema)
                        writers[k].write_batch(chunk)
                    with coding:
                        read[0] += piece.num_rows
                        if progress:
                            progress(read[0])
        finally:
            for w in writers:
                if w is not None:
                    w.close()

    with tempfile.TemporaryDirectory(prefix="srdose-report-") as tmp:
        paths = [[Path(tmp) / f"batch{k}-part{j}.arrow" for k in range(len(batches))] for j in range(len(parts))]
        with ThreadPoolExecutor(len(parts), thread_name_prefix="srdose-read") as pool:
            for done in [pool.submit(spill, lo, hi, paths[j]) for j, (lo, hi) in enumerate(parts)]:
                done.result()  # the first error, once every part has ended
        wlookup.clear()  # the pseudonyms go no further
        bulk.release_unused()
        for k in range(len(batches)):
            files = [part[k] for part in paths if part[k].exists()]
            if not files:
                yield _batch_columns(None, skip, lookups, times)
                continue
            with ExitStack() as stack:
                tables = [pa.ipc.open_file(stack.enter_context(pa.memory_map(str(f)))).read_all() for f in files]
                cols = _batch_columns(pa.concat_tables(tables), skip, lookups, times)
                del tables
            for f in files:
                f.unlink()  # its pages let go before the batch is used
            yield cols
            del cols


#: Parts of the events read at once (PostgreSQL: a server process and a thread of this one each):
#: the server's joins and its CSV are most of a report's read, and take one core each.
READ_PARTS = 2


def _id_ranges(store, parts: int) -> list[tuple[int, int]]:
    """``parts`` ranges [lo, hi) of event ids of about as many events each (ids taken as even)."""
    if parts <= 1:
        return [(0, 0)]
    E = M.Event
    with store.engine.connect() as conn:
        lo, hi = conn.execute(select(func.min(E.id), func.max(E.id))).one()
    if lo is None:
        return [(0, 0)]
    edges = np.linspace(lo, hi + 1, parts + 1).astype(np.int64).tolist()
    return list(zip(edges[:-1], edges[1:]))


def _spill_columns(piece: pa.Table, names: list[str], skip: set[str], lookups: dict, wlookup: dict | None) -> dict:
    """One piece of :func:`report_event_batches`' query as the columns written to a batch's file."""
    col = dict(zip(names, piece.columns))
    out: dict = {
        "event_id": col["id"].fill_null(-1).to_numpy(),
        "study_id": col["study_id"].fill_null(-1).to_numpy(),
        "device_id": col["device_id"].fill_null(-1).to_numpy(),
    }
    if "patient_pseudonym" not in skip:
        pseudonym = col["patient_pseudonym"]
        if wlookup is None:  # a hash (PostgreSQL)
            out["woman"] = pseudonym.fill_null(_NO_WOMAN).to_numpy()
        else:
            out["woman"] = _coded(pseudonym, wlookup)
            out["woman"][out["woman"] < 0] = _NO_WOMAN
    out["not_patient"] = col["not_patient"].fill_null(False).to_numpy(zero_copy_only=False)
    out["datetime_started"] = col["datetime_started"].combine_chunks()
    for name in NUMERIC:
        if name not in skip:
            out[name] = col[name].to_numpy(zero_copy_only=False)
    for name, lookup in lookups.items():
        out[name] = _coded(col[name], lookup, none=True).astype(np.int32)
    return out


def _ranks(lookup: dict) -> np.ndarray:
    """For each code of ``lookup`` (value -> code), its value's place in the database's ascending
    order, NULL (None) last. The values sorted are dates, times and texts of digits, which every
    collation orders as their characters."""
    values = sorted(lookup, key=lambda v: (v is None, v or ""))
    ranks = np.empty(len(lookup), dtype=np.int64)
    for place, value in enumerate(values):
        ranks[lookup[value]] = place
    return ranks


def _batch_columns(table: pa.Table | None, skip: set[str], lookups: dict, times: bool) -> dict:
    """A batch's file as :func:`report_events`' columns, in its order."""
    if table is None:
        n = 0
        get = None
    else:
        n = table.num_rows
        order = pc.sort_indices(
            pa.table(
                {
                    "device": table["device_id"],
                    "date": _ranks(lookups["order_date"])[table["order_date"].to_numpy()],
                    "time": _ranks(lookups["order_time"])[table["order_time"].to_numpy()],
                    "study": table["study_id"],
                    # NULL last, as the database orders it: the greatest character
                    "start": table["datetime_started"].fill_null("\U0010ffff"),
                    "event": table["event_id"],
                }
            ),
            sort_keys=[(k, "ascending") for k in ("device", "date", "time", "study", "start", "event")],
        ).to_numpy()
        source = table

        # each column put in order on its own (not a sorted copy of the whole table at once)
        def get(name: str) -> np.ndarray:
            return source.column(name).to_numpy()[order]

    def column(name: str, dtype) -> np.ndarray:
        return np.zeros(0, dtype=dtype) if get is None else get(name)

    out: dict = {
        "event_id": column("event_id", np.int64),
        "study_id": column("study_id", np.int64),
        "device_id": column("device_id", np.int64),
    }
    if "patient_pseudonym" in skip or get is None:
        out["woman"] = np.broadcast_to(np.int64(-1), n)
    else:
        # the distinct patients of this batch numbered 0, 1, ...; none -1
        key = get("woman")
        known = key != _NO_WOMAN
        out["woman"] = np.full(n, -1, dtype=np.int64)
        out["woman"][known] = np.unique(key[known], return_inverse=True)[1].reshape(-1)
    if times and "datetime_started" not in skip and get is not None:
        out["t_start"] = np.fromiter(map(dt_seconds, get("datetime_started")), dtype=float, count=n)
    else:
        out["t_start"] = np.broadcast_to(np.nan, n)
    out["not_patient"] = column("not_patient", bool)
    for name in NUMERIC:
        out[name] = np.broadcast_to(np.nan, n) if name in skip else column(name, float)
    for name in TEXT:
        if name in skip:
            out[name] = np.broadcast_to(np.array(None, dtype=object), n)
            continue
        out[name] = _decoded(lookups[name], column(name, np.int32))
    out["n"] = n
    return out
