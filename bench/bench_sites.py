"""Many sites, one database: four `srdose listen` (four sites, each its own
data folder and site secret) writing to one PostgreSQL database at once.

    python bench/bench_sites.py [--files 800] [--db postgresql+psycopg://.../postgres]

Four vendors' synthetic RDSRs, a quarter each, are sent by DCMTK storescu
(TCP_NODELAY=1), one sender per site; the first site's studies are also sent
to the second site at the same time (a study arriving twice). The time runs
until every object is committed and every spool is empty. The peer, in the
same run on the same server, is one listener taking the same five streams.
Without ``--db`` a throw-away server is started with scripts/pg.sh.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text  # noqa: E402

from tests.netutil import ListenerProcess, free_port, fresh_postgres_db  # noqa: E402

STORESCU = "/usr/bin/storescu"
VENDORS = ["hologic", "ge", "siemens", "fujifilm"]
REPO = Path(__file__).resolve().parents[1]


def send(port: int, files: list[Path]) -> None:
    env = {**os.environ, "TCP_NODELAY": "1"}
    r = subprocess.run(
        [STORESCU, "-aet", "BENCH", "-aec", "SRDOSE", "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
    )
    if r.returncode != 0:
        raise SystemExit(f"storescu failed: {r.stderr[-500:]}")


def run(work: Path, url: str, streams: list[list[Path]], sites: int, unique: int) -> float:
    """Seconds from the first dataset sent until all ``unique`` objects are committed."""
    env = {"SRDOSE_DATABASE_URL": url}
    listeners = [ListenerProcess(work / f"site{i}", free_port(), env=env).start() for i in range(sites)]
    engine = create_engine(url)
    try:
        # stream i goes to site i; the extra (duplicate) stream to site 1
        targets = [listeners[min(i, sites - 1) if i < len(VENDORS) else min(1, sites - 1)] for i in range(len(streams))]
        start = time.perf_counter()
        threads = [threading.Thread(target=send, args=(t.port, s)) for t, s in zip(targets, streams)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                held = conn.execute(text("SELECT count(*) FROM source_objects")).scalar_one()
            if held >= unique and all(site.spooled() == 0 for site in listeners):
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        with engine.connect() as conn:
            held = conn.execute(text("SELECT count(*) FROM source_objects")).scalar_one()
            quarantined = conn.execute(text("SELECT count(*) FROM quarantine")).scalar_one()
        if held != unique or quarantined:
            raise SystemExit(f"{sites} site(s): {held} objects held of {unique}, {quarantined} quarantined")
        return elapsed
    finally:
        engine.dispose()
        for site in listeners:
            site.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=800, help="distinct RDSRs, a quarter per site")
    ap.add_argument("--db", default="", help="URL of a PostgreSQL server's maintenance database")
    args = ap.parse_args()
    from srdose import synth

    work = Path(tempfile.mkdtemp(prefix="srdose-bench-sites-"))
    pgdir = None
    try:
        server = args.db
        if not server:
            work.chmod(0o755)  # postgres runs as its own user
            pgdir = work / "pg"
            server = subprocess.run(
                [str(REPO / "scripts" / "pg.sh"), "start", str(pgdir), str(free_port())],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
        per = max(1, args.files // len(VENDORS))
        streams = [synth.generate(v, per, work / "rdsr" / v, seed=60 + i, units=3) for i, v in enumerate(VENDORS)]
        streams.append(streams[0])  # the first site's studies arrive at the second site too
        unique = per * len(VENDORS)
        sent = unique + per
        one = run(work / "one", fresh_postgres_db(server), streams, 1, unique)
        four = run(work / "four", fresh_postgres_db(server), streams, 4, unique)
        print(f"files: {unique} distinct synthetic RDSRs, {sent} sent ({per} twice), 5 storescu streams at once")
        print(f"peer   one listener, one PostgreSQL      : {sent / one:7.1f} files/s  ({unique / one:.1f} objects/s)")
        print(
            f"srdose 4 sites, each its own secret       : {sent / four:7.1f} files/s  ({unique / four:.1f} objects/s)"
        )
        print(f"ratio 4 sites / 1 listener                : {one / four:7.2f}")
    finally:
        if pgdir is not None:
            subprocess.run([str(REPO / "scripts" / "pg.sh"), "stop", str(pgdir)], check=False, timeout=60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
