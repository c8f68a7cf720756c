"""Ingest: DICOM files or received datasets → parse → store, or quarantine.

:class:`Ingestor` is what ``srdose ingest`` and the listener's worker share.
A dataset either ends in the database or in the quarantine folder with its
reason; nothing stops the run.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from srdose.parse import Refused, read_bytes
from srdose.quarantine import QuarantineFolder
from srdose.store import DoseStore, Outcome

log = logging.getLogger("srdose.ingest")

#: Names that are never dose objects in a DICOM folder.
SKIP_NAMES = {"DICOMDIR", ".DS_Store", "Thumbs.db"}
#: In a folder walk, files with these suffixes are documentation or data
#: beside the DICOM files, not DICOM: they are skipped, not quarantined.
#: (DICOM files often have no suffix at all; a file named on the command
#: line is always tried.)
NON_DICOM_SUFFIXES = {".md", ".txt", ".json", ".csv", ".tsv", ".toml", ".xml", ".html", ".htm",
                      ".pdf", ".py", ".sh", ".ini", ".log", ".xlsx", ".zip", ".gz", ".npz", ".png", ".jpg"}


@dataclass
class Summary:
    """Counts for the end-of-run summary."""

    outcomes: Counter = field(default_factory=Counter)
    quarantined: Counter = field(default_factory=Counter)
    events: int = 0
    files: int = 0

    @property
    def n_quarantined(self) -> int:
        return sum(self.quarantined.values())

    def merge(self, other: "Summary") -> None:
        self.outcomes.update(other.outcomes)
        self.quarantined.update(other.quarantined)
        self.events += other.events
        self.files += other.files


@dataclass
class Result:
    """What happened to one dataset."""

    outcome: str  # an Outcome value, or "quarantined"
    sop_instance_uid: Optional[str] = None
    events: int = 0
    reason: Optional[str] = None
    kind: Optional[str] = None


def bug_reason(exc: BaseException) -> str:
    return (f"srdose failed on this dataset ({type(exc).__name__}: {str(exc)[:200]}); "
            "this is a bug in srdose: please report it with this file")


def iter_files(paths: Iterable[os.PathLike]) -> Iterator[Path]:
    """Files under ``paths`` (files or folders, recursively), in a stable order."""
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for root, dirs, names in os.walk(p):
                dirs.sort()
                for name in sorted(names):
                    if (name in SKIP_NAMES or name.startswith(".")
                            or Path(name).suffix.lower() in NON_DICOM_SUFFIXES):
                        continue
                    yield Path(root) / name
        elif p.exists():
            yield p
        else:
            raise FileNotFoundError(f"{p} does not exist")


class Ingestor:
    """Parses datasets and writes them to a :class:`DoseStore`.

    Parameters
    ----------
    store
        The database, with a pseudonymiser.
    quarantine
        Where refused datasets go.
    batch_size
        Datasets per transaction. Each dataset is written inside a SAVEPOINT,
        so one failing write rolls back only itself.
    """

    def __init__(self, store: DoseStore, quarantine: QuarantineFolder, batch_size: int = 200,
                 hooks=None):
        self.store = store
        self.quarantine = quarantine
        self.batch_size = max(1, int(batch_size))
        # issue #8: governance and curation steps (not-a-patient marking, infeasible-value
        # flags, re-identification mapping); default: from the settings in force
        if hooks is None:
            from srdose.governance.hooks import IngestHooks

            hooks = IngestHooks.current()
        self.hooks = hooks

    def _quarantine(self, conn, data: bytes, sha: str, exc_kind: str, reason: str,
                    origin: Optional[str], sop_uid: Optional[str] = None,
                    where: Optional[str] = None) -> Result:
        # the full path goes only in the quarantine note, beside the file it
        # names; the database gets the origin (PACS exports often name
        # folders after patients)
        stored = self.quarantine.put(data, sha, exc_kind, reason, where or origin)
        self.store.add_quarantine(conn, exc_kind, reason, sha, sop_uid, str(stored), origin)
        log.info("quarantined %s: %s", sha[:12], reason)
        return Result("quarantined", sop_uid, 0, reason, exc_kind)

    def ingest_one(self, conn, data: bytes, origin: Optional[str] = None,
                   what: str = "dataset", report=None, sha: Optional[str] = None,
                   where: Optional[str] = None) -> Result:
        """Parse and store one dataset inside the caller's transaction.

        ``report`` and ``sha`` may be passed when the caller (the listener)
        has already parsed the dataset, so that it is not parsed twice.
        """
        sha = sha or hashlib.sha256(data).hexdigest()
        if report is None:
            try:
                report = read_bytes(data, what)
            except Refused as exc:
                return self._quarantine(conn, data, sha, exc.kind, exc.reason, origin, where=where)
            except Exception as exc:  # a parser bug must not stop the run or lose the file
                log.exception("unexpected error parsing %s", sha[:12])
                return self._quarantine(conn, data, sha, "error", bug_reason(exc), origin, where=where)
        try:
            # issue #8: mark phantom studies and flag infeasible values while the patient
            # ID and name are still in clear (the store pseudonymises them)
            self.hooks.before_store(report)
            with conn.begin_nested():
                outcome = self.store.add(conn, report, sha, origin)
                # issue #8: encrypted pseudonym -> ID mapping, only when configured
                self.hooks.after_store(conn, self.store, report, outcome)
        except Exception as exc:
            log.exception("could not store %s", report.sop_instance_uid)
            return self._quarantine(
                conn, data, sha, "store_error",
                f"the database refused this dataset ({type(exc).__name__}: {str(exc)[:200]})",
                origin, report.sop_instance_uid, where=where)
        n_events = len(report.events) if outcome in (Outcome.INGESTED, Outcome.REPLACED) else 0
        return Result(outcome.value, report.sop_instance_uid, n_events)

    def ingest_paths(self, paths: Iterable[os.PathLike],
                     progress: Optional[Callable[[Path, Result], None]] = None) -> Summary:
        """Ingest every file under ``paths``; ``progress`` is called per file."""
        summary = Summary()
        files = list(iter_files(paths))
        for start in range(0, len(files), self.batch_size):
            batch = files[start:start + self.batch_size]
            with self.store.begin() as conn:
                for path in batch:
                    try:
                        data = path.read_bytes()
                    except OSError as exc:
                        result = Result("unreadable", reason=f"cannot read {path}: {exc.strerror}",
                                        kind="unreadable")
                    else:
                        # no file name in reasons or in the database: names can identify
                        result = self.ingest_one(conn, data, origin="file", what="file",
                                                 where=str(path))
                    summary.files += 1
                    summary.events += result.events
                    if result.outcome in ("quarantined", "unreadable"):
                        summary.quarantined[result.kind] += 1
                    else:
                        summary.outcomes[result.outcome] += 1
                    if progress:
                        progress(path, result)
        return summary
