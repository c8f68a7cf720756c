"""The ``srdose`` command.

Exit codes scripts can trust: 0 all done; 1 done, but some datasets were
quarantined (or some checks failed); 2 a usage or configuration error;
3 srdose could not run (database unreachable, disk full, ...).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Optional

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from srdose import __version__
from srdose.cli_types import DATE, UNIT, dicom_day, esc, flatten_serials, output_format
from srdose.config import ConfigError, Settings, load

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3

console = Console(stderr=True)
out = Console()


class Context:
    """What every command gets: the settings and, on demand, the database."""

    def __init__(self, settings: Settings, db_url: Optional[str]):
        self.settings = settings
        self.db_url = db_url or settings.database_url
        self._store = None

    def pseudonymiser(self):
        from srdose.pseudonym import Pseudonymiser, load_or_create_secret

        return Pseudonymiser(load_or_create_secret(self.settings.site_secret_path))

    def store(self, write: bool = True):
        if self._store is None:
            from srdose.store import DoseStore

            try:
                _private_sqlite_file(self.db_url)
                self._store = DoseStore(self.db_url, self.pseudonymiser() if write else None,
                                        age_resolution_years=self.settings["governance"]["site_age_resolution_years"])
            except PermissionError as exc:
                fail(str(exc), EXIT_USAGE)
            except Exception as exc:
                fail(f"cannot open the database {_safe_url(self.db_url)}: {type(exc).__name__}: "
                     f"{str(exc).splitlines()[0][:300]}\nCheck --db / SRDOSE_DATABASE_URL and that the "
                     "server is running.", EXIT_FAILED)
        return self._store


def _private_sqlite_file(url: str) -> None:
    """Create a new SQLite database file readable by its owner only (its journal and WAL files
    take the same mode), in a folder of the same kind."""
    from sqlalchemy.engine import make_url

    from srdose.export import private_dir

    try:
        parsed = make_url(url)
    except Exception:
        return  # the store reports the bad URL
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:" \
            or parsed.database.startswith("file:"):
        return
    path = Path(parsed.database).expanduser()
    if path.exists():
        return
    private_dir(path.parent)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def _safe_url(url: str) -> str:
    """A database URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable URL)"


def fail(message: str, code: int = EXIT_FAILED):
    # taken literally: a message naming "[governance] retention_days" is not rich markup
    console.print(f"[bold red]error:[/] {esc(message)}")
    sys.exit(code)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_file", metavar="FILE", help="TOML config file (default: $SRDOSE_CONFIG, ./srdose.toml, ~/.config/srdose/srdose.toml).")
@click.option("--db", "db_url", metavar="URL", help="SQLAlchemy database URL (default: a SQLite file in the data directory).")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(__version__, prog_name="srdose")
@click.pass_context
def main(ctx: click.Context, config_file: Optional[str], db_url: Optional[str], verbose: int) -> None:
    """srdose: breast-screening radiation dose from DICOM dose reports.

    Receive RDSRs, parse them into a pseudonymised database, recalculate the
    mean glandular dose and report it. Run `srdose COMMAND --help` for each
    command.
    """
    # the database, exports, reports, spool: what srdose writes is the owner's alone
    old_umask = os.umask(0o077)
    ctx.call_on_close(lambda: os.umask(old_umask))
    try:
        settings = load(config_file)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    level = {0: settings["log_level"], 1: "INFO", 2: "DEBUG"}.get(verbose, "DEBUG")
    logging.basicConfig(level=level if isinstance(level, int) else str(level).upper(),
                        format="%(message)s", datefmt="[%X]",
                        handlers=[RichHandler(console=console, show_path=False)])
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if verbose < 2:
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    if not verbose:
        # one line per quarantined file is for -v; the summary says how many
        logging.getLogger("srdose.ingest").setLevel(logging.WARNING)
    ctx.obj = Context(settings, db_url)


# --- ingest ------------------------------------------------------------------

def print_summary(summary, store, events_before: int = 0) -> None:
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
    out.print(f"database: {counts['devices']} units, {counts['studies']} studies, "
              f"{counts['events']} events, {counts['quarantine']} quarantined in all")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--batch-size", type=click.IntRange(1, 100000), default=None, help="Files per transaction (default from config: 200).")
@click.pass_obj
def ingest(obj: Context, paths, batch_size) -> None:
    """Ingest DICOM dose objects from files or folders (recursively).

    Reads X-Ray Radiation Dose SRs (and Enhanced/Comprehensive SRs holding a
    dose report) and MG image headers. Anything else goes to the quarantine
    folder with a JSON note saying why. Exit code 1 when anything was
    quarantined.
    """
    import time

    from srdose.ingest import DatabaseUnavailable, Ingestor, iter_files
    from srdose.quarantine import QuarantineFolder

    store = obj.store()
    ingestor = Ingestor(store, QuarantineFolder(obj.settings.quarantine_dir),
                        batch_size or obj.settings["ingest"]["batch_size"])
    skipped: list = []
    files = list(iter_files(paths, skipped))
    before = store.counts()["events"]
    started = time.monotonic()
    with progress_bar() as bar:
        task = bar.add_task("ingesting", total=len(files), rate="")

        def tick(path, result):
            done = bar.tasks[task].completed + 1
            rate = done / max(time.monotonic() - started, 1e-6)
            bar.update(task, advance=1, rate=f"{rate:.0f} files/s")

        try:
            summary = ingestor.ingest_paths(files, progress=tick)
        except DatabaseUnavailable as exc:
            fail(str(exc), EXIT_FAILED)
    summary.skipped = len(skipped)
    print_summary(summary, store, before)
    if summary.n_quarantined:
        console.print(f"[yellow]{summary.n_quarantined} dataset(s) quarantined in "
                      f"{esc(obj.settings.quarantine_dir)} (see the .json beside each file).[/]")
        sys.exit(EXIT_PARTIAL)


# --- demo --------------------------------------------------------------------

def sample_data_dir() -> Path:
    """The repository's sample_data/ (present in a source checkout)."""
    return Path(__file__).resolve().parents[1] / "sample_data"


@main.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("srdose-demo"),
              show_default=True, help="Where the demo keeps its own database, secret and spool (not your real ones).")
@click.option("--reports", "reports_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("reports"),
              show_default=True, help="Where the three reports are written.")
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
    from srdose import demo as D

    source = sample_data_dir()
    sample = source if any(source.rglob("*.dcm")) else None
    try:
        code = D.run(obj.settings, data_dir, reports_dir, sample, console, out, progress_bar)
    except (RuntimeError, TimeoutError, OSError) as exc:
        fail(f"demo could not run: {exc}", EXIT_FAILED)
    sys.exit(code)


# --- export ------------------------------------------------------------------

@main.group()
def export() -> None:
    """Export data as CSV or XLSX."""


@export.command("events")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output file: .csv or .xlsx.")
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx"]), default=None,
              help="Default: from the file suffix (.csv or .xlsx; none: csv).")
@click.option("--from", "since", type=DATE, help="First study date.")
@click.option("--to", "until", type=DATE, help="Last study date (inclusive).")
@click.option("--unit", "units", type=UNIT, multiple=True,
              help="Only this unit: serial, station or the name it is shown under (repeat); default all.")
@click.pass_obj
def export_events_cmd(obj: Context, out_path: Path, fmt, since, until, units) -> None:
    """One row per irradiation event (pseudonymised), in the documented column order."""
    from srdose.export import export_events
    from srdose.governance import audit

    fmt = output_format(out_path, fmt)
    if since and until and since > until:
        fail(f"--from {since} is after --to {until}", EXIT_USAGE)
    serials = flatten_serials(units)
    store = obj.store(write=False)
    n = export_events(store, out_path, fmt, serials=serials, since=dicom_day(since), until=dicom_day(until))
    audit.record(store, "export.events", {"out": out_path.name, "from": since and since.isoformat(),
                                          "to": until and until.isoformat(), "unit": serials or None}, n)
    console.print(f"wrote {n} events to {esc(out_path)}")


# --- synth -------------------------------------------------------------------

@main.command()
@click.option("--vendor", type=click.Choice(["hologic", "ge", "giotto", "siemens", "fujifilm", "all"]), default="hologic", show_default=True)
@click.option("--count", type=click.IntRange(1, 10_000_000), default=20, show_default=True, help="Studies (one RDSR each).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--units", type=click.IntRange(1, 1000), default=1, show_default=True, help="Distinct X-ray units per vendor.")
@click.option("--images", is_flag=True, help="Also write the MG image headers of each study.")
@click.option("--dbt-fraction", type=click.FloatRange(0, 1), default=None, help="Share of tomosynthesis studies (default: the vendor's).")
@click.option("--manifest", is_flag=True, help="Also write manifest.json: identifiers written and the true values per event.")
def synth(vendor, count, out_dir: Path, seed, units, images, dbt_fraction, manifest) -> None:
    """Write realistic synthetic mammography RDSRs imitating a vendor's structure.

    Patients, units and institutions are invented. Different seeds give
    different UIDs; the same seed gives the same files.
    """
    from srdose import synth as S

    vendors = S.VENDORS if vendor == "all" else (vendor,)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    with progress_bar() as bar:
        task = bar.add_task("writing", total=count * len(vendors), rate="")
        for i, v in enumerate(vendors):
            files = S.generate(v, count, out_dir / v if len(vendors) > 1 else out_dir, seed=seed + i,
                               units=units, images=images, dbt_fraction=dbt_fraction, manifest=manifest,
                               progress=lambda *_: bar.update(task, advance=1))
            written += len(files)
    console.print(f"wrote {written} files to {out_dir}")


# --- db ----------------------------------------------------------------------

@main.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.pass_obj
def db_upgrade(obj: Context, revision: str) -> None:
    """Create the schema or bring it up to date."""
    from srdose.store.database import current_revision, make_engine, upgrade

    engine = make_engine(obj.db_url)
    try:
        upgrade(engine, revision)
        console.print(f"{_safe_url(obj.db_url)} is at revision {current_revision(engine)}")
    except Exception as exc:
        fail(f"upgrade failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    finally:
        engine.dispose()


@db.command("current")
@click.pass_obj
def db_current(obj: Context) -> None:
    """Print the schema revision of the database and the newest one srdose knows."""
    from srdose.store.database import current_revision, head_revision, make_engine

    engine = make_engine(obj.db_url)
    try:
        out.print(f"database: {current_revision(engine) or '(empty)'}  srdose: {head_revision()}")
    finally:
        engine.dispose()


@main.command("config")
@click.pass_obj
def show_config(obj: Context) -> None:
    """Print the settings in force and where they came from."""
    import json

    s = obj.settings
    for line in (f"# config file: {s.source or '(none: defaults and environment)'}",
                 f"# database: {_safe_url(obj.db_url)}", f"# site secret: {s.site_secret_path}",
                 f"# quarantine: {s.quarantine_dir}", json.dumps(s.values, indent=2, default=str)):
        out.print(line, markup=False, highlight=False)


def _register_optional() -> None:
    """Commands of other pipeline stages, each defined beside its stage."""
    import importlib

    for module, name in (("srdose.physics.mc_cli", "mc"), ("srdose.recalc.cli", "physics"),
                         ("srdose.recalc.cli", "recalc"), ("srdose.recalc.cli", "validate"),
                         ("srdose.receive.cli", "listen"),
                         ("srdose.receive.cli", "status"), ("srdose.receive.cli", "retrieve"),
                         ("srdose.report.cli", "report"), ("srdose.report.cli", "qc"),
                         ("srdose.governance.cli", "optout"), ("srdose.governance.cli", "export"),
                         ("srdose.governance.cli", "reidentify"), ("srdose.governance.cli", "purge"),
                         ("srdose.governance.cli", "audit"), ("srdose.curation.cli", "check"),
                         ("srdose.curation.cli", "units"), ("srdose.curation.cli", "protocols")):
        try:
            command = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        main.add_command(command)


_register_optional()


if __name__ == "__main__":  # pragma: no cover
    main()
