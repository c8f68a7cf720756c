"""The application: ``create_app(settings, db_url)`` -> a Starlette app over one database.

Routes: ``/login``, ``/logout`` (POST), the pages of :mod:`srdose.web.pages` and
:mod:`srdose.web.manage`, ``/alerts`` (:mod:`srdose.web.alerts_page`),
``/curation`` (:mod:`srdose.web.curation_page`), static files at ``/static/``.
Behind a reverse proxy: ``[web] root_path`` is the prefix the proxy serves the app under (with or
without stripping it), and ``[web] trust_proxy`` lets X-Forwarded-Proto/-For through.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from srdose.config import Settings
from srdose.store import DoseStore, web_users
from srdose.store.governance import record_audit
from srdose.web import alerting, alerts_page, curation_page, manage, pages
from srdose.web.auth import (
    LOGIN_CSRF_COOKIE,
    audit,
    csrf_ok,
    dummy_hash,
    end_session,
    error_page,
    require,
    session_of,
    start_session,
    verify_password,
)
from srdose.web.render import render, root

STATIC_DIR = Path(__file__).parent / "static"

# what a page may load: its own scripts, styles and images only; no inline script, no framing
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class Frontdoor:
    """Proxy headers (only when trusted), the root path, and the security headers on every answer."""

    def __init__(self, app: ASGIApp, root_path: str, trust_proxy: bool):
        self.app = app
        self.root_path = root_path.rstrip("/")
        self.trust_proxy = trust_proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = dict(scope)
        if self.trust_proxy:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
            if proto in ("http", "https"):
                scope["scheme"] = proto
            client = headers.get("x-forwarded-for", "").split(",")[0].strip()
            if client:
                scope["client"] = (client, 0)
        if self.root_path:
            scope["root_path"] = self.root_path
            # a proxy may pass the prefix on or strip it; routing wants it in the path
            if not (scope["path"] == self.root_path or scope["path"].startswith(self.root_path + "/")):
                scope["path"] = self.root_path + scope["path"]
        is_static = scope["path"].startswith(self.root_path + "/static/")
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                extra = {
                    b"content-security-policy": CSP.encode(),
                    b"x-frame-options": b"DENY",
                    b"x-content-type-options": b"nosniff",
                    b"referrer-policy": b"same-origin",
                }
                if not is_static:
                    # pages and downloads hold data: no copy in any cache
                    extra[b"cache-control"] = b"no-store"
                if https:
                    extra[b"strict-transport-security"] = b"max-age=31536000"
                have = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in extra.items() if k not in have or k == b"cache-control"]
                if not is_static:
                    headers = [(k, v) for k, v in headers if not (k.lower() == b"cache-control" and v != b"no-store")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never another host (an open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def login_page(request: Request) -> Response:
    if session_of(request) is not None:
        return RedirectResponse(f"{root(request)}/", status_code=303)
    return _login_form(request, "", request.query_params.get("next", "/"))


def _login_form(request: Request, message: str, next_path: str, status_code: int = 200) -> Response:
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "web/login.html",
        {"login_csrf": token, "message": message, "next": _safe_next(next_path)},
        status_code=status_code,
    )
    # double-submit: the form's token must equal this cookie's, which another site cannot read or set
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        path=root(request) + "/login",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    audit(request, "web:view", "web:-", None, {"status": status_code})
    return response


async def login_submit(request: Request) -> Response:
    form = await request.form()
    request.state.form = form
    return await run_in_threadpool(login_check, request)


def login_check(request: Request) -> Response:
    form = request.state.form
    store, web = request.app.state.store, request.app.state.settings.web
    name = str(form.get("username", ""))[:64]
    password = str(form.get("password", ""))
    next_path = str(form.get("next", "/"))
    if not csrf_ok(request.cookies.get(LOGIN_CSRF_COOKIE, ""), form.get("csrf_token")):
        audit(request, "web:csrf-refused", f"web:{name}" if name else "web:-", None, {"form": "login"})
        return error_page(request, 403, "The sign-in form had expired or did not come from this site. Try again.")
    user = web_users.get_user(store, name) if name else None
    now = web_users.now()
    if user is not None and user.locked_until is not None and user.locked_until > now:
        audit(request, "web:login-refused", f"web:{name}", None, {"why": "locked"})
        minutes = max(1, int((user.locked_until - now).total_seconds() // 60) + 1)
        return _login_form(
            request, f"Too many failed sign-ins: this account is locked for {minutes} more minutes.", next_path, 403
        )
    if user is None or user.disabled:
        verify_password(dummy_hash(), password)  # as long as a real check
        audit(request, "web:login-failed", f"web:{name}" if name else "web:-", None, {"why": "unknown or disabled"})
        return _login_form(request, "Wrong user name or password.", next_path, 401)
    if not verify_password(user.password_hash, password):
        after = web_users.record_failure(store, name, web.max_failed_logins, dt.timedelta(minutes=web.lockout_minutes))
        locked = after is not None and after.locked_until is not None and after.locked_until > now
        audit(request, "web:login-failed", f"web:{name}", None, {"why": "password", "locked": locked})
        return _login_form(request, "Wrong user name or password.", next_path, 401)
    web_users.record_success(store, name)
    response = RedirectResponse(root(request) + _safe_next(next_path), status_code=303)
    start_session(request, response, user)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=root(request) + "/login")
    audit(request, "web:login", f"web:{name}", None, None)
    return response


@require("viewer")
def logout(request: Request) -> Response:
    response = RedirectResponse(f"{root(request)}/login", status_code=303)
    end_session(request, response)
    return response


def routes() -> list[BaseRoute]:
    return [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login_submit, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        *pages.routes(),
        *manage.routes(),
        *alerts_page.routes(),
        *curation_page.routes(),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]


def create_app(settings: Settings, db_url: str) -> Starlette:
    """The web application over the database at ``db_url`` (brought to the current schema)."""
    # pages read through store.engine without SQLite's write lock, so concurrent requests (and
    # the listener) do not queue behind one another; the session, audit and alert writes go
    # through store.begin(), each a short transaction of its own
    store = DoseStore(
        db_url, None, age_resolution_years=settings.governance.site_age_resolution_years, concurrent_reads=True
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        evaluator = alerting.start_evaluator(store, settings)  # the alert rules, every [alerts] evaluate_minutes
        yield
        evaluator.stop()
        store.close()

    app = Starlette(routes=routes(), lifespan=lifespan)
    app.state.settings = settings
    app.state.store = store
    app.state.db_url = db_url
    record_audit(store, "web:start", "web:-", {"root_path": settings.web.root_path})
    app.add_middleware(Frontdoor, root_path=settings.web.root_path, trust_proxy=settings.web.trust_proxy)
    return app
