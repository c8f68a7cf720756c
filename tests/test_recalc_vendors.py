"""Vendor behaviour in the recalculation, on the real files of the shared material (skipped when absent).

Tolerance of the rdsr method against the AGD each unit reported, per vendor
(|MGD_recalc / AGD_reported − 1|), with the physical reason for the spread
(the validation dossier, reports/mgd-validation.md, shows the ratios):

* IMS Giotto ±10 %: every input of the method is in the file (W/Ag, HVL,
  thickness, kerma at the surface, the sweep's angles and per-projection
  tube loading); the unit applies no T (T ≈ 0.99 here).
* GE Pristina ±20 %: GE's own AGD behaves like K·g for a 50 % glandular
  breast, without c and s (~12 % here); no patient age (50-64 assumed).
* Hologic DBT ±25 %: Hologic's own model; the reference point rests on
  inference (flagged); only the 20 and 21 mm sweeps have an MGD (the 19 mm
  breast is below the 2 cm edge of the typical-glandularity table).
"""

import copy
import hashlib

import numpy as np
import pytest
from sqlalchemy import select

from srdose.config import DEFAULTS, Settings
from srdose.parse import read_bytes
from srdose.physics.factors import load_bundled
from srdose.recalc import Params, run
from srdose.recalc.physicsfile import parse
from srdose.store import DoseStore
from srdose.store import models as M
from srdose.store import recalc as db
from tests.conftest import shared_file

TOLERANCE = {"IMS GIOTTO S.p.A.": 0.10, "GE HEALTHCARE": 0.20, "HOLOGIC, Inc.": 0.25}
FILES = ("MG-RDSR-Hologic_mix.dcm", "MG-RDSR-GEPristina-2D.dcm", "MG-RDSR-Giotto-DBT.dcm")


@pytest.fixture
def bundled():
    fs = load_bundled()
    if fs.missing:
        pytest.skip(f"bundled factor set incomplete: {'; '.join(fs.missing.values())}")
    return fs


@pytest.fixture
def dev_store(tmp_path, pseudonymiser):
    store = DoseStore(f"sqlite:///{tmp_path / 'v.sqlite'}", pseudonymiser)
    for name in FILES:
        data = shared_file(name).read_bytes()
        with store.begin() as conn:
            store.add(conn, read_bytes(data), hashlib.sha256(data).hexdigest())
    yield store
    store.close()


def rows(store):
    E, R, D = M.Event, M.RecalcResult, M.Device
    q = (
        select(
            D.manufacturer,
            E.id,
            E.acquisition,
            E.kvp,
            E.mas,
            E.anode,
            E.compressed_thickness_mm,
            E.entrance_exposure_mgy,
            E.agd_mgy,
            *R.__table__.columns,
        )
        .join(R, R.event_id == E.id)
        .join(D, D.id == E.device_id)
        .order_by(E.id)
    )
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def flags(r):
    return set((r["flags"] or "").split(";"))


def test_dev_rdsrs_by_the_rdsr_method_within_vendor_tolerance(dev_store, bundled):
    run(dev_store, bundled, Params())
    got = rows(dev_store)
    assert len(got) == 19 and {r["method"] for r in got} == {"rdsr"}
    ratios = {}
    for r in got:
        assert not any(f.startswith("clamped") for f in flags(r))  # nothing clamped, ever
        if r["mgd_recalc_mgy"] is None:
            continue
        ratios.setdefault(r["manufacturer"], []).append(r["ratio_recalc_to_reported"])
        assert r["ratio_recalc_to_reported"] == pytest.approx(r["mgd_recalc_mgy"] / r["agd_mgy"])
        # every MGD carries its expanded uncertainty
        assert 0.0 < r["mgd_u_mgy"] < r["mgd_recalc_mgy"]
    assert set(ratios) == set(TOLERANCE)
    for maker, values in ratios.items():
        assert np.all(np.abs(np.array(values) - 1.0) <= TOLERANCE[maker]), (maker, values)
    ge = [r for r in got if r["manufacturer"].startswith("GE")]
    assert all("assumed:age_group:50-64" in flags(r) for r in ge)  # no age in the file: 50-64 used, flagged
    # Rh/Ag without a filter thickness in the RDSR: the Monte Carlo s of 0.03 mm Ag, flagged
    assert all("assumed:filter_thickness_mm:0.03" in flags(r) for r in ge)


def test_giotto_T_from_the_sweep_its_own_rdsr_gives(dev_store, bundled):
    """−13.73° to +13.73° (CC) and −58.74° to −31.27° (MLO): a 27.47° arc, 11 projections, the
    first at about half the tube loading. T ≈ 0.990 at 4 cm (an assumed 40° arc gave 0.979)."""
    run(dev_store, bundled, Params())
    giotto = [r for r in rows(dev_store) if r["manufacturer"].startswith("IMS")]
    assert len(giotto) == 4
    for r in giotto:
        assert not any(f.startswith("assumed:sweep") for f in flags(r)), flags(r)
        assert r["t_factor"] == pytest.approx(0.990, abs=0.002)
    # the T of the documented 27.46° sweep in the shipped table at 4 cm, 27 kV, agrees
    T_doc = _table_T("IMS Giotto Class", 4.0, 27.0)
    cc = next(r for r in giotto if r["compressed_thickness_mm"] == 41.0)
    assert cc["t_factor"] == pytest.approx(T_doc, abs=0.002)


def _table_T(system: str, thickness_cm: float, kv: float) -> float:
    import csv
    import io
    from importlib import resources

    text = resources.files("srdose.physics").joinpath("tables/dbt_T.csv").read_text()
    body = "\n".join(ln for ln in text.splitlines() if not ln.startswith("#"))
    for r in csv.DictReader(io.StringIO(body)):
        if r["system"].startswith(system) and float(r["thickness_cm"]) == thickness_cm and float(r["kv"]) == kv:
            return float(r["T"])
    raise KeyError((system, thickness_cm, kv))


def test_hologic_reference_point_and_zero_dose_events(dev_store, bundled):
    run(dev_store, bundled, Params())
    hologic = [r for r in rows(dev_store) if r["manufacturer"].startswith("HOLOGIC")]
    dbt19 = next(r for r in hologic if r["compressed_thickness_mm"] == 19.0)
    # kerma per mAs follows the breast surface (docs/vendors.md): K is the entrance exposure itself,
    # flagged as resting on inference
    assert dbt19["k_mgy"] == pytest.approx(1.71, rel=1e-12)
    assert {"assumed:reference_point", "age_outside_groups:used_50-64"} <= flags(dbt19)
    # 19 mm is below the typical-glandularity table (2-11 cm): no c, so no MGD, and the flag says why
    assert dbt19["mgd_recalc_mgy"] is None and "out_of_table:c:thickness" in flags(dbt19)
    # the sweep: arc from the RDSR (−7.4° to +7.6°), the number of projections from the documented geometry
    dbt20 = next(r for r in hologic if r["compressed_thickness_mm"] == 20.0)
    assert "assumed:sweep_projections" in flags(dbt20) and "assumed:sweep_arc" not in flags(dbt20)
    zero = [r for r in hologic if r["kvp"] == 20.0]
    assert len(zero) == 3
    for r in zero:  # AGD = HVL = entrance exposure = 0 in the file: flagged, no MGD, no crash
        assert r["mgd_recalc_mgy"] is None and r["ratio_recalc_to_reported"] is None
        assert {"missing:hvl_mm", "missing:entrance_exposure_mgy", "missing:agd_mgy", "no_mgd"} <= flags(r)
    assert "out_of_table:g:thickness" in flags(next(r for r in zero if r["compressed_thickness_mm"] == 128.0))


def test_hologic_reference_point_is_a_setting_a_physicist_can_override(dev_store, bundled):
    """After a phantom check a physicist may decide the kerma is at 42 mm above the support after all."""
    settings = Settings(
        {**copy.deepcopy(DEFAULTS), "recalc": {**DEFAULTS["recalc"], "reference_point": ["hologic=42mm"]}}
    )
    params = Params.from_settings(settings.recalc)
    run(dev_store, bundled, params)
    hologic = [r for r in rows(dev_store) if r["manufacturer"].startswith("HOLOGIC")]
    dbt19 = next(r for r in hologic if r["compressed_thickness_mm"] == 19.0)
    # 1.71 · ((700 − 42) / (700 − 19))² = 1.59644 mGy (FDD 700, gap 0 assumed and flagged)
    assert dbt19["k_mgy"] == pytest.approx(1.71 * (658 / 681) ** 2, rel=1e-9)
    assert {"reference_point:site_rule", "assumed:support_gap_mm"} <= flags(dbt19)
    assert "assumed:reference_point" not in flags(dbt19)


HOLOGIC_PHYSICS = """manufacturer,"HOLOGIC, Inc."
serial,SDM9876543
valid_from,2018-01-01
fdd_mm,700
support_gap_mm,20
d_ref_mm,1000
target,filter,filter_mm,kv,output_ugy_per_mas,hvl_mm_al
W,Rh,0.05,25,10.09,0.461
W,Rh,0.05,29,15.29,0.521
W,Rh,0.05,33,21.96,0.581
W,Al,0.7,26,21.10,0.446
W,Al,0.7,29,28.03,0.498
W,Al,0.7,32,36.21,0.551
"""  # test values (the synthetic unit model of sample_data/physics), not a real unit's


def test_hologic_measured_method_never_extrapolates_and_uses_total_mas(dev_store, bundled):
    db.add_physics_set(dev_store, parse(HOLOGIC_PHYSICS))
    run(dev_store, bundled, Params())
    hologic = [r for r in rows(dev_store) if r["manufacturer"].startswith("HOLOGIC")]
    w_rh_20 = [r for r in hologic if r["kvp"] == 20.0 and r["anode"] == "W" and "kv_outside_measured" in flags(r)]
    assert len(w_rh_20) == 2
    for r in w_rh_20:  # 20 kV is 5 kV below the measured 25 kV: no measured K, and no clamped one either
        assert r["method"] == "rdsr" and r["mgd_recalc_mgy"] is None
    w_ag = next(r for r in hologic if r["kvp"] == 20.0 and "fallback:rdsr:no_physics_for_beam" in flags(r))
    assert w_ag["method"] == "rdsr"
    dbt = next(r for r in hologic if r["compressed_thickness_mm"] == 19.0)
    # W/Al fit through (26, 21.10), (29, 28.03), (32, 36.21) at 26 kV is 21.10 exactly:
    # K = 21.10 · 34.3 mAs / 1000 · (1000 / (700 − 20 − 19))² = 0.72373 · (1000/661)² = 1.6564 mGy,
    # consistent with the RDSR's own 1.71 mGy (−3 %)
    assert dbt["method"] == "measured" and dbt["hvl_source"] == "measured_fit"
    assert dbt["k_mgy"] == pytest.approx(21.10 * 34.3 / 1000 * (1000 / 661) ** 2, rel=1e-9)
    assert "inconsistent:k_vs_mas" not in flags(dbt)


GE_PHYSICS = """manufacturer,GE HEALTHCARE
serial,1010102
valid_from,2023-01-01
fdd_mm,660
support_gap_mm,23.2
d_ref_mm,600
target,filter,kv,output_ugy_per_mas,hvl_mm_al
Rh,Ag,30,{y30},0.50
Rh,Ag,32,{y32},0.52
Rh,Ag,34,{y34},0.54
Rh,Ag,36,{y36},0.56
"""  # test values, linear in kV so the fit is exact

#: Output consistent with the public file: its own kerma per mAs is 4.15 mGy / 17.1125 mAs at 590.7 mm,
#: i.e. 0.24251 · (590.7/600)² = 0.2350 mGy/mAs at 600 mm for 34 kV.
GE_CONSISTENT = GE_PHYSICS.format(y30=185, y32=210, y34=235, y36=260)
#: An output 3.1-3.9 × too low (a wrong distance or unit in a physics file, say).
GE_INCONSISTENT = GE_PHYSICS.format(y30=60, y32=68, y34=76, y36=84)


def test_ge_pre_pulse_counts_in_the_mas(dev_store, bundled):
    """The rule: mAs = Σ all pulses of the event, pre-pulse included (see srdose.recalc.engine)."""
    with dev_store.engine.connect() as conn:
        ev = conn.execute(
            select(M.Event.id, M.Event.mas)
            .join(M.Device, M.Device.id == M.Event.device_id)
            .where(M.Device.serial == "1010102")
            .order_by(M.Event.id)
        ).first()
        pulses = conn.execute(
            select(M.Pulse.tube_current_ma, M.Pulse.pulse_width_ms)
            .where(M.Pulse.event_id == ev.id)
            .order_by(M.Pulse.pulse_index)
        ).all()
    # public file, first event: pre-pulse 2.0 mA × 51.44 ms, main pulse 30.48 mA × 558.06 ms
    assert [tuple(p) for p in pulses] == [(2.0, 51.44), (30.48, 558.06)]
    assert ev.mas == pytest.approx(2.0 * 51.44 / 1000 + 30.48 * 558.06 / 1000, rel=1e-9)  # 17.11255 mAs
    db.add_physics_set(dev_store, parse(GE_CONSISTENT))
    run(dev_store, bundled, Params())
    r = next(x for x in rows(dev_store) if x["id"] == ev.id)
    # Y(33.99 kV) = 185 + 12.5 · 3.99 = 234.875 µGy/mAs at 600 mm; breast surface at 660 − 23.2 − 46.1 = 590.7 mm
    assert r["method"] == "measured" and "inconsistent:k_vs_mas" not in flags(r)
    assert r["k_mgy"] == pytest.approx(234.875 * 17.1125488 / 1000 * (600 / 590.7) ** 2, rel=1e-6)
    assert r["hvl_used_mm"] == pytest.approx(0.5399, abs=1e-9)


def test_kerma_against_mas_checked_for_every_vendor(dev_store, bundled):
    """Output × mAs 3.2 × below the RDSR's own kerma: the measured MGD is withheld, the rdsr one kept."""
    db.add_physics_set(dev_store, parse(GE_INCONSISTENT))
    run(dev_store, bundled, Params())
    ge = [r for r in rows(dev_store) if r["manufacturer"].startswith("GE")]
    assert len(ge) == 8
    for r in ge:
        assert {"inconsistent:k_vs_mas", "fallback:rdsr"} <= flags(r)
        assert r["method"] == "rdsr" and r["k_mgy"] == pytest.approx(r["entrance_exposure_mgy"])
        assert r["mgd_recalc_mgy"] is not None


def test_giotto_dbt_uses_the_total_mas_of_all_eleven_projections(dev_store, bundled):
    with dev_store.engine.connect() as conn:
        ev = conn.execute(
            select(M.Event.id, M.Event.mas, M.Event.n_pulses)
            .join(M.Device)
            .where(M.Device.manufacturer.like("IMS%"))
            .order_by(M.Event.id)
        ).first()
        mas = [
            p
            for (p,) in conn.execute(
                select(M.Pulse.exposure_mas).where(M.Pulse.event_id == ev.id).order_by(M.Pulse.pulse_index)
            )
        ]
    assert ev.n_pulses == 11 and len(mas) == 11
    assert mas[0] / np.mean(mas[1:]) == pytest.approx(0.465, abs=0.01)  # the first at about half
    assert ev.mas == pytest.approx(sum(mas)) and ev.mas == pytest.approx(139.89)


def _siemens_physics(unit) -> str:
    from srdose.synth.model import hvl_mm, tube_output

    lines = [
        f"manufacturer,{unit.manufacturer}",
        f"serial,{unit.serial}",
        "valid_from,2000-01-01",
        f"fdd_mm,{unit.sid_mm:g}",
        f"support_gap_mm,{unit.support_gap_mm:g}",
        "d_ref_mm,1000",
        "target,filter,filter_mm,kv,output_ugy_per_mas,hvl_mm_al",
    ]
    for kv in range(24, 37, 2):
        lines.append(
            f"W,Rh,0.05,{kv},{tube_output(kv, 'W', 'RH') * unit.output_factor:.3f},"
            f"{hvl_mm(kv, 'W', 'RH') + unit.hvl_offset:.4f}"
        )
    return "\n".join(lines) + "\n"


def test_siemens_dbt_reporting_one_projection_is_detected(tmp_path, pseudonymiser, bundled):
    """Synthetic Siemens RDSRs imitate the reported (unsourced) quirk: DBT mAs of one projection (of 25)."""
    from srdose import synth
    from srdose.synth.vendors import make_unit

    store = DoseStore(f"sqlite:///{tmp_path / 's.sqlite'}", pseudonymiser)
    for path in synth.generate("siemens", 6, tmp_path / "in", seed=11, units=1):
        data = path.read_bytes()
        with store.begin() as conn:
            store.add(conn, read_bytes(data), hashlib.sha256(data).hexdigest())
    run(store, bundled, Params())
    got = rows(store)
    dbt = [r for r in got if r["acquisition"] == "DBT"]
    two_d = [r for r in got if r["acquisition"] == "2D"]
    assert dbt and two_d
    assert all("dbt_mas_one_projection" in flags(r) for r in dbt)
    assert not any("dbt_mas_one_projection" in flags(r) for r in two_d)
    # with the unit's physics data the one-projection mAs is not used: the RDSR's entrance exposure is
    db.add_physics_set(store, parse(_siemens_physics(make_unit("siemens", 0))))
    run(store, bundled, Params())
    got = rows(store)
    for r in got:
        if r["acquisition"] == "DBT":
            assert r["method"] == "rdsr" and {"dbt_mas_one_projection", "fallback:rdsr"} <= flags(r)
            assert r["k_mgy"] == pytest.approx(r["entrance_exposure_mgy"])  # at the surface of the patient
        else:
            assert r["method"] == "measured" and "dbt_mas_one_projection" not in flags(r)
    store.close()
