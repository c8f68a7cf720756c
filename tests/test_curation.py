"""Curation: infeasible-value rules, not-a-patient, unit names, views, protocols."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest
from sqlalchemy import select

from srdose.curation import infeasible as I
from srdose.parse.records import IrradiationEvent
from tests import builders as B

MAMMO_FILES = (
    "MG-RDSR-Hologic_mix.dcm",
    "MG-RDSR-GEPristina-2D.dcm",
    "MG-RDSR-Giotto-DBT.dcm",
    "MG-Im-GE-SenDS-scaled.dcm",
)


def _valid(**over) -> IrradiationEvent:
    values = dict(
        acquisition="2D",
        kvp=28.0,
        mas=90.0,
        exposure_time_ms=800.0,
        n_pulses=1,
        compressed_thickness_mm=55.0,
        compression_force_n=100.0,
        hvl_mm=0.5,
        agd_mgy=1.5,
        entrance_exposure_mgy=6.0,
    )
    values.update(over)
    return IrradiationEvent(**values)


TOMORROW = (dt.date.today() + dt.timedelta(days=1)).strftime("%Y%m%d")

#: A crafted event breaking each rule of the packaged table (and only it).
CRAFTED = {
    "kvp": [_valid(kvp=19.0), _valid(kvp=50.0)],
    "mas": [_valid(mas=0.0), _valid(mas=1500.0)],
    "exposure_time": [_valid(exposure_time_ms=0.0), _valid(exposure_time_ms=-5.0)],
    "compressed_thickness": [_valid(compressed_thickness_mm=4.0), _valid(compressed_thickness_mm=151.0)],
    "compression_force": [_valid(compression_force_n=-1.0), _valid(compression_force_n=301.0)],
    "hvl": [_valid(hvl_mm=0.1), _valid(hvl_mm=1.2)],
    "agd": [_valid(agd_mgy=-0.1), _valid(agd_mgy=25.0)],
    "entrance_exposure": [_valid(entrance_exposure_mgy=150.0)],
    "pulse_count": [
        _valid(n_pulses=15),
        _valid(acquisition="DBT", n_pulses=0),
        _valid(acquisition="DBT", n_pulses=500),
    ],
}


def test_every_packaged_rule_has_a_crafted_case():
    names = {r.name for r in I.load_rules()}
    assert names == set(CRAFTED) | {"study_date"}


@pytest.mark.parametrize("rule", sorted(CRAFTED))
def test_each_rule_fires_on_a_crafted_event_and_only_it(rule):
    rules = I.load_rules()
    assert I.broken_rules(_valid(), rules, "20250102") == []
    for ev in CRAFTED[rule]:
        assert I.broken_rules(ev, rules, "20250102") == [rule], ev


def test_study_date_rule_fires_on_a_future_date_only():
    rules = I.load_rules()
    assert I.broken_rules(_valid(), rules, TOMORROW) == ["study_date"]
    assert I.broken_rules(_valid(), rules, "19850101") == ["study_date"]
    assert I.broken_rules(_valid(), rules, dt.date.today().strftime("%Y%m%d")) == []
    # missing values break nothing (the parser flags them)
    assert I.broken_rules(IrradiationEvent(), rules, None) == []


def test_dbt_sweep_pulses_are_consistent():
    rules = I.load_rules()
    assert I.broken_rules(_valid(acquisition="DBT", n_pulses=25), rules, "20250102") == []
    assert I.broken_rules(_valid(acquisition="DBT", n_pulses=1), rules, "20250102") == []  # Hologic: the sweep


@pytest.mark.parametrize("name", MAMMO_FILES)
def test_no_rule_fires_on_the_real_vendor_files(name):
    from srdose.parse import read_path
    from tests.conftest import shared_file

    report = read_path(shared_file(name))
    assert report.events
    for ev in report.events:
        assert I.broken_rules(ev, I.load_rules(), report.study.study_date) == [], (name, ev)


def test_no_rule_fires_on_synthetic_studies_of_every_vendor(tmp_path):
    from srdose import synth as S
    from srdose.parse import read_path

    rules = I.load_rules()
    for i, vendor in enumerate(S.VENDORS):
        for path in S.generate(vendor, 4, tmp_path / vendor, seed=10 + i, dbt_fraction=0.5):
            report = read_path(path)
            for ev in report.events:
                assert I.broken_rules(ev, rules, report.study.study_date) == [], (vendor, ev)


def test_rules_table_errors_name_the_line(tmp_path):
    bad = "rule,field,applies_to,min,max,unit,description\nkv,kvpp,all,20,49,kV,x\n"
    with pytest.raises(I.RulesError, match="line 2.*unknown field"):
        I.parse_rules(bad)
    with pytest.raises(I.RulesError, match="limit"):
        I.parse_rules("rule,field,applies_to,min,max\nkv,kvp,all,abc,49\n")
    rules = I.parse_rules("rule,field,applies_to,min,max\nkv,kvp,2D,>20,<49\n")
    assert I.broken_rules(_valid(kvp=20.0), rules, None) == ["kv"]
    assert I.broken_rules(_valid(kvp=20.0, acquisition="DBT"), rules, None) == []


def test_merge_flags_replaces_only_infeasible_flags():
    assert I.merge_flags("zero:hvl_mm;infeasible:kvp", ["agd"]) == "zero:hvl_mm;infeasible:agd"
    assert I.merge_flags("infeasible:kvp", []) is None
    assert I.is_flagged("a;infeasible:hvl") and not I.is_flagged("zero:hvl_mm") and not I.is_flagged(None)


# --- at ingest -------------------------------------------------------------------------


def _ingestor(store, tmp_path, patterns=("PHANTOM", "QA", "TEST")):
    from srdose.governance.hooks import IngestHooks
    from srdose.ingest import Ingestor
    from srdose.quarantine import QuarantineFolder

    return Ingestor(store, QuarantineFolder(tmp_path / "q"), hooks=IngestHooks(patterns, I.load_rules()))


def _ingest(ingestor, *datasets):
    with ingestor.store.begin() as conn:
        return [ingestor.ingest_one(conn, B.to_bytes(ds)) for ds in datasets]


def test_infeasible_flags_are_written_at_ingest_and_events_kept(store, tmp_path):
    from srdose.store import models as M

    ing = _ingestor(store, tmp_path)
    future = B.rdsr(events=[B.event()])
    future.StudyDate = TOMORROW
    _ingest(ing, B.rdsr(events=[B.event(kvp="55", agd="25"), B.event(laterality=("7771000", "SCT", "Left"))]), future)
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(M.Event.kvp, M.Event.flags, M.Study.study_date)
            .join(M.Study, M.Event.study_id == M.Study.id)
            .order_by(M.Event.id)
        ).all()
    assert len(rows) == 3  # flagged events stay in the database
    assert set(rows[0].flags.split(";")) >= {"infeasible:kvp", "infeasible:agd"}
    assert not I.is_flagged(rows[1].flags)
    assert "infeasible:study_date" in rows[2].flags.split(";")


def test_phantom_studies_are_marked_not_patient_before_pseudonymisation(store, tmp_path):
    from srdose.store import models as M
    from srdose.store.governance import not_patient_count, not_patient_expr

    ing = _ingestor(store, tmp_path)
    phantom = dict(B.PATIENT, PatientName="QA^PHANTOM", PatientID="Q1234567")
    by_id = dict(B.PATIENT, PatientName="NOBODY^X", PatientID="TEST-0042")
    _ingest(ing, B.rdsr(), B.rdsr(patient=phantom), B.rdsr(patient=by_id))
    with store.engine.connect() as conn:
        marks = conn.execute(select(M.Study.not_patient).order_by(M.Study.id)).scalars().all()
        n_patient = conn.execute(select(M.Study.id).where(~not_patient_expr())).all()
    # TESTPERSON^ALICE is a person: "TEST" matches whole words only
    assert marks == [False, True, True]
    assert len(n_patient) == 1 and not_patient_count(store) == 2


def test_not_patient_patterns():
    from srdose.curation.notpatient import is_not_patient

    words = ["PHANTOM", "QA", "QC", "TEST"]
    assert is_not_patient("QA_2024", None, words)
    assert is_not_patient(None, "acr^phantom", words)
    assert is_not_patient(None, "Qc Daily", words)
    assert not is_not_patient("AQUA1", "TESTPERSON^ALICE", words)
    assert not is_not_patient(None, None, words)
    assert is_not_patient("CDMAN V4", None, ["re:^cdma[mn]"])
    assert not is_not_patient("CDMAN V4", None, [])


# --- units: display names and aliases --------------------------------------------------


def _unit(ds, serial, station):
    ds.DeviceSerialNumber, ds.StationName = serial, station
    return ds


def test_unit_aliases_merge_statistics(store, tmp_path):
    from collections import Counter

    from srdose.store import governance as G
    from srdose.store import models as M

    ing = _ingestor(store, tmp_path)
    _ingest(
        ing,
        _unit(B.rdsr(events=[B.event(), B.event()]), "SN-1", "ROOM1"),
        _unit(B.rdsr(events=[B.event()]), "SN-1B", "ROOM1-NEW"),  # detector replaced: new serial
        _unit(B.rdsr(events=[B.event()]), "SN-9", "ROOM9"),
    )

    def events_per_unit():
        names = G.display_names(store)
        with store.engine.connect() as conn:
            return Counter(names[d] for d in conn.execute(select(M.Event.device_id)).scalars())

    assert events_per_unit() == {"ROOM1": 2, "ROOM1-NEW": 1, "ROOM9": 1}
    # an alias (by station) names a unit; an explicit rename wins over it
    assert G.set_alias(store, "station", "ROOM1-NEW", "Breast room 1") == "added"
    assert events_per_unit() == {"ROOM1": 2, "Breast room 1": 1, "ROOM9": 1}
    ids = G.find_devices(store, "SN-1")
    assert G.rename_units(store, ids, "Breast room 1") == 1
    assert events_per_unit() == {"Breast room 1": 3, "ROOM9": 1}
    named = {d["serial"]: d["named_by"] for d in G.units(store)}
    assert named == {"SN-1": "rename", "SN-1B": "alias:station", "SN-9": "default"}
    assert G.display_name(store, ids[0]) == "Breast room 1"
    assert G.rename_units(store, ids, None) == 1
    assert G.display_name(store, ids[0]) == "ROOM1"


# --- views and protocols ---------------------------------------------------------------


def test_standard_views():
    from srdose.curation.views import STANDARD_VIEWS, standard_view

    assert {"CC", "MLO", "ML", "LM", "XCCL"} <= set(STANDARD_VIEWS)
    assert standard_view("399368009") == "MLO"
    assert standard_view("cranio-caudal exaggerated laterally") == "XCCL"
    assert standard_view("ml") == "ML"
    assert standard_view("sideways") is None


def test_protocol_mapping_packaged_and_configured(srdose_env, tmp_path, monkeypatch):
    from srdose.config import load
    from srdose.curation.protocols import load_mapping, standard_protocol

    cases = {
        "ROUTINE": "2D standard",
        "L CC": "2D standard",
        "R MLO Tomo": "tomosynthesis",
        "3D STD": "tomosynthesis",
        "Tomo Standard": "tomosynthesis",
        "Implant displaced": "implant",
        "Mag 1.8": "magnification",
        "Spot CC": "spot compression",
        "CESM": "contrast-enhanced",
        "QC phantom": "QA",
        "Combo": "combo",
        "Wibble": "other",
        "": "unknown",
        None: "unknown",
    }
    for name, expected in cases.items():
        assert standard_protocol(name) == expected, name
    own = tmp_path / "map.csv"
    own.write_text("match,standard\n^wib,site special\n")
    monkeypatch.setenv("SRDOSE_CURATION__PROTOCOL_MAP", str(own))
    # the caller passes the configured map
    configured = load_mapping(load().curation.protocol_map or None)
    assert standard_protocol("Wibble", configured) == "site special"
    assert standard_protocol("ROUTINE", configured) == "other"


# --- the commands ----------------------------------------------------------------------


def run(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "srdose", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "250", **(env or {})},
        timeout=600,
    )


def test_check_command_lists_flags_by_unit_and_rule_and_rechecks(srdose_env, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.dcm").write_bytes(B.to_bytes(_unit(B.rdsr(events=[B.event(kvp="55"), B.event()]), "SN-1", "ROOM1")))
    (src / "b.dcm").write_bytes(B.to_bytes(_unit(B.rdsr(events=[B.event()]), "SN-2", "ROOM2")))
    assert run("ingest", src).returncode == 0
    r = run("check")
    assert r.returncode == 1, r.stderr
    assert "ROOM1" in r.stdout and "kvp" in r.stdout and "ROOM2" not in r.stdout
    assert "1 of 3 live events flagged" in " ".join(r.stdout.split())
    r = run("check", "--rules")
    assert r.returncode == 0 and "compressed_thickness" in r.stdout
    # a site table with a lower kV limit: --recheck re-flags stored events
    rules = tmp_path / "rules.csv"
    rules.write_text("rule,field,applies_to,min,max,unit,description\nkv_site,kvp,all,20,27,kV,site limit\n")
    env = {"SRDOSE_CURATION__INFEASIBLE_RULES": str(rules)}
    r = run("check", "--recheck", env=env)
    assert r.returncode == 1
    assert "3 of 3 live events flagged" in " ".join(r.stdout.split()) and "kv_site" in r.stdout
    assert "kvp " not in r.stdout.replace("kv_site", "")
    r = run("units", "rename", "SN-2", "Room two")
    assert r.returncode == 0, r.stderr
    r = run("units")
    assert "Room two" in r.stdout and "rename" in r.stdout
    assert run("units", "rename", "NO-SUCH", "x").returncode == 2
    r = run("protocols")
    assert r.returncode == 0 and "unknown" in r.stdout


def test_protocol_mapper_for_many_names(tmp_path):
    from srdose.config import load
    from srdose.curation.protocols import protocol_mapper

    m = protocol_mapper(load(environ={}).curation.protocol_map or None)
    assert [m(n) for n in ("ROUTINE", "Tomosynthesis", None)] == ["2D standard", "tomosynthesis", "unknown"]
