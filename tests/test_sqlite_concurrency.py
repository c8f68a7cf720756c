"""SQLite under concurrent use: the web application's reads neither wait for nor block a writer.

A real SQLite file, real threads, the real web application (its store, and HTTP through Starlette's
TestClient). Waits are bounded by thread joins with a timeout far above the work's own time and far
below SQLite's 60 s busy timeout, so a read that queued behind the writer shows as a thread that has
not finished; nothing asserts how long anything took.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select, text
from starlette.testclient import TestClient

from srdose.config import Settings
from srdose.config import load as load_settings
from srdose.parse import read_bytes
from srdose.pseudonym import Pseudonymiser
from srdose.store import DoseStore, web_users
from srdose.store import models as M
from srdose.store import web as W
from srdose.web.app import create_app
from srdose.web.auth import hash_password
from tests import builders as B

PASSWORD = "correct horse battery"
#: long enough for any read here on a loaded machine, well short of the 60 s busy timeout
BOUND_SECONDS = 30


def _settings(tmp: Path) -> Settings:
    base = load_settings(None, environ={"SRDOSE_DATA_DIR": str(tmp / "data")})
    return Settings(json.loads(json.dumps(base.values)))


def _add_report(store: DoseStore, conn, i: int) -> None:
    store.add(conn, read_bytes(B.to_bytes(B.rdsr())), f"{i:064x}", "test")


@pytest.fixture
def world(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    writer = DoseStore(url, Pseudonymiser(b"0" * 64))  # as the listener's process has it
    with writer.begin() as conn:
        for i in range(5):
            _add_report(writer, conn, i)
    web_users.add_user(writer, "vera", "viewer", hash_password(PASSWORD))
    app = create_app(_settings(tmp_path), url)
    yield {"url": url, "path": tmp_path / "db.sqlite", "writer": writer, "app": app}
    app.state.store.close()
    writer.close()


def _in_thread(work) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run():
        try:
            out["value"] = work()
        except BaseException as exc:  # reported by the test, not lost in the thread
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _page_reads(store) -> tuple[int, int]:
    """What the overview and the event list read."""
    W.overview(store, dt.date.today(), seconds=60)
    listed = W.event_list(store, W.EventFilter(), 1, 50)
    return W.event_count(store, W.EventFilter()), len(listed.rows)


def test_a_read_completes_while_a_writer_holds_its_transaction_open(world):
    writer, store = world["writer"], world["app"].state.store
    before = _page_reads(store)
    conn = writer.write_engine.connect()
    conn.begin()  # BEGIN IMMEDIATE: the write lock, held until the rollback below
    try:
        _add_report(writer, conn, 99)
        thread, out = _in_thread(lambda: (_page_reads(store), web_users.get_user(store, "vera")))
        thread.join(BOUND_SECONDS)
        assert not thread.is_alive(), "the read waited for the writer's transaction"
    finally:
        conn.rollback()
        conn.close()
    thread.join(BOUND_SECONDS)
    assert "error" not in out, out.get("error")
    counts, user = out["value"]
    assert counts == before  # its own snapshot: nothing of the uncommitted report
    assert user is not None and user.name == "vera"


def test_writes_still_take_the_write_lock_at_begin(world):
    """A writing transaction holds the lock from its BEGIN, before it has written anything, so it
    never has to upgrade a read lock (which fails at once when another writer committed between)."""
    store = world["app"].state.store
    other = sqlite3.connect(world["path"], timeout=0, isolation_level=None)
    try:
        with store.begin() as conn:
            conn.execute(select(func.count()).select_from(M.Event)).scalar_one()
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")  # free again once it has committed
        other.execute("ROLLBACK")
    finally:
        other.close()


def test_a_write_through_the_read_path_is_refused(world):
    store = world["app"].state.store
    with pytest.raises(sa_exc.OperationalError, match="readonly"):
        with store.engine.connect() as conn:
            conn.execute(text("DELETE FROM web_sessions"))


def _signed_in(app) -> TestClient:
    client = TestClient(app)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    r = client.post(
        "/login", data={"username": "vera", "password": PASSWORD, "csrf_token": token}, follow_redirects=False
    )
    assert r.status_code == 303, r.text
    return client


def test_concurrent_readers_all_succeed_while_a_writer_commits_in_a_loop(world):
    app, writer = world["app"], world["writer"]
    store = app.state.store
    clients = [_signed_in(app) for _ in range(4)]
    first = _page_reads(store)[0]
    stop = threading.Event()
    committed = []

    def write_loop():
        i = 1000
        while not stop.is_set():
            with writer.begin() as conn:
                _add_report(writer, conn, i)
            committed.append(i)
            i += 1
        return len(committed)

    def read_loop(client: TestClient):
        seen = []
        for _ in range(4):
            for path in ("/", "/events"):
                r = client.get(path)
                assert r.status_code == 200, (path, r.status_code)
            seen.append(_page_reads(store)[0])
        return seen

    writing, wrote = _in_thread(write_loop)
    readers = [_in_thread(lambda c=c: read_loop(c)) for c in clients]
    for thread, _ in readers:
        thread.join(4 * BOUND_SECONDS)
    stop.set()
    writing.join(BOUND_SECONDS)
    assert not writing.is_alive() and "error" not in wrote, wrote.get("error")
    assert wrote["value"] > 0
    for thread, out in readers:
        assert not thread.is_alive()
        assert "error" not in out, out.get("error")
        seen = out["value"]
        assert len(seen) == 4 and seen == sorted(seen)  # committed reports only ever add events
    per_report = first // 5
    assert _page_reads(store)[0] == first + per_report * len(committed)  # every commit seen, none lost
