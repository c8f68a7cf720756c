"""``srdose inspect``: a dose object read carefully, for a person checking a unit.

Exit codes: 0 every file read as a dose object srdose stores; 1 some file srdose would refuse
(quarantine), each with the reason; 2 a usage error; 3 the audit trail could not be written for
``--identifiable``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.table import Table

from srdose.cli.context import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, Context, console, fail, out
from srdose.governance import audit as audit_trail
from srdose.parse.inspect import inspect_path
from srdose.terminal import esc, plain_text

_NUMBER_COLUMNS = (
    ("kvp", "kV"),
    ("mas", "mAs"),
    ("compressed_thickness_mm", "mm"),
    ("compression_force_n", "N"),
    ("hvl_mm", "HVL mm"),
    ("entrance_exposure_mgy", "ESAK mGy"),
    ("agd_mgy", "AGD mGy"),
)


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="JSON for tools (one object per file) instead of text.")
@click.option(
    "--identifiable",
    is_flag=True,
    help="Show the patient's name, ID, birth date, accession and person names (audited; needs --reason).",
)
@click.option("--reason", default="", help="Why identifiers are shown (with --identifiable; in the audit trail).")
@click.pass_obj
def inspect(obj: Context, files: tuple[Path, ...], as_json: bool, identifiable: bool, reason: str) -> None:
    """Read dose SRs (or MG image headers) for a person: the content tree as highdicom content
    items, the templates labelled (TID 10001, 10002/10005, 10003), known vendor deviations marked
    where they occur, and what srdose stores from each event.

    Identifiers are withheld unless --identifiable (audited, with --reason).
    """
    if reason and not identifiable:
        fail("--reason goes with --identifiable", EXIT_USAGE)
    if identifiable:
        if not reason.strip():
            fail("--identifiable needs --reason: why identifiers are shown (it is audited)", EXIT_USAGE)
        try:  # audited before anything is shown: no audit, no identifiers
            audit_trail.record(
                obj.store(), "inspect.identifiable", {"files": [p.name for p in files], "reason": reason}, len(files)
            )
        except Exception as exc:  # the database is down, full, read-only...
            fail(f"the audit trail could not be written, so no identifiers are shown: {exc}", EXIT_FAILED)
    results = [inspect_path(p, identifiable) for p in files]
    if as_json:
        sys.stdout.write(json.dumps([r.as_dict() for r in results], indent=2, default=str) + "\n")
    else:
        for r in results:
            _print(r)
    refused = [r for r in results if r.refused]
    for r in refused:
        console.print(f"[yellow]{esc(r.name)}: srdose would refuse it:[/] {esc(r.refused)}")
    sys.exit(EXIT_PARTIAL if refused else EXIT_OK)


def _print(r) -> None:
    out.rule(f"[bold]{esc(r.name)}[/]")
    for text, note in r.lines():
        out.print(esc(text), style="yellow" if note else None, highlight=False)
    if r.refused:
        return
    table = Table(title=f"what srdose stores: {len(r.stored)} irradiation event(s)", title_justify="left")
    for name in ("#", "laterality", "view", "2D/DBT", "target/filter"):
        table.add_column(name)
    for _, label in _NUMBER_COLUMNS:
        table.add_column(label, justify="right")
    table.add_column("flags")
    for i, e in enumerate(r.stored, start=1):
        table.add_row(
            str(i),
            esc(e["laterality"] or "?"),
            esc(e["view"] or "?"),
            esc(e["acquisition"] or "?"),
            esc(f"{e['anode'] or '?'}/{e['filter_material'] or '?'}"),
            *[_number(e[k]) for k, _ in _NUMBER_COLUMNS],
            esc(";".join(e["flags"])),
        )
    out.print(table)
    for a in r.accumulated:
        out.print(f"accumulated AGD, {esc(a['laterality'] or '?')}: {_number(a['agd_mgy'])} mGy")
    if r.flags:
        out.print(f"report flags: {esc(';'.join(r.flags))}")


def _number(value) -> str:
    if value is None:
        return "-"
    return plain_text(f"{value:g}" if isinstance(value, float) else value)
