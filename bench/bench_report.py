"""Benchmark of ``srdose report survey`` and ``srdose report qa`` over 400,000 events.

    python bench/bench_report.py [--events 400000] [--keep DIR]

The database: synthetic RDSRs of all five vendor flavours (srdose.synth, 3
units each) are ingested once through the normal path, then whole studies are
replicated in bulk with SQLAlchemy Core inserts through the store's models
(:func:`build_db`: each copy a new study, source object and pseudonym, the
same events; ingesting 100,000 files would measure the parser, not the
reports), and ``srdose recalc`` computes every MGD (the Hologic unit 0 with
the example physics file). Then, each in a new process as a user runs it:

* ``srdose report survey`` over every unit and ``srdose report qa`` of the
  busiest unit (targets: <= 10 s and <= 1 GiB each);
* the peer, measured the same way in the same run: ``srdose export events``
  (plain csv module, no report logic) of the same events.

Wall time and peak memory (ru_maxrss via resource.getrusage(RUSAGE_CHILDREN),
read by a fresh wrapper process whose only child is the command) are printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
EXAMPLE = REPO / "sample_data" / "physics" / "example_synthetic_hologic_unit0.csv"


def build_db(url: str, n_events: int) -> str:
    """A SQLite srdose database with about n_events live events; returns the busiest unit's serial."""
    from sqlalchemy import func, insert, select

    from srdose import synth
    from srdose.ingest import Ingestor
    from srdose.pseudonym import Pseudonymiser
    from srdose.quarantine import QuarantineFolder
    from srdose.store import DoseStore
    from srdose.store import models as M

    store = DoseStore(url, Pseudonymiser(b"r" * 64))
    src = Path(tempfile.mkdtemp(prefix="srdose-bench-src-"))
    try:
        for i, v in enumerate(synth.VENDORS):
            synth.generate(v, 60, src, seed=300 + i, units=3, date_range=(dt.date(2025, 1, 2), dt.date(2025, 12, 30)))
        Ingestor(store, QuarantineFolder(src / "q")).ingest_paths(sorted(src.glob("*.dcm")))
    finally:
        shutil.rmtree(src, ignore_errors=True)
    skip = {"id", "source_object_id", "study_id"}
    ev_cols = [c.name for c in M.Event.__table__.columns if c.name not in skip]
    with store.engine.connect() as conn:
        studies = [
            dict(r._mapping)
            for r in conn.execute(
                select(M.Study.id, M.Study.device_id, M.Study.study_date, M.Study.study_time, M.Study.age_years)
            )
        ]
        events: dict[int, list] = {}
        for r in conn.execute(select(M.Event.study_id, *[M.Event.__table__.c[c] for c in ev_cols])):
            d = dict(r._mapping)
            events.setdefault(d.pop("study_id"), []).append(d)
        have = conn.execute(select(func.count()).select_from(M.Event)).scalar_one()
    studies = [s for s in studies if s["id"] in events]
    rng = np.random.default_rng(7)
    days = [(dt.date(2025, 1, 2) + dt.timedelta(days=int(k))).strftime("%Y%m%d") for k in range(360)]
    need, k = n_events - have, 0
    now = dt.datetime(2026, 1, 1)
    while need > 0:
        st_rows, picks = [], []
        while need > 0 and len(picks) < 5000:
            s = studies[int(rng.integers(len(studies)))]
            day = days[int(rng.integers(len(days)))]
            picks.append((s, day))
            st_rows.append(
                {
                    "study_instance_uid": f"2.25.77{k:012d}",
                    "device_id": s["device_id"],
                    "study_date": day,
                    "study_time": s["study_time"],
                    "age_years": float(rng.uniform(50, 71)),
                    "patient_pseudonym": f"bench{k:012d}",
                }
            )
            need -= len(events[s["id"]])
            k += 1
        with store.begin() as conn:
            st_ids = (
                conn.execute(insert(M.Study).returning(M.Study.id, sort_by_parameter_order=True), st_rows)
                .scalars()
                .all()
            )
            so_ids = (
                conn.execute(
                    insert(M.SourceObject).returning(M.SourceObject.id, sort_by_parameter_order=True),
                    [
                        {
                            "sop_instance_uid": f"2.25.88{sid:012d}",
                            "sop_class_uid": "1.2.840.10008.5.1.4.1.1.88.67",
                            "kind": "rdsr",
                            "study_id": sid,
                            "sha256": "0" * 64,
                            "received_at": now,
                        }
                        for sid in st_ids
                    ],
                )
                .scalars()
                .all()
            )
            rows = []
            for (s, day), sid, so in zip(picks, st_ids, so_ids):
                for e in events[s["id"]]:
                    start = e["datetime_started"]
                    rows.append(
                        {
                            **e,
                            "event_uid": None,
                            "study_id": sid,
                            "source_object_id": so,
                            "study_date": day,
                            "study_time": s["study_time"],
                            "datetime_started": day + start[8:] if start else None,
                        }
                    )
            conn.execute(insert(M.Event), rows)
    with store.engine.connect() as conn:
        busiest = conn.execute(
            select(M.Device.serial)
            .join(M.Event, M.Event.device_id == M.Device.id)
            .group_by(M.Device.serial)
            .order_by(func.count().desc())
            .limit(1)
        ).scalar_one()
        total = conn.execute(select(func.count()).select_from(M.Event)).scalar_one()
    store.close()
    print(f"  {total:,} events in {k + len(studies):,} studies")
    return busiest


WRAP = """
import resource, subprocess, sys, time
t = time.perf_counter()
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - t
sys.stdout.write(p.stdout)
sys.stderr.write(p.stderr)
print(f"\\nBENCH {p.returncode} {wall:.4f} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}", file=sys.stderr)
"""


def timed(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MiB) of one command, run under a fresh wrapper process whose only
    child it is (so ru_maxrss of RUSAGE_CHILDREN is that command's own peak)."""
    # from the checkout this script is in (``-m srdose`` finds it first): the srdose it measures
    p = subprocess.run([sys.executable, "-c", WRAP, *cmd], env=env, capture_output=True, text=True, cwd=REPO)
    last = p.stderr.strip().splitlines()[-1].split()
    code, wall, kib = int(last[1]), float(last[2]), int(last[3])
    if code not in (0, 1):
        print(p.stdout[-3000:], p.stderr[-3000:])
        raise SystemExit(f"{' '.join(cmd[2:])} failed ({code})")
    return wall, kib / 1024.0, p.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=400_000)
    ap.add_argument("--keep", metavar="DIR", help="Keep the database and reports in DIR.")
    a = ap.parse_args()
    work = Path(a.keep or tempfile.mkdtemp(prefix="srdose-bench-report-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "bench.sqlite"
    url = f"sqlite:///{db}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SRDOSE_")},
        "SRDOSE_DATA_DIR": str(work / "data"),
    }
    base = [sys.executable, "-m", "srdose", "--db", url]
    print(f"Python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} CPUs")
    if not db.exists():
        t0 = time.perf_counter()
        serial = build_db(url, a.events)
        subprocess.run(base + ["physics", "import", str(EXAMPLE)], env=env, check=True, capture_output=True, cwd=REPO)
        subprocess.run(base + ["recalc"], env=env, check=True, capture_output=True, cwd=REPO)
        (work / "busiest").write_text(serial)
        print(f"  built and recalculated in {time.perf_counter() - t0:.0f} s ({db})")
    serial = (work / "busiest").read_text()
    period = ["--from", "2025-01-01", "--to", "2025-12-31"]
    results = []
    for name, args in (
        ("peer: srdose export events (csv)", ["export", "events", "--out", str(work / "events.csv"), *period]),
        (
            "srdose report qa (busiest unit)",
            ["report", "qa", "--unit", serial, *period, "--out", str(work / "reports")],
        ),
        ("srdose report survey (all units)", ["report", "survey", *period, "--out", str(work / "reports")]),
    ):
        wall, peak, _ = timed(base + args, env)
        results.append((name, wall, peak))
    import csv

    with open(work / "events.csv", newline="") as fh:
        n = sum(1 for _ in csv.reader(fh)) - 1
    with open(work / "events.csv", newline="") as fh:
        n_unit = sum(1 for r in csv.DictReader(fh) if r["device_serial"] == serial)
    print(f"\n{n:,} events in the period; the QA unit {serial} has {n_unit:,}")
    print(f"{'command':40s} {'wall (s)':>9s} {'peak RSS (MiB)':>15s}   targets: <= 10 s, <= 1024 MiB")
    for name, wall, peak in results:
        ok = "ok" if wall <= 10 and peak <= 1024 else "OVER TARGET"
        print(f"{name:40s} {wall:9.1f} {peak:15.0f}   {ok if 'peer' not in name else ''}")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
