"""A recalculation reads its inputs and writes its results in columns, a range of events at a
time (SQLite and PostgreSQL): the same results as one pass, NULL kept apart from NaN and from an
empty text, and text that CSV must quote (PostgreSQL's COPY) read back as it was stored."""

import math

import numpy as np
import pytest
from sqlalchemy import select, update

from srdose import compat
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
