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
            assert int(stat["ix_events_unit_view"].split()[0]) == n_events
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
