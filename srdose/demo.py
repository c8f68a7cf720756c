"""``srdose demo``: the whole pipeline on this machine, in a folder of its own.

1. RDSRs: ``sample_data/`` when present (a source checkout), plus synthetic
   studies of a few units made with :mod:`srdose.synth` (3 Hologic, 2 GE, 1
   Siemens unit; dated 2024), so that every report has several rooms;
2. ``srdose listen`` started as a subprocess on a free loopback port with the
   demo's own data directory (its own database, secret and spool);
3. the files sent with a real C-STORE client (a pynetdicom SCU) and the wait,
   bounded, until the listener has ingested every one it did not hold;
4. the example physics data of the synthetic Hologic unit 0
   (``sample_data/physics/example_synthetic_hologic_unit0.csv``, also the
   Hologic unit of ``sample_data/``), then ``srdose recalc``;
5. the three reports (survey, DRL, QA of that Hologic unit) into ``reports/``
   and their paths printed.

Nothing touches the user's own database: the demo forces its own data
directory on the listener (environment) and on itself.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian
from pynetdicom import AE

from srdose import synth
from srdose.config import Settings
from srdose.pseudonym import Pseudonymiser, load_or_create_secret
from srdose.recalc.engine import Params
from srdose.recalc.physicsfile import parse
from srdose.recalc.run import resolve_factor_set
from srdose.recalc.run import run as recalc_run
from srdose.report.common import Built
from srdose.report.drl import DRLSettings, build_drl
from srdose.report.qa import build_qa
from srdose.report.survey import build_survey
from srdose.spool import Spool
from srdose.store import DoseStore
from srdose.store.database import held_sop_instances
from srdose.store.recalc import add_physics_set
from srdose.store.reports import period_units
from srdose.terminal import esc

if TYPE_CHECKING:
    from rich.console import Console

EXAMPLE_PHYSICS = "example_synthetic_hologic_unit0.csv"
#: (vendor, studies, units, seed) of the synthetic data the demo adds.
SYNTHETIC = (("hologic", 60, 3, 701), ("ge", 40, 2, 702), ("siemens", 25, 1, 703))
CALLING_AE = "SRDOSEDEMO"
INGEST_TIMEOUT_S = 300.0


@dataclass
class Demo:
    """What every step of the demo works with: its own settings and folder, and where it prints."""

    settings: Settings  # the demo's own: its data directory, database, secret and spool
    source: Path | None  # the user's configuration file, handed on to the listener
    data_dir: Path
    console: Console  # the messages
    out: Console  # the report paths
    progress_bar: Callable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"srdose listen exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"srdose listen not listening on 127.0.0.1:{port} after {timeout:.0f} s")


def gather_files(data_dir: Path, sample: Path | None, progress: Callable[[], None] | None = None) -> list[Path]:
    """sample_data's dose objects (if any) and freshly generated synthetic RDSRs."""
    files = sorted(p for p in sample.rglob("*.dcm")) if sample is not None and sample.is_dir() else []
    out = data_dir / "synthetic"
    for vendor, count, units, seed in SYNTHETIC:
        files += synth.generate(
            vendor,
            count,
            out / vendor,
            seed=seed,
            units=units,
            date_range=(dt.date(2024, 1, 2), dt.date(2024, 12, 31)),
            progress=(lambda *_: progress()) if progress else None,
        )
    return files


def send(
    files: list[Path], port: int, aet: str = "SRDOSE", progress: Callable[[], None] | None = None
) -> tuple[int, int]:
    """C-STORE every file to 127.0.0.1:port with pynetdicom; (sent with Success, failed)."""
    datasets = []
    contexts: dict[str, set] = {}
    for path in files:
        ds: pydicom.Dataset = pydicom.dcmread(path)
        if ds.file_meta.TransferSyntaxUID == ExplicitVRBigEndian:
            # retired, and refused by the listener: re-encoded as Explicit VR Little Endian, as a PACS would
            ds = _to_little_endian(ds)
        datasets.append(ds)
        contexts.setdefault(ds.SOPClassUID, set()).add(ds.file_meta.TransferSyntaxUID)
    ae = AE(ae_title=CALLING_AE)
    for sop_class, syntaxes in contexts.items():
        ae.add_requested_context(sop_class, sorted(syntaxes))
    ok = failed = 0
    assoc = ae.associate("127.0.0.1", port, ae_title=aet)
    if not assoc.is_established:
        raise RuntimeError(f"association to {aet}@127.0.0.1:{port} not established")
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            if status and getattr(status, "Status", None) == 0x0000:
                ok += 1
            else:
                failed += 1
            if progress:
                progress()
    finally:
        assoc.release()
    return ok, failed


def _to_little_endian(ds: pydicom.Dataset) -> pydicom.Dataset:
    """The dataset, every element decoded, marked for Explicit VR Little Endian encoding."""
    ds.walk(lambda _ds, _elem: None)  # decodes every raw element (sequence items too) while BE is known
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.set_original_encoding(False, True, ds.original_character_set)
    return ds


def _sop_uids(files: list[Path]) -> set[str]:
    return {
        str(pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID) for p in files
    }


def run(
    settings: Settings,
    data_dir: Path,
    reports_dir: Path,
    sample: Path | None,
    console: Console,
    out: Console,
    progress_bar: Callable,
) -> int:
    """The demo; returns the exit code (0 done, 1 done with something missing, 3 could not run)."""
    data_dir = data_dir.resolve()
    demo = Demo(demo_settings(settings, data_dir), settings.source, data_dir, console, out, progress_bar)
    console.print(f"demo data directory: {data_dir}")
    data_dir.mkdir(parents=True, exist_ok=True)
    files = prepare_files(demo, sample)
    store = DoseStore(demo.settings.database_url, Pseudonymiser(load_or_create_secret(demo.settings.site_secret_path)))
    try:
        complete = receive(demo, store, files)
        qa_serial = load_physics(demo, store, sample)
        recalculate(demo, store)
        complete = write_reports(demo, store, reports_dir, qa_serial) and complete
    finally:
        store.close()
    return 0 if complete else 1


def demo_settings(settings: Settings, data_dir: Path) -> Settings:
    """The user's settings with the demo's own data directory: its own database, secret, spool and
    quarantine, no listener allow-list, and every dataset deleted once ingested."""
    values = copy.deepcopy(settings.values)
    values.update(data_dir=str(data_dir), database_url="", site_secret="", quarantine_dir="")
    values["listener"].update(spool_dir="", archive_dir="", allow=[], after_ingest="delete")
    return Settings(values, settings.source)


def prepare_files(demo: Demo, sample: Path | None) -> list[Path]:
    """1. the dose objects: sample_data's and the synthetic ones."""
    with demo.progress_bar() as bar:
        task = bar.add_task("generating synthetic RDSRs", total=sum(c for _, c, _, _ in SYNTHETIC), rate="")
        files = gather_files(demo.data_dir, sample, progress=lambda: bar.update(task, advance=1))
    n_sample = sum(1 for f in files if sample is not None and sample in f.parents)
    demo.console.print(
        f"{len(files)} DICOM files: {n_sample} from {sample if n_sample else '(no sample_data)'}, "
        f"{len(files) - n_sample} synthetic"
    )
    return files


def receive(demo: Demo, store: DoseStore, files: list[Path]) -> bool:
    """2.-3. the listener started, the files sent to it, the wait for their ingest; False when a file
    failed or the ingest did not finish."""
    expected = len(_sop_uids(files) - held_sop_instances(store))
    counts = store.counts()
    before = counts["source_objects"] + counts["quarantine"]
    with listener(demo) as (proc, port, log):
        demo.console.print(f"srdose listen (pid {proc.pid}) on 127.0.0.1:{port}, log {log}")
        with demo.progress_bar() as bar:
            task = bar.add_task("C-STORE to the listener", total=len(files), rate="")
            ok, failed = send(files, port, progress=lambda: bar.update(task, advance=1))
        demo.console.print(f"sent {ok} file(s) with Success" + (f", [red]{failed} failed[/]" if failed else ""))
        ingested = wait_for_ingest(demo, store, proc, log, expected, before)
    c = store.counts()
    demo.console.print(
        f"database: {c['devices']} units, {c['studies']} studies, {c['events']} events, {c['quarantine']} quarantined"
    )
    return not failed and ingested


def listener_env(demo: Demo) -> dict[str, str]:
    """The environment of ``srdose listen``: none of the user's SRDOSE_ variables, the demo's data directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SRDOSE_")}
    env.update(
        SRDOSE_DATA_DIR=str(demo.data_dir),
        SRDOSE_DATABASE_URL="",
        SRDOSE_SITE_SECRET="",
        SRDOSE_QUARANTINE_DIR="",
        SRDOSE_LISTENER__SPOOL_DIR="",
        SRDOSE_LISTENER__ARCHIVE_DIR="",
        SRDOSE_LISTENER__ALLOW="",
        SRDOSE_LISTENER__AFTER_INGEST="delete",
        SRDOSE_LISTENER__AET="SRDOSE",
    )
    if demo.source is not None:
        env["SRDOSE_CONFIG"] = str(demo.source)
    return env


@contextmanager
def listener(demo: Demo) -> Iterator[tuple[subprocess.Popen, int, Path]]:
    """``srdose listen`` on a free loopback port, once it accepts connections: (process, port, log);
    stopped (SIGTERM, then killed) on the way out."""
    port = _free_port()
    log = demo.data_dir / "listen.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "srdose", "listen", "--host", "127.0.0.1", "--port", str(port)],
        env=listener_env(demo),
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_port(port, proc)
        yield proc, port, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def wait_for_ingest(
    demo: Demo, store: DoseStore, proc: subprocess.Popen, log: Path, expected: int, before: int
) -> bool:
    """Until the store holds ``expected`` more objects (kept or quarantined) and the spool is empty;
    False when the listener died or :data:`INGEST_TIMEOUT_S` passed first."""
    spool = Spool(demo.settings.spool_dir)
    deadline = time.monotonic() + INGEST_TIMEOUT_S
    with demo.progress_bar() as bar:
        task = bar.add_task("waiting for the ingest", total=expected, rate="")
        while True:
            c = store.counts()
            done = c["source_objects"] + c["quarantine"] - before
            bar.update(task, completed=min(done, expected))
            pending = len(spool.pending()) if demo.settings.spool_dir.exists() else 0
            if done >= expected and pending == 0:
                return True
            if time.monotonic() > deadline or proc.poll() is not None:
                demo.console.print(
                    f"[red]ingest incomplete: {done} of {expected} after {INGEST_TIMEOUT_S:.0f} s (see {log})[/]"
                )
                return False
            time.sleep(0.25)


def load_physics(demo: Demo, store: DoseStore, sample: Path | None) -> str | None:
    """4. the example physics data; the serial of its unit (the QA report's), None without the file."""
    physics = (sample / "physics" / EXAMPLE_PHYSICS) if sample is not None else None
    if physics is None or not physics.is_file():
        physics = Path(__file__).resolve().parents[1] / "sample_data" / "physics" / EXAMPLE_PHYSICS
    if not physics.is_file():
        demo.console.print("[yellow]no example physics file: every event uses the RDSR's own values[/]")
        return None
    pf = parse(physics)
    _, outcome = add_physics_set(store, pf, replace=True)
    demo.console.print(f"physics data {esc(physics.name)}: unit {esc(pf.serial)}, {outcome}")
    return pf.serial


def recalculate(demo: Demo, store: DoseStore) -> None:
    """4. ``srdose recalc`` of every event."""
    params = Params.from_settings(demo.settings.recalc)
    fs = resolve_factor_set(store, demo.settings.recalc.default_factor_set)
    with demo.progress_bar() as bar:
        task = bar.add_task("recalculating MGD", total=None, rate="")
        summary = recalc_run(
            store,
            fs,
            params,
            on_plan=lambda n: bar.update(task, total=n),
            progress=lambda k: bar.update(task, advance=k),
        )
    demo.console.print(
        f"recalculated {summary.computed} event(s) ({dict(summary.methods)}), {summary.no_mgd} without MGD"
    )


def write_reports(demo: Demo, store: DoseStore, reports_dir: Path, qa_serial: str | None) -> bool:
    """5. the survey, DRL and QA reports over the whole period held, their paths printed; False when one
    is partial."""
    units = period_units(store)
    since, until = (
        f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in (min(u["first"] for u in units), max(u["last"] for u in units))
    )
    if qa_serial is None or qa_serial not in {u["serial"] for u in units}:
        qa_serial = max(units, key=lambda u: u["events"])["serial"]
    drl_settings = DRLSettings.from_settings(demo.settings.report, min_events=5)
    built: list[Built] = []
    with demo.console.status("writing reports") as status:
        step = status.update
        built.append(build_survey(store, demo.settings, since, until, reports_dir, progress=step))
        built.append(build_drl(store, demo.settings, since, until, reports_dir, drl_settings, progress=step))
        built.append(build_qa(store, demo.settings, since, until, reports_dir, qa_serial, progress=step))
    for note in (note for b in built for note in b.notes):
        demo.console.print(f"[yellow]{esc(note)}[/]")
    demo.console.print(
        f"reports for {since} to {until} (the DRL with at least {drl_settings.min_events} "
        f"exposures per room: the demo's rooms are small):"
    )
    for path in (path for b in built for path in b.html):
        demo.out.print(str(path))
    return not any(b.partial for b in built)
