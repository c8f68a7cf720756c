"""The ingest worker: takes spooled datasets off the network threads and
commits them to the database in small batches (group commit).

A batch the database refuses is taken apart: each dataset is tried in a
transaction of its own, so that one dataset the database cannot hold is
quarantined with the database's reason and the others commit. An error
that says the database itself is unavailable (connection lost, disk full,
locked) is retried with a growing pause and never quarantines anything; the
datasets stay in the spool meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from srdose.config import RecalcSettings
from srdose.ingest import Ingestor
from srdose.physics.factors import FactorSet
from srdose.quarantine import write_durably
from srdose.recalc.engine import Params
from srdose.recalc.run import resolve_factor_set, run
from srdose.spool import Spool
from srdose.store.database import is_transient, raced
from srdose.vocab import NEW_EVENTS, Outcome, RefusalKind

log = logging.getLogger("srdose.listen")

#: Times a batch is tried at once when another writer stored the same unit, study or object
#: (then it waits like any other transient failure).
RACE_ATTEMPTS = 3


def _lock_order(item: Received) -> tuple[str, str, str, str]:
    """The order in which a batch takes its units' and studies' row locks."""
    report = item.report
    if report is None:
        return ("", "", "", "")
    d = report.device  # type: ignore[attr-defined]
    return (d.manufacturer or "", d.model or "", d.serial or "", report.study.study_instance_uid or "")  # type: ignore[attr-defined]


@dataclass
class Received:
    """A dataset the listener has taken responsibility for."""

    path: Path | None  # in the spool; None when it was refused (already quarantined)
    origin: str  # "dicom:<calling AE>"
    report: object  # the parsed DoseReport, or None to parse from the file
    sha256: str
    kind: str | None = None  # a RefusalKind, when refused
    reason: str | None = None
    sop_instance_uid: str | None = None


class IngestSink(Protocol):
    """What the listener hands its datasets to: an :class:`IngestWorker`, or the
    :class:`srdose.receive.process.IngestProcess` that runs one in a child process."""

    def submit(self, item: Received) -> None: ...

    def alive(self) -> bool: ...


def transient(exc: BaseException) -> bool:
    """The database is unavailable (rather than refusing this dataset), or the spool or
    quarantine folder cannot be written: retried, never a reason to quarantine."""
    return is_transient(exc) or isinstance(exc, OSError)


def _db_text(value: str | None, limit: int) -> str | None:
    """Text as every database column takes it (PostgreSQL refuses NUL)."""
    if value is None:
        return None
    return "".join(ch if ch >= " " or ch in "\t\n" else "?" for ch in str(value))[:limit] or None


class AfterIngestRecalc:
    """Recalculates the MGD of newly ingested events, so that the database
    is always current without a manual ``srdose recalc``.

    Cheap: only the units and study dates just ingested are selected, and
    :func:`srdose.recalc.run.run` skips events already up to date; during a
    burst it runs at most every ``interval`` seconds.
    """

    def __init__(self, store, section: RecalcSettings, interval: float = 2.0):
        self.store = store
        self.section = section
        self.interval = interval
        self.wanted: dict[str | None, str | None] = {}  # serial -> earliest study date
        self._last = 0.0
        self._setup: tuple[FactorSet, Params] | None = None

    def note(self, report) -> None:
        if report is None:  # recovered from the spool, not parsed here: whatever is new
            self.wanted[None] = None
            return
        serial = report.device.serial or None
        day = report.study.study_date or None
        if serial is None or day is None:
            key, day = (serial, None) if serial else (None, None)
            self.wanted[key] = None
            return
        if serial in self.wanted:
            earlier = self.wanted[serial]
            self.wanted[serial] = None if earlier is None else min(earlier, day)
        else:
            self.wanted[serial] = day

    def due(self, idle: bool) -> bool:
        return bool(self.wanted) and (idle or time.monotonic() - self._last >= self.interval)

    def run(self) -> None:
        wanted, self.wanted = self.wanted, {}
        self._last = time.monotonic()
        try:
            if self._setup is None:
                self._setup = (
                    resolve_factor_set(self.store, self.section.default_factor_set),
                    Params.from_settings(self.section),
                )
            factor_set, params = self._setup
            if None in wanted:  # a unit without serial or a recovered file: everything not yet current
                wanted = {None: wanted[None]}
            for serial, since in wanted.items():
                summary = run(self.store, factor_set, params, serial=serial, since=since)
                if summary.computed:
                    log.info(
                        "recalculated the MGD of %d new event(s)%s",
                        summary.computed,
                        f" of unit {serial}" if serial else "",
                    )
        except Exception as exc:  # ingest goes on; `srdose recalc` catches up
            log.error(
                "recalculation after ingest failed (%s: %s); run `srdose recalc`", type(exc).__name__, str(exc)[:200]
            )


class IngestWorker:
    """One thread that ingests what the listener spooled.

    Parameters
    ----------
    ingestor
        Parses and writes datasets (it owns the database).
    spool
        Datasets leave it once their transaction has committed.
    status_file
        JSON file with counts and last-seen times per calling AE, for
        ``srdose status``; rewritten every few seconds.
    batch_size
        Datasets per transaction at most; a batch is whatever has arrived.
    owner_pid
        The listener's process, named in the status file so that ``srdose
        status`` can tell a running listener from a stopped one.
    recalc
        Optional :class:`AfterIngestRecalc`, run after committed batches.
    """

    def __init__(
        self,
        ingestor: Ingestor,
        spool: Spool,
        status_file: Path | None = None,
        batch_size: int = 64,
        owner_pid: int | None = None,
        recalc: AfterIngestRecalc | None = None,
    ):
        self.ingestor = ingestor
        self.spool = spool
        self.status_file = status_file
        self.batch_size = batch_size
        self.queue: queue.Queue[Received] = queue.Queue()
        self.counts: Counter = Counter()
        self.per_ae: dict[str, dict] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_status = 0.0
        self._lock = threading.Lock()
        self.owner_pid = owner_pid or os.getpid()
        self.recalc = recalc
        #: set while the database is unavailable and the worker waits to retry
        self.stalled = threading.Event()
        self._stopped_at: float | None = None
        #: called once per dataset after its transaction committed
        self.on_done: Callable[[], None] | None = None

    def submit(self, item: Received) -> None:
        ae = item.origin.split(":", 1)[-1]
        with self._lock:
            entry = self.per_ae.setdefault(ae, Counter())
            entry["received"] += 1
            entry["last_seen"] = time.time()
            self.counts["received"] += 1
        self.queue.put(item)

    def recover(self, progress=None) -> int:
        """Queue what the spool still holds from an earlier run; returns how many."""
        pending = self.spool.pending()
        for path in pending:
            self.queue.put(Received(path, "dicom:" + Spool.calling_ae(path), None, ""))
        return len(pending)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="srdose-ingest", daemon=True)
        self._thread.start()

    def stop(self, drain: bool = True, timeout: float = 600) -> None:
        """Stop after ingesting everything queued (when ``drain``), for at
        most ``timeout`` seconds and not while the database is unavailable:
        what is left stays in the spool for the next start."""
        if drain:
            deadline = time.monotonic() + timeout
            while (
                self.queue.unfinished_tasks
                and time.monotonic() < deadline
                and not self.stalled.is_set()
                and self.alive()
            ):
                time.sleep(0.05)
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
        if self.recalc is not None and self.recalc.wanted and not self.stalled.is_set():
            self.recalc.run()
        self._stopped_at = time.time()
        self.write_status()

    def idle(self) -> bool:
        return self.queue.unfinished_tasks == 0

    def alive(self) -> bool:
        """Can datasets handed over now still be ingested?"""
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def _take_batch(self) -> list[Received]:
        try:
            first = self.queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        while len(batch) < self.batch_size:
            try:
                batch.append(self.queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            batch = self._take_batch()
            if not batch:
                self._after_commit(idle=True)
                self._maybe_write_status()
                continue
            results: Sequence[str | None] | None
            try:
                results = self._ingest(batch)
            except Exception as exc:
                if transient(exc):
                    results = None
                else:  # the database refuses something in this batch: find it, commit the rest
                    log.warning(
                        "a batch of %d failed (%s: %s); ingesting its datasets one by one",
                        len(batch),
                        type(exc).__name__,
                        str(exc)[:200],
                    )
                    results = [self._ingest_alone(item) for item in batch]
                if results is None or None in results:
                    err = exc if results is None else "database unavailable"
                    log.error(
                        "database unavailable, will retry in %.1f s (%s)",
                        backoff,
                        f"{type(err).__name__}: {str(err)[:200]}" if isinstance(err, Exception) else err,
                    )
                    left = batch if results is None else [i for i, r in zip(batch, results) if r is None]
                    done = [] if results is None else [(i, r) for i, r in zip(batch, results) if r is not None]
                    self._finish(done)
                    for item in left:  # stay in the spool; behind what has arrived since
                        self.queue.put(item)
                        self.queue.task_done()
                    self.stalled.set()
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 30)
                    continue
            self.stalled.clear()
            backoff = 0.5
            self._finish(list(zip(batch, results)))
            # not idle because the queue is empty now: one sender's next dataset is on its way
            # (a round trip), and recalculating after each of its datasets took more of the
            # machine than receiving them; idle is a pause in the arrivals (see _take_batch)
            self._after_commit(idle=False)
            self._maybe_write_status()

    def _finish(self, done: list) -> None:
        # committed: only now may the datasets leave the spool
        for item, result in done:
            # a missing file is left as found: the item itself stays as it was, so that a batch
            # tried again (another writer's race) sees it as it first did
            if item.path is not None and result != Outcome.MISSING:
                try:
                    self.spool.done(item.path)
                except OSError as exc:
                    log.error("cannot clear %s from the spool: %s", item.path.name, exc)
            with self._lock:
                self.counts[result] += 1
                ae = item.origin.split(":", 1)[-1]
                self.per_ae.setdefault(ae, Counter())[result] += 1
            if self.recalc is not None and result in NEW_EVENTS:
                self.recalc.note(item.report)
            self.queue.task_done()
            if self.on_done:
                self.on_done()

    def _after_commit(self, idle: bool) -> None:
        if self.recalc is not None and self.recalc.due(idle):
            self.recalc.run()

    def _ingest_alone(self, item: Received) -> str | None:
        """One dataset in a transaction of its own: its outcome, or None when
        the database is unavailable (to be retried)."""
        try:
            return self._ingest([item])[0]
        except Exception as exc:
            if transient(exc):
                return None
            return self._quarantine_refused_by_database(item, exc)

    def _quarantine_refused_by_database(self, item: Received, exc: Exception) -> str | None:
        reason = _db_text(f"the database refused this dataset ({type(exc).__name__}: {str(exc)[:300]})", 1000)
        assert reason is not None  # a non-empty text stays non-empty
        log.error("quarantining %s: %s", item.path.name if item.path else item.sha256[:12], reason)
        try:
            if item.path is not None and self.spool.is_refusal(item.path):
                note = self.spool.read_refusal(item.path)
                stored, sha = note.get("stored_as"), note.get("sha256")
            elif item.path is not None:
                data = item.path.read_bytes()
                sha = item.sha256 or hashlib.sha256(data).hexdigest()
                stored = str(self.ingestor.quarantine.put(data, sha, RefusalKind.STORE_ERROR, reason, item.origin))
            else:
                stored, sha = None, item.sha256
        except FileNotFoundError:
            return Outcome.MISSING
        except (OSError, ValueError) as err:
            log.error("cannot quarantine %s: %s; it stays in the spool", item.path, err)
            return None
        try:
            with self.ingestor.store.begin() as conn:
                self.ingestor.store.add_quarantine(
                    conn,
                    RefusalKind.STORE_ERROR.value,
                    reason,
                    _db_text(sha, 64),
                    None,
                    _db_text(stored, 1024),
                    _db_text(item.origin, 256),
                )
        except Exception as err:
            if transient(err):
                return None
            # the dataset and its note are in the quarantine folder: nothing is lost
            log.error("cannot record the quarantine of %s in the database (%s)", stored, err)
        return Outcome.QUARANTINED

    def _ingest(self, batch: list[Received]) -> list[str]:
        """One transaction for ``batch``; tried again at once when another writer stored one of
        its units, studies or objects at the same moment."""
        for attempt in range(1, RACE_ATTEMPTS + 1):
            try:
                return self._ingest_once(batch)
            except Exception as exc:
                if not raced(exc) or attempt == RACE_ATTEMPTS:
                    raise
                log.info("another writer stored a unit, study or object of this batch at the same moment; again")
        raise AssertionError("unreachable")

    def _ingest_once(self, batch: list[Received]) -> list[str]:
        # units and studies are locked in one order by every writer (no deadlock between two
        # listeners on one database); the results keep the batch's order
        order = sorted(range(len(batch)), key=lambda i: _lock_order(batch[i]))
        results: list[str] = [""] * len(batch)
        with self.ingestor.store.begin() as conn:
            for i in order:
                results[i] = self._ingest_item(conn, batch[i])
        return results

    def _ingest_item(self, conn, item: Received) -> str:
        if item.path is None or self.spool.is_refusal(item.path):  # refused at the door: record why
            return self._record_refusal(conn, item)
        try:
            data = item.path.read_bytes()
        except FileNotFoundError:  # cleared by another process already
            return Outcome.MISSING
        result = self.ingestor.ingest_one(
            conn, data, item.origin, item.path.name, report=item.report, sha=item.sha256 or None
        )
        return result.outcome

    def _record_refusal(self, conn, item: Received) -> str:
        if item.path is None:
            note = {
                "kind": item.kind,
                "reason": item.reason,
                "sha256": item.sha256,
                "sop_instance_uid": item.sop_instance_uid,
                "stored_as": str(self.ingestor.quarantine.root / f"{item.sha256}.dcm"),
            }
        else:
            try:
                note = self.spool.read_refusal(item.path)
            except FileNotFoundError:
                return Outcome.MISSING
            except (OSError, ValueError) as exc:
                note = {
                    "kind": RefusalKind.ERROR.value,
                    "reason": f"refused at the door; its note is unreadable ({exc})",
                }
        self.ingestor.store.add_quarantine(
            conn,
            _db_text(note.get("kind"), 32) or RefusalKind.ERROR.value,
            _db_text(note.get("reason"), 4000) or "refused",
            _db_text(note.get("sha256"), 64),
            note.get("sop_instance_uid"),
            _db_text(note.get("stored_as"), 1024),
            _db_text(item.origin, 256),
        )
        return Outcome.QUARANTINED

    def _maybe_write_status(self) -> None:
        if time.monotonic() - self._last_status > 2.0:
            self.write_status()

    def write_status(self) -> None:
        self._last_status = time.monotonic()
        if self.status_file is None:
            return
        with self._lock:
            doc = {
                "updated": time.time(),
                "pid": self.owner_pid,
                "stopped": self._stopped_at,
                "counts": dict(self.counts),
                "per_calling_ae": {k: dict(v) for k, v in self.per_ae.items()},
                "queued": self.queue.unfinished_tasks,
            }
        try:
            write_durably(self.status_file, json.dumps(doc, indent=1).encode())
        except OSError as exc:
            log.warning("cannot write %s: %s", self.status_file, exc)
