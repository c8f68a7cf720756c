"""Write N synthetic screening events straight into a srdose database, fast.

    python bench/seed_events.py --db sqlite:////tmp/big.sqlite [--events 1000000]
    python bench/seed_events.py --db postgresql+psycopg://user@127.0.0.1:5432/srdose --events 10000000

Ingesting a million RDSRs would measure the parser, not what the database holds, so this goes
in two steps:

1. templates: synthetic RDSRs of ~40 units of the five vendors (``srdose.synth``) are ingested
   through the normal path into a scratch SQLite database, the example physics file is imported
   for the Hologic unit 0 (method ``measured`` there, ``rdsr`` elsewhere) and ``srdose recalc``
   computes every MGD: realistic techniques, vendor quirks, flags and recalculation results;
2. replication: whole template studies are copied in bulk (SQLAlchemy Core ``insert()``
   executemany in chunks) into the target database after ``srdose.store.database.upgrade``, each
   copy a new study, source object, pseudonym and date (weekdays over ``--years`` up to
   ``--end``), its events, filters, pulses, accumulated doses and recalculation results. Units
   get unequal workloads (a lognormal share), as in a real programme.

The result is a database ``srdose serve``, ``srdose report`` and ``srdose recalc`` accept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import event, func, insert, select, text, update  # noqa: E402
from sqlalchemy.engine import Connection, Engine  # noqa: E402

from srdose import synth  # noqa: E402
from srdose.ingest import Ingestor  # noqa: E402
from srdose.pseudonym import Pseudonymiser  # noqa: E402
from srdose.quarantine import QuarantineFolder  # noqa: E402
from srdose.store import DoseStore  # noqa: E402
from srdose.store import models as M  # noqa: E402
from srdose.store.database import make_engine, upgrade  # noqa: E402

EXAMPLE_PHYSICS = REPO / "sample_data" / "physics" / "example_synthetic_hologic_unit0.csv"

#: Tables copied as they are from the templates (ids kept: nothing else refers to them by value).
_AS_IS = (M.Device, M.FactorSetRecord, M.PhysicsSet, M.PhysicsPoint)


@dataclass
class SeedSummary:
    events: int
    studies: int
    seconds: float
    template_seconds: float
    devices: int

    @property
    def rate(self) -> float:
        return self.events / max(self.seconds, 1e-9)


@dataclass
class _Template:
    study: dict
    source: dict
    events: list[dict]
    recalc: list[dict | None]
    filters: list[list[dict]]
    pulses: list[list[dict]]
    doses: list[dict]


def _cli(db_url: str, data_dir: Path, *args: str) -> None:
    # the srdose of the checkout this script is in, whatever is installed
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "SRDOSE_DATA_DIR": str(data_dir), "PYTHONPATH": path}
    env.pop("SRDOSE_CONFIG", None)
    env.pop("SRDOSE_DATABASE_URL", None)
    subprocess.run(
        [sys.executable, "-m", "srdose", "--db", db_url, *args],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=data_dir,
    )


def build_templates(work: Path, units_per_vendor: int, studies_per_unit: int, seed: int) -> str:
    """A scratch SQLite database of ingested, recalculated synthetic studies; returns its URL."""
    src = work / "rdsr"
    url = f"sqlite:///{work / 'templates.sqlite'}"
    store = DoseStore(url, Pseudonymiser(secrets.token_bytes(64)))
    for i, vendor in enumerate(synth.VENDORS):
        synth.generate(vendor, units_per_vendor * studies_per_unit, src, seed=seed + i, units=units_per_vendor)
    Ingestor(store, QuarantineFolder(work / "quarantine")).ingest_paths(sorted(src.glob("*.dcm")))
    store.close()
    shutil.rmtree(src, ignore_errors=True)
    _cli(url, work, "physics", "import", str(EXAMPLE_PHYSICS))
    _cli(url, work, "recalc")
    return url


def _rows(conn: Connection, model: Any) -> list[dict]:
    return [dict(r._mapping) for r in conn.execute(select(model.__table__))]


def load_templates(url: str) -> tuple[dict[type, list[dict]], list[_Template]]:
    """The tables copied as they are, and every live study with what hangs off it."""
    engine = make_engine(url)
    with engine.connect() as conn:
        as_is: dict[type, list[dict]] = {model: _rows(conn, model) for model in _AS_IS}
        studies = {r["id"]: r for r in _rows(conn, M.Study)}
        sources = {r["study_id"]: r for r in _rows(conn, M.SourceObject) if r["superseded_by"] is None}
        recalc = {r["event_id"]: r for r in _rows(conn, M.RecalcResult)}
        filters: dict[int, list[dict]] = {}
        for r in _rows(conn, M.Filter):
            filters.setdefault(r["event_id"], []).append(r)
        pulses: dict[int, list[dict]] = {}
        for r in _rows(conn, M.Pulse):
            pulses.setdefault(r["event_id"], []).append(r)
        doses: dict[int, list[dict]] = {}
        for r in _rows(conn, M.AccumulatedDose):
            doses.setdefault(r["source_object_id"], []).append(r)
        events: dict[int, list[dict]] = {}
        live = {s["id"] for s in sources.values()}
        for r in _rows(conn, M.Event):
            if r["source_object_id"] in live:
                events.setdefault(r["study_id"], []).append(r)
    engine.dispose()
    templates = []
    for study_id, evs in sorted(events.items()):
        src = sources[study_id]
        evs.sort(key=lambda e: e["id"])
        templates.append(
            _Template(
                study=studies[study_id],
                source=src,
                events=evs,
                recalc=[recalc.get(e["id"]) for e in evs],
                filters=[filters.get(e["id"], []) for e in evs],
                pulses=[pulses.get(e["id"], []) for e in evs],
                doses=doses.get(src["id"], []),
            )
        )
    return as_is, templates


def _weekdays(end: dt.date, years: float) -> list[dt.date]:
    start = end - dt.timedelta(days=round(365.25 * years))
    days = (start + dt.timedelta(days=k) for k in range((end - start).days + 1))
    return [d for d in days if d.weekday() < 5]


def _reset_sequences(conn: Connection) -> None:
    """PostgreSQL: the serial sequences behind the explicit ids written here."""
    if conn.dialect.name != "postgresql":
        return
    for model in (M.Device, M.Study, M.SourceObject, M.Event, M.Filter, M.Pulse, M.AccumulatedDose, *_AS_IS[1:]):
        table = model.__tablename__
        conn.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
            )
        )


def seed(
    url: str,
    n_events: int = 1_000_000,
    *,
    units_per_vendor: int = 8,
    studies_per_unit: int = 30,
    years: float = 3.0,
    end: dt.date | None = None,
    seed_value: int = 1,
    chunk: int = 20_000,
    details: bool = True,
    progress: Callable[[str], None] = print,
) -> SeedSummary:
    """Fill the srdose database at ``url`` (new or empty) with about ``n_events`` live events.

    ``details`` False leaves out pulses, filters and accumulated doses (only the study page shows
    them), which roughly halves the time at 10 M events.
    """
    end = end or dt.date.today()
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="srdose-seed-"))
    try:
        as_is, templates = load_templates(build_templates(work, units_per_vendor, studies_per_unit, seed_value))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    t_templates = time.monotonic() - t0
    n_template_events = sum(len(t.events) for t in templates)
    progress(
        f"templates: {len(templates)} studies, {n_template_events} events, "
        f"{len(as_is[M.Device])} units in {t_templates:.1f} s\n"
    )

    engine: Engine = make_engine(url)
    if engine.dialect.name == "sqlite":
        # a crash while seeding loses only a benchmark database
        event.listen(engine, "connect", lambda dbapi_conn, _rec: dbapi_conn.execute("PRAGMA synchronous=OFF"))
    upgrade(engine)
    with engine.connect() as conn:
        if conn.execute(select(func.count()).select_from(M.Device)).scalar_one():
            raise SystemExit(f"{url}: the database holds units already; seed a new one")
    rng = np.random.default_rng(seed_value)
    by_device: dict[int, list[_Template]] = {}
    for t in templates:
        by_device.setdefault(t.study["device_id"], []).append(t)
    device_ids = sorted(by_device)
    # busy and quiet units: a lognormal share of the studies
    share = rng.lognormal(0.0, 0.5, len(device_ids))
    share /= share.sum()
    days = _weekdays(end, years)
    now = dt.datetime.now().replace(microsecond=0)
    uid_root = f"2.25.{int(rng.integers(10**8, 10**9))}"
    ev_skip = {"id", "source_object_id", "study_id", "event_uid", "datetime_started"}

    started = time.monotonic()
    written = studies = 0
    first_seen: dict[int, dt.datetime] = {}
    last_seen: dict[int, dt.datetime] = {}
    with engine.begin() as conn:
        for model in _AS_IS:
            if as_is[model]:
                conn.execute(insert(model), as_is[model])
    next_id = {"study": 1, "source": 1, "event": 1}
    while written < n_events:
        st_rows: list[dict] = []
        so_rows: list[dict] = []
        ev_rows: list[dict] = []
        rc_rows: list[dict] = []
        fi_rows: list[dict] = []
        pu_rows: list[dict] = []
        ad_rows: list[dict] = []
        picks = rng.choice(len(device_ids), size=max(1, chunk // 4), p=share)
        day_picks = rng.integers(0, len(days), size=len(picks))
        for pick, day_index in zip(picks, day_picks):
            if written >= n_events or len(ev_rows) >= chunk:
                break
            device = device_ids[pick]
            pool = by_device[device]
            t = pool[int(rng.integers(len(pool)))]
            day = days[int(day_index)]
            ymd = day.strftime("%Y%m%d")
            sid, soid = next_id["study"], next_id["source"]
            next_id["study"] += 1
            next_id["source"] += 1
            st_rows.append(
                {
                    **{k: v for k, v in t.study.items() if k != "id"},
                    "id": sid,
                    "study_instance_uid": f"{uid_root}.1.{sid}",
                    "study_date": ymd,
                    "patient_pseudonym": secrets.token_hex(16),
                    "accession_pseudonym": secrets.token_hex(16),
                }
            )
            hhmmss = (t.study["study_time"] or "090000")[:6].ljust(6, "0")
            received = dt.datetime.combine(day, dt.time(int(hhmmss[:2]), int(hhmmss[2:4]))) + dt.timedelta(minutes=10)
            first_seen[device] = min(first_seen.get(device, received), received)
            last_seen[device] = max(last_seen.get(device, received), received)
            so_rows.append(
                {
                    **{k: v for k, v in t.source.items() if k != "id"},
                    "id": soid,
                    "sop_instance_uid": f"{uid_root}.2.{soid}",
                    "study_id": sid,
                    "sha256": secrets.token_hex(32),
                    "content_sha256": secrets.token_hex(32),
                    "received_at": received,
                    "superseded_by": None,
                }
            )
            for e, rc, fis, pus in zip(t.events, t.recalc, t.filters, t.pulses):
                eid = next_id["event"]
                next_id["event"] += 1
                start = e["datetime_started"]
                ev_rows.append(
                    {
                        **{k: v for k, v in e.items() if k not in ev_skip},
                        "id": eid,
                        "source_object_id": soid,
                        "study_id": sid,
                        "event_uid": f"{uid_root}.3.{eid}",
                        "study_date": ymd,  # the events carry their study's date and time
                        "study_time": t.study["study_time"],
                        # the template's time of day on the new study date
                        "datetime_started": ymd + start[8:] if start else None,
                    }
                )
                if rc is not None:
                    rc_rows.append({**rc, "event_id": eid, "computed_at": now})
                if details:
                    fi_rows += [{**{k: v for k, v in f.items() if k != "id"}, "event_id": eid} for f in fis]
                    pu_rows += [{**{k: v for k, v in p.items() if k != "id"}, "event_id": eid} for p in pus]
                written += 1
            if details:
                ad_rows += [
                    {**{k: v for k, v in a.items() if k != "id"}, "source_object_id": soid, "study_id": sid}
                    for a in t.doses
                ]
            studies += 1
        with engine.begin() as conn:
            conn.execute(insert(M.Study), st_rows)
            conn.execute(insert(M.SourceObject), so_rows)
            conn.execute(insert(M.Event), ev_rows)
            if rc_rows:
                conn.execute(insert(M.RecalcResult), rc_rows)
            details_rows: tuple[tuple[Any, list[dict]], ...] = (
                (M.Filter, fi_rows),
                (M.Pulse, pu_rows),
                (M.AccumulatedDose, ad_rows),
            )
            for detail, rows in details_rows:
                for k in range(0, len(rows), chunk):
                    conn.execute(insert(detail), rows[k : k + chunk])
        elapsed = time.monotonic() - started
        progress(f"\r{written:,} events, {studies:,} studies: {written / max(elapsed, 1e-9):,.0f} events/s")
    with engine.begin() as conn:
        for device, first in first_seen.items():
            conn.execute(
                update(M.Device).where(M.Device.id == device).values(first_seen=first, last_seen=last_seen[device])
            )
        _reset_sequences(conn)
    seconds = time.monotonic() - started
    # the planner's statistics, as srdose takes them after a bulk ingest, and on PostgreSQL the
    # visibility map that index-only scans need, as autovacuum sets it a while after a bulk load
    # (not counted in the rate)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")  # not in a transaction
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return SeedSummary(written, studies, seconds, t_templates, len(as_is[M.Device]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", required=True, help="SQLAlchemy URL of a new or empty srdose database")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--units-per-vendor", type=int, default=8, help="units per vendor (five vendors)")
    ap.add_argument("--studies-per-unit", type=int, default=30, help="template studies per unit")
    ap.add_argument("--years", type=float, default=3.0, help="study dates over this many years up to --end")
    ap.add_argument("--end", type=dt.date.fromisoformat, default=None, help="last study date (default today)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=20_000, help="rows per executemany")
    ap.add_argument("--no-details", action="store_true", help="no pulses, filters or accumulated doses")
    a = ap.parse_args(argv)
    summary = seed(
        a.db,
        a.events,
        units_per_vendor=a.units_per_vendor,
        studies_per_unit=a.studies_per_unit,
        years=a.years,
        end=a.end,
        seed_value=a.seed,
        chunk=a.chunk,
        details=not a.no_details,
        progress=lambda line: print(line, end="", flush=True),
    )
    print()
    print(
        f"seeded {summary.events:,} events in {summary.studies:,} studies on {summary.devices} units: "
        f"{summary.seconds:.1f} s, {summary.rate:,.0f} events/s (templates {summary.template_seconds:.1f} s)"
    )


if __name__ == "__main__":
    main()
