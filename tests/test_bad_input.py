"""Bad input never crashes a run and is never lost.

Dataset-level damage (not DICOM, truncated, not an SR, no content, absurd
nesting) sends the dataset to quarantine with a reason. Item-level damage
(a NUM with no value, a unit we cannot convert, a huge text) keeps the
report but turns that value into NULL plus a flag that names it: losing a
whole screening examination for one broken item would be worse.
"""

from __future__ import annotations

import json
import os

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from sqlalchemy import select

from srdose.store import models as M
from tests import builders as B


def _ingest_files(ingestor, tmp_path, named_bytes):
    folder = tmp_path / "in"
    folder.mkdir()
    for name, data in named_bytes.items():
        (folder / name).write_bytes(data)
    return ingestor.ingest_paths([folder])


def _deep(depth: int) -> Dataset:
    ds = B.rdsr()
    node = B.item("CONTAINS", "CONTAINER", ("113706", "DCM", "Irradiation Event X-Ray Data"))
    top = node
    for _ in range(depth):
        child = B.item("CONTAINS", "CONTAINER", ("113771", "DCM", "X-Ray Filters"))
        node.ContentSequence = Sequence([child])
        node = child
    ds.ContentSequence.append(top)
    return ds


def _deep_bytes(depth: int) -> bytes:
    # pydicom writes nested sequences recursively: give it the stack it needs
    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, depth * 30))
    try:
        return B.to_bytes(_deep(depth))
    finally:
        sys.setrecursionlimit(limit)


def _ct_image() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    ds.SOPInstanceUID = "1.2.3.4.5.6"
    ds.StudyInstanceUID = "1.2.3.4.5"
    ds.Modality = "CT"
    ds.PatientID = "X"
    return ds


def test_dataset_level_damage_is_quarantined_with_reasons(ingestor, tmp_path, store):
    good = B.to_bytes(B.rdsr())
    no_content = B.rdsr(content=False)
    files = {
        "good.dcm": good,
        "truncated.dcm": good[: len(good) // 2],
        "random.bin": os.urandom(4096),
        "empty.dcm": b"",
        "ct-image.dcm": B.to_bytes(_ct_image()),
        "no-content.dcm": B.to_bytes(no_content),
        "deep.dcm": _deep_bytes(1000),
    }
    summary = _ingest_files(ingestor, tmp_path, files)
    assert summary.files == 7
    assert summary.outcomes["ingested"] == 1
    assert summary.n_quarantined == 6
    with store.engine.connect() as conn:
        rows = conn.execute(select(M.Quarantine.kind, M.Quarantine.reason, M.Quarantine.stored_as)).all()
    reasons = sorted(r.reason for r in rows)
    assert any("not a DICOM Part 10 file" in r for r in reasons)  # random bytes, empty
    assert any(r.startswith("file is truncated") for r in reasons)
    assert any("CT Image Storage" in r and "not a dose object" in r for r in reasons)
    assert any("no ContentSequence" in r for r in reasons)
    assert any("nested more than" in r for r in reasons)
    # each quarantined dataset is kept byte for byte, with a JSON note
    for r in rows:
        kept = open(r.stored_as, "rb").read()
        note = json.loads(open(r.stored_as[:-4] + ".json").read())
        assert note["reason"] == r.reason and note["bytes"] == len(kept)
    assert {open(r.stored_as, "rb").read() for r in rows} == {v for k, v in files.items() if k != "good.dcm"}


def test_truncated_at_many_points_never_crashes(ingestor, tmp_path):
    good = B.to_bytes(B.rdsr(events=[B.event(), B.event(laterality=("7771000", "SCT", "Left"))]))
    files = {f"cut{n}.dcm": good[:n] for n in range(0, len(good), max(1, len(good) // 60))}
    summary = _ingest_files(ingestor, tmp_path, files)
    assert summary.files == len(files)
    # a file cut inside the content tree either refuses or keeps what it read;
    # every one is accounted for
    assert sum(summary.outcomes.values()) + summary.n_quarantined == len(files)


def test_num_without_value_and_unknown_unit_are_flagged_not_fatal(ingestor, tmp_path, store):
    ev = B.event()
    for child in ev.ContentSequence:
        name = child.ConceptNameCodeSequence[0].CodeValue
        if name == "111631":  # AGD: MeasuredValueSequence removed
            del child.MeasuredValueSequence
        if name == "113733":  # KVP in a unit nobody defines
            child.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue = "kVolt"
    summary = _ingest_files(ingestor, tmp_path, {"broken-items.dcm": B.to_bytes(B.rdsr(events=[ev]))})
    assert summary.outcomes["ingested"] == 1
    with store.engine.connect() as conn:
        row = conn.execute(select(M.Event.kvp, M.Event.agd_mgy, M.Event.flags, M.Event.hvl_mm)).one()
    assert row.kvp is None and row.agd_mgy is None
    flags = row.flags.split(";")
    assert "no_value:agd_mgy" in flags
    assert "unit:kvp:kVolt" in flags
    assert row.hvl_mm == 0.52  # the rest of the event is kept


def test_ten_megabyte_string_is_cut_and_flagged(ingestor, tmp_path, store):
    huge = "A" * (10 * 1024 * 1024)
    ev = B.event(extra=[B.item("CONTAINS", "TEXT", ("125203", "DCM", "Acquisition Protocol"), text=huge)])
    ds = B.rdsr(events=[ev])
    ds.StudyDescription = huge[:64]
    summary = _ingest_files(ingestor, tmp_path, {"huge.dcm": B.to_bytes(ds)})
    assert summary.outcomes["ingested"] == 1
    with store.engine.connect() as conn:
        row = conn.execute(select(M.Event.protocol, M.Event.flags)).one()
    assert len(row.protocol) == 1024
    assert "truncated:protocol" in row.flags


def test_a_non_dose_sr_is_refused():
    from srdose.parse import NotADoseReport, read_bytes

    ds = B.rdsr()
    ds.ConceptNameCodeSequence = Sequence([B.code("18748-4", "LN", "Diagnostic Imaging Report")])
    with pytest.raises(NotADoseReport) as info:
        read_bytes(B.to_bytes(ds))
    assert "Diagnostic Imaging Report" in info.value.reason


def test_sop_class_without_study_uid_is_malformed():
    from srdose.parse import Malformed, read_bytes

    ds = B.rdsr()
    del ds.StudyInstanceUID
    with pytest.raises(Malformed, match="no Study Instance UID"):
        read_bytes(B.to_bytes(ds))


def test_content_walk_refuses_absurd_depth_in_memory():
    """A dataset handed over in memory (as the listener gets it) is checked too."""
    from srdose.parse import Malformed, read_dataset

    with pytest.raises(Malformed, match="nested more than 32 levels"):
        read_dataset(_deep(40))


def test_header_or_deflated_body_cut_short_is_malformed():
    """pydicom's own struct and zlib errors on a cut file are a refusal, not a crash."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from srdose.parse import Malformed, read_bytes

    data = B.to_bytes(B.rdsr())
    mid_header = data.index(b"\x40\x00\x30\xa7SQ") + 10  # inside the ContentSequence's length
    deflated = B.to_bytes(B.rdsr(), DeflatedExplicitVRLittleEndian)
    for cut in (data[:mid_header], deflated[:-20]):
        with pytest.raises(Malformed, match="truncated or damaged"):
            read_bytes(cut)


def test_file_and_folder_names_stay_out_of_the_database(ingestor, tmp_path, store):
    """PACS exports often name folders after patients: no path reaches the
    database (the quarantine note beside the kept file has it)."""
    folder = tmp_path / "TESTPERSON_ALICE_NHS9434765919"
    folder.mkdir()
    (folder / "ALICE.dcm").write_bytes(b"garbage, not DICOM")
    (folder / "ok.dcm").write_bytes(B.to_bytes(B.rdsr()))
    ingestor.ingest_paths([folder])
    with store.engine.connect() as conn:
        text = " ".join(
            str(v) for table in M.Base.metadata.sorted_tables for row in conn.execute(select(table)) for v in row
        )
    assert "TESTPERSON" not in text and "ALICE" not in text and "9434765919" not in text
