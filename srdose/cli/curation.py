"""``srdose check``, ``srdose units`` and ``srdose protocols``.

Exit codes: ``check`` exits 1 when any live event breaks an infeasible-value rule (a completed check
that found something), else 0; 2 for a bad rules file or unknown unit.
"""

from __future__ import annotations

import click
from rich.table import Table

from srdose.cli.context import EXIT_PARTIAL, EXIT_USAGE, Context, console, fail, out
from srdose.curation.infeasible import (
    FIELDS,
    RulesError,
    broken_rules,
    merge_flags,
    rules_from_settings,
)
from srdose.curation.protocols import ProtocolMapError, load_mapping, standard_protocol
from srdose.governance import audit
from srdose.store import governance as G
from srdose.terminal import esc


@click.command()
@click.option(
    "--recheck",
    is_flag=True,
    help="Apply the rules in force to every stored event again (after "
    "editing the rules), replacing earlier infeasible:* flags.",
)
@click.option("--rules", "show_rules", is_flag=True, help="Only print the rules table in force.")
@click.pass_obj
def check(obj: Context, recheck: bool, show_rules: bool) -> None:
    """Infeasible values: events flagged, by unit and rule.

    Each rule ([curation] infeasible_rules, or the packaged table) gives a
    named flag infeasible:<rule> on the event. Flagged events stay in the
    database and are left out of DRL statistics. Exit code 1 when any event
    is flagged.
    """
    try:
        rules = rules_from_settings(obj.settings)
    except RulesError as exc:
        fail(str(exc), EXIT_USAGE)
    if show_rules:
        t = Table(title="infeasible-value rules")
        for col in ("rule", "field", "applies to", "allowed", "unit", "description"):
            t.add_column(col)
        for r in rules:
            t.add_row(*(esc(v) for v in (r.name, r.field, r.applies_to, r.limits_text(), r.unit, r.description)))
        out.print(t)
        return
    store = obj.store(write=False)
    if recheck:
        changes = {}
        for row in G.iter_events_for_check(store, FIELDS):
            new = merge_flags(row["flags"], broken_rules(row, rules))
            if new != row["flags"]:
                changes[row["id"]] = new
        G.set_event_flags(store, changes)
        console.print(f"rechecked: flags changed on {len(changes)} event(s)")
    names = G.display_names(store)
    per_unit = G.unit_event_counts(store)
    counts = G.flag_counts(store)
    t = Table(title="events with infeasible values, by unit and rule")
    for col in ("unit", "rule", "events", "of unit's events"):
        t.add_column(col, justify="right" if col != "unit" and col != "rule" else "left")
    for c in counts:
        total = per_unit.get(c["device_id"], {}).get("events", 0)
        t.add_row(esc(names.get(c["device_id"], "unknown unit")), esc(c["rule"]), str(c["events"]), str(total))
    out.print(t)
    flagged = sum(u["flagged"] for u in per_unit.values())
    events = sum(u["events"] for u in per_unit.values())
    notp = sum(u["not_patient"] for u in per_unit.values())
    out.print(
        f"{flagged} of {events} live events flagged (excluded from DRL statistics); "
        f"{notp} events of test/phantom studies (not patients)"
    )
    if flagged:
        raise SystemExit(EXIT_PARTIAL)


@click.group(invoke_without_command=True)
@click.pass_context
def units(ctx: click.Context) -> None:
    """X-ray units and the names reports show them under (list, rename, alias)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(units_list)


@units.command("list")
@click.pass_obj
def units_list(obj: Context) -> None:
    """Every unit: identity, latest station and institution, the name in force and where it comes from."""
    store = obj.store(write=False)
    rows = G.units(store)
    t = Table(title=f"{len(rows)} unit(s)")
    for col in ("id", "manufacturer", "model", "serial", "station", "institution", "shown as", "named by"):
        t.add_column(col, overflow="fold")
    for d in rows:
        # every field comes from the modality or a user: shown literally, never as markup
        t.add_row(
            str(d["id"]),
            *(
                esc(d[k] or "")
                for k in ("manufacturer", "model", "serial", "station", "institution", "shown_as", "named_by")
            ),
        )
    out.print(t)
    al = G.aliases(store)
    if al:
        t = Table(title="aliases")
        for col in ("field", "value", "shown as"):
            t.add_column(col)
        for a in al:
            t.add_row(esc(a["match_field"]), esc(a["match_value"]), esc(a["display_name"]))
        out.print(t)


@units.command("rename")
@click.argument("unit")
@click.argument("name", required=False)
@click.option("--clear", is_flag=True, help="Remove the explicit name (aliases or the default apply again).")
@click.pass_obj
def units_rename(obj: Context, unit: str, name: str | None, clear: bool) -> None:
    """Show UNIT (id, serial, station or current name) as NAME in reports.

    Give two units the same NAME to count them as one (e.g. a unit whose
    serial changed when its detector was replaced).
    """
    if not clear and not name:
        fail("give a NAME, or --clear", EXIT_USAGE)
    store = obj.store(write=False)
    ids = G.find_devices(store, unit)
    if not ids:
        fail(f"no unit {unit!r}: see `srdose units list`", EXIT_USAGE)
    n = G.rename_units(store, ids, None if clear else name)
    audit.record(store, "units.rename", {"unit": unit, "name": None if clear else name, "device_ids": ids}, n)
    out.print(f"{n} unit(s) now shown as {esc(repr(G.display_name(store, ids[0])))}")


@units.command("alias")
@click.option("--serial", "serial", help="Devices with this serial number ...")
@click.option("--station", "station", help="... or this station name ...")
@click.option("--institution", "institution", help="... or this institution name ...")
@click.argument("name", required=False)
@click.option("--remove", is_flag=True, help="Remove the alias.")
@click.pass_obj
def units_alias(
    obj: Context, serial: str | None, station: str | None, institution: str | None, name: str | None, remove: bool
) -> None:
    """... are shown as NAME (an explicit `units rename` wins over aliases)."""
    given = [(f, v) for f, v in (("serial", serial), ("station", station), ("institution", institution)) if v]
    if len(given) != 1 or (not remove and not name):
        fail("give exactly one of --serial/--station/--institution, and NAME (or --remove)", EXIT_USAGE)
    field, value = given[0]
    store = obj.store(write=False)
    done = G.set_alias(store, field, value, None if remove else name)
    audit.record(
        store,
        "units.alias",
        {"field": field, "value": value, "name": None if remove else name},
        None,
        {"outcome": done},
    )
    out.print(f"alias {field}={esc(repr(value))}: {done}")


@click.command()
@click.pass_obj
def protocols(obj: Context) -> None:
    """Protocol names in the database and the standard protocol each maps to."""
    try:
        mapping = load_mapping(obj.settings.curation.protocol_map or None)
    except ProtocolMapError as exc:
        fail(str(exc), EXIT_USAGE)
    t = Table(title="protocol names (live events)")
    for col in ("protocol", "events", "standard"):
        t.add_column(col)
    for name, n in G.protocol_names(obj.store(write=False)):
        t.add_row(esc(name or ""), str(n), esc(standard_protocol(name, mapping)))
    out.print(t)
