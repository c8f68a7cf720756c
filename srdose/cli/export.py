"""``srdose export events``, ``srdose export research`` and ``srdose export fhir``.

Exit codes as everywhere: 0 done, 2 usage or configuration (bad file, no key, bad dates), 3 could not run.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from srdose.cli.context import EXIT_USAGE, Context, console, fail
from srdose.cli.params import (
    DATE,
    UNIT,
    Unit,
    dicom_day,
    flatten_serials,
    iso_day,
    output_format,
)
from srdose.export import export_events, export_fhir
from srdose.governance import audit
from srdose.governance.keys import check_project
from srdose.governance.research import ResearchExportError
from srdose.governance.research import export_research as write_research_export
from srdose.parse.values import uid_problem
from srdose.pseudonym import load_or_create_secret
from srdose.terminal import esc


@click.group()
def export() -> None:
    """Export data as CSV or XLSX."""


@export.command("events")
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output file: .csv or .xlsx.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "xlsx"]),
    default=None,
    help="Default: from the file suffix (.csv or .xlsx; none: csv).",
)
@click.option("--from", "since", type=DATE, help="First study date.")
@click.option("--to", "until", type=DATE, help="Last study date (inclusive).")
@click.option(
    "--unit",
    "units",
    type=UNIT,
    multiple=True,
    help="Only this unit: serial, station or the name it is shown under (repeat); default all.",
)
@click.pass_obj
def export_events_cmd(
    obj: Context, out_path: Path, fmt: str | None, since: dt.date | None, until: dt.date | None, units: tuple[Unit, ...]
) -> None:
    """One row per irradiation event (pseudonymised), in the documented column order."""
    fmt = output_format(out_path, fmt)
    if since and until and since > until:
        fail(f"--from {since} is after --to {until}", EXIT_USAGE)
    serials = flatten_serials(units)
    store = obj.store(write=False)
    n = export_events(store, out_path, fmt, serials=serials, since=dicom_day(since), until=dicom_day(until))
    audit.record(
        store,
        "export.events",
        {
            "out": out_path.name,
            "from": since and since.isoformat(),
            "to": until and until.isoformat(),
            "unit": serials or None,
        },
        n,
    )
    console.print(f"wrote {n} events to {esc(out_path)}")


def _site_secret(obj: Context) -> bytes:
    try:
        return load_or_create_secret(obj.settings.site_secret_path)
    except (PermissionError, ValueError) as exc:
        fail(str(exc), EXIT_USAGE)


@export.command("research")
@click.option("--project", required=True, help="Project name: its own pseudonyms and date shifts.")
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder."
)
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx"]), default="csv", show_default=True)
@click.option("--parquet/--no-parquet", default=None, help="Also write Parquet (default: when pyarrow is installed).")
@click.option("--from", "since", type=DATE, help="First study date (real, before shifting).")
@click.option("--to", "until", type=DATE, help="Last study date (inclusive).")
@click.option(
    "--exclude-flagged", is_flag=True, help="Leave out events with infeasible values (default: kept, flagged)."
)
@click.pass_obj
def export_research(
    obj: Context,
    project: str,
    out_dir: Path,
    fmt: str,
    parquet: bool | None,
    since: dt.date | None,
    until: dt.date | None,
    exclude_flagged: bool,
) -> None:
    """De-identified extract for a trusted research environment, with a manifest.

    Per-project patient pseudonyms (unlinkable across projects), dates
    shifted per patient (intervals kept), ages banded, free text dropped
    unless allow-listed ([governance] research_free_text), units as labels.
    Test/phantom studies and opted-out patients are left out. Audited.
    """
    try:
        check_project(project)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    if since and until and since > until:
        fail(f"--from {since} is after --to {until}", EXIT_USAGE)
    secret = _site_secret(obj)
    store = obj.store(write=False)
    try:
        manifest = write_research_export(
            store,
            secret,
            project,
            out_dir,
            obj.settings,
            fmt=fmt,
            parquet=parquet,
            since=dicom_day(since),
            until=dicom_day(until),
            exclude_flagged=exclude_flagged,
        )
    except ResearchExportError as exc:
        fail(str(exc), EXIT_USAGE)
    audit.record(
        store,
        "export.research",
        {
            "project": project,
            "out": str(out_dir),
            "format": fmt,
            "from": iso_day(since),
            "to": iso_day(until),
            "exclude_flagged": exclude_flagged,
        },
        manifest["rows"],
        {"files": manifest["files"], "manifest_sha256": manifest["manifest_sha256"], "excluded": manifest["excluded"]},
    )
    console.print(
        esc(
            f"wrote {manifest['rows']} events ({manifest['patients']} patients) for project {project} "
            f"to {out_dir}: {', '.join(manifest['files'])}, {Path(manifest['manifest_path']).name}"
        )
    )


@export.command("fhir")
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder."
)
@click.option("--from", "since", type=DATE, help="First study date.")
@click.option("--to", "until", type=DATE, help="Last study date (inclusive).")
@click.option("--study", "study_uid", metavar="UID", help="One study, by its Study Instance UID.")
@click.pass_obj
def export_fhir_cmd(
    obj: Context, out_dir: Path, since: dt.date | None, until: dt.date | None, study_uid: str | None
) -> None:
    """Per study, a FHIR Bundle of HL7 Radiation Dose Summary Observations (FHIR R4), one per breast:
    the accumulated AGD the unit reported (DICOM 111637) and the MGD srdose recalculated.

    The patient is named by the site's pseudonym only. Needs fhir.resources (pip install
    'srdose[fhir]'), which validates every resource. Audited.
    """
    if since and until and since > until:
        fail(f"--from {since} is after --to {until}", EXIT_USAGE)
    problem = uid_problem(study_uid) if study_uid is not None else None
    if problem:
        fail(f"--study {study_uid!r} is not a DICOM UID: {problem}", EXIT_USAGE)
    store = obj.store(write=False)
    try:
        n = export_fhir(store, out_dir, dicom_day(since), dicom_day(until), study_uid)
    except RuntimeError as exc:  # the optional FHIR library is missing
        fail(str(exc), EXIT_USAGE)
    audit.record(
        store,
        "export.fhir",
        {"out": out_dir.name, "from": iso_day(since), "to": iso_day(until), "study": study_uid},
        n,
    )
    console.print(f"wrote {n} FHIR bundle(s) to {esc(out_dir)}")
