"""The ``srdose`` command.

Exit codes scripts can trust: 0 all done; 1 done, but some datasets were
quarantined (or some checks failed); 2 a usage or configuration error;
3 srdose could not run (database unreachable, disk full, ...).

Every command and group is added here, by name: a command module that cannot be imported (a
missing dependency) stops ``srdose`` with that import error rather than leaving the command out.
Nothing in the package imports it, apart from ``srdose/__main__.py`` (``python -m srdose``).
"""

from __future__ import annotations

import logging
import os

import click
from rich.logging import RichHandler

from srdose import __version__
from srdose.cli.alerts import alerts
from srdose.cli.config import show_config
from srdose.cli.conformance import conformance
from srdose.cli.context import EXIT_USAGE, Context, console, fail
from srdose.cli.curation import check, protocols, units
from srdose.cli.db import db
from srdose.cli.demo import demo
from srdose.cli.export import export
from srdose.cli.governance import audit, optout, purge, reidentify
from srdose.cli.ingest import ingest
from srdose.cli.inspect import inspect
from srdose.cli.mc import mc
from srdose.cli.recalc import physics, recalc, validate
from srdose.cli.receive import listen, retrieve, status
from srdose.cli.report import qc, report
from srdose.cli.synth import synth
from srdose.cli.web import serve, users
from srdose.config import ConfigError, load

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    metavar="FILE",
    help="TOML config file (default: $SRDOSE_CONFIG, ./srdose.toml, ~/.config/srdose/srdose.toml).",
)
@click.option(
    "--db", "db_url", metavar="URL", help="SQLAlchemy database URL (default: a SQLite file in the data directory)."
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(__version__, prog_name="srdose")
@click.pass_context
def main(ctx: click.Context, config_file: str | None, db_url: str | None, verbose: int) -> None:
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
    level = {0: settings.log_level, 1: "INFO", 2: "DEBUG"}.get(verbose, "DEBUG")
    logging.basicConfig(
        level=level if isinstance(level, int) else str(level).upper(),
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if verbose < 2:
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    if not verbose:
        # one line per quarantined file is for -v; the summary says how many
        logging.getLogger("srdose.ingest").setLevel(logging.WARNING)
    ctx.obj = Context(settings, db_url)


main.add_command(ingest)
main.add_command(inspect)
main.add_command(conformance)
main.add_command(demo)
main.add_command(export)
main.add_command(synth)
main.add_command(db)
main.add_command(show_config)
main.add_command(mc)
main.add_command(physics)
main.add_command(recalc)
main.add_command(validate)
main.add_command(listen)
main.add_command(status)
main.add_command(retrieve)
main.add_command(report)
main.add_command(qc)
main.add_command(optout)
main.add_command(reidentify)
main.add_command(purge)
main.add_command(audit)
main.add_command(check)
main.add_command(units)
main.add_command(protocols)
main.add_command(serve)
main.add_command(users)
main.add_command(alerts)
