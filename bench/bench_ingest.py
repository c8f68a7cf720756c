"""Ingest rate of srdose against a raw pydicom walk of the same files.

    python bench/bench_ingest.py [--files 2000] [--keep DIR] [--jobs N]

Peer: ``pydicom.dcmread`` + a walk of every element of the whole content
tree (the least any reader must do). srdose: the same files through
``Ingestor`` (integrity check, parse, pseudonymise, write to a fresh SQLite
file, commit), in one process, then with ``--jobs`` processes parsing
while one writes (default: one per core; workers' start-up included). Both
read from the page cache (the files are read once before timing). Prints
files/s for each and the ratios: srdose / peer (target >= 6), and
``--jobs`` / one process (target >= 1.7 on 2 cores).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import pydicom


def raw_walk(path: Path) -> int:
    ds = pydicom.dcmread(path)
    n, stack = 0, [ds]
    while stack:
        for elem in stack.pop():
            n += 1
            if elem.VR == "SQ":
                stack.extend(elem.value)
    return n


def make_files(folder: Path, n: int) -> list[Path]:
    from srdose import synth

    per = -(-n // len(synth.VENDORS))
    files: list[Path] = []
    for i, vendor in enumerate(synth.VENDORS):
        files += synth.generate(vendor, per, folder / vendor, seed=100 + i, units=3)
    return sorted(files)[:n] if len(files) > n else files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--keep", type=Path, help="reuse/keep the synthetic files here")
    ap.add_argument("--jobs", type=int, default=0, help="parse processes (default: one per core)")
    args = ap.parse_args()

    from srdose.compat import cores
    from srdose.config import load
    from srdose.governance.hooks import IngestHooks
    from srdose.ingest import Ingestor
    from srdose.pseudonym import Pseudonymiser
    from srdose.quarantine import QuarantineFolder
    from srdose.store import DoseStore

    work = Path(tempfile.mkdtemp(prefix="srdose-bench-"))
    src = args.keep or work / "rdsr"
    files = sorted(src.rglob("*.dcm")) if src.exists() else []
    if len(files) < args.files:
        t = time.perf_counter()
        files = make_files(src, args.files)
        print(f"generated {len(files)} synthetic RDSRs in {time.perf_counter() - t:.1f} s")
    files = files[: args.files]
    size = sum(f.stat().st_size for f in files)
    for f in files:  # page cache, for both
        f.read_bytes()

    t = time.perf_counter()
    elements = sum(raw_walk(f) for f in files)
    peer = time.perf_counter() - t

    jobs = args.jobs or cores()

    def ingest(n_jobs: int):
        store = DoseStore(f"sqlite:///{work / f'bench-{n_jobs}.sqlite'}", Pseudonymiser(b"k" * 64))
        # the governance and curation steps `srdose ingest` runs
        ingestor = Ingestor(
            store, QuarantineFolder(work / "q"), batch_size=200, hooks=IngestHooks.from_settings(load())
        )
        t = time.perf_counter()
        summary = ingestor.ingest_paths(files, jobs=n_jobs)
        elapsed = time.perf_counter() - t
        store.close()
        return elapsed, summary

    ours, summary = ingest(1)
    parallel, summary_n = ingest(jobs)

    n = len(files)
    print(f"files: {n} ({size / n / 1024:.1f} KiB mean, {elements / n:.0f} elements each)")
    print(f"peer  pydicom dcmread + raw walk : {n / peer:8.1f} files/s")
    print(
        f"srdose ingest (parse + SQLite)   : {n / ours:8.1f} files/s "
        f"({summary.outcomes['ingested']} ingested, {summary.events} events, {summary.n_quarantined} quarantined)"
    )
    print(
        f"srdose ingest --jobs {jobs:<2}         : {n / parallel:8.1f} files/s "
        f"({summary_n.outcomes['ingested']} ingested, {summary_n.events} events, {summary_n.n_quarantined} quarantined)"
    )
    print(f"ratio srdose / peer              : {peer / ours:8.2f}   (target >= 6)")
    print(f"ratio --jobs {jobs} / one process     : {ours / parallel:8.2f}   (target >= 1.7 on 2 cores)")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
