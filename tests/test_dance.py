"""The Dance-model physics (srdose.physics.dance) and factor sets (srdose.physics.factors).

Expected values are either cells of the published tables (the public copy in
srdose/physics/data/dance_public_factors.json) or arithmetic written out in the test.
"""

import math

import numpy as np
import pytest

from srdose.physics import dance
from srdose.physics.factors import FactorSetError, load_bundled, load_csv
from srdose.physics.io import load_public_factors, package_table, parse_commented_csv


@pytest.fixture(scope="module")
def bundled():
    return load_bundled()


def test_worked_example_by_hand_from_published_tables(bundled):
    """2D, W/Rh, 4 cm breast, woman aged 55, unit output 50 µGy/mAs at 500 mm.

    K  = Y · mAs · (d_ref / (FDD − gap − t))²
       = 50 µGy/mAs · 100 mAs · (500 / (650 − 20 − 40))² = 5 mGy · (500/590)² = 3.59092 mGy
    g  = 0.289            published g, HVL 0.45 mm Al, 4 cm (a table node: no interpolation)
    c  = 1                typical glandularity of a 4 cm breast, ages 50-64, is 50 % (published
                          typical-glandularity table), and c is defined relative to a 50 %
                          glandular breast (Dance et al. 2000), so c = 1 exactly
    s  = 1.042            published s for W/Rh (Dance et al. 2000, public copy)
    MGD = 3.59092 · 0.289 · 1 · 1.042 = 1.08136 mGy
    """
    k = dance.kerma_from_output(50.0, 100.0, 500.0, 650.0, 20.0, 40.0)
    assert k == pytest.approx(5.0 * (500 / 590) ** 2, rel=1e-12)
    assert k == pytest.approx(3.59092, abs=5e-6)
    g = dance.interpolate(bundled.g, [0.45], [4.0])
    assert g.value[0] == pytest.approx(0.289, rel=1e-12)
    assert not (g.clamped_hvl[0] or g.clamped_thickness[0] or g.suspect[0])
    sf, _ = bundled.spectrum_factor("W", "Rh", 0.05)
    assert sf.grid.values[0, 0] == 1.042
    # the typical glandularity behind c = 1 (published copy: 50 % at 4 cm for ages 50-64)
    tg = load_public_factors()["typical_glandularity_pct"]
    assert tg["age_50_64"][tg["thickness_cm"].index(4)] == 50
    if "50-64" in bundled.c:  # the Monte Carlo c table agrees: c ≡ 1 at 50 % glandularity
        assert dance.interpolate(bundled.c["50-64"], [0.45], [4.0]).value[0] == pytest.approx(1.0, abs=1e-9)
    mgd = dance.mgd(k, g.value[0], 1.0, 1.042)
    assert mgd == pytest.approx(3.5909221 * 0.289 * 1.042, rel=1e-7)
    assert mgd == pytest.approx(1.08136, abs=5e-6)


def test_g_interpolation_linear_in_hvl_and_in_ln_g_with_thickness(bundled):
    """g(HVL 0.42, 5.3 cm) from the four published cells around it.

    HVL 0.40 row: ln-linear between 5 cm (0.209) and 6 cm (0.172) at 0.3 of the way:
        0.209 · (0.172/0.209)^0.3 = 0.197134
    HVL 0.45 row: 0.232 · (0.192/0.232)^0.3 = 0.219196
    linear in HVL, 0.4 of the way from 0.40 to 0.45: 0.197134 + 0.4 · (0.219196 − 0.197134) = 0.205959
    """
    lo = 0.209 * math.exp(0.3 * math.log(0.172 / 0.209))
    hi = 0.232 * math.exp(0.3 * math.log(0.192 / 0.232))
    expected = lo + 0.4 * (hi - lo)
    assert expected == pytest.approx(0.205959, abs=1e-6)
    r = dance.interpolate(bundled.g, [0.42], [5.3])
    assert r.value[0] == pytest.approx(expected, rel=1e-12)
    # plain linear interpolation in thickness would give a different (larger) number
    assert r.value[0] < (0.209 + 0.3 * (0.172 - 0.209)) + 0.4 * (
        (0.232 + 0.3 * (0.192 - 0.232)) - (0.209 + 0.3 * (0.172 - 0.209))
    )


def test_outside_the_table_clamps_and_flags(bundled):
    r = dance.interpolate(bundled.g, [0.25, 0.45, 0.45, 0.70, np.nan], [4.0, 1.5, 12.8, 11.0, 4.0])
    # HVL 0.25 → the 0.30 row; thickness 1.5 → 2 cm; 12.8 → 11 cm; HVL 0.70 → the 0.60 row
    assert r.value[:4] == pytest.approx([0.207, 0.509, 0.0988, 0.1385])
    assert r.clamped_hvl.tolist() == [True, False, False, True, False]
    assert r.clamped_thickness.tolist() == [False, True, True, False, False]
    assert np.isnan(r.value[4])  # a missing input stays missing


def test_doubtful_cells_of_the_public_g_copy_are_flagged(bundled):
    r = dance.interpolate(bundled.g, [0.50, 0.52, 0.45, 0.42, 0.60, 0.57, 0.40], [7.0, 9.5, 6.5, 3.0, 2.0, 4.8, 5.0])
    # The HVL 0.50 row from 7 cm up agrees with an independent transcription of the same paper
    # within 0.5 %: taken as published, not flagged. (0.60, 2) and (0.55, 5) remain doubtful:
    # (0.60, 2) is hit; (0.57, 4.8) touches (0.55, 5); the rest do not.
    assert r.suspect.tolist() == [False, False, False, False, True, True, False]
    # used as published, never replaced
    assert dance.interpolate(bundled.g, [0.50], [9.0]).value[0] == pytest.approx(0.1357)


def test_tube_output_fit_and_kv_margin():
    kv = np.array([25.0, 28.0, 31.0, 34.0])
    y = 0.05 * kv**2 - 1.2 * kv + 11.0  # an exact quadratic is recovered exactly
    fit = dance.fit_kv(kv, y)
    assert fit.degree == 2 and fit.coef == pytest.approx((0.05, -1.2, 11.0))
    assert max(abs(r) for r in fit.residuals) < 1e-9
    coef = np.array([fit.coef])
    rng = np.array([[fit.kv_min, fit.kv_max]])
    value, outside = dance.evaluate_fits(coef, rng, np.array([0, 0, 0, -1]), np.array([29.0, 34.8, 38.0, 29.0]), 1.0)
    assert value[0] == pytest.approx(0.05 * 29**2 - 1.2 * 29 + 11.0)
    assert value[1] == pytest.approx(0.05 * 34.8**2 - 1.2 * 34.8 + 11.0)  # within the 1 kV margin
    assert np.isnan(value[2])  # 4 kV past the measured range: no value, never a clamped one
    assert outside.tolist() == [False, False, True, False]
    assert np.isnan(value[3])  # no fit
    one = dance.fit_kv([28.0], [40.0])
    assert one.degree == 0 and one.coef == (0.0, 0.0, 40.0)


def test_reference_point_kerma_moved_by_inverse_square():
    # Hologic: kerma at 42 mm above the support moved to a 19 mm breast, FDD 700, gap 0:
    # 1.71 · ((700 − 42) / (700 − 19))² = 1.71 · (658/681)² = 1.71 · 0.933593 = 1.59644
    k = dance.move_kerma(1.71, 700 - 42, 700 - 19)
    assert k == pytest.approx(1.71 * (658 / 681) ** 2)
    assert k == pytest.approx(1.59644, abs=5e-6)


def test_age_groups():
    group, nearest, missing = dance.age_group([35, 40, 49.9, 50, 64.9, 65, 100, np.nan])
    assert [dance.AGE_GROUPS[g] for g in group] == [
        "40-49",
        "40-49",
        "40-49",
        "50-64",
        "50-64",
        "50-64",
        "50-64",
        "50-64",
    ]
    assert nearest.tolist() == [True, False, False, False, False, True, True, False]
    assert missing.tolist() == [False] * 7 + [True]


def test_sweep_T_weights_projections_by_tube_loading():
    # Giotto-like: the first of 11 projections at about half the mAs (6220 vs 13370 µAs, public RDSR)
    w = [6220] + [13370] * 10
    t = [0.9] + [1.0] * 10
    assert dance.sweep_T(w, t) == pytest.approx((6220 * 0.9 + 133700) / (6220 + 133700))


def test_bundled_set_provenance_and_missing_tables(tmp_path, bundled):
    assert bundled.name == "bundled" and bundled.kind == "bundled" and len(bundled.sha256) == 64
    assert "Dance" in bundled.sources["g"]
    assert "2009" in bundled.sources["s W/Ag"]
    # which s the set uses is stated: published constants where published, Monte Carlo per spectrum elsewhere
    assert bundled.provenance()["s_policy"].startswith("published constants")
    # without the Monte Carlo tables nothing is filled in: c, the missing s and t(theta) are named as missing
    empty = load_bundled(tables_dir=tmp_path)
    assert set(empty.missing) == {"c:40-49", "c:50-64", "s:mc", "t_theta"}
    assert "missing factor table c" in empty.missing["c:50-64"]
    assert empty.c == {} and empty.t_theta == [] and empty.g_ext is None
    assert empty.sha256 != bundled.sha256 or not bundled.c  # the tables are part of its identity


SHEET = """# name: test-sheet
# version: 1
# source: unit-test sheet: g cells copied from the published table; c = 1 is a stand-in
factor,key,hvl_mm_al,thickness_cm,value
g,,0.45,5,0.232
g,,0.45,6,0.192
g,,0.50,5,0.258
g,,0.50,6,0.214
c,50-64,,,1
s,W/Rh,,,1.042
s,W/Al:0.7,,4,1.10
s,W/Al:0.7,,6,1.20
T,Hologic Selenia Dimensions,,5,0.97
"""


def test_user_factor_set_csv():
    fs = load_csv(SHEET)
    assert fs.label == "test-sheet@1" and fs.kind == "user" and fs.content == SHEET
    assert dance.interpolate(fs.g, [0.45], [5.0]).value[0] == pytest.approx(0.232, rel=1e-12)
    # s by thickness, bilinear (here linear): halfway between 4 and 6 cm
    sf, note = fs.spectrum_factor("W", "Al", 0.7)
    assert note == "" and dance.interpolate(sf.grid, [0.5], [5.0]).value[0] == pytest.approx(1.15)
    assert "hologic" in fs.T
    assert "c:40-49" in fs.missing and "c:50-64" not in fs.missing


@pytest.mark.parametrize(
    "text, message",
    [
        (SHEET.replace("# name: test-sheet\n", ""), "'# name: ...' line is required"),
        (SHEET.replace("g,,0.50,6,0.214\n", ""), "complete grid"),
        (SHEET.replace("c,50-64", "c,30-39"), "c key must be one of"),
        (SHEET.replace("s,W/Rh,,,1.042", "s,tungsten,,,1.042"), "TARGET/FILTER"),
        (SHEET.replace("0.192", "-1"), "positive number"),
    ],
)
def test_user_factor_set_errors_name_the_problem(text, message):
    with pytest.raises(FactorSetError, match=message):
        load_csv(text)


def test_commented_csv_comments_metadata_and_rows():
    text = (
        "# name: Site_Set\n#version: 2\n# name: ignored, the first is kept\n\nfactor,value\ng,0.3\n\n  # late\ns,1.04\n"
    )
    table = parse_commented_csv(text)
    assert table.comments == ("name: Site_Set", "version: 2", "name: ignored, the first is kept", "late")
    assert table.meta == {"name": "Site_Set", "version": "2"}
    assert table.rows == [{"factor": "g", "value": "0.3"}, {"factor": "s", "value": "1.04"}]


def test_packaged_tables_read_through_the_one_reader():
    g = package_table("g_factors.csv")
    assert g.rows and {"hvl_mm_al", "thickness_cm"} <= set(g.rows[0])
    assert any(c.startswith("table: g_factors.csv") for c in g.comments)
    assert "g_factor" in load_public_factors()
