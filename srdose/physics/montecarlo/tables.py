"""Generate the shipped factor tables (this module does the I/O).

``generate(out_dir, ...)`` runs every Monte Carlo geometry the tables need
(in parallel processes, each with its own seed derived from the base seed and
the run's index, so the result does not depend on scheduling), folds them with
the spectra and writes self-describing CSV files (``#`` header lines with the
model, library versions, photon counts and seed). Columns are documented in
``srdose/physics/tables/README.md``.
"""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from srdose import __version__
from srdose.physics.io import (
    copy_file,
    load_arrays,
    load_public_factors,
    read_commented_csv,
    save_arrays,
    write_tables,
)

from . import conversion, spectra, systems, transport

#: Cells of the public g copy that are doubtful (see the copy's own note): an
#: independent transcription of the same paper agrees with the HVL 0.50 row
#: from 7 cm up within 0.5 %, so that row is taken as published; these two
#: remain doubtful and are labelled wherever they are shown.
SUSPECT_G_CELLS = {
    (0.60, 2.0): "doubtful: 0.587 in the public copy (~1.5-2 % low vs smooth models)",
    (0.55, 5.0): "doubtful: 0.287 in the public copy (~1-2 % high vs smooth models)",
}


@dataclass(frozen=True)
class RunSpec:
    """One Monte Carlo geometry."""

    index: int
    thickness_cm: float
    glandularity: float
    angle_deg: float
    photons: int

    @property
    def key(self) -> tuple:
        return (self.thickness_cm, round(self.glandularity, 6), round(self.angle_deg, 6))


def plan_runs(photons_2d: int, photons_dbt: int, public: dict) -> list[RunSpec]:
    """All geometries: 2D runs for g, c (incl. typical breasts) and s; the t(theta) angle grid."""
    keys: list[tuple] = []
    typical = systems.typical_glandularity(public)
    for t in systems.EXT_THICKNESS_CM:
        for gl in systems.C_TABLE_GLANDULARITY:
            keys.append((t, gl, 0.0, photons_2d))
        for table in typical.values():
            if t in table:
                keys.append((t, table[t], 0.0, photons_2d))
    for t in systems.EXT_THICKNESS_CM:
        for a in systems.T_THETA_ANGLES_DEG:
            if a != 0.0:
                keys.append((t, 0.5, a, photons_dbt))
    seen: set[tuple] = set()
    runs: list[RunSpec] = []
    for t, gl, a, n in keys:
        k = (t, round(gl, 6), round(a, 6))
        if k in seen:
            continue
        seen.add(k)
        runs.append(RunSpec(len(runs), t, gl, a, n))
    return runs


def beam_spectrum_name(b: systems.Beam, kv: float) -> str:
    return f"{b.target}/{b.filter_material}:{b.filter_mm:g}@{kv:g}"


def table_spectra() -> dict[str, spectra.Spectrum]:
    """Every spectrum the tables fold, by a stable name."""
    out: dict[str, spectra.Spectrum] = {}
    for hvl in systems.EXT_HVL_MM_AL:
        out[f"MoMo_hvl_{hvl:.2f}"] = systems.momo_spectrum_for_hvl(hvl)
    beams = list(systems.S_BEAMS) + [sw.beam for sw in systems.DBT_SWEEPS]
    for b in beams:
        for kv in b.kvs:
            name = beam_spectrum_name(b, kv)
            if name in out:
                continue
            sp = spectra.make_spectrum(b.target, b.filter_material, float(b.filter_mm), float(kv))
            out[name] = sp
            hvl = spectra.hvl_mm_al(sp.fluence)
            ref = f"MoMo_ref_{name}"
            try:
                out[ref] = systems.momo_spectrum_for_hvl(hvl)
            except ValueError:
                pass
    return out


_MEDIA_CACHE: dict = {}


def _run_worker(args) -> tuple[int, conversion.Response, float]:
    spec, q, seed, geom_kw = args
    import time

    gl = round(spec.glandularity, 6)
    if gl not in _MEDIA_CACHE:
        _MEDIA_CACHE[gl] = transport.make_media(spec.glandularity)
    media = _MEDIA_CACHE[gl]
    geom = transport.BreastGeometry(
        thickness_cm=spec.thickness_cm, glandularity=spec.glandularity, angle_deg=spec.angle_deg, **geom_kw
    )
    run_seed = seed * 1_000_003 + spec.index
    t0 = time.perf_counter()
    tally = transport.simulate(geom, spectra.BIN_CENTRES_KEV, q, spec.photons, run_seed, media=media)
    dt = time.perf_counter() - t0
    resp = conversion.response_from_tally(geom, tally, geom.central_mass_g(media.mixture.density), run_seed)
    return spec.index, resp, dt


def run_all(
    runs: list[RunSpec],
    q: np.ndarray,
    seed: int,
    workers: int,
    progress: Callable[[RunSpec, float], None] | None = None,
    geom_kw: dict | None = None,
) -> tuple[dict, float]:
    """Run every geometry; returns {key: Response} and the summed CPU time."""
    geom_kw = geom_kw or {}
    results: dict = {}
    cpu = 0.0
    # Longest runs first for better load balance.
    order = sorted(runs, key=lambda r: -r.photons * r.thickness_cm)
    args = [(r, q, seed, geom_kw) for r in order]
    by_index = {r.index: r for r in runs}
    if workers <= 1:
        it = map(_run_worker, args)
        for idx, resp, dt in it:
            results[by_index[idx].key] = resp
            cpu += dt
            if progress:
                progress(by_index[idx], dt)
    else:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            for idx, resp, dt in ex.map(_run_worker, args, chunksize=1):
                results[by_index[idx].key] = resp
                cpu += dt
                if progress:
                    progress(by_index[idx], dt)
    return results, cpu


# --- folding into tables ----------------------------------------------------------


def _fmt(x: float, digits: int = 5) -> str:
    return "" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


def _interp_t(t_by_angle: dict[float, tuple[float, float]], angle: float) -> tuple[float, float]:
    """t at |angle| by linear interpolation on the angle grid (value, uncertainty)."""
    grid = sorted(t_by_angle)
    x = abs(angle)
    if x > grid[-1] + 1e-9:
        raise ValueError(f"angle {angle} outside the t(theta) grid")
    hi = next(k for k, a in enumerate(grid) if a >= x - 1e-12)
    if abs(grid[hi] - x) < 1e-12 or hi == 0:
        return t_by_angle[grid[hi]]
    a0, a1 = grid[hi - 1], grid[hi]
    w = (x - a0) / (a1 - a0)
    (v0, u0), (v1, u1) = t_by_angle[a0], t_by_angle[a1]
    return v0 + w * (v1 - v0), float(np.hypot((1 - w) * u0, w * u1))


def build_tables(results: dict, spec: dict[str, spectra.Spectrum], public: dict) -> dict[str, list[list]]:
    """Fold responses into table rows (pure apart from reading its inputs)."""
    tables: dict[str, list[list]] = {}
    pg = public["g_factor"]
    pub = {
        (round(float(h), 2), float(t)): pg["values_rows_hvl_cols_thickness"][i][j]
        for i, h in enumerate(pg["hvl_mm_al"])
        for j, t in enumerate(pg["thickness_cm"])
    }

    # g over the extended grid; the published cells carry the public value beside ours
    rows = [
        [
            "hvl_mm_al",
            "thickness_cm",
            "g",
            "g_rel_unc",
            "spectrum",
            "g_public_copy",
            "deviation_pct",
            "public_copy_flag",
        ]
    ]
    for hvl in systems.EXT_HVL_MM_AL:
        sp = spec[f"MoMo_hvl_{hvl:.2f}"]
        for t in systems.EXT_THICKNESS_CM:
            g, u = conversion.dose_per_kerma(results[(t, 0.5, 0.0)], sp.fluence)
            ref = pub.get((round(hvl, 2), t))
            dev = 100 * (g / ref - 1) if ref else float("nan")
            rows.append(
                [
                    f"{hvl:.2f}",
                    f"{t:g}",
                    _fmt(g),
                    _fmt(u / g, 3),
                    sp.label,
                    "" if ref is None else f"{ref:g}",
                    _fmt(dev, 3),
                    SUSPECT_G_CELLS.get((round(hvl, 2), t), ""),
                ]
            )
    tables["g_factors.csv"] = rows

    # c by glandularity
    rows = [["hvl_mm_al", "thickness_cm", "glandularity", "c", "c_rel_unc"]]
    for hvl in systems.EXT_HVL_MM_AL:
        sp = spec[f"MoMo_hvl_{hvl:.2f}"]
        for t in systems.EXT_THICKNESS_CM:
            for gl in systems.C_TABLE_GLANDULARITY:
                c, u = conversion.independent_ratio(results[(t, round(gl, 6), 0.0)], results[(t, 0.5, 0.0)], sp.fluence)
                if gl == 0.5:
                    c, u = 1.0, 0.0
                rows.append([f"{hvl:.2f}", f"{t:g}", f"{gl:g}", _fmt(c), _fmt(u / c, 3)])
    tables["c_factors.csv"] = rows

    # c for typical breasts (the typical-glandularity table spans 2-11 cm only)
    rows = [["age_group", "thickness_cm", "typical_glandularity", "hvl_mm_al", "c", "c_rel_unc"]]
    for age, table in systems.typical_glandularity(public).items():
        for t, gl in table.items():
            for hvl in systems.EXT_HVL_MM_AL:
                sp = spec[f"MoMo_hvl_{hvl:.2f}"]
                c, u = conversion.independent_ratio(results[(t, round(gl, 6), 0.0)], results[(t, 0.5, 0.0)], sp.fluence)
                if round(gl, 6) == 0.5:
                    c, u = 1.0, 0.0
                rows.append([age, f"{t:g}", f"{gl:g}", f"{hvl:.2f}", _fmt(c), _fmt(u / c, 3)])
    tables["c_typical.csv"] = rows

    # s
    rows = [
        [
            "target",
            "filter",
            "filter_mm",
            "kv",
            "hvl_mm_al",
            "thickness_cm",
            "s",
            "s_rel_unc",
            "momo_reference_spectrum",
        ]
    ]
    for b in systems.S_BEAMS:
        for kv in b.kvs:
            name = beam_spectrum_name(b, kv)
            sp = spec[name]
            ref = spec.get(f"MoMo_ref_{name}")
            hvl = spectra.hvl_mm_al(sp.fluence)
            for t in systems.EXT_THICKNESS_CM:
                if ref is None:
                    s, u, label = float("nan"), float("nan"), "no Mo/Mo spectrum of this HVL"
                else:
                    s, u = conversion.spectrum_ratio(results[(t, 0.5, 0.0)], sp.fluence, ref.fluence)
                    label = ref.label
                rows.append(
                    [
                        b.target,
                        b.filter_material,
                        f"{b.filter_mm:g}",
                        f"{kv:g}",
                        f"{hvl:.3f}",
                        f"{t:g}",
                        _fmt(s),
                        _fmt(u / s, 3),
                        label,
                    ]
                )
    tables["s_factors.csv"] = rows

    # DBT: t(theta) on the angle grid, per beam, kV (HVL) and thickness
    t_rows = [["target", "filter", "filter_mm", "kv", "hvl_mm_al", "thickness_cm", "angle_deg", "t", "t_rel_unc"]]
    t_grid: dict[tuple, dict[float, tuple[float, float]]] = {}
    for b in systems.T_THETA_BEAMS + tuple(sw.beam for sw in systems.DBT_SWEEPS):
        for kv in b.kvs:
            sp = spec[beam_spectrum_name(b, kv)]
            hvl = spectra.hvl_mm_al(sp.fluence)
            for t in systems.EXT_THICKNESS_CM:
                key = (b.target, b.filter_material, b.filter_mm, kv, t)
                if key in t_grid:
                    continue
                zero = results[(t, 0.5, 0.0)]
                per_angle = {}
                for a in systems.T_THETA_ANGLES_DEG:
                    tv, tu = (1.0, 0.0) if a == 0.0 else conversion.t_factor(results[(t, 0.5, a)], zero, sp.fluence)
                    per_angle[a] = (tv, tu)
                    if b in systems.T_THETA_BEAMS:
                        t_rows.append(
                            [
                                b.target,
                                b.filter_material,
                                f"{b.filter_mm:g}",
                                f"{kv:g}",
                                f"{hvl:.3f}",
                                f"{t:g}",
                                f"{a:g}",
                                _fmt(tv),
                                _fmt(tu / tv, 3),
                            ]
                        )
                t_grid[key] = per_angle
    tables["dbt_t_theta.csv"] = t_rows

    # T of each documented sweep, from the t(theta) grid (linear in angle)
    T_rows: list[list] = [
        [
            "system",
            "arc_deg",
            "projections",
            "thickness_cm",
            "kv",
            "hvl_mm_al",
            "T",
            "T_rel_unc",
            "geometry_verified",
            "sweep_source",
        ]
    ]
    for sw in systems.DBT_SWEEPS:
        b = sw.beam
        w = np.array(sw.weights, float)
        w = w / w.sum()
        for t in systems.EXT_THICKNESS_CM:
            for kv in b.kvs:
                sp = spec[beam_spectrum_name(b, kv)]
                per_angle = t_grid[(b.target, b.filter_material, b.filter_mm, kv, t)]
                vals = [_interp_t(per_angle, a) for a in sw.angles_deg]
                T = float(np.sum(w * np.array([v for v, _ in vals])))
                u = float(np.sqrt(np.sum((w * np.array([e for _, e in vals])) ** 2)))
                T_rows.append(
                    [
                        sw.system,
                        f"{sw.arc_deg:g}",
                        len(sw.angles_deg),
                        f"{t:g}",
                        f"{kv:g}",
                        f"{spectra.hvl_mm_al(sp.fluence):.3f}",
                        _fmt(T),
                        _fmt(u / T, 3),
                        str(sw.verified),
                        sw.source,
                    ]
                )
    tables["dbt_T.csv"] = T_rows

    # Monoenergetic glandular dose per air kerma (2D runs), for folding any spectrum.
    rows = [["thickness_cm", "glandularity", "energy_kev", "dgn", "dgn_rel_unc"]]
    for key in sorted(k for k in results if k[2] == 0.0):
        r = results[key]
        dgn = r.dose / r.kerma
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.sqrt(r.dose_var) / r.dose
        for e, d, u in zip(spectra.BIN_CENTRES_KEV, dgn, rel):
            if np.isfinite(d) and d > 0:
                rows.append([f"{key[0]:g}", f"{key[1]:g}", f"{e:g}", _fmt(d), _fmt(u, 3)])
    tables["mono_dgn.csv"] = rows
    return tables


def provenance_lines(photons_2d: int, photons_dbt: int, seed: int, cpu_s: float, n_runs: int) -> list[str]:
    """The '#' header every table carries."""
    import spekpy
    import xraylib

    geom = transport.BreastGeometry(thickness_cm=5.0)
    return [
        "srdose Monte Carlo conversion factors (srdose.physics.montecarlo)",
        "model: Dance 1990 / Dance et al. 2000 breast: half cylinder radius "
        f"{geom.radius_cm:g} cm, {10 * geom.adipose_layer_cm:g} mm adipose layer, central glandular/adipose "
        "mixture (Hammerstein 1979, ash as P), point focus "
        f"{geom.source_height_cm:g} cm above the support over the chest-wall edge; K at the upper surface "
        "on the central ray, no backscatter; MGD = energy to glandular tissue / glandular mass",
        "physics: photoelectric (local), coherent (F^2), incoherent (Klein-Nishina x S), xraylib "
        f"{xraylib.__version__}; air mu_en/rho NIST (spekpy table); spectra spekpy "
        f"{getattr(spekpy, '__version__', '?')} + 1 mm Be (+ 3 mm PMMA paddle for clinical beams; g/c reference "
        f"Mo/Mo family 28 kV + Al without paddle); numpy {np.__version__}",
        f"photons per run: 2D {photons_2d}, DBT {photons_dbt}; runs {n_runs}; base seed {seed}; "
        f"cpu {cpu_s:.0f} s; generated {datetime.datetime.now().isoformat(timespec='seconds')} "
        f"on {platform.python_implementation()} {platform.python_version()}",
        "regenerate: srdose mc tables --out DIR (python -m srdose mc tables --out DIR)",
    ]


def load_responses(path: Path) -> dict:
    """The raw responses of a generation (``responses.npz``), keyed like :func:`run_all`'s results."""
    d = load_arrays(path)
    out = {}
    for k, dose, var, kerma in zip(d["keys"], d["dose"], d["dose_var"], d["kerma"]):
        key = (float(k[0]), round(float(k[1]), 6), round(float(k[2]), 6))
        geom = transport.BreastGeometry(thickness_cm=key[0], glandularity=key[1], angle_deg=key[2])
        out[key] = conversion.Response(geom, dose, var, kerma, 0, 0)
    return out


def refold(tables_dir: Path, out_dir: Path) -> list[Path]:
    """Rebuild every table from the raw responses of an earlier generation (no new transport): for new
    spectra (beams, tube voltages) over the same geometries. The provenance lines of the generation are
    kept, with a line saying when the tables were refolded."""
    tables_dir = Path(tables_dir)
    results = load_responses(tables_dir / "responses.npz")
    header = [
        c
        for c in read_commented_csv(tables_dir / "g_factors.csv").comments
        if not c.startswith("table:") and not c.startswith("refolded")
    ]
    header.append(
        f"refolded from these runs' responses.npz with the spectra of srdose {__version__} on "
        f"{datetime.datetime.now().isoformat(timespec='seconds')}"
    )
    tables = build_tables(results, table_spectra(), load_public_factors())
    out_dir = Path(out_dir)
    if out_dir.resolve() != tables_dir.resolve():
        copy_file(tables_dir / "responses.npz", out_dir / "responses.npz")
    return write_tables(out_dir, tables, header)


def generate(
    out_dir: Path,
    photons_2d: int = 8_000_000,
    photons_dbt: int = 2_500_000,
    seed: int = 20240501,
    workers: int | None = None,
    progress=None,
    on_plan=None,
) -> list[Path]:
    """Regenerate every table into ``out_dir``."""
    public = load_public_factors()
    spec = table_spectra()
    q = conversion.sampling_weights(*[s.fluence for s in spec.values()])
    runs = plan_runs(photons_2d, photons_dbt, public)
    if on_plan:
        on_plan(runs)
    workers = workers or min(2, os.cpu_count() or 1)
    results, cpu = run_all(runs, q, seed, workers, progress)
    tables = build_tables(results, spec, public)
    header = provenance_lines(photons_2d, photons_dbt, seed, cpu, len(runs))
    # Keep the raw responses too, for the validation report.
    save_arrays(
        Path(out_dir) / "responses.npz",
        keys=np.array([list(k) for k in results]),
        dose=np.array([r.dose for r in results.values()]),
        dose_var=np.array([r.dose_var for r in results.values()]),
        kerma=np.array([r.kerma for r in results.values()]),
    )
    return write_tables(out_dir, tables, header)
