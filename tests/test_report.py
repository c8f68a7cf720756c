"""Reports: statistics against hand-computed values, the survey CSVs of the real
vendor files (exact rows), exclusions, 2D/DBT split and numbering, DRLs on a hand-computed
example through the database, and no identifier in any output."""

from __future__ import annotations

import csv
import datetime as dt
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from srdose.config import Settings, load, parse_band, parse_survey_numbers
from srdose.report import common as C
from srdose.report import stats, survey
from srdose.report.drl import DRLSettings, build_drl, drl_values, room_statistics
from srdose.report.render import Column, Table, html_table
from srdose.report.survey import (
    SURVEY_COLUMNS,
    build_survey,
    default_survey_number,
)
from tests import builders as B
from tests.conftest import shared_file

MLO = ("399368009", "SCT", "medio-lateral oblique")
CC = ("399162004", "SCT", "cranio-caudal")
LEFT = ("80248007", "SCT", "Left")
RIGHT = ("24028007", "SCT", "Right")


def settings(**report):
    s = load(environ={})
    values = {**s.values, "report": {**s.values["report"], **report}}
    return Settings(values, None)


# --- statistics (pure) ---------------------------------------------------------------------


def test_drl_statistics_hand_computed():
    # room medians 1.0, 1.2, 1.5, 2.0: median (1.2 + 1.5) / 2 = 1.35;
    # 75th percentile (type 7): position 0.75 * 3 = 2.25 -> 1.5 + 0.25 * (2.0 - 1.5) = 1.625
    d = stats.drl_from_room_medians([1.5, 1.0, np.nan, 2.0, 1.2])
    assert d.rooms == 4
    assert d.local_drl == pytest.approx(1.35)
    assert d.national_style_drl == pytest.approx(1.625)
    assert d.p25 == pytest.approx(1.15)  # 0.75 -> 1.0 + 0.75 * 0.2
    assert (d.minimum, d.maximum) == (1.0, 2.0)
    assert stats.drl_from_room_medians([]).rooms == 0


def test_room_statistics_exclusions_and_minimum():
    # room 1: doses 1, 2, 3, 4 (+ one infeasible 9, one not-patient 8, one without dose) -> median 2.5
    # room 2: doses 1.0, 1.4 -> median 1.2, only 2 events: below min_events = 3
    # room 3: 3.0, 3.0, 6.0, and 5.0 outside the set -> median 3.0
    room = np.array([1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 3, 3, 3])
    dose = np.array([1, 2, 3, 4, 9, 8, np.nan, 1.0, 1.4, 3.0, 3.0, 6.0, 5.0])
    in_set = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0], bool)
    not_patient = np.zeros(13, bool)
    not_patient[5] = True
    infeasible = np.zeros(13, bool)
    infeasible[4] = True
    rs = room_statistics(room, dose, in_set, not_patient, infeasible, min_events=3)
    assert rs.rooms.tolist() == [1, 2, 3]
    assert rs.in_set.tolist() == [7, 2, 3]
    assert rs.infeasible.tolist() == [1, 0, 0]
    assert rs.not_patient.tolist() == [1, 0, 0]
    assert rs.no_dose.tolist() == [1, 0, 0]
    assert rs.used.tolist() == [4, 2, 3]
    assert rs.median.tolist() == [2.5, 1.2, 3.0]
    assert rs.qualifies.tolist() == [True, False, True]
    d = drl_values(rs)  # medians 2.5 and 3.0
    assert d.local_drl == pytest.approx(2.75)
    assert d.national_style_drl == pytest.approx(2.875)


def test_room_statistics_of_given_rooms_in_their_order():
    """Rooms named in their own order, one without events; events of a room not named are left out."""
    room = np.array([1, 3, 2, 1, 3, 1, 3])
    dose = np.array([1.0, 3.0, 7.0, 2.0, 6.0, 4.0, 3.0])
    ones = np.ones(7, bool)
    rs = room_statistics(room, dose, ones, ~ones, ~ones, min_events=3, rooms=np.array([3, 9, 1]))
    assert rs.rooms.tolist() == [3, 9, 1]
    assert rs.in_set.tolist() == [3, 0, 3] and rs.used.tolist() == [3, 0, 3]
    assert rs.median[[0, 2]].tolist() == [3.0, 2.0] and np.isnan(rs.median[1])
    assert rs.p25[0] == 3.0 and rs.p75[0] == 4.5 and rs.mean[2] == pytest.approx(7 / 3)
    assert rs.qualifies.tolist() == [True, False, True]


def test_text_tests_per_distinct_value():
    flags = np.array([None, "kvp_outside;INFEASIBLE:thickness", "", "infeasible:force", "kvp_outside"], dtype=object)
    assert C.contains(flags, "infeasible:").tolist() == [False, True, False, True, False]
    assert C.infeasible({"flags": flags}).tolist() == [False, True, False, True, False]
    views = np.array(["CC", None, "MLO", "ML", "CC"], dtype=object)
    assert C.per_text(views, lambda v: v in ("CC", "MLO")).tolist() == [True, False, True, False, True]
    assert C.contains(np.array([], dtype=object), "x").tolist() == []


def test_small_statistics():
    assert stats.occurrence_number([1, 1, 1, 2, 1], ["RCC", "LCC", "RCC", "RCC", "RCC"]).tolist() == [1, 1, 2, 1, 3]
    assert stats.sequence_number([7, 7, 3, 9, 3]).tolist() == [1, 1, 2, 3, 2]
    durations, gaps = stats.exam_timing([1, 1, 1, 2, 3, 3], [100.0, 40.0, 70.0, 5.0, 0.0, np.nan])
    assert durations.tolist() == [60.0]
    assert sorted(gaps.tolist()) == [30.0, 30.0]
    t = np.array([20.0, 40.0, 60.0, 80.0])
    fit = stats.fit_exponential(t, 0.5 * np.exp(0.02 * t))
    assert (fit.a, fit.b) == (pytest.approx(0.5), pytest.approx(0.02))
    ba = stats.bland_altman([2.0, 3.0, 4.0], [1.0, 3.0, 2.0])  # differences 1, 0, 2
    assert ba["bias"] == pytest.approx(1.0) and ba["sd"] == pytest.approx(1.0)
    assert ba["upper"] == pytest.approx(2.96)
    assert parse_band("50-60") == (50.0, 60.0)
    with pytest.raises(ValueError):
        parse_band("60-50")
    d = stats.describe([1.0, 2.0, np.nan, 4.0])
    assert (d["n"], d["mean"], d["median"]) == (3, pytest.approx(7 / 3), 2.0)


def test_drl_settings_need_a_cited_national_value():
    assert DRLSettings.from_settings(settings().report).national_mgy is None
    with pytest.raises(ValueError, match="national_drl_source"):
        settings(national_drl_mgy="2.5")
    got = DRLSettings.from_settings(settings(national_drl_mgy="2.5", national_drl_source="ref X").report, band="45-65")
    assert got.national_mgy == 2.5 and got.band == (45.0, 65.0)


def test_survey_numbers_configured_and_default():
    assert parse_survey_numbers(["SN-1=4100", " SN 2 = 7 "]) == {"SN-1": 4100, "SN 2": 7}
    with pytest.raises(ValueError):
        parse_survey_numbers(["SN-1"])
    n = default_survey_number("HOLOGIC, Inc.", "Selenia Dimensions", "SDM9876543")
    assert n == default_survey_number("HOLOGIC, Inc.", "Selenia Dimensions", "SDM9876543")
    assert n % 2 == 0 and 100000 <= n < 1000000


def test_table_columns_decide_the_html_cells():
    t = Table(
        "t",
        "T",
        [Column("name"), Column("dose", numeric=True, digits=3), Column("note", wrap=True), "plain"],
        [["a", 1.23456, "x", 2.5], ["b", float("nan"), "y", 3]],
    )
    h = html_table(t, max_rows=1)
    assert h["columns"] == ["name", "dose", "note", "plain"] and t.names == h["columns"]
    assert h["numeric"] == {1} and h["wrap"] == {2}
    assert h["rows"] == [["a", "1.235", "x", "2.50"]] and h["total"] == 2 and h["truncated"]


def test_importing_the_reports_leaves_matplotlib_unloaded():
    """matplotlib loads on the first figure, not when a command module imports the reports."""
    code = "import sys, srdose.demo, srdose.report.plots, srdose.report.phantom; print('matplotlib' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert r.stdout.strip() == "False"


# --- the real vendor files -------------------------------------------------------------------


def _read(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == SURVEY_COLUMNS
    return rows[1:]


def _survey_files(out: Path) -> dict[str, Path]:
    return {p.name: p for p in out.rglob("survey_*.csv") if re.fullmatch(r"survey_.+_(2D|DBT)_\d+\.csv", p.name)}


REAL = {
    # Hologic Selenia Dimensions: 4 DBT sweeps (two RCC), 3 RCC 2D at 20 kV (AGD 0, one 128 mm)
    "survey_SDM9876543_2D_4100.csv": [
        ["4100", "1", "RCC", "20", "W", "Rh", "23", "17.9", "", "", "", "", "100", "", ""],
        ["4100", "1", "RCC2", "20", "W", "Ag", "128", "17.9", "", "", "", "", "100", "", ""],
        ["4100", "1", "RCC3", "20", "W", "Rh", "46", "17.8", "", "", "", "", "100", "", ""],
    ],
    "survey_SDM9876543_DBT_4101.csv": [
        ["4101", "1", "RCC", "26", "W", "Al", "19", "34.3", "", "", "", "", "100", "", ""],
        ["4101", "1", "RCC2", "26", "W", "Al", "20", "33.9", "", "", "", "", "100", "", ""],
        ["4101", "1", "ROB", "26", "W", "Al", "21", "35.6", "", "", "", "", "100", "", ""],
        ["4101", "1", "LCC", "26", "W", "Al", "20", "33.9", "", "", "", "", "100", "", ""],
    ],
    # GE Pristina: 8 RCC 2D (main pulse 33.99 kV), no age in the file
    "survey_1010102_2D_5000.csv": [
        ["5000", "1", f"RCC{k if k > 1 else ''}", "33.99", "Rh", "Ag", t, mas, "", "", "", "", "", "ROUTINE", ""]
        for k, t, mas in zip(
            range(1, 9),
            ["46.1", "46.3", "46.1", "46.4", "46.2", "46.2", "46.2", "46.2"],
            ["17.11", "17.01", "16.92", "16.73", "17.32", "17.28", "17.32", "17.32"],
        )
    ],
    # IMS Giotto: 4 DBT, AEC mode from the event label
    "survey_900123_DBT_6001.csv": [
        ["6001", "1", "RCC", "27", "W", "Ag", "41", "139.89", "", "auto", "AEC_Standard_Tomo_v.1.03", "", "52", "", ""],
        ["6001", "1", "LCC", "27", "W", "Ag", "41", "152.04", "", "auto", "AEC_Standard_Tomo_v.1.03", "", "52", "", ""],
        ["6001", "1", "ROB", "28", "W", "Ag", "44", "119.85", "", "auto", "AEC_Standard_Tomo_v.1.03", "", "52", "", ""],
        ["6001", "1", "LOB", "28", "W", "Ag", "47", "135.68", "", "auto", "AEC_Standard_Tomo_v.1.03", "", "52", "", ""],
    ],
}


def test_survey_csv_of_the_real_vendor_files(store, ingestor, tmp_path):
    files = [shared_file(n) for n in ("MG-RDSR-Hologic_mix.dcm", "MG-RDSR-GEPristina-2D.dcm", "MG-RDSR-Giotto-DBT.dcm")]
    ingestor.ingest_paths(files)
    s = settings(survey_numbers=["SDM9876543=4100", "1010102=5000", "900123=6000"])
    built = build_survey(store, s, "2010-01-01", "2025-12-31", tmp_path / "out")
    got = _survey_files(tmp_path / "out")
    assert sorted(got) == sorted(REAL)  # no GE DBT or Giotto 2D file: no such exposures
    for name, rows in REAL.items():
        assert _read(got[name]) == rows, name
    assert len(built.html) == 3 and not built.partial


# --- exclusions, split, numbering: hand-built studies ------------------------------------------


def _set_num(ev: Dataset, concept: str, value: str) -> None:
    for child in ev.ContentSequence:
        if child.ConceptNameCodeSequence[0].CodeValue == concept:
            child.MeasuredValueSequence[0].NumericValue = value
            return
    raise KeyError(concept)


def _ev(
    view=CC,
    lat=RIGHT,
    agd="1.5",
    start="20250102093000",
    protocol=None,
    thickness="55",
    rotational=False,
    no_laterality=False,
):
    extra = [B.item("CONTAINS", "TEXT", ("125203", "DCM", "Acquisition Protocol"), text=protocol)] if protocol else []
    ev = B.event(view=view, laterality=lat, agd=agd, start=start, extra=extra)
    _set_num(ev, "111633", thickness)
    if rotational:
        for child in ev.ContentSequence:
            if child.ConceptNameCodeSequence[0].CodeValue == "113721":
                child.ConceptCodeSequence[0].CodeValue = "113613"
                child.ConceptCodeSequence[0].CodeMeaning = "Rotational Acquisition"
    if no_laterality:
        for child in ev.ContentSequence:
            if child.ConceptNameCodeSequence[0].CodeValue == "123014":
                del child.ContentSequence
    return ev


def _write(tmp: Path, name: str, events, serial="SN-1", date="20250102", patient=None, station="ROOM1") -> Path:
    ds = B.rdsr(events, patient=patient or B.PATIENT)
    ds.DeviceSerialNumber = serial
    ds.StationName = station
    ds.StudyDate = date
    path = tmp / f"{name}.dcm"
    path.write_bytes(B.to_bytes(ds))
    return path


def _t(k: int) -> str:
    return f"202501020930{k:02d}"


def test_survey_exclusions_split_and_numbering(store, ingestor, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    study1 = [
        _ev(CC, RIGHT, start=_t(1)),
        _ev(CC, RIGHT, start=_t(2)),  # RCC, RCC2
        _ev(MLO, LEFT, start=_t(3)),  # LOB
        _ev(CC, RIGHT, start=_t(4), rotational=True),  # DBT RCC
        _ev(MLO, RIGHT, start=_t(5), protocol="R MLO Scout"),  # excluded
        _ev(CC, LEFT, start=_t(6), protocol="Specimen"),  # excluded
        _ev(CC, LEFT, start=_t(7), protocol="Post-Clip"),  # excluded
        _ev(CC, LEFT, start=_t(8), no_laterality=True),  # excluded
        _ev(CC, LEFT, start=_t(9), protocol="Stereo Biopsy"),  # excluded (biopsy first)
    ]
    study2 = [_ev(CC, LEFT, start=_t(10)), _ev(MLO, LEFT, start=_t(11), rotational=True)]
    ingestor.ingest_paths(
        [
            _write(src, "a", study1),
            _write(src, "b", study2, date="20250103", patient={**B.PATIENT, "PatientID": "NHS0000000001"}),
        ]
    )
    built = build_survey(store, settings(survey_numbers=["SN-1=3000"]), "2025-01-01", "2025-01-31", tmp_path / "o")
    files = _survey_files(tmp_path / "o")
    assert sorted(files) == ["survey_SN-1_2D_3000.csv", "survey_SN-1_DBT_3001.csv"]
    rows2d = _read(files["survey_SN-1_2D_3000.csv"])
    assert [(r[0], r[1], r[2]) for r in rows2d] == [
        ("3000", "1", "RCC"),
        ("3000", "1", "RCC2"),
        ("3000", "1", "LOB"),
        ("3000", "2", "LCC"),
    ]
    assert rows2d[0][3:8] == ["28", "W", "Rh", "55", "95"]
    rowsdbt = _read(files["survey_SN-1_DBT_3001.csv"])
    assert [(r[0], r[1], r[2]) for r in rowsdbt] == [("3001", "1", "RCC"), ("3001", "2", "LOB")]
    ex = next((tmp_path / "o").rglob("*_exclusion_reasons.csv"))
    got = {r["reason"]: int(r["exposures"]) for r in csv.DictReader(open(ex, newline=""))}
    assert got == {
        "scout protocol": 1,
        "specimen view": 1,
        "post-clip protocol": 1,
        "no laterality": 1,
        "biopsy protocol": 1,
    }
    html = built.html[0].read_text()
    for reason in got:
        assert reason in html


# --- DRL through the database and the command -------------------------------------------------


def test_drl_report_hand_computed(store, ingestor, tmp_path):
    """Three rooms, reported AGD of 2D MLO views at 55 mm: room medians 1.2, 1.5, 2.0 (ROOM-C has
    a 70 mm MLO and a CC outside the set) -> local DRL 1.5, 75th percentile 1.75."""
    src = tmp_path / "src"
    src.mkdir()
    doses = {"ROOM-A": ["1.0", "1.2", "1.4"], "ROOM-B": ["1.5", "1.5"], "ROOM-C": ["1.9", "2.1"]}
    paths = []
    for serial, ds in doses.items():
        for k, agd in enumerate(ds):
            paths.append(
                _write(
                    src,
                    f"{serial}{k}",
                    [_ev(MLO, LEFT, agd=agd, start=_t(1))],
                    serial=serial,
                    patient={**B.PATIENT, "PatientID": f"NHS1{k}"},
                )
            )
    paths.append(
        _write(
            src,
            "C-out",
            [_ev(MLO, LEFT, agd="9.0", thickness="70", start=_t(1)), _ev(CC, LEFT, agd="8.0", start=_t(2))],
            serial="ROOM-C",
        )
    )
    ingestor.ingest_paths(paths)
    s = DRLSettings.from_settings(
        settings(national_drl_mgy=1.8, national_drl_source="test value").report, dose="reported", min_events=2
    )
    built = build_drl(store, settings(), "2025-01-01", "2025-01-31", tmp_path / "o", s)
    values = {r["quantity"]: r["value"] for r in csv.DictReader(open(next((tmp_path / "o").rglob("*_values.csv"))))}
    assert float(values["local DRL (median of room medians)"]) == pytest.approx(1.5)
    assert float(values["national-style DRL (75th percentile of room medians)"]) == pytest.approx(1.75)
    assert values["rooms qualifying"] == "3"
    rooms = {r["serial"]: r for r in csv.DictReader(open(next((tmp_path / "o").rglob("*_rooms.csv"))))}
    assert float(rooms["ROOM-A"]["median (mGy)"]) == pytest.approx(1.2)
    assert float(rooms["ROOM-C"]["median (mGy)"]) == pytest.approx(2.0)
    assert rooms["ROOM-C"]["in set"] == "2"
    assert "above" in rooms["ROOM-C"]["against national DRL"] and "above" not in rooms["ROOM-B"]["against national DRL"]
    html = built.html[0].read_text()
    assert "test value" in html and "1.50 mGy" in html


# --- the commands, privacy ------------------------------------------------------------------


def _run(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "srdose", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )


def _texts(out: Path):
    """Every output file's text: HTML without its embedded images, CSV, and XLSX sheet XML."""
    for p in sorted(out.rglob("*")):
        if p.suffix == ".xlsx":
            with zipfile.ZipFile(p) as z:
                for n in z.namelist():
                    if n.endswith(".xml"):
                        yield f"{p.name}:{n}", z.read(n).decode("utf-8", "replace")
        elif p.suffix in (".html", ".csv"):
            yield p.name, re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", p.read_text("utf-8"))


@pytest.mark.slow
def test_commands_exit_codes_and_no_identifier_in_any_output(srdose_env, tmp_path):
    """Synthetic studies of three vendors (and a hand-built one carrying tests/builders PATIENT):
    after survey, drl and qa no patient name, ID, birth date, accession, study ID, UID or
    pseudonym appears in any output file."""
    import pydicom

    from srdose import synth
    from srdose.pseudonym import Pseudonymiser, load_or_create_secret

    src = tmp_path / "src"
    for i, v in enumerate(("hologic", "ge", "siemens")):
        synth.generate(
            v,
            6,
            src,
            seed=40 + i,
            manifest=src / f"manifest-{v}.json",
            date_range=(dt.date(2024, 1, 1), dt.date(2024, 12, 31)),
        )
    _write(src, "builders", [_ev(CC, RIGHT, start="20240601093000")], date="20240601")
    env = {}
    assert _run("ingest", src, env=env).returncode in (0, 1)
    assert _run("recalc", env=env).returncode == 0
    out = tmp_path / "reports"
    r = _run("report", "survey", "--from", "2024-01-01", "--to", "2024-12-31", "--out", out, env=env)
    assert r.returncode == 0, r.stderr
    assert (
        _run(
            "report", "drl", "--from", "2024-01-01", "--to", "2024-12-31", "--out", out, "--min-events", "1", env=env
        ).returncode
        == 0
    )
    serial = synth.make_unit("hologic", 0).serial
    r = _run("report", "qa", "--unit", serial, "--from", "2024-01-01", "--to", "2024-12-31", "--out", out, env=env)
    assert r.returncode == 0, r.stderr
    assert "report: " in r.stdout
    # the QA report gives the unit's conformance verdict, the one `srdose conformance` gives
    period = ("--from", "2024-01-01", "--to", "2024-12-31")
    c = _run("conformance", "--unit", serial, *period, "--out", tmp_path / "conformance", env=env)
    assert c.returncode == 0, c.stderr
    verdicts = {row["verdict"] for row in csv.DictReader((tmp_path / "conformance" / "conformance.csv").open())}
    assert len(verdicts) == 1
    (html,) = out.glob(f"qa_{serial}_*/qa_*.html")
    page = html.read_text()
    assert "Conformance of the dose reports" in page and f"<strong>{verdicts.pop()}</strong>" in page
    # usage errors and nothing to report
    assert (
        _run("report", "qa", "--unit", "NO-SUCH", "--from", "2024-01-01", "--to", "2024-12-31", env=env).returncode == 2
    )
    assert _run("report", "survey", "--from", "2024-13-01", "--to", "2024-12-31", env=env).returncode == 2
    assert _run("report", "survey", "--from", "2030-01-01", "--to", "2030-12-31", "--out", out, env=env).returncode == 1

    secret = Pseudonymiser(load_or_create_secret(srdose_env / "site-secret.key"))
    needles = set()
    for path in sorted(src.glob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        ids = synth.identifiers_of(ds)
        # the unit's identity (serial, station, model, site): the reports name the unit they are about
        ids = {
            k: v
            for k, v in ids.items()
            if k not in ("DeviceSerialNumber", "StationName", "InstitutionName")
            and not k.startswith(("observer:Device", "observer:Station AE"))
        }
        needles.update(v for v in ids.values())
        needles.update(
            (
                str(ds.SOPInstanceUID),
                secret.patient(str(ds.get("PatientID", ""))),
                secret.accession(str(ds.get("AccessionNumber", ""))),
            )
        )
        needles.update(str(p) for p in ds.get("PatientName", "").components if p) if ds.get("PatientName") else None
    needles.update(B.PATIENT.values())
    needles.update(B.PATIENT["PatientName"].split("^"))
    needles = {n for n in needles if n and len(n) >= 5}
    assert len(needles) > 50
    texts = list(_texts(out))
    assert len(texts) > 20
    for name, text in texts:
        low = text.lower()
        hits = [n for n in needles if n.lower() in low]
        assert not hits, f"{name} contains {hits[:3]}"


@pytest.mark.parametrize("cmd", [["report"], ["report", "survey"], ["report", "drl"], ["report", "qa"], ["demo"]])
def test_report_commands_have_help(cmd):
    r = _run(*cmd, "--help", env={})
    assert r.returncode == 0, r.stderr
    assert "Usage:" in r.stdout


def test_not_patient_studies_are_excluded_and_counted(store, ingestor, tmp_path):
    """A study marked not_patient leaves the survey and the DRL set, counted in both."""
    from sqlalchemy import update

    from srdose.store import models as M

    if not hasattr(M.Study, "not_patient"):
        pytest.skip("no not_patient study marker in this schema")
    src = tmp_path / "src"
    src.mkdir()
    ingestor.ingest_paths(
        [
            _write(src, "p", [_ev(MLO, LEFT, agd="1.0", start=_t(1))]),
            _write(
                src,
                "qa",
                [_ev(MLO, LEFT, agd="5.0", start=_t(1))],
                patient={**B.PATIENT, "PatientID": "PHANTOM1"},
                date="20250103",
            ),
        ]
    )
    with store.begin() as conn:
        conn.execute(update(M.Study).where(M.Study.study_date == "20250103").values(not_patient=True))
    build_survey(store, settings(survey_numbers=["SN-1=10"]), "2025-01-01", "2025-01-31", tmp_path / "o")
    assert [r[2] for r in _read(_survey_files(tmp_path / "o")["survey_SN-1_2D_10.csv"])] == ["LOB"]
    ex = next((tmp_path / "o").rglob("*_exclusion_reasons.csv"))
    assert {r["reason"]: r["exposures"] for r in csv.DictReader(open(ex))} == {"not a patient study": "1"}
    s = DRLSettings.from_settings(settings().report, dose="reported", min_events=1)
    build_drl(store, settings(), "2025-01-01", "2025-01-31", tmp_path / "d", s)
    rows = list(csv.DictReader(open(next((tmp_path / "d").rglob("*_exclusions.csv")))))
    assert rows[0]["not a patient study"] == "1" and rows[0]["used"] == "1"
    values = {r["quantity"]: r["value"] for r in csv.DictReader(open(next((tmp_path / "d").rglob("*_values.csv"))))}
    assert float(values["local DRL (median of room medians)"]) == pytest.approx(1.0)


def test_survey_units_read_in_batches_write_what_one_read_writes(store, ingestor, tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    paths = []
    for k, serial in enumerate(["SN-1", "SN-2", "SN-3"]):
        events = [_ev(CC, RIGHT, start=_t(1)), _ev(MLO, LEFT, start=_t(2)), _ev(CC, RIGHT, start=_t(3))]
        paths.append(_write(src, f"s{k}", events, serial=serial, station=f"ROOM{k}"))
    ingestor.ingest_paths(paths)
    conf = settings(survey_numbers=["SN-1=10", "SN-2=20", "SN-3=30"])
    build_survey(store, conf, "2025-01-01", "2025-01-31", tmp_path / "one")
    monkeypatch.setattr(survey, "BATCH_EVENTS", 4)  # three exposures a unit: a unit a batch
    assert [len(b) for b in survey.unit_batches([{"events": 3}] * 3, survey.BATCH_EVENTS)] == [1, 1, 1]
    build_survey(store, conf, "2025-01-01", "2025-01-31", tmp_path / "each")
    one, each = _survey_files(tmp_path / "one"), _survey_files(tmp_path / "each")
    assert sorted(one) == sorted(each) == ["survey_SN-1_2D_10.csv", "survey_SN-2_2D_20.csv", "survey_SN-3_2D_30.csv"]
    for name in one:
        assert one[name].read_bytes() == each[name].read_bytes()
        assert [r[2] for r in _read(one[name])] == ["RCC", "LOB", "RCC2"]


def test_unit_batches_keep_order_and_limit():
    units = [{"id": k, "events": n} for k, n in enumerate([5, 3, 9, 1, 1, 12])]
    batches = list(survey.unit_batches(units, 10))
    assert [[u["id"] for u in b] for b in batches] == [[0, 1], [2, 3], [4], [5]]
