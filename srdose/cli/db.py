"""``srdose db upgrade|current``: the database schema (Alembic migrations)."""

from __future__ import annotations

import click

from srdose.cli.context import Context, console, fail, out
from srdose.store.database import (
    current_revision,
    head_revision,
    make_engine,
    safe_url,
    upgrade,
)


@click.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.pass_obj
def db_upgrade(obj: Context, revision: str) -> None:
    """Create the schema or bring it up to date."""
    engine = make_engine(obj.db_url)
    try:
        upgrade(engine, revision)
        console.print(f"{safe_url(obj.db_url)} is at revision {current_revision(engine)}")
    except Exception as exc:
        fail(f"upgrade failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    finally:
        engine.dispose()


@db.command("current")
@click.pass_obj
def db_current(obj: Context) -> None:
    """Print the schema revision of the database and the newest one srdose knows."""
    engine = make_engine(obj.db_url)
    try:
        out.print(f"database: {current_revision(engine) or '(empty)'}  srdose: {head_revision()}")
    finally:
        engine.dispose()
