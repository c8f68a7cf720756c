"""Benchmark of the yearly reports and the export over a national year of events on PostgreSQL.

    python bench/seed_events.py --db postgresql+psycopg://postgres@127.0.0.1:5432/ten_m --events 10000000 --no-details
    python bench/bench_scale.py --db postgresql+psycopg://postgres@127.0.0.1:5432/ten_m

Over every event of the database, each in a new process as a user runs it: ``srdose report drl``,
``srdose report survey`` and ``srdose export events`` (CSV). Targets: 60 s and 2 GiB each. Wall time
and peak memory are measured as in ``bench_report.py``.

The peer, measured in the same run: PostgreSQL's own ``COPY`` of the export's rows (the same query,
the same planner settings) to a client that only counts the bytes. No export over this query can
be faster; it is the server's share of ``srdose export events``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_report import timed  # noqa: E402

TARGET_S, TARGET_MIB = 60.0, 2048.0


def copy_floor(url: str) -> tuple[float, int, int]:
    """Seconds, bytes and rows of the server's COPY of the events export."""
    from srdose.store.database import REPORT_WORK_MEM, DoseStore, event_export_query

    store = DoseStore(url)
    q = event_export_query()
    with store.engine.connect() as conn:
        compiled = q.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        conn.exec_driver_sql("SET LOCAL jit = off")
        conn.exec_driver_sql("SELECT set_config('work_mem', %(v)s, true)", {"v": REPORT_WORK_MEM})
        raw = conn.connection.driver_connection
        t = time.perf_counter()
        size = rows = 0
        with raw.cursor() as cur:
            with cur.copy(f"COPY ({compiled.string}) TO STDOUT (FORMAT csv)", compiled.params) as copy:
                for block in copy:  # PostgreSQL sends a row a message
                    size += len(block)
                    rows += 1
        wall = time.perf_counter() - t
    store.close()
    return wall, size, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, help="PostgreSQL URL of a database seeded by seed_events.py")
    ap.add_argument("--out", metavar="DIR", help="Keep the reports and the export in DIR.")
    ap.add_argument(
        "--only",
        choices=["drl", "survey", "export"],
        action="append",
        help="Run only this command (repeat); the COPY peer runs with the export.",
    )
    a = ap.parse_args()
    if not a.db.startswith("postgresql"):
        ap.error("--db: a PostgreSQL URL (postgresql+psycopg://user@host:port/database)")
    work = Path(a.out or tempfile.mkdtemp(prefix="srdose-bench-scale-"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SRDOSE_")},
        "SRDOSE_DATA_DIR": str(work / "data"),
    }
    base = [sys.executable, "-m", "srdose", "--db", a.db]
    every = ["--from", "1900-01-01", "--to", "2199-12-31"]
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {a.db.rsplit('@', 1)[-1]}")
    results = []
    for key, name, args in (
        ("drl", "srdose report drl", ["report", "drl", *every, "--out", str(work / "drl")]),
        ("survey", "srdose report survey", ["report", "survey", *every, "--out", str(work / "survey")]),
        ("export", "srdose export events (csv)", ["export", "events", "--out", str(work / "events.csv")]),
    ):
        if a.only and key not in a.only:
            continue
        wall, peak, _ = timed(base + args, env)
        results.append((name, wall, peak))
        print(f"  {name}: {wall:.1f} s, {peak:.0f} MiB", flush=True)
    floor = 0.0
    if not a.only or "export" in a.only:
        floor, size, rows = copy_floor(a.db)
        print(f"\npeer: PostgreSQL's COPY of the export's {rows:,} rows ({size / 1e9:.1f} GB): {floor:.1f} s")
    print(f"{'command':30s} {'wall (s)':>9s} {'peak (MiB)':>11s} {'target/wall':>12s} {'COPY/wall':>10s}")
    for name, wall, peak in results:
        ok = "" if wall <= TARGET_S and peak <= TARGET_MIB else "  over target"
        floor_ratio = f"{floor / wall:10.2f}" if "export" in name else f"{'':10s}"
        print(f"{name:30s} {wall:9.1f} {peak:11.0f} {TARGET_S / wall:12.2f} {floor_ratio}{ok}")


if __name__ == "__main__":
    main()
