"""report_events, the columns every report reads (SQLite: the driver's rows in chunks;
PostgreSQL: COPY parsed by pyarrow, in pieces), against the same rows read one by one through
SQLAlchemy: every value, NULL apart from an empty text, text that CSV must quote, the not-patient
marker, and women numbered in order of first appearance."""

import math

import numpy as np
import pytest
from sqlalchemy import func, select, update

from srdose.physics.factors import load_bundled
from srdose.recalc import Params, run
from srdose.report.drl import DRL_SKIP
from srdose.store import bulk, reports
from srdose.store import models as M
from srdose.store.database import DoseStore, dt_seconds
from tests.conftest import add_sample_rdsrs

ODD = 'MLO, "tomo"\nsecond line \\N'


@pytest.fixture
def store(db_url, pseudonymiser):
    st = DoseStore(db_url, pseudonymiser)
    add_sample_rdsrs(st)
    E, St = M.Event, M.Study
    with st.begin() as conn:
        first, second, third = conn.execute(select(E.id).order_by(E.id).limit(3)).scalars()
        conn.execute(update(E).where(E.id == first).values(protocol=ODD, label=""))
        conn.execute(update(E).where(E.id == second).values(protocol="", label=None))
        conn.execute(update(E).where(E.id == third).values(protocol=None, flags="infeasible:thickness;x"))
        study = conn.execute(select(E.study_id).where(E.id == first)).scalar_one()
        conn.execute(update(St).where(St.id == study).values(not_patient=True))
    run(st, load_bundled(), Params())  # results to read too: MGD, method and their flags
    yield st
    st.close()


def _one_by_one(store) -> dict[int, dict]:
    E, St, R = M.Event, M.Study, M.RecalcResult
    q = (
        select(
            *(c for c in E.__table__.columns if c.name != "study_date"),
            St.patient_pseudonym,
            St.not_patient,
            St.age_years,
            St.study_date,
            R.mgd_recalc_mgy,
            R.ratio_recalc_to_reported,
            R.mgd_u_mgy,
            R.method,
            R.flags.label("recalc_flags"),
        )
        .join(St, E.study_id == St.id)
        .outerjoin(R, R.event_id == E.id)
    )
    with store.engine.connect() as conn:
        return {r.id: dict(r._mapping) for r in conn.execute(q)}


def _same(a, b) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return b is None or (isinstance(b, float) and math.isnan(b))
    return a == b


@pytest.mark.parametrize("small", [False, True], ids=["one piece", "many pieces"])
def test_columns_are_the_rows(store, monkeypatch, small):
    if small:  # pieces of a few rows (PostgreSQL), chunks of seven (SQLite)
        monkeypatch.setattr(bulk, "PIECE_BYTES", 300)
    cols = reports.report_events(store, chunk=7 if small else 20000)
    rows = _one_by_one(store)
    n = cols["n"]
    assert n == len(rows) > 40
    assert cols["protocol"].tolist().count(ODD) == 1 and "" in cols["label"].tolist()
    assert np.isfinite(cols["mgd_recalc_mgy"]).sum() > 40 and None in cols["recalc_flags"].tolist()
    pseudonyms = []
    for i in range(n):
        row = rows[int(cols["event_id"][i])]
        assert cols["study_id"][i] == row["study_id"] and cols["device_id"][i] == row["device_id"]
        assert bool(cols["not_patient"][i]) == bool(row["not_patient"])
        assert _same(float(cols["t_start"][i]), dt_seconds(row["datetime_started"]))
        for name in reports.NUMERIC:
            assert _same(float(cols[name][i]), row[name]), name
        for name in reports.TEXT:
            assert cols[name][i] == row[name], name
        pseudonyms.append(row["patient_pseudonym"])
    # women: one code per pseudonym, numbered in order of first appearance
    first_seen = list(dict.fromkeys(pseudonyms))
    assert cols["woman"].tolist() == [first_seen.index(p) for p in pseudonyms]


def test_skipped_columns_are_left_unread(store):
    cols = reports.report_events(store, times=False, skip=DRL_SKIP)
    full = reports.report_events(store)
    assert cols["woman"].tolist() == [-1] * cols["n"]
    assert np.isnan(cols["t_start"]).all() and np.isnan(cols["kvp"]).all()
    assert set(cols["protocol"].tolist()) == {None}
    for name in ("agd_mgy", "compressed_thickness_mm"):
        assert np.array_equal(cols[name], full[name], equal_nan=True)
    for name in ("view", "acquisition", "flags"):
        assert cols[name].tolist() == full[name].tolist()
    # a subset keeps what was not read as views that take no memory, and picks the rows of the rest
    some = np.flatnonzero(full["event_id"] % 2 == 0)
    part = reports.subset(cols, np.isin(cols["event_id"], full["event_id"][some]))
    assert part["n"] == some.size > 0
    assert part["kvp"].strides == (0,) and part["protocol"].strides == (0,) and part["kvp"].size == some.size
    assert sorted(part["event_id"].tolist()) == sorted(full["event_id"][some].tolist())
    assert set(part["view"].tolist()) <= set(full["view"].tolist())


@pytest.mark.parametrize("small", [False, True], ids=["one piece", "many pieces"])
def test_batches_read_once_are_report_events_of_each_batch(store, monkeypatch, tmp_path, small):
    """report_event_batches reads the period once, unsorted, and sorts each batch itself: each batch
    is what report_events returns for its units, in its order (a start time NULL last, as the
    database sorts it), women numbered within the batch (a study without pseudonym: -1)."""
    if small:
        monkeypatch.setattr(bulk, "PIECE_BYTES", 300)
    E, St = M.Event, M.Study
    with store.begin() as conn:
        study = (
            conn.execute(select(E.study_id).group_by(E.study_id).having(func.count() > 2).order_by(E.study_id))
            .scalars()
            .first()
        )
        late = conn.execute(select(E.id).where(E.study_id == study).order_by(E.id)).scalars().first()
        conn.execute(update(E).where(E.id == late).values(datetime_started=None))
        other = conn.execute(select(St.id).where(St.id != study).order_by(St.id)).scalars().first()
        conn.execute(update(St).where(St.id == other).values(patient_pseudonym=None))
        devices = sorted(set(conn.execute(select(E.device_id)).scalars()))
    assert len(devices) > 2
    batches = [devices[:1], [10**6], devices[1:]]  # a batch of a unit with no events too
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(reports.tempfile, "tempdir", str(scratch))
    for skip, times in (((), True), (DRL_SKIP, False)):
        read = list(reports.report_event_batches(store, None, None, batches, times=times, skip=skip))
        assert list(scratch.iterdir()) == []  # its temporary files are gone
        assert len(read) == len(batches)
        for batch, cols in zip(batches, read):
            want = reports.report_events(store, device_ids=batch, times=times, skip=skip)
            assert cols["n"] == want["n"]
            assert cols["event_id"].tolist() == want["event_id"].tolist()
            for name in ("study_id", "device_id", "not_patient"):
                assert cols[name].tolist() == want[name].tolist(), name
            assert np.array_equal(cols["t_start"], want["t_start"], equal_nan=True)
            for name in reports.NUMERIC:
                assert np.array_equal(cols[name], want[name], equal_nan=True), name
            for name in reports.TEXT:
                assert cols[name].tolist() == want[name].tolist(), name
            # the same women, numbered 0, 1, ... within the batch
            pairs = set(zip(cols["woman"].tolist(), want["woman"].tolist()))
            assert len(pairs) == len(set(want["woman"].tolist()))
            assert ((cols["woman"] < 0) == (want["woman"] < 0)).all()
            if cols["n"] and "patient_pseudonym" not in skip:
                assert sorted(set(cols["woman"].tolist()) - {-1}) == list(
                    range(len(set(cols["woman"].tolist()) - {-1}))
                )


def test_unit_event_counts_bound_period_units(store):
    """The survey's batches are planned from the events alone: the units period_units lists, with
    at least their live events (a superseded dose report's events are counted too)."""
    keys = ("id", "manufacturer", "model", "serial", "station", "events")
    live = [{k: u[k] for k in keys} for u in reports.period_units(store, "2000-01-01", "2100-12-31")]
    assert reports.unit_event_counts(store, "2000-01-01", "2100-12-31") == live
    S, E = M.SourceObject, M.Event
    with store.begin() as conn:
        old, new = conn.execute(select(S.id).order_by(S.id).limit(2)).scalars()
        conn.execute(update(S).where(S.id == old).values(superseded_by=new))
        gone = conn.execute(select(func.count()).select_from(E).where(E.source_object_id == old)).scalar_one()
    assert gone > 0
    after = {u["id"]: u["events"] for u in reports.period_units(store, "2000-01-01", "2100-12-31")}
    bound = {u["id"]: u["events"] for u in reports.unit_event_counts(store, "2000-01-01", "2100-12-31")}
    assert sum(bound.values()) - sum(after.values()) == gone
    assert all(bound[d] >= n for d, n in after.items())
    one = live[0]["serial"]
    assert [u["serial"] for u in reports.unit_event_counts(store, serial=one)] == [one]


def test_copy_stopped_early_or_failing_leaves_the_connection_usable(store, monkeypatch):
    """PostgreSQL's COPY read row by row from libpq: a reader that stops after its first piece
    cancels the rest, and a query the server fails is an error naming the cause; either way the
    connection goes on serving."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("COPY is PostgreSQL's")
    import psycopg
    from sqlalchemy import literal_column, text

    monkeypatch.setattr(bulk, "PIECE_BYTES", 300)
    E = M.Event
    with store.engine.connect() as conn:
        pieces = bulk.copy_csv(conn, select(E.id, E.protocol).order_by(E.id))
        first = next(pieces)
        assert first.startswith(b"1,")
        pieces.close()  # the rest cancelled
        assert conn.execute(text("SELECT 41 + 1")).scalar_one() == 42
    with store.engine.connect() as conn:
        failing = select(E.id, (literal_column("1") / (E.id - E.id)).label("boom"))
        with pytest.raises(psycopg.DatabaseError, match="division by zero"):
            list(bulk.copy_csv(conn, failing))
        conn.rollback()
        assert conn.execute(text("SELECT 41 + 1")).scalar_one() == 42
