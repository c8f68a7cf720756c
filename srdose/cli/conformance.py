"""``srdose conformance``: each unit's dose reports against the templates, and a survey verdict.

Exit codes: 0 every unit passes (perhaps with quirks); 1 some unit fails; 2 a usage error; 3 the
database could not be read.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click
from rich.table import Table

from srdose.cli.context import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, Context, console, fail, out, progress_bar
from srdose.cli.params import DATE, dicom_day
from srdose.curation import conformance as K
from srdose.files import private_dir, write_csv
from srdose.terminal import esc

COLUMNS = ("serial", "manufacturer", "model", "verdict", "source", "rule", "what", "fails", "count", "first", "last")
_STYLE = {K.PASS: "green", K.QUIRKS: "yellow", K.FAIL: "bold red"}


@click.command()
@click.option("--unit", "serial", metavar="SERIAL", help="One unit (its device serial number); default every unit.")
@click.option(
    "--sample",
    "samples",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Files or folders of the units' own objects, read through highdicom (repeatable).",
)
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Also write conformance.csv here."
)
@click.option("--from", "since", type=DATE, help="First study date (default: the first).")
@click.option("--to", "until", type=DATE, help="Last study date, inclusive (default: the last).")
@click.pass_obj
def conformance(
    obj: Context,
    serial: str | None,
    samples: tuple[Path, ...],
    out_dir: Path | None,
    since: dt.date | None,
    until: dt.date | None,
) -> None:
    """Each unit's deviations from the templates and the standard, with counts and the first and
    last study date seen, and a verdict: can its data enter a national survey (pass, pass with
    quirks, fail)?

    From the database (every event's flags; counts are events) and, with --sample, from the
    units' objects themselves (codes in the wrong place, legacy coding schemes, units that are not
    UCUM, empty measured values, items highdicom refuses; counts are objects).
    """
    store = obj.store(write=False)
    units = K.from_database(store, serial, dicom_day(since), dicom_day(until))
    files = K.sample_files(samples)
    if files:
        with progress_bar() as bar:
            task = bar.add_task("reading the sample", total=len(files), rate="")
            for path in files:
                K.add_sample(units, [path])
                bar.advance(task)
    if serial is not None:
        units = {k: u for k, u in units.items() if u.serial == serial}
        if not units:
            fail(f"no unit with serial {serial} in the database or the sample", EXIT_USAGE)
    shown = sorted(units.values(), key=lambda u: (u.manufacturer, u.model, u.serial))
    summary = Table(title="conformance of each unit's dose reports", title_justify="left")
    for name in ("unit", "model", "events", "studies from", "to", "sampled", "verdict"):
        summary.add_column(name, justify="right" if name in ("events", "sampled") else "left")
    for u in shown:
        summary.add_row(
            esc(u.serial or "(no serial)"),
            esc(f"{u.manufacturer} {u.model}"),
            f"{u.events:,}",
            esc(u.first or "-"),
            esc(u.last or "-"),
            str(u.sampled),
            f"[{_STYLE[u.verdict]}]{u.verdict}[/]",
        )
    out.print(summary)
    for u in shown:
        if not u.findings:
            continue
        t = Table(title=f"{esc(u.serial)} ({esc(u.manufacturer)} {esc(u.model)}): {u.verdict}", title_justify="left")
        for name in ("from", "rule", "what", "survey", "count", "first seen", "last seen"):
            t.add_column(name, justify="right" if name == "count" else "left")
        for f in sorted(u.findings.values(), key=lambda f: (not f.fails, f.source, f.rule)):
            t.add_row(
                f.source,
                esc(f.rule),
                esc(f.what),
                "[red]unusable[/]" if f.fails else "usable",
                f"{f.count:,}",
                esc(f.first or "-"),
                esc(f.last or "-"),
            )
        out.print(t)
    if out_dir is not None:
        # one row per finding; a unit with none has one row with its verdict
        rows: list[tuple] = [
            (u.serial, u.manufacturer, u.model, u.verdict, f.source, f.rule, f.what, f.fails, f.count, f.first, f.last)
            for u in shown
            for f in u.findings.values()
        ]
        rows += [
            (u.serial, u.manufacturer, u.model, u.verdict, "", "", "", "", 0, u.first, u.last)
            for u in shown
            if not u.findings
        ]
        path = private_dir(out_dir) / "conformance.csv"
        write_csv(iter(rows), path, COLUMNS)
        console.print(f"written: {esc(path)}")
    failed = [u for u in shown if u.verdict == K.FAIL]
    if failed:
        console.print(f"[red]{len(failed)} unit(s) fail:[/] {esc(', '.join(u.serial for u in failed))}")
    sys.exit(EXIT_PARTIAL if failed else EXIT_OK)
