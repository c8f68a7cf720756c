"""A recalculation reads its inputs and writes its results in columns, a range of events at a
time (SQLite and PostgreSQL): the same results as one pass, NULL kept apart from NaN and from an
empty text, and text that CSV must quote (PostgreSQL's COPY) read back as it was stored."""

import math

import numpy as np
import psycopg
import pytest
from sqlalchemy import ARRAY, Float, Integer, func, literal, select, update

from srdose import compat
from srdose.columns import CodedColumn
from srdose.physics.factors import load_bundled
from srdose.recalc import Params, run
from srdose.recalc.physicsfile import parse
from srdose.recalc.run import default_jobs
from srdose.store import bulk
from srdose.store import models as M
from srdose.store import recalc as db
from srdose.store.database import DoseStore
from tests.conftest import SAMPLE_DATA, add_sample_rdsrs


@pytest.fixture
def store(db_url, pseudonymiser):
    """Every vendor flavour of sample_data/ (2D, DBT with its projections, combos), and the
    example physics data of its Hologic unit (the measured method; the others the rdsr method)."""
    st = DoseStore(db_url, pseudonymiser)
    add_sample_rdsrs(st)
    db.add_physics_set(st, parse(SAMPLE_DATA / "physics" / "example_synthetic_hologic_unit0.csv"))
    yield st
    st.close()


def _results(store) -> list[dict]:
    R = M.RecalcResult
    cols = [c for c in R.__table__.columns if c.name != "computed_at"]
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(*cols).order_by(R.event_id))]


def test_ranges_give_the_results_of_one_pass(store):
    fs = load_bundled()
    whole = run(store, fs, Params(), chunk_ids=10**9)
    one_pass = _results(store)
    n = whole.computed
    assert n == whole.selected == len(one_pass) > 40
    methods = {r["method"] for r in one_pass}
    assert methods == {"measured", "rdsr"}
    assert any(r["t_factor"] is not None for r in one_pass)  # DBT events, weighted by projection
    # the Hologic unit's events carry its physics set; the others none: NULL, not -1
    (hologic,) = db.physics_sets(store)
    assert {r["physics_set_id"] for r in one_pass} == {hologic["id"], None}

    plans, ticks = [], []
    again = run(store, fs, Params(), force=True, chunk_ids=7, on_plan=plans.append, progress=ticks.append)
    assert again.computed == n and again.no_mgd == whole.no_mgd and again.flags == whole.flags
    assert again.methods == whole.methods
    assert _results(store) == one_pass  # to the last bit
    assert plans == [n, n] and sum(ticks) == n and len(ticks) == math.ceil(n / 7)

    current = run(store, fs, Params(), chunk_ids=7)
    assert current.computed == 0 and current.up_to_date == n


def test_null_stays_null_and_text_reads_back_as_stored(store):
    """No MGD is NULL, never NaN; a reference point with a comma, a quote and a line break, and an
    empty one, come back from the database exactly (PostgreSQL: through CSV)."""
    E = M.Event
    with store.engine.connect() as conn:
        first, second, third = conn.execute(select(E.id).order_by(E.id).limit(3)).scalars()
    odd = 'At "surface", 20 mm\nabove; \\N'
    with store.begin() as conn:
        conn.execute(update(E).where(E.id == first).values(reference_point=odd))
        conn.execute(update(E).where(E.id == second).values(reference_point=""))
        conn.execute(update(E).where(E.id == third).values(reference_point=None))
    inputs = db.recalc_inputs(store)
    ref = dict(zip(inputs["event_id"].tolist(), inputs["reference_point"]))
    assert ref[first] == odd and ref[second] == "" and ref[third] is None

    summary = run(store, load_bundled(), Params(), chunk_ids=5)
    rows = _results(store)
    assert summary.no_mgd == sum(r["mgd_recalc_mgy"] is None for r in rows) > 0
    for r in rows:
        for name in ("mgd_recalc_mgy", "mgd_u_mgy", "k_mgy", "hvl_used_mm", "g", "c", "s", "t_factor"):
            assert r[name] is None or math.isfinite(r[name])
        assert (r["hvl_source"] is None) == (r["hvl_used_mm"] is None)


def test_worker_processes_give_the_results_of_one_process(store):
    """Ranges read and computed by worker processes while this one writes: every stored result
    and every count as when one process does it all, replacing results or adding them."""
    fs = load_bundled()
    alone = run(store, fs, Params(), chunk_ids=7, jobs=1)
    expected = _results(store)
    total, ranges = db.event_id_ranges(store, 7)
    assert store.shared and len(ranges) > 4  # the workers' path, not the one-process fallback

    ticks: list[int] = []
    shared = run(store, fs, Params(), force=True, chunk_ids=7, jobs=2, progress=ticks.append)
    assert (shared.selected, shared.computed, shared.no_mgd) == (alone.selected, alone.computed, alone.no_mgd)
    assert shared.methods == alone.methods and shared.flags == alone.flags
    assert _results(store) == expected and sum(ticks) == total

    with store.begin() as conn:  # from no results at all
        conn.execute(M.RecalcResult.__table__.delete())
    fresh = run(store, fs, Params(), chunk_ids=7, jobs=2)
    assert fresh.computed == alone.computed and _results(store) == expected
    assert run(store, fs, Params(), chunk_ids=7, jobs=2).computed == 0  # nothing changed


def test_a_database_in_memory_is_recalculated_in_this_process(pseudonymiser):
    """Another process cannot see a database in memory: asked for workers, the run does it here."""
    st = DoseStore("sqlite://", pseudonymiser)
    add_sample_rdsrs(st)
    assert not st.shared
    summary = run(st, load_bundled(), Params(), chunk_ids=7, jobs=2)
    assert summary.computed == summary.selected == len(_results(st)) > 40
    st.close()


def test_writing_results_counts_the_events_that_had_none(store):
    """What a write adds, for the planner's statistics: every event the first time, none when
    the same results are written again (replaced in place), the new ones among replaced ones."""
    fs = load_bundled()
    fs_id = db.register_factor_set(store, fs)
    inputs = db.recalc_inputs(store)
    n = len(inputs["event_id"])
    base = {
        "event_id": inputs["event_id"],
        "method": ["rdsr"] * n,
        "physics_set_id": np.full(n, -1, dtype=np.int64),
        "hvl_source": [None] * n,
        "flags": ["a,b"] * (n - 1) + [None],
    }
    results = base | {c: np.full(n, np.nan) for c in db.RESULT_COLUMNS if c not in base}
    results["mgd_recalc_mgy"] = np.linspace(0.5, 3.0, n)
    half = {c: v[: n // 2] for c, v in results.items()}
    assert db.write_recalc_results(store, half, fs.label, fs_id, "p", chunk=5) == n // 2
    assert db.write_recalc_results(store, results, fs.label, fs_id, "p", chunk=5) == n - n // 2
    assert db.write_recalc_results(store, results, fs.label, fs_id, "p", chunk=5) == 0
    rows = _results(store)
    assert [r["mgd_recalc_mgy"] for r in rows] == results["mgd_recalc_mgy"].tolist()
    assert {r["physics_set_id"] for r in rows} == {None} and {r["g"] for r in rows} == {None}
    assert [r["flags"] for r in rows] == results["flags"] and {r["hvl_source"] for r in rows} == {None}


def test_binary_copy_carries_every_bit(store):
    """PostgreSQL's binary COPY of numpy columns: integers and doubles arrive exactly (NaN, a
    negative zero, the extremes of a double); a value that does not fit an integer, or a column
    that is not numbers, is refused before anything is sent."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("binary COPY is PostgreSQL's")
    ids = np.array([1, -1, 2**31 - 1, -(2**31)], dtype=np.int64)
    values = np.array([math.pi, float("nan"), -0.0, np.finfo(float).max])
    with store.begin() as conn:
        conn.exec_driver_sql("CREATE TEMPORARY TABLE copied (k integer, v double precision) ON COMMIT DROP")
        bulk.copy_in(conn, "copied", {"k": ids, "v": values})
        rows = conn.exec_driver_sql("SELECT k, v FROM copied").all()
        assert [r.k for r in rows] == ids.tolist()
        got = np.array([r.v for r in rows])
        assert got.tobytes() == values.tobytes()  # bit for bit, the NaN and the sign of zero too
        with pytest.raises(OverflowError, match="integer"):
            bulk.copy_in(conn, "copied", {"k": np.array([2**31]), "v": np.zeros(1)})
        with pytest.raises(TypeError, match="integer or float"):
            bulk.copy_in(conn, "copied", {"k": np.array(["1"]), "v": np.zeros(1)})


def test_binary_copy_reads_every_bit(store):
    """PostgreSQL's binary COPY into numpy: doubles arrive exactly (NaN, infinities, a negative
    zero, the extremes and a subnormal), with integers as doubles; a NULL, a column of another
    type, or a width other than the one asked for is refused, not read as something else."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("binary COPY is PostgreSQL's")
    values = np.array([math.pi, float("nan"), float("inf"), -float("inf"), -0.0, np.finfo(float).max, 5e-324])
    numbers = select(
        func.unnest(literal(values.tolist(), ARRAY(Float(53)))),
        func.unnest(literal([1, 2, 3, 4, 5, 6, 7], ARRAY(Float(53)))),
    )
    with store.reading() as conn:
        got = bulk.copy_floats(conn, numbers, 2)
        assert got[:, 0].tobytes() == values.tobytes() and got[:, 1].tolist() == [1, 2, 3, 4, 5, 6, 7]
        assert bulk.copy_floats(conn, numbers.where(literal(False)), 2).shape == (0, 2)
        with pytest.raises(psycopg.DatabaseError, match="not 2 numbers"):
            bulk.copy_floats(conn, select(literal(None, Float(53)), literal(1.0)), 2)
    with store.reading() as conn, pytest.raises(psycopg.DatabaseError, match="not 2 numbers"):
        bulk.copy_floats(conn, select(literal(1.0), literal(2, Integer)), 2)  # an integer is 4 bytes
    with store.reading() as conn, pytest.raises(psycopg.DatabaseError, match="not 2 numbers"):
        bulk.copy_floats(conn, select(literal(1.0)), 2)


def _reference_inputs(store, ids: tuple[int, int] | None = None) -> dict[int, tuple]:
    """Each live event's texts and numbers as the ORM reads them, one row at a time: the
    reference the bulk readers are checked against."""
    E, S, St, R = M.Event, M.SourceObject, M.Study, M.RecalcResult
    q = (
        select(E.id, E.study_date, E.acquisition, E.anode, E.filter_material, E.reference_point, R.params_hash)
        .add_columns(E.kvp, E.mas, E.compressed_thickness_mm, St.age_years, R.physics_set_id)
        .join(S, E.source_object_id == S.id)
        .join(St, E.study_id == St.id)
        .outerjoin(R, R.event_id == E.id)
        .where(S.superseded_by.is_(None))
        .order_by(E.id)
    )
    if ids:
        q = q.where(E.id.between(*ids))
    with store.engine.connect() as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(q)}


def _nan_none(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


@pytest.mark.parametrize("with_results", [True, False])
def test_inputs_coded_or_listed_are_the_events_as_stored(store, with_results):
    """A range's inputs, read in bulk as lists or as coded texts (PostgreSQL: numbers by binary
    COPY, texts by CSV, matched by id), are each live event's values as stored: in event
    order, a superseded report's events left out, a text with a comma, a quote and a line
    break, an empty one and a NULL kept apart."""
    run(store, load_bundled(), Params(), chunk_ids=10**9)  # results to read back
    E, S = M.Event, M.SourceObject
    with store.engine.connect() as conn:
        events = conn.execute(select(E.id, E.source_object_id).order_by(E.id)).all()
    odd = 'At "surface", 20 mm\nabove; \\N'
    with store.begin() as conn:
        conn.execute(update(E).where(E.id == events[3].id).values(reference_point=odd))
        conn.execute(update(E).where(E.id == events[4].id).values(reference_point=""))
        conn.execute(update(E).where(E.id == events[5].id).values(reference_point=None, study_date=None))
        later = events[-1].source_object_id
        edited = {e.source_object_id for e in events[3:6]}
        gone = next(e.source_object_id for e in events[6:] if e.source_object_id not in edited | {later})
        conn.execute(update(S).where(S.id == gone).values(superseded_by=later))
    ids = (events[2].id, events[-3].id)
    expected = _reference_inputs(store, ids)
    assert {e.id for e in events if e.source_object_id == gone} & set(expected) == set()

    listed = db.recalc_inputs(store, ids=ids, with_results=with_results)
    coded = db.recalc_inputs(store, ids=ids, with_results=with_results, coded=True)
    assert listed["event_id"].tolist() == sorted(expected) == coded["event_id"].tolist()
    for name in ("study_date", "acquisition", "anode", "filter_material", "reference_point", "r_params"):
        assert isinstance(coded[name], CodedColumn) and coded[name].tolist() == listed[name]
    for name in ("manufacturer", "model", "serial"):
        assert coded[name].tolist() == listed[name]
    texts = [(d, a, an, f, rp) for d, a, an, f, rp, *_ in expected.values()]
    assert (
        list(zip(*(listed[n] for n in ("study_date", "acquisition", "anode", "filter_material", "reference_point"))))
        == texts
    )
    assert listed["reference_point"].count(odd) == 1 and "" in listed["reference_point"]
    params = [p for *_, p, _, _, _, _, _ in expected.values()]
    assert listed["r_params"] == (params if with_results else [None] * len(params))
    numbers = [tuple(map(_nan_none, v[6:10])) for v in expected.values()]
    got = zip(*(listed[n].tolist() for n in ("kvp", "mas", "compressed_thickness_mm", "age_years")))
    assert [tuple(map(_nan_none, g)) for g in got] == numbers
    sets = [-1 if v[10] is None or not with_results else v[10] for v in expected.values()]
    assert listed["r_physics_set_id"].tolist() == sets
    assert listed["has_result"].tolist() == [with_results] * len(expected)


def test_coded_column():
    """A text column as codes: equal texts get one code even when listed twice, NULL is a text
    of its own, and taking rows, slicing and comparing keep each row's text."""
    column = CodedColumn(np.array([0, 1, 2, 3, 1, 0]), ["Mo", "Rh", None, "Mo"])
    assert column.tolist() == ["Mo", "Rh", None, "Mo", "Rh", "Mo"] and len(column) == 6
    codes, values = column.distinct()
    assert values == ["Mo", "Rh", None] and codes.tolist() == [0, 1, 2, 0, 1, 0]
    assert column.equals("Mo").tolist() == [True, False, False, True, False, True]
    assert column[np.array([5, 2])].tolist() == ["Mo", None] and column[1:3].tolist() == ["Rh", None]
    listed = ["W", None, "", "W"]
    assert CodedColumn.of(listed).tolist() == listed and CodedColumn.of(listed).values == ["W", None, ""]
    empty = CodedColumn.of([])
    assert empty.tolist() == [] and empty.distinct()[1] == [] and empty.equals("W").tolist() == []


def test_a_session_that_used_temporary_tables_keeps_writing(store):
    """PostgreSQL refuses a larger local buffer pool once a session has used a temporary table:
    the writer then keeps the size it has, and its transaction goes on."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's local buffers")
    with store.begin() as conn:
        raw = conn.connection.driver_connection
        conn.exec_driver_sql("CREATE TEMPORARY TABLE earlier (k integer) ON COMMIT DROP")
        conn.exec_driver_sql("INSERT INTO earlier VALUES (1)")
        before = conn.exec_driver_sql("SHOW temp_buffers").scalar_one()
        db._ask_temp_buffers(raw)
        assert conn.exec_driver_sql("SHOW temp_buffers").scalar_one() == before != db.TEMP_BUFFERS
        assert conn.exec_driver_sql("SELECT k FROM earlier").scalar_one() == 1
    fs = load_bundled()
    summary = run(store, fs, Params(), chunk_ids=7)
    assert summary.computed == summary.selected == len(_results(store)) > 40


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_run_finds_the_one_result_out_of_date(store, jobs):
    """Ranges whose results are all current are passed over on what decides them; the one event
    whose result is missing, in the last range, is found and recomputed, with its old values."""
    fs = load_bundled()
    first = run(store, fs, Params(), chunk_ids=7)
    before = _results(store)
    last = before[-1]["event_id"]
    R = M.RecalcResult
    with store.begin() as conn:
        conn.execute(R.__table__.delete().where(R.event_id == last))
    again = run(store, fs, Params(), chunk_ids=7, jobs=jobs)
    assert (again.computed, again.up_to_date, again.selected) == (1, first.computed - 1, first.computed)
    assert _results(store) == before


def test_workers_by_default_on_sqlite_only(store):
    """Unless told, a run uses a worker per core on SQLite and none on PostgreSQL, where two
    workers on two cores made it slower (the server's own processes work there)."""
    expected = 1 if store.engine.dialect.name == "postgresql" else compat.cores()
    assert default_jobs(store) == expected
