"""Access to the web application: passwords, sessions, CSRF, roles, and the audit of every response.

An endpoint is wrapped by :func:`require`::

    @require("physicist")
    def reports_page(request: Request) -> Response:
        form = request.state.form          # POST: the parsed form, CSRF already checked
        user = request.state.user          # srdose.store.web_users.User
        request.state.audit_rows = 12      # optional: rows shown or written, for the audit trail
        request.state.audit_action = "web:download"   # optional; default web:view / web:change
        return render(request, "web/reports.html", {...})

Endpoints may be plain functions (run in the thread pool) or coroutines. Not signed in: a page
redirects to /login (JSON endpoints answer 401); a role too low: 403. Every answer is written to
the audit trail as ``web:<username>``.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import inspect
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from srdose.store import web_users
from srdose.store.governance import record_audit
from srdose.store.web_users import ROLES, User
from srdose.web.render import render, root

SESSION_COOKIE = "srdose_session"
LOGIN_CSRF_COOKIE = "srdose_login_csrf"
RANK = {role: i for i, role in enumerate(ROLES)}
# form fields never written to the audit trail
SECRET_FIELDS = {"password", "password2", "new_password", "csrf_token"}

_hasher = PasswordHasher()


@functools.cache
def dummy_hash() -> str:
    """A hash to verify against when the user does not exist, so the answer takes as long either
    way. Made on first use: hashing at import added 0.3 s to the start of every command."""
    return _hasher.hash(secrets.token_hex(16))


Endpoint = Callable[[Request], Response | Awaitable[Response]]


def hash_password(password: str) -> str:
    """The argon2id hash of a password (argon2-cffi's current defaults)."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def check_password_rules(password: str) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < 10:
        return "a password needs at least 10 characters"
    if len(password) > 1024:
        return "a password may have at most 1024 characters"
    return None


def check_user_name(name: str) -> str | None:
    """Why a user name is refused, or None."""
    if not name or len(name) > 64 or not all(c.isalnum() or c in "._-@" for c in name):
        return "a user name is 1 to 64 letters, digits and . _ - @"
    return None


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def is_https(request: Request) -> bool:
    # the proxy middleware has set the scheme from X-Forwarded-Proto when the proxy is trusted
    return request.url.scheme == "https"


def _lifetime(request: Request) -> dt.timedelta:
    return dt.timedelta(minutes=request.app.state.settings.web.session_minutes)


def session_of(request: Request) -> tuple[User, str] | None:
    """The signed-in user and the session's CSRF token, or None."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 200:
        return None
    return web_users.session_user(request.app.state.store, token_digest(token), _lifetime(request))


def start_session(request: Request, response: Response, user: User) -> None:
    token = secrets.token_urlsafe(32)
    web_users.create_session(
        request.app.state.store, user.id, token_digest(token), secrets.token_urlsafe(32), _lifetime(request)
    )
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(_lifetime(request).total_seconds()),
        path=root(request) + "/",
        httponly=True,
        samesite="lax",
        secure=is_https(request),
    )


def end_session(request: Request, response: Response) -> None:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        web_users.end_session(request.app.state.store, token_digest(token))
    response.delete_cookie(SESSION_COOKIE, path=root(request) + "/")


def audit(request: Request, action: str, who: str, rows: int | None = None, detail: dict | None = None) -> None:
    """One audit entry for this request: path, query and the non-secret form fields."""
    params: dict[str, Any] = {"method": request.method, "path": request.url.path}
    if request.query_params:
        params["query"] = dict(request.query_params)
    form = getattr(request.state, "form", None)
    if form:
        params["form"] = {k: v for k, v in form.items() if k not in SECRET_FIELDS and isinstance(v, str)}
    record_audit(request.app.state.store, action, who, params, rows, detail)


def csrf_ok(expected: str, given: object) -> bool:
    return isinstance(given, str) and bool(given) and hmac.compare_digest(expected.encode(), given.encode())


def require(role: str) -> Callable[[Endpoint], Callable[[Request], Awaitable[Response]]]:
    """Wrap an endpoint: signed in, at least ``role``, CSRF checked on POST, audited."""
    if role not in RANK:
        raise ValueError(f"unknown role {role!r}")

    def wrap(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(endpoint)
        async def handler(request: Request) -> Response:
            found = await run_in_threadpool(session_of, request)
            if found is None:
                await run_in_threadpool(audit, request, "web:unauthenticated", "web:-", None, None)
                if request.url.path.endswith(".json") or request.method != "GET":
                    return JSONResponse({"error": "not signed in"}, status_code=401)
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"{root(request)}/login?next={quote(target)}", status_code=303)
            user, csrf = found
            request.state.user = user
            request.state.csrf_token = csrf
            who = f"web:{user.name}"
            if RANK[user.role] < RANK[role]:
                await run_in_threadpool(audit, request, "web:refused", who, None, {"needs": role})
                return await run_in_threadpool(error_page, request, 403, f"This page needs the {role} role.")
            if request.method not in ("GET", "HEAD"):
                form = await request.form()
                request.state.form = form
                if not csrf_ok(csrf, form.get("csrf_token")):
                    await run_in_threadpool(audit, request, "web:csrf-refused", who, None, None)
                    return await run_in_threadpool(
                        error_page, request, 403, "The form had expired or did not come from this site."
                    )
            if inspect.iscoroutinefunction(endpoint):
                response = await endpoint(request)
            else:
                response = await run_in_threadpool(endpoint, request)
            action = getattr(request.state, "audit_action", None) or (
                "web:view" if request.method in ("GET", "HEAD") else "web:change"
            )
            rows = getattr(request.state, "audit_rows", None)
            await run_in_threadpool(audit, request, action, who, rows, {"status": response.status_code})
            assert isinstance(response, Response)
            return response

        return handler

    return wrap


def error_page(request: Request, status: int, message: str) -> Response:
    return render(request, "web/error.html", {"status": status, "message": message}, status_code=status)
