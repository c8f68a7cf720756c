"""Logins and sessions of the web application: the SQL side.

Passwords arrive here already hashed (the web layer owns argon2); session tokens only as their
SHA-256. Times are naive UTC, as everywhere in the store.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update

from srdose.store import models as M

ROLES = ("viewer", "physicist", "admin")


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    password_hash: str
    disabled: bool
    failed_attempts: int
    locked_until: dt.datetime | None
    created_at: dt.datetime
    last_login: dt.datetime | None


_USER_COLUMNS = tuple(M.WebUser.__table__.columns)


def _user(row: Any) -> User:
    return User(
        id=row.id,
        name=row.name,
        role=row.role,
        password_hash=row.password_hash,
        disabled=bool(row.disabled),
        failed_attempts=row.failed_attempts or 0,
        locked_until=row.locked_until,
        created_at=row.created_at,
        last_login=row.last_login,
    )


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")


def add_user(store, name: str, role: str, password_hash: str) -> User:
    """A new user; ValueError when the name is taken or the role unknown."""
    _check_role(role)
    if get_user(store, name) is not None:
        raise ValueError(f"user {name!r} exists already")
    with store.begin() as conn:
        conn.execute(
            insert(M.WebUser).values(
                name=name, role=role, password_hash=password_hash, disabled=False, failed_attempts=0, created_at=now()
            )
        )
    user = get_user(store, name)
    assert user is not None
    return user


def get_user(store, name: str) -> User | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(*_USER_COLUMNS).where(M.WebUser.name == name)).first()
    return _user(row) if row else None


def get_user_by_id(store, user_id: int) -> User | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(*_USER_COLUMNS).where(M.WebUser.id == user_id)).first()
    return _user(row) if row else None


def list_users(store) -> list[User]:
    with store.engine.connect() as conn:
        return [_user(r) for r in conn.execute(select(*_USER_COLUMNS).order_by(M.WebUser.name))]


def _update(store, name: str, **values) -> None:
    with store.begin() as conn:
        n = conn.execute(update(M.WebUser).where(M.WebUser.name == name).values(**values)).rowcount
    if not n:
        raise ValueError(f"no user {name!r}")


def set_disabled(store, name: str, disabled: bool = True) -> None:
    """Disable (or enable) a user; disabling ends their sessions."""
    _update(store, name, disabled=disabled)
    if disabled:
        end_sessions_of(store, name)


def set_role(store, name: str, role: str) -> None:
    _check_role(role)
    _update(store, name, role=role)


def set_password_hash(store, name: str, password_hash: str) -> None:
    """A new password: unlocks the account and ends its sessions."""
    _update(store, name, password_hash=password_hash, failed_attempts=0, locked_until=None)
    end_sessions_of(store, name)


def record_failure(store, name: str, max_failed: int, lockout: dt.timedelta) -> User | None:
    """Count a wrong password; at ``max_failed`` in a row the account is locked for ``lockout``."""
    with store.begin() as conn:
        row = conn.execute(select(*_USER_COLUMNS).where(M.WebUser.name == name)).first()
        if not row:
            return None
        failed = (row.failed_attempts or 0) + 1
        values: dict = {"failed_attempts": failed}
        if failed >= max_failed:
            values = {"failed_attempts": 0, "locked_until": now() + lockout}
        conn.execute(update(M.WebUser).where(M.WebUser.name == name).values(**values))
    return get_user(store, name)


def record_success(store, name: str) -> None:
    _update(store, name, failed_attempts=0, locked_until=None, last_login=now())


# --- sessions ------------------------------------------------------------------


def create_session(store, user_id: int, token_sha256: str, csrf_token: str, lifetime: dt.timedelta) -> None:
    t = now()
    with store.begin() as conn:
        conn.execute(delete(M.WebSession).where(M.WebSession.expires_at < t))
        conn.execute(
            insert(M.WebSession).values(
                token_sha256=token_sha256, user_id=user_id, csrf_token=csrf_token, created_at=t, expires_at=t + lifetime
            )
        )


def session_user(store, token_sha256: str, lifetime: dt.timedelta) -> tuple[User, str] | None:
    """The (enabled) user of a live session and its CSRF token; the session's expiry slides on."""
    t = now()
    S, U = M.WebSession, M.WebUser
    with store.engine.connect() as conn:
        row = conn.execute(
            select(S.csrf_token.label("session_csrf"), S.expires_at, *_USER_COLUMNS)
            .join(U, U.id == S.user_id)
            .where(S.token_sha256 == token_sha256)
        ).first()
    if row is None or row.expires_at < t or row.disabled:
        return None
    # write the new expiry only now and then: every request writing would serialise readers on SQLite
    if row.expires_at - t < lifetime - dt.timedelta(minutes=1):
        with store.begin() as conn:
            conn.execute(update(S).where(S.token_sha256 == token_sha256).values(expires_at=t + lifetime))
    return _user(row), row.session_csrf


def end_session(store, token_sha256: str) -> None:
    with store.begin() as conn:
        conn.execute(delete(M.WebSession).where(M.WebSession.token_sha256 == token_sha256))


def end_sessions_of(store, name: str) -> None:
    ids = select(M.WebUser.id).where(M.WebUser.name == name).scalar_subquery()
    with store.begin() as conn:
        conn.execute(delete(M.WebSession).where(M.WebSession.user_id == ids))
