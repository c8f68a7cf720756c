"""``srdose inspect``: every sample and real dose object read for a person, against golden output
(the synthetic vendors) and against what is known of the real files (their vendors' deviations, the
values an independent reader took from them); identifiers withheld unless asked for, and audited."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import dcmread

from srdose.parse.inspect import WITHHELD, inspect_path
from tests.conftest import SAMPLE_DATA, shared_file

GOLDEN = Path(__file__).parent / "golden" / "inspect"
# every sample, and one file of each vendor's folder in full (the golden text)
SAMPLES = sorted(p for p in SAMPLE_DATA.glob("*/*.dcm"))
IN_FULL = [sorted(d.glob("*.dcm"))[0] for d in sorted(SAMPLE_DATA.iterdir()) if d.is_dir() and any(d.glob("*.dcm"))]


def _golden_text(path: Path) -> str:
    r = inspect_path(path)
    stored = [json.dumps(e, sort_keys=True, default=str) for e in (*r.stored, *r.accumulated)]
    return "\n".join([*(text for text, _ in r.lines()), "stored:", *stored, f"flags: {r.flags}"]) + "\n"


@pytest.mark.parametrize("path", IN_FULL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_inspect_equals_its_golden_output(path):
    """The whole reading (tree, templates, deviations, stored events) of one file of each
    synthetic vendor; ``SRDOSE_UPDATE_GOLDEN=1`` writes it anew after a deliberate change (then
    read the diff)."""
    got = _golden_text(path)
    golden = GOLDEN / f"{path.parent.name}_{path.stem}.txt"
    if os.environ.get("SRDOSE_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(got)
    assert got == golden.read_text()


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_sample_is_read_for_a_person_as_ingest_reads_it(path):
    """Every sample: a tree for an SR, no refusal, the events ingest stores, as JSON too."""
    from srdose.parse import read_path

    r = inspect_path(path)
    assert r.refused is None
    assert [e["event_uid"] for e in r.stored] == [e.event_uid for e in read_path(path).events]
    assert bool(r.items) == ("SR" in r.sop_class)
    assert json.loads(json.dumps(r.as_dict(), default=str))["file"] == path.name


def test_samples_show_their_templates_and_vendor_quirks():
    """Checks of the golden output that do not rest on it: the templates labelled, the quirks the
    generator writes for each vendor found where they are."""
    giotto = inspect_path(SAMPLE_DATA / "giotto" / "giotto_2d.dcm")
    templates = {i.template for i in giotto.items if i.value_type == "CONTAINER"}
    assert {
        "TID 10001 Projection X-Ray Radiation Dose",
        "TID 10002 Accumulated X-Ray Dose",
        "TID 10003 Irradiation Event X-Ray Data",
    } <= templates
    accumulated = [i for i in giotto.items if i.concept[0] == "111637"]
    assert accumulated and all(i.template == "TID 10005 Accumulated Mammography X-Ray Dose" for i in accumulated)
    anode = [i for i in giotto.items if i.concept[:2] == ("113632", "DCM")]
    assert anode and all(any("IMS Giotto Class writes (113632, DCM)" in n for n in i.notes) for i in anode)
    assert len(anode) == len(giotto.stored)  # one per event
    hologic = inspect_path(SAMPLE_DATA / "hologic" / "hologic_2d.dcm")
    notes = [n for _, n in hologic.deviations]
    assert any("Hologic writes (113745, DCM) as the concept" in n for n in notes)
    assert any("unit 'uAs' is not UCUM" in n for n in notes)


def test_real_files_show_each_known_quirk_and_the_independent_values(expected_mammography):
    giotto = inspect_path(shared_file("MG-RDSR-Giotto-DBT.dcm"))
    assert sum("IMS Giotto Class writes (113632, DCM)" in n for _, n in giotto.deviations) == 4
    hologic = inspect_path(shared_file("MG-RDSR-Hologic_mix.dcm"))
    notes = [n for _, n in hologic.deviations]
    assert any("Hologic writes (111650, DCM) as the value" in n for n in notes)
    assert any("Hologic writes (113745, DCM) as the concept" in n for n in notes)
    assert any("legacy coding scheme SRT" in n for n in notes)
    zee = inspect_path(shared_file("RF-RDSR-Siemens-Zee.dcm"))
    assert any("unit 'Gym2' is not UCUM" in n for _, n in zee.deviations)
    assert zee.refused and "breast" in zee.refused  # read for a person, refused by ingest
    philips = inspect_path(shared_file("RF-RDSR-Philips_Allura.dcm"))
    assert any("private coding scheme 99PHI-IXR-XPER" in n for _, n in philips.deviations)
    canon = inspect_path(shared_file("DX-RDSR-Canon_CXDI.dcm"))
    assert any("no measured value" in n for _, n in canon.deviations)
    assert inspect_path(shared_file("ESR_non-dose.dcm")).refused
    # what srdose stores equals what the independent reader took from the files
    for name in ("MG-RDSR-Hologic_mix.dcm", "MG-RDSR-GEPristina-2D.dcm", "MG-RDSR-Giotto-DBT.dcm"):
        expected = expected_mammography[name]
        got = inspect_path(shared_file(name))
        assert got.refused is None and len(got.stored) == expected["n_events"]
        for event, want in zip(got.stored, expected["events"]):
            assert event["event_uid"] == want["event_uid"]
            # the kV of one of the event's pulses (a GE pre-pulse's is not the event's)
            assert any(event["kvp"] == pytest.approx(v) for v in _all(want["kvp"]))
            assert event["compressed_thickness_mm"] == pytest.approx(_first(want["compression_thickness_mm"]))
            if _first(want["agd_mGy"]) == 0:  # a zero AGD is no dose: not stored, and flagged
                assert event["agd_mgy"] is None and "zero:agd_mgy" in event["flags"]
            else:
                assert event["agd_mgy"] == pytest.approx(_first(want["agd_mGy"]))


def _all(value) -> list:
    return value if isinstance(value, list) else [value]


def _first(value):
    """The independent reader's value: a list holds one per pulse, repeated by some vendors."""
    return value[0] if isinstance(value, list) else value


def _run(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "srdose", *args], capture_output=True, text=True, env=env, timeout=120)


def test_identifiers_are_withheld_unless_asked_for_with_a_reason_and_audited(srdose_env, tmp_path):
    path = SAMPLE_DATA / "hologic" / "hologic_2d.dcm"
    ds = dcmread(path)
    name, pid = str(ds.PatientName), str(ds.PatientID)
    assert name and pid
    plain = _run("inspect", str(path))
    assert plain.returncode == 0, plain.stderr
    assert WITHHELD in plain.stdout and name not in plain.stdout and pid not in plain.stdout
    as_json = _run("inspect", "--json", str(path))
    assert as_json.returncode == 0
    (entry,) = json.loads(as_json.stdout)
    assert entry["header"]["PatientID"] == WITHHELD and pid not in as_json.stdout
    assert entry["events"] and entry["refused"] is None
    refused = _run("inspect", "--identifiable", str(path))
    assert refused.returncode == 2 and "--reason" in refused.stderr and pid not in refused.stdout
    shown = _run("inspect", "--identifiable", "--reason", "checking the unit's patient ID format", str(path))
    assert shown.returncode == 0 and pid in shown.stdout
    trail = _run("audit", "--json")
    assert trail.returncode == 0, trail.stderr
    lines = [json.loads(line) for line in trail.stdout.splitlines() if line.strip()]
    entries = [e for e in lines if e["action"] == "inspect.identifiable"]
    assert len(entries) == 1 and "checking the unit" in json.dumps(entries[0])
    missing = _run("inspect", str(tmp_path / "nothing.dcm"))
    assert missing.returncode == 2


def test_a_refused_file_exits_1_with_the_reason_and_text_from_the_file_is_literal(tmp_path):
    ds = dcmread(SAMPLE_DATA / "hologic" / "hologic_2d.dcm")
    ds.StationName = "[red]ROOM[/red] \x1b[2J"
    marked = tmp_path / "marked.dcm"
    ds.save_as(marked)
    (tmp_path / "not_dicom.dcm").write_text("this is not DICOM\n")
    r = _run("inspect", str(marked), str(tmp_path / "not_dicom.dcm"))
    assert r.returncode == 1
    assert "[red]ROOM[/red] ?[2J" in r.stdout and "\x1b" not in r.stdout
    assert "not_dicom.dcm: srdose would refuse it" in r.stderr


def test_a_damaged_object_is_read_as_far_as_it_goes_and_never_raises():
    from srdose.parse.inspect import inspect_bytes

    data = (SAMPLE_DATA / "hologic" / "hologic_2d.dcm").read_bytes()
    for cut in (0, 132, 200, 5000, len(data) // 2, len(data) - 10):
        r = inspect_bytes(data[:cut], f"cut at {cut}")
        assert r.refused, cut  # what ingest would say of it
        assert not r.stored
