"""``srdose export fhir``: per study a Bundle of HL7 Radiation Dose Summary Observations, one per
breast, each validated by the FHIR library (fhir.resources) and holding the profile's required
elements; the doses equal the database's; no patient identifier leaves."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from srdose import export as X
from srdose.recalc.engine import Params
from srdose.recalc.run import resolve_factor_set
from srdose.recalc.run import run as recalc_run
from srdose.store import models as M
from tests.conftest import SAMPLE_DATA

fhir_bundle = pytest.importorskip("fhir.resources.R4B.bundle")


def _database_doses(store) -> dict[tuple[str, str], tuple[float, float]]:
    """(study UID, laterality) -> (reported accumulated AGD, sum of recalculated MGDs), read here
    with plain queries of the tables."""
    St, S, A, E, R = M.Study, M.SourceObject, M.AccumulatedDose, M.Event, M.RecalcResult
    live = S.superseded_by.is_(None)
    with store.engine.connect() as conn:
        reported = dict(
            ((uid, lat), agd)
            for uid, lat, agd in conn.execute(
                select(St.study_instance_uid, A.laterality, func.sum(A.agd_mgy))
                .join(St, A.study_id == St.id)
                .join(S, A.source_object_id == S.id)
                .where(live)
                .group_by(St.study_instance_uid, A.laterality)
            )
        )
        recalculated = dict(
            ((uid, lat), mgd)
            for uid, lat, mgd in conn.execute(
                select(St.study_instance_uid, E.laterality, func.sum(R.mgd_recalc_mgy))
                .join(St, E.study_id == St.id)
                .join(S, E.source_object_id == S.id)
                .join(R, R.event_id == E.id)
                .where(live)
                .group_by(St.study_instance_uid, E.laterality)
            )
        )
    return {k: (reported.get(k), recalculated.get(k)) for k in set(reported) | set(recalculated)}


def test_every_study_is_a_valid_radiation_dose_summary_with_the_databases_doses(store, ingestor, tmp_path):
    manifest = json.loads((SAMPLE_DATA / "manifest.json").read_text())
    ingestor.ingest_paths([SAMPLE_DATA])
    recalc_run(store, resolve_factor_set(store, "bundled"), Params())
    out = tmp_path / "fhir"
    n = X.export_fhir(store, out)
    files = sorted(out.glob("*.json"))
    assert n == len(files) > 5
    expected = _database_doses(store)
    seen = 0
    for path in files:
        text = path.read_text()
        assert path.stat().st_mode & 0o077 == 0
        bundle = fhir_bundle.Bundle.model_validate_json(text)  # the FHIR library's own reading
        for entry in json.loads(text)["entry"]:
            obs = entry["resource"]
            assert X.profile_problems(obs) == []
            study = obs["partOf"][0]["identifier"]["value"].removeprefix("urn:oid:")
            lat = {"73056007": "R", "80248007": "L"}[obs["bodySite"]["coding"][0]["code"]]
            values = {c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"] for c in obs["component"]}
            reported, recalculated = expected[(study, lat)]
            assert values["111637"] == pytest.approx(reported, abs=1e-4)
            if "mgd-recalculated" in values:
                assert values["mgd-recalculated"] == pytest.approx(recalculated, abs=1e-4)
            assert obs["subject"]["identifier"]["system"] == X.PSEUDONYM_SYSTEM
            seen += 1
        assert bundle.type == "collection"
    assert seen >= n
    everything = "".join(p.read_text() for p in files)
    for st in manifest["studies"]:
        ids = st["identifiers"]
        for value in (ids["patient_id"], ids["accession_number"], ids["patient_birth_date"], ids["patient_name"]):
            assert value not in everything


def test_a_profile_problem_is_named():
    obs = {"resourceType": "Observation", "code": {"coding": []}, "component": []}
    problems = X.profile_problems(obs)
    assert "code is not LOINC 73569-6" in problems
    assert "subject is required (1..1)" in problems and "focus must hold exactly one reference" in problems


def test_export_fhir_refuses_a_bad_study_uid(srdose_env):
    r = subprocess.run(
        [sys.executable, "-m", "srdose", "export", "fhir", "--out", "x", "--study", "1.2.abc"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )
    assert r.returncode == 2 and "not a DICOM UID" in r.stderr
