"""The listener's ingest worker in a process of its own.

pynetdicom's reactors, the handler's check of each dataset and the database
writes all want the one interpreter lock: in one process they take turns on
one core. The worker process gets each spooled file's path and its parsed report
(the spool stays the hand-over: after a crash the child parses what it
holds) and writes the database on the other core.
The network side keeps only what it must do before answering: check, spool,
fsync.

The child dies with its parent (PR_SET_PDEATHSIG, and a check of the parent
PID), so a killed listener never leaves a second writer behind; and the
parent notices a dead child at the next dataset (it then answers failure, so
nothing more is acknowledged that could not be ingested) and never waits on
the pipe to a dead child.

The child recalculates the MGD of what it ingested (``[recalc]
after_ingest``), so the database is always current.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from pathlib import Path

from srdose import compat
from srdose.config import RecalcSettings
from srdose.ingest import Hooks, Ingestor
from srdose.pseudonym import Pseudonymiser, load_or_create_secret
from srdose.quarantine import QuarantineFolder
from srdose.receive.worker import AfterIngestRecalc, IngestWorker, Received
from srdose.spool import Spool
from srdose.store import DoseStore

log = logging.getLogger("srdose.listen")

_STOP = None
PR_SET_PDEATHSIG = 1
#: On stop, the child ingests what it holds for at most this long; the rest
#: stays in the spool for the next start.
DRAIN_SECONDS = 30


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _child(
    db_url: str,
    secret_path: str,
    quarantine_dir: str,
    spool_dir: str,
    after_ingest: str,
    archive_dir: str,
    status_file: str,
    inbox,
    outstanding,
    ready,
    parent_pid: int,
    log_level: int,
    hooks: Hooks,
    recalc_section: RecalcSettings | None = None,
) -> None:
    _die_with_parent()
    # the parent coordinates shutdown: Ctrl-C reaches the whole process group
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s[ingest]: %(message)s")
    # the schema check on opening the store is not news at every start
    logging.getLogger("alembic").setLevel(logging.WARNING)
    store = DoseStore(db_url, Pseudonymiser(load_or_create_secret(Path(secret_path))))
    spool = Spool(Path(spool_dir), after_ingest, Path(archive_dir) if archive_dir else None)
    recalc = AfterIngestRecalc(store, recalc_section) if recalc_section is not None else None
    worker = IngestWorker(
        Ingestor(store, QuarantineFolder(Path(quarantine_dir)), hooks=hooks),
        spool,
        Path(status_file),
        owner_pid=parent_pid,
        recalc=recalc,
    )
    worker.on_done = lambda: _decrement(outstanding)
    with outstanding.get_lock():
        # counted before they are queued, so that "idle" is never true too early
        outstanding.value += len(spool.pending())
    worker.recover()
    worker.start()
    ready.set()
    while True:
        try:
            item = inbox.get(timeout=0.5)
        except Exception:  # queue.Empty
            if os.getppid() != parent_pid:
                break
            continue
        if item is _STOP:
            break
        worker.submit(item)
    worker.stop(drain=True, timeout=DRAIN_SECONDS)
    store.close()


def _decrement(counter) -> None:
    with counter.get_lock():
        counter.value -= 1


class IngestProcess:
    """Parent-side handle: ``submit`` like :class:`IngestWorker`, done in a child.

    Parameters
    ----------
    db_url, secret_path, quarantine_dir, spool, status_file
        What the child needs to open the same database, spool and quarantine.
    hooks
        The governance/curation ingest steps, built from the parent's
        settings (so ``--config FILE`` holds in the child too).
    recalc_section
        The ``[recalc]`` settings to recalculate new events with after
        each batch; None: no recalculation.
    """

    def __init__(
        self,
        db_url: str,
        secret_path: Path,
        quarantine_dir: Path,
        spool,
        status_file: Path,
        hooks: Hooks | None = None,
        recalc_section: RecalcSettings | None = None,
    ):
        ctx = mp.get_context("spawn")  # no threads or engines inherited from the parent
        self._inbox = ctx.Queue()
        self._outstanding = ctx.Value("q", 0)
        self._ready = ctx.Event()
        self.counts: dict = {}
        self._status_file = status_file
        self._proc = ctx.Process(
            target=_child,
            name="srdose-ingest",
            daemon=True,
            args=(
                db_url,
                str(secret_path),
                str(quarantine_dir),
                str(spool.root),
                spool.after_ingest,
                str(spool.archive_dir or ""),
                str(status_file),
                self._inbox,
                self._outstanding,
                self._ready,
                os.getpid(),
                logging.getLogger().getEffectiveLevel(),
                hooks,
                recalc_section,
            ),
        )
        self._lock = threading.Lock()

    def start(self) -> None:
        with compat.spawned_without_main_script():
            self._proc.start()
        deadline = time.monotonic() + 120
        while not self._ready.wait(0.2):
            if not self._proc.is_alive() or time.monotonic() > deadline:
                self._abandon_pipe()
                raise RuntimeError("the ingest process did not start (see the log above)")

    def _abandon_pipe(self) -> None:
        # nothing may wait on a pipe no one reads: what it held is in the spool
        self._inbox.cancel_join_thread()

    def submit(self, item: Received) -> None:
        if not self._proc.is_alive():
            return  # in the spool; ingested at the next start
        with self._outstanding.get_lock():
            self._outstanding.value += 1
        # the parsed report travels along (pickled), so the child does not
        # parse the file a second time; after a crash it parses the spool
        self._inbox.put(item)

    @property
    def pending(self) -> int:
        return max(0, int(self._outstanding.value))

    def idle(self) -> bool:
        return self.pending == 0

    def alive(self) -> bool:
        # The child's sentinel becomes readable when it exits. is_alive() is not safe from several
        # threads at once: when another thread has just reaped the child, its waitpid fails and
        # multiprocessing reports the dead child as running.
        from multiprocessing.connection import wait

        try:
            return not wait([self._proc.sentinel], timeout=0)
        except (ValueError, AttributeError):  # never started, or closed
            return False

    def stop(self, drain: bool = True, timeout: float = DRAIN_SECONDS + 15) -> None:
        """Let the child ingest what was handed over (for a bounded time),
        then end it."""
        if self._proc.is_alive():
            self._inbox.put(_STOP)
            self._proc.join(timeout if drain else 5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(10)
        self._abandon_pipe()
        try:
            import json

            self.counts = json.loads(Path(self._status_file).read_text()).get("counts", {})
        except (OSError, ValueError):
            self.counts = {}

    def recover(self) -> int:
        """The child ingests the spool's leftovers itself when it starts."""
        return self.pending
