"""Latency of ``srdose serve`` over a million events, beside datasette serving the same SQLite file.

    python bench/bench_web.py [--events 1000000] [--db postgresql+psycopg://...] [--sqlite FILE]
                              [--requests 50] [--csv-requests 5] [--clients 1,8]

The database is seeded by ``bench/seed_events.py`` (SQLite in a temporary directory unless
``--db`` names a PostgreSQL database or ``--sqlite`` a file: seeded only when it holds no events).
A viewer login is made with ``srdose users add``, ``srdose serve`` runs on 127.0.0.1 as a
subprocess, and each client (a thread with its own httpx session) logs in through the form
(GET /login, POST with its csrf_token) and then requests each page ``--requests`` times; 1 and
8 clients run at once. Pages:

* the overview ``/``;
* the event list with no filter (the first page a user sees), and of the busiest unit's MLO views
  from a date (page 1, and page 200);
* the unit page and its ``charts.json`` (the two requests a browser makes, timed together);
* a CSV download of about 100,000 rows (``/events?from=...&format=csv``): until its first 1,000
  rows have arrived (the download has visibly started; then it is dropped), and whole.

The overview and a unit's charts are kept ``[web] cache_seconds`` (60) once computed, so those
rows mostly time a kept answer; a second ``srdose serve`` with ``cache_seconds = 0`` times them
computed for every request ("nothing kept"), fewer times over.

The peer in the same run: ``datasette`` (``pip install '.[bench]'``) serving the same SQLite file:
its table view of ``events`` unfiltered, and with the same filter (``device_id``, ``view``,
``datetime_started__gte``, ``_size=50``), page 1 and page 200 (reached through its ``_next``
tokens), and the CSV export of the same rows (``.csv?_size=max&_stream=on``). datasette has
nothing like the overview or the unit page. With ``--db`` PostgreSQL datasette is not run.

Printed: page | clients | srdose p50/p95 ms | datasette p50/p95 ms | ratio (srdose p95 /
datasette p95), and the target check (srdose p95 <= 300 ms at 8 clients).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from seed_events import seed  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from srdose.store import models as M  # noqa: E402
from srdose.store.database import make_engine  # noqa: E402

USER, PASSWORD = "bench", "bench-password-for-latency-1"
PAGE_SIZE = 50
DEEP_PAGE = 200
CSV_ROWS = 100_000
FIRST_ROWS = 1_000  # a download has started, for a user, when its first rows have arrived
TARGET_MS = 300.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: the server exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=5.0)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit(f"{url}: no answer within {timeout:.0f} s")


@dataclass(frozen=True)
class Workload:
    serial: str
    device_id: int
    since: dt.date  # event list filter: >= 200 pages of the unit's MLO views
    csv_since: dt.date  # about CSV_ROWS events from this day on, every unit
    list_rows: int
    csv_rows: int

    @property
    def deep_page(self) -> int:
        # fewer pages only in a database too small for the real run
        return max(1, min(DEEP_PAGE, self.list_rows // PAGE_SIZE))


def has_events(url: str) -> bool:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql("SELECT 1 FROM events LIMIT 1").first() is not None
    except Exception:  # no schema yet
        return False
    finally:
        engine.dispose()


def choose_workload(url: str) -> Workload:
    """The busiest unit, and the dates that give the deep page and the 100,000-row download."""
    engine = make_engine(url)
    E, St, D = M.Event, M.Study, M.Device
    with engine.connect() as conn:
        busiest = conn.execute(
            select(D.id, D.serial).join(E, E.device_id == D.id).group_by(D.id, D.serial).order_by(func.count().desc())
        ).first()
        if busiest is None:
            raise SystemExit(f"{url}: no events")
        device_id, serial = busiest
        per_day = conn.execute(
            select(St.study_date, func.count())
            .join(E, E.study_id == St.id)
            .where(E.device_id == device_id, E.view == "MLO")
            .group_by(St.study_date)
            .order_by(St.study_date.desc())
        ).all()
        all_days = conn.execute(
            select(St.study_date, func.count())
            .join(E, E.study_id == St.id)
            .group_by(St.study_date)
            .order_by(St.study_date.desc())
        ).all()
    engine.dispose()

    def day_reaching(rows: Sequence[Any], need: int) -> tuple[dt.date, int]:
        total, last = 0, ""
        for day, n in rows:
            total, last = total + n, day
            if total >= need:
                break
        return dt.datetime.strptime(last, "%Y%m%d").date(), total

    # a page past 200, with some margin, so page 200 is a real deep page
    since, list_rows = day_reaching(per_day, int(PAGE_SIZE * DEEP_PAGE * 1.2))
    csv_since, csv_rows = day_reaching(all_days, CSV_ROWS)
    return Workload(serial, device_id, since, csv_since, list_rows, csv_rows)


# --- clients --------------------------------------------------------------------------------


def srdose_client(base: str) -> httpx.Client:
    """A logged-in session: GET the form, POST it with its csrf_token."""
    client = httpx.Client(base_url=base, timeout=600.0)
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    if token is None:
        raise SystemExit("no csrf_token on /login")
    r = client.post("/login", data={"username": USER, "password": PASSWORD, "csrf_token": token.group(1), "next": "/"})
    if r.status_code != 303:
        raise SystemExit(f"login failed: HTTP {r.status_code}")
    return client


def datasette_client(base: str) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=600.0)


Request = Callable[[httpx.Client], None]


def get(path: str, expect: str | None = None) -> Request:
    def run(client: httpx.Client) -> None:
        r = client.get(path)
        if r.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {r.status_code}")
        if expect is not None and expect not in r.text[:2_000_000]:
            raise RuntimeError(f"{path}: {expect!r} not in the answer")

    return run


def download(path: str, min_lines: int, first: int | None = None) -> Request:
    """The whole download (at least ``min_lines`` lines); or, with ``first``, until its header and
    ``first`` rows have arrived, when it is dropped (as a user who has seen it start and cancels)."""

    def run(client: httpx.Client) -> None:
        lines = 0
        with client.stream("GET", path) as r:
            if r.status_code != 200:
                raise RuntimeError(f"{path}: HTTP {r.status_code}")
            for chunk in r.iter_bytes():
                lines += chunk.count(b"\n")
                if first is not None and lines > first:
                    return
        if lines < min_lines:
            raise RuntimeError(f"{path}: {lines} lines, expected at least {min_lines}")

    return run


def sequence(*steps: Request) -> Request:
    def run(client: httpx.Client) -> None:
        for step in steps:
            step(client)

    return run


@dataclass
class Latency:
    times_ms: np.ndarray
    failed: int  # answers other than 200 (e.g. "database is locked"), timed all the same

    @property
    def p50(self) -> float:
        return float(np.percentile(self.times_ms, 50))

    @property
    def p95(self) -> float:
        return float(np.percentile(self.times_ms, 95))

    def text(self) -> str:
        failed = f" ({self.failed} failed)" if self.failed else ""
        return f"{self.p50:.0f} / {self.p95:.0f}{failed}"


def measure(make_client: Callable[[], httpx.Client], request: Request, clients: int, per_client: int) -> Latency:
    """Latencies (ms) of ``per_client`` sequential requests by each of ``clients`` concurrent sessions."""
    sessions = [make_client() for _ in range(clients)]
    request(sessions[0])  # warm: templates compiled, pages in the OS cache
    times: list[float] = []
    failed = 0
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def worker(s: httpx.Client) -> None:
        nonlocal failed
        barrier.wait()
        for _ in range(per_client):
            t = time.perf_counter()
            try:
                request(s)
                ok = True
            except (RuntimeError, httpx.HTTPError):
                ok = False
            ms = (time.perf_counter() - t) * 1000.0
            with lock:
                times.append(ms)
                failed += not ok

    threads = [threading.Thread(target=worker, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in sessions:
        s.close()
    return Latency(np.array(times), failed)


# --- servers --------------------------------------------------------------------------------


def srdose_env(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "SRDOSE_DATA_DIR": str(data_dir)}
    env.pop("SRDOSE_CONFIG", None)
    env.pop("SRDOSE_DATABASE_URL", None)
    return env


def start_srdose(db_url: str, data_dir: Path, cache_seconds: int | None = None) -> tuple[subprocess.Popen, str]:
    env = srdose_env(data_dir)
    if cache_seconds is not None:
        env["SRDOSE_WEB__CACHE_SECONDS"] = str(cache_seconds)
    pw = data_dir / "password"
    pw.write_text(PASSWORD + "\n")
    pw.chmod(0o600)
    cli = [sys.executable, "-m", "srdose", "--db", db_url]
    subprocess.run(
        [*cli, "users", "add", USER, "--role", "viewer", "--password-file", str(pw)],
        check=False,  # a reused database has the user already: the login below tells
        env=env,
        cwd=data_dir,
        stdout=subprocess.DEVNULL,
    )
    port = free_port()
    proc = subprocess.Popen(
        [*cli, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=data_dir,
        stdout=subprocess.DEVNULL,
        stderr=(data_dir / "serve.log").open("a"),
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/login", proc)
    return proc, base


def start_datasette(sqlite_file: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    exe = shutil.which("datasette")
    cmd = [exe] if exe else [sys.executable, "-m", "datasette"]
    proc = subprocess.Popen(
        [*cmd, "serve", str(sqlite_file), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/-/versions.json", proc)
    return proc, base


def datasette_deep_path(base: str, path: str, params: dict, pages: int) -> str:
    """Follow ``_next`` from page 1 to page ``pages``: the path of that page."""
    with datasette_client(base) as client:
        query = dict(params)
        for _ in range(pages - 1):
            data = client.get(path + ".json", params=query).json()
            if not data.get("next"):
                raise SystemExit(f"datasette: no page {pages} for {params}")
            query = {**params, "_next": data["next"]}
    return f"{path}?{urlencode(query)}"


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- the run --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--db", help="PostgreSQL URL of a new database to seed (default: SQLite in a temp dir)")
    ap.add_argument("--sqlite", type=Path, help="SQLite file to use (seeded first when it does not exist)")
    ap.add_argument("--requests", type=int, default=50, help="requests per client per page")
    ap.add_argument("--csv-requests", type=int, default=5, help="requests per client of the CSV downloads")
    ap.add_argument(
        "--peer-requests", type=int, help="datasette's requests per client per page (default: as --requests)"
    )
    ap.add_argument("--clients", default="1,8", help="concurrent clients, comma-separated")
    ap.add_argument("--no-datasette", action="store_true")
    ap.add_argument("--only", default="", help="measure only the pages whose name contains this text")
    a = ap.parse_args(argv)
    levels = [int(x) for x in a.clients.split(",")]

    # a terminated run still stops its servers (the finally below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    work = Path(tempfile.mkdtemp(prefix="srdose-bench-web-"))
    procs: list[subprocess.Popen] = []
    try:
        sqlite_file: Path | None = None
        if a.db:
            db_url = a.db
            if not has_events(db_url):  # else reused, as a --sqlite file is
                summary = seed(db_url, a.events, progress=lambda s: print(s, end="", flush=True))
                print(f"\nseeded {summary.events:,} events: {summary.rate:,.0f} events/s")
        else:
            sqlite_file = a.sqlite or work / "db.sqlite"
            db_url = f"sqlite:///{sqlite_file}"
            if not sqlite_file.exists():
                summary = seed(db_url, a.events, progress=lambda s: print(s, end="", flush=True))
                print(f"\nseeded {summary.events:,} events: {summary.rate:,.0f} events/s")
        w = choose_workload(db_url)
        print(
            f"unit {w.serial}: MLO from {w.since} = {w.list_rows:,} events; "
            f"CSV from {w.csv_since} = {w.csv_rows:,} events (all units); deep page = {w.deep_page}"
        )
        proc, base = start_srdose(db_url, work)
        procs.append(proc)
        # the same app computing the overview and the unit charts for every request: what a
        # request costs when nothing is kept ([web] cache_seconds = 0)
        proc0, base0 = start_srdose(db_url, work, cache_seconds=0)
        procs.append(proc0)
        list_q = {"unit": w.serial, "view": "MLO", "from": w.since.isoformat()}
        csv_q = {"from": w.csv_since.isoformat(), "format": "csv"}
        unit_page = sequence(get(f"/units/{w.serial}"), get(f"/units/{w.serial}/charts.json"))
        ours: dict[str, tuple[str, Request, int]] = {
            "overview /": (base, get("/"), a.requests),
            "overview /, nothing kept": (base0, get("/"), a.requests),
            "event list, no filter, page 1": (base, get("/events"), a.requests),
            "event list, page 1": (base, get("/events?" + urlencode(list_q)), a.requests),
            "event list, deep page": (base, get("/events?" + urlencode({**list_q, "page": w.deep_page})), a.requests),
            "unit page + charts.json": (base, unit_page, a.requests),
            "unit page + charts.json, nothing kept": (base0, unit_page, max(1, a.requests // 5)),
            f"CSV {w.csv_rows:,} rows, first {FIRST_ROWS:,}": (
                base,
                download("/events?" + urlencode(csv_q), w.csv_rows, first=FIRST_ROWS),
                a.requests,
            ),
            f"CSV {w.csv_rows:,} rows": (base, download("/events?" + urlencode(csv_q), w.csv_rows), a.csv_requests),
        }
        peer: dict[str, tuple[Request, int]] = {}
        ds_base = ""
        if sqlite_file is not None and not a.no_datasette:
            dproc, ds_base = start_datasette(sqlite_file)
            procs.append(dproc)
            ds_q = {
                "device_id": str(w.device_id),
                "view": "MLO",
                "datetime_started__gte": w.since.strftime("%Y%m%d"),
                "_size": str(PAGE_SIZE),
            }
            ds_csv = {"datetime_started__gte": w.csv_since.strftime("%Y%m%d"), "_size": "max", "_stream": "on"}
            t = time.perf_counter()
            deep = datasette_deep_path(ds_base, f"/{sqlite_file.stem}/events", ds_q, w.deep_page)
            print(f"datasette: followed _next to page {w.deep_page} in {time.perf_counter() - t:.1f} s")
            peer = {
                "event list, no filter, page 1": (
                    get(f"/{sqlite_file.stem}/events?" + urlencode({"_size": str(PAGE_SIZE)})),
                    a.requests,
                ),
                "event list, page 1": (get(f"/{sqlite_file.stem}/events?" + urlencode(ds_q)), a.requests),
                "event list, deep page": (get(deep), a.requests),
                f"CSV {w.csv_rows:,} rows, first {FIRST_ROWS:,}": (
                    download(f"/{sqlite_file.stem}/events.csv?" + urlencode(ds_csv), w.csv_rows, first=FIRST_ROWS),
                    a.requests,
                ),
                f"CSV {w.csv_rows:,} rows": (
                    download(f"/{sqlite_file.stem}/events.csv?" + urlencode(ds_csv), w.csv_rows),
                    a.csv_requests,
                ),
            }

        rows = []
        for page, (server, request, n) in ours.items():
            if a.only not in page:
                continue
            for clients in levels:
                mine = measure(lambda s=server: srdose_client(s), request, clients, n)
                theirs = None
                if page in peer:
                    req2, n2 = peer[page]
                    theirs = measure(lambda: datasette_client(ds_base), req2, clients, a.peer_requests or n2)
                rows.append((page, clients, mine, theirs))
                shown = theirs.text() if theirs else "-"
                print(f"  measured {page} x{clients}: srdose {mine.text()} ms, datasette {shown}", flush=True)

        print()
        print("| page | clients | srdose p50/p95 ms | datasette p50/p95 ms | ratio |")
        print("|---|---|---|---|---|")
        for page, clients, mine, theirs in rows:
            ratio = f"{mine.p95 / theirs.p95:.2f}" if theirs else ""
            print(f"| {page} | {clients} | {mine.text()} | {theirs.text() if theirs else '-'} | {ratio} |")
        top = max(levels)
        print()
        print(f"target: p95 <= {TARGET_MS:.0f} ms at {top} clients (ratio: srdose p95 / datasette p95)")
        for page, clients, mine, _ in rows:
            if clients == top:
                verdict = "ok" if mine.p95 <= TARGET_MS and not mine.failed else "MISSED"
                print(f"  {page:<28} p95 {mine.p95:>7.0f} ms  {verdict}")
    finally:
        for p in procs:
            stop(p)
        log = work / "serve.log"
        if log.exists():
            lines = log.read_text(errors="replace").splitlines()
            errors = [line for line in lines if line.startswith(("sqlalchemy.", "sqlite3.", "psycopg."))]
            if errors:
                print(f"srdose serve logged {len(errors)} errors, e.g. {errors[-1]}")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
