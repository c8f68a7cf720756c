"""``srdose demo``: the whole pipeline on this machine, in a folder of its own."""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import click

from srdose import demo as D
from srdose.cli.context import EXIT_FAILED, Context, console, fail, out, progress_bar
from srdose.config import Settings
from srdose.files import private_file
from srdose.store import DoseStore, web_users
from srdose.web.auth import hash_password

DEMO_USER = "demo"


def sample_data_dir() -> Path:
    """The repository's sample_data/ (present in a source checkout)."""
    return Path(__file__).resolve().parents[2] / "sample_data"


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("srdose-demo"),
    show_default=True,
    help="Where the demo keeps its own database, secret and spool (not your real ones).",
)
@click.option(
    "--reports",
    "reports_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reports"),
    show_default=True,
    help="Where the three reports are written.",
)
@click.option(
    "--no-serve",
    is_flag=True,
    help="Do not start the web application over the demo's data at the end.",
)
@click.pass_obj
def demo(obj: Context, data_dir: Path, reports_dir: Path, no_serve: bool) -> None:
    """Run the whole pipeline on this machine, in a folder of its own.

    Takes sample_data/ (in a source checkout) plus synthetic RDSRs of a few
    units, starts `srdose listen` on a free loopback port with the demo's own
    data directory, sends the files with a real C-STORE client, waits until
    they are ingested, loads the example physics data, recalculates the MGD
    and writes the survey, DRL and QA reports into --reports, printing their
    paths. Then it starts `srdose serve` on a free loopback port over the demo's data, as a
    detached process (pid file and log in the data directory), with a login `demo` (physicist)
    whose password is in DATA_DIR/demo-login.txt, and prints the URL and how to stop it.
    Exit 1 when something was left out (see the messages).
    """
    source = sample_data_dir()
    sample: Path | None = source if any(source.rglob("*.dcm")) else None
    try:
        code = D.run(obj.settings, data_dir, reports_dir, sample, console, out, progress_bar)
        if not no_serve:
            start_web(obj, data_dir.resolve(), reports_dir.resolve())
    except (RuntimeError, TimeoutError, OSError) as exc:
        fail(f"demo could not run: {exc}", EXIT_FAILED)
    sys.exit(code)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_login(settings: Settings, data_dir: Path) -> tuple[str, str, Path]:
    """The demo's login (user ``demo``, physicist) with a new random password, written to
    DATA_DIR/demo-login.txt (mode 0600): (user, password, that file)."""
    password = secrets.token_urlsafe(15)
    store = DoseStore(settings.database_url)
    try:
        if web_users.get_user(store, DEMO_USER) is None:
            web_users.add_user(store, DEMO_USER, "physicist", hash_password(password))
        else:
            web_users.set_password_hash(store, DEMO_USER, hash_password(password))
            web_users.set_disabled(store, DEMO_USER, False)
    finally:
        store.close()
    path = data_dir / "demo-login.txt"
    with private_file(path, "w", encoding="utf-8") as fh:
        fh.write(f"user: {DEMO_USER}\npassword: {password}\n")
    return DEMO_USER, password, path


def start_web(obj: Context, data_dir: Path, reports_dir: Path) -> None:
    """`srdose serve` over the demo's data on a free loopback port, detached from this process."""
    settings = D.demo_settings(obj.settings, data_dir)
    user, _password, login_file = demo_login(settings, data_dir)
    port = _free_port()
    demo = D.Demo(settings, obj.settings.source, data_dir, console, out, progress_bar)
    env = {**D.listener_env(demo), "SRDOSE_WEB__REPORTS_DIR": str(reports_dir), "SRDOSE_WEB__ROOT_PATH": ""}
    log, pid_file = data_dir / "serve.log", data_dir / "serve.pid"
    with open(log, "ab") as log_fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "srdose", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives the demo, and a Ctrl-C in this terminal
        )
    pid_file.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"srdose serve exited with {proc.returncode} (see {log})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"srdose serve not listening on 127.0.0.1:{port} after 60 s (see {log})") from None
            time.sleep(0.2)
    out.print(f"web application: http://127.0.0.1:{port}/", highlight=False)
    out.print(f"login: {user}, password in {login_file}", highlight=False)
    out.print(f"stop it with: kill $(cat {pid_file})", highlight=False)
