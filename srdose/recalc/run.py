"""One ``srdose recalc`` run: select events, find what changed, compute, store."""

from __future__ import annotations

import multiprocessing as mp
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from srdose import compat
from srdose.columns import CodedColumn
from srdose.physics.factors import FactorSet, FactorSetError, load_bundled, load_csv
from srdose.recalc.engine import METHODS, Params, PhysicsFits, applicable_sets, compute, prepare
from srdose.store import recalc as db
from srdose.store.database import DoseStore
from srdose.vocab import Method


def resolve_factor_set(store, spec: str | None) -> FactorSet:
    """``bundled``, a factor-set CSV file, or the name (``name@version``) of one used before."""
    spec = (spec or "bundled").strip()
    if spec == "bundled":
        return load_bundled()
    if Path(spec).is_file():
        return load_csv(Path(spec))
    rec = db.find_factor_set(store, spec)
    if rec is None:
        known = sorted({f"{r['name']}@{r['version']}" for r in db.factor_set_records(store) if r["kind"] == "user"})
        raise FactorSetError(
            f"no factor set {spec!r}: give 'bundled', a factor-set CSV file, or the name of one "
            f"used before ({', '.join(known) or 'none stored yet'})"
        )
    return load_csv(rec["content"])


@dataclass
class RunSummary:
    selected: int = 0
    up_to_date: int = 0
    computed: int = 0
    methods: Counter = field(default_factory=Counter)
    flags: Counter = field(default_factory=Counter)
    no_mgd: int = 0
    factor_set: str = ""
    missing_tables: dict = field(default_factory=dict)

    def add(self, other: RunSummary) -> None:
        """Count ``other``'s events too (a range computed elsewhere)."""
        self.selected += other.selected
        self.up_to_date += other.up_to_date
        self.computed += other.computed
        self.methods.update(other.methods)
        self.flags.update(other.flags)
        self.no_mgd += other.no_mgd


def default_jobs(store) -> int:
    """Worker processes a run uses unless told: one per core on SQLite, where reading the
    inputs costs this process most; none on PostgreSQL, whose own processes read and write on
    the other cores (with two workers on two cores a million events took longer, 12.7-13.3 s
    against 10.9-12.7 s)."""
    return 1 if store.write_engine.dialect.name == "postgresql" else compat.cores()


#: Events read, computed and written at a time, so that memory stays bounded at any database size
#: (on PostgreSQL each range's query scans the studies: ranges of 100,000 took 1.3 times as long)
CHUNK_IDS = 250_000


def run(
    store,
    factor_set: FactorSet,
    params: Params,
    serial: str | None = None,
    since: str | None = None,
    force: bool = False,
    on_plan: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
    chunk_ids: int = CHUNK_IDS,
    jobs: int = 1,
) -> RunSummary:
    """Recalculate the selected events whose inputs changed since their last result.

    An event is recomputed when it has no result yet, or its result came
    from another factor set, another physics set than the one now valid on
    its study date (new physics data), or other settings; ``force``
    recomputes all selected events.

    The events are taken ``chunk_ids`` at a time (ranges of ids): read, computed, written. With
    ``jobs`` above 1 and more than one range, that many worker processes read and compute ranges
    while this one writes their results; otherwise this process does it all (on PostgreSQL, the
    last range's results are written, in :data:`WRITERS` parts at once, while the next is read
    and computed). A database in memory
    is only seen by this process, so it is always done here. ``on_plan(n)`` is told how many
    events will be looked at (first an upper bound, at the end the exact count), ``progress(n)``
    each range's count once it is written.
    """
    fs_id = db.register_factor_set(store, factor_set)
    sets = db.physics_sets(store)
    plan = _Plan(
        fits=PhysicsFits.build(sets, params.fit_degree),
        set_ids=np.array([s["id"] for s in sets] + [-1], dtype=np.int64),
        factor_set=factor_set,
        factor_set_id=fs_id,
        params=params,
        force=force,
        serial=serial,
        since=since,
    )
    summary = RunSummary(factor_set=factor_set.label, missing_tables=dict(factor_set.missing))
    total, ranges = db.event_id_ranges(store, chunk_ids, serial=serial, since=since)
    if on_plan:
        on_plan(total)

    added = []  # per range written: how many events had no result before

    def write(results: dict | None, checked: int, parts: _Countdown | None = None) -> None:
        """Write ``results`` (or a part of them: the range's ``checked`` events are told once
        its last part is written)."""
        if results is not None:
            added.append(db.write_recalc_results(store, results, factor_set.label, fs_id, plan.digest))
        if progress and (parts is None or parts.done()):
            progress(checked)

    if jobs > 1 and len(ranges) > 1 and store.shared:

        def first_range() -> None:  # while the workers start
            write(*plan.work(store, ranges[0], summary))

        for results, checked, part in _computed_in_workers(store.url, plan, ranges[1:], jobs, first_range):
            summary.add(part)
            write(results, checked)
    else:
        # PostgreSQL writes in its own processes: two threads wait for them, each writing half of
        # a range's results on its own connection, while the next range is read and computed.
        # SQLite writes in this process, and its driver gives up and takes back the GIL at every
        # row: in a thread, the whole run took 1.3 times as long as in turn.
        writers = WRITERS if store.write_engine.dialect.name == "postgresql" else 0
        with _steps(writers) as writer:
            writing: list[Future] = []
            for ids in ranges:
                results, checked = plan.work(store, ids, summary)
                for done in writing:
                    done.result()  # one range's results in flight at most; its error is raised here
                parts = _parts(results, max(writers, 1))
                countdown = _Countdown(len(parts))
                writing = [writer.submit(write, part, checked, countdown) for part in parts]
            for done in writing:
                done.result()
    if on_plan:
        on_plan(summary.selected)
    if sum(added):
        # the planner's statistics follow the results once many are new; results replaced in
        # place leave the tables' shape as it was
        store.wrote(sum(added))
    return summary


#: Connections that write a range's results on PostgreSQL, each a part of them, at once.
WRITERS = 2


def _parts(results: dict | None, n: int) -> list[dict | None]:
    """``results`` as ``n`` parts of consecutive events (rows are locked in event order)."""
    if results is None or n == 1:
        return [results]
    size = len(results["event_id"])
    cuts = [size * k // n for k in range(n + 1)]
    return [{c: v[a:b] for c, v in results.items()} for a, b in zip(cuts, cuts[1:])]


class _Countdown:
    """Parts of a range written by several threads: :meth:`done` is true for the last one."""

    def __init__(self, parts: int):
        self.left = parts
        self.lock = threading.Lock()

    def done(self) -> bool:
        with self.lock:
            self.left -= 1
            return self.left == 0


def _computed_in_workers(
    url: str, plan: _Plan, ranges: list[tuple[int, int | None]], jobs: int, meanwhile: Callable[[], None]
) -> Iterator[tuple[dict | None, int, RunSummary]]:
    """Each range's results, the number of events it checked and its counts, in range order,
    read and computed by ``jobs`` worker processes (their own connections, read only), after
    ``meanwhile()`` has run here while they start (a worker takes about a second to start).

    The workers are spawned: nothing of this process (its connections, a writer's thread) is
    inherited. At most a range per worker and one more are computed ahead of the writer, so
    memory stays bounded whatever the database's size.
    """
    pool = ProcessPoolExecutor(
        max_workers=min(jobs, len(ranges)),
        mp_context=mp.get_context("spawn"),
        initializer=_start_worker,
        initargs=(url, plan),
    )
    try:
        pending: deque[Future] = deque()
        rest = iter(ranges)
        with compat.spawned_without_main_script():
            for ids in rest:
                pending.append(pool.submit(_compute_range, ids))
                if len(pending) > jobs:
                    break
        meanwhile()
        while pending:
            done = pending.popleft().result()
            nxt = next(rest, None)
            if nxt is not None:
                pending.append(pool.submit(_compute_range, nxt))
            yield done
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


#: A worker process's store and plan (see :func:`_start_worker`).
_worker: dict = {}


def _start_worker(url: str, plan: _Plan) -> None:
    _worker["store"] = DoseStore(url, migrate=False)
    _worker["plan"] = plan


def _compute_range(ids: tuple[int, int | None]) -> tuple[dict | None, int, RunSummary]:
    """In a worker: one range's results, how many events it checked, and its counts."""
    plan: _Plan = _worker["plan"]
    summary = RunSummary()
    results, checked = plan.work(_worker["store"], ids, summary)
    return results, checked, summary


@dataclass
class _Plan:
    """What a run computes each range of events with."""

    fits: PhysicsFits
    set_ids: np.ndarray  # physics set ids by index into fits.sets, then -1 (none)
    factor_set: FactorSet
    factor_set_id: int
    params: Params
    force: bool
    serial: str | None = None
    since: str | None = None

    def __post_init__(self) -> None:
        self.digest = self.params.digest()
        self.probing = True  # see work()

    def read(self, store, ids: tuple[int, int | None]) -> dict:
        """The inputs of the range ``ids`` (their stored results too, unless all are recomputed)."""
        return db.recalc_inputs(
            store, serial=self.serial, since=self.since, ids=ids, with_results=not self.force, coded=True
        )

    def work(self, store, ids: tuple[int, int | None], summary: RunSummary) -> tuple[dict | None, int]:
        """The results of the range ``ids`` (None: every event's is current) and how many events
        it holds; ``summary`` counts them.

        Unless every event is recomputed, a range's results are first checked against what
        decides them, counted by the database, and the inputs read only if one is out of date: a
        run where nothing changed reads little. Once a range is found out of date the
        check is skipped, since then its cost would only be added (after new physics data, or
        in a database never recalculated, most ranges are).
        """
        if self.probing and not self.force:
            state = db.recalc_state(store, serial=self.serial, since=self.since, ids=ids)
            n = int(state["events"].sum())
            set_index = applicable_sets(self.fits.sets, state["manufacturer"], state["serial"], state["study_date"])
            if not self.stale(state, self.physics_set_ids(set_index)).any():
                summary.selected += n
                summary.up_to_date += n
                return None, n
            self.probing = False
        inputs = self.read(store, ids)
        return self.compute(inputs, summary), len(inputs["event_id"])

    def physics_set_ids(self, set_index: np.ndarray) -> np.ndarray:
        """The ids of the physics sets at ``set_index`` (by index into the fits' sets; -1: none)."""
        return self.set_ids[np.where(set_index >= 0, set_index, len(self.fits.sets))]

    def stale(self, state: dict, set_ids: np.ndarray) -> np.ndarray:
        """Which events' (or kinds of events', see :func:`srdose.store.recalc.recalc_state`) stored
        results are out of date: none, or of another factor set, physics set (``set_ids``: the
        one valid now, -1 none) or settings."""
        if self.force:
            return np.ones(len(state["has_result"]), dtype=bool)
        params = state["r_params"]  # coded from the inputs, a list from the counts of recalc_state
        same_params = (params if isinstance(params, CodedColumn) else CodedColumn.of(params)).equals(self.digest)
        return (
            ~state["has_result"]
            | (state["r_factor_set_id"] != self.factor_set_id)
            | (state["r_physics_set_id"] != set_ids)
            | ~same_params
        )

    def compute(self, inputs: dict, summary: RunSummary) -> dict | None:
        """The results of the events of ``inputs`` that need recomputing (None: none), in
        :data:`srdose.store.recalc.RESULT_COLUMNS`; ``summary`` counts them."""
        batch = prepare(inputs, self.fits, self.params)
        set_ids = self.physics_set_ids(batch.set_index)
        idx = np.nonzero(self.stale(inputs, set_ids))[0]
        summary.selected += batch.n
        summary.up_to_date += int(batch.n - idx.size)
        if idx.size == 0:
            return None
        res = compute(batch.take(idx), self.fits, self.factor_set, self.params)
        summary.computed += int(idx.size)
        summary.methods.update({METHODS[m]: int(c) for m, c in zip(*np.unique(res.method, return_counts=True))})
        summary.flags.update(res.flags.counts())
        summary.no_mgd += int(np.isnan(res.mgd).sum())
        # the source of the HVL used (none when there is no HVL)
        measured = res.method == METHODS.index(Method.MEASURED.value)
        source = np.where(np.isnan(res.hvl), 0, np.where(measured, 1, 2))
        return {
            "event_id": inputs["event_id"][idx],
            "method": CodedColumn(np.asarray(res.method, dtype=np.int64), list(METHODS)),
            "mgd_recalc_mgy": res.mgd,
            "mgd_u_mgy": res.mgd_u,
            "k_mgy": res.k,
            "hvl_used_mm": res.hvl,
            "hvl_source": CodedColumn(source, [None, "measured_fit", "rdsr"]),
            "g": res.g,
            "c": res.c,
            "s": res.s,
            "t_factor": res.t,
            "physics_set_id": set_ids[idx],
            "ratio_recalc_to_reported": res.ratio,
            "flags": res.flags.coded(),
        }


class _InThisThread:
    """An executor that runs each task at once, in the caller's thread."""

    def submit(self, fn, *args) -> Future:
        done: Future = Future()
        try:
            done.set_result(fn(*args))
        except Exception as exc:  # raised by result(), as a thread pool's would be
            done.set_exception(exc)
        return done


@contextmanager
def _steps(workers: int) -> Iterator[ThreadPoolExecutor | _InThisThread]:
    if not workers:
        yield _InThisThread()
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield pool
