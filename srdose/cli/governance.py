"""``srdose optout``, ``srdose reidentify``, ``srdose purge`` and ``srdose audit``.

Exit codes as everywhere: 0 done, 2 usage or configuration (bad file, no key, unknown pseudonym),
3 could not run.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import NoReturn

import click
from rich.table import Table

from srdose.cli.context import EXIT_USAGE, Context, console, fail, out
from srdose.cli.params import DATE, iso_day
from srdose.governance import audit as audit_trail
from srdose.governance import retention
from srdose.governance.optout import import_file
from srdose.governance.reid import ReidentificationError, decrypt, load_key
from srdose.store.governance import (
    audit_entries,
    opted_out_pseudonyms,
    opted_out_study_count,
    reidentification_entry,
)
from srdose.terminal import esc

# --- opt-out ----------------------------------------------------------------------------


@click.group()
def optout() -> None:
    """National data opt-out: patients left out of research exports and reports."""


@optout.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--replace", is_flag=True, help="The file is the whole list: patients not in it are no longer opted out.")
@click.pass_obj
def optout_import(obj: Context, file: Path, replace: bool) -> None:
    """Import a list of opted-out patient IDs (one per line, or the first CSV column).

    Each ID is hashed with the site key as at ingest; IDs are never stored or
    printed. Research exports made afterwards leave these patients out.
    """
    store = obj.store()
    assert store.pseudonymiser is not None  # a store opened for writing has the site key's pseudonymiser
    counts = import_file(store, file, store.pseudonymiser, replace=replace)
    audit_trail.record(
        store,
        "optout.import",
        {"file": str(file), "replace": replace, "sha256": counts["sha256"]},
        counts["ids"],
        {k: v for k, v in counts.items() if k != "sha256"},
    )
    out.print(
        f"{counts['ids']} patient ID(s) read; {counts['added']} opt-out hash(es) added"
        + (f", {counts['removed']} removed" if replace else "")
        + f"; {counts['total']} on the list; {counts['studies']} held studies are of opted-out patients"
    )


@optout.command("status")
@click.pass_obj
def optout_status(obj: Context) -> None:
    """How many opt-outs are held (as hashes) and how many studies they cover."""
    store = obj.store(write=False)
    n = len(opted_out_pseudonyms(store))
    studies = opted_out_study_count(store)
    out.print(
        f"{n} opt-out hash(es); {studies} held studies of opted-out patients; clinical audit "
        f"reports: {obj.settings.governance.optout_clinical_audit}"
    )


# --- re-identification ----------------------------------------------------------------


@click.command()
@click.argument("pseudonym")
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The re-identification key (default: [governance] reidentification_key_file).",
)
@click.option("--reason", default="", help="Why (written to the audit trail).")
@click.pass_obj
def reidentify(obj: Context, pseudonym: str, key_file: Path | None, reason: str) -> None:
    """Print the patient ID behind a site pseudonym (authorised staff; every attempt is audited).

    Needs the key file, which is kept outside the database. Works only for
    patients ingested while [governance] reidentification_key_file was set.
    """
    store = obj.store(write=False)
    path = key_file or obj.settings.governance.reidentification_key_file
    params = {"pseudonym": pseudonym, "reason": reason}

    def refuse(message: str, outcome: str) -> NoReturn:
        audit_trail.record(store, "reidentify", params, 0, {"outcome": outcome})
        fail(message, EXIT_USAGE)

    if not path:
        refuse("no key: give --key-file or set [governance] reidentification_key_file", "no key")
    try:
        key = load_key(path)
    except (ReidentificationError, PermissionError, ValueError) as exc:
        refuse(str(exc), "key refused")
    entry = reidentification_entry(store, pseudonym)
    if entry is None:
        refuse(
            f"no re-identification entry for {pseudonym} (unknown pseudonym, or ingested without "
            "a re-identification key)",
            "no entry",
        )
    try:
        patient_id = decrypt(key, pseudonym, *entry)
    except ReidentificationError as exc:
        refuse(str(exc), "decryption failed")
    audit_trail.record(store, "reidentify", params, 1, {"outcome": "disclosed"})
    out.print(patient_id)


# --- purge ------------------------------------------------------------------------------


@click.command()
@click.option(
    "--before",
    type=DATE,
    help="Remove what is dated before this day (default: today minus [governance] retention_days).",
)
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def purge(obj: Context, before: dt.date | None, dry_run: bool, yes: bool) -> None:
    """Retention: remove studies, events, source objects, quarantine, spool and archive files past the period.

    Prints what was removed (per table and folder) and writes it to the audit trail.
    """
    try:
        cutoff = retention.resolve_before(iso_day(before), int(obj.settings.governance.retention_days))
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    store = obj.store(write=False)
    if not dry_run and not yes:
        preview = retention.purge(store, obj.settings, cutoff, dry_run=True)
        click.confirm(
            f"remove {preview['studies']} studies, {preview['events']} events and "
            f"{sum(preview['files'].values())} files dated before {cutoff}?",
            abort=True,
            err=True,
        )
    counts = retention.purge(store, obj.settings, cutoff, dry_run=dry_run)
    if not dry_run:
        audit_trail.record(
            store,
            "purge",
            {"before": cutoff, "retention_days": obj.settings.governance.retention_days},
            counts["events"],
            counts,
        )
    table = Table(title=("would remove" if dry_run else "removed") + f" (before {cutoff})")
    table.add_column("what")
    table.add_column("count", justify="right")
    for key in (
        "studies",
        "source_objects",
        "events",
        "pulses",
        "filters",
        "accumulated_doses",
        "recalc_results",
        "reidentification",
        "quarantine",
    ):
        table.add_row(key, str(counts[key]))
    for key, n in counts["files"].items():
        table.add_row(f"files: {key}", str(n))
    out.print(table)
    if counts["spool_pending_kept"]:
        console.print(
            f"[yellow]{counts['spool_pending_kept']} spooled dataset(s) older than {cutoff} are not "
            "ingested yet and were kept: start the listener to ingest them.[/]"
        )


# --- audit ------------------------------------------------------------------------------


@click.command()
@click.option("--action", help="Only this action (e.g. export.research, reidentify, purge, report, export).")
@click.option("--since", type=DATE, help="Only entries from this day (UTC).")
@click.option("--limit", type=click.IntRange(1, 10_000_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@click.pass_obj
def audit(obj: Context, action: str | None, since: dt.date | None, limit: int, as_json: bool) -> None:
    """The audit trail: every export, report, re-identification and purge, newest first."""
    when = dt.datetime.combine(since, dt.time()) if since else None
    entries = audit_entries(obj.store(write=False), action, when, limit)
    if as_json:
        for e in entries:
            e = dict(
                e,
                at=e["at"].isoformat(),
                parameters=json.loads(e["parameters"] or "{}"),
                detail=json.loads(e["detail"]) if e["detail"] else None,
            )
            click.echo(json.dumps(e, sort_keys=True))
        return
    table = Table(title=f"audit trail ({len(entries)} entries)")
    for col in ("id", "when (UTC)", "who", "action", "parameters", "rows"):
        table.add_column(col, overflow="fold")
    for e in entries:
        table.add_row(
            str(e["id"]),
            e["at"].isoformat(sep=" ", timespec="seconds"),
            esc(e["who"]),
            esc(e["action"]),
            esc(e["parameters"] or ""),
            "" if e["rows"] is None else str(e["rows"]),
        )
    out.print(table)
