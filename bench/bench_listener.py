"""Receive rate of `srdose listen` against DCMTK's storescp, in one run.

    python bench/bench_listener.py [--files 2000] [--senders 4]

The same synthetic RDSRs are sent by DCMTK's storescu (default Nagle
behaviour, as real modalities) over one association to

* DCMTK ``storescp`` writing files only (the peer), and
* ``srdose listen``: spooled with fsync, parsed, committed to SQLite;

the srdose time runs until the last dataset is committed (spool empty and
every event in the database). Then srdose again with ``--senders``
concurrent storescu processes. Prints files/s and the ratio (target >= 0.5).
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.netutil import ListenerProcess, free_port, wait_for_port  # noqa: E402

STORESCU, STORESCP = "/usr/bin/storescu", "/usr/bin/storescp"


def send(port: int, files: list[Path], senders: int = 1, aec: str = "SRDOSE", env=None) -> None:
    chunks = [files[i::senders] for i in range(senders)]
    procs = [
        subprocess.Popen(
            [STORESCU, "-aet", f"BENCH{i}", "-aec", aec, "127.0.0.1", str(port), *map(str, chunk)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        for i, chunk in enumerate(chunks)
    ]
    for p in procs:
        if p.wait(3600) != 0:
            raise SystemExit(f"storescu failed: {p.stderr.read()[-500:]}")


def committed(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            return con.execute("select count(*) from source_objects").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def time_srdose(work: Path, files: list[Path], senders: int) -> float:
    port = free_port()
    lst = ListenerProcess(work / f"srdose-{senders}", port).start()
    try:
        t = time.perf_counter()
        send(port, files, senders)
        deadline = time.monotonic() + 3600
        while committed(lst.data_dir / "srdose.sqlite") < len(files) and time.monotonic() < deadline:
            time.sleep(0.02)
        return time.perf_counter() - t
    finally:
        lst.stop()


def time_storescp(work: Path, files: list[Path], no_nagle: bool) -> float:
    """storescp writing files; with ``no_nagle`` both DCMTK ends run with
    TCP_NODELAY=1 (DCMTK 3.6.7's switch to disable Nagle's algorithm; NO_TCPDELAY in older releases), its best case."""
    import os

    env = {**os.environ, "TCP_NODELAY": "1", "NO_TCPDELAY": "1"} if no_nagle else None
    port = free_port()
    out = work / f"storescp-{no_nagle}"
    out.mkdir()
    proc = subprocess.Popen(
        [STORESCP, "-aet", "SRDOSE", "-od", str(out), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        wait_for_port(port, 30, proc)
        t = time.perf_counter()
        send(port, files, env=env)
        return time.perf_counter() - t
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--senders", type=int, default=4)
    args = ap.parse_args()
    from srdose import synth

    work = Path(tempfile.mkdtemp(prefix="srdose-bench-listen-"))
    try:
        files: list[Path] = []
        per = -(-args.files // 2)
        files += synth.generate("hologic", per, work / "rdsr", seed=11, units=3)
        files += synth.generate("ge", per, work / "rdsr", seed=12, units=3)
        files = files[: args.files]
        size = sum(f.stat().st_size for f in files) / len(files) / 1024
        for f in files:
            f.read_bytes()
        n = len(files)
        peer_default = time_storescp(work, files, no_nagle=False)
        peer_best = time_storescp(work, files, no_nagle=True)
        ours = time_srdose(work, files, 1)
        many = time_srdose(work, files, args.senders)
        print(f"files: {n} synthetic RDSRs, {size:.1f} KiB mean, sent by DCMTK storescu (default Nagle)")
        print(f"peer   storescp, DCMTK defaults             : {n / peer_default:7.1f} files/s")
        print(f"peer   storescp, TCP_NODELAY=1 on both ends  : {n / peer_best:7.1f} files/s")
        print(f"srdose listen (spool+parse+commit), 1 sender: {n / ours:7.1f} files/s")
        print(f"ratio srdose / storescp best case           : {peer_best / ours:7.2f}   (target >= 0.5)")
        print(f"ratio srdose / storescp defaults            : {peer_default / ours:7.2f}")
        print(f"srdose listen, {args.senders} concurrent senders       : {n / many:7.1f} files/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
