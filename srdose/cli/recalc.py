"""``srdose physics import|show``, ``srdose recalc`` and ``srdose validate``.

Exit codes as everywhere: 0 done (events flagged as not recalculable are still a completed run), 2 usage
(bad file, unknown unit or factor set), 3 could not run (database).
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

import click
from rich.table import Table

from srdose.cli.context import (
    EXIT_OK,
    EXIT_USAGE,
    Context,
    console,
    fail,
    out,
    progress_bar,
)
from srdose.cli.params import DATE, UNIT, Unit, dicom_day
from srdose.physics.factors import FactorSetError
from srdose.recalc.engine import Params, PhysicsFits
from srdose.recalc.physicsfile import PhysicsFileError, parse
from srdose.recalc.run import default_jobs, resolve_factor_set
from srdose.recalc.run import run as recalculate
from srdose.recalc.validate import write as write_dossier
from srdose.store import recalc as db
from srdose.terminal import esc


@click.group()
def physics() -> None:
    """Unit physics data (tube output and HVL per kV) for the MGD recalculation."""


@physics.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--replace", is_flag=True, help="Replace a stored set of the same unit and valid_from.")
@click.pass_obj
def physics_import(obj: Context, file: Path, replace: bool) -> None:
    """Load a physicist's QA measurements for one unit (see sample_data/physics/).

    FILE holds the unit (serial, manufacturer), the dates it is valid
    (valid_from, optional valid_to), the geometry (fdd_mm, support_gap_mm,
    d_ref_mm) and rows of target, filter, kV, tube output (µGy/mAs at
    d_ref_mm) and HVL (mm Al). Earlier sets are kept: each event uses the set
    valid on its study date. Run `srdose recalc` afterwards.
    """
    try:
        pf = parse(file)
    except PhysicsFileError as exc:
        fail(str(exc), EXIT_USAGE)
    store = obj.store(write=False)
    try:
        set_id, outcome = db.add_physics_set(store, pf, replace=replace)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    beams = pf.beams()
    out.print(
        f"{outcome}: physics set {set_id} for unit {esc(pf.serial)} valid from {pf.valid_from}"
        f"{' to ' + pf.valid_to if pf.valid_to else ''}: {len(pf.points)} points, "
        f"{len(beams)} target/filter combination(s)"
    )
    if pf.support_gap_mm == 0:
        console.print(
            "[yellow]support_gap_mm is 0: the breast support of every mammography unit stands "
            "above the detector (typically 15-25 mm), and K at a 50 mm breast is ~6 % low per "
            "20 mm of gap left out. Measure it and import again with --replace; until then its "
            "results are flagged suspect:support_gap_zero.[/]"
        )
    if not db.devices(store, pf.serial):
        console.print(
            f"[yellow]no unit with serial {esc(pf.serial)} has sent dose reports yet; the data will be "
            "used when it does.[/]"
        )
    degree = obj.settings.recalc.fit_degree
    fits = PhysicsFits.build([dict(s) for s in db.physics_sets(store, pf.serial) if s["id"] == set_id], degree)
    for beam in fits.beam_fits:
        out_fit = beam.output
        if out_fit.degree < min(degree, 2):
            console.print(
                f"[yellow]{beam.target}/{beam.filter_material}: only {out_fit.n_kv} kV value(s): fitted "
                f"with degree {out_fit.degree}, used only inside the measured {out_fit.kv_min:g}-"
                f"{out_fit.kv_max:g} kV and flagged physics:few_kv_points[/]"
            )
    console.print("Run `srdose recalc` to update the affected events.")


def _poly(coef: tuple[float, float, float], unit: str) -> str:
    a, b, c = coef
    return f"{a:+.5g}·kV² {b:+.5g}·kV {c:+.5g} {unit}"


@physics.command("show")
@click.argument("unit")
@click.pass_obj
def physics_show(obj: Context, unit: str) -> None:
    """Print UNIT's physics sets (by serial), their fits and residuals."""
    store = obj.store(write=False)
    sets = db.physics_sets(store, unit)
    if not sets:
        fail(f"no physics data for unit {unit!r} (serial); load some with `srdose physics import FILE`", EXIT_USAGE)
    degree = obj.settings.recalc.fit_degree
    margin = obj.settings.recalc.kv_margin
    for s in sets:
        out.print(
            f"\n[bold]physics set {s['id']}[/]: {esc(s['manufacturer'])} {esc(s['model'])} "
            f"serial {esc(s['serial'])}, "
            f"valid {s['valid_from']} to {s['valid_to'] or '(open)'}; FDD {s['fdd_mm']:g} mm, support "
            f"gap {s['support_gap_mm']:g} mm, output measured at {s['d_ref_mm']:g} mm; "
            f"from {esc(s['source_file'] or '?')} (sha256 {s['sha256'][:12]}), measured by "
            f"{esc(s['measured_by'] or '?')}"
        )
        fits = PhysicsFits.build([s], degree)
        for beam in fits.beam_fits:
            target, filt, mm, fo, fh = beam.target, beam.filter_material, beam.filter_mm, beam.output, beam.hvl
            name = f"{target}/{filt}" + (f" {mm:g} mm" if mm else "")
            out.print(
                f"  {name}: output Y = {_poly(fo.coef, 'µGy/mAs')} (degree {fo.degree}, rms residual "
                f"{fo.rms:.3g}); HVL = {_poly(fh.coef, 'mm Al')} (rms {fh.rms:.3g}); measured "
                f"{fo.kv_min:g}-{fo.kv_max:g} kV, used to {fo.kv_min - margin:g}-{fo.kv_max + margin:g} kV"
            )
            table = Table(show_header=True, box=None, padding=(0, 1))
            for col in ("kV", "Y meas", "Y fit", "resid %", "HVL meas", "HVL fit", "resid mm"):
                table.add_column(col, justify="right")
            pts = [p for p in s["points"] if (p["target"], p["filter_material"], p["filter_mm"]) == (target, filt, mm)]
            for p, ro, rh in zip(pts, fo.residuals, fh.residuals):
                yo = p["output_ugy_per_mas"] - ro
                table.add_row(
                    f"{p['kvp']:g}",
                    f"{p['output_ugy_per_mas']:.4g}",
                    f"{yo:.4g}",
                    f"{100 * ro / yo:+.2f}",
                    f"{p['hvl_mm']:.3f}",
                    f"{p['hvl_mm'] - rh:.3f}",
                    f"{rh:+.4f}",
                )
            out.print(table)


@click.command("recalc")
@click.option("--unit", "unit", type=UNIT, help="Only this unit: serial, station or the name it is shown under.")
@click.option("--since", type=DATE, help="Only studies from this date.")
@click.option(
    "--factor-set",
    "factor_set",
    metavar="NAME",
    help="'bundled', a factor-set CSV, or the name of one used before (default from config: "
    "[recalc] default_factor_set).",
)
@click.option("--all", "force", is_flag=True, help="Recompute every selected event, changed or not.")
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 256),
    default=None,
    help="Processes reading and computing events while one writes the results, over many events "
    "(default from config: one per core on SQLite, none on PostgreSQL).",
)
@click.pass_obj
def recalc(
    obj: Context, unit: Unit | None, since: dt.date | None, factor_set: str | None, force: bool, jobs: int | None
) -> None:
    """Recalculate the mean glandular dose of the selected events (Dance model).

    Uses the unit's physics data valid on each study date (method
    `measured`), else the RDSR's own entrance exposure and HVL (method
    `rdsr`); stores MGD, K, HVL, g, c, s, T, the factor set, the ratio to the
    reported AGD and flags. Only events whose inputs changed (new physics
    data, another factor set or settings) are recomputed unless --all.
    Events that cannot be recalculated are flagged, not failed: exit 0.
    """
    day = dicom_day(since)
    serial = unit.one_serial() if unit else None
    section = obj.settings.recalc
    try:
        params = Params.from_settings(section)
    except (TypeError, ValueError, KeyError) as exc:
        fail(f"[recalc] settings: {exc}", EXIT_USAGE)
    store = obj.store(write=False)
    try:
        fs = resolve_factor_set(store, factor_set or section.default_factor_set)
    except FactorSetError as exc:
        fail(str(exc), EXIT_USAGE)
    if serial and not db.devices(store, serial):
        fail(f"no unit with serial {serial!r} in the database", EXIT_USAGE)
    started = time.monotonic()
    with progress_bar() as bar:
        task = bar.add_task("recalculating", total=None, rate="")

        def on_plan(n):
            bar.update(task, total=n)

        def tick(k):
            done = bar.tasks[task].completed + k
            bar.update(task, advance=k, rate=f"{done / max(time.monotonic() - started, 1e-6):,.0f} events/s")

        try:
            summary = recalculate(
                store,
                fs,
                params,
                serial=serial,
                since=day,
                force=force,
                on_plan=on_plan,
                progress=tick,
                jobs=jobs or section.jobs or default_jobs(store),
            )
        except FactorSetError as exc:
            fail(str(exc), EXIT_USAGE)
    table = Table(title=f"Recalculation ({summary.factor_set})", show_header=True)
    table.add_column("")
    table.add_column("events", justify="right")
    table.add_row("selected", str(summary.selected))
    table.add_row("already up to date", str(summary.up_to_date))
    table.add_row("[bold]recalculated[/]", f"[bold]{summary.computed}[/]")
    for m, n in sorted(summary.methods.items()):
        table.add_row(f"  method {m}", str(n))
    table.add_row("  [yellow]no MGD (see flags)[/]", str(summary.no_mgd))
    for name, n in summary.flags.most_common(12):
        if name != "no_mgd":
            table.add_row(f"  flag {name}", str(n))
    out.print(table)
    for _key, why in sorted(summary.missing_tables.items()):
        console.print(f"[yellow]factor set {summary.factor_set}: {why}[/]")
    sys.exit(EXIT_OK)


@click.command("validate")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reports"),
    show_default=True,
    help="Folder to write mgd-validation.md into.",
)
@click.option(
    "--rdsr",
    "rdsr_paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Dose reports (files or folders, repeatable) to compare recalculated with reported MGD on.",
)
@click.pass_obj
def validate(obj: Context, out_dir: Path, rdsr_paths: tuple[Path, ...]) -> None:
    """Regenerate the MGD validation dossier (mgd-validation.md).

    The Monte Carlo tables against every published cell, worked examples by
    hand and by the engine, recalculated/reported per vendor on the dose
    reports given, the uncertainty budget and the ratio bands in force.
    """
    try:
        params = Params.from_settings(obj.settings.recalc)
    except (TypeError, ValueError, KeyError) as exc:
        fail(f"[recalc] settings: {exc}", EXIT_USAGE)
    with console.status("computing the dossier"):
        path = write_dossier(out_dir, rdsr_paths, params)
    out.print(f"wrote {path}")
