"""Benchmark of the MGD recalculation.

1. The numpy core (srdose.recalc.engine.compute: K, g, c, s, T from each
   event's sweep, the kerma check and the uncertainty of every MGD) on
   1,000,000 synthetic events, against a plain-Python per-event loop doing
   the same MGD arithmetic (timed on a sample, and used as a cross-check of
   the values).
2. End-to-end ``srdose recalc --all`` (a subprocess, as a user runs it, replacing every stored
   result) on a database of 1,000,000 events, then the no-op re-run; SQLite unless ``--db``
   names a new or empty database (e.g. PostgreSQL).

    python bench/bench_recalc.py [--events 1000000] [--db-events 1000000] [--db URL [--seeded]] [--keep DIR]
                                 [--jobs N] [--skip-core] [--skip-db]

The events are written by bench/seed_events.py: synthetic RDSRs of all five vendor flavours
(srdose.synth) ingested once and replicated in bulk (ingesting a million files would measure the
parser, not the recalculation). The Hologic unit 0 has the example physics file of
sample_data/physics/ (measured method), the others use the rdsr method.
"""

from __future__ import annotations

import argparse
import bisect
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from srdose.physics.factors import load_bundled  # noqa: E402
from srdose.recalc.engine import Params, PhysicsFits, compute, prepare  # noqa: E402
from srdose.recalc.physicsfile import parse  # noqa: E402

EXAMPLE = REPO / "sample_data" / "physics" / "example_synthetic_hologic_unit0.csv"


def synthetic_inputs(n: int, seed: int = 1) -> tuple[dict, PhysicsFits]:
    """n events shaped like recalc_inputs() output: half measured (Hologic unit), half rdsr (GE, Giotto)."""
    from srdose.synth.vendors import make_unit

    rng = np.random.default_rng(seed)
    pf = parse(EXAMPLE)
    sets = [
        {
            "id": 1,
            "manufacturer": pf.manufacturer,
            "model": pf.model,
            "serial": pf.serial,
            "valid_from": pf.valid_from,
            "valid_to": None,
            "fdd_mm": pf.fdd_mm,
            "support_gap_mm": pf.support_gap_mm,
            "d_ref_mm": pf.d_ref_mm,
            "points": [
                {
                    "target": p.target,
                    "filter_material": p.filter,
                    "filter_mm": p.filter_mm,
                    "kvp": p.kv,
                    "output_ugy_per_mas": p.output_ugy_per_mas,
                    "hvl_mm": p.hvl_mm_al,
                }
                for p in pf.points
            ],
        }
    ]
    fits = PhysicsFits.build(sets)
    hol, ge, gio = make_unit("hologic", 0), make_unit("ge", 0), make_unit("giotto", 0)
    vendor = rng.integers(0, 3, n)  # 0 hologic (measured), 1 GE, 2 Giotto
    dbt = rng.random(n) < 0.3
    t = np.round(rng.normal(58, 14, n).clip(15, 120))
    kv = np.round(np.clip(25 + 0.12 * (t - 20), 25, 35))
    manu = np.array([hol.manufacturer, ge.manufacturer, gio.manufacturer], dtype=object)[vendor]
    serial = np.array([hol.serial, ge.serial, gio.serial], dtype=object)[vendor]
    anode = np.array(["W", "Rh", "W"], dtype=object)[vendor]
    filt = np.where(vendor == 1, "Ag", np.where((vendor == 0) & dbt, "Al", np.where(vendor == 0, "Rh", "Ag")))
    fmm = np.where(vendor == 1, np.nan, np.where((vendor == 0) & dbt, 0.7, 0.05))
    rp = np.where(vendor == 0, "Entrance exposure to a 4.2 cm breast thickness", "At Surface of Patient")
    sdd = np.array([700.0, 660.0, 685.5])[vendor]
    inputs = {
        "event_id": np.arange(n, dtype=np.int64),
        "device_id": vendor.astype(np.int64),
        "kvp": kv,
        "mas": rng.uniform(30, 200, n),
        "n_pulses": np.where(dbt & (vendor == 2), 11.0, 1.0),
        "filter_thickness_mm": fmm,
        "compressed_thickness_mm": t,
        "hvl_mm": 0.3 + 0.01 * kv,
        "entrance_exposure_mgy": rng.uniform(2, 12, n),
        "agd_mgy": rng.uniform(0.8, 3.0, n),
        "source_detector_mm": sdd,
        "age_years": rng.uniform(38, 75, n),
        "positioner_primary_angle_deg": np.where(dbt & (vendor == 2), -13.73, np.nan),
        "positioner_primary_end_angle_deg": np.where(dbt & (vendor == 2), 13.73, np.nan),
        "source_rp_mm": np.full(n, np.nan),
        "manufacturer": manu.tolist(),
        "model": [None] * n,
        "serial": serial.tolist(),
        "study_date": ["20240601"] * n,
        "acquisition": np.where(dbt, "DBT", "2D").tolist(),
        "anode": anode.tolist(),
        "filter_material": filt.tolist(),
        "reference_point": rp.tolist(),
    }
    return inputs, fits


def _interp_py(grid, h, t):
    """Scalar version of dance.interpolate (the peer): bisect + the same formula; NaN outside."""

    def pos(axis, x):
        if axis is None or len(axis) == 1:
            return 0, 0.0
        if not axis[0] <= x <= axis[-1]:
            return None, None
        i = min(max(bisect.bisect_right(axis, x) - 1, 0), len(axis) - 2)
        return i, (x - axis[i]) / (axis[i + 1] - axis[i])

    if math.isnan(h) or math.isnan(t):
        return float("nan")
    hv = None if grid.hvl is None else grid.hvl.tolist()
    tv = None if grid.thickness is None else grid.thickness.tolist()
    i, wi = pos(hv, h)
    j, wj = pos(tv, t)
    if i is None or j is None:
        return float("nan")
    v = grid.values
    nh, nt = v.shape
    i1, j1 = min(i + 1, nh - 1), min(j + 1, nt - 1)
    f = math.log if grid.log_thickness else (lambda x: x)
    lo = f(v[i, j]) + wj * (f(v[i, j1]) - f(v[i, j]))
    hi = f(v[i1, j]) + wj * (f(v[i1, j1]) - f(v[i1, j]))
    if grid.log_thickness:
        lo, hi = math.exp(lo), math.exp(hi)
    return lo + wi * (hi - lo)


def _T_py(fs, b, k, hvl, tc):
    """T = Σ α t(θ) for one event: the RDSR's arc or the system's documented sweep."""
    from srdose.physics.sweeps import documented_sweep

    target, filt, mm = b.beams[b.beam[k]]
    tt, _ = fs.t_theta_for(target, filt, mm)
    doc = documented_sweep(b.systems[b.system[k]])
    arc = abs(b.angle_end[k] - b.angle_start[k])
    if not arc > 0.5:
        arc = doc.arc_deg
    n = int(b.n_pulses[k]) if b.n_pulses[k] >= 2 else doc.projections
    w = [1.0] * n
    if not b.n_pulses[k] >= 2:
        w[0] = doc.first_weight
    grids = tt.grids()
    angles = tt.angles.tolist()
    total = 0.0
    for i in range(n):
        a = abs(-arc / 2 + arc * i / (n - 1))
        j = min(max(bisect.bisect_right(angles, a) - 1, 0), len(angles) - 2)
        f = (a - angles[j]) / (angles[j + 1] - angles[j])
        t0, t1 = _interp_py(grids[j], hvl, tc), _interp_py(grids[j + 1], hvl, tc)
        total += w[i] * (t0 + f * (t1 - t0))
    return total / sum(w)


def python_loop(b, fits, fs, params, idx) -> list:
    """MGD per event, one event at a time in plain Python (the peer)."""
    out = []
    for k in idx.tolist():
        t_mm = float(b.thickness_mm[k])
        hvl_r = float(b.hvl_rdsr[k])
        K_r = float(b.k_rp[k])
        if not math.isnan(b.rp_height_mm[k]):
            gap = b.gap_mm[k] if b.set_index[k] >= 0 else params.rdsr_support_gap_mm
            K_r *= ((b.sdd_mm[k] - gap - b.rp_height_mm[k]) / (b.sdd_mm[k] - gap - t_mm)) ** 2
        K, hvl = K_r, hvl_r
        if b.fit_index[k] >= 0:
            f = int(b.fit_index[k])
            x = float(b.kvp[k])
            if fits.kv_range[f][0] - params.kv_margin <= x <= fits.kv_range[f][1] + params.kv_margin:
                a, bb, c = fits.coef_out[f]
                y = (a * x + bb) * x + c
                a, bb, c = fits.coef_hvl[f]
                K_m = y * b.mas[k] / 1000.0 * (b.d_ref_mm[k] / (b.fdd_mm[k] - b.gap_mm[k] - t_mm)) ** 2
                if not abs(math.log(K_m / K_r)) > math.log1p(params.k_vs_mas_tolerance):
                    K, hvl = K_m, (a * x + bb) * x + c
        tc = t_mm / 10.0
        g = _interp_py(fs.g, hvl, tc)
        if math.isnan(g):
            g = _interp_py(fs.g_ext, hvl, tc)
        age = b.age[k]
        c = _interp_py(fs.c["40-49" if age < 50 else "50-64"], hvl, tc)
        target, filt, mm = b.beams[b.beam[k]]
        sf, _ = fs.spectrum_factor(target, filt, mm)
        s = _interp_py(sf.grid, hvl, tc)
        T = _T_py(fs, b, k, hvl, tc) if b.is_dbt[k] else 1.0
        out.append(K * g * c * s * T)
    return out


def bench_core(n: int) -> None:
    fs = load_bundled()
    if fs.missing:
        print(
            f"bundled factor set incomplete ({'; '.join(fs.missing.values())}): core timing still runs, "
            "values are NaN where tables are missing"
        )
    params = Params()
    inputs, fits = synthetic_inputs(n)
    t0 = time.perf_counter()
    batch = prepare(inputs, fits, params)
    t_prep = time.perf_counter() - t0
    compute(batch.take(np.arange(min(n, 1000))), fits, fs, params)  # warm-up
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        res = compute(batch, fits, fs, params)
        best = min(best, time.perf_counter() - t0)
    sample = np.random.default_rng(2).choice(n, size=min(n, 20000), replace=False)
    t0 = time.perf_counter()
    ref = python_loop(batch, fits, fs, params, sample)
    t_py = time.perf_counter() - t0
    ok = np.isfinite(res.mgd[sample]) & np.isfinite(np.array(ref))
    assert np.array_equal(np.isfinite(res.mgd[sample]), np.isfinite(np.array(ref))), "peer and core disagree on NaN"
    maxdiff = float(np.max(np.abs(np.array(ref)[ok] / res.mgd[sample][ok] - 1))) if ok.any() else float("nan")
    rate, py_rate = n / best, sample.size / t_py
    print(
        f"numpy core: {n:,} events in {best:.3f} s = {rate / 1e6:.2f} M events/s "
        f"(target >= 1 M/s: {'met' if rate >= 1e6 else 'NOT met'}); preparing the arrays {t_prep:.2f} s"
    )
    print(
        f"plain-Python per-event loop (peer, {sample.size:,} events): {py_rate:,.0f} events/s; "
        f"numpy core is {rate / py_rate:,.0f}x faster; values agree to {maxdiff:.1e} (max relative difference)"
    )
    print(
        f"  methods: measured {int((res.method == 0).sum()):,}, rdsr {int((res.method == 1).sum()):,}; "
        f"no MGD {int(np.isnan(res.mgd).sum()):,}; every MGD has its uncertainty: "
        f"{bool(np.all(np.isfinite(res.mgd_u[np.isfinite(res.mgd)])))} "
        f"(median {np.nanmedian(res.mgd_u / res.mgd) * 50:.1f} % "
        "at k = 1)"
    )


#: The targets of the end-to-end rate, events a second over a million events.
TARGETS = {"sqlite": 250_000, "postgresql": 100_000}


def bench_end_to_end(n_events: int, url: str | None, keep: str | None, seeded: bool = False, jobs: int = 0) -> None:
    """``srdose recalc --all`` and the no-op ``srdose recalc`` on ``url`` (new or empty: filled by
    bench/seed_events.py; ``seeded``: filled before, used as it is), else on a new SQLite file;
    with ``jobs`` processes (0: the default, one per core) and with one."""
    from bench.seed_events import seed

    workdir = Path(keep or tempfile.mkdtemp(prefix="srdose-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if url is None:
        db_path = workdir / "bench.sqlite"
        for p in workdir.glob("bench.sqlite*"):
            p.unlink()
        url = f"sqlite:///{db_path}"
    engine = "postgresql" if url.startswith("postgresql") else "sqlite"
    if seeded:
        from sqlalchemy import create_engine, text

        with create_engine(url).connect() as conn:
            events = conn.execute(text("SELECT count(*) FROM events")).scalar_one()
        print(f"\n{events:,} events seeded before ({engine})")
    else:
        summary = seed(url, n_events, progress=lambda line: None)
        events = summary.events
        print(f"\nseeded {events:,} events ({engine}) in {summary.seconds:.1f} s")
    env = {**os.environ, "SRDOSE_DATA_DIR": str(workdir / "data")}
    cmd = [sys.executable, "-m", "srdose", "--db", url]

    def vacuumed() -> None:
        """PostgreSQL: the results table vacuumed, as a user's would be before a yearly run; not
        with the last run's million dead row versions being vacuumed beside the one timed."""
        if engine == "postgresql":
            from sqlalchemy import create_engine

            vacuum = create_engine(url, isolation_level="AUTOCOMMIT")
            with vacuum.connect() as conn:
                conn.exec_driver_sql("VACUUM recalc_results")
                conn.exec_driver_sql("CHECKPOINT")
            vacuum.dispose()

    def timed(args):
        vacuumed()
        t = time.perf_counter()
        # from the checkout this script is in: the srdose it measures, not one installed elsewhere
        p = subprocess.run(cmd + args, env=env, capture_output=True, text=True, cwd=REPO)
        dt = time.perf_counter() - t
        if p.returncode != 0:
            print(p.stdout, p.stderr)
            raise SystemExit(f"srdose {' '.join(args)} failed ({p.returncode})")
        return dt, p.stdout

    target = TARGETS[engine]
    for j in [jobs, 1] if jobs != 1 else [1]:
        flag = ["--jobs", str(j)] if j else []
        t_force, out = timed(["recalc", "--all", *flag])
        t_again, _ = timed(["recalc", *flag])
        measured = next((line for line in out.splitlines() if "method measured" in line), "").replace("│", " ")
        rate = events / t_force
        print(
            f"srdose recalc --all {' '.join(flag) or '(default jobs)'} (end to end, new process, {engine}; "
            f"replaces every stored result): {events:,} events in {t_force:.1f} s = {rate:,.0f} events/s, "
            f"{rate / target:.2f} of the target {target:,}/s  [{' '.join(measured.split())}]"
        )
        print(f"  srdose recalc again (nothing changed): {t_again:.1f} s")
    print("  end-to-end rate / numpy-core rate shows the database share of the work")
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--db-events", type=int, default=1_000_000)
    ap.add_argument("--db", metavar="URL", help="A new or empty database to fill and recalculate (default: SQLite)")
    ap.add_argument("--keep", metavar="DIR", help="Keep the benchmark database in DIR.")
    ap.add_argument("--seeded", action="store_true", help="--db was seeded before: use it as it is")
    ap.add_argument("--jobs", type=int, default=0, help="srdose recalc --jobs (0: its default)")
    ap.add_argument("--skip-core", action="store_true")
    ap.add_argument("--skip-db", action="store_true")
    a = ap.parse_args()
    if a.seeded and not a.db:
        ap.error("--seeded needs --db")
    print(f"numpy {np.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    if not a.skip_core:
        bench_core(a.events)
    if not a.skip_db:
        bench_end_to_end(a.db_events, a.db, a.keep, a.seeded, a.jobs)


if __name__ == "__main__":
    main()
