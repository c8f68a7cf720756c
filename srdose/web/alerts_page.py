"""``/alerts``: the alerts fired, their acknowledgement, and the rules a physicist sets.

Routes (``routes()`` gives them to the application):

* ``GET /alerts`` -- open and recent alerts and the rules (every role);
* ``POST /alerts/{id}/acknowledge`` -- mark an alert seen (physicist);
* ``POST /alerts/rules`` -- add a rule: ``kind``, ``serial`` (empty: every unit), ``view``,
  ``band`` (thickness, ``50-60``), ``threshold``, ``days`` (physicist);
* ``POST /alerts/rules/{id}`` -- ``enabled`` = 1 or 0 (physicist).

Every form carries the session's ``csrf_token`` (checked by :func:`srdose.web.auth.require`);
every answer is audited there.
"""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from srdose.config import parse_band
from srdose.store import alerts as db
from srdose.web.auth import error_page, require
from srdose.web.render import render, root

#: What each kind of rule means, and what its threshold and days are, for the form.
KIND_HELP = {
    "mgd": "MGD above a level: threshold in mGy; days to look back (7); view and thickness band optional",
    "ratio": "recalculated/reported MGD outside 1 ± threshold ([recalc] ratio_band if empty); days to look back",
    "drift": "the ratio's control chart flags drift",
    "silent": "no study from a unit for more than days (7)",
    "listener": "the DICOM listener down: status older than threshold minutes (5), stopped or absent",
    "quarantine": "more than threshold (10) datasets quarantined in the last day",
}
LISTED = 200
#: Days a rule may look back at most (a century): more overflows the date it looks back to.
MAX_DAYS = 36500


def _page(request: Request, message: str = "", status_code: int = 200) -> Response:
    store = request.app.state.store
    fired = db.alerts(store, limit=LISTED)
    request.state.audit_rows = len(fired)
    return render(
        request,
        "web/alerts.html",
        {
            "alerts": fired,
            "open_count": sum(1 for a in fired if a["acknowledged_at"] is None),
            "rules": db.rules(store),
            "kinds": KIND_HELP,
            "message": message,
            "smtp_on": bool(request.app.state.settings.alerts.smtp_host),
        },
        status_code=status_code,
    )


@require("viewer")
def alerts(request: Request) -> Response:
    return _page(request)


def _back(request: Request) -> Response:
    return RedirectResponse(f"{root(request)}/alerts", status_code=303)


def _number(text: str, name: str, whole: bool = False) -> float | int | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        raise ValueError(f"{name} must be a {'whole ' if whole else ''}number, not {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a positive number, not {text!r}")
    # days: stored in an integer column (32-bit on PostgreSQL), and subtracted from today
    if whole and value > MAX_DAYS:
        raise ValueError(f"{name} must be at most {MAX_DAYS}, not {text!r}")
    return value


@require("physicist")
def add_rule(request: Request) -> Response:
    form = request.state.form
    kind = str(form.get("kind", ""))
    try:
        if kind not in db.KINDS:
            raise ValueError(f"choose a kind of rule: {', '.join(db.KINDS)}")
        band_text = str(form.get("band", "")).strip()
        band = parse_band(band_text) if band_text else None
        threshold = _number(str(form.get("threshold", "")), "the threshold")
        days = _number(str(form.get("days", "")), "days", whole=True)
        if kind == "mgd" and threshold is None:
            raise ValueError("an MGD rule needs its level (threshold, mGy)")
        view = str(form.get("view", "")).strip()
        if len(view) > 16 or not all(c.isalnum() for c in view):
            raise ValueError("the view is a code such as MLO or CC")
    except ValueError as exc:
        return _page(request, str(exc), status_code=400)
    db.add_rule(
        request.app.state.store,
        kind,
        f"web:{request.state.user.name}",
        serial=str(form.get("serial", "")).strip()[:256] or None,
        view=view or None,
        band_mm=band,
        threshold=threshold,
        days=int(days) if days is not None else None,
    )
    return _back(request)


@require("physicist")
def set_rule(request: Request) -> Response:
    enabled = str(request.state.form.get("enabled", "")) == "1"
    if not db.set_rule_enabled(request.app.state.store, int(request.path_params["rule_id"]), enabled):
        return error_page(request, 404, "There is no such rule.")
    return _back(request)


@require("physicist")
def acknowledge(request: Request) -> Response:
    db.acknowledge(request.app.state.store, int(request.path_params["alert_id"]), f"web:{request.state.user.name}")
    return _back(request)


def routes() -> list[BaseRoute]:
    return [
        Route("/alerts", alerts, methods=["GET"]),
        Route("/alerts/{alert_id:int}/acknowledge", acknowledge, methods=["POST"]),
        Route("/alerts/rules", add_rule, methods=["POST"]),
        Route("/alerts/rules/{rule_id:int}", set_rule, methods=["POST"]),
    ]
