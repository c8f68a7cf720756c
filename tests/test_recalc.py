"""srdose physics import/show and srdose recalc on a database (SQLite and PostgreSQL).

The measured-method example uses a synthetic unit (the builders' ACME SN-1)
whose physics file and expected MGD are written out here; the factor set is
a small user sheet with published g cells, the published s for W/Rh and c = 1
as a declared stand-in, so the arithmetic can be checked by hand.
"""

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from srdose.cli import main
from srdose.parse import read_bytes
from srdose.physics.factors import load_csv
from srdose.recalc import Params, run
from srdose.recalc.engine import _codes
from srdose.recalc.physicsfile import PhysicsFileError, parse
from srdose.store import models as M
from srdose.store import recalc as db
from srdose.store.database import EVENT_EXPORT_COLUMNS
from tests.builders import event, num, rdsr, to_bytes
from tests.test_dance import SHEET

PHYSICS_SN1 = """# test unit ACME SN-1
manufacturer,ACME
model,Mammo 1
serial,SN-1
valid_from,2024-01-01
fdd_mm,650
support_gap_mm,20
d_ref_mm,600
target,filter,filter_mm,kv,output_ugy_per_mas,hvl_mm_al
W,Rh,0.05,26,40,0.48
W,Rh,0.05,28,46,0.50
W,Rh,0.05,30,52,0.52
"""

ESE = ("111636", "DCM", "Entrance Exposure at RP")


def add(store, ds):
    data = to_bytes(ds)
    with store.begin() as conn:
        return store.add(conn, read_bytes(data), "0" * 64, "test")


def _results(store):
    with store.engine.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(select(*M.RecalcResult.__table__.columns).order_by(M.RecalcResult.event_id))
        ]


def test_measured_method_worked_example(store):
    """K = 46 µGy/mAs · 95 mAs · (600 / (650 − 20 − 55))² = 4.37 mGy · (600/575)² = 4.758261 mGy
    (Y(28 kV) = 46 and HVL(28 kV) = 0.50 lie on the measured points; the fit passes through them).
    g(0.50, 5.5 cm) = √(0.258 · 0.214) = 0.234972 (ln-linear halfway between the published 5 and 6 cm cells).
    MGD = 4.758261 · 0.234972 · 1 · 1.042 = 1.165018 mGy; reported AGD 1.5 → ratio 0.776679: inside a ±25 % band,
    outside the measured method's default ±20 %.
    """
    add(store, rdsr())
    db.add_physics_set(store, parse(PHYSICS_SN1))
    fs = load_csv(SHEET)
    summary = run(store, fs, Params(ratio_bands=(("measured", 0.25),)))
    assert summary.computed == 1 and summary.methods == {"measured": 1}
    (r,) = _results(store)
    assert r["method"] == "measured" and r["hvl_source"] == "measured_fit"
    assert r["k_mgy"] == pytest.approx(4.37 * (600 / 575) ** 2, rel=1e-9)
    assert r["k_mgy"] == pytest.approx(4.758261, abs=1e-6)
    assert r["hvl_used_mm"] == pytest.approx(0.50, abs=1e-9)
    assert r["g"] == pytest.approx((0.258 * 0.214) ** 0.5, rel=1e-9)
    assert r["c"] == 1.0 and r["s"] == 1.042 and r["t_factor"] is None
    assert r["mgd_recalc_mgy"] == pytest.approx(1.165018, abs=1e-6)
    assert r["ratio_recalc_to_reported"] == pytest.approx(1.165018 / 1.5, abs=1e-6)
    assert r["flags"] is None  # builders' birth date gives age 60: no age flag either
    # provenance: the set's label on the result, and the set itself stored with its content
    assert r["factor_set"] == "test-sheet@1"
    with store.engine.connect() as conn:
        rec = conn.execute(
            select(*M.FactorSetRecord.__table__.columns).where(M.FactorSetRecord.id == r["factor_set_id"])
        ).one()
    assert (rec.name, rec.version, rec.kind, rec.sha256) == ("test-sheet", "1", "user", fs.sha256)
    assert rec.content == SHEET
    prov = json.loads(rec.provenance)
    assert prov["sources"]["g"].startswith("unit-test sheet") and "c:40-49" in prov["missing"]
    assert r["physics_set_id"] is not None
    # the default band of the measured method (±20 %) flags it (a settings change recomputes)
    assert run(store, fs, Params()).computed == 1
    assert _results(store)[0]["flags"] == "ratio_outside_band"


def test_missing_input_is_a_flag_naming_it(store):
    # no physics data, and the RDSR has no entrance exposure (the builders' default event)
    add(store, rdsr())
    run(store, load_csv(SHEET), Params())
    (r,) = _results(store)
    assert r["method"] == "rdsr" and r["mgd_recalc_mgy"] is None
    flags = r["flags"].split(";")
    assert "missing:entrance_exposure_mgy" in flags and "no_mgd" in flags
    assert "missing:reference_point" in flags  # ACME's reference point is neither stated nor known


def test_rdsr_method_and_factor_gaps_are_flagged(store):
    ev = event(extra=[num(ESE, "6.0", "mGy")], kvp="28")
    add(store, rdsr(events=[ev]))
    # a sheet without W/Rh s: the event gets no MGD and a flag naming the missing factor
    sheet = SHEET.replace("s,W/Rh,,,1.042\n", "")
    run(store, load_csv(sheet), Params())
    (r,) = _results(store)
    assert r["mgd_recalc_mgy"] is None and "missing_factor:s:W/Rh" in r["flags"]


def _with_date(ds, date):
    ds.StudyDate = date
    return ds


def test_rerun_updates_only_events_affected_by_new_physics(store):
    add(store, _with_date(rdsr(), "20250102"))
    add(store, _with_date(rdsr(), "20250301"))
    other = rdsr(events=[event(extra=[num(ESE, "6.0", "mGy")])])
    other.DeviceSerialNumber = "SN-2"
    add(store, other)
    db.add_physics_set(store, parse(PHYSICS_SN1))
    fs = load_csv(SHEET)
    assert run(store, fs, Params()).computed == 3
    before = {r["event_id"]: r for r in _results(store)}
    second = run(store, fs, Params())
    assert second.computed == 0 and second.up_to_date == 3
    # new measurements from 2025-02-01: only the SN-1 study of 2025-03-01 changes set
    newer = PHYSICS_SN1.replace("valid_from,2024-01-01", "valid_from,2025-02-01").replace(",46,", ",50,")
    set_id, outcome = db.add_physics_set(store, parse(newer))
    assert outcome == "added"
    third = run(store, fs, Params())
    assert third.computed == 1 and third.up_to_date == 2
    after = {r["event_id"]: r for r in _results(store)}
    changed = [e for e in after if after[e]["physics_set_id"] != before[e]["physics_set_id"]]
    assert len(changed) == 1 and after[changed[0]]["physics_set_id"] == set_id
    assert after[changed[0]]["k_mgy"] > before[changed[0]]["k_mgy"]  # 50 instead of 46 µGy/mAs at 28 kV
    for e in after:
        if e not in changed:
            assert after[e]["computed_at"] == before[e]["computed_at"]
    # the same file again changes nothing; another file for the same date needs --replace
    assert db.add_physics_set(store, parse(newer))[1] == "unchanged"
    with pytest.raises(ValueError, match="--replace"):
        db.add_physics_set(store, parse(newer.replace(",50,", ",51,")))
    # other settings: everything is recomputed
    assert run(store, fs, Params(ratio_band=0.1)).computed == 3


def test_physics_file_errors_are_precise():
    with pytest.raises(PhysicsFileError, match="'serial' is required"):
        parse(PHYSICS_SN1.replace("serial,SN-1\n", ""))
    with pytest.raises(PhysicsFileError, match="line 12: kv = 60 is outside"):
        parse(PHYSICS_SN1.replace("W,Rh,0.05,30,", "W,Rh,0.05,60,"))
    with pytest.raises(PhysicsFileError, match="not an element symbol"):
        parse(PHYSICS_SN1.replace("W,Rh,0.05,26", "W,Rhodium,0.05,26"))
    with pytest.raises(PhysicsFileError, match="given twice"):
        parse(PHYSICS_SN1 + "W,Rh,0.05,30,52,0.52\n")


def test_sample_physics_files_parse():
    from tests.conftest import SAMPLE_DATA

    pf = parse(SAMPLE_DATA / "physics" / "example_synthetic_hologic_unit0.csv")
    assert pf.manufacturer == "HOLOGIC, Inc." and pf.valid_from == "20200101"
    assert {(t, f) for t, f, _ in pf.beams()} == {("W", "Rh"), ("W", "Ag"), ("W", "Al")}
    with pytest.raises(PhysicsFileError, match="fdd_mm"):
        parse(SAMPLE_DATA / "physics" / "physics_template.csv")  # the template needs filling in


def test_cli_physics_recalc_and_export(srdose_env, tmp_path):
    runner = CliRunner()
    from srdose import synth
    from srdose.synth.vendors import make_unit

    synth.generate("hologic", 3, tmp_path / "in", seed=3)
    assert runner.invoke(main, ["ingest", str(tmp_path / "in")]).exit_code == 0
    from tests.conftest import SAMPLE_DATA

    example = SAMPLE_DATA / "physics" / "example_synthetic_hologic_unit0.csv"
    res = runner.invoke(main, ["physics", "import", str(example)])
    assert res.exit_code == 0, res.output
    assert "added" in res.output
    serial = make_unit("hologic", 0).serial
    res = runner.invoke(main, ["physics", "show", serial])
    assert res.exit_code == 0 and "W/Rh" in res.output and "resid" in res.output
    assert runner.invoke(main, ["physics", "show", "NO-SUCH-UNIT"]).exit_code == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("serial,X\n")
    assert runner.invoke(main, ["physics", "import", str(bad)]).exit_code == 2
    assert runner.invoke(main, ["recalc", "--factor-set", "no-such-set"]).exit_code == 2
    assert runner.invoke(main, ["recalc", "--since", "last tuesday"]).exit_code == 2
    res = runner.invoke(main, ["recalc"])
    assert res.exit_code == 0, res.output
    assert "method measured" in res.output
    res = runner.invoke(main, ["recalc"])
    assert res.exit_code == 0 and "already up to date" in res.output
    out = tmp_path / "events.csv"
    assert runner.invoke(main, ["export", "events", "--out", str(out)]).exit_code == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0].keys()) == EVENT_EXPORT_COLUMNS
    assert EVENT_EXPORT_COLUMNS[28:39] == (
        "mgd_recalc_mgy",
        "method",
        "k_mgy",
        "hvl_used_mm",
        "hvl_source",
        "g",
        "c",
        "s",
        "t_factor",
        "factor_set",
        "ratio_recalc_to_reported",
    )
    measured = [r for r in rows if r["method"] == "measured"]
    assert measured and all(r["factor_set"].startswith("bundled@") for r in measured)
    for r in measured:
        if r["mgd_recalc_mgy"]:
            assert float(r["mgd_recalc_mgy"]) == pytest.approx(
                float(r["k_mgy"]) * float(r["g"]) * float(r["c"]) * float(r["s"]) * float(r["t_factor"] or 1), rel=1e-5
            )
    for name in ("physics", "recalc"):
        assert runner.invoke(main, [name, "--help"]).exit_code == 0


def test_rows_of_several_columns_are_coded_as_rows():
    """Equal rows (None, numbers and text alike) share a code, different rows do not, and each
    code's row is the row itself: what a prepared batch looks its units and beams up by."""
    anode = ["W", "W", None, "Rh", "W", None, "W"]
    filt = ["Rh", "Ag", "Al", "Rh", "Rh", "Al", "Ag"]
    mm = np.array([0.05, 0.05, 0.7, 0.025, 0.05, 0.7, -1.0])
    codes, rows = _codes(anode, filt, mm)
    expected = list(zip(anode, filt, mm.tolist()))
    assert [rows[c] for c in codes.tolist()] == expected
    assert len(rows) == len(set(expected)) == 5
    single, values = _codes(anode)
    assert [values[c] for c in single.tolist()] == anode and len(values) == 3
