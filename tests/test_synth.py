"""Tests of the synthetic RDSR / MG generator (srdose.synth)."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from srdose.synth import (
    MANIFEST_NAME,
    VENDORS,
    build_mg_images,
    build_study_rdsr,
    encode_study_rdsr,
    generate,
    identifiers_of,
    make_unit,
    plan_study,
    write_study_with_images,
)
from srdose.synth.names import nhs_check_digit

RDSR_SOP = "1.2.840.10008.5.1.4.1.1.88.67"
MG_SOP = "1.2.840.10008.5.1.4.1.1.1.2"
SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"
KINDS = ("2D", "DBT", "COMBO")


# --------------------------------------------------------------------------
# helpers: a deliberately plain walk of the content tree, keyed on codes
# --------------------------------------------------------------------------
def _read(raw: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(raw))


def _rdsr(vendor: str, seed: int = 1, **opts) -> pydicom.Dataset:
    return _read(encode_study_rdsr(vendor, np.random.default_rng(seed), **opts))


def _cv(item) -> str:
    return item.ConceptNameCodeSequence[0].CodeValue


def _items(container, code: str) -> list:
    return [it for it in container.ContentSequence if _cv(it) == code]


def _nums(container, code: str) -> list[float]:
    return [float(it.MeasuredValueSequence[0].NumericValue) for it in _items(container, code) if it.ValueType == "NUM"]


def _units(container, code: str) -> set[str]:
    return {it.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue for it in _items(container, code)}


def _code_value(container, code: str):
    found = _items(container, code)
    return found[0].ConceptCodeSequence[0] if found else None


def _events(ds) -> list:
    return _items(ds, "113706")


def _laterality(vendor: str, event) -> str:
    """R or L, wherever the vendor puts it."""
    for site in ("123014", "T-D0005", "91723000"):
        for it in _items(event, site):
            for mod in it.get("ContentSequence", []):
                if _cv(mod) in ("G-C171", "272741003"):
                    return {"G-A100": "R", "24028007": "R", "G-A101": "L", "7771000": "L"}[
                        mod.ConceptCodeSequence[0].CodeValue
                    ]
    raise AssertionError(f"{vendor}: no laterality")


def _accumulated(ds) -> dict[str, float]:
    out = {}
    acc = _items(ds, "113702")[0]
    for it in _items(acc, "111637"):
        lat = it.ContentSequence[0].ConceptCodeSequence[0].CodeValue
        side = {"T-04020": "R", "73056007": "R", "T-04030": "L", "80248007": "L"}[lat]
        out[side] = float(it.MeasuredValueSequence[0].NumericValue)
    return out


# --------------------------------------------------------------------------
# every vendor: valid Part 10, required items
# --------------------------------------------------------------------------
@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("kind", KINDS)
def test_reads_back_with_header_and_template(vendor, kind):
    ds = _rdsr(vendor, kind=kind)
    assert ds.file_meta.MediaStorageSOPClassUID == RDSR_SOP
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.SOPClassUID == RDSR_SOP and ds.Modality == "SR"
    for kw in (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientAge",
        "Manufacturer",
        "ManufacturerModelName",
        "DeviceSerialNumber",
        "StationName",
        "InstitutionName",
        "SoftwareVersions",
        "ContentDate",
        "ContentTime",
    ):
        assert str(ds.get(kw, "")) != "", kw
    assert ds.PatientSex == "F"
    assert ds.CompletionFlag == "COMPLETE" and ds.VerificationFlag == "UNVERIFIED"
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "10001"
    assert ds.ConceptNameCodeSequence[0].CodeValue == "113701"
    assert len({ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID}) == 3
    # Procedure reported = mammography, scope of accumulation = this study.
    assert _code_value(ds, "121058").CodeValue in ("P5-40010", "71651007")
    scope = _items(ds, "113705")[0]
    assert scope.ContentSequence[0].UID == ds.StudyInstanceUID
    assert _items(ds, "121012")  # device observer UID


@pytest.mark.parametrize("vendor", VENDORS)
def test_fast_encoder_matches_pydicom_writer(vendor):
    study = plan_study(vendor, np.random.default_rng(7), kind="COMBO")
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, build_study_rdsr(study=study), enforce_file_format=True)
    assert encode_study_rdsr(study=study) == buf.getvalue()


REQUIRED_EVENT_ITEMS = (
    "113769",
    "111526",
    "113721",
    "125203",
    "111031",
    "123014",
    "111634",
    "111636",
    "113780",
    "111631",
    "113733",
    "113734",
    "113824",
    "113766",
    "113771",
    "111635",
    "112011",
    "111633",
    "113750",
)


@pytest.mark.parametrize("vendor", VENDORS)
def test_every_event_has_the_required_items(vendor):
    for seed in range(3):
        ds = _rdsr(vendor, seed, kind="COMBO")
        uids = set()
        for ev in _events(ds):
            for code in REQUIRED_EVENT_ITEMS:
                assert _items(ev, code), (vendor, code)
            assert _items(ev, "111632") or _items(ev, "113632")
            assert (vendor == "ge") != bool(_items(ev, "113736"))  # GE: no uAs item
            assert bool(_items(ev, "111647")) == (vendor in ("siemens", "fujifilm"))
            view = _code_value(ev, "111031")
            assert view.CodeValue in (
                "R-10242",
                "R-10226",
                "R-10224",
                "R-10228",
                "R-1024A",
                "399162004",
                "399368009",
                "399260004",
                "399352003",
                "399192008",
            )
            assert _laterality(vendor, ev) in ("R", "L")
            uids.add(_items(ev, "113769")[0].UID)
            rotational = _code_value(ev, "113721").CodeValue == "113613"
            assert bool(_items(ev, "113739")) == rotational  # end angle on sweeps only
        assert len(uids) == len(_events(ds))


def test_events_start_seconds_to_a_minute_apart():
    ds = _rdsr("siemens", 3, kind="2D", repeat_rate=0.0, extra_view_rate=0.0)
    starts = [dt.datetime.strptime(_items(e, "111526")[0].DateTime, "%Y%m%d%H%M%S") for e in _events(ds)]
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:])]
    assert gaps and all(5 <= g <= 120 for g in gaps)


# --------------------------------------------------------------------------
# vendor quirks
# --------------------------------------------------------------------------
def test_giotto_big_endian_113632_uas_per_projection():
    ds = _rdsr("giotto", kind="DBT")
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.2"
    for ev in _events(ds):
        assert _items(ev, "113632") and not _items(ev, "111632")
        assert _units(ev, "113736") == {"uA.s"}
        exposures = _nums(ev, "113736")
        assert len(exposures) == 11 == _nums(ev, "113768")[0] == len(_nums(ev, "113733"))
        assert 0.4 < exposures[0] / np.mean(exposures[1:]) < 0.55
        assert len(_items(ev, "113771")) == 11  # a filter container per pulse
        assert _items(ev, "113605")  # AEC label
        target = _items(ev, "123014")[0]
        assert _cv(target.ContentSequence[0]) == "G-C171"
    ds2 = _rdsr("giotto", kind="2D")
    assert {_code_value(e, "113721").CodeValue for e in _events(ds2)} == {"113611"}


def test_ge_two_pulses_no_uas_observer_identity():
    ds = _rdsr("ge", kind="2D")
    names = {_cv(it) for it in ds.ContentSequence if it.RelationshipType == "HAS OBS CONTEXT"}
    assert {"121013", "121014", "121015", "121016"} <= names
    for ev in _events(ds):
        assert _nums(ev, "113768") == [2]
        ma = _nums(ev, "113734")
        width = _nums(ev, "113793")
        assert len(ma) == len(width) == len(_nums(ev, "113733")) == 2
        assert 1.9 < ma[0] < 2.1 and 45 < width[0] < 55 and ma[1] > 10
        assert not _items(ev, "113736")
        assert _nums(ev, "113742")[0] == pytest.approx(sum(width) / 1000.0, abs=1e-4)
        assert _nums(ev, "113824")[0] == pytest.approx(sum(width), abs=0.02)
        filters = _items(ev, "113771")
        assert len(filters) == 2
        assert all(not _items(f, "113758") for f in filters)
        assert _code_value(ev, "113780").CodeValue == "113964"
        assert _items(ev, "113737")
    dbt = _rdsr("ge", kind="DBT")
    for ev in _events(dbt):
        assert _nums(ev, "113768") == [10]  # pre-pulse + 9 projections
        a0, a1 = _nums(ev, "112011")[0], _nums(ev, "113739")[0]
        assert a1 - a0 == pytest.approx(25.0)


def test_hologic_codes_and_identity_in_header_only():
    ds = _rdsr("hologic", kind="COMBO")
    assert _items(ds, "113745") and not _items(ds, "113945")
    assert not [it for it in ds.ContentSequence if _cv(it) in ("121013", "121016")]
    assert ds.Manufacturer == "HOLOGIC, Inc." and ds.DeviceSerialNumber
    for ev in _events(ds):
        assert _code_value(_items(ev, "113771")[0], "113772").CodeValue == "111650"
        assert _code_value(ev, "111031").CodingSchemeDesignator == "SNM3"
        assert _cv(_items(ev, "T-D0005")[0].ContentSequence[0]) == "G-C171"
        assert _code_value(ev, "113780").CodeValue == "113865"
        assert _units(ev, "113736") == {"uAs"}
        rotational = _code_value(ev, "113721").CodeValue == "113613"
        grid = _code_value(ev, "111635")
        if rotational:
            assert _nums(ev, "112011") == [-7.4] and _nums(ev, "113739") == [7.6]
            assert _code_value(_items(ev, "113771")[0], "113757").CodeValue == "C-120F9"
            assert _nums(_items(ev, "113771")[0], "113758") == [0.7]
        else:
            assert (grid.CodeValue, grid.CodingSchemeDesignator) == ("gridin", "99HOLX")


def test_hologic_zero_dose_20kv_event():
    ds = _rdsr("hologic", kind="2D", zero_agd_rate=1.0)
    zero = [e for e in _events(ds) if _nums(e, "113733") == [20.0]]
    assert len(zero) == 1
    ev = zero[0]
    assert _nums(ev, "111631") == [0.0] and _nums(ev, "111634") == [0.0]
    assert _nums(ev, "111636") == [0.0] and _nums(ev, "113736")[0] > 0


def test_hologic_zero_dose_events_are_rare():
    studies = [plan_study("hologic", np.random.default_rng([9, i])) for i in range(400)]
    share = np.mean([any(e.zero_dose for e in s.events) for s in studies])
    assert 0.0 < share < 0.06


def test_siemens_dbt_reports_one_projection():
    study = plan_study("siemens", np.random.default_rng(2), kind="DBT")
    ds = _read(encode_study_rdsr(study=study))
    for ev, truth in zip(_events(ds), study.events):
        assert _nums(ev, "113768") == [25]
        assert _nums(ev, "113739")[0] - _nums(ev, "112011")[0] == pytest.approx(50.0)
        assert _nums(ev, "113736")[0] / 1000.0 * 25 == pytest.approx(truth.mas, rel=0.01)
        assert _nums(ev, "113824")[0] * 25 == pytest.approx(truth.exposure_time_ms, rel=0.01)


def test_fujifilm_sct_codes_and_w_al_dbt():
    ds = _rdsr("fujifilm", kind="COMBO")
    assert _code_value(ds, "121058").CodingSchemeDesignator == "SCT"
    for ev in _events(ds):
        assert _code_value(ev, "111031").CodingSchemeDesignator == "SCT"
        anode = _code_value(ev, "111632")
        assert (anode.CodeValue, anode.CodingSchemeDesignator) == ("26194003", "SCT")
        material = _code_value(_items(ev, "113771")[0], "113757").CodeValue
        rotational = _code_value(ev, "113721").CodeValue == "113613"
        assert material == ("12503006" if rotational else "59801003")  # Al / Rh


# --------------------------------------------------------------------------
# consistency and reproducibility
# --------------------------------------------------------------------------
@pytest.mark.parametrize("vendor", VENDORS)
def test_accumulated_agd_is_the_sum_of_events_per_breast(vendor):
    for seed in range(6):
        ds = _rdsr(vendor, seed)
        sums = {"R": 0.0, "L": 0.0}
        for ev in _events(ds):
            sums[_laterality(vendor, ev)] += _nums(ev, "111631")[0]
        acc = _accumulated(ds)
        assert set(acc) == {"R", "L"}
        for side in "RL":
            assert acc[side] == pytest.approx(sums[side], abs=0.0051), (vendor, seed, side)


def test_same_seed_same_bytes_other_seed_other_files(tmp_path):
    a = generate("ge", 5, tmp_path / "a", seed=11, units=2)
    b = generate("ge", 5, tmp_path / "b", seed=11, units=2)
    c = generate("ge", 5, tmp_path / "c", seed=12, units=2)
    assert [p.name for p in a] == [p.name for p in b]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))
    assert all(x.read_bytes() != z.read_bytes() for x, z in zip(a, c))
    # a prefix of a longer batch is the same studies
    d = generate("ge", 2, tmp_path / "d", seed=11, units=2)
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, d))


@pytest.mark.parametrize("vendor", VENDORS)
def test_distributions_of_200_studies(vendor):
    studies = [plan_study(vendor, np.random.default_rng([5, i]), dbt_fraction=0.3) for i in range(200)]
    ages = np.array([s.patient.age_years for s in studies])
    assert ages.min() >= 50 and ages.max() <= 70 and 57 < ages.mean() < 63
    for s in studies:
        p = s.patient
        d, b = s.study_datetime.date(), p.birth_date
        assert d.year - b.year - ((d.month, d.day) < (b.month, b.day)) == p.age_years
        assert p.age_string == f"{p.age_years:03d}Y"
    events = [e for s in studies for e in s.events if not e.zero_dose]
    thick = np.array([e.thickness_mm for e in events])
    assert 55 <= thick.mean() <= 65 and thick.min() >= 20 and thick.max() <= 110
    cc = np.mean([e.thickness_mm for e in events if e.view == "CC"])
    mlo = np.mean([e.thickness_mm for e in events if e.view == "MLO"])
    assert 2 < mlo - cc < 8
    agd2d = np.array([e.agd_mgy for e in events if not e.is_dbt])
    assert 1.0 < np.median(agd2d) < 2.2 and np.percentile(agd2d, 95) < 3.5
    assert all(0.3 < e.agd_mgy < 6 for e in events)
    assert all(60 <= e.force_n <= 150 for e in events)
    assert all(0.3 <= e.hvl_mm <= 0.8 for e in events)
    assert all(24 <= e.kvp <= 45 for e in events)
    # thicker breasts get more kV and more dose
    thin = [e for e in events if not e.is_dbt and e.thickness_mm < 45]
    thick_ = [e for e in events if not e.is_dbt and e.thickness_mm > 75]
    assert np.mean([e.kvp for e in thick_]) > np.mean([e.kvp for e in thin])
    assert np.mean([e.agd_mgy for e in thick_]) > np.mean([e.agd_mgy for e in thin])
    n_events = [len(s.events) for s in studies if s.kind == "2D"]
    assert min(n_events) >= 4 and 4 in n_events and max(n_events) >= 5


def test_hvl_of_w_rh_at_28_kv():
    from srdose.synth.model import hvl_mm

    assert hvl_mm(28, "W", "RH") == pytest.approx(0.51, abs=0.01)


def test_units_are_distinct_and_stable():
    units = [make_unit("hologic", i) for i in range(4)]
    assert len({u.serial for u in units}) == 4
    assert len({u.station for u in units}) == 4
    assert len({u.device_uid for u in units}) == 4
    assert make_unit("hologic", 2) == units[2]


def test_identifiers_look_real_and_are_reported(tmp_path):
    paths = generate("hologic", 6, tmp_path, seed=3, units=2, manifest=True)
    doc = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert len(doc["studies"]) == 6
    for path, entry in zip(paths, doc["studies"]):
        ds = pydicom.dcmread(path)
        ids = entry["identifiers"]
        assert str(ds.PatientName) == ids["patient_name"]
        assert ds.PatientID == ids["patient_id"] and ds.AccessionNumber == ids["accession_number"]
        assert ds.PatientBirthDate == ids["patient_birth_date"]
        pid = ds.PatientID
        assert pid.startswith("NHS999") and len(pid) == 13 and pid[3:].isdigit()
        assert nhs_check_digit(pid[3:12]) == int(pid[12])
        assert "^" in str(ds.PatientName)
        found = identifiers_of(ds)
        assert found["PatientID"] == pid and found["StationName"] == ids["station_name"]
        assert len(entry["events"]) == len(_events(ds))
        # nothing identifying in the file name
        assert ids["patient_id"] not in path.name and ids["accession_number"] not in path.name


def test_generate_progress_units_and_image_only(tmp_path):
    seen = []
    paths = generate("fujifilm", 4, tmp_path / "r", seed=1, units=2, progress=seen.append)
    assert seen == paths and len(paths) == 4
    serials = {pydicom.dcmread(p).DeviceSerialNumber for p in paths}
    assert len(serials) == 2
    imgs = generate("ge", 2, tmp_path / "i", seed=1, rdsr=False, images=True, dbt_fraction=0)
    assert imgs and all(pydicom.dcmread(p).SOPClassUID == MG_SOP for p in imgs)
    with pytest.raises(ValueError):
        generate("acme", 1, tmp_path / "x")


# --------------------------------------------------------------------------
# MG image headers
# --------------------------------------------------------------------------
def test_mg_images_match_the_rdsr(tmp_path):
    files = write_study_with_images("hologic", tmp_path, seed=4)
    sr = pydicom.dcmread(files.rdsr)
    events = {_items(e, "113769")[0].UID: e for e in _events(sr)}
    assert len(files.images) == len(events) >= 4
    for path in files.images:
        im = pydicom.dcmread(path)
        assert im.SOPClassUID == MG_SOP and im.file_meta.MediaStorageSOPClassUID == MG_SOP
        assert im.PresentationIntentType == "FOR PRESENTATION" and im.Modality == "MG"
        assert im.pixel_array.shape == (8, 8)
        ev = events[im.IrradiationEventUID]
        refs = [it.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for it in _items(ev, "113795")]
        assert refs == [im.SOPInstanceUID]
        assert im.StudyInstanceUID == sr.StudyInstanceUID and im.PatientID == sr.PatientID
        assert float(im.KVP) == _nums(ev, "113733")[0]
        assert int(im.ExposureInuAs) == pytest.approx(_nums(ev, "113736")[0], abs=1)
        assert float(im.OrganDose) * 100 == pytest.approx(_nums(ev, "111631")[0], abs=0.01)
        assert float(im.BodyPartThickness) == _nums(ev, "111633")[0]
        assert float(im.EntranceDoseInmGy) > 0 and 60 <= float(im.CompressionForce) <= 150
        assert im.ImageLaterality == _laterality("hologic", ev)
        assert im.ViewPosition in ("CC", "MLO", "ML", "LM", "XCCL")
        assert im.ViewCodeSequence[0].CodeValue == _code_value(ev, "111031").CodeValue
        for kw in (
            "XRayTubeCurrent",
            "ExposureTime",
            "Exposure",
            "AnodeTargetMaterial",
            "FilterMaterial",
            "DistanceSourceToDetector",
            "PatientAge",
            "AcquisitionDateTime",
            "HalfValueLayer",
        ):
            assert str(im.get(kw, "")) != "", kw
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
    listed = {r.ReferencedSOPInstanceUID for s in evidence for r in s.ReferencedSOPSequence}
    assert {pydicom.dcmread(p).SOPInstanceUID for p in files.images} <= listed


def test_mg_images_skip_tomosynthesis():
    study = plan_study("ge", np.random.default_rng(1), kind="COMBO")
    images = build_mg_images(study=study)
    assert len(images) == sum(not e.is_dbt for e in study.events)


# --------------------------------------------------------------------------
# committed sample data
# --------------------------------------------------------------------------
def test_sample_data_is_current_and_small(tmp_path):
    from srdose.synth.sample import write_samples

    committed = sorted(p.relative_to(SAMPLE_DATA) for p in SAMPLE_DATA.rglob("*.dcm"))
    assert committed, "sample_data/ is missing: run python -m srdose.synth.sample"
    assert (
        sum((SAMPLE_DATA / p).stat().st_size for p in SAMPLE_DATA.rglob("*") if (SAMPLE_DATA / p).is_file())
        < 2 * 1024 * 1024
    )
    fresh = write_samples(tmp_path)
    assert sorted(p.relative_to(tmp_path) for p in fresh) == committed
    for p in fresh:
        assert p.read_bytes() == (SAMPLE_DATA / p.relative_to(tmp_path)).read_bytes(), p
    assert (SAMPLE_DATA / "README.md").read_text() == (tmp_path / "README.md").read_text()
    vendors = {pydicom.dcmread(SAMPLE_DATA / p).Manufacturer for p in committed}
    assert len(vendors) >= 5
