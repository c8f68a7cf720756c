"""Ingest, store and parse under hostile or unlucky input.

* a UID breaking PS3.5 9.1 is refused before anything is stored;
* a dataset the database cannot hold is quarantined alone, the rest commits;
* a transient database error is retried, never a reason to quarantine, and
  leaves no cached row id behind;
* a SOP Instance UID reused for other content is quarantined, the first kept;
* every stored number is within bounds or NULL with a flag; invalid dates too;
* no temporary file is left when a write fails;
* ages are whole years;
* in a folder, a file is DICOM by its content, not its name.

Database tests run on SQLite and PostgreSQL (the ``db_url`` / ``store`` fixtures).
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import sqlite3

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian, generate_uid
from sqlalchemy import event, func, select, text
from sqlalchemy import exc as sa_exc

from srdose.ingest import Ingestor, iter_files
from srdose.parse import Malformed, age_in_years, read_bytes
from srdose.quarantine import QuarantineFolder
from srdose.store import models as M
from tests import builders as B
from tests.conftest import SAMPLE_DATA

# pydicom warns about the invalid values these tests write on purpose
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _folder(tmp_path, named_bytes, name="in"):
    folder = tmp_path / name
    folder.mkdir()
    for fname, data in named_bytes.items():
        (folder / fname).write_bytes(data)
    return folder


def _quarantine_rows(store):
    with store.engine.connect() as conn:
        return conn.execute(
            select(M.Quarantine.kind, M.Quarantine.reason, M.Quarantine.sop_instance_uid, M.Quarantine.stored_as)
        ).all()


def _count(store, model):
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


# --- UIDs ----------------------------------------------------------------------------

BAD_UIDS = {
    "72 characters": "1." + "2" * 70,
    "NUL inside": "1.2.3\x004.5",
    "leading zero": "1.2.03.4",
    "empty component": "1.2..4",
    "letters": "1.2.abc",
}


@pytest.mark.parametrize("attribute", ["SOPInstanceUID", "StudyInstanceUID", "event"])
@pytest.mark.parametrize("problem", sorted(BAD_UIDS))
def test_an_invalid_uid_refuses_the_dataset(attribute, problem):
    bad = BAD_UIDS[problem]
    if attribute == "event":
        ds = B.rdsr(events=[B.event(uid=bad)])
    else:
        ds = B.rdsr()
        setattr(ds, attribute, bad)
    data = B.to_bytes(ds)
    with pytest.raises(Malformed, match="is not a valid DICOM UID") as info:
        read_bytes(data)
    assert "PS3.5 9.1" in info.value.reason


def test_invalid_uids_are_quarantined_with_a_reason_and_the_rest_is_stored(ingestor, store, tmp_path):
    long_uid = B.to_bytes(B.rdsr(sop_uid=BAD_UIDS["72 characters"]))
    nul_uid = B.to_bytes(B.rdsr(sop_uid=BAD_UIDS["NUL inside"]))
    good = [B.to_bytes(B.rdsr()) for _ in range(3)]
    folder = _folder(
        tmp_path, {"a.dcm": good[0], "b-long.dcm": long_uid, "c.dcm": good[1], "d-nul.dcm": nul_uid, "e.dcm": good[2]}
    )
    summary = ingestor.ingest_paths([folder])
    assert summary.outcomes["ingested"] == 3
    assert summary.quarantined == {"malformed": 2}
    rows = _quarantine_rows(store)
    assert len(rows) == 2
    assert all("not a valid DICOM UID" in r.reason and r.sop_instance_uid is None for r in rows)
    assert any("72 characters long" in r.reason for r in rows)
    assert any("other than digits and dots" in r.reason for r in rows)
    assert _count(store, M.SourceObject) == 3


def test_a_quarantine_record_takes_any_sop_instance_uid(store):
    """A UID that is refused at the door is not a UID the quarantine table can hold."""
    with store.begin() as conn:
        store.add_quarantine(
            conn, "malformed", "bad\x00reason", "0" * 64, BAD_UIDS["72 characters"], "/q/x.dcm", "dicom:MOD\x00ALITY"
        )
        store.add_quarantine(conn, "malformed", "bad", "1" * 64, BAD_UIDS["NUL inside"], "/q/y.dcm", None)
    rows = _quarantine_rows(store)
    assert [r.sop_instance_uid for r in rows] == [None, None]
    assert rows[0].reason == "badreason"


# --- a dataset the database cannot hold --------------------------------------------------

REFUSED_UID = "1.2.826.0.1.3680043.2.1143.999.1"


def _refuse_in_database(store):
    """Triggers that make the database refuse one SOP Instance UID in every
    table that would name it: a dataset it cannot hold at all."""
    with store.begin() as conn:
        if store.engine.dialect.name == "sqlite":
            for table in ("source_objects", "quarantine"):
                conn.exec_driver_sql(
                    f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
                    f"WHEN NEW.sop_instance_uid = '{REFUSED_UID}' "
                    "BEGIN SELECT RAISE(ABORT, 'refused by the database'); END"
                )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse_uid() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.sop_instance_uid = '{REFUSED_UID}' THEN "
                "RAISE EXCEPTION 'refused by the database'; END IF; RETURN NEW; END $$"
            )
            for table in ("source_objects", "quarantine"):
                conn.exec_driver_sql(
                    f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION refuse_uid()"
                )


def test_a_dataset_the_database_refuses_is_quarantined_alone(ingestor, store, tmp_path):
    _refuse_in_database(store)
    files = {f"{i}.dcm": B.to_bytes(B.rdsr()) for i in range(4)}
    files["2-refused.dcm"] = B.to_bytes(B.rdsr(sop_uid=REFUSED_UID))
    summary = ingestor.ingest_paths([_folder(tmp_path, files)])
    assert summary.outcomes["ingested"] == 4
    assert summary.quarantined == {"store_error": 1}
    (row,) = _quarantine_rows(store)
    assert row.kind == "store_error" and "refused by the database" in row.reason
    assert open(row.stored_as, "rb").read() == files["2-refused.dcm"]
    assert _count(store, M.SourceObject) == 4


# --- transient database errors ------------------------------------------------------------


def _fail_once(store, when: str, match=None):
    """Make the database fail once, as a full disk does: at the next COMMIT
    (``when="commit"``) or at the next statement containing ``match``."""
    state = {"left": 1}

    def disk_full(statement="COMMIT"):
        state["left"] -= 1
        raise sa_exc.OperationalError(statement, {}, sqlite3.OperationalError("database or disk is full"))

    if when == "commit":

        @event.listens_for(store.engine, "commit")
        def _commit(conn):
            if state["left"]:
                disk_full()
    else:

        @event.listens_for(store.engine, "before_cursor_execute")
        def _execute(conn, cursor, statement, parameters, context, executemany):
            if state["left"] and match in statement:
                disk_full(statement)

    return state


def test_a_rolled_back_unit_is_not_remembered(store):
    """The unit row written by a transaction that rolled back is gone: the
    next report of that unit writes it again."""
    ds = B.rdsr()
    with pytest.raises(RuntimeError):
        with store.begin() as conn:
            store.add(conn, read_bytes(B.to_bytes(ds)), "a" * 64, "test")
            raise RuntimeError("the disk filled up here")
    assert _count(store, M.Device) == 0
    with store.begin() as conn:
        assert store.add(conn, read_bytes(B.to_bytes(B.rdsr())), "b" * 64, "test").value == "ingested"
    assert _count(store, M.Device) == 1


def test_a_unit_rolled_back_to_a_savepoint_is_not_remembered(store):
    with store.begin() as conn:
        with pytest.raises(RuntimeError):
            with conn.begin_nested():
                store.add(conn, read_bytes(B.to_bytes(B.rdsr())), "a" * 64, "test")
                raise RuntimeError("this dataset failed after its unit was written")
        assert store.add(conn, read_bytes(B.to_bytes(B.rdsr())), "b" * 64, "test").value == "ingested"
    assert _count(store, M.Device) == 1 and _count(store, M.Study) == 1


@pytest.mark.parametrize("when", ["commit", "statement"])
def test_a_transient_error_is_retried_and_quarantines_nothing(store, tmp_path, when):
    ingestor = Ingestor(store, QuarantineFolder(tmp_path / "quarantine"), batch_size=2, retry_wait=0.01)
    state = _fail_once(store, when, match="INSERT INTO events")
    # one new unit: its row is written by the first batch, the one that fails
    files = {f"{i:02d}.dcm": B.to_bytes(B.rdsr()) for i in range(7)}
    summary = ingestor.ingest_paths([_folder(tmp_path, files)])
    assert state["left"] == 0  # the failure did happen
    assert summary.outcomes["ingested"] == 7 and summary.n_quarantined == 0
    assert _count(store, M.Quarantine) == 0 and _count(store, M.SourceObject) == 7
    assert _count(store, M.Device) == 1
    assert not (tmp_path / "quarantine").exists() or not any((tmp_path / "quarantine").iterdir())


def test_a_database_that_stays_down_stops_the_run_and_quarantines_nothing(store, tmp_path):
    from srdose.ingest import DatabaseUnavailable

    ingestor = Ingestor(store, QuarantineFolder(tmp_path / "quarantine"), batch_size=2, retries=3, retry_wait=0.01)
    state = _fail_once(store, "commit")
    state["left"] = 10**6
    with pytest.raises(DatabaseUnavailable, match="nothing of this batch was lost"):
        ingestor.ingest_paths([_folder(tmp_path, {"a.dcm": B.to_bytes(B.rdsr())})])
    state["left"] = 0
    assert _count(store, M.Quarantine) == 0 and _count(store, M.SourceObject) == 0


# --- one SOP Instance UID, two contents ------------------------------------------------------


def test_a_reused_sop_instance_uid_with_other_content_is_quarantined(ingestor, store, tmp_path):
    sop, study = generate_uid(), generate_uid()
    first = B.rdsr(sop_uid=sop, study_uid=study)
    other_patient = B.rdsr(sop_uid=sop, study_uid=study, patient={**B.PATIENT, "PatientID": "NHS0000000001"})
    other_kvp = B.rdsr(events=[B.event(kvp="31")], sop_uid=sop, study_uid=study)
    # the same object again, encoded otherwise (as a PACS may send it): a duplicate
    same_again = B.to_bytes(
        B.rdsr(events=first.ContentSequence[1:], sop_uid=sop, study_uid=study), ImplicitVRLittleEndian
    )
    files = {
        "1.dcm": B.to_bytes(first),
        "2.dcm": B.to_bytes(other_patient),
        "3.dcm": B.to_bytes(other_kvp),
        "4.dcm": same_again,
        "5.dcm": B.to_bytes(first),
    }
    summary = ingestor.ingest_paths([_folder(tmp_path, files)])
    assert summary.outcomes == {"ingested": 1, "duplicate": 2}
    assert summary.quarantined == {"conflict": 2}
    rows = _quarantine_rows(store)
    assert {r.kind for r in rows} == {"conflict"}
    assert all(
        r.reason.startswith("same SOP Instance UID as an object already stored, different content")
        and r.sop_instance_uid == sop
        for r in rows
    )
    assert {open(r.stored_as, "rb").read() for r in rows} == {files["2.dcm"], files["3.dcm"]}
    with store.engine.connect() as conn:
        assert conn.execute(select(M.Event.kvp)).scalars().all() == [28.0]  # the first is kept


# --- bounds and flags ---------------------------------------------------------------------------

PULSES = ("113768", "DCM", "Number of Pulses")
FILTER_MIN = ("113758", "DCM", "X-Ray Filter Thickness Minimum")


def _float_num(name, value, unit):
    """A NUM item carrying its value as FD (Floating Point Value), which can hold inf and NaN."""
    node = B.num(name, "1", unit)
    node.MeasuredValueSequence[0].FloatingPointValue = value
    return node


def _event_with_filter(thickness):
    ev = B.event()
    for child in ev.ContentSequence:
        if child.ValueType == "CONTAINER":
            for f in child.ContentSequence:
                if f.ConceptNameCodeSequence[0].CodeValue in ("113758", "113773"):
                    f.MeasuredValueSequence[0].FloatingPointValue = thickness
    return ev


def _accumulated(value):
    return B.item(
        "CONTAINS",
        "CONTAINER",
        ("113702", "DCM", "Accumulated X-Ray Dose Data"),
        children=[
            B.item("HAS CONCEPT MOD", "CODE", ("272741003", "SCT", "Laterality"), code=("24028007", "SCT", "Right")),
            _float_num(("111637", "DCM", "Accumulated Average Glandular Dose"), value, "mGy"),
        ],
    )


@pytest.mark.parametrize("value", [math.inf, -math.inf, -1.0, math.nan])
def test_out_of_bounds_numbers_are_null_with_a_flag(value, ingestor, store, tmp_path):
    ev = _event_with_filter(value)
    ev.ContentSequence.append(_float_num(PULSES, value, "{pulses}"))
    ev.ContentSequence.append(_float_num(("111648", "DCM", "Compression Pressure"), value, "kPa"))
    ev.ContentSequence.append(_float_num(("112011", "DCM", "Positioner Primary Angle"), value * 1000, "deg"))
    ds = B.rdsr(events=[ev])
    ds.ContentSequence.append(_accumulated(value))
    summary = ingestor.ingest_paths([_folder(tmp_path, {"a.dcm": B.to_bytes(ds)})])
    assert summary.outcomes["ingested"] == 1 and summary.n_quarantined == 0
    with store.engine.connect() as conn:
        e = conn.execute(
            select(
                M.Event.filter_thickness_mm,
                M.Event.n_pulses,
                M.Event.flags,
                M.Event.compression_pressure_kpa,
                M.Event.positioner_primary_angle_deg,
                M.Event.kvp,
            )
        ).one()
        f = conn.execute(select(M.Filter.thickness_min_mm, M.Filter.thickness_max_mm)).one()
        a = conn.execute(select(M.AccumulatedDose.agd_mgy)).one()
        src_flags = conn.execute(select(M.SourceObject.flags)).scalar_one()
    assert e.filter_thickness_mm is None and tuple(f) == (None, None)
    assert e.compression_pressure_kpa is None and e.positioner_primary_angle_deg is None
    assert e.n_pulses == 1  # the reported number is refused; the pulses counted remain
    assert a.agd_mgy is None
    flags = e.flags.split(";")
    for name in (
        "filter_min_mm",
        "filter_max_mm",
        "n_pulses",
        "compression_pressure_kpa",
        "positioner_primary_angle_deg",
    ):
        assert f"absurd:{name}" in flags
    assert "absurd:accumulated_agd" in src_flags.split(";")
    assert e.kvp == 28.0  # the rest of the event is kept


def test_every_stored_number_is_within_the_plausibility_bounds():
    """Derived values are checked too: 2000 mA for 60 s is no mammogram."""
    from srdose.parse.rdsr import PLAUSIBLE

    ev = B.event(
        extra=[
            B.num(("113734", "DCM", "X-Ray Tube Current"), "2000", "mA"),
            B.num(("113824", "DCM", "Exposure Time"), "60000", "ms"),
        ]
    )
    ev.ContentSequence = Sequence([c for c in ev.ContentSequence if c.ConceptNameCodeSequence[0].CodeValue != "113736"])
    (event_,) = read_bytes(B.to_bytes(B.rdsr(events=[ev]))).events
    assert event_.mas is None and "absurd:mas" in event_.flags
    assert event_.tube_current_ma == 2000.0
    assert {"filter_min_mm", "n_pulses", "accumulated_agd", "mas"} <= set(PLAUSIBLE)


def test_invalid_dates_and_times_are_null_with_a_flag():
    ds = B.rdsr(events=[B.event(start="20251341256199")])
    ds.StudyDate, ds.StudyTime = "20251340", "256199"
    report = read_bytes(B.to_bytes(ds))
    assert report.study.study_date is None and report.study.study_time is None
    assert {"invalid:study_date", "invalid:study_time"} <= set(report.flags)
    (ev,) = report.events
    assert ev.datetime_started is None and "invalid:datetime_started" in ev.flags
    # valid ones are kept; the old HH:MM:SS form is read
    ds = B.rdsr(events=[B.event(start="20250102093000.123+0100")])
    ds.StudyTime = "09:29:00.5"
    report = read_bytes(B.to_bytes(ds))
    assert report.study.study_date == "20250102" and report.study.study_time == "092900"
    assert report.events[0].datetime_started == "20250102093000.123+0100"


def test_the_mg_image_header_bounds_every_number():
    ds = _mg_image()
    ds.FilterThicknessMinimum, ds.FilterThicknessMaximum = "-1", "inf"
    ds.PositionerPrimaryAngle = "9999"
    report = read_bytes(_image_bytes(ds))
    (ev,) = report.events
    assert ev.filter_thickness_mm is None and ev.positioner_primary_angle_deg is None
    assert {
        "absurd:filter_thickness_mm",
        "absurd:filter_min_mm",
        "absurd:filter_max_mm",
        "absurd:positioner_primary_angle_deg",
    } <= set(ev.flags)


# --- temporary files --------------------------------------------------------------------------------


def _disk_full_after(monkeypatch, n_bytes):
    real = os.write
    budget = {"left": n_bytes}

    def write(fd, data):
        if budget["left"] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = min(len(data), budget["left"], 4096)
        budget["left"] -= n
        return real(fd, bytes(data[:n]))

    monkeypatch.setattr(os, "write", write)


@pytest.mark.parametrize("after", [0, 10000])
def test_a_full_disk_leaves_no_temporary_file_in_quarantine_or_spool(tmp_path, monkeypatch, after):
    from srdose.spool import Spool, SpoolError

    quarantine = QuarantineFolder(tmp_path / "quarantine")
    spool = Spool(tmp_path / "spool")
    _disk_full_after(monkeypatch, after)
    with pytest.raises(OSError, match="No space left"):
        quarantine.put(os.urandom(50000), "ab" * 32, "malformed", "why", "file")
    with pytest.raises(SpoolError):
        spool.put(os.urandom(50000), "MODALITY")
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "quarantine").iterdir()) == []
    assert [p.name for p in (tmp_path / "spool").iterdir()] == []


# --- ages ---------------------------------------------------------------------------------------------


def test_ages_are_completed_years():
    assert age_in_years("19640229", "20250102", None) == 60
    assert age_in_years("19640102", "20250102", None) == 61  # the birthday itself
    assert age_in_years(None, "20250102", "060Y") == 60
    assert age_in_years(None, "20250102", "730M") == 60
    assert age_in_years("19640229", "20250102", None, resolution=5) == 60
    assert age_in_years("19600102", "20250101", None, resolution=5) == 60


def test_a_real_rdsr_does_not_give_its_birth_date_back():
    """Every birth date within the same year of age gives the same stored age:
    the study date and the age narrow the birth date to a year, no better."""
    import datetime as dt

    import pydicom

    path = SAMPLE_DATA / "hologic" / "hologic_2d.dcm"
    ds = pydicom.dcmread(path)
    study = dt.datetime.strptime(ds.StudyDate, "%Y%m%d").date()
    ages = set()
    for days_before in range(0, 366, 7):  # birth dates across one year of age
        born = study.replace(year=study.year - 55) - dt.timedelta(days=days_before)
        if (study.replace(year=study.year - 55) - born).days >= 365:
            break
        ds.PatientBirthDate = born.strftime("%Y%m%d")
        buf = io.BytesIO()
        ds.save_as(buf)
        age = read_bytes(buf.getvalue()).study.age_years
        assert age == int(age)
        ages.add(age)
    assert ages == {55}


def test_stored_ages_are_whole_years_and_old_ones_are_floored_by_the_migration(db_url, pseudonymiser):
    from srdose.store import DoseStore
    from srdose.store.database import make_engine, upgrade

    engine = make_engine(db_url)
    upgrade(engine, "0004")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO studies (study_instance_uid, age_years, not_patient) "
                "VALUES ('1.2.3', 60.84, false), ('1.2.4', 49.99, false)"
            )
        )
    engine.dispose()
    store = DoseStore(db_url, pseudonymiser)
    with store.begin() as conn:
        store.add(conn, read_bytes(B.to_bytes(B.rdsr())), "0" * 64)
    with store.engine.connect() as conn:
        ages = sorted(conn.execute(select(M.Study.age_years)).scalars())
    store.close()
    assert ages == [49, 60, 60]


# --- a folder is read by content ------------------------------------------------------------------------


def test_dicom_is_recognised_by_content_not_by_name(ingestor, store, tmp_path):
    rdsr = B.to_bytes(B.rdsr())
    files = {
        "rdsr.txt": rdsr,
        "README.md": b"# the study export\n",
        "notes.txt": b"room 1 serviced\n",
        "export.json": json.dumps({"a": 1}).encode(),
        "garbage.bin": b"not dicom at all",
    }
    folder = _folder(tmp_path, files)
    skipped = []
    assert [p.name for p in iter_files([folder], skipped)] == ["garbage.bin", "rdsr.txt"]
    assert sorted(p.name for p in skipped) == ["README.md", "export.json", "notes.txt"]
    summary = ingestor.ingest_paths([folder])
    assert summary.outcomes["ingested"] == 1
    assert summary.skipped == 3
    assert summary.quarantined == {"not_dicom": 1}  # a file that is not documentation is still tried


# --- truncated MG images ----------------------------------------------------------------------------------


def _mg_image() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.Modality = "MG"
    ds.StudyDate = "20250102"
    ds.Manufacturer, ds.ManufacturerModelName, ds.DeviceSerialNumber = "ACME", "Mammo 1", "SN-1"
    ds.PatientID = B.PATIENT["PatientID"]
    ds.AcquisitionDateTime = "20250102093000"
    ds.KVP, ds.ExposureInuAs, ds.BodyPartThickness = "28", "95000", "55"
    ds.ViewPosition, ds.ImageLaterality = "CC", "R"
    ds.AnodeTargetMaterial, ds.FilterMaterial = "TUNGSTEN", "RHODIUM"
    ds.OrganDose = "0.015"
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 64, 64, 16, 12, 11
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
    ds.PixelData = bytes(64 * 64 * 2)
    return ds


def _image_bytes(ds) -> bytes:
    return B.to_bytes(ds)


def test_a_truncated_mg_image_is_refused_alike_from_a_file_and_for_the_spool():
    from srdose.parse import image_header

    whole = _image_bytes(_mg_image())
    cut = whole[: whole.index(b"\x40\x00\x16\x03") + 10]  # inside Organ Dose (0040,0316)
    with pytest.raises(Malformed) as from_file:
        read_bytes(cut)
    with pytest.raises(Malformed) as for_spool:
        image_header(cut)
    assert from_file.value.reason == for_spool.value.reason
    assert from_file.value.reason.startswith("file is truncated")
    cut_in_pixels = whole[:-1000]
    with pytest.raises(Malformed, match="truncated"):
        image_header(cut_in_pixels)
    # a whole image: its header alone reads as the image does
    header = image_header(whole)
    assert len(header) < len(whole) - 64 * 64 * 2 + 200
    assert read_bytes(header).events == read_bytes(whole).events
    assert read_bytes(header).events[0].agd_mgy == pytest.approx(1.5)
