"""``srdose report survey|drl|qa`` and ``srdose qc``.

Exit codes as everywhere: 0 written; 1 written in part or with nothing to report (no events in the
period, no room qualifying for a DRL); 2 usage (bad dates, unknown unit, bad ``[report]`` settings);
3 could not run.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click

from srdose.cli.context import (
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    Context,
    console,
    fail,
    out,
)
from srdose.cli.params import DATE, UNIT, Unit, flatten_serials
from srdose.report.common import Built
from srdose.report.drl import DRLSettings, build_drl
from srdose.report.phantom import build_phantom_qc
from srdose.report.qa import build_qa
from srdose.report.survey import build_survey
from srdose.terminal import esc


def _iso(ctx: click.Context, param: click.Parameter, value: dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _period_options(f: Callable) -> Callable:
    f = click.option(
        "--out",
        "out_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("reports"),
        show_default=True,
        help="Folder for the HTML report and its CSV/XLSX tables.",
    )(f)
    f = click.option("--to", "until", required=True, type=DATE, callback=_iso, help="Last study date (inclusive).")(f)
    f = click.option("--from", "since", required=True, type=DATE, callback=_iso, help="First study date.")(f)
    return f


def _finish(built: Built, started: float) -> None:
    for note in built.notes:
        console.print(f"[yellow]{esc(note)}[/]")
    for path in built.html:
        out.print(f"report: {esc(path)}")
    others = [p for p in built.files if p not in built.html]
    if others:
        console.print(f"{len(others)} table file(s) (CSV/XLSX) beside it in {esc(others[0].parent)}")
    console.print(f"done in {time.monotonic() - started:.1f} s")
    sys.exit(EXIT_PARTIAL if built.partial or not built.html else EXIT_OK)


def _run(step_name: str, fn: Callable[[Callable[[str], None]], Built]) -> Built:
    """Run a build with a rich status line showing its current step."""
    with console.status(step_name) as status:
        # step texts name units: a serial is shown as it is, never read as markup
        return fn(lambda text: status.update(esc(text)))


def _check_period(since: str, until: str) -> None:
    if since > until:
        fail(f"--from {since} is after --to {until}", EXIT_USAGE)


@click.group()
def report() -> None:
    """Survey, DRL and physics QA reports: self-contained HTML (A4) with CSV and XLSX tables."""


@report.command("survey")
@_period_options
@click.option(
    "--unit",
    "units",
    multiple=True,
    type=UNIT,
    help="Only this unit: serial, station or the name it is shown under (repeat); default all.",
)
@click.pass_obj
def survey_cmd(obj: Context, since: str, until: str, out_dir: Path, units: tuple[Unit, ...]) -> None:
    """National dose-survey submission: per unit, the survey CSVs (UK breast screening
    format; 2D and DBT apart, DBT numbered 2D + 1) and an HTML report with MGD per view, MLO
    50-60 mm, MGD against thickness with the European Guidelines levels, thickness histogram
    and the exclusions.

    Survey numbers come from [report] survey_numbers ("SERIAL=NUMBER"); other units get a
    stable default (see `srdose config`).
    """
    _check_period(since, until)
    store = obj.store(write=False)
    serials: list[str | None] = [*flatten_serials(units)] or [None]  # None: every unit
    started = time.monotonic()
    total = Built()

    def go(step: Callable[[str], None]) -> Built:
        for serial in serials:
            b = build_survey(store, obj.settings, since, until, out_dir, serial, progress=step)
            total.html += b.html
            total.files += b.files
            total.notes += b.notes
            total.partial |= b.partial
        return total

    _finish(_run("survey", go), started)


@report.command("drl")
@_period_options
@click.option(
    "--band", metavar="LOW-HIGH", help="Compressed thickness band in mm (default [report] drl_band_mm: 50-60)."
)
@click.option(
    "--view",
    "views",
    multiple=True,
    metavar="VIEW",
    help="View of the standard set (repeat; default [report] drl_views: MLO).",
)
@click.option(
    "--acquisition",
    type=click.Choice(["2D", "DBT"], case_sensitive=False),
    help="Default [report] drl_acquisition: 2D.",
)
@click.option(
    "--dose",
    type=click.Choice(["recalc", "reported"]),
    help="Recalculated MGD or reported AGD (default [report] drl_dose: recalc).",
)
@click.option(
    "--min-events", type=click.IntRange(1), help="Exposures a room needs to count (default [report] drl_min_events)."
)
@click.option(
    "--unit",
    "units",
    multiple=True,
    type=UNIT,
    help="Only these rooms: serial, station or the name shown (repeat); default all.",
)
@click.pass_obj
def drl_cmd(
    obj: Context,
    since: str,
    until: str,
    out_dir: Path,
    band: str | None,
    views: tuple[str, ...],
    acquisition: str | None,
    dose: str | None,
    min_events: int | None,
    units: tuple[Unit, ...],
) -> None:
    """Local and national-style DRLs (ICRP 135): per room the median dose of a standard exposure
    set (default 2D MLO, 50-60 mm); local DRL = median of room medians, national-style = their
    75th percentile; each room against the national DRL of [report] national_drl_mgy (none built in).

    Events with an infeasible:<rule> flag and studies that are not a patient's are excluded and counted.
    """
    _check_period(since, until)
    try:
        s = DRLSettings.from_settings(obj.settings.report, band, list(views) or None, acquisition, dose, min_events)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    store = obj.store(write=False)
    serials = flatten_serials(units)
    started = time.monotonic()
    built = _run(
        "DRL",
        lambda step: build_drl(store, obj.settings, since, until, out_dir, s, list(serials) or None, progress=step),
    )
    _finish(built, started)


@report.command("qa")
@click.option(
    "--unit", "unit", required=True, type=UNIT, help="The unit: serial, station or the name it is shown under."
)
@_period_options
@click.pass_obj
def qa_cmd(obj: Context, unit: Unit, since: str, until: str, out_dir: Path) -> None:
    """Physics QA review of one unit: recalculated against reported MGD (scatter, Bland-Altman,
    ratio by kV and target/filter, flagged events), AEC behaviour (kV, target/filter, mAs against
    thickness), compression per view, exam timing, data-quality flags."""
    _check_period(since, until)
    serial = unit.one_serial()
    store = obj.store(write=False)
    started = time.monotonic()
    built = _run("QA", lambda step: build_qa(store, obj.settings, since, until, out_dir, serial, progress=step))
    _finish(built, started)


@click.command("qc")
@_period_options
@click.option(
    "--unit",
    "units",
    multiple=True,
    type=UNIT,
    help="Only these units: serial, station or the name shown (repeat); default all.",
)
@click.option(
    "--thickness-is",
    "convention",
    type=click.Choice(["breast", "pmma"]),
    default="breast",
    show_default=True,
    help="What the displayed thickness of a phantom exposure is: the equivalent breast (spacers hold "
    "the paddle there, the European protocol's practice) or the PMMA itself.",
)
@click.option(
    "--protocol",
    "protocol_like",
    metavar="PATTERN",
    help="Also take events whose protocol name matches (SQL LIKE, e.g. '%PMMA%'), besides the studies "
    "marked not-a-patient at ingest.",
)
@click.pass_obj
def qc(
    obj: Context,
    since: str,
    until: str,
    out_dir: Path,
    units: tuple[Unit, ...],
    convention: str,
    protocol_like: str | None,
) -> None:
    """Phantom QC: the MGD of the breast each PMMA exposure stands for (European protocol), against the
    European acceptable and achievable levels, per unit and over time.

    Phantom exposures are the studies marked not-a-patient at ingest ([curation] not_patient_patterns)
    and, with --protocol, events whose protocol name matches.
    """
    _check_period(since, until)
    store = obj.store(write=False)
    serials = flatten_serials(units)
    started = time.monotonic()
    try:
        built = _run(
            "phantom QC",
            lambda step: build_phantom_qc(
                store,
                obj.settings,
                since,
                until,
                out_dir,
                list(serials) or None,
                convention,
                protocol_like,
                progress=step,
            ),
        )
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    _finish(built, started)
