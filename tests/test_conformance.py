"""``srdose conformance``: each unit's deviations from the templates, from the database and from a
sample read through highdicom, and the survey verdict. A clean report has nothing to say; each
known quirk of the synthetic vendors and of the real files is found where it is."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

from srdose.curation import conformance as K
from srdose.parse import read_bytes
from tests import builders as B
from tests.conftest import SAMPLE_DATA, shared_file


def _add(store, ds) -> None:
    with store.begin() as conn:
        store.add(conn, read_bytes(B.to_bytes(ds)), "0" * 64, "test")


def test_a_clean_report_has_nothing_to_say(store, tmp_path):
    ds = B.rdsr(events=[B.event(), B.event(laterality=("7771000", "SCT", "Left"))])
    _add(store, ds)
    (unit,) = K.from_database(store).values()
    assert (unit.events, unit.findings, unit.verdict) == (2, {}, K.PASS)
    path = tmp_path / "clean.dcm"
    path.write_bytes(B.to_bytes(ds))
    units = K.from_database(store)
    K.add_sample(units, [path])
    (unit,) = units.values()
    assert (unit.sampled, unit.findings, unit.verdict) == (1, {}, K.PASS)


def test_an_unreadable_unit_fails_a_value_written_as_zero_does_not(store):
    """An AGD in a unit srdose cannot read leaves the event without what the survey needs: fail.
    An AGD written as 0 is the device saying "not measured": a quirk."""
    zero = B.rdsr(events=[B.event(agd="0")])
    _add(store, zero)
    (unit,) = K.from_database(store).values()
    assert unit.verdict == K.QUIRKS and set(unit.findings) == {"database:zero:agd_mgy"}
    odd = B.rdsr(events=[B.event()])
    agd = next(i for i in odd.ContentSequence[-1].ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "111631")
    agd.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue = "furlong"
    _add(store, odd)
    (unit,) = K.from_database(store).values()
    found = unit.findings["database:unit:agd_mgy:furlong"]
    assert found.fails and found.count == 1 and found.first == found.last == "20250102"
    assert unit.verdict == K.FAIL


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "srdose", *args], capture_output=True, text=True, env=dict(os.environ), timeout=600
    )


def test_the_synthetic_vendors_quirks_are_found_where_they_are(srdose_env, tmp_path):
    assert _run("ingest", str(SAMPLE_DATA)).returncode == 0
    assert _run("recalc").returncode in (0, 1)  # finds the DBT sweeps reported as one projection
    r = _run("conformance", "--sample", str(SAMPLE_DATA), "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stdout + r.stderr  # every unit usable: quirks, no failure
    rows = list(csv.DictReader((tmp_path / "out" / "conformance.csv").open()))
    by_maker: dict[str, set[tuple[str, str]]] = {}
    for row in rows:
        by_maker.setdefault(row["manufacturer"], set()).add((row["source"], row["rule"]))
    assert {("sample", "vendor_code:DCM:113745"), ("sample", "vendor_code:DCM:111650"), ("sample", "unit:uAs")} <= (
        by_maker["HOLOGIC, Inc."]
    )
    assert ("database", "zero:agd_mgy") in by_maker["HOLOGIC, Inc."]  # the 20 kV exposures
    assert ("sample", "vendor_code:DCM:113632") in by_maker["IMS GIOTTO S.p.A."]
    siemens = by_maker.get("Siemens Healthineers", set()) | by_maker.get("SIEMENS", set())
    assert ("database", "dbt_mas_one_projection") in siemens
    assert {row["verdict"] for row in rows} <= {K.PASS, K.QUIRKS}
    assert (tmp_path / "out" / "conformance.csv").stat().st_mode & 0o077 == 0


def test_the_real_files_quirks_and_refusals_are_found():
    units: dict = {}
    names = [
        "MG-RDSR-Giotto-DBT.dcm",
        "MG-RDSR-Hologic_mix.dcm",
        "RF-RDSR-Siemens-Zee.dcm",
        "DX-RDSR-Canon_CXDI.dcm",
        "RF-RDSR-Philips_Allura.dcm",
    ]
    K.add_sample(units, [shared_file(n) for n in names])
    by_maker = {u.manufacturer: u for u in units.values()}
    assert "sample:vendor_code:DCM:113632" in by_maker["IMS GIOTTO S.p.A."].findings
    hologic = by_maker["HOLOGIC, Inc."]
    assert {"sample:vendor_code:DCM:111650", "sample:vendor_code:DCM:113745"} <= set(hologic.findings)
    assert hologic.verdict == K.QUIRKS
    zee = next(u for u in units.values() if "sample:unit:Gym2" in u.findings)
    assert zee.verdict == K.FAIL and zee.findings["sample:refused"].fails  # fluoroscopy: not for srdose
    canon = next(u for u in units.values() if u.manufacturer.startswith("Canon"))
    assert "sample:empty_value" in canon.findings
    assert any(k.startswith("sample:private_scheme:99PHI") for u in units.values() for k in u.findings)
