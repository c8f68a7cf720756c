"""The pages that change things or run work: reports and physics (physicist), users and the audit
trail (admin)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from srdose.config import DEFAULTS
from srdose.dates import parse_iso_day
from srdose.files import private_dir
from srdose.recalc.physicsfile import parse as parse_physics_file
from srdose.report.common import Built
from srdose.report.drl import DRLSettings, build_drl
from srdose.report.phantom import build_phantom_qc
from srdose.report.qa import build_qa
from srdose.report.survey import build_survey
from srdose.store import recalc as recalc_store
from srdose.store import web as q
from srdose.store import web_users
from srdose.store.reports import known_serials
from srdose.store.web_users import ROLES
from srdose.web.auth import check_password_rules, check_user_name, error_page, hash_password, require
from srdose.web.render import render, root

REPORT_KINDS = {"survey": "Survey", "drl": "DRL", "qa": "QA", "qc": "Phantom QC"}
DOWNLOADABLE = {".html": "text/html", ".csv": "text/csv", ".xlsx": None, ".png": "image/png", ".svg": "image/svg+xml"}
# a physics file is a small CSV; anything bigger is not one
MAX_PHYSICS_BYTES = 1_000_000


def reports_dir(settings) -> Path:
    return Path(settings.web.reports_dir).expanduser() if settings.web.reports_dir else settings.data_dir / "reports"


def _report_files(base: Path) -> list[dict]:
    if not base.is_dir():
        return []
    out = []
    for p in sorted(base.rglob("*"), key=lambda p: p.stat().st_mtime if p.exists() else 0, reverse=True):
        if p.is_file() and p.suffix.lower() in DOWNLOADABLE and not p.is_symlink():
            st = p.stat()
            out.append(
                {
                    "path": p.relative_to(base).as_posix(),
                    "size": st.st_size,
                    "at": dt.datetime.fromtimestamp(st.st_mtime).strftime("%Y-%m-%d %H:%M"),
                }
            )
    return out[:500]


def _reports_page(request: Request, message: str = "", notes: list[str] | None = None, status: int = 200) -> Response:
    settings = request.app.state.settings
    files = _report_files(reports_dir(settings))
    request.state.audit_rows = len(files)
    today = dt.date.today()
    return render(
        request,
        "web/reports.html",
        {
            "files": files,
            "kinds": REPORT_KINDS,
            "serials": known_serials(request.app.state.store),
            "message": message,
            "notes": notes or [],
            "default_from": today.replace(month=1, day=1).isoformat(),
            "default_to": today.isoformat(),
        },
        status_code=status,
    )


@require("physicist")
def reports(request: Request) -> Response:
    return _reports_page(request)


@require("physicist")
def run_report(request: Request) -> Response:
    """Run one report for a period and units into ``[web] reports_dir``."""
    store, settings = request.app.state.store, request.app.state.settings
    form = request.state.form
    kind = str(form.get("kind", ""))
    since_day, until_day = parse_iso_day(str(form.get("from", ""))), parse_iso_day(str(form.get("to", "")))
    serials = [str(s) for s in form.getlist("unit") if str(s)]
    if kind not in REPORT_KINDS:
        return _reports_page(request, "Choose a report.", status=400)
    if since_day is None or until_day is None or since_day > until_day:
        return _reports_page(request, "Give a period: from and to dates, from not after to.", status=400)
    unknown = set(serials) - set(known_serials(store))
    if unknown:
        return _reports_page(request, "Unknown unit.", status=400)
    since, until = since_day.isoformat(), until_day.isoformat()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = private_dir(reports_dir(settings) / f"{kind}-{stamp}")
    request.state.audit_action = "web:report"
    try:
        if kind == "survey":
            built = Built()
            chosen: list[str | None] = list(serials) or [None]
            for serial in chosen:
                b = build_survey(store, settings, since, until, out_dir, serial)
                built.html += b.html
                built.files += b.files
                built.notes += b.notes
        elif kind == "drl":
            built = build_drl(
                store, settings, since, until, out_dir, DRLSettings.from_settings(settings.report), serials
            )
        elif kind == "qa":
            if len(serials) != 1:
                return _reports_page(request, "The QA report is of one unit: choose one.", status=400)
            built = build_qa(store, settings, since, until, out_dir, serials[0])
        else:
            built = build_phantom_qc(store, settings, since, until, out_dir, serials or None)
    except ValueError as exc:
        return _reports_page(request, f"The report could not be made: {exc}", status=400)
    written = len(built.html) + len(built.files)
    request.state.audit_rows = written
    message = f"{REPORT_KINDS[kind]} report: {written} files written." if written else "Nothing was written."
    return _reports_page(request, message, built.notes)


@require("physicist")
def report_file(request: Request) -> Response:
    base = reports_dir(request.app.state.settings).resolve()
    rel = request.path_params["path"]
    path = (base / rel).resolve()
    # only a file inside the reports folder, of a kind a report writes
    if base not in path.parents or not path.is_file() or path.suffix.lower() not in DOWNLOADABLE:
        return error_page(request, 404, "No such report file.")
    request.state.audit_action = "web:download"
    disposition = "inline" if path.suffix.lower() in (".html", ".png", ".svg") else "attachment"
    return FileResponse(
        path, media_type=DOWNLOADABLE[path.suffix.lower()], filename=path.name, content_disposition_type=disposition
    )


# --- physics -------------------------------------------------------------------------


def _physics_page(request: Request, message: str = "", status: int = 200) -> Response:
    store = request.app.state.store
    sets = recalc_store.physics_sets(store)
    factor_sets = recalc_store.factor_set_records(store)
    request.state.audit_rows = len(sets)
    return render(
        request, "web/physics.html", {"sets": sets, "factor_sets": factor_sets, "message": message}, status_code=status
    )


@require("physicist")
def physics(request: Request) -> Response:
    return _physics_page(request)


@require("physicist")
def physics_import(request: Request) -> Response:
    form = request.state.form
    upload = form.get("file")
    replace = form.get("replace") == "1"
    request.state.audit_action = "web:physics-import"
    if upload is None or isinstance(upload, str):
        return _physics_page(request, "Choose a physics file.", 400)
    raw = upload.file.read(MAX_PHYSICS_BYTES + 1)
    if len(raw) > MAX_PHYSICS_BYTES:
        return _physics_page(request, "That file is too large to be a physics file.", 400)
    try:
        text = raw.decode("utf-8-sig")
        pf = parse_physics_file(text if "\n" in text else text + "\n")
        set_id, outcome = recalc_store.add_physics_set(request.app.state.store, pf, replace=replace)
    except (ValueError, UnicodeDecodeError) as exc:
        return _physics_page(request, f"Not imported: {exc}", 400)
    request.state.audit_rows = len(pf.points)
    return _physics_page(
        request,
        f"Physics set {set_id} for unit {pf.serial} valid from {pf.valid_from}: {outcome}. "
        "Run srdose recalc to recalculate the doses with it.",
    )


# --- admin ------------------------------------------------------------------------


def _admin_page(request: Request, message: str = "", status: int = 200) -> Response:
    store, settings = request.app.state.store, request.app.state.settings
    try:
        page = max(1, int(request.query_params.get("page", "1") or 1))
    except ValueError:
        page = 1
    size = 100
    entries = q.audit_page(
        store,
        (page - 1) * size,
        size,
        who=request.query_params.get("who") or None,
        action=request.query_params.get("action") or None,
    )
    users = web_users.list_users(store)
    request.state.audit_rows = len(entries)
    shown = {k: v for k, v in settings.values.items() if k != "site_secret"}
    return render(
        request,
        "web/admin.html",
        {
            "users": users,
            "roles": ROLES,
            "entries": entries,
            "page": page,
            "more": len(entries) == size,
            "who": request.query_params.get("who", ""),
            "action": request.query_params.get("action", ""),
            "settings_text": json.dumps(shown, indent=1, default=str, sort_keys=False),
            "config_source": str(settings.source) if settings.source else "defaults and environment",
            "defaults": DEFAULTS,
            "message": message,
            "now": web_users.now(),
        },
        status_code=status,
    )


@require("admin")
def admin(request: Request) -> Response:
    return _admin_page(request)


@require("admin")
def admin_users(request: Request) -> Response:
    """One change to one user: add, role, disable, enable, password."""
    store = request.app.state.store
    form = request.state.form
    action = str(form.get("action", ""))
    name = str(form.get("username", "")).strip()
    request.state.audit_action = f"web:user-{action}"[:64]
    try:
        if action == "add":
            problem = check_user_name(name) or check_password_rules(str(form.get("password", "")))
            if problem:
                return _admin_page(request, problem, 400)
            web_users.add_user(store, name, str(form.get("role", "")), hash_password(str(form.get("password", ""))))
        elif action == "role":
            web_users.set_role(store, name, str(form.get("role", "")))
        elif action in ("disable", "enable"):
            if action == "disable" and name == request.state.user.name:
                return _admin_page(request, "You cannot disable yourself.", 400)
            web_users.set_disabled(store, name, action == "disable")
        elif action == "password":
            problem = check_password_rules(str(form.get("password", "")))
            if problem:
                return _admin_page(request, problem, 400)
            web_users.set_password_hash(store, name, hash_password(str(form.get("password", ""))))
        else:
            return _admin_page(request, "Unknown change.", 400)
    except ValueError as exc:
        return _admin_page(request, str(exc), 400)
    return RedirectResponse(f"{root(request)}/admin", status_code=303)


def routes() -> list[BaseRoute]:
    return [
        Route("/reports", reports, methods=["GET"]),
        Route("/reports", run_report, methods=["POST"]),
        Route("/reports/files/{path:path}", report_file, methods=["GET"]),
        Route("/physics", physics, methods=["GET"]),
        Route("/physics", physics_import, methods=["POST"]),
        Route("/admin", admin, methods=["GET"]),
        Route("/admin/users", admin_users, methods=["POST"]),
    ]
