"""The ingest worker: takes spooled datasets off the network threads and
commits them to the database in small batches (group commit)."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from srdose.ingest import Ingestor
from srdose.quarantine import write_durably
from srdose.spool import Spool

log = logging.getLogger("srdose.listen")


@dataclass
class Received:
    """A dataset the listener has taken responsibility for."""

    path: Optional[Path]  # in the spool; None when it was refused (already quarantined)
    origin: str  # "dicom:<calling AE>"
    report: object  # the parsed DoseReport, or None to parse from the file
    sha256: str
    kind: Optional[str] = None  # refusal kind, when refused
    reason: Optional[str] = None
    sop_instance_uid: Optional[str] = None


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
    """

    def __init__(self, ingestor: Ingestor, spool: Spool, status_file: Optional[Path] = None,
                 batch_size: int = 64):
        self.ingestor = ingestor
        self.spool = spool
        self.status_file = status_file
        self.batch_size = batch_size
        self.queue: "queue.Queue[Received]" = queue.Queue()
        self.counts: Counter = Counter()
        self.per_ae: dict[str, dict] = {}
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._last_status = 0.0
        self._lock = threading.Lock()
        #: called once per dataset after its transaction committed
        self.on_done = None

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
        """Stop after ingesting everything queued (when ``drain``)."""
        if drain:
            deadline = time.monotonic() + timeout
            while self.queue.unfinished_tasks and time.monotonic() < deadline:
                time.sleep(0.05)
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
        self.write_status()

    def idle(self) -> bool:
        return self.queue.unfinished_tasks == 0

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
                self._maybe_write_status()
                continue
            try:
                results = self._ingest(batch)
            except Exception as exc:  # database down, disk full: keep the spool, retry
                log.error("ingest failed, will retry (%s: %s)", type(exc).__name__, str(exc)[:200])
                for item in batch:
                    self.queue.put(item)
                    self.queue.task_done()
                time.sleep(backoff)
                backoff = min(backoff * 2, 30)
                continue
            backoff = 0.5
            # committed: only now may the datasets leave the spool
            for item, result in zip(batch, results):
                if item.path is not None:
                    try:
                        self.spool.done(item.path)
                    except OSError as exc:
                        log.error("cannot clear %s from the spool: %s", item.path.name, exc)
                with self._lock:
                    self.counts[result] += 1
                    ae = item.origin.split(":", 1)[-1]
                    self.per_ae.setdefault(ae, Counter())[result] += 1
                self.queue.task_done()
                if self.on_done:
                    self.on_done()
            self._maybe_write_status()

    def _ingest(self, batch: list[Received]) -> list[str]:
        results = []
        with self.ingestor.store.begin() as conn:
            for item in batch:
                if item.path is None:  # refused at the door: record why
                    self.ingestor.store.add_quarantine(conn, item.kind, item.reason, item.sha256,
                                                       item.sop_instance_uid or None, str(self.ingestor.quarantine.root /
                                                                 f"{item.sha256}.dcm"), item.origin)
                    results.append("quarantined")
                    continue
                try:
                    data = item.path.read_bytes()
                except FileNotFoundError:  # cleared by another process already
                    results.append("missing")
                    item.path = None
                    continue
                result = self.ingestor.ingest_one(conn, data, item.origin, item.path.name,
                                                  report=item.report, sha=item.sha256 or None)
                results.append(result.outcome)
        return results

    def _maybe_write_status(self) -> None:
        if time.monotonic() - self._last_status > 2.0:
            self.write_status()

    def write_status(self) -> None:
        self._last_status = time.monotonic()
        if self.status_file is None:
            return
        with self._lock:
            doc = {"updated": time.time(), "counts": dict(self.counts),
                   "per_calling_ae": {k: dict(v) for k, v in self.per_ae.items()},
                   "queued": self.queue.unfinished_tasks}
        try:
            write_durably(self.status_file, json.dumps(doc, indent=1).encode())
        except OSError as exc:
            log.warning("cannot write %s: %s", self.status_file, exc)
