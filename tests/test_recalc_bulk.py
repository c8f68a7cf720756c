"""A recalculation reads its inputs and writes its results in columns, a range of events at a
time (SQLite and PostgreSQL): the same results as one pass, NULL kept apart from NaN and from an
empty text, and text that CSV must quote (PostgreSQL's COPY) read back as it was stored."""

import math

import pytest
from sqlalchemy import select, update

from srdose.physics.factors import load_bundled
from srdose.recalc import Params, run
from srdose.recalc.physicsfile import parse
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
