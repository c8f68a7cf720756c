"""The governance SQL (srdose.store.governance) on SQLite and PostgreSQL."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from tests import builders as B


def _patient(n):
    return dict(B.PATIENT, PatientID=f"P{n:05d}", PatientName=f"PERSON{n}^X")


def _ds(n, date, events=1, serial="SN-1", name=None):
    pat = _patient(n) if name is None else dict(_patient(n), PatientName=name)
    ds = B.rdsr(events=[B.event(start=f"{date}093000") for _ in range(events)], patient=pat)
    ds.StudyDate, ds.DeviceSerialNumber = date, serial
    return ds


def test_governance_queries(store, tmp_path):
    from srdose.curation.infeasible import FIELDS, load_rules
    from srdose.governance.hooks import IngestHooks
    from srdose.governance.reid import decrypt, load_or_create_key
    from srdose.ingest import Ingestor
    from srdose.quarantine import QuarantineFolder
    from srdose.store import governance as G
    from srdose.store import models as M

    key = load_or_create_key(tmp_path / "k" / "reid.key")
    ing = Ingestor(store, QuarantineFolder(tmp_path / "q"), hooks=IngestHooks(["PHANTOM"], load_rules(), key))
    with store.begin() as conn:
        for ds in (
            _ds(1, "20180101", 2),
            _ds(2, "20240101", 1, "SN-2"),
            _ds(3, "20240102", 3),
            _ds(4, "20240103", 2, name="PHANTOM^ACR"),
            B.rdsr(events=[B.event(kvp="70")]),
        ):
            assert ing.ingest_one(conn, B.to_bytes(ds)).outcome == "ingested"
    p = store.pseudonymiser

    # opt-out, research rows and counts
    counts = G.add_optouts(store, [p.patient("P00003")], "sha")
    assert counts["added"] == 1 and counts["studies"] == 1
    assert G.add_optouts(store, [p.patient("P00003")], "sha")["already"] == 1
    assert G.opted_out_pseudonyms(store) == {p.patient("P00003")}
    rows = list(G.iter_research_rows(store))
    assert len(rows) == 2 + 1 + 1  # phantom and opted-out patients left out
    assert p.patient("P00003") not in {r["patient_pseudonym"] for r in rows}
    assert G.research_counts(store) == {"events": 9, "not_patient": 2, "opted_out": 3}
    assert G.research_counts(store, since="20240102") == {"events": 6, "not_patient": 2, "opted_out": 3}

    # flags by unit and rule; recheck writes
    assert [(c["rule"], c["events"]) for c in G.flag_counts(store)] == [("kvp", 1)]
    per_unit = G.unit_event_counts(store)
    assert sum(u["events"] for u in per_unit.values()) == 9
    assert sum(u["flagged"] for u in per_unit.values()) == 1
    assert sum(u["not_patient"] for u in per_unit.values()) == 2
    ids = [r["id"] for r in G.iter_events_for_check(store, FIELDS)]
    assert G.set_event_flags(store, {ids[0]: "infeasible:hvl"}) == 1
    assert sorted(c["rule"] for c in G.flag_counts(store)) == ["hvl", "kvp"]

    # re-identification entries: one per pseudonym, decryptable with the key only
    entry = G.reidentification_entry(store, p.patient("P00002"))
    assert decrypt(key, p.patient("P00002"), *entry) == "P00002"

    # audit
    aid = G.record_audit(store, "report", "someone", {"kind": "survey"}, 12, {"excluded": 3})
    got = G.audit_entries(store, "report")
    assert got[0]["id"] == aid and got[0]["rows"] == 12 and json.loads(got[0]["parameters"]) == {"kind": "survey"}

    # purge: dry run says exactly what the purge then does
    def n(model):
        with store.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(model)).scalar_one()

    before = {m: n(m) for m in (M.Study, M.Event, M.SourceObject, M.Reidentification, M.Pulse, M.Filter)}
    dry = G.purge_before(store, "20240102", dry_run=True)
    assert {m: n(m) for m in before} == before
    done = G.purge_before(store, "20240102")
    assert dry == done
    assert done["studies"] == 2 and done["events"] == 3 and done["reidentification"] == 2
    assert before[M.Study] - n(M.Study) == done["studies"]
    assert before[M.Event] - n(M.Event) == done["events"]
    assert before[M.Filter] - n(M.Filter) == done["filters"]
    assert before[M.Reidentification] - n(M.Reidentification) == 2
    assert G.opted_out_pseudonyms(store) == {p.patient("P00003")}  # opt-outs are kept
