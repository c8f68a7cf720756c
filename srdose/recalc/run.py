"""One ``srdose recalc`` run: select events, find what changed, compute, store."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from srdose.physics.factors import FactorSet, FactorSetError, load_bundled, load_csv
from srdose.recalc.engine import METHODS, Params, PhysicsFits, compute, prepare
from srdose.store import recalc as db
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


def _f(x: float):
    return None if x is None or math.isnan(x) else float(x)


def run(
    store,
    factor_set: FactorSet,
    params: Params,
    serial: str | None = None,
    since: str | None = None,
    force: bool = False,
    on_plan: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> RunSummary:
    """Recalculate the selected events whose inputs changed since their last result.

    An event is recomputed when it has no result yet, or its result came
    from another factor set, another physics set than the one now valid on
    its study date (new physics data), or other settings; ``force``
    recomputes all selected events.
    """
    fs_id = db.register_factor_set(store, factor_set)
    sets = db.physics_sets(store)
    fits = PhysicsFits.build(sets, params.fit_degree)
    inputs = db.recalc_inputs(store, serial=serial, since=since)
    batch = prepare(inputs, fits, params)
    summary = RunSummary(selected=batch.n, factor_set=factor_set.label, missing_tables=dict(factor_set.missing))
    set_ids = np.array([s["id"] for s in sets] + [-1], dtype=np.int64)[
        np.where(batch.set_index >= 0, batch.set_index, len(sets))
    ]
    digest = params.digest()
    if force:
        need = np.ones(batch.n, dtype=bool)
    else:
        same_params = np.array([p == digest for p in inputs["r_params"]], dtype=bool)
        need = (
            ~inputs["has_result"]
            | (inputs["r_factor_set_id"] != fs_id)
            | (inputs["r_physics_set_id"] != set_ids)
            | ~same_params
        )
    idx = np.nonzero(need)[0]
    summary.up_to_date = int(batch.n - idx.size)
    if on_plan:
        on_plan(int(idx.size))
    if idx.size == 0:
        return summary
    sub = batch.take(idx)
    res = compute(sub, fits, factor_set, params)
    flag_text = res.flags.strings()
    summary.computed = int(idx.size)
    summary.methods.update({METHODS[m]: int(c) for m, c in zip(*np.unique(res.method, return_counts=True))})
    summary.flags.update(res.flags.counts())
    summary.no_mgd = int(np.isnan(res.mgd).sum())

    event_ids = inputs["event_id"][idx].tolist()
    cols = {name: getattr(res, name).tolist() for name in ("mgd", "mgd_u", "k", "hvl", "g", "c", "s", "t", "ratio")}
    methods = res.method.tolist()
    phys = set_ids[idx].tolist()
    label = factor_set.label

    def rows():
        # in RESULT_COLUMNS order
        for i, eid in enumerate(event_ids):
            m = METHODS[methods[i]]
            hvl = _f(cols["hvl"][i])
            yield (
                eid,
                m,
                _f(cols["mgd"][i]),
                _f(cols["mgd_u"][i]),
                _f(cols["k"][i]),
                hvl,
                None if hvl is None else ("measured_fit" if m == Method.MEASURED else "rdsr"),
                _f(cols["g"][i]),
                _f(cols["c"][i]),
                _f(cols["s"][i]),
                _f(cols["t"][i]),
                label,
                fs_id,
                None if phys[i] < 0 else phys[i],
                _f(cols["ratio"][i]),
                flag_text[i],
                digest,
            )

    db.write_recalc_results(store, rows(), progress=progress)
    store.wrote(summary.computed)  # the planner's statistics follow the results, once they are many
    return summary
