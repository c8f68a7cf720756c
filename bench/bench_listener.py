"""Receive rate of `srdose listen` against DCMTK's storescp, in one run.

    python bench/bench_listener.py [--files 2000] [--senders 4]

The same synthetic RDSRs are sent by DCMTK's storescu over one association
(Nagle off on both ends: TCP_NODELAY=1 for DCMTK; srdose sets it itself) to

* DCMTK ``storescp`` writing files only (the peer; also with DCMTK's
  defaults, as many modalities send);
* a bare pynetdicom Storage SCP that answers Success at once and keeps
  nothing: the floor of any listener built on pynetdicom;
* ``srdose listen``: checked, spooled with fsync, parsed, committed to
  SQLite and its MGD recalculated; the time runs until the last dataset is
  committed (spool empty and every object in the database).

Then storescp and srdose again with ``--senders`` concurrent storescu
processes. Prints files/s and the ratios against storescp (targets: 1.0
with one sender, 1.5 with four), and the CPU each side spent per file (the
senders' from their own usage, the receiver's as the machine's busy time less
the senders': run it on an otherwise idle machine).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.netutil import ListenerProcess, free_port, storescp, wait_for_port  # noqa: E402

STORESCU = "/usr/bin/storescu"


def rdsr_files(folder: Path, n: int) -> list[Path]:
    """The listener's and the retrieval's data set: ``n`` synthetic RDSRs, half Hologic, half GE."""
    from srdose import synth

    per = -(-n // 2)
    files = synth.generate("hologic", per, folder, seed=11, units=3)
    files += synth.generate("ge", per, folder, seed=12, units=3)
    return files[:n]


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


NODELAY = {**os.environ, "TCP_NODELAY": "1", "NO_TCPDELAY": "1"}

BARE_SCP = """
import sys
from pynetdicom import AE, evt
from pynetdicom.presentation import StoragePresentationContexts
from srdose import compat
ae = AE("SRDOSE")
ae.supported_contexts = StoragePresentationContexts
ae.maximum_pdu_size = 0
handlers = [(evt.EVT_CONN_OPEN, lambda e: compat.quick_acks(e.assoc)), (evt.EVT_C_STORE, lambda e: 0x0000)]
ae.start_server(("127.0.0.1", int(sys.argv[1])), block=True, evt_handlers=handlers)
"""


class CpuClock:
    """CPU seconds spent during a phase: by the senders (storescu, this script's children, reaped
    when they finish) and by everything else on the machine (the receiver, its database; the
    benchmark runs on an otherwise idle machine). A sender waits for each answer, so with one
    sender the rate is bound by the senders' and the receiver's CPU per file in turn; with
    several, by their sum over the cores."""

    def __init__(self) -> None:
        self.busy0, self.children0 = machine_busy(), children_cpu()

    def stop(self) -> tuple[float, float]:
        senders = children_cpu() - self.children0
        return senders, machine_busy() - self.busy0 - senders


def machine_busy() -> float:
    """CPU seconds the machine has been busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_bare_pynetdicom(files: list[Path]) -> float:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", BARE_SCP, str(port)], stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, 30, proc)
        t = time.perf_counter()
        send(port, files, env=NODELAY)
        return time.perf_counter() - t
    finally:
        proc.terminate()
        proc.wait(30)


def time_srdose(work: Path, files: list[Path], senders: int, cpu: list | None = None) -> float:
    port = free_port()
    lst = ListenerProcess(work / f"srdose-{senders}", port).start()
    try:
        clock = CpuClock()
        t = time.perf_counter()
        send(port, files, senders, env=NODELAY)
        deadline = time.monotonic() + 3600
        while committed(lst.data_dir / "srdose.sqlite") < len(files) and time.monotonic() < deadline:
            time.sleep(0.02)
        took = time.perf_counter() - t
        if cpu is not None:
            cpu.extend(clock.stop())
        return took
    finally:
        lst.stop()


def time_storescp(work: Path, files: list[Path], no_nagle: bool, senders: int = 1, cpu: list | None = None) -> float:
    """storescp writing files; with ``no_nagle`` both DCMTK ends run with
    TCP_NODELAY=1 (DCMTK 3.6.7's switch to disable Nagle's algorithm; NO_TCPDELAY in older releases), its best case."""
    env = NODELAY if no_nagle else None
    port = free_port()
    with storescp(work / f"storescp-{no_nagle}-{senders}", port, env=env):
        clock = CpuClock()
        t = time.perf_counter()
        send(port, files, senders, env=env)
        took = time.perf_counter() - t
        if cpu is not None:
            cpu.extend(clock.stop())
        return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--senders", type=int, default=4)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="srdose-bench-listen-"))
    try:
        files = rdsr_files(work / "rdsr", args.files)
        size = sum(f.stat().st_size for f in files) / len(files) / 1024
        for f in files:
            f.read_bytes()
        n = len(files)
        peer_default = time_storescp(work, files, no_nagle=False)
        peer_cpu: list[float] = []
        ours_cpu: list[float] = []
        peer_best = time_storescp(work, files, no_nagle=True, cpu=peer_cpu)
        bare = time_bare_pynetdicom(files)
        ours = time_srdose(work, files, 1, cpu=ours_cpu)
        peer_many_cpu: list[float] = []
        many_cpu: list[float] = []
        peer_many = time_storescp(work, files, no_nagle=True, senders=args.senders, cpu=peer_many_cpu)
        many = time_srdose(work, files, args.senders, cpu=many_cpu)
        k = args.senders
        print(f"files: {n} synthetic RDSRs, {size:.1f} KiB mean, sent by DCMTK storescu")
        print(f"peer   storescp, DCMTK defaults (Nagle on)        : {n / peer_default:7.1f} files/s")
        print(f"peer   storescp, TCP_NODELAY=1 on both ends        : {n / peer_best:7.1f} files/s")
        print(f"floor  bare pynetdicom SCP, Success at once        : {n / bare:7.1f} files/s")
        print(f"srdose listen (check+spool+parse+commit), 1 sender : {n / ours:7.1f} files/s")
        print(f"ratio srdose / storescp, 1 sender                  : {peer_best / ours:7.2f}   (target >= 1.0)")
        print(f"ratio srdose / storescp with DCMTK defaults        : {peer_default / ours:7.2f}")
        ms = 1000 / n
        print(
            f"CPU per file, 1 sender: storescu {peer_cpu[0] * ms:.1f} ms + storescp {peer_cpu[1] * ms:.1f} ms; "
            f"storescu {ours_cpu[0] * ms:.1f} ms + srdose {ours_cpu[1] * ms:.1f} ms (the machine's busy time "
            "less the senders')"
        )
        print(f"peer   storescp, {k} concurrent senders             : {n / peer_many:7.1f} files/s")
        print(f"srdose listen, {k} concurrent senders               : {n / many:7.1f} files/s")
        print(f"ratio srdose / storescp, {k} senders                : {peer_many / many:7.2f}   (target >= 1.5)")
        cores = os.cpu_count() or 1
        print(
            f"CPU per file, {k} senders: storescu {peer_many_cpu[0] * ms:.1f} ms "
            f"+ storescp {peer_many_cpu[1] * ms:.1f} ms; "
            f"storescu {many_cpu[0] * ms:.1f} ms + srdose {many_cpu[1] * ms:.1f} ms; at 1.5 x storescp's rate "
            f"{cores} cores give {cores * peer_many / n / 1.5 * 1000:.1f} ms per file to senders and receiver together"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
