"""Fast checks of the Monte Carlo of the Dance breast model (srdose.physics.montecarlo).

Small photon counts and wide tolerances; no wall-clock assertions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from srdose.physics.montecarlo import conversion, materials, spectra, systems, transport

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
E = spectra.BIN_CENTRES_KEV


def _published_g() -> dict:
    path = SHARED / "physics" / "factors.json"
    if not path.exists():
        pytest.skip("the published factors of the shared material are absent")
    g = json.loads(path.read_text())["g_factor"]
    return {
        (h, t): g["values_rows_hvl_cols_thickness"][i][j]
        for i, h in enumerate(g["hvl_mm_al"])
        for j, t in enumerate(g["thickness_cm"])
    }


@pytest.fixture(scope="module")
def media50():
    return transport.make_media(0.5)


@pytest.fixture(scope="module")
def momo():
    return {h: systems.momo_spectrum_for_hvl(h) for h in (0.35, 0.40, 0.50)}


def _response(thickness_cm, fluences, photons, seed, media, **geom_kw):
    geom = transport.BreastGeometry(thickness_cm=thickness_cm, glandularity=media.glandularity, **geom_kw)
    q = conversion.sampling_weights(*fluences)
    tally = transport.simulate(geom, E, q, photons, seed, media=media)
    return conversion.response_from_tally(geom, tally, geom.central_mass_g(media.mixture.density), seed)


def test_energy_conservation(media50, momo):
    geom = transport.BreastGeometry(thickness_cm=5.0)
    tally = transport.simulate(geom, E, momo[0.40].fluence, 20_000, 3, media=media50)
    assert tally.energy_incident_kev > 0
    assert tally.energy_deposited_kev + tally.energy_escaped_kev == pytest.approx(tally.energy_incident_kev, rel=1e-9)
    # Some energy must both stay and leave for this to mean anything.
    assert 0.2 < tally.energy_deposited_kev / tally.energy_incident_kev < 0.95


def test_pure_absorber_matches_beer_lambert():
    # Uniform 50 % mixture, no adipose layer, scattering turned into absorption,
    # focus 1 km away (parallel beam): deposited fraction = 1 - exp(-mu T).
    media = transport.make_media(0.5)
    thickness = 3.0
    geom = transport.BreastGeometry(thickness_cm=thickness, adipose_layer_cm=0.0, source_height_cm=1e5)
    energy_bin = np.zeros(E.size)
    i20 = int(np.argmin(np.abs(E - 20.25)))
    energy_bin[i20] = 1.0
    tally = transport.simulate(geom, E, energy_bin, 40_000, 11, media=media, scatter=False)
    mu = materials.lookup(media.mixture.mu_total, np.array([E[i20]]))[0]
    expected = 1.0 - np.exp(-mu * thickness)
    got = tally.energy_deposited_kev / tally.energy_incident_kev
    assert got == pytest.approx(expected, abs=0.01)


def test_hvl_agrees_with_spekpy():
    for target, filt, mm, kv, al in (
        ("Mo", "Mo", 0.03, 28, 0.0),
        ("W", "Rh", 0.05, 29, 0.0),
        ("Mo", "Mo", 0.03, 28, 0.3),
    ):
        sp = spectra.make_spectrum(target, filt, mm, kv, al)
        ours = spectra.hvl_mm_al(sp.fluence)
        theirs = spectra.spekpy_hvl(target, filt, mm, kv, al)
        assert ours == pytest.approx(theirs, rel=0.02)


def test_spectrum_for_hvl_hits_target():
    sp = spectra.spectrum_for_hvl("Mo", "Mo", 0.03, 28, 0.45)
    assert spectra.hvl_mm_al(sp.fluence) == pytest.approx(0.45, abs=1e-3)
    assert sp.added_al_mm > 0


def test_g_monotone_in_hvl_and_thickness(media50, momo):
    fl = [momo[h].fluence for h in (0.35, 0.50)]
    g = {}
    for t in (3.0, 6.0):
        r = _response(t, fl, 100_000, 5, media50)
        for h in (0.35, 0.50):
            g[(h, t)] = conversion.dose_per_kerma(r, momo[h].fluence)[0]
    assert g[(0.50, 3.0)] > g[(0.35, 3.0)]
    assert g[(0.50, 6.0)] > g[(0.35, 6.0)]
    assert g[(0.35, 3.0)] > g[(0.35, 6.0)]
    assert g[(0.50, 3.0)] > g[(0.50, 6.0)]


@pytest.mark.parametrize("hvl,thickness", [(0.40, 4.0), (0.35, 6.0), (0.50, 3.0)])
def test_g_against_published_table(media50, momo, hvl, thickness):
    published = _published_g()[(hvl, thickness)]
    r = _response(thickness, [momo[hvl].fluence], 100_000, 7, media50)
    g, u = conversion.dose_per_kerma(r, momo[hvl].fluence)
    assert u / g < 0.02
    assert g == pytest.approx(published, rel=0.05)


def test_seed_reproduces_exactly(media50, momo):
    geom = transport.BreastGeometry(thickness_cm=4.0)
    a = transport.simulate(geom, E, momo[0.40].fluence, 5_000, 42, media=media50, batch_size=2_000)
    b = transport.simulate(geom, E, momo[0.40].fluence, 5_000, 42, media=media50, batch_size=2_000)
    c = transport.simulate(geom, E, momo[0.40].fluence, 5_000, 43, media=media50, batch_size=2_000)
    assert np.array_equal(a.sum, b.sum) and np.array_equal(a.sumsq, b.sumsq)
    assert a.energy_deposited_kev == b.energy_deposited_kev
    assert not np.array_equal(a.sum, c.sum)


def test_t_factor_below_one_and_sweep_T(media50, momo):
    fl = momo[0.50].fluence
    r0 = _response(5.0, [fl], 60_000, 9, media50)
    r25 = _response(5.0, [fl], 60_000, 10, media50, angle_deg=25.0)
    t, u = conversion.t_factor(r25, r0, fl)
    assert 0.8 < t < 1.0 and u < 0.03
    T, _ = conversion.sweep_T({0.0: r0, 25.0: r25}, np.array([-25.0, 0.0, 25.0]), np.ones(3), fl)
    assert T == pytest.approx((1.0 + 2.0 * t) / 3.0, rel=1e-12)


def test_glandularity_changes_dose_the_expected_way(momo):
    fl = momo[0.40].fluence
    lo = _response(5.0, [fl], 60_000, 12, transport.make_media(0.1))
    hi = _response(5.0, [fl], 60_000, 12, transport.make_media(1.0))
    # Dance 2000: c > 1 below 50 % glandularity, c < 1 above.
    assert conversion.dose_per_kerma(lo, fl)[0] > conversion.dose_per_kerma(hi, fl)[0]


def test_cli_single_calculation_json():
    from click.testing import CliRunner

    from srdose.cli.mc import mc

    res = CliRunner().invoke(
        mc,
        [
            "--target",
            "Mo",
            "--filter",
            "Mo:0.03",
            "--kv",
            "28",
            "--added-al",
            "0.2",
            "--thickness-mm",
            "45",
            "--photons",
            "30000",
            "--seed",
            "3",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert {"hvl_mm_al", "g", "g_uncertainty", "mgd_per_k"} <= out.keys()
    assert out["mgd_per_k"] == out["g"]
    assert 0.38 < out["hvl_mm_al"] < 0.43
    assert 0.2 < out["g"] < 0.3
