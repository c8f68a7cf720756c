"""``srdose ingest``: DICOM dose objects from files or folders into the database."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from rich.table import Table

from srdose.cli.context import (
    EXIT_FAILED,
    EXIT_PARTIAL,
    Context,
    console,
    fail,
    out,
    progress_bar,
)
from srdose.compat import cores
from srdose.governance.hooks import IngestHooks
from srdose.ingest import PARALLEL_MIN_FILES, DatabaseUnavailable, Ingestor, Summary, iter_files
from srdose.quarantine import QuarantineFolder
from srdose.store import DoseStore
from srdose.terminal import esc


def print_summary(summary: Summary, store: DoseStore, events_before: int = 0) -> None:
    table = Table(title="Ingest summary", show_header=True)
    table.add_column("outcome")
    table.add_column("datasets", justify="right")
    labels = {
        "ingested": "ingested",
        "replaced": "ingested, replacing an earlier RDSR",
        "duplicate": "already held (unchanged)",
        "superseded": "older than an RDSR already held",
        "covered": "image header covered by an RDSR",
    }
    quarantine_labels = {"conflict": "same SOP Instance UID, different content"}
    for key, label in labels.items():
        if summary.outcomes.get(key):
            table.add_row(label, str(summary.outcomes[key]))
    for kind, n in sorted(summary.quarantined.items()):
        table.add_row(f"[red]quarantined: {esc(quarantine_labels.get(kind, kind))}[/]", str(n))
    if getattr(summary, "skipped", 0):
        table.add_row("skipped: not DICOM (by content)", str(summary.skipped))
    table.add_row("[bold]files read[/]", f"[bold]{summary.files}[/]")
    counts = store.counts()
    # net of image-header events an RDSR replaced
    table.add_row("irradiation events added", str(counts["events"] - events_before))
    out.print(table)
    out.print(
        f"database: {counts['devices']} units, {counts['studies']} studies, "
        f"{counts['events']} events, {counts['quarantine']} quarantined in all"
    )


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100000),
    default=None,
    help="Files per transaction (default from config: 200).",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 256),
    default=None,
    help="Processes parsing files while one writes the database (default from config: one per core).",
)
@click.pass_obj
def ingest(obj: Context, paths: tuple[Path, ...], batch_size: int | None, jobs: int | None) -> None:
    """Ingest DICOM dose objects from files or folders (recursively).

    Reads X-Ray Radiation Dose SRs (and Enhanced/Comprehensive SRs holding a
    dose report) and MG image headers. Anything else goes to the quarantine
    folder with a JSON note saying why. Exit code 1 when anything was
    quarantined.
    """
    store = obj.store()
    ingestor = Ingestor(
        store,
        QuarantineFolder(obj.settings.quarantine_dir),
        batch_size or obj.settings.ingest.batch_size,
        hooks=IngestHooks.from_settings(obj.settings),
    )
    skipped: list = []
    files = list(iter_files(paths, skipped))
    before = store.counts()["events"]
    jobs = jobs or obj.settings.ingest.jobs or cores()
    if jobs > 1 and len(files) >= PARALLEL_MIN_FILES:
        out.print(f"{len(files)} files: {jobs} processes parse them while one writes the database")
    started = time.monotonic()
    with progress_bar() as bar:
        task = bar.add_task("ingesting", total=len(files), rate="")

        def tick(path, result) -> None:
            done = bar.tasks[task].completed + 1
            rate = done / max(time.monotonic() - started, 1e-6)
            bar.update(task, advance=1, rate=f"{rate:.0f} files/s")

        try:
            summary = ingestor.ingest_paths(files, progress=tick, jobs=jobs)
        except DatabaseUnavailable as exc:
            fail(str(exc), EXIT_FAILED)
    summary.skipped = len(skipped)
    print_summary(summary, store, before)
    if summary.n_quarantined:
        console.print(
            f"[yellow]{summary.n_quarantined} dataset(s) quarantined in "
            f"{esc(obj.settings.quarantine_dir)} (see the .json beside each file).[/]"
        )
        sys.exit(EXIT_PARTIAL)
