"""Rendering pages: the package's Jinja templates (``srdose/templates/web/``), escaped throughout.

``render(request, "web/x.html", context)`` gives every template ``user`` (or None), ``csrf_token``
(for the hidden form field), ``root`` (the path prefix behind a reverse proxy: write links as
``{{ root }}/events``), ``nav`` (the bar's links for the user's role) and ``has_role(role)``.
"""

from __future__ import annotations

import math
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from srdose.store.web_users import ROLES

_RANK = {role: i for i, role in enumerate(ROLES)}

#: The navigation bar: (path, label, lowest role).
NAV = (
    ("/", "Overview", "viewer"),
    ("/events", "Events", "viewer"),
    ("/reports", "Reports", "physicist"),
    ("/alerts", "Alerts", "viewer"),
    ("/physics", "Physics", "physicist"),
    ("/curation", "Curation", "physicist"),
    ("/admin", "Admin", "admin"),
)


def _num(value: Any, digits: int = 2) -> str:
    """A number for a table cell: empty for None/NaN, fixed decimals otherwise."""
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        return f"{value:.{digits}f}"
    return str(value)


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("srdose", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    return env


ENV = _environment()


def root(request: Request) -> str:
    """The path prefix the application is served under ('' at the top of the host)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def has_role(user: Any, role: str) -> bool:
    return user is not None and _RANK.get(user.role, -1) >= _RANK[role]


def render(request: Request, name: str, context: dict | None = None, status_code: int = 200) -> Response:
    user = getattr(request.state, "user", None)
    ctx = {
        "request": request,
        "user": user,
        "csrf_token": getattr(request.state, "csrf_token", ""),
        "root": root(request),
        "nav": [(path, label) for path, label, role in NAV if has_role(user, role)],
        "has_role": lambda role: has_role(user, role),
        "path": request.url.path,
    }
    ctx.update(context or {})
    return HTMLResponse(ENV.get_template(name).render(ctx), status_code=status_code)
