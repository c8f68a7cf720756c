"""The `srdose` command as a person or a script runs it (a real subprocess)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest

from srdose.store.database import EVENT_EXPORT_COLUMNS
from tests import builders as B
from tests.conftest import SHARED_RDSR, shared_file


def run(*args, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "srdose", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=600,
    )


@pytest.mark.parametrize("cmd", [[], ["ingest"], ["export", "events"], ["synth"], ["db", "upgrade"], ["config"]])
def test_every_command_has_help(cmd):
    r = run(*cmd, "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage:" in r.stdout


def test_usage_error_exits_2(srdose_env):
    assert run("ingest").returncode == 2  # no paths
    assert run("ingest", "/does/not/exist").returncode == 2
    r = run("ingest", ".", "--jobs", "0")
    assert r.returncode == 2 and "--jobs" in r.stderr and "1<=x<=256" in r.stderr
    assert (
        run(
            "retrieve",
            "--pacs",
            "127.0.0.1:104",
            "--pacs-aet",
            "P",
            "--from",
            "2025-01-01",
            "--to",
            "2025-01-02",
            "--associations",
            "0",
        ).returncode
        == 2
    )
    r = run("--config", "/no/such.toml", "config")
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_ingest_export_round_trip_and_exit_codes(srdose_env, tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    for i in range(3):
        (good / f"r{i}.dcm").write_bytes(
            B.to_bytes(
                B.rdsr(
                    events=[
                        B.event(),
                        B.event(
                            laterality=("7771000", "SCT", "Left"), view=("399368009", "SCT", "medio-lateral oblique")
                        ),
                    ]
                )
            )
        )
    r = run("ingest", good)
    assert r.returncode == 0, r.stderr
    assert "ingested" in r.stdout and "6" in r.stdout

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "noise.dcm").write_bytes(b"not dicom at all")
    r = run("ingest", bad)
    assert r.returncode == 1
    assert "quarantined" in r.stdout
    q = srdose_env / "quarantine"
    assert len(list(q.glob("*.json"))) == 1

    out = tmp_path / "events.csv"
    r = run("export", "events", "--out", out)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(out, newline="")))
    assert tuple(rows[0].keys()) == EVENT_EXPORT_COLUMNS
    assert len(rows) == 6
    assert {(r["laterality"], r["view"]) for r in rows} == {("R", "CC"), ("L", "MLO")}
    first = rows[0]
    assert first["kvp"] == "28.0" and first["mas"] == "95.0" and first["anode"] == "W"
    assert first["filter"] == "Rh" and first["filter_thickness_mm"] == "0.05"
    assert first["source"] == "rdsr" and first["acquisition"] == "2D"
    text = out.read_text()
    for ident in B.PATIENT.values():
        assert ident not in text

    xlsx = tmp_path / "events.xlsx"
    assert run("export", "events", "--out", xlsx).returncode == 0
    from openpyxl import load_workbook

    ws = load_workbook(xlsx, read_only=True)["events"]
    values = list(ws.values)
    assert values[0] == EVENT_EXPORT_COLUMNS and len(values) == 7


def test_real_vendor_files_through_the_command(srdose_env, tmp_path):
    shared_file("MG-RDSR-Hologic_mix.dcm")
    r = run("ingest", SHARED_RDSR)
    # the folder holds CT, DX, RF and non-dose objects too: exit 1, nothing lost
    assert r.returncode == 1
    out = tmp_path / "e.csv"
    run("export", "events", "--out", out)
    rows = list(csv.DictReader(open(out, newline="")))
    assert len(rows) == 7 + 8 + 4 + 1
    hologic = [r for r in rows if r["manufacturer"] == "HOLOGIC, Inc."]
    assert [r["filter"] for r in hologic].count("Al") == 4
    zero = [r for r in hologic if r["kvp"] == "20.0"]
    assert all(r["agd_reported_mgy"] == "" and "zero:agd_mgy" in r["flags"] for r in zero)


def test_database_url_option_and_db_commands(srdose_env, tmp_path):
    url = f"sqlite:///{tmp_path / 'other.sqlite'}"
    from srdose.store.database import head_revision

    head = head_revision()
    r = run("--db", url, "db", "upgrade")
    assert r.returncode == 0, r.stderr
    assert f"at revision {head}" in r.stderr
    r = run("--db", url, "db", "current")
    assert f"database: {head}" in r.stdout


def test_unreachable_database_says_what_to_do(srdose_env):
    r = run("--db", "postgresql+psycopg://nobody:secretpw@127.0.0.1:9/x", "export", "events", "--out", "x.csv")
    assert r.returncode == 3
    assert "cannot open the database" in r.stderr and "secretpw" not in r.stderr


def test_parse_workers_load_no_database_code():
    """A parse worker is a new interpreter: what it imports is its start-up. The database's
    modules (SQLAlchemy, the store) would more than double it."""
    code = "import sys, srdose.parse.workers; print([m for m in ('sqlalchemy', 'srdose.store') if m in sys.modules])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert r.stdout.strip() == "[]"


def test_ingest_with_jobs_writes_what_one_process_writes(tmp_path):
    """`srdose ingest --jobs 2` (workers parse, one process writes) leaves the database
    and the quarantine as `--jobs 1` does: same events, same outcomes, same refusals."""
    from srdose import synth
    from srdose.ingest import PARALLEL_MIN_FILES

    src = tmp_path / "src"
    files = []
    for i, vendor in enumerate(("hologic", "ge", "siemens")):
        files += synth.generate(vendor, 40, src / vendor, seed=70 + i, units=2)
    assert len(files) >= PARALLEL_MIN_FILES
    (src / "again.dcm").write_bytes(files[0].read_bytes())  # already held by then
    (src / "noise.dcm").write_bytes(b"not dicom at all")
    (src / "cut.dcm").write_bytes(files[1].read_bytes()[:3000])  # truncated

    results = {}
    for jobs in (1, 2):
        data = tmp_path / f"data{jobs}"
        data.mkdir()
        if jobs == 2:  # the same site secret, so that pseudonyms agree
            (data / "site-secret.key").write_bytes((tmp_path / "data1" / "site-secret.key").read_bytes())
            (data / "site-secret.key").chmod(0o600)
        env = {"SRDOSE_DATA_DIR": str(data)}
        r = run("ingest", src, "--jobs", jobs, env=env)
        assert r.returncode == 1, r.stderr  # two files quarantined
        assert ("2 processes parse them" in r.stdout) == (jobs == 2)
        out = tmp_path / f"events{jobs}.csv"
        assert run("export", "events", "--out", out, env=env).returncode == 0
        rows = sorted(tuple(row.items()) for row in csv.DictReader(open(out, newline="")))
        notes = sorted(p.name for p in (data / "quarantine").glob("*.json"))
        summary = [line for line in r.stdout.splitlines() if "│" in line]
        results[jobs] = (rows, notes, summary)
    assert len(results[1][0]) > 400
    assert len(results[1][1]) == 2
    assert results[2] == results[1]
