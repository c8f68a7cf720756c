"""``srdose optout``, ``srdose export research``, ``srdose reidentify``, ``srdose purge``, ``srdose audit``.

Registered by :func:`srdose.cli._register_optional` (attributes ``optout``,
``export``, ``reidentify``, ``purge``, ``audit``). ``export`` is the existing
``srdose export`` group with the ``research`` subcommand added (see
:func:`__getattr__`). Exit codes as everywhere: 0 done, 2 usage or
configuration (bad file, no key, unknown pseudonym), 3 could not run.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Optional

import click

from srdose.cli_types import DATE, dicom_day, esc, iso_day


def _cli():
    from srdose import cli

    return cli


def _site_secret(obj) -> bytes:
    from srdose.pseudonym import load_or_create_secret

    cli = _cli()
    try:
        return load_or_create_secret(obj.settings.site_secret_path)
    except (PermissionError, ValueError) as exc:
        cli.fail(str(exc), cli.EXIT_USAGE)


# --- opt-out ----------------------------------------------------------------------------

@click.group()
def optout() -> None:
    """National data opt-out: patients left out of research exports and reports."""


@optout.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--replace", is_flag=True, help="The file is the whole list: patients not in it are no longer opted out.")
@click.pass_obj
def optout_import(obj, file: Path, replace: bool) -> None:
    """Import a list of opted-out patient IDs (one per line, or the first CSV column).

    Each ID is hashed with the site key as at ingest; IDs are never stored or
    printed. Research exports made afterwards leave these patients out.
    """
    from srdose.governance import audit
    from srdose.governance.optout import import_file

    cli = _cli()
    store = obj.store()
    counts = import_file(store, file, store.pseudonymiser, replace=replace)
    audit.record(store, "optout.import", {"file": str(file), "replace": replace, "sha256": counts["sha256"]},
                 counts["ids"], {k: v for k, v in counts.items() if k != "sha256"})
    cli.out.print(f"{counts['ids']} patient ID(s) read; {counts['added']} opt-out hash(es) added"
                  + (f", {counts['removed']} removed" if replace else "")
                  + f"; {counts['total']} on the list; {counts['studies']} held studies are of opted-out patients")


@optout.command("status")
@click.pass_obj
def optout_status(obj) -> None:
    """How many opt-outs are held (as hashes) and how many studies they cover."""
    from sqlalchemy import func, select

    from srdose.store import models as M
    from srdose.store.governance import opted_out_expr, opted_out_pseudonyms

    store = obj.store(write=False)
    n = len(opted_out_pseudonyms(store))
    with store.engine.connect() as conn:
        studies = conn.execute(select(func.count()).select_from(M.Study).where(opted_out_expr())).scalar_one()
    _cli().out.print(f"{n} opt-out hash(es); {studies} held studies of opted-out patients; clinical audit "
                     f"reports: {obj.settings['governance']['optout_clinical_audit']}")


# --- research export --------------------------------------------------------------------

@click.command("research")
@click.option("--project", required=True, help="Project name: its own pseudonyms and date shifts.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx"]), default="csv", show_default=True)
@click.option("--parquet/--no-parquet", default=None, help="Also write Parquet (default: when pyarrow is installed).")
@click.option("--from", "since", type=DATE, help="First study date (real, before shifting).")
@click.option("--to", "until", type=DATE, help="Last study date (inclusive).")
@click.option("--exclude-flagged", is_flag=True, help="Leave out events with infeasible values (default: kept, flagged).")
@click.pass_obj
def export_research(obj, project, out_dir: Path, fmt, parquet, since, until, exclude_flagged) -> None:
    """De-identified extract for a trusted research environment, with a manifest.

    Per-project patient pseudonyms (unlinkable across projects), dates
    shifted per patient (intervals kept), ages banded, free text dropped
    unless allow-listed ([governance] research_free_text), units as labels.
    Test/phantom studies and opted-out patients are left out. Audited.
    """
    from srdose.governance import audit
    from srdose.governance.keys import check_project
    from srdose.governance.research import ResearchExportError, export_research as run

    cli = _cli()
    try:
        check_project(project)
    except ValueError as exc:
        cli.fail(str(exc), cli.EXIT_USAGE)
    if since and until and since > until:
        cli.fail(f"--from {since} is after --to {until}", cli.EXIT_USAGE)
    secret = _site_secret(obj)
    store = obj.store(write=False)
    try:
        manifest = run(store, secret, project, out_dir, obj.settings, fmt=fmt, parquet=parquet,
                       since=dicom_day(since), until=dicom_day(until), exclude_flagged=exclude_flagged)
    except ResearchExportError as exc:
        cli.fail(str(exc), cli.EXIT_USAGE)
    audit.record(store, "export.research",
                 {"project": project, "out": str(out_dir), "format": fmt, "from": iso_day(since), "to": iso_day(until),
                  "exclude_flagged": exclude_flagged},
                 manifest["rows"], {"files": manifest["files"], "manifest_sha256": manifest["manifest_sha256"],
                                    "excluded": manifest["excluded"]})
    cli.console.print(esc(f"wrote {manifest['rows']} events ({manifest['patients']} patients) for project {project} "
                          f"to {out_dir}: {', '.join(manifest['files'])}, {Path(manifest['manifest_path']).name}"))


def __getattr__(name: str):
    """``export``: the ``srdose export`` group with ``research`` added (registration asks for it)."""
    if name == "export":
        group = _cli().export
        if "research" not in group.commands:
            group.add_command(export_research, "research")
        return group
    raise AttributeError(name)


# --- re-identification ----------------------------------------------------------------

@click.command()
@click.argument("pseudonym")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The re-identification key (default: [governance] reidentification_key_file).")
@click.option("--reason", default="", help="Why (written to the audit trail).")
@click.pass_obj
def reidentify(obj, pseudonym: str, key_file: Optional[Path], reason: str) -> None:
    """Print the patient ID behind a site pseudonym (authorised staff; every attempt is audited).

    Needs the key file, which is kept outside the database. Works only for
    patients ingested while [governance] reidentification_key_file was set.
    """
    from srdose.governance import audit
    from srdose.governance.reid import ReidentificationError, decrypt, load_key
    from srdose.store.governance import reidentification_entry

    cli = _cli()
    store = obj.store(write=False)
    path = key_file or obj.settings["governance"]["reidentification_key_file"]
    params = {"pseudonym": pseudonym, "reason": reason}

    def refuse(message: str, outcome: str):
        audit.record(store, "reidentify", params, 0, {"outcome": outcome})
        cli.fail(message, cli.EXIT_USAGE)

    if not path:
        refuse("no key: give --key-file or set [governance] reidentification_key_file", "no key")
    try:
        key = load_key(path)
    except (ReidentificationError, PermissionError, ValueError) as exc:
        refuse(str(exc), "key refused")
    entry = reidentification_entry(store, pseudonym)
    if entry is None:
        refuse(f"no re-identification entry for {pseudonym} (unknown pseudonym, or ingested without "
               "a re-identification key)", "no entry")
    try:
        patient_id = decrypt(key, pseudonym, *entry)
    except ReidentificationError as exc:
        refuse(str(exc), "decryption failed")
    audit.record(store, "reidentify", params, 1, {"outcome": "disclosed"})
    cli.out.print(patient_id)


# --- purge ------------------------------------------------------------------------------

@click.command()
@click.option("--before", type=DATE, help="Remove what is dated before this day (default: today minus "
              "[governance] retention_days).")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def purge(obj, before: Optional[dt.date], dry_run: bool, yes: bool) -> None:
    """Retention: remove studies, events, source objects, quarantine, spool and archive files past the period.

    Prints what was removed (per table and folder) and writes it to the audit trail.
    """
    from srdose.governance import audit
    from srdose.governance.retention import purge as run, resolve_before

    cli = _cli()
    try:
        cutoff = resolve_before(iso_day(before), int(obj.settings["governance"]["retention_days"]))
    except ValueError as exc:
        cli.fail(str(exc), cli.EXIT_USAGE)
    store = obj.store(write=False)
    if not dry_run and not yes:
        preview = run(store, obj.settings, cutoff, dry_run=True)
        click.confirm(f"remove {preview['studies']} studies, {preview['events']} events and "
                      f"{sum(preview['files'].values())} files dated before {cutoff}?", abort=True, err=True)
    counts = run(store, obj.settings, cutoff, dry_run=dry_run)
    if not dry_run:
        audit.record(store, "purge", {"before": cutoff, "retention_days": obj.settings["governance"]["retention_days"]},
                     counts["events"], counts)
    from rich.table import Table

    table = Table(title=("would remove" if dry_run else "removed") + f" (before {cutoff})")
    table.add_column("what")
    table.add_column("count", justify="right")
    for key in ("studies", "source_objects", "events", "pulses", "filters", "accumulated_doses", "recalc_results",
                "reidentification", "quarantine"):
        table.add_row(key, str(counts[key]))
    for key, n in counts["files"].items():
        table.add_row(f"files: {key}", str(n))
    cli.out.print(table)
    if counts["spool_pending_kept"]:
        cli.console.print(f"[yellow]{counts['spool_pending_kept']} spooled dataset(s) older than {cutoff} are not "
                          "ingested yet and were kept: start the listener to ingest them.[/]")


# --- audit ------------------------------------------------------------------------------

@click.command()
@click.option("--action", help="Only this action (e.g. export.research, reidentify, purge, report, export).")
@click.option("--since", type=DATE, help="Only entries from this day (UTC).")
@click.option("--limit", type=click.IntRange(1, 10_000_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@click.pass_obj
def audit(obj, action, since, limit, as_json) -> None:
    """The audit trail: every export, report, re-identification and purge, newest first."""
    from srdose.store.governance import audit_entries

    cli = _cli()
    when = dt.datetime.combine(since, dt.time()) if since else None
    entries = audit_entries(obj.store(write=False), action, when, limit)
    if as_json:
        for e in entries:
            e = dict(e, at=e["at"].isoformat(), parameters=json.loads(e["parameters"] or "{}"),
                     detail=json.loads(e["detail"]) if e["detail"] else None)
            click.echo(json.dumps(e, sort_keys=True))
        return
    from rich.table import Table

    table = Table(title=f"audit trail ({len(entries)} entries)")
    for col in ("id", "when (UTC)", "who", "action", "parameters", "rows"):
        table.add_column(col, overflow="fold")
    for e in entries:
        table.add_row(str(e["id"]), e["at"].isoformat(sep=" ", timespec="seconds"), esc(e["who"]), esc(e["action"]),
                      esc(e["parameters"] or ""), "" if e["rows"] is None else str(e["rows"]))
    cli.out.print(table)
