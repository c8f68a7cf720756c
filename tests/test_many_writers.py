"""Several writers on one PostgreSQL database: sites with their own listeners
and site secrets feeding a regional database.

The store-level tests make the race happen every time: writer A holds its
transaction open while writer B stores the same object or study, then A
commits. The listener test runs four real listeners, each its own site with
its own secret, against one database, with one set of studies sent to two of
them at once.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from srdose import synth
from srdose.ingest import Ingestor, Pending
from srdose.parse import read_bytes
from srdose.pseudonym import Pseudonymiser
from srdose.quarantine import QuarantineFolder
from srdose.store import DoseStore, Outcome
from srdose.store import models as M
from tests import builders as B
from tests.netutil import ListenerProcess, free_port, fresh_postgres_db, storescu, wait_until

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(postgres_server):
    return fresh_postgres_db(postgres_server)


def _site(url: str, name: str, tmp_path: Path, migrate: bool = True) -> Ingestor:
    store = DoseStore(url, Pseudonymiser(name.encode() * (64 // len(name))), migrate=migrate)
    return Ingestor(store, QuarantineFolder(tmp_path / f"quarantine-{name}"), retry_wait=0.05)


def _while_held(first: Ingestor, data_first: bytes, second: Ingestor, data_second: bytes):
    """``first`` stores its object and keeps its transaction open for a second
    while ``second`` stores its own; then ``first`` commits. Returns both results."""
    out: dict = {}
    with first.store.begin() as conn:
        out["first"] = first.ingest_one(conn, data_first, "dicom:SITEA")
        other = threading.Thread(
            target=lambda: out.setdefault("second", second.ingest_batch([Pending(lambda: data_second, "dicom:SITEB")]))
        )
        other.start()
        time.sleep(1.0)  # the second writer is now waiting on the first, or past it
    other.join(60)
    assert not other.is_alive(), "the second writer never finished"
    return out["first"], out["second"][0]


def _count(store: DoseStore, model) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def test_one_object_stored_at_two_sites_at_once_is_held_once(pg_url, tmp_path):
    a, b = _site(pg_url, "SITEA", tmp_path), _site(pg_url, "SITEB", tmp_path, migrate=False)
    data = B.to_bytes(B.rdsr(events=[B.event(), B.event(laterality=("7771000", "SCT", "Left"))]))

    first, second = _while_held(a, data, b, data)

    assert first.outcome == Outcome.INGESTED
    # the unit, study and object rows were being written by the other site: not the dataset's fault
    assert second.outcome == Outcome.DUPLICATE, second.reason
    assert {m.__tablename__: _count(a.store, m) for m in (M.Device, M.Study, M.SourceObject, M.Event)} == {
        "devices": 1,
        "studies": 1,
        "source_objects": 1,
        "events": 2,
    }
    assert _count(a.store, M.Quarantine) == 0


def test_two_versions_of_a_study_stored_at_once_count_each_exposure_once(pg_url, tmp_path):
    a, b = _site(pg_url, "SITEA", tmp_path), _site(pg_url, "SITEB", tmp_path, migrate=False)
    study = generate_uid()
    uids = [generate_uid() for _ in range(4)]
    v1, v2, v3 = (B.rdsr(events=[B.event(u) for u in uids[:n]], study_uid=study) for n in (2, 3, 4))
    with a.store.begin() as conn:
        assert a.ingest_one(conn, B.to_bytes(v1), "dicom:SITEA").outcome == Outcome.INGESTED

    # A replaces v1 by v2 while B replaces it by v3
    first, second = _while_held(a, B.to_bytes(v2), b, B.to_bytes(v3))

    assert first.outcome == Outcome.REPLACED
    assert second.outcome == Outcome.REPLACED, second.reason
    with a.store.engine.connect() as conn:
        held = sorted(conn.execute(select(M.Event.event_uid)).scalars())
        live = conn.execute(
            select(M.SourceObject.sop_instance_uid).where(M.SourceObject.superseded_by.is_(None))
        ).scalars()
        assert held == sorted(uids)
        assert list(live) == [v3.SOPInstanceUID]


def _site_events(files: list[Path]) -> dict[str, int]:
    return {(r := read_bytes(f.read_bytes(), "file")).sop_instance_uid: len(r.events) for f in files}


def test_four_sites_one_database_the_same_studies_at_two_of_them(pg_url, tmp_path):
    """Four listeners as four sites (each its own data folder and site secret) on one
    PostgreSQL database; one site's studies also arrive at a second site at the same
    time: every object once, every event once, nothing quarantined, no deadlock."""
    vendors = ["hologic", "ge", "siemens", "fujifilm"]
    sent = {v: synth.generate(v, 12, tmp_path / "rdsr" / v, seed=40 + i, units=2) for i, v in enumerate(vendors)}
    env = {"SRDOSE_DATABASE_URL": pg_url}
    sites = [ListenerProcess(tmp_path / f"site{i}", free_port(), env=env).start() for i in range(len(vendors))]
    try:
        plan = [(sites[i].port, sent[v]) for i, v in enumerate(vendors)]
        plan.append((sites[1].port, sent["hologic"]))  # site 0's studies at site 1 too
        senders = [threading.Thread(target=storescu, args=(port, files)) for port, files in plan]
        for t in senders:
            t.start()
        for t in senders:
            t.join(600)
        expected = {uid: n for files in sent.values() for uid, n in _site_events(files).items()}
        store = DoseStore(pg_url, migrate=False)
        try:
            wait_until(lambda: _count(store, M.SourceObject) >= len(expected), 120, what="every object stored")
            for site in sites:
                wait_until(lambda s=site: s.spooled() == 0, 60, what="every spool empty")
            with store.engine.connect() as conn:
                per_object = dict(
                    conn.execute(
                        select(M.SourceObject.sop_instance_uid, func.count(M.Event.id))
                        .outerjoin(M.Event, M.Event.source_object_id == M.SourceObject.id)
                        .group_by(M.SourceObject.sop_instance_uid)
                    ).all()
                )
            assert per_object == expected
            assert _count(store, M.Quarantine) == 0
        finally:
            store.close()
    finally:
        for site in sites:
            site.stop()
    for site in sites:
        log = site.log.read_text()
        assert "deadlock" not in log.lower()
        assert "database unavailable" not in log
        assert "Traceback" not in log


def test_a_listener_batch_tried_again_after_a_race_keeps_each_outcome(pg_url, tmp_path):
    """The listener's batch that loses a race is tried again as it first was: a dataset
    whose spooled file was already gone is still "missing", not recorded as a refusal."""
    from srdose.receive.worker import IngestWorker, Received
    from srdose.spool import Spool

    a, b = _site(pg_url, "SITEA", tmp_path), _site(pg_url, "SITEB", tmp_path, migrate=False)
    data = B.to_bytes(B.rdsr())
    spool = Spool(tmp_path / "spool")
    gone = spool.put(B.to_bytes(B.rdsr()), "MAMMO1")
    gone.unlink()  # cleared by another process already
    batch = [
        Received(gone, "dicom:MAMMO1", None, ""),
        Received(spool.put(data, "MAMMO1"), "dicom:MAMMO1", None, ""),
    ]
    worker = IngestWorker(b, spool)
    out: dict = {}
    with a.store.begin() as conn:
        assert a.ingest_one(conn, data, "dicom:SITEA").outcome == Outcome.INGESTED
        other = threading.Thread(target=lambda: out.setdefault("results", worker._ingest(batch)))
        other.start()
        time.sleep(1.0)  # the worker now waits on this transaction's object
    other.join(60)
    assert out["results"] == [Outcome.MISSING, Outcome.DUPLICATE]
    assert _count(a.store, M.Quarantine) == 0
