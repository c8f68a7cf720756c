"""Shared fixtures: the shared material, isolated settings, and databases.

The shared material (real vendor dose reports and their expected values) is
the ``shared`` folder beside the repository; tests needing it skip without it.

Database tests run on SQLite and on a real PostgreSQL server. The server is
the one named by ``SRDOSE_TEST_POSTGRES_URL`` (``.ci/run`` starts one), else
one these fixtures start themselves with ``scripts/pg.sh``; without
PostgreSQL binaries the PostgreSQL cases skip, except under CI, where they
fail: CI must not pass by skipping.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.netutil import fresh_postgres_db

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_RDSR = SHARED / "rdsr"
SAMPLE_DATA = REPO / "sample_data"


def shared_file(name: str) -> Path:
    """A file of the shared dose reports (``rdsr`` of the shared material), or skip the test."""
    path = SHARED_RDSR / name
    if not path.is_file():
        pytest.skip(f"shared dose report {name} is not here (shared material absent)")
    return path


@pytest.fixture(scope="session")
def expected_mammography():
    path = SHARED_RDSR / "expected-mammography.json"
    if not path.is_file():
        pytest.skip("the expected values of the shared dose reports are not here (shared material absent)")
    return {entry["file"]: entry for entry in json.loads(path.read_text())}


@pytest.fixture
def srdose_env(tmp_path, monkeypatch):
    """Point srdose at a fresh data directory for this test."""
    data = tmp_path / "srdose-data"
    monkeypatch.setenv("SRDOSE_DATA_DIR", str(data))
    for key in list(os.environ):
        if key.startswith("SRDOSE_") and key not in ("SRDOSE_DATA_DIR", "SRDOSE_TEST_POSTGRES_URL"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return data


#: The vendor folders of sample_data/: every flavour (2D, DBT with projections, combos).
SAMPLE_VENDORS = ("hologic", "ge", "siemens", "fujifilm", "giotto")


def add_sample_rdsrs(store) -> None:
    """Store every RDSR of the vendor folders of sample_data/."""
    from srdose.parse import read_bytes

    for path in sorted(p for v in SAMPLE_VENDORS for p in (SAMPLE_DATA / v).glob("*.dcm")):
        with store.begin() as conn:
            store.add(conn, read_bytes(path.read_bytes()), "0" * 64, "test")


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """URL of a PostgreSQL server's maintenance database."""
    url = os.environ.get("SRDOSE_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    import shutil
    import tempfile

    # not under pytest's tmp folder: that is mode 0700 and postgres runs as its own user
    base = Path(tempfile.mkdtemp(prefix="srdose-pg-"))
    base.chmod(0o755)
    pgdir = base / "data"
    port = str(55000 + os.getpid() % 900)
    try:
        url = subprocess.run(
            [str(REPO / "scripts" / "pg.sh"), "start", str(pgdir), port],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError, subprocess.TimeoutExpired) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        if os.environ.get("CI"):
            pytest.fail(f"CI needs PostgreSQL for the database tests: {detail}")
        pytest.skip(f"no PostgreSQL server available: {detail.strip()[:200]}")
    yield url
    subprocess.run([str(REPO / "scripts" / "pg.sh"), "stop", str(pgdir)], check=False, timeout=60)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """A fresh, empty database: SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite'}"
    return fresh_postgres_db(request.getfixturevalue("postgres_server"))


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def module_db_url(request, tmp_path_factory):
    """A fresh, empty database shared by one module's tests (built once, e.g. by a web app's world)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite'}"
    return fresh_postgres_db(request.getfixturevalue("postgres_server"))


@pytest.fixture
def pseudonymiser():
    from srdose.pseudonym import Pseudonymiser

    return Pseudonymiser(b"0" * 64)


@pytest.fixture
def store(db_url, pseudonymiser):
    from srdose.store import DoseStore

    s = DoseStore(db_url, pseudonymiser)
    yield s
    s.close()


@pytest.fixture
def ingestor(store, tmp_path):
    from srdose.ingest import Ingestor
    from srdose.quarantine import QuarantineFolder

    return Ingestor(store, QuarantineFolder(tmp_path / "quarantine"), batch_size=50)
