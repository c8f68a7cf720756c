"""The unit page's data (srdose.store.unitpage) on databases built by ingesting synthetic RDSRs.

The numbers are checked against the same rows read independently here (SQL in the test),
against the reference table shipped with srdose, and against hand arithmetic; the drift
detection against a unit whose reported AGD drops by 20 % from one month on (as after a
service visit that changed the unit's dose calculation) and the same unit without the step.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from srdose.config import DEFAULTS, Settings
from srdose.physics.dance import fit_kv
from srdose.physics.factors import load_bundled
from srdose.recalc import Params, run
from srdose.recalc.physicsfile import parse
from srdose.reference import eu_levels as report_eu_levels
from srdose.store import models as M
from srdose.store.recalc import add_physics_set
from srdose.store.unitpage import control_chart, eu_levels, ratio_drift, unit_charts, unit_physics
from srdose.synth import generate
from tests import builders as B

STATIC = Path(__file__).resolve().parents[1] / "srdose" / "web" / "static"
JANUARY = (dt.date(2025, 1, 1), dt.date(2025, 1, 31))
FEBRUARY = (dt.date(2025, 2, 1), dt.date(2025, 2, 28))


def _settings(**report) -> Settings:
    values = copy.deepcopy(DEFAULTS)
    values["report"].update(report)
    return Settings(values)


def _build(store, ingestor, tmp_path: Path, agd_step: float | None = None, per_month: int = 200) -> str:
    """One Hologic unit: ``per_month`` studies in January and in February 2025 (about ten a
    weekday), February's reported AGD scaled by ``agd_step`` when given; ingested and
    recalculated (rdsr method, bundled factors). Returns the unit's serial."""
    jan = generate("hologic", per_month, tmp_path / "jan", seed=11, date_range=JANUARY)
    feb = generate("hologic", per_month, tmp_path / "feb", seed=12, date_range=FEBRUARY)
    if agd_step is not None:
        assert sum(B.scale_agd(p, agd_step) for p in feb) > per_month
    summary = ingestor.ingest_paths([tmp_path / "jan", tmp_path / "feb"])
    assert summary.outcomes["ingested"] == len(jan) + len(feb)
    run(store, load_bundled(), Params())
    with store.engine.connect() as conn:
        (serial,) = conn.execute(select(M.Device.serial)).scalars().all()
    return serial


def _live(conn, serial: str, *cols):
    E, S, St, D, R = M.Event, M.SourceObject, M.Study, M.Device, M.RecalcResult
    q = (
        select(*cols)
        .select_from(E)
        .join(S, E.source_object_id == S.id)
        .join(St, E.study_id == St.id)
        .join(D, E.device_id == D.id)
        .outerjoin(R, R.event_id == E.id)
        .where(D.serial == serial, S.superseded_by.is_(None))
    )
    return conn.execute(q).all()


@pytest.fixture
def stable_unit(store, ingestor, tmp_path):
    return _build(store, ingestor, tmp_path)


def test_unit_charts_real_numbers(store, stable_unit, tmp_path):
    serial = stable_unit
    d = unit_charts(store, serial, _settings(national_drl_mgy=2.5, national_drl_source="test value"), max_points=5000)
    json.dumps(d, allow_nan=False)  # the route returns it as JSON as it is

    E, St, R = M.Event, M.Study, M.RecalcResult
    with store.engine.connect() as conn:
        rows = _live(conn, serial, St.study_date, R.mgd_recalc_mgy, E.agd_mgy, E.anode, E.filter_material, E.kvp)
    assert d["events"] == len(rows) and d["serial"] == serial
    assert d["first"] == "2025-01-01" and d["last"] <= "2025-02-28"
    assert [dev["serial"] for dev in d["devices"]] == [serial]

    # monthly medians, from the same rows computed here
    for month, prefix in (("2025-01", "202501"), ("2025-02", "202502")):
        (row,) = [m for m in d["monthly"] if m["month"] == month]
        mgd = [r[1] for r in rows if r[0].startswith(prefix) and r[1] is not None and r[1] > 0]
        agd = [r[2] for r in rows if r[0].startswith(prefix) and r[2] is not None and r[2] > 0]
        assert row["events"] == sum(r[0].startswith(prefix) for r in rows)
        assert row["mgd_n"] == len(mgd) and row["agd_n"] == len(agd)
        assert row["mgd_median"] == pytest.approx(float(np.median(mgd)), rel=1e-4)
        assert row["agd_median"] == pytest.approx(float(np.median(agd)), rel=1e-4)
        ratios = [r[1] / r[2] for r in rows if r[0].startswith(prefix) and (r[1] or 0) > 0 and (r[2] or 0) > 0]
        assert row["ratio_median"] == pytest.approx(float(np.median(ratios)), rel=1e-4)

    # under max_points every event is drawn: the scatter holds exactly the positive doses
    assert not d["mgd"]["sampled"]
    assert len(d["mgd"]["recalc"]) == sum(1 for r in rows if (r[1] or 0) > 0)
    assert len(d["mgd"]["reported"]) == sum(1 for r in rows if (r[2] or 0) > 0)
    tf_counts = {t["target_filter"]: t["events"] for t in d["kv"]["target_filter"]}
    expected: dict[str, int] = {}
    for r in rows:
        key = f"{r[3] or '?'}/{r[4] or '?'}"
        expected[key] = expected.get(key, 0) + 1
    assert tf_counts == expected
    assert {k: len(v) for k, v in d["kv"]["series"].items()} == {
        k: sum(1 for r in rows if f"{r[3] or '?'}/{r[4] or '?'}" == k and r[5] is not None) for k in d["kv"]["series"]
    }

    # the DRL as configured; the European levels as the shipped table (4.5 cm PMMA = 53 mm breast)
    assert d["mgd"]["drl"] == {"mgy": 2.5, "source": "test value"}
    eu = d["mgd"]["eu"]["rows"]
    at53 = [r for r in eu if r["thickness_mm"] == pytest.approx(53.0)]
    assert at53 and at53[0]["acceptable_mgy"] == 2.5 and at53[0]["achievable_mgy"] == 2.0
    reference = report_eu_levels()["rows"]
    assert [(r["thickness_mm"], r["acceptable_mgy"], r["achievable_mgy"]) for r in eu] == [
        (pytest.approx(r["thickness_mm"]), r["acceptable_mgy"], r["achievable_mgy"]) for r in reference
    ]
    assert eu_levels()["source"] == report_eu_levels()["source"]

    # quirks: Hologic's zero-dose 20 kV exposures, counted as the database holds them
    with store.engine.connect() as conn:
        zero_agd = sum(1 for (f,) in _live(conn, serial, E.flags) if f and "zero:agd_mgy" in f.split(";"))
        recalc_flagged = sum(
            1 for (f,) in _live(conn, serial, R.flags) if f and "assumed:reference_point" in f.split(";")
        )
    quirks = {(q["source"], q["flag"]): q["events"] for q in d["quirks"]}
    assert zero_agd > 0 and quirks[("event", "zero:agd_mgy")] == zero_agd
    assert quirks[("recalculation", "assumed:reference_point")] == recalc_flagged
    assert d["physics"] == []


def test_scatter_sample_is_bounded_and_drawn_from_the_unit(store, stable_unit):
    full = unit_charts(store, stable_unit, _settings(), max_points=5000)
    small = unit_charts(store, stable_unit, _settings(), max_points=100)
    assert small["mgd"]["sampled"] and small["events"] == full["events"]
    n = len(small["mgd"]["recalc"])
    assert 20 <= n <= 200
    every = {tuple(p) for p in full["mgd"]["recalc"]}
    assert all(tuple(p) in every for p in small["mgd"]["recalc"])
    # not every n-th event: both views and several target/filters are in the sample
    assert len(small["kv"]["series"]) >= 2
    # counts and medians are over all events, whatever the sample
    assert small["kv"]["target_filter"] == full["kv"]["target_filter"]
    assert small["monthly"] == full["monthly"]


def test_stable_unit_shows_no_drift(store, stable_unit):
    r = ratio_drift(store, stable_unit)
    assert r["period"] == "day" and len(r["points"]) >= 30
    assert r["baseline"]["points"] == 20 and r["baseline"]["from"] == r["points"][0]["date"]
    assert all(p["n"] >= 10 for p in r["points"])
    assert not r["drift"] and r["signals"] == 0 and r["first_signal"] is None
    assert r["lcl"] < r["centre"] < r["ucl"]
    assert r["ucl"] - r["centre"] == pytest.approx(3 * r["sigma"], rel=1e-3)
    weekly = ratio_drift(store, stable_unit, period="week", baseline_points=4)
    assert weekly["period"] == "week" and not weekly["drift"]
    assert all(dt.date.fromisoformat(p["date"]).weekday() == 0 for p in weekly["points"])


def test_step_in_reported_agd_is_flagged_as_drift(store, ingestor, tmp_path):
    serial = _build(store, ingestor, tmp_path, agd_step=0.8)
    r = ratio_drift(store, serial)
    january = [p for p in r["points"] if p["date"] < "2025-02-01"]
    february = [p for p in r["points"] if p["date"] >= "2025-02-01"]
    assert r["baseline"]["until"] < "2025-02-01"  # the baseline is January's
    assert not any(p["flags"] for p in january)
    assert r["drift"] and r["first_signal"] >= "2025-02-01"
    # AGD × 0.8 with the recalculated MGD unchanged: the ratio rises by 1 / 0.8
    assert np.median([p["median"] for p in february]) / r["centre"] == pytest.approx(1.25, abs=0.03)
    assert all("beyond_3sigma" in p["flags"] for p in february)
    assert any("run_of_8" in p["flags"] for p in february)
    # the unit page carries the same control chart
    assert unit_charts(store, serial, _settings())["ratio"] == r
    # a baseline ending after the step takes it in and moves the centre
    late = ratio_drift(store, serial, baseline_until="2025-02-28")
    assert late["centre"] > r["centre"]


def test_control_chart_rules_by_hand():
    # baseline 1.00, 1.02, 0.98, 1.00: centre 1.00, moving ranges 0.02, 0.04, 0.02 -> sigma 0.02667/1.128
    values = np.array([1.00, 1.02, 0.98, 1.00] + [1.015] * 8 + [1.2])
    c = control_chart(values, np.arange(values.size) < 4, sigma_floor=0.01)
    assert c["centre"] == pytest.approx(1.0)
    assert c["sigma"] == pytest.approx((0.08 / 3) / 1.128)
    assert c["ucl"] == pytest.approx(1.0 + 3 * (0.08 / 3) / 1.128)
    # eight points above the centre: the 8th of the run flagged; 1.2 beyond the limit and in the run
    assert [i for i, f in enumerate(c["flags"]) if f] == [11, 12]
    assert c["flags"][11] == ["run_of_8"] and c["flags"][12] == ["beyond_3sigma", "run_of_8"]
    # within sigma_floor of the centre a point is on the line: no run
    near = control_chart(np.array([1.0, 1.0] + [1.005] * 10), np.arange(12) < 2, sigma_floor=0.01)
    assert near["sigma"] == pytest.approx(0.01) and not any(near["flags"])


def test_physics_fits_are_the_recalculation_fits(store, stable_unit):
    physics = f"""manufacturer,HOLOGIC
serial,{stable_unit}
valid_from,2024-06-01
fdd_mm,650
support_gap_mm,20
d_ref_mm,600
target,filter,filter_mm,kv,output_ugy_per_mas,hvl_mm_al
W,Rh,0.05,26,40,0.48
W,Rh,0.05,28,46,0.50
W,Rh,0.05,30,52,0.53
W,Rh,0.05,32,57,0.55
"""
    add_physics_set(store, parse(physics))
    (s,) = unit_physics(store, stable_unit)
    (beam,) = s["beams"]
    assert s["valid_from"] == "2024-06-01" and s["valid_to"] is None and (beam["target"], beam["filter"]) == ("W", "Rh")
    assert [p["kv"] for p in beam["points"]] == [26, 28, 30, 32]
    expected = fit_kv([26, 28, 30, 32], [40, 46, 52, 57])
    assert beam["output_fit"]["coef"] == pytest.approx(list(expected.coef))
    # the drawn curve is the fit, over the measured range ± 1 kV
    curve = beam["output_fit"]["curve"]
    assert curve[0][0] == 25.0 and curve[-1][0] == 33.0
    k, y = curve[2]
    assert y == pytest.approx(float(np.polyval(expected.coef, k)), rel=1e-3)
    hvl = fit_kv([26, 28, 30, 32], [0.48, 0.50, 0.53, 0.55])
    assert beam["hvl_fit"]["coef"] == pytest.approx(list(hvl.coef))
    assert unit_charts(store, stable_unit, _settings())["physics"] == [s]


def test_unknown_unit_has_empty_charts(store):
    d = unit_charts(store, "NO-SUCH-SERIAL", _settings())
    json.dumps(d, allow_nan=False)
    assert d["events"] == 0 and d["devices"] == [] and d["mgd"]["recalc"] == [] and d["monthly"] == []
    assert d["ratio"]["points"] == [] and not d["ratio"]["drift"] and "reason" in d["ratio"]
    assert d["mgd"]["drl"] is None


def test_chart_library_and_page_script_ship_in_the_package():
    lib = (STATIC / "chart.umd.min.js").read_text("utf-8")
    version = re.search(r"Chart\.js v(\d+)\.\d+\.\d+", lib[:300])
    assert version and version.group(1) in ("3", "4")
    assert "Released under the MIT License" in lib[:300]
    licence = (STATIC / "chart.js.LICENSE.txt").read_text("utf-8")
    assert "MIT" in licence and "Permission is hereby granted" in licence
    script = (STATIC / "unit.js").read_text("utf-8")
    for canvas in ("chart-mgd", "chart-ratio", "chart-kv", "chart-force", "chart-monthly", "chart-fits"):
        assert f'"{canvas}"' in script
    assert "data-rendered" in script and "data-points" in script and "charts.json" in script
    # nothing fetched from elsewhere: hospital networks are closed
    for text in (script, (STATIC / "app.css").read_text("utf-8")):
        assert not re.search(r"https?://", text)
