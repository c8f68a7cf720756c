"""Information governance: opt-out, research export, re-identification, purge, audit.

The commands run in-process (click's runner) on a fresh data directory
(``srdose_env``), as a person would run them.
"""

from __future__ import annotations

import csv
import datetime as dt
import gc
import getpass
import hashlib
import json
import os
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests import builders as B


def cli(*args, env=None):
    from click.testing import CliRunner

    from srdose.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args], env={"COLUMNS": "250", **(env or {})})
    # openpyxl's write-only sheets leave a generator that fails when collected late (after
    # the file is closed); collected here, it cannot break pytest's own later imports
    gc.collect()
    return result


def ok(result, code=0):
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    return result


def patient(n: int, birth="19600101") -> dict:
    return {
        "PatientName": f"PERSONA{n:03d}^EVE",
        "PatientID": f"ID{n:07d}9",
        "PatientBirthDate": birth,
        "AccessionNumber": f"ACC{n:06d}",
    }


def study(pat: dict, date: str, start_time="093000", events=1, serial="SN-1") -> bytes:
    evs = [
        B.event(
            start=f"{date}{start_time}",
            laterality=(("24028007", "SCT", "Right") if i % 2 == 0 else ("7771000", "SCT", "Left")),
        )
        for i in range(events)
    ]
    ds = B.rdsr(events=evs, patient=pat)
    ds.StudyDate = date
    ds.DeviceSerialNumber = serial
    return B.to_bytes(ds)


def write(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return folder / name


def settings_store(write_access=False):
    """The store and settings of the environment (after the commands made them)."""
    from srdose.config import load
    from srdose.pseudonym import Pseudonymiser, load_or_create_secret
    from srdose.store import DoseStore

    s = load()
    p = Pseudonymiser(load_or_create_secret(s.site_secret_path))
    return s, DoseStore(s.database_url, p), p


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# --- opt-out and research export ---------------------------------------------------------


def test_optout_excludes_patients_from_research_exports_made_afterwards(srdose_env, tmp_path):
    src = tmp_path / "in"
    for n in range(3):
        write(src, f"s{n}.dcm", study(patient(n), "20240110", events=2))
    ok(cli("ingest", src))
    ok(cli("export", "research", "--project", "alpha", "--out", tmp_path / "before"))
    before = read_csv(tmp_path / "before" / "alpha-events.csv")
    assert len(before) == 6 and len({r["patient"] for r in before}) == 3

    listing = tmp_path / "optout.csv"
    # the national list may write the ID with spaces; a header line is just an ID that matches nobody
    pid = patient(1)["PatientID"]
    listing.write_text(f"nhs_number\n{pid[:4]} {pid[4:]}\n# comment\n\n")
    r = ok(cli("optout", "import", listing))
    assert "1 held studies" in " ".join(r.output.split())
    ok(cli("export", "research", "--project", "alpha", "--out", tmp_path / "after"))
    after = read_csv(tmp_path / "after" / "alpha-events.csv")
    assert len(after) == 4 and len({r["patient"] for r in after}) == 2
    gone = {r["patient"] for r in before} - {r["patient"] for r in after}
    assert len(gone) == 1
    manifest = json.loads((tmp_path / "after" / "alpha-manifest.json").read_text())
    assert manifest["excluded"]["opted_out_events"] == 2 and manifest["rows"] == 4

    from srdose.store.governance import opted_out_pseudonyms

    s, store, p = settings_store()
    assert p.patient(pid) in opted_out_pseudonyms(store)
    # hashes only: the ID is nowhere in the database
    store.close()
    raw = b"".join(f.read_bytes() for f in srdose_env.glob("srdose.sqlite*"))
    assert pid.encode() not in raw and pid[4:].encode() not in raw

    # --replace: the file is the whole list; an empty list opts everyone back in
    listing.write_text("")
    ok(cli("optout", "import", "--replace", listing))
    ok(cli("export", "research", "--project", "alpha", "--out", tmp_path / "again"))
    assert len(read_csv(tmp_path / "again" / "alpha-events.csv")) == 6


def test_double_pseudonyms_differ_across_projects_and_are_stable_within_one(srdose_env, tmp_path):
    src = tmp_path / "in"
    for n in range(4):
        write(src, f"s{n}.dcm", study(patient(n), "20240110"))
        write(src, f"t{n}.dcm", study(patient(n), "20250312"))
    ok(cli("ingest", src))
    for out, project in (("a1", "alpha"), ("a2", "alpha"), ("b", "beta")):
        ok(cli("export", "research", "--project", project, "--out", tmp_path / out, "--no-parquet"))
    a1, a2, b = (
        read_csv(tmp_path / d / f"{p}-events.csv") for d, p in (("a1", "alpha"), ("a2", "alpha"), ("b", "beta"))
    )
    assert [r["patient"] for r in a1] == [r["patient"] for r in a2]
    assert [r["study_date"] for r in a1] == [r["study_date"] for r in a2]
    pa, pb = {r["patient"] for r in a1}, {r["patient"] for r in b}
    assert len(pa) == len(pb) == 4 and not pa & pb
    assert not {r["study"] for r in a1} & {r["study"] for r in b}
    assert not {r["unit"] for r in a1} & {r["unit"] for r in b}

    from srdose.store import models as M

    s, store, p = settings_store()
    with store.engine.connect() as conn:
        site = set(conn.execute(select(M.Study.patient_pseudonym)).scalars())
        uids = set(conn.execute(select(M.Study.study_instance_uid)).scalars())
    store.close()
    text = "".join((tmp_path / d).joinpath(f).read_text() for d in ("a1", "b") for f in os.listdir(tmp_path / d))
    for value in site | uids | {"SN-1"}:
        assert value not in text


def test_date_shift_preserves_intervals_and_bands_ages(srdose_env, tmp_path):
    src = tmp_path / "in"
    dates = ("20230105", "20240220", "20250301")
    for i, date in enumerate(dates):
        write(src, f"s{i}.dcm", study(patient(7, birth="19640229"), date, start_time="101500", events=2))
    for n in range(8):
        write(src, f"o{n}.dcm", study(patient(100 + n), "20240601"))
    ok(cli("ingest", src))
    ok(cli("export", "research", "--project", "gamma", "--out", tmp_path / "x"))
    rows = read_csv(tmp_path / "x" / "gamma-events.csv")
    from collections import defaultdict

    by_patient = defaultdict(list)
    for r in rows:
        by_patient[r["patient"]].append(r)
    ours = next(v for v in by_patient.values() if len(v) == 6)
    real = [dt.date.fromisoformat(f"{d[:4]}-{d[4:6]}-{d[6:]}") for d in dates]
    shifted = sorted({dt.date.fromisoformat(r["study_date"]) for r in ours})
    assert len(shifted) == 3
    offset = (shifted[0] - real[0]).days
    assert 1 <= abs(offset) <= 365
    assert [(d - real[i]).days for i, d in enumerate(shifted)] == [offset] * 3  # intervals kept
    for r in ours:  # event times move with the study date, time of day kept
        assert r["event_datetime"].startswith(r["study_date"] + "T10:15:00")
    assert {r["age_band"] for r in ours} == {"55-59", "60-64"}
    # other patients get other shifts (keyed per patient)
    shifts = {
        (dt.date.fromisoformat(v[0]["study_date"]) - dt.date(2024, 6, 1)).days
        for v in by_patient.values()
        if len(v) == 1
    }
    assert len(shifts) > 1
    # free text is dropped unless allow-listed
    assert "protocol" not in rows[0] and "protocol_standard" in rows[0]
    env = {"SRDOSE_GOVERNANCE__RESEARCH_FREE_TEXT": "protocol", "SRDOSE_GOVERNANCE__RESEARCH_AGE_BAND_YEARS": "0"}
    ok(cli("export", "research", "--project", "gamma", "--out", tmp_path / "y", env=env))
    rows = read_csv(tmp_path / "y" / "gamma-events.csv")
    assert "protocol" in rows[0] and "label" not in rows[0]
    assert {r["age_band"] for r in rows if r["patient"] == ours[0]["patient"]} == {"58", "59", "61"}


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_research_manifest_checksums_and_parquet(srdose_env, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    src = tmp_path / "in"
    for n in range(3):
        write(src, f"s{n}.dcm", study(patient(n), "20240110", events=2))
    phantom = dict(patient(99), PatientName="QA^PHANTOM")
    write(src, "qa.dcm", study(phantom, "20240110", events=4))
    ok(cli("ingest", src))
    out = tmp_path / "x"
    ok(cli("export", "research", "--project", "delta", "--out", out, "--format", "xlsx"))
    manifest = json.loads((out / "delta-manifest.json").read_text())
    assert manifest["rows"] == 6 and manifest["excluded"]["not_patient_events"] == 4
    assert set(manifest["files"]) == {"delta-events.xlsx", "delta-events.parquet"}
    for name, info in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == info["sha256"]
    table = pq.read_table(out / "delta-events.parquet")
    assert table.num_rows == 6 and table.column_names == manifest["columns"]
    assert table.schema.field("kvp").type.__str__() == "double"

    from srdose.store.governance import audit_entries

    s, store, p = settings_store()
    entry = audit_entries(store, "export.research")[0]
    store.close()
    assert entry["rows"] == 6 and entry["who"] == getpass.getuser()
    assert json.loads(entry["parameters"])["project"] == "delta"
    assert ok(cli("export", "research", "--project", "../evil", "--out", out), 2)


# --- re-identification -------------------------------------------------------------------


def test_reidentification_round_trips_only_with_the_key(srdose_env, tmp_path):
    keys = tmp_path / "keys"  # outside the data directory
    key = keys / "reid.key"
    env = {"SRDOSE_GOVERNANCE__REIDENTIFICATION_KEY_FILE": str(key)}
    pat = patient(5)
    ok(cli("ingest", write(tmp_path / "in", "a.dcm", study(pat, "20240110")), env=env))
    assert key.stat().st_mode & 0o777 == 0o600

    from srdose.store import models as M

    s, store, p = settings_store()
    pseudonym = p.patient(pat["PatientID"])
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(M.Reidentification)).scalar_one() == 1
    store.close()
    raw = b"".join(f.read_bytes() for f in srdose_env.glob("srdose.sqlite*"))
    assert pat["PatientID"].encode() not in raw

    r = ok(cli("reidentify", pseudonym, "--reason", "incident 42", env=env))
    assert r.stdout.strip() == pat["PatientID"]
    # another key: refused, nothing disclosed
    other = keys / "other.key"
    other.write_text("ab" * 32 + "\n")
    other.chmod(0o600)
    r = ok(cli("reidentify", pseudonym, "--key-file", other), 2)
    assert pat["PatientID"] not in r.output
    r = ok(cli("reidentify", pseudonym), 2)  # no key configured
    assert pat["PatientID"] not in r.output and "no key" in r.output
    r = ok(cli("reidentify", "0" * 32, env=env), 2)
    # a key others can read is refused
    key.chmod(0o644)
    ok(cli("reidentify", pseudonym, env=env), 2)
    key.chmod(0o600)

    r = ok(cli("audit", "--json", "--action", "reidentify"))
    entries = [json.loads(line) for line in r.stdout.splitlines()]
    assert [e["detail"]["outcome"] for e in entries] == [
        "key refused",
        "no entry",
        "no key",
        "decryption failed",
        "disclosed",
    ]
    assert all(e["who"] == getpass.getuser() for e in entries)
    assert entries[-1]["parameters"] == {"pseudonym": pseudonym, "reason": "incident 42"}
    assert pat["PatientID"] not in r.stdout


def test_no_reidentification_mapping_unless_configured(srdose_env, tmp_path):
    from srdose.store import models as M

    ok(cli("ingest", write(tmp_path / "in", "a.dcm", study(patient(1), "20240110"))))
    s, store, p = settings_store()
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(M.Reidentification)).scalar_one() == 0
    store.close()


# --- retention ---------------------------------------------------------------------------


def _table_counts(store) -> dict:
    from srdose.store import models as M

    out = {}
    with store.engine.connect() as conn:
        for name, model in (
            ("studies", M.Study),
            ("source_objects", M.SourceObject),
            ("events", M.Event),
            ("pulses", M.Pulse),
            ("filters", M.Filter),
            ("accumulated_doses", M.AccumulatedDose),
            ("quarantine", M.Quarantine),
            ("reidentification", M.Reidentification),
            ("devices", M.Device),
        ):
            out[name] = conn.execute(select(func.count()).select_from(model)).scalar_one()
    return out


def test_purge_removes_what_it_says(srdose_env, tmp_path):
    env = {"SRDOSE_GOVERNANCE__REIDENTIFICATION_KEY_FILE": str(tmp_path / "keys" / "reid.key")}
    src = tmp_path / "in"
    write(src, "old1.dcm", study(patient(1), "20180110", events=2))
    write(src, "old2.dcm", study(patient(2), "20190610", events=3))
    write(src, "new1.dcm", study(patient(2), "20240110", events=2))  # patient 2 keeps a study
    write(src, "new2.dcm", study(patient(3), "20250110", events=1))
    write(src, "junk.dcm", b"not dicom")
    ok(cli("ingest", src, env=env), 1)

    s = __import__("srdose.config", fromlist=["load"]).load()
    old = dt.datetime(2019, 1, 1).timestamp()
    archive, ingested = s.archive_dir, s.spool_dir / "ingested"
    for folder, names in ((archive, ("a1.dcm", "a2.dcm")), (ingested, ("i1.dcm",)), (s.spool_dir, ("p1.dcm",))):
        for name in names:
            write(folder, name, b"x")
            os.utime(folder / name, (old, old))
    write(archive, "recent.dcm", b"x")

    _, store, _ = settings_store()
    before = _table_counts(store)
    assert before["studies"] == 4 and before["events"] == 8 and before["reidentification"] == 3
    r = ok(cli("purge", "--before", "2020-01-01", "--dry-run"))
    assert _table_counts(store) == before
    r = ok(cli("purge", "--before", "2020-01-01", "--yes"))
    after = _table_counts(store)
    from srdose.store.governance import audit_entries

    entry = audit_entries(store, "purge")[0]
    said = json.loads(entry["detail"])
    removed = {k: before[k] - after[k] for k in before}
    assert removed == {
        "studies": 2,
        "source_objects": 2,
        "events": 5,
        "pulses": 5,
        "filters": 5,
        "accumulated_doses": 0,
        "quarantine": 0,
        "reidentification": 1,
        "devices": 0,
    }
    for k in ("studies", "source_objects", "events", "pulses", "filters", "reidentification", "quarantine"):
        assert said[k] == removed[k], k
    assert said["files"] == {"quarantine": 0, "archive": 2, "spool_ingested": 1}
    assert said["spool_pending_kept"] == 1
    assert sorted(p.name for p in archive.iterdir()) == ["recent.dcm"] and not any(ingested.iterdir())
    assert (s.spool_dir / "p1.dcm").exists()  # not ingested yet: never purged
    assert entry["who"] == getpass.getuser() and entry["rows"] == 5
    flat = " ".join(r.output.split())
    assert "studies │ 2" in flat and "events │ 5" in flat

    # everything, quarantine included
    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    qfiles = list(s.quarantine_dir.iterdir())
    assert len(qfiles) == 2  # the refused file and its note
    ok(cli("purge", "--before", tomorrow, "--yes"))
    final = _table_counts(store)
    assert final["studies"] == final["events"] == final["quarantine"] == final["reidentification"] == 0
    assert final["devices"] == 1
    assert not list(s.quarantine_dir.iterdir())
    said = json.loads(audit_entries(store, "purge")[0]["detail"])
    assert said["quarantine"] == 1 and said["files"]["quarantine"] == 2
    store.close()
    assert ok(cli("purge"), 2)  # no --before and no retention period configured
    r = ok(cli("purge", "--dry-run", env={"SRDOSE_GOVERNANCE__RETENTION_DAYS": "3650"}))
    cutoff = (dt.date.today() - dt.timedelta(days=3650)).strftime("%Y%m%d")
    assert cutoff in r.output


def test_audit_lists_actions_newest_first(srdose_env, tmp_path):
    ok(cli("ingest", write(tmp_path / "in", "a.dcm", study(patient(1), "20240110"))))
    ok(cli("export", "research", "--project", "p", "--out", tmp_path / "o", "--no-parquet"))
    ok(cli("purge", "--before", "2000-01-01", "--yes"))
    r = ok(cli("audit", "--json"))
    entries = [json.loads(line) for line in r.stdout.splitlines()]
    assert [e["action"] for e in entries] == ["purge", "export.research"]
    r = ok(cli("audit", "--action", "export"))
    assert "export.research" in r.stdout and "purge" not in r.stdout
