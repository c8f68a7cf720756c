"""Retrieval rate of `srdose retrieve` from a real Orthanc, against a bare
C-MOVE into DCMTK's storescp, in one run.

    python bench/bench_retrieve.py [--files 1000] [--rounds 2] [--level image]

The same synthetic RDSRs (one study and series each) are loaded into one
Orthanc on 127.0.0.1, which knows two C-MOVE destinations:

* DCMTK ``storescp`` writing files only, TCP_NODELAY=1 (the peer). A
  pynetdicom C-MOVE SCU in this process, with TCP_NODELAY and quick ACKs on
  its socket, asks Orthanc to move the instances there; timed until
  Orthanc's final C-MOVE response. With ``--level image`` (default) the
  requests are the ones srdose sends: IMAGE level, one per series, with its
  SOP Instance UIDs; with ``--level study``, one per study.
* ``srdose retrieve`` in a subprocess with its own data directory (SQLite):
  C-FIND (study, then series and image as the instances found are
  retrieved), C-MOVE to its own Storage SCP, spool, parse, commit; timed
  from start until the process exits.

Orthanc runs with TCP_NODELAY=1 (the peer's best case: with Nagle on,
Orthanc's C-STOREs wait on storescp's delayed ACKs); ``--pacs-nagle`` runs
it with DCMTK's defaults. Peer and srdose run alternately ``--rounds``
times, each into a fresh folder or database. Prints files/s and the ratio
srdose / peer (target >= 0.8).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_listener import rdsr_files  # noqa: E402
from tests.netutil import OrthancServer, free_port, storescp, wait_until  # noqa: E402

PEER_AET, OUR_AET = "STORESCP", "SRDOSE"


def uids(files: list[Path]) -> list[tuple[str, str, str]]:
    """(study, series, SOP instance) UIDs of each file."""
    import pydicom

    out = []
    for f in files:
        ds = pydicom.dcmread(
            f, stop_before_pixels=True, specific_tags=["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"]
        )
        out.append((str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)))
    return out


def move_requests(instances: list[tuple[str, str, str]], level: str) -> list:
    """C-MOVE identifiers: per series at IMAGE level (as srdose asks), or per study."""
    from pydicom.dataset import Dataset

    from srdose.receive.retrieve import image_requests

    if level == "image":
        return list(image_requests(instances))
    idents = []
    for study in dict.fromkeys(s for s, _, _ in instances):
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.StudyInstanceUID = study
        idents.append(ds)
    return idents


def bare_move(orthanc: OrthancServer, idents: list) -> None:
    """C-MOVE each identifier to the peer on one association; fail loudly."""
    from pynetdicom import AE
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MOVE  # type: ignore[attr-defined]

    from srdose import compat

    ae = AE(ae_title=PEER_AET)  # a calling AE Orthanc knows
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120
    ae.add_requested_context(MOVE)
    assoc = ae.associate("127.0.0.1", orthanc.dicom_port, ae_title=orthanc.aet)
    if not assoc.is_established:
        raise SystemExit("Orthanc refused the C-MOVE association")
    compat.quick_acks(assoc)  # TCP_NODELAY, TCP_QUICKACK: no delayed-ACK stalls
    try:
        for ident in idents:
            last = None
            for status, _ in assoc.send_c_move(ident, PEER_AET, MOVE):
                if status is None:
                    raise SystemExit("C-MOVE: no answer from Orthanc")
                last = status
            if last is None or last.Status != 0x0000:
                raise SystemExit(f"C-MOVE ended with status {last and hex(last.Status)}")
    finally:
        assoc.release()


def time_peer(work: Path, orthanc: OrthancServer, port: int, idents: list, n: int) -> float:
    out = work / "storescp"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "TCP_NODELAY": "1", "NO_TCPDELAY": "1"}
    with storescp(out, port, PEER_AET, env):
        t = time.perf_counter()
        bare_move(orthanc, idents)
        elapsed = time.perf_counter() - t
    got = sum(1 for _ in out.iterdir())
    if got != n:
        raise SystemExit(f"storescp wrote {got} files, expected {n}")
    return elapsed


def source_objects(db: Path) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute("select count(*) from source_objects").fetchone()[0]
    finally:
        con.close()


def time_srdose(work: Path, orthanc: OrthancServer, port: int, n: int, tag: str, method: str) -> dict:
    """Run `srdose retrieve` once; its total time and, from the time its
    stderr lines arrive, when the C-FIND plan was done and the C-STOREs ran."""
    data = work / f"srdose-{tag}"
    shutil.rmtree(data, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k != "SRDOSE_CONFIG"}
    env.update(SRDOSE_DATA_DIR=str(data), COLUMNS="200")
    cmd = [sys.executable, "-m", "srdose", "retrieve", "--pacs", f"127.0.0.1:{orthanc.dicom_port}"]
    cmd += ["--pacs-aet", orthanc.aet, "--aet", OUR_AET, "--port", str(port)]
    cmd += ["--from", "1990-01-01", "--to", "2100-12-31", f"--{method}"]
    lines: list[tuple[float, str]] = []
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def read(stream) -> None:
        for line in stream:
            lines.append((time.perf_counter() - t, line.rstrip()))

    readers = [threading.Thread(target=read, args=(s,), daemon=True) for s in (proc.stdout, proc.stderr)]
    for r in readers:
        r.start()
    rc = proc.wait(3600)
    total = time.perf_counter() - t
    for r in readers:
        r.join(10)
    text = "\n".join(line for _, line in lines)
    if rc != 0:
        raise SystemExit(f"srdose retrieve exited {rc}:\n{text[-3000:]}")
    held = source_objects(data / "srdose.sqlite")
    if held != n:
        raise SystemExit(f"srdose holds {held} source objects, expected {n}:\n{text[-3000:]}")
    planned = next((s for s, line in lines if re.search(r"\d+ studies; ", line)), None)
    stores = [s for s, line in lines if "C-STORE" in line]
    done = next((s for s, line in lines if line.startswith("retrieved ")), None)
    return {
        "total": total,
        "planned": planned,
        "first_store": stores[0] if stores else None,
        "last_store": stores[-1] if stores else None,
        "store_lines": len(stores),
        "done": done,
        "summary": next((line for _, line in lines if line.startswith("retrieved ")), ""),
    }


def startup_seconds() -> float:
    """Time of `srdose --version`: interpreter start and the CLI's imports."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "srdose", "--version"], capture_output=True, check=True)
    return time.perf_counter() - t


def start_orthanc(work: Path, modalities: dict, nagle: bool) -> OrthancServer:
    orthanc = OrthancServer(work / "orthanc", modalities)
    saved = {k: os.environ.get(k) for k in ("TCP_NODELAY", "NO_TCPDELAY")}
    if not nagle:  # Orthanc's DCMTK reads these at start-up
        os.environ.update(TCP_NODELAY="1", NO_TCPDELAY="1")
    try:
        return orthanc.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--level", choices=["image", "study"], default="image", help="the peer's C-MOVE level")
    ap.add_argument("--pacs-nagle", action="store_true", help="run Orthanc with DCMTK's defaults (Nagle on)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (its path is printed)")
    ap.add_argument("--method", choices=["move", "get"], default="move", help="how srdose retrieves")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="srdose-bench-retrieve-"))
    orthanc = None
    try:
        files = rdsr_files(work / "rdsr", args.files)
        n = len(files)
        size = sum(f.stat().st_size for f in files) / n / 1024
        instances = uids(files)
        studies = len({i[0] for i in instances})
        series = len({i[:2] for i in instances})
        idents = move_requests(instances, args.level)
        peer_port, our_port = free_port(), free_port()
        modalities = {"peer": (PEER_AET, peer_port), "srdose": (OUR_AET, our_port)}
        orthanc = start_orthanc(work, modalities, args.pacs_nagle)
        orthanc.load(files)
        wait_until(lambda: orthanc.rest("/statistics")["CountInstances"] >= n, 120, 0.2, "Orthanc holds every file")
        startup = startup_seconds()
        finds = 2 + 2 * studies  # two STUDY queries, then SERIES per study, IMAGE per SR series
        pacs = "DCMTK defaults (Nagle on)" if args.pacs_nagle else "TCP_NODELAY=1"
        print(f"files: {n} synthetic RDSRs, {size:.1f} KiB mean, {studies} studies, {series} series; Orthanc {pacs}")
        print(f"peer: {len(idents)} C-MOVE requests at {args.level.upper()} level on one association")
        print(f"srdose start-up (`srdose --version`): {startup:.2f} s")
        peers, ours = [], []
        for r in range(1, args.rounds + 1):
            p = time_peer(work, orthanc, peer_port, idents, n)
            peers.append(p)
            print(f"round {r}: peer   C-MOVE into storescp              : {n / p:7.1f} files/s  ({p:6.2f} s)")
            s = time_srdose(work, orthanc, our_port, n, str(r), args.method)
            ours.append(s["total"])
            print(
                f"round {r}: srdose retrieve --{args.method:<4} (find+{args.method}+spool+commit): "
                f"{n / s['total']:7.1f} files/s  ({s['total']:6.2f} s)"
            )
            if s["planned"] is not None:
                print(
                    f"         C-FIND: studies listed at {s['planned']:.2f} s; their {finds - 2} series and image "
                    f"C-FINDs run while the instances found are retrieved"
                )
            if s["store_lines"]:
                print(
                    f"         C-STORE: {s['store_lines']} logged from {s['first_store']:.2f} "
                    f"to {s['last_store']:.2f} s ({s['last_store'] - s['first_store']:.2f} s)"
                )
            if s["done"] is not None:
                print(f"         '{s['summary']}' at {s['done']:.2f} s, exit at {s['total']:.2f} s")
        best_peer, best_ours = min(peers), min(ours)
        print(f"peer   best of {args.rounds}: {n / best_peer:7.1f} files/s")
        print(f"srdose best of {args.rounds}: {n / best_ours:7.1f} files/s")
        print(f"ratio srdose / peer (best of each): {best_peer / best_ours:5.2f}   (target >= 0.8)")
        if args.keep:
            print(f"work folder kept: {work}")
    finally:
        if orthanc is not None:
            orthanc.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
