"""Storing: idempotence, superset replacement, RDSR-over-image, pseudonyms,
migrations. Every test here runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from pydicom.uid import generate_uid
from sqlalchemy import func, select, text

from srdose.parse import read_bytes
from srdose.pseudonym import Pseudonymiser
from srdose.store import DoseStore, Outcome
from srdose.store import models as M
from tests import builders as B


def _add(store, ds):
    data = B.to_bytes(ds)
    with store.begin() as conn:
        return store.add(conn, read_bytes(data), "0" * 64, "test")


def _count(store, model):
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def test_same_sop_instance_twice_changes_nothing(store):
    ds = B.rdsr(events=[B.event(), B.event(laterality=("7771000", "SCT", "Left"))])
    assert _add(store, ds) == Outcome.INGESTED
    before = {m.__tablename__: _count(store, m) for m in (M.Event, M.Pulse, M.Filter, M.Study, M.Device)}
    assert _add(store, ds) == Outcome.DUPLICATE
    after = {m.__tablename__: _count(store, m) for m in (M.Event, M.Pulse, M.Filter, M.Study, M.Device)}
    assert before == after == {"events": 2, "pulses": 2, "filters": 2, "studies": 1, "devices": 1}


def test_superset_rdsr_replaces_the_earlier_one(store):
    study = generate_uid()
    first, second, third = generate_uid(), generate_uid(), generate_uid()
    early = B.rdsr(events=[B.event(first), B.event(second)], study_uid=study)
    late = B.rdsr(events=[B.event(first), B.event(second), B.event(third)], study_uid=study)
    assert _add(store, early) == Outcome.INGESTED
    assert _add(store, late) == Outcome.REPLACED
    with store.engine.connect() as conn:
        uids = sorted(conn.execute(select(M.Event.event_uid)).scalars())
        superseded = (
            conn.execute(select(M.SourceObject.sop_instance_uid).where(M.SourceObject.superseded_by.is_not(None)))
            .scalars()
            .all()
        )
    assert uids == sorted([first, second, third])
    assert superseded == [early.SOPInstanceUID]
    # the earlier, smaller RDSR arriving again later does not undo that
    again = B.rdsr(events=[B.event(first)], study_uid=study)
    assert _add(store, again) == Outcome.SUPERSEDED
    assert _count(store, M.Event) == 3


def test_partly_overlapping_rdsrs_count_each_exposure_once(store):
    study = generate_uid()
    a, b, c = generate_uid(), generate_uid(), generate_uid()
    _add(store, B.rdsr(events=[B.event(a), B.event(b)], study_uid=study))
    _add(store, B.rdsr(events=[B.event(b), B.event(c)], study_uid=study))
    with store.engine.connect() as conn:
        assert sorted(conn.execute(select(M.Event.event_uid)).scalars()) == sorted([a, b, c])


def _mg_image(study_uid, event_uid, lat="R", view="CC", acq="20250102093000"):
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid
    ds.Modality = "MG"
    ds.StudyDate = "20250102"
    ds.Manufacturer, ds.ManufacturerModelName, ds.DeviceSerialNumber = "ACME", "Mammo 1", "SN-1"
    ds.PatientID = B.PATIENT["PatientID"]
    if event_uid:
        ds.IrradiationEventUID = event_uid
    ds.AcquisitionDateTime = acq
    ds.KVP, ds.ExposureInuAs, ds.BodyPartThickness = "28", "95000", "55"
    ds.OrganDose = "0.015"
    ds.ViewPosition, ds.ImageLaterality = view, lat
    ds.AnodeTargetMaterial, ds.FilterMaterial = "TUNGSTEN", "RHODIUM"
    return ds


def test_rdsr_wins_over_image_headers_in_either_order(store):
    study = generate_uid()
    e1, e2 = generate_uid(), generate_uid()
    # images first, then the RDSR: the image events give way
    assert _add(store, _mg_image(study, e1)) == Outcome.INGESTED
    assert _add(store, _mg_image(study, None, lat="L", acq="20250102093004")) == Outcome.INGESTED
    rdsr = B.rdsr(
        events=[B.event(e1), B.event(e2, laterality=("7771000", "SCT", "Left"), start="20250102093001")],
        study_uid=study,
    )
    assert _add(store, rdsr) == Outcome.INGESTED
    with store.engine.connect() as conn:
        kinds = (
            conn.execute(select(M.SourceObject.kind).join(M.Event, M.Event.source_object_id == M.SourceObject.id))
            .scalars()
            .all()
        )
    assert kinds == ["rdsr", "rdsr"]  # matched by event UID, and by side+view+time
    # an image arriving after the RDSR adds nothing
    assert _add(store, _mg_image(study, e2, lat="L")) == Outcome.COVERED
    assert _count(store, M.Event) == 2


def test_pseudonyms_are_keyed_and_stable(db_url, tmp_path):
    ds = B.rdsr()
    data = B.to_bytes(ds)
    key_a, key_b = b"a" * 64, b"b" * 64
    pa = Pseudonymiser(key_a).patient(B.PATIENT["PatientID"])
    assert pa == Pseudonymiser(key_a).patient(B.PATIENT["PatientID"])  # stable across runs
    assert pa != Pseudonymiser(key_b).patient(B.PATIENT["PatientID"])  # another site, another pseudonym
    assert pa != Pseudonymiser(key_a).accession(B.PATIENT["PatientID"])  # separate namespaces
    import hashlib
    import hmac

    assert pa == hmac.new(key_a, b"patient\x00" + B.PATIENT["PatientID"].encode(), hashlib.sha256).hexdigest()[:32]
    assert pa != hashlib.sha256(B.PATIENT["PatientID"].encode()).hexdigest()[:32]  # not a bare hash

    store = DoseStore(db_url, Pseudonymiser(key_a))
    with store.begin() as conn:
        store.add(conn, read_bytes(data), "x" * 64)
    with store.engine.connect() as conn:
        assert conn.execute(select(M.Study.patient_pseudonym)).scalar_one() == pa
        age = conn.execute(select(M.Study.age_years)).scalar_one()
    store.close()
    # born 1964-02-29, studied 2025-01-02: 60.84 years, kept as completed years only
    assert age == 60


def _all_text(store) -> str:
    """Every value in every table, as text."""
    chunks = []
    with store.engine.connect() as conn:
        for table in M.Base.metadata.sorted_tables:
            for row in conn.execute(select(table)):
                chunks.extend(str(v) for v in row)
    return "\n".join(chunks)


def test_no_identifier_reaches_the_database(store, db_url, tmp_path):
    _add(store, B.rdsr(events=[B.event(), B.event(laterality=("7771000", "SCT", "Left"))]))
    everything = _all_text(store)
    for value in B.PATIENT.values():
        assert value not in everything
    assert "TESTPERSON" not in everything and "ALICE" not in everything
    if db_url.startswith("sqlite"):
        store.close()
        raw = open(db_url.split("///", 1)[1], "rb").read()
        for suffix in ("-wal",):
            try:
                raw += open(db_url.split("///", 1)[1] + suffix, "rb").read()
            except FileNotFoundError:
                pass
        for value in B.PATIENT.values():
            assert value.encode() not in raw
        assert b"TESTPERSON" not in raw


def test_schema_matches_models_after_migration(store):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": M.on_engine(conn.dialect.name)})
        diff = compare_metadata(context, M.Base.metadata)
        version = conn.execute(text("select version_num from alembic_version")).scalar_one()
    assert diff == []
    from srdose.store.database import head_revision

    assert version == head_revision()


def test_planner_statistics_follow_an_ingest(store, ingestor, tmp_path):
    """After a folder ingest into a database without statistics, the query planner's statistics
    hold the real row counts (SQLite's sqlite_stat1, PostgreSQL's pg_class): without them SQLite
    plans the event list of a large database by guesses (and sorted a million events for a page)."""
    from srdose import synth as S

    S.generate("hologic", 3, tmp_path / "in", seed=11)
    summary = ingestor.ingest_paths([tmp_path / "in"])
    assert summary.events > 0 and store.has_statistics()
    n_events, n_studies = _count(store, M.Event), _count(store, M.Study)
    assert n_events == summary.events
    with store.engine.connect() as conn:
        if store.engine.dialect.name == "sqlite":
            stat = dict(conn.execute(text("SELECT idx, stat FROM sqlite_stat1")).all())
            assert int(stat["ix_events_unit_date"].split()[0]) == n_events
            assert int(stat["ix_studies_date_time"].split()[0]) == n_studies
        else:
            tuples = dict(conn.execute(text("SELECT relname, reltuples FROM pg_class")).all())
            assert (tuples["events"], tuples["studies"]) == (n_events, n_studies)


def test_statistics_are_taken_again_as_the_events_grow(store, ingestor, tmp_path):
    """A database filled a few objects at a time (the listener) gets statistics again once its
    events have grown by ANALYZE_MIN_EVENTS (or a tenth), not on every commit."""
    from srdose import synth as S

    def ingest(name, seed):
        S.generate("hologic", 1, tmp_path / name, seed=seed)
        return ingestor.ingest_paths([tmp_path / name]).events

    first = ingest("a", 21)
    assert store.analyzed_events() == first  # none before: taken at once
    second = ingest("b", 22)
    assert 0 < second < store.ANALYZE_MIN_EVENTS and store.analyzed_events() == first  # not grown enough
    store.ANALYZE_MIN_EVENTS = second + 1  # per store, so that a few more events cross it
    third = ingest("c", 23)
    assert store.analyzed_events() == first + second + third == _count(store, M.Event)


def test_a_small_recalculation_does_not_analyze_the_database(store, ingestor, tmp_path):
    """The listener recalculates every few seconds: its few results count towards the growth,
    they do not each take the statistics again (a whole-database ANALYZE each time)."""
    from srdose import synth as S
    from srdose.config import load
    from srdose.recalc.engine import Params
    from srdose.recalc.run import resolve_factor_set, run

    S.generate("hologic", 1, tmp_path / "a", seed=31)
    first = ingestor.ingest_paths([tmp_path / "a"]).events
    S.generate("hologic", 1, tmp_path / "b", seed=32)
    second = ingestor.ingest_paths([tmp_path / "b"]).events
    assert store.analyzed_events() == first  # the second batch alone is too few
    params = Params.from_settings(load(None, environ={"SRDOSE_DATA_DIR": str(tmp_path / "data")}).recalc)
    summary = run(store, resolve_factor_set(store, "bundled"), params)
    assert 0 < summary.computed == first + second < store.ANALYZE_MIN_EVENTS
    assert store.analyzed_events() == first  # still
    store.ANALYZE_MIN_EVENTS = second + summary.computed  # the results do count towards it
    S.generate("hologic", 1, tmp_path / "c", seed=33)
    ingestor.ingest_paths([tmp_path / "c"])
    assert store.analyzed_events() == _count(store, M.Event)


# --- the event list's queries -----------------------------------------------------------------------


def _event_dates(store) -> set[tuple]:
    with store.engine.connect() as conn:
        return set(
            conn.execute(
                select(
                    M.Event.event_uid, M.Event.study_date, M.Event.study_time, M.Study.study_date, M.Study.study_time
                ).join(M.Study, M.Event.study_id == M.Study.id)
            ).all()
        )


def test_events_carry_their_studys_date_written_or_migrated(db_url, pseudonymiser):
    """Events hold a copy of their study's date and time (a unit's list reads them from one
    index): the migration fills them in for events already held, ingest writes them, and a later
    object of a study held already gives its events the held study's date, not its own."""
    from srdose.store.database import make_engine, upgrade

    engine = make_engine(db_url)
    upgrade(engine, "0010")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO devices (id, manufacturer, model, serial) VALUES (7, 'ACME', 'M1', 'SN7')"))
        conn.execute(
            text(
                "INSERT INTO studies (id, study_instance_uid, study_date, study_time, not_patient) "
                "VALUES (5, '1.2.5', '20240611', '101500', false), (6, '1.2.6', NULL, NULL, false)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO source_objects (id, sop_instance_uid, sop_class_uid, kind, study_id, sha256, received_at) "
                "VALUES (3, '1.2.3', '1.2.840.10008.5.1.4.1.1.88.67', 'rdsr', 5, :z, '2024-06-11 10:20:00'), "
                "(4, '1.2.4', '1.2.840.10008.5.1.4.1.1.88.67', 'rdsr', 6, :z, '2024-06-11 10:20:00')"
            ),
            {"z": "0" * 64},
        )
        conn.execute(
            text(
                "INSERT INTO events (source_object_id, study_id, device_id, event_uid) "
                "VALUES (3, 5, 7, '1.9.1'), (3, 5, 7, '1.9.2'), (4, 6, 7, '1.9.3')"
            )
        )
    engine.dispose()
    store = DoseStore(db_url, pseudonymiser)  # migrates to the head
    try:
        assert _event_dates(store) == {
            ("1.9.1", "20240611", "101500", "20240611", "101500"),
            ("1.9.2", "20240611", "101500", "20240611", "101500"),
            ("1.9.3", None, None, None, None),
        }
        study, a, b = generate_uid(), generate_uid(), generate_uid()
        _add(store, B.rdsr(events=[B.event(a)], study_uid=study))
        later = B.rdsr(events=[B.event(b)], study_uid=study)
        later.StudyDate, later.StudyTime = "20250103", "080000"  # the study is held: its date stands
        _add(store, later)
        new = {row for row in _event_dates(store) if row[0] in (a, b)}
        assert new == {(a, "20250102", "092900", "20250102", "092900"), (b, "20250102", "092900", "20250102", "092900")}
    finally:
        store.close()


def _two_studies(store) -> tuple[list[int], list[int], int]:
    """Two studies of one unit; the ids of each one's events and the first one's source object."""
    first, second = B.rdsr(events=[B.event(), B.event()]), B.rdsr(events=[B.event()])
    _add(store, first)
    _add(store, second)
    with store.engine.connect() as conn:
        by_uid = {
            uid: (
                source_id,
                sorted(conn.execute(select(M.Event.id).where(M.Event.source_object_id == source_id)).scalars()),
            )
            for uid, source_id in conn.execute(select(M.SourceObject.sop_instance_uid, M.SourceObject.id))
        }
    return by_uid[first.SOPInstanceUID][1], by_uid[second.SOPInstanceUID][1], by_uid[first.SOPInstanceUID][0]


def test_events_of_a_superseded_object_stay_out_of_the_list(store, monkeypatch):
    """Should a superseded source object still hold events (ingest deletes them), the list, its
    count and its download leave them out: named in the query when few, by a join when many."""
    from sqlalchemy import update

    from srdose.store import web as W

    old, kept, old_source = _two_studies(store)
    with store.begin() as conn:
        newest = conn.execute(select(func.max(M.SourceObject.id))).scalar_one()
        conn.execute(update(M.SourceObject).where(M.SourceObject.id == old_source).values(superseded_by=newest))
    assert old and kept
    for named, resolved in ((1000, (old_source,)), (0, None)):
        monkeypatch.setattr(W, "_SUPERSEDED_NAMED", named)
        with store.engine.connect() as conn:
            assert W._resolved(conn, W.EventFilter()).superseded == resolved
        for f in (W.EventFilter(), W.EventFilter(serial=B.rdsr().DeviceSerialNumber)):
            page = W.event_list(store, f, 1, 10)
            assert [r["event_id"] for r in page.rows] == kept and (page.total, page.exact) == (1, True)
            assert [r[0] for r in W.iter_events(store, f)] == kept
            assert W.event_count(store, f) == 1


def _relations_read(conn, sql: str, params) -> set[str]:
    """The tables a statement reads, from the engine's own plan of it."""
    if conn.dialect.name == "sqlite":
        plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params).all()
        return {m.group(1) for row in plan if (m := __import__("re").match(r"(?:SCAN|SEARCH) (\w+)", row[3]))}
    plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + sql, params).scalar_one()
    found, todo = set(), [plan[0]["Plan"]]
    while todo:
        node = todo.pop()
        if "Relation Name" in node:
            found.add(node["Relation Name"])
        todo += node.get("Plans", [])
    return found


def test_a_units_page_and_count_from_a_date_read_the_events_alone(store):
    """The list of a unit's views from a date, its page and its count, read the events table (its
    index of a unit's events by view and date) and nothing else: not every study since the date,
    nor a source object per event, which made the list too slow on PostgreSQL at a million events."""
    from sqlalchemy import event as sa_event

    from srdose.store import web as W

    for _ in range(20):  # enough studies that the planners look one up by its key, as at scale
        _two_studies(store)
    store.analyze()
    f = W.EventFilter(serial=B.rdsr().DeviceSerialNumber, view="CC", since="20250101")
    statements: list[tuple[str, object]] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    sa_event.listen(store.engine, "before_cursor_execute", seen)
    try:
        page = W.event_list(store, f, 1, 1, count_limit=5)
    finally:
        sa_event.remove(store.engine, "before_cursor_execute", seen)
    sqlite = store.engine.dialect.name == "sqlite"
    assert len(page.rows) == 1 and (page.total, page.exact) == ((60, True) if sqlite else (5, False))
    # the page of ids and the count (SQLite: as one, a window over the page's query); the columns
    # of the page's rows are read after, by id
    heads = {
        "sqlite": ["SELECT events.id, count(*) OVER () AS anon_1"],
        "postgresql": ["SELECT events.id", "SELECT count(*) AS count_1"],
    }
    listing = [(s, p) for s, p in statements if s.split("\n")[0].strip() in heads[store.engine.dialect.name]]
    assert len(listing) == len(heads[store.engine.dialect.name])
    with store.engine.connect() as conn:
        for sql, params in listing:
            assert _relations_read(conn, sql, params) == {"events"}, sql
