"""``srdose demo``: the whole pipeline on this machine, in a folder of its own."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from srdose import demo as D
from srdose.cli.context import EXIT_FAILED, Context, console, fail, out, progress_bar


def sample_data_dir() -> Path:
    """The repository's sample_data/ (present in a source checkout)."""
    return Path(__file__).resolve().parents[2] / "sample_data"


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("srdose-demo"),
    show_default=True,
    help="Where the demo keeps its own database, secret and spool (not your real ones).",
)
@click.option(
    "--reports",
    "reports_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reports"),
    show_default=True,
    help="Where the three reports are written.",
)
@click.pass_obj
def demo(obj: Context, data_dir: Path, reports_dir: Path) -> None:
    """Run the whole pipeline on this machine, in a folder of its own.

    Takes sample_data/ (in a source checkout) plus synthetic RDSRs of a few
    units, starts `srdose listen` on a free loopback port with the demo's own
    data directory, sends the files with a real C-STORE client, waits until
    they are ingested, loads the example physics data, recalculates the MGD
    and writes the survey, DRL and QA reports into --reports, printing their
    paths. Exit 1 when something was left out (see the messages).
    """
    source = sample_data_dir()
    sample: Path | None = source if any(source.rglob("*.dcm")) else None
    try:
        code = D.run(obj.settings, data_dir, reports_dir, sample, console, out, progress_bar)
    except (RuntimeError, TimeoutError, OSError) as exc:
        fail(f"demo could not run: {exc}", EXIT_FAILED)
    sys.exit(code)
