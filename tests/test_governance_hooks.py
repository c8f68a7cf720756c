"""Ingest's governance and curation steps come from the caller, never from settings looked up."""

from __future__ import annotations

from pathlib import Path

import pytest

from srdose.config import load
from srdose.governance.hooks import IngestHooks
from srdose.ingest import Ingestor
from srdose.quarantine import QuarantineFolder
from tests import builders as B


def _phantom_file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "qa.dcm"
    path.write_bytes(B.to_bytes(B.rdsr(patient=dict(B.PATIENT, PatientID="PHANTOM1", PatientName="QA^PHANTOM"))))
    return path


@pytest.fixture
def own_config(tmp_path, monkeypatch) -> Path:
    """A user's own ~/.config/srdose/srdose.toml asking for a re-identification key file;
    returns that key file's path (not created)."""
    home = tmp_path / "home"
    key = tmp_path / "keys" / "reid.key"
    config = home / ".config" / "srdose" / "srdose.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'[governance]\nreidentification_key_file = "{key}"\n')
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SRDOSE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./srdose.toml
    assert load().governance.reidentification_key_file == str(key)
    return key


def test_an_ingestor_built_without_hooks_reads_no_settings(store, tmp_path, own_config):
    ingestor = Ingestor(store, QuarantineFolder(tmp_path / "quarantine"), batch_size=50)
    summary = ingestor.ingest_paths([_phantom_file(tmp_path / "in")])
    assert summary.outcomes["ingested"] == 1
    assert not own_config.exists()
    assert not own_config.parent.exists()


def test_hooks_from_the_default_settings_mark_a_phantom(store, tmp_path, own_config):
    from sqlalchemy import select

    from srdose.store import models as M

    # the defaults, from an empty file named explicitly: neither ~/.config nor $SRDOSE_CONFIG is read
    empty = tmp_path / "defaults.toml"
    empty.write_text("")
    ingestor = Ingestor(
        store, QuarantineFolder(tmp_path / "quarantine"), hooks=IngestHooks.from_settings(load(str(empty), environ={}))
    )
    ingestor.ingest_paths([_phantom_file(tmp_path / "in")])
    with store.engine.connect() as conn:
        assert conn.execute(select(M.Study.not_patient)).scalar_one() is True
    assert not own_config.exists()
