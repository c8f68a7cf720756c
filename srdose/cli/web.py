"""``srdose serve`` (the web application) and ``srdose users`` (its logins)."""

from __future__ import annotations

import getpass
import ssl
from pathlib import Path

import click
import uvicorn

from srdose.cli.context import EXIT_USAGE, Context, console, fail, out
from srdose.store import web_users
from srdose.store.governance import record_audit
from srdose.terminal import esc
from srdose.web.app import create_app
from srdose.web.auth import check_password_rules, check_user_name, hash_password


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--tls-cert", type=click.Path(dir_okay=False), help="PEM certificate (chain): serve HTTPS.")
@click.option("--tls-key", type=click.Path(dir_okay=False), help="PEM private key of --tls-cert.")
@click.pass_obj
def serve(obj: Context, host: str, port: int, tls_cert: str | None, tls_key: str | None) -> None:
    """Serve the web application: overview, events, studies, units, reports, alerts, physics, admin.

    Create a login first with `srdose users add NAME --role admin`. Behind a reverse proxy set
    [web] root_path and trust_proxy.
    """
    if bool(tls_cert) != bool(tls_key):
        fail("--tls-cert and --tls-key go together", EXIT_USAGE)
    for name, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key)):
        if path and not Path(path).is_file():
            fail(f"{name} {path} does not exist", EXIT_USAGE)
    if tls_cert and tls_key:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(tls_cert, tls_key)
        except (ssl.SSLError, OSError) as exc:
            fail(f"cannot use --tls-cert/--tls-key: {exc}", EXIT_USAGE)
    obj.store(write=False)  # a clear message if the database cannot be opened
    app = create_app(obj.settings, obj.db_url)
    scheme = "https" if tls_cert else "http"
    shown = f"[{host}]" if ":" in host else host
    console.print(f"srdose web application on {scheme}://{esc(shown)}:{port}{esc(obj.settings.web.root_path)}/")
    if not web_users.list_users(app.state.store):
        console.print("[yellow]no users yet:[/] create one with `srdose users add NAME --role admin`")
    uvicorn.run(
        app,
        host=host,
        port=port,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
        # the app reads X-Forwarded-* itself, only when [web] trust_proxy says so
        proxy_headers=False,
        server_header=False,
        log_level="warning",
    )


@click.group()
def users() -> None:
    """Logins of the web application (roles: viewer, physicist, admin)."""


def _password(password_file: str | None) -> str:
    if password_file:
        try:
            lines = Path(password_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read --password-file: {exc}", EXIT_USAGE)
        password = lines[0] if lines else ""
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            fail("the two passwords differ", EXIT_USAGE)
    problem = check_password_rules(password)
    if problem:
        fail(problem, EXIT_USAGE)
    return password


def _who() -> str:
    return f"cli:{getpass.getuser()}"


@users.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(web_users.ROLES), help="What the user may do.")
@click.option("--password-file", type=click.Path(dir_okay=False), help="First line: the password (else prompted).")
@click.pass_obj
def users_add(obj: Context, name: str, role: str, password_file: str | None) -> None:
    """Add a user NAME with a role."""
    problem = check_user_name(name)
    if problem:
        fail(problem, EXIT_USAGE)
    store = obj.store(write=False)
    if web_users.get_user(store, name) is not None:
        fail(f"user {name!r} exists already (srdose users passwd {name} to change the password)", EXIT_USAGE)
    web_users.add_user(store, name, role, hash_password(_password(password_file)))
    record_audit(store, "users.add", _who(), {"name": name, "role": role})
    out.print(f"user {esc(name)} added ({role})")


@users.command("list")
@click.pass_obj
def users_list(obj: Context) -> None:
    """The users, their roles and state."""
    now = web_users.now()
    for u in web_users.list_users(obj.store(write=False)):
        state = "disabled" if u.disabled else ("locked" if u.locked_until and u.locked_until > now else "active")
        last = u.last_login.strftime("%Y-%m-%d %H:%M") if u.last_login else "never"
        # tab-separated, for scripts; names hold only letters, digits and . _ - @
        click.echo(f"{esc(u.name)}\t{u.role}\t{state}\tlast sign-in {last}")


def _existing(store, name: str) -> None:
    if web_users.get_user(store, name) is None:
        fail(f"no user {name!r}", EXIT_USAGE)


@users.command("disable")
@click.argument("name")
@click.pass_obj
def users_disable(obj: Context, name: str) -> None:
    """Disable user NAME (their sessions end at once)."""
    store = obj.store(write=False)
    _existing(store, name)
    web_users.set_disabled(store, name, True)
    record_audit(store, "users.disable", _who(), {"name": name})
    out.print(f"user {esc(name)} disabled")


@users.command("passwd")
@click.argument("name")
@click.option("--password-file", type=click.Path(dir_okay=False), help="First line: the password (else prompted).")
@click.pass_obj
def users_passwd(obj: Context, name: str, password_file: str | None) -> None:
    """Set user NAME's password (unlocks the account, ends its sessions)."""
    store = obj.store(write=False)
    _existing(store, name)
    web_users.set_password_hash(store, name, hash_password(_password(password_file)))
    record_audit(store, "users.passwd", _who(), {"name": name})
    out.print(f"password of {esc(name)} changed")
