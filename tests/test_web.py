"""The web application over HTTP: every page for every role, refused access, CSRF, wrong passwords and
lock-out, downloads equal to the filtered rows, no identifier in any answer, and the audit trail.

A real database (SQLite, then PostgreSQL) built by ingesting synthetic RDSRs (and recalculating them); the app is
driven through Starlette's TestClient (httpx over the real ASGI app), and once through a real
uvicorn server on 127.0.0.1.
"""

from __future__ import annotations

import csv
import io
import json
import re
import socket
import threading
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from srdose import synth as S
from srdose.config import Settings
from srdose.config import load as load_settings
from srdose.ingest import Ingestor
from srdose.pseudonym import Pseudonymiser
from srdose.quarantine import QuarantineFolder
from srdose.recalc.engine import Params
from srdose.recalc.run import resolve_factor_set
from srdose.recalc.run import run as recalc_run
from srdose.store import DoseStore, web_users
from srdose.store.governance import audit_entries
from srdose.web.app import create_app
from srdose.web.auth import hash_password

PASSWORD = "correct horse battery"
USERS = {"vera": "viewer", "phil": "physicist", "ada": "admin"}


def name_forms(pn: str) -> set[str]:
    parts = [p for p in pn.split("^") if p]
    forms = {pn, " ".join(parts)}
    if len(parts) >= 2:
        forms |= {f"{parts[1]} {parts[0]}", f"{parts[0]}, {parts[1]}"}
    return forms


@pytest.fixture(scope="module")
def world(tmp_path_factory, module_db_url):
    """A database of synthetic studies of two vendors, recalculated; three users; the identifiers."""
    tmp = tmp_path_factory.mktemp("web")
    src = tmp / "in"
    identifiers: set[str] = set()
    for i, vendor in enumerate(("hologic", "siemens")):
        out = src / vendor
        S.generate(vendor, 6, out, seed=70 + i, manifest=True, dbt_fraction=0.3)
        for st in json.loads((out / "manifest.json").read_text())["studies"]:
            ids = st["identifiers"]
            identifiers |= {ids["patient_id"], ids["accession_number"], ids["patient_birth_date"]}
            identifiers |= name_forms(ids["patient_name"])
            if ids.get("referring_physician"):
                identifiers |= name_forms(ids["referring_physician"])
    identifiers = {v for v in identifiers if len(v) >= 5}
    url = module_db_url
    store = DoseStore(url, Pseudonymiser(b"1" * 64))
    summary = Ingestor(store, QuarantineFolder(tmp / "quarantine"), batch_size=50).ingest_paths([src])
    assert summary.n_quarantined == 0
    settings = _settings(tmp)
    recalc_run(store, resolve_factor_set(store, "bundled"), Params.from_settings(settings.recalc))
    for name, role in USERS.items():
        web_users.add_user(store, name, role, hash_password(PASSWORD))
    store.close()
    return {"url": url, "identifiers": identifiers, "tmp": tmp, "settings": settings}


def _settings(tmp: Path, **web) -> Settings:
    base = load_settings(None, environ={"SRDOSE_DATA_DIR": str(tmp / "data")})
    values = json.loads(json.dumps(base.values))
    values["web"].update(web)
    return Settings(values)


@pytest.fixture(scope="module")
def app(world):
    return create_app(world["settings"], world["url"])


def login(client: TestClient, name: str, password: str = PASSWORD, follow: bool = False):
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return client.post(
        "/login", data={"username": name, "password": password, "csrf_token": token}, follow_redirects=follow
    )


def signed_in(app, name: str) -> TestClient:
    client = TestClient(app)
    r = login(client, name)
    assert r.status_code == 303, r.text
    return client


def csrf_of(page_text: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page_text).group(1)


def first_serial_and_study(client: TestClient) -> tuple[str, int]:
    page = client.get("/events").text
    serial = re.search(r'href="/units/([^"]+)"', page).group(1)
    study = int(re.search(r'href="/studies/(\d+)"', page).group(1))
    return serial, study


PAGES_BY_ROLE = {
    "/": "viewer",
    "/events": "viewer",
    "/alerts": "viewer",
    "/reports": "physicist",
    "/physics": "physicist",
    "/admin": "admin",
}
RANK = {"viewer": 0, "physicist": 1, "admin": 2}


def test_every_page_for_every_role_and_refusals(app):
    anonymous = TestClient(app)
    for path in [*PAGES_BY_ROLE, "/studies/1", "/units/X"]:
        r = anonymous.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path
    assert anonymous.get("/units/X/charts.json").status_code == 401
    for name, role in USERS.items():
        client = signed_in(app, name)
        serial, study = first_serial_and_study(client)
        for path, needs in PAGES_BY_ROLE.items():
            r = client.get(path)
            expected = 200 if RANK[role] >= RANK[needs] else 403
            assert r.status_code == expected, (name, path, r.status_code)
            assert r.headers["cache-control"] == "no-store"
            assert "script-src 'self'" in r.headers["content-security-policy"]
            assert r.headers["x-frame-options"] == "DENY"
        assert client.get(f"/studies/{study}").status_code == 200
        unit = client.get(f"/units/{serial}")
        assert unit.status_code == 200
        for canvas in ("chart-mgd", "chart-ratio", "chart-kv", "chart-force", "chart-monthly"):
            assert f'<canvas id="{canvas}"' in unit.text
        assert client.get(f"/units/{serial}/charts.json").status_code == 200
        assert client.get("/studies/999999").status_code == 404
        assert client.get("/units/NO-SUCH-UNIT").status_code == 404


def test_login_sets_a_safe_session_cookie_and_logout_ends_it(app):
    client = TestClient(app)
    r = login(client, "vera")
    cookie = r.headers["set-cookie"]
    assert "srdose_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert "Secure" not in cookie  # plain http on loopback
    page = client.get("/")
    assert page.status_code == 200 and "vera" in page.text
    assert client.post("/logout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False).status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 303


def test_secure_cookie_behind_a_trusted_https_proxy_only(world):
    trusted = create_app(_settings(world["tmp"], trust_proxy=True), world["url"])
    untrusted = create_app(_settings(world["tmp"], trust_proxy=False), world["url"])
    for app, secure in ((trusted, True), (untrusted, False)):
        client = TestClient(app, headers={"X-Forwarded-Proto": "https"})
        r = client.get("/login")
        assert ("Secure" in r.headers["set-cookie"]) is secure
        assert ("strict-transport-security" in r.headers) is secure
    # served over https: the session cookie is Secure too
    r = login(TestClient(untrusted, base_url="https://testserver"), "vera")
    assert r.status_code == 303 and "Secure" in r.headers["set-cookie"]


def test_csrf_refused_without_or_with_a_wrong_token(app):
    client = signed_in(app, "ada")
    for data in ({}, {"csrf_token": "wrong"}):
        r = client.post("/admin/users", data={**data, "action": "add", "username": "mallory", "role": "admin"})
        assert r.status_code == 403
    assert web_users.get_user(app.state.store, "mallory") is None
    # the login form: the double-submit cookie must match the form's token
    fresh = TestClient(app)
    fresh.get("/login")
    r = fresh.post("/login", data={"username": "vera", "password": PASSWORD, "csrf_token": "forged"})
    assert r.status_code == 403


def test_wrong_password_then_lock_out_refuses_even_the_right_password(world):
    app = create_app(_settings(world["tmp"], max_failed_logins=3, lockout_minutes=15), world["url"])
    store = app.state.store
    web_users.add_user(store, "lock", "viewer", hash_password(PASSWORD))
    client = TestClient(app)
    r = login(client, "lock", "wrong password")
    assert r.status_code == 401 and "Wrong user name or password" in r.text
    assert login(client, "nobody", PASSWORD).status_code == 401
    for _ in range(2):
        login(client, "lock", "wrong password")
    r = login(client, "lock", PASSWORD)
    assert r.status_code == 403 and "locked" in r.text
    assert "srdose_session" not in r.headers.get("set-cookie", "")
    assert client.get("/", follow_redirects=False).status_code == 303
    # an administrator's new password unlocks it
    web_users.set_password_hash(store, "lock", hash_password(PASSWORD + "!"))
    assert login(client, "lock", PASSWORD + "!").status_code == 303


def _csv_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_filters_paging_and_downloads_equal_the_filtered_rows(app):
    client = signed_in(app, "vera")
    everything = _csv_rows(client.get("/events?format=csv").text)
    assert len(everything) > 20
    view = "MLO"
    expected_ids = {r["event_id"] for r in everything if r["view"] == view and r["acquisition"] == "2D"}
    assert expected_ids
    r = client.get(f"/events?view={view}&acquisition=2D&format=csv")
    assert r.headers["content-type"].startswith("text/csv")
    rows = _csv_rows(r.text)
    assert {row["event_id"] for row in rows} == expected_ids and len(rows) == len(expected_ids)
    page = client.get(f"/events?view={view}&acquisition=2D")
    assert f"{len(expected_ids)} events" in page.text
    # thickness band and sort
    tb = _csv_rows(client.get("/events?tmin=40&tmax=60&sort=compressed_thickness_mm&format=csv").text)
    thick = [float(x["compressed_thickness_mm"]) for x in tb]
    assert thick == sorted(thick) and all(40 <= t <= 60 for t in thick)
    assert len(tb) == sum(
        1 for x in everything if x["compressed_thickness_mm"] and 40 <= float(x["compressed_thickness_mm"]) <= 60
    )
    # ratio outside the band
    outside = _csv_rows(client.get("/events?ratio=0.05&format=csv").text)
    assert all(abs(float(x["ratio_recalc_to_reported"]) - 1) > 0.05 for x in outside)
    # paging: the pages together are the whole list, once each
    size = app.state.settings.web.page_size
    seen: list[str] = []
    for n in range(1, len(everything) // size + 2):
        seen += re.findall(r'<tr><td><a href="/studies/(\d+)">', client.get(f"/events?page={n}").text)
    assert seen == [r["study_id"] for r in everything]  # the download's order, page by page
    # a page past the end (however far) is the last page, with its rows
    last = (len(everything) - 1) // size + 1
    tail = re.findall(r'<tr><td><a href="/studies/(\d+)">', client.get(f"/events?page={last}").text)
    for far in (last + 1, 10**30):
        r = client.get(f"/events?page={far}")
        assert r.status_code == 200 and f"page {last} of {last}" in r.text.lower()
        assert re.findall(r'<tr><td><a href="/studies/(\d+)">', r.text) == tail
    # xlsx of the same filter
    from openpyxl import load_workbook

    xl = client.get(f"/events?view={view}&acquisition=2D&format=xlsx")
    ws = load_workbook(io.BytesIO(xl.content)).worksheets[0]
    sheet_rows = list(ws.iter_rows(values_only=True))
    assert {str(r[0]) for r in sheet_rows[1:]} == expected_ids and len(sheet_rows) - 1 == len(expected_ids)
    assert client.get("/events?from=not-a-date").status_code == 400
    assert client.get("/events?sort=patient_pseudonym").status_code == 400


def test_a_csv_download_is_sent_as_it_is_read(app, world):
    """The CSV goes out in pieces while the rows are read (no length known beforehand), the pieces
    together are the file the writer makes, and the database connection is given back whether the
    rows were read to the end or the download was abandoned before its first row."""
    from srdose.files import csv_text, write_csv
    from srdose.store import web as W

    client = signed_in(app, "vera")
    with client.stream("GET", "/events?format=csv") as r:
        assert r.status_code == 200 and "content-length" not in r.headers
        assert r.headers["content-disposition"].startswith('attachment; filename="srdose-events-')
        body = b"".join(r.iter_raw()).decode()
    store = DoseStore(world["url"], concurrent_reads=True)
    try:
        rows = list(W.iter_events(store, W.EventFilter()))
        out = world["tmp"] / "whole.csv"
        assert write_csv(iter(rows), out, W.EVENT_COLUMNS) == len(rows) > 4
        assert body == out.read_bytes().decode()
        pieces = list(csv_text(iter(rows), W.EVENT_COLUMNS, rows_per_chunk=2))
        assert "".join(pieces) == body and len(pieces) == len(rows) // 2 + 1
        assert all(p.count("\r\n") <= 3 for p in pieces)  # the header, then two rows a piece
        for read_all in (True, False):
            listed = W.EventRows(store, W.EventFilter())
            assert listed.count == len(rows) and store.engine.pool.checkedout() == 1
            if read_all:
                assert [r[0] for r in listed] == [r[0] for r in rows]
            listed.close()
            assert store.engine.pool.checkedout() == 0
        # abandoned half-way: closed from another thread while the rows are being read, the rows
        # stop (no "connection is closed" from the reading thread)
        listed = W.EventRows(store, W.EventFilter())
        reading = iter(listed)
        first = next(reading)
        closer = threading.Thread(target=listed.close)
        closer.start()
        closer.join(timeout=30)
        assert first[0] == rows[0][0] and list(reading) == [] and store.engine.pool.checkedout() == 0
    finally:
        store.close()


def test_unit_page_gives_the_units_conformance_verdict(app, world):
    """The unit page shows the verdict and findings `srdose conformance` gives for the unit."""
    from srdose.curation import conformance as K

    client = signed_in(app, "vera")
    serial, _ = first_serial_and_study(client)
    store = DoseStore(world["url"])
    try:
        expected = K.merged(K.from_database(store, serial).values())
    finally:
        store.close()
    page = client.get(f"/units/{serial}").text
    assert f'<span class="verdict">{expected.verdict}</span>' in page
    for f in expected.findings.values():
        assert f"<td>{f.rule}</td>" in page


def test_no_identifier_in_any_response(app, world):
    bodies: list[tuple[str, bytes]] = []
    for name in USERS:
        client = signed_in(app, name)
        serial, study = first_serial_and_study(client)
        for path in [
            *PAGES_BY_ROLE,
            f"/studies/{study}",
            f"/units/{serial}",
            f"/units/{serial}/charts.json",
            "/events?format=csv",
            "/events?format=xlsx",
            "/events?sort=-mgd_recalc_mgy",
        ]:
            bodies.append((path, client.get(path).content))
        # every study page
        for sid in set(re.findall(r'href="/studies/(\d+)"', client.get("/events?page=1").text)):
            bodies.append((sid, client.get(f"/studies/{sid}").content))
    import zipfile

    expanded = []
    for path, body in bodies:
        if body[:2] == b"PK":
            with zipfile.ZipFile(io.BytesIO(body)) as z:
                body = b"".join(z.read(m) for m in z.namelist())
        expanded.append((path, body))
    leaks = [(p, i) for p, body in expanded for i in world["identifiers"] if i.encode() in body]
    assert not leaks


def test_views_and_downloads_are_in_the_audit_trail(app):
    client = signed_in(app, "phil")
    client.get("/events?view=CC")
    client.get("/events?view=CC&format=csv")
    client.get("/admin")  # refused: still audited
    entries = audit_entries(app.state.store, limit=50)
    mine = [e for e in entries if e["who"] == "web:phil"]
    actions = [(e["action"], json.loads(e["parameters"]).get("query")) for e in mine]
    assert ("web:view", {"view": "CC"}) in actions
    assert ("web:download", {"view": "CC", "format": "csv"}) in actions
    assert any(a == "web:refused" for a, _ in actions)
    assert any(e["action"] == "web:login" for e in mine)
    download = next(e for e in mine if e["action"] == "web:download")
    assert download["rows"] == len(_csv_rows(client.get("/events?view=CC&format=csv").text))
    # no password in the trail
    assert not any(PASSWORD in (e["parameters"] or "") for e in audit_entries(app.state.store))


def test_admin_manages_users_through_forms(app):
    client = signed_in(app, "ada")
    token = csrf_of(client.get("/admin").text)
    r = client.post(
        "/admin/users",
        data={"csrf_token": token, "action": "add", "username": "newbie", "role": "viewer", "password": PASSWORD},
        follow_redirects=False,
    )
    assert r.status_code == 303
    newbie = signed_in(app, "newbie")
    assert newbie.get("/reports").status_code == 403
    client.post("/admin/users", data={"csrf_token": token, "action": "role", "username": "newbie", "role": "physicist"})
    assert newbie.get("/reports").status_code == 200
    client.post("/admin/users", data={"csrf_token": token, "action": "disable", "username": "newbie"})
    assert newbie.get("/", follow_redirects=False).status_code == 303
    assert login(TestClient(app), "newbie").status_code == 401


def test_physicist_runs_a_report_and_downloads_it(app):
    client = signed_in(app, "phil")
    token = csrf_of(client.get("/reports").text)
    r = client.post("/reports", data={"csrf_token": token, "kind": "drl", "from": "2000-01-01", "to": "2100-01-01"})
    assert r.status_code == 200, r.text
    link = re.search(r'href="(/reports/files/[^"]+\.html)"', r.text)
    assert link, r.text
    assert client.get(link.group(1)).status_code == 200
    assert client.get("/reports/files/..%2F..%2Fetc%2Fpasswd").status_code == 404


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_server_on_loopback_under_a_root_path(world):
    import httpx
    import uvicorn

    app = create_app(_settings(world["tmp"], root_path="/srdose"), world["url"])
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(600):
            if server.started:
                break
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base) as client:
            r = client.get("/srdose/events")
            assert r.status_code == 303 and r.headers["location"].startswith("/srdose/login")
            page = client.get("/srdose/login")
            token = csrf_of(page.text)
            r = client.post("/srdose/login", data={"username": "vera", "password": PASSWORD, "csrf_token": token})
            assert r.status_code == 303 and r.headers["location"] == "/srdose/"
            overview = client.get("/srdose/")
            assert overview.status_code == 200 and 'href="/srdose/events"' in overview.text
            # a proxy that strips the prefix reaches the same routes, and links keep the prefix
            stripped = client.get("/events", headers={"Cookie": f"srdose_session={client.cookies['srdose_session']}"})
            assert stripped.status_code == 200 and 'href="/srdose/events"' in stripped.text
            assert client.get("/srdose/static/chart.umd.min.js").status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _cli(*args, data_dir: Path, input: str | None = None):
    from click.testing import CliRunner

    from srdose.cli import main

    return CliRunner().invoke(
        main, [str(a) for a in args], input=input, env={"COLUMNS": "250", "SRDOSE_DATA_DIR": str(data_dir)}
    )


def test_users_commands(srdose_env, tmp_path, db_url, monkeypatch):
    monkeypatch.setenv("SRDOSE_DATABASE_URL", db_url)  # the commands' database: SQLite, then PostgreSQL
    pw = tmp_path / "pw.txt"
    pw.write_text(PASSWORD + "\n")
    r = _cli("users", "add", "carol", "--role", "physicist", "--password-file", pw, data_dir=srdose_env)
    assert r.exit_code == 0, r.output
    # no file: asked twice, hidden; the two must agree
    r = _cli("users", "add", "dan", "--role", "viewer", data_dir=srdose_env, input=f"{PASSWORD}\n{PASSWORD}\n")
    assert r.exit_code == 0, r.output
    r = _cli("users", "add", "eve", "--role", "viewer", data_dir=srdose_env, input=f"{PASSWORD}\nother one!!\n")
    assert r.exit_code == 2 and "differ" in r.output
    for bad in (
        ("users", "add", "carol", "--role", "viewer", "--password-file", pw),  # exists
        ("users", "add", "frank", "--role", "boss", "--password-file", pw),  # no such role
        ("users", "add", "bad name", "--role", "viewer", "--password-file", pw),
        ("users", "disable", "nobody"),
        ("serve", "--tls-cert", tmp_path / "missing.pem"),
    ):
        assert _cli(*bad, data_dir=srdose_env).exit_code == 2, bad
    short = tmp_path / "short.txt"
    short.write_text("short\n")
    assert _cli("users", "passwd", "carol", "--password-file", short, data_dir=srdose_env).exit_code == 2
    listing = _cli("users", "list", data_dir=srdose_env)
    assert "carol\tphysicist\tactive" in listing.output and "dan\tviewer\tactive" in listing.output
    assert _cli("users", "disable", "dan", data_dir=srdose_env).exit_code == 0
    assert "dan\tviewer\tdisabled" in _cli("users", "list", data_dir=srdose_env).output
    new = tmp_path / "new.txt"
    new.write_text(PASSWORD + " two\n")
    assert _cli("users", "passwd", "carol", "--password-file", new, data_dir=srdose_env).exit_code == 0
    store = DoseStore(db_url)
    try:
        from srdose.web.auth import verify_password

        carol = web_users.get_user(store, "carol")
        assert carol is not None and verify_password(carol.password_hash, PASSWORD + " two")
        assert PASSWORD not in carol.password_hash
        assert {e["action"] for e in audit_entries(store)} >= {"users.add", "users.disable", "users.passwd"}
    finally:
        store.close()


def test_srdose_serve_as_a_process(world):
    import os
    import subprocess
    import sys

    import httpx

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SRDOSE_")}
    env["SRDOSE_DATA_DIR"] = str(world["tmp"] / "data")
    proc = subprocess.Popen(
        [sys.executable, "-m", "srdose", "--db", world["url"], "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(1200):
            if proc.poll() is not None:
                pytest.fail(proc.stdout.read().decode() if proc.stdout else "serve exited")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            token = csrf_of(client.get("/login").text)
            r = client.post("/login", data={"username": "phil", "password": PASSWORD, "csrf_token": token})
            assert r.status_code == 303
            assert client.get("/physics").status_code == 200
            assert "server" not in client.get("/").headers
    finally:
        proc.terminate()
        proc.wait(30)


def test_kept_aggregates_last_cache_seconds_and_zero_keeps_nothing(tmp_path):
    """A unit's charts and the overview are computed once and kept ``[web] cache_seconds``: new
    events show after that (at once with 0); the charts say when they were computed."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = DoseStore(url, Pseudonymiser(b"2" * 64))
    ingestor = Ingestor(store, QuarantineFolder(tmp_path / "quarantine"))
    S.generate("hologic", 2, tmp_path / "first", seed=5)
    ingestor.ingest_paths([tmp_path / "first"])
    web_users.add_user(store, "vera", "viewer", hash_password(PASSWORD))
    kept = signed_in(create_app(_settings(tmp_path), url), "vera")
    fresh = signed_in(create_app(_settings(tmp_path, cache_seconds=0), url), "vera")
    serial, _ = first_serial_and_study(kept)

    def charts(client):
        r = client.get(f"/units/{serial}/charts.json")
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        return r.json()

    def overview_events(client):
        return int(re.search(r"([\d,]+) events", client.get("/").text).group(1).replace(",", ""))

    before, overview_before = charts(kept), overview_events(kept)
    assert before["as_of"] and before["events"] == charts(fresh)["events"] > 0
    S.generate("hologic", 2, tmp_path / "second", seed=6)
    ingestor.ingest_paths([tmp_path / "second"])
    store.close()
    assert charts(kept) == before and overview_events(kept) == overview_before  # kept
    assert charts(fresh)["events"] > before["events"]  # not kept: the new events at once
    assert overview_events(fresh) > overview_before


def test_event_list_counts_up_to_a_limit_and_pages_on(world):
    """Past the count limit the list says "more than" and still pages on; the last page and a
    page past the end give the exact count; the pages are the download's rows in order."""
    from srdose.store import web as W

    store = DoseStore(world["url"])
    try:
        everything = [r[0] for r in W.iter_events(store, W.EventFilter())]
        n = len(everything)
        assert n > 12
        first = W.event_list(store, W.EventFilter(), 1, 5, count_limit=10)
        assert (first.total, first.exact, first.has_next) == (10, False, True)
        assert [r["event_id"] for r in first.rows] == everything[:5]
        # a page reaching the limit with events after it: "more than" without counting
        second = W.event_list(store, W.EventFilter(), 2, 5, count_limit=10)
        assert (second.total, second.exact, second.has_next) == (10, False, True)
        assert [r["event_id"] for r in second.rows] == everything[5:10]
        # a page holding exactly the last events: the count is known, whatever the limit
        whole = W.event_list(store, W.EventFilter(), 1, n, count_limit=1)
        assert (whole.total, whole.exact, whole.has_next, len(whole.rows)) == (n, True, False, n)
        exact = W.event_list(store, W.EventFilter(), 1, 5, count_limit=n)
        assert (exact.total, exact.exact, exact.pages) == (n, True, -(-n // 5))
        last_page = -(-n // 5)
        last = W.event_list(store, W.EventFilter(), last_page, 5, count_limit=10)
        assert (last.total, last.exact, last.has_next) == (n, True, False)
        assert [r["event_id"] for r in last.rows] == everything[(last_page - 1) * 5 :]
        past = W.event_list(store, W.EventFilter(), last_page + 3, 5, count_limit=10)
        assert (past.page, past.total, past.exact) == (last_page, n, True) and past.rows == last.rows
        # SQLite counts one unit's list exactly whatever the limit (it reads it in full for the
        # sort); PostgreSQL stops once the page is full, and caps the count as for any filter
        serial = next(r[6] for r in W.iter_events(store, W.EventFilter()) if r[6])
        of_unit = [r[0] for r in W.iter_events(store, W.EventFilter(serial=serial))]
        assert len(of_unit) > 4
        unit_first = W.event_list(store, W.EventFilter(serial=serial), 1, 2, count_limit=3)
        sqlite = store.engine.dialect.name == "sqlite"
        assert (unit_first.total, unit_first.exact) == ((len(of_unit), True) if sqlite else (3, False))
        assert [r["event_id"] for r in unit_first.rows] == of_unit[:2] and unit_first.has_next
        # a unit's page at the limit, with events after it: "more than" on both engines
        unit_later = W.event_list(store, W.EventFilter(serial=serial), 2, 2, count_limit=4)
        assert (unit_later.total, unit_later.exact) == (4, False)
        assert [r["event_id"] for r in unit_later.rows] == of_unit[2:4]
        # sorted by a column with gaps: NULLs last either way, on both engines
        for desc in (False, True):
            f = W.EventFilter(sort=(("mgd_recalc_mgy", desc),))
            rows = [r for p in range(1, last_page + 1) for r in W.event_list(store, f, p, 5).rows]
            values = [r["mgd_recalc_mgy"] for r in rows]
            known = [v for v in values if v is not None]
            assert values == known + [None] * (len(values) - len(known)) and len(rows) == n
            assert known == sorted(known, reverse=desc)
    finally:
        store.close()
