"""Ingest: DICOM files or received datasets → parse → store, or quarantine.

:class:`Ingestor` is what ``srdose ingest`` and the listener's worker share.
A dataset either ends in the database or in the quarantine folder with its
reason; nothing stops the run.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing as mp
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from srdose import compat
from srdose.parse import Refused, read_bytes
from srdose.parse.records import DoseReport
from srdose.parse.workers import Parsed, parse_files, start_parse_worker
from srdose.quarantine import QuarantineFolder
from srdose.store import DoseStore, Outcome
from srdose.store.database import is_transient, raced
from srdose.vocab import RefusalKind

log = logging.getLogger("srdose.ingest")

#: Names that are never dose objects in a DICOM folder.
SKIP_NAMES = {"DICOMDIR", ".DS_Store", "Thumbs.db"}
#: In a folder walk, files with these suffixes are usually documentation or
#: data beside the DICOM files: they are read only when their first bytes are
#: DICOM (a dose report saved as ``rdsr.txt`` is still one), else skipped and
#: counted, not quarantined. Files with any other name are always tried, as
#: is a file named on the command line.
NON_DICOM_SUFFIXES = {
    ".md",
    ".txt",
    ".json",
    ".csv",
    ".tsv",
    ".toml",
    ".xml",
    ".html",
    ".htm",
    ".pdf",
    ".py",
    ".sh",
    ".ini",
    ".log",
    ".xlsx",
    ".zip",
    ".gz",
    ".npz",
    ".png",
    ".jpg",
}
#: Value representations a raw dataset's first element can have (explicit VR).
_VRS = {
    b"AE",
    b"AS",
    b"AT",
    b"CS",
    b"DA",
    b"DS",
    b"DT",
    b"FD",
    b"FL",
    b"IS",
    b"LO",
    b"LT",
    b"OB",
    b"OD",
    b"OF",
    b"OL",
    b"OV",
    b"OW",
    b"PN",
    b"SH",
    b"SL",
    b"SQ",
    b"SS",
    b"ST",
    b"SV",
    b"TM",
    b"UC",
    b"UI",
    b"UL",
    b"UN",
    b"UR",
    b"US",
    b"UT",
    b"UV",
}


def looks_like_dicom(head: bytes) -> bool:
    """Do these first bytes of a file start DICOM: the ``DICM`` mark at
    offset 128 (Part 10), or a raw dataset whose first element is in group
    0002 or 0008 (explicit VR with a known VR, or implicit VR)?"""
    if head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    group = int.from_bytes(head[0:2], "little")
    element = int.from_bytes(head[2:4], "little")
    if group not in (0x0002, 0x0008) or element > 0x1000:
        return False
    if head[4:6] in _VRS:
        return True
    # implicit VR: a 4-byte length that fits a header element
    return int.from_bytes(head[4:8], "little") < 0x10000


def is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return looks_like_dicom(fh.read(132))
    except OSError:
        return True  # let the ingest say it cannot read it


@dataclass
class Summary:
    """Counts for the end-of-run summary."""

    outcomes: Counter = field(default_factory=Counter)
    quarantined: Counter = field(default_factory=Counter)
    events: int = 0
    files: int = 0
    #: files of a folder walk left out because they are not DICOM
    skipped: int = 0

    @property
    def n_quarantined(self) -> int:
        return sum(self.quarantined.values())

    def merge(self, other: Summary) -> None:
        self.outcomes.update(other.outcomes)
        self.quarantined.update(other.quarantined)
        self.events += other.events
        self.files += other.files
        self.skipped += other.skipped


@dataclass
class Result:
    """What happened to one dataset."""

    outcome: str  # an Outcome value, or "quarantined"
    sop_instance_uid: str | None = None
    events: int = 0
    reason: str | None = None
    kind: str | None = None


class DatabaseUnavailable(RuntimeError):
    """The database kept failing for reasons that are not the data's (disk
    full, locked, unreachable): nothing of the batch was committed."""


#: Why a dataset reusing a SOP Instance UID is not stored.
CONFLICT_REASON = (
    "same SOP Instance UID as an object already stored, different content; the first one "
    "received is kept: the sending system has reused a UID (or changed the object)"
)


def bug_reason(exc: BaseException) -> str:
    return (
        f"srdose failed on this dataset ({type(exc).__name__}: {str(exc)[:200]}); "
        "this is a bug in srdose: please report it with this file"
    )


def iter_files(paths: Iterable[os.PathLike], skipped: list | None = None) -> Iterator[Path]:
    """Files under ``paths`` (files or folders, recursively), in a stable order.

    In a folder, hidden files, :data:`SKIP_NAMES` and files with a
    :data:`NON_DICOM_SUFFIXES` suffix that are not DICOM by content are left
    out, and appended to ``skipped`` when it is given.
    """
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for root, dirs, names in os.walk(p):
                dirs.sort()
                for name in sorted(names):
                    path = Path(root) / name
                    if (
                        name in SKIP_NAMES
                        or name.startswith(".")
                        or (Path(name).suffix.lower() in NON_DICOM_SUFFIXES and not is_dicom_file(path))
                    ):
                        if skipped is not None:
                            skipped.append(path)
                        continue
                    yield path
        elif p.exists():
            yield p
        else:
            raise FileNotFoundError(f"{p} does not exist")


class Hooks(Protocol):
    """Steps ingest runs around each store: governance and curation (see
    :class:`srdose.governance.hooks.IngestHooks`), given by the caller."""

    def before_store(self, report: DoseReport) -> None:
        """Called with the parsed report while its identifiers are still in clear."""

    def after_store(self, conn, store: DoseStore, report: DoseReport, outcome: Outcome) -> None:
        """Called inside the dataset's transaction once the store has written it."""


class NoHooks:
    """No governance or curation step: what an :class:`Ingestor` built without hooks runs."""

    def before_store(self, report: DoseReport) -> None:
        pass

    def after_store(self, conn, store: DoseStore, report: DoseReport, outcome: Outcome) -> None:
        pass


@dataclass
class Pending:
    """One dataset waiting for a transaction. Its bytes are read by ``load``
    when needed and not kept: a batch of whole MG images would not fit in memory."""

    load: Callable[[], bytes]
    origin: str | None = None
    what: str = "dataset"
    where: str | None = None
    report: object = None
    sha: str | None = None
    digest: str | None = None  # the report's content digest, when computed already
    #: fills in ``report``, ``sha`` and ``digest`` when the dataset's turn comes (a parse
    #: worker's result, waited for only then, so that writing starts with the first one)
    parsed: Callable[[], Parsed] | None = None

    def take_parsed(self) -> None:
        if self.parsed is not None:
            p, self.parsed = self.parsed(), None
            self.report, self.sha, self.digest = p.report, p.sha, p.digest


# --- parsing in worker processes ---------------------------------------------------

#: Files a parse worker takes at a time.
PARSE_CHUNK = 16
#: Below this many files, workers would take longer to start than they save.
PARALLEL_MIN_FILES = 100


def parsed_in_workers(files: list[Path], jobs: int, store: DoseStore, ahead: int) -> Generator[Parsed, None, None]:
    """Each file parsed (and its content digest computed) by one of ``jobs`` worker
    processes, yielded in the order of ``files``.

    The writer keeps the database to itself: the workers only read and parse. They parse
    at most about ``ahead`` files ahead of what the writer has taken (the writer takes a
    batch at a time, so this is two batches: the workers are never idle while it writes,
    and parsed reports never pile up).
    """
    chunks = [[str(f) for f in files[i : i + PARSE_CHUNK]] for i in range(0, len(files), PARSE_CHUNK)]
    pool = ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=mp.get_context("spawn"),  # nothing of the writer's (threads, connections) inherited
        initializer=start_parse_worker,
        initargs=(store.pseudonymiser, store.age_resolution_years),
    )
    try:
        pending: deque[Future] = deque()
        rest = iter(chunks)
        with compat.spawned_without_main_script():  # the workers start with these first chunks
            for chunk in rest:
                pending.append(pool.submit(parse_files, chunk))
                if len(pending) * PARSE_CHUNK >= max(ahead, jobs * PARSE_CHUNK):
                    break
        while pending:
            done = pending.popleft().result()
            nxt = next(rest, None)
            if nxt is not None:
                pending.append(pool.submit(parse_files, nxt))
            yield from done
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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
        so one failing write rolls back only itself; a batch whose
        transaction fails all the same is committed again one dataset at a
        time, so that only the dataset at fault is quarantined.
    hooks
        Governance and curation steps (not-a-patient marking, infeasible-value
        flags, re-identification mapping), built by the caller from its
        settings; None: none of them.
    retries, retry_wait
        A transient database error (disk full, locked, connection lost) is
        retried this many times, waiting ``retry_wait`` seconds, doubled each
        time; then :class:`DatabaseUnavailable` is raised. It never sends a
        dataset to quarantine.
    """

    def __init__(
        self,
        store: DoseStore,
        quarantine: QuarantineFolder,
        batch_size: int = 200,
        hooks: Hooks | None = None,
        retries: int = 5,
        retry_wait: float = 0.2,
    ):
        self.store = store
        self.quarantine = quarantine
        self.batch_size = max(1, int(batch_size))
        self.retries = max(1, int(retries))
        self.retry_wait = float(retry_wait)
        self.hooks: Hooks = hooks if hooks is not None else NoHooks()

    def _quarantine(
        self,
        conn,
        data: bytes,
        sha: str,
        exc_kind: str,
        reason: str,
        origin: str | None,
        sop_uid: str | None = None,
        where: str | None = None,
    ) -> Result:
        # the full path goes only in the quarantine note, beside the file it
        # names; the database gets the origin (PACS exports often name
        # folders after patients)
        stored = self.quarantine.put(data, sha, exc_kind, reason, where or origin)
        self.store.add_quarantine(conn, exc_kind, reason, sha, sop_uid, str(stored), origin)
        log.info("quarantined %s: %s", sha[:12], reason)
        return Result(Outcome.QUARANTINED.value, sop_uid, 0, reason, exc_kind)

    def ingest_one(
        self,
        conn,
        data: bytes,
        origin: str | None = None,
        what: str = "dataset",
        report=None,
        sha: str | None = None,
        where: str | None = None,
        digest: str | None = None,
    ) -> Result:
        """Parse and store one dataset inside the caller's transaction.

        ``report``, ``sha`` and ``digest`` may be passed when the caller (the
        listener, a parse worker) has already parsed the dataset, so that it is
        not parsed twice.

        Raises
        ------
        sqlalchemy.exc.OperationalError, OSError
            On a transient database error, or when the quarantine folder
            cannot be written: the caller's transaction must be retried, the
            dataset is not at fault. Everything else about the dataset ends
            in the database or in quarantine.
        """
        sha = sha or hashlib.sha256(data).hexdigest()
        if report is None:
            try:
                report = read_bytes(data, what)
            except Refused as exc:
                return self._quarantine(conn, data, sha, exc.kind, exc.reason, origin, where=where)
            except Exception as exc:  # a parser bug must not stop the run or lose the file
                log.exception("unexpected error parsing %s", sha[:12])
                return self._quarantine(conn, data, sha, RefusalKind.ERROR.value, bug_reason(exc), origin, where=where)
        try:
            # mark phantom studies and flag infeasible values while the patient
            # ID and name are still in clear (the store pseudonymises them)
            self.hooks.before_store(report)
            with conn.begin_nested():
                outcome = self.store.add(conn, report, sha, origin, digest=digest)
                # encrypted pseudonym -> ID mapping, only when configured
                self.hooks.after_store(conn, self.store, report, outcome)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.exception("could not store %s", report.sop_instance_uid)
            return self._quarantine(
                conn,
                data,
                sha,
                RefusalKind.STORE_ERROR.value,
                store_error_reason(exc),
                origin,
                report.sop_instance_uid,
                where=where,
            )
        if outcome == Outcome.CONFLICT:
            return self._quarantine(
                conn,
                data,
                sha,
                RefusalKind.CONFLICT.value,
                CONFLICT_REASON,
                origin,
                report.sop_instance_uid,
                where=where,
            )
        n_events = len(report.events) if outcome in (Outcome.INGESTED, Outcome.REPLACED) else 0
        return Result(outcome.value, report.sop_instance_uid, n_events)

    @staticmethod
    def _load(item: Pending):
        """(bytes, None), or (None, the Result of a file that cannot be read)."""
        try:
            return item.load(), None
        except OSError as exc:
            return None, Result(
                Outcome.UNREADABLE.value,
                reason=f"cannot read {item.where}: {exc.strerror}",
                kind=RefusalKind.UNREADABLE.value,
            )

    def _one(self, conn, item: Pending) -> Result:
        item.take_parsed()
        data, unreadable = self._load(item)
        if unreadable:
            return unreadable
        return self.ingest_one(
            conn, data, item.origin, item.what, report=item.report, sha=item.sha, where=item.where, digest=item.digest
        )

    def ingest_batch(self, items: list[Pending]) -> list[Result]:
        """Ingest ``items`` in one transaction and return once it has committed.

        A transient database error retries the batch (bounded, see the class);
        any other failure of the transaction commits the batch again one
        dataset at a time, and a dataset that fails alone is quarantined
        with the database's reason, in a transaction of its own.

        Raises
        ------
        DatabaseUnavailable
            When the database kept failing transiently.
        """
        wait = self.retry_wait
        for attempt in range(1, self.retries + 1):
            try:
                with self.store.begin() as conn:
                    return [self._one(conn, item) for item in items]
            except Exception as exc:
                if is_transient(exc) or isinstance(exc, OSError):
                    if raced(exc) and attempt < self.retries:
                        log.info(
                            "another writer stored a unit, study or object of this batch at the same moment; again"
                        )
                        continue
                    if attempt == self.retries:
                        raise DatabaseUnavailable(
                            f"the database or the quarantine folder kept failing ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); nothing of this batch "
                            "was lost: run the ingest again once it is back"
                        ) from exc
                    log.warning(
                        "transient failure, retrying in %.1f s (%s: %s)", wait, type(exc).__name__, str(exc)[:200]
                    )
                    time.sleep(wait)
                    wait *= 2
                    continue
                if len(items) > 1:
                    log.warning(
                        "a batch failed (%s: %s); committing its datasets one at a time",
                        type(exc).__name__,
                        str(exc)[:200],
                    )
                    return [result for item in items for result in self.ingest_batch([item])]
                return [self._isolate(items[0], exc)]
        raise AssertionError("unreachable")

    def _isolate(self, item: Pending, exc: BaseException) -> Result:
        """Quarantine a dataset whose transaction failed with it alone in it."""
        log.error("could not store a dataset (%s: %s)", type(exc).__name__, str(exc)[:200])
        data, unreadable = self._load(item)
        if unreadable:
            return unreadable
        sha = item.sha or hashlib.sha256(data).hexdigest()
        uid = getattr(item.report, "sop_instance_uid", None)
        with self.store.begin() as conn:
            return self._quarantine(
                conn,
                data,
                sha,
                RefusalKind.STORE_ERROR.value,
                store_error_reason(exc),
                item.origin,
                uid,
                where=item.where,
            )

    def ingest_paths(
        self,
        paths: Iterable[os.PathLike],
        progress: Callable[[Path, Result], None] | None = None,
        jobs: int = 1,
    ) -> Summary:
        """Ingest every file under ``paths``; ``progress`` is called per file
        once its transaction has committed. With ``jobs`` > 1 (and enough files),
        that many worker processes parse while this one writes."""
        summary = Summary()
        skipped: list = []
        files = list(iter_files(paths, skipped))
        summary.skipped = len(skipped)
        parallel = jobs > 1 and len(files) >= PARALLEL_MIN_FILES
        parsed = parsed_in_workers(files, jobs, self.store, 2 * self.batch_size) if parallel else None
        try:
            for start in range(0, len(files), self.batch_size):
                batch = files[start : start + self.batch_size]
                # no file name in reasons or in the database: names can identify
                items = [Pending(path.read_bytes, origin="file", what="file", where=str(path)) for path in batch]
                if parsed is not None:
                    for item in items:
                        item.parsed = parsed.__next__  # in order: each item takes the next result
                for path, result in zip(batch, self.ingest_batch(items)):
                    summary.files += 1
                    summary.events += result.events
                    if result.outcome in (Outcome.QUARANTINED, Outcome.UNREADABLE):
                        summary.quarantined[result.kind] += 1
                    else:
                        summary.outcomes[result.outcome] += 1
                    if progress:
                        progress(path, result)
        finally:
            if parsed is not None:
                parsed.close()  # stops the workers, also on an error
        return summary


def store_error_reason(exc: BaseException) -> str:
    return f"the database refused this dataset ({type(exc).__name__}: {str(exc)[:200]})"
