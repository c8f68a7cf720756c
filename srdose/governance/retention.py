"""Retention: ``srdose purge --before DATE`` (or the configured retention period).

Removes, for studies dated before DATE (a study without a date: received
before it), the studies, their source objects, events, pulses, filters,
accumulated doses, recalculated doses and re-identification entries (when
the patient has no study left); quarantine records and files from before
DATE; and files older than DATE (by modification time) in the listener's
archive folder and its spool ``ingested`` folder. Datasets still waiting in
the spool are never removed (they are not ingested yet): they are counted
and reported. Devices, opt-outs and the audit trail are kept; the purge
itself is written to the audit trail with its counts.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from srdose.dates import parse_da, parse_day
from srdose.store.governance import purge_before


def resolve_before(before: str | None, retention_days: int, today: dt.date | None = None) -> str:
    """The cut-off date as YYYYMMDD: ``before`` (YYYY-MM-DD or YYYYMMDD), else today - retention."""
    if before:
        day = parse_day(before.strip())
        if day is None:
            raise ValueError(f"--before {before!r}: give a date as YYYY-MM-DD")
        return day.strftime("%Y%m%d")
    if retention_days and retention_days > 0:
        return ((today or dt.date.today()) - dt.timedelta(days=int(retention_days))).strftime("%Y%m%d")
    raise ValueError("no cut-off: give --before DATE or set [governance] retention_days")


def _old_files(folder: Path, cutoff: float, recursive: bool = True) -> list[Path]:
    if not folder.is_dir():
        return []
    it = folder.rglob("*") if recursive else folder.glob("*")
    return sorted(p for p in it if p.is_file() and p.stat().st_mtime < cutoff)


def purge(store, settings, before: str, dry_run: bool = False) -> dict:
    """Purge the database and files; returns counts (what was, or with dry_run would be, removed)."""
    counts = purge_before(store, before, dry_run=dry_run)
    day = parse_da(before)
    assert day is not None  # purge_before has read it
    cutoff = dt.datetime.combine(day, dt.time()).timestamp()
    quarantine_db_files = [Path(p) for p in counts.pop("quarantine_files")]
    qdir = settings.quarantine_dir
    files = {
        # files of removed quarantine records, their .json notes, and any older file there
        "quarantine": sorted(
            {
                *(p for p in quarantine_db_files if p.exists()),
                *(p.with_suffix(".json") for p in quarantine_db_files if p.with_suffix(".json").exists()),
                *_old_files(qdir, cutoff),
            }
        ),
        "archive": _old_files(settings.archive_dir, cutoff),
        "spool_ingested": _old_files(settings.spool_dir / "ingested", cutoff),
    }
    pending = [p for p in _old_files(settings.spool_dir, cutoff, recursive=False) if p.suffix == ".dcm"]
    removed_files = {}
    for kind, paths in files.items():
        n = 0
        for p in paths:
            if not dry_run:
                try:
                    p.unlink()
                except FileNotFoundError:
                    continue
            n += 1
        removed_files[kind] = n
    counts["files"] = removed_files
    counts["spool_pending_kept"] = len(pending)
    counts["before"] = before
    counts["dry_run"] = dry_run
    return counts
