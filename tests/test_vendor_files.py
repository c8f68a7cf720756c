"""The real vendor files of the shared material (its ``rdsr`` folder), value by value.

Expected values come from that folder's expected-mammography.json, written
by an independent raw reader; the MG image header values from the shared
README. Skips when the shared material is absent.
"""

from __future__ import annotations

import pytest

from srdose.parse import NotADoseReport, Unsupported, read_path
from tests.conftest import shared_file

MAMMO_FILES = ["MG-RDSR-Hologic_mix.dcm", "MG-RDSR-GEPristina-2D.dcm", "MG-RDSR-Giotto-DBT.dcm"]

# The standard's code meanings (CID 4014, 10013, 10016, 10006) and what srdose stores.
VIEW = {"cranio-caudal": "CC", "medio-lateral oblique": "MLO"}
EVENT_TYPE = {"Rotational Acquisition": ("rotational", "DBT"), "Stationary Acquisition": ("stationary", "2D")}
MATERIAL = {
    "Tungsten or Tungsten compound": "W",
    "Rhodium or Rhodium compound": "Rh",
    "Silver or Silver compound": "Ag",
    "Aluminum or Aluminum compound": "Al",
    "Molybdenum or Molybdenum compound": "Mo",
}
SIDE = {"Right": "R", "Left": "L", "Left breast": "L", "Right breast": "R"}


def _close(actual, expected, what):
    if expected == 0:
        # a zero is "not measured": stored as None with a flag (checked separately)
        assert actual is None, what
    else:
        assert actual == pytest.approx(expected, rel=1e-9, abs=1e-9), what


@pytest.mark.parametrize("name", MAMMO_FILES)
def test_every_expected_value(name, expected_mammography):
    exp = expected_mammography[name]
    report = read_path(shared_file(name))
    assert report.sop_instance_uid == exp["sop_instance_uid"]
    assert report.device.manufacturer == exp["manufacturer"]
    assert report.device.model == exp["model"]
    assert report.device.serial == exp["device_serial"]
    assert report.device.station == exp["station"]
    assert report.study.study_date == exp["study_date"]
    assert len(report.events) == exp["n_events"]
    assert sorted((a.laterality, a.agd_mgy) for a in report.accumulated) == sorted(
        (SIDE[a["laterality"]], a["agd_mGy"]) for a in exp["accumulated_agd"]
    )

    for ev, ex in zip(report.events, exp["events"]):
        where = f"{name} event {ex['event_uid']}"
        assert ev.event_uid == ex["event_uid"], where
        assert ev.datetime_started == ex["datetime_started"], where
        assert (ev.event_type, ev.acquisition) == EVENT_TYPE[ex["event_type"][0]], where
        assert ev.view == VIEW[ex["view"][0]], where
        assert ev.laterality == SIDE[ex["laterality"]], where
        assert ev.anode == MATERIAL[ex["anode"][0]], where
        for field, key in (
            ("hvl_mm", "hvl_mm"),
            ("entrance_exposure_mgy", "entrance_exposure_mGy"),
            ("agd_mgy", "agd_mGy"),
            ("compressed_thickness_mm", "compression_thickness_mm"),
            ("source_detector_mm", "sdd_mm"),
        ):
            if key in ex:
                assert len(ex[key]) == 1
                _close(getattr(ev, field), ex[key][0], f"{where} {field}")
                if ex[key][0] == 0:
                    assert f"zero:{field}" in ev.flags
        # per-pulse values: one pulse row per occurrence in the file
        for field, key, scale in (
            ("kvp", "kvp", 1.0),
            ("tube_current_ma", "tube_current_mA", 1.0),
            ("exposure_mas", "exposure_uAs", 1e-3),
            ("pulse_width_ms", "pulse_width_ms", 1.0),
        ):
            if key in ex:
                got = [getattr(p, field) for p in ev.pulses]
                assert got == pytest.approx([v * scale for v in ex[key]]), f"{where} {field}"
        if "exposure_time_ms" in ex:
            assert ev.exposure_time_ms == pytest.approx(sum(ex["exposure_time_ms"])), where
        if "number_of_pulses" in ex:
            assert ev.n_pulses == int(ex["number_of_pulses"][0]), where
        assert [f.material for f in ev.filters] == [MATERIAL[f["material"]] for f in ex["filters"]], where
        assert [f.thickness_min_mm for f in ev.filters] == [f.get("min_mm") for f in ex["filters"]], where
        assert [f.thickness_max_mm for f in ev.filters] == [f.get("max_mm") for f in ex["filters"]], where


def test_derived_event_values_follow_the_stated_rules(expected_mammography):
    # Giotto DBT: total mAs = sum of the 11 projections' µAs / 1000
    giotto = read_path(shared_file("MG-RDSR-Giotto-DBT.dcm"))
    first = expected_mammography["MG-RDSR-Giotto-DBT.dcm"]["events"][0]
    assert giotto.events[0].mas == pytest.approx(sum(first["exposure_uAs"]) / 1000)
    assert giotto.events[0].n_pulses == 11
    assert giotto.events[0].filter_material == "Ag" and giotto.events[0].filter_thickness_mm == 0.05
    # the first projection carries about half the others' charge (shared README)
    p = giotto.events[0].pulses
    assert 0.4 < p[0].exposure_mas / p[5].exposure_mas < 0.6

    # GE Pristina: no µAs item; total = Σ mA × pulse width; kV of the main pulse
    ge = read_path(shared_file("MG-RDSR-GEPristina-2D.dcm"))
    ex = expected_mammography["MG-RDSR-GEPristina-2D.dcm"]["events"][0]
    total = sum(a * w for a, w in zip(ex["tube_current_mA"], ex["pulse_width_ms"])) / 1000
    assert ge.events[0].mas == pytest.approx(total)  # 2×51.44 + 30.48×558.06 µC
    assert ge.events[0].kvp == 33.99  # the main exposure, not the 34.1 kV pre-pulse
    assert ge.events[0].tube_current_ma == 30.48
    assert ge.events[0].filter_material == "Ag" and ge.events[0].filter_thickness_mm is None
    assert ge.events[0].reference_point == "At Surface of Patient"

    hologic = read_path(shared_file("MG-RDSR-Hologic_mix.dcm"))
    assert hologic.events[0].mas == pytest.approx(34.3)
    assert hologic.events[0].reference_point == "Entrance exposure to a 4.2 cm breast thickness"
    assert hologic.events[0].positioner_primary_angle_deg == -7.4
    assert hologic.events[0].positioner_primary_end_angle_deg == 7.6
    assert [e.filter_material for e in hologic.events] == ["Al", "Al", "Al", "Rh", "Ag", "Al", "Rh"]
    # the 128 mm event is kept (plausible), with its zero AGD flagged
    assert hologic.events[4].compressed_thickness_mm == 128.0
    assert {"zero:agd_mgy", "zero:hvl_mm", "zero:entrance_exposure_mgy"} <= set(hologic.events[4].flags)


def test_mg_image_header_values():
    report = read_path(shared_file("MG-Im-GE-SenDS-scaled.dcm"))
    assert report.source == "image"
    [ev] = report.events
    assert ev.kvp == 29.0
    assert ev.mas == pytest.approx(51.8)  # ExposureInuAs 51800, not Exposure 52
    assert ev.tube_current_ma == 61.0
    assert ev.exposure_time_ms == 834.0
    assert ev.compressed_thickness_mm == 53.0
    assert ev.compression_force_n == 50.0
    assert ev.agd_mgy == pytest.approx(1.373)  # OrganDose 0.01373 dGy
    assert ev.entrance_exposure_mgy == pytest.approx(5.071)  # EntranceDoseInmGy, not EntranceDose 0
    assert (ev.anode, ev.filter_material) == ("Rh", "Rh")
    assert (ev.view, ev.laterality) == ("CC", "L")
    assert ev.source_detector_mm == 660.0
    # PatientAge 001D is not an age at a breast examination
    assert report.study.age_years is None and "absurd:age_years" in report.flags
    assert report.device.institution == "中心医院"  # non-ASCII (ISO_IR 192) survives


@pytest.mark.parametrize(
    "name,error,words",
    [
        ("CT-RDSR-Siemens_Flash-TAP-SS.dcm", Unsupported, "CT dose report"),
        ("CT-ESR-GE_Optima.dcm", Unsupported, "CT dose report"),
        ("ESR_non-dose.dcm", NotADoseReport, "not a dose report"),
        ("DX-RDSR-Canon_CXDI.dcm", Unsupported, "not mammography"),
        ("RF-RDSR-Philips_Allura.dcm", Unsupported, "not mammography"),
        ("RF-RDSR-Siemens-Zee.dcm", Unsupported, "not mammography"),
    ],
)
def test_non_mammography_objects_are_refused_with_a_reason(name, error, words):
    with pytest.raises(error) as info:
        read_path(shared_file(name))
    assert words in info.value.reason


def test_projection_rdsr_quirks_parse_without_crashing():
    """The walker itself copes with Canon's empty measured values, Philips'
    private scheme and Siemens' `Gym2`, even though ingest then refuses
    those non-mammography reports."""
    import pydicom

    from srdose.parse.rdsr import _number
    from srdose.parse.tree import walk

    for name in ("DX-RDSR-Canon_CXDI.dcm", "RF-RDSR-Philips_Allura.dcm", "RF-RDSR-Siemens-Zee.dcm"):
        ds = pydicom.dcmread(shared_file(name))
        nodes = walk(ds.ContentSequence)
        assert nodes

    ds = pydicom.dcmread(shared_file("RF-RDSR-Siemens-Zee.dcm"))
    units_seen, dap = set(), []

    def visit(nodes):
        for n in nodes:
            if n.vt == "NUM" and n.unit:
                units_seen.add(n.unit)
                if n.name == "dose_area_product_gym2":
                    flags = []
                    dap.append(_number(n, flags))
            visit(n.children)

    visit(walk(ds.ContentSequence))
    assert "Gym2" in units_seen
    assert dap and all(v is not None and v > 0 for v in dap)

    ds = pydicom.dcmread(shared_file("DX-RDSR-Canon_CXDI.dcm"))
    problems = []

    def visit2(nodes):
        for n in nodes:
            if n.problem:
                problems.append(n.problem)
            visit2(n.children)

    visit2(walk(ds.ContentSequence))
    assert any("no MeasuredValueSequence" in p or "empty" in p for p in problems)


def test_highdicom_reads_the_same_values():
    """highdicom's typed content items, as an independent reader, agree with
    the raw walk on every event's KVP and AGD in the Hologic file."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.coding import Code

    path = shared_file("MG-RDSR-Hologic_mix.dcm")
    tree = hd.sr.ContentSequence.from_sequence(pydicom.dcmread(path).ContentSequence)
    event_code = Code("113706", "DCM", "Irradiation Event X-Ray Data")
    kvps, agds = [], []
    for item in tree:
        if item.name != event_code:
            continue
        for child in item.ContentSequence:
            if child.name == Code("113733", "DCM", "KVP"):
                assert child.unit.value == "kV"
                kvps.append(float(child.value))
            if child.name == Code("111631", "DCM", "Average Glandular Dose"):
                agds.append(float(child.value) or None)  # 0 is "not measured"
    ours = read_path(path)
    assert [e.kvp for e in ours.events] == kvps
    assert [e.agd_mgy for e in ours.events] == agds
