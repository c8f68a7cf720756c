"""The curation pages (physicist and admin): units and their names, protocol names, infeasible values.

Routes:

* ``GET /curation`` -- units (serial, manufacturer, model, station, the name shown, events) and the
  alias rules; ``POST /curation/units/rename`` (``unit`` a device id, ``name``; ``clear=1`` removes
  the name) and ``POST /curation/units/alias`` (``field`` serial|station|institution, ``value``,
  ``name``; ``remove=1`` removes the rule), as ``srdose units rename`` / ``srdose units alias``;
* ``GET /curation/protocols`` -- protocol names with their event counts and the standard protocol
  each maps to through ``[curation] protocol_map`` (a file setting: not edited here);
* ``GET /curation/infeasible`` -- per rule the flagged events (``?rule=kvp&page=2`` pages through
  one rule's events); ``POST /curation/infeasible`` applies the rules in force to every stored
  event again, as ``srdose check --recheck``.

Every change goes through the same store functions as the command line; the auth wrapper audits
each request under the action set here (``web:curation.rename`` ...).
"""

from __future__ import annotations

import math
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from srdose.curation.infeasible import FIELDS, Rule, RulesError, broken_rules, merge_flags, rules_from_settings
from srdose.curation.protocols import ProtocolMapError, load_mapping, standard_protocol
from srdose.store import curation as C
from srdose.store import governance as G
from srdose.web.auth import error_page, require
from srdose.web.render import render

#: Longest unit name or alias value accepted (names are shown in tables and report headings).
MAX_NAME = 128


# --- units -----------------------------------------------------------------------------


def _units_page(request: Request, message: str = "", error: str = "", status: int = 200) -> Response:
    store = request.app.state.store
    units = G.units(store)
    per_unit = G.unit_event_counts(store)
    for u in units:
        u["events"] = per_unit.get(u["id"], {}).get("events", 0)
    request.state.audit_rows = len(units)
    return render(
        request,
        "web/curation_units.html",
        {
            "units": units,
            "aliases": G.aliases(store),
            "alias_fields": G.ALIAS_FIELDS,
            "message": message,
            "error": error,
            "tab": "units",
        },
        status_code=status,
    )


@require("physicist")
def units_page(request: Request) -> Response:
    return _units_page(request)


def _text(form: Any, name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


@require("physicist")
def units_rename(request: Request) -> Response:
    request.state.audit_action = "web:curation.rename"
    store, form = request.app.state.store, request.state.form
    ref, name, clear = _text(form, "unit"), _text(form, "name"), form.get("clear") == "1"
    ids = G.find_devices(store, ref) if ref.isdigit() else []
    # a row's form names one device by its id; anything else is not a unit of this list
    ids = [i for i in ids if str(i) == ref]
    if not ids:
        return _units_page(request, error="No such unit.", status=400)
    if not clear and not name:
        return _units_page(request, error="Give a name, or clear the name.", status=400)
    if len(name) > MAX_NAME:
        return _units_page(request, error=f"A name has at most {MAX_NAME} characters.", status=400)
    n = G.rename_units(store, ids, None if clear else name)
    response = _units_page(request, message=f"Unit now shown as {G.display_name(store, ids[0])!r}.")
    request.state.audit_rows = n  # units changed, not the rows of the list shown after
    return response


@require("physicist")
def units_alias(request: Request) -> Response:
    request.state.audit_action = "web:curation.alias"
    store, form = request.app.state.store, request.state.form
    field, value, name = _text(form, "field"), _text(form, "value"), _text(form, "name")
    remove = form.get("remove") == "1"
    if field not in G.ALIAS_FIELDS:
        return _units_page(request, error=f"The field is one of {', '.join(G.ALIAS_FIELDS)}.", status=400)
    if not value or (not remove and not name):
        return _units_page(request, error="Give the value to match and the name to show.", status=400)
    if len(value) > MAX_NAME or len(name) > MAX_NAME:
        return _units_page(request, error=f"Values and names have at most {MAX_NAME} characters.", status=400)
    done = G.set_alias(store, field, value, None if remove else name)
    response = _units_page(request, message=f"Alias {field} = {value!r}: {done}.")
    request.state.audit_rows = 0 if done == "absent" else 1
    return response


# --- protocols -------------------------------------------------------------------------


@require("physicist")
def protocols_page(request: Request) -> Response:
    store, settings = request.app.state.store, request.app.state.settings
    configured = settings.curation.protocol_map
    try:
        mapping = load_mapping(configured or None)
    except ProtocolMapError as exc:
        return error_page(request, 500, f"The protocol map cannot be read: {exc}")
    rows: list[dict[str, Any]] = []
    totals: dict[str, int] = {}
    for name, n in G.protocol_names(store):
        standard = standard_protocol(name, mapping)
        rows.append({"protocol": name, "events": n, "standard": standard})
        totals[standard] = totals.get(standard, 0) + n
    request.state.audit_rows = len(rows)
    return render(
        request,
        "web/curation_protocols.html",
        {
            "rows": rows,
            "totals": sorted(totals.items(), key=lambda kv: -kv[1]),
            "map_file": configured or "the packaged map (srdose/curation/protocols.csv)",
            "tab": "protocols",
        },
    )


# --- infeasible values -----------------------------------------------------------------


def _rule_fields(rules: tuple[Rule, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for r in rules:
        out.setdefault(r.name, r.field)
    return out


def recheck(store: Any, rules: tuple[Rule, ...]) -> int:
    """Apply ``rules`` to every live event again (as ``srdose check --recheck``); events changed."""
    changes = {}
    for row in G.iter_events_for_check(store, FIELDS):
        new = merge_flags(row["flags"], broken_rules(row, rules))
        if new != row["flags"]:
            changes[row["id"]] = new
    return G.set_event_flags(store, changes)


def _infeasible_page(request: Request, rules: tuple[Rule, ...], message: str = "") -> Response:
    store, settings = request.app.state.store, request.app.state.settings
    names = G.display_names(store)
    by_rule: dict[str, int] = {}
    by_unit: list[dict] = []
    for c in G.flag_counts(store):
        by_rule[c["rule"]] = by_rule.get(c["rule"], 0) + c["events"]
        by_unit.append({**c, "unit": names.get(c["device_id"], "unknown unit")})
    per_unit = G.unit_event_counts(store)
    fields = _rule_fields(rules)
    # the rules in force first, in table order, then rules of an earlier table still flagged
    rule_names = [*fields, *sorted(set(by_rule) - set(fields))]
    params = request.query_params
    rule = params.get("rule", "").strip() or next((r for r in rule_names if by_rule.get(r)), "")
    if rule and rule not in rule_names:
        return error_page(request, 400, "rule must name one of the rules listed on this page")
    try:
        page = int(params.get("page", "1") or 1)
        if page < 1:
            raise ValueError
    except ValueError:
        return error_page(request, 400, "page must be a whole number from 1")
    size = settings.web.page_size
    total = C.flagged_count(store, rule) if rule else 0
    pages = max(1, math.ceil(total / size))
    page = min(page, pages)
    events = C.flagged_events(store, rule, fields.get(rule), (page - 1) * size, size) if rule else []
    for e in events:
        e["unit"] = names.get(e["device_id"], "unknown unit")
    request.state.audit_rows = len(events)
    return render(
        request,
        "web/curation_infeasible.html",
        {
            "rules": rules,
            "rule_names": rule_names,
            "by_rule": by_rule,
            "by_unit": by_unit,
            "rule": rule,
            "field": fields.get(rule, ""),
            "events": events,
            "total": total,
            "page": page,
            "pages": pages,
            "live": sum(u["events"] for u in per_unit.values()),
            "flagged": sum(u["flagged"] for u in per_unit.values()),
            "message": message,
            "tab": "infeasible",
        },
    )


@require("physicist")
def infeasible_page(request: Request) -> Response:
    try:
        rules = rules_from_settings(request.app.state.settings)
    except RulesError as exc:
        return error_page(request, 500, f"The infeasible-value rules cannot be read: {exc}")
    return _infeasible_page(request, rules)


@require("physicist")
def infeasible_recheck(request: Request) -> Response:
    request.state.audit_action = "web:curation.recheck"
    try:
        rules = rules_from_settings(request.app.state.settings)
    except RulesError as exc:
        return error_page(request, 500, f"The infeasible-value rules cannot be read: {exc}")
    n = recheck(request.app.state.store, rules)
    response = _infeasible_page(request, rules, f"Rechecked every stored event: flags changed on {n} event(s).")
    request.state.audit_rows = n
    return response


def routes() -> list[BaseRoute]:
    return [
        Route("/curation", units_page, methods=["GET"]),
        Route("/curation/units/rename", units_rename, methods=["POST"]),
        Route("/curation/units/alias", units_alias, methods=["POST"]),
        Route("/curation/protocols", protocols_page, methods=["GET"]),
        Route("/curation/infeasible", infeasible_page, methods=["GET"]),
        Route("/curation/infeasible", infeasible_recheck, methods=["POST"]),
    ]
