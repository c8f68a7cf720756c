"""``srdose mc``: Monte Carlo of the Dance breast model from the command line.

``srdose mc --target Mo --filter Mo:0.03 --kv 28 --thickness-mm 45 --json``
runs one calculation; ``srdose mc tables --out DIR`` regenerates the factor
tables.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from srdose.physics.montecarlo import conversion, spectra, systems, tables, transport


def single_calculation(
    target: str,
    filter_spec: str,
    kv: float,
    added_al_mm: float,
    thickness_mm: float,
    glandularity: float,
    angle_deg: float,
    photons: int,
    seed: int,
    with_s: bool = False,
) -> dict:
    """One Monte Carlo calculation; returns the JSON-ready result.

    ``mgd_per_k`` is MGD/K for the requested glandularity and angle (K at the
    0-degree position); ``g`` is MGD/K for a 50 % glandular breast at 0 degrees
    with the same spectrum and thickness (an extra run when glandularity or
    angle differ), ``c`` and ``t`` the corresponding ratios. Uncertainties are
    one standard deviation (statistical).
    """
    fmat, fmm = spectra.parse_filter(filter_spec)
    sp = spectra.make_spectrum(target, fmat, float(fmm), float(kv), float(added_al_mm))
    hvl = spectra.hvl_mm_al(sp.fluence)
    fluences = [sp.fluence]
    ref = None
    if with_s:
        ref = systems.momo_spectrum_for_hvl(hvl)
        fluences.append(ref.fluence)
    q = conversion.sampling_weights(*fluences)
    t_cm = thickness_mm / 10.0

    def run(gl: float, ang: float, s: int):
        geom = transport.BreastGeometry(thickness_cm=t_cm, glandularity=gl, angle_deg=ang)
        media = transport.make_media(gl)
        tally = transport.simulate(geom, spectra.BIN_CENTRES_KEV, q, photons, s, media=media)
        return conversion.response_from_tally(geom, tally, geom.central_mass_g(media.mixture.density), s)

    t0 = time.perf_counter()
    main = run(glandularity, angle_deg, seed)
    out: dict = {
        "spectrum": sp.label,
        "hvl_mm_al": round(hvl, 4),
        "thickness_mm": thickness_mm,
        "glandularity": glandularity,
        "angle_deg": angle_deg,
        "photons": photons,
        "seed": seed,
    }
    m, mu = conversion.dose_per_kerma(main, sp.fluence)
    out["mgd_per_k"] = m
    out["mgd_per_k_uncertainty"] = mu
    g_resp = main
    if glandularity != 0.5 or angle_deg != 0.0:
        g_resp = run(0.5, 0.0, seed + 1)
    g, gu = conversion.dose_per_kerma(g_resp, sp.fluence)
    out["g"], out["g_uncertainty"] = g, gu
    if angle_deg != 0.0:
        zero = run(glandularity, 0.0, seed + 2) if glandularity != 0.5 else g_resp
        out["t"], out["t_uncertainty"] = conversion.t_factor(main, zero, sp.fluence)
        if glandularity != 0.5:
            out["c"], out["c_uncertainty"] = conversion.independent_ratio(zero, g_resp, sp.fluence)
    elif glandularity != 0.5:
        out["c"], out["c_uncertainty"] = conversion.independent_ratio(main, g_resp, sp.fluence)
    if ref is not None:
        out["s"], out["s_uncertainty"] = conversion.spectrum_ratio(g_resp, sp.fluence, ref.fluence)
        out["s_reference_spectrum"] = ref.label
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


@click.group(name="mc", invoke_without_command=True)
@click.option("--target", type=click.Choice(["Mo", "Rh", "W"]), help="Anode material.")
@click.option("--filter", "filter_spec", default=None, help="Filter as MATERIAL:MM, e.g. Mo:0.03.")
@click.option("--kv", type=float, help="Tube voltage (kV).")
@click.option("--added-al", "added_al_mm", type=float, default=0.0, show_default=True, help="Added aluminium (mm).")
@click.option("--thickness-mm", type=float, help="Compressed breast thickness (mm).")
@click.option("--glandularity", type=float, default=0.5, show_default=True, help="Glandular fraction by mass (0-1).")
@click.option("--angle-deg", type=float, default=0.0, show_default=True, help="DBT projection angle.")
@click.option("--photons", type=int, default=1_000_000, show_default=True, help="Photon histories per run.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--with-s", is_flag=True, help="Also compute s against Mo/Mo of the same HVL.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def mc(
    ctx: click.Context,
    target: str | None,
    filter_spec: str | None,
    kv: float | None,
    added_al_mm: float,
    thickness_mm: float | None,
    glandularity: float,
    angle_deg: float,
    photons: int,
    seed: int,
    with_s: bool,
    as_json: bool,
) -> None:
    """Monte Carlo of the Dance breast model: conversion factors g, c, s, t."""
    if ctx.invoked_subcommand is not None:
        return
    if target is None or filter_spec is None or kv is None or thickness_mm is None:
        missing = [
            n
            for n, v in (
                ("--target", target),
                ("--filter", filter_spec),
                ("--kv", kv),
                ("--thickness-mm", thickness_mm),
            )
            if v is None
        ]
        raise click.UsageError(f"missing {', '.join(missing)} (or use a subcommand: tables)")
    result = single_calculation(
        target, filter_spec, kv, added_al_mm, thickness_mm, glandularity, angle_deg, photons, seed, with_s
    )
    if as_json:
        click.echo(json.dumps(result))
        return
    table = Table(title="srdose mc")
    table.add_column("quantity")
    table.add_column("value")
    for k, v in result.items():
        table.add_row(k, f"{v:.5g}" if isinstance(v, float) else str(v))
    Console().print(table)


@mc.command("tables")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--photons-2d", type=int, default=8_000_000, show_default=True)
@click.option("--photons-dbt", type=int, default=2_500_000, show_default=True)
@click.option("--seed", type=int, default=20240501, show_default=True)
@click.option("--workers", type=int, default=2, show_default=True)
@click.option(
    "--from-responses",
    "from_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Rebuild the tables from the raw responses (responses.npz) of an earlier generation in this "
    "folder, without new transport runs (new beams or tube voltages, same geometries).",
)
def tables_cmd(
    out_dir: Path, photons_2d: int, photons_dbt: int, seed: int, workers: int, from_dir: Path | None
) -> None:
    """Regenerate every factor table (CSV with provenance) into OUT."""
    if from_dir is not None:
        for p in tables.refold(from_dir, out_dir):
            click.echo(str(p))
        return

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ) as bar:
        task = bar.add_task("Monte Carlo runs", total=None)

        def on_plan(runs):
            bar.update(task, total=len(runs))

        def progress(run, dt):
            bar.update(
                task,
                advance=1,
                description=f"t={run.thickness_cm:g} cm G={run.glandularity:.3g} angle={run.angle_deg:.3g}",
            )

        paths = tables.generate(out_dir, photons_2d, photons_dbt, seed, workers, progress, on_plan)
    for p in paths:
        click.echo(str(p))
