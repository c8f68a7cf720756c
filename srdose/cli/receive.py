"""``srdose listen``, ``srdose status`` and ``srdose retrieve``: DICOM reception."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from srdose.cli.context import (
    EXIT_FAILED,
    EXIT_PARTIAL,
    EXIT_USAGE,
    Context,
    console,
    fail,
    out,
    progress_bar,
)
from srdose.cli.params import DATE
from srdose.config import ConfigError
from srdose.governance.hooks import IngestHooks
from srdose.ingest import Ingestor
from srdose.quarantine import QuarantineFolder
from srdose.receive.process import IngestProcess
from srdose.receive.retrieve import (
    PacsClient,
    RetrieveError,
    RetrieveSummary,
    find_studies,
    study_instances,
    wait_until_ingested,
)
from srdose.receive.scp import Listener, ListenerOptions, Receiver
from srdose.receive.worker import IngestWorker
from srdose.spool import Spool
from srdose.store.database import held_sop_instances, reception_counts
from srdose.terminal import esc


def _plain_service_log() -> None:
    """One plain line per association and per dataset, as a service log
    (journald, files) wants it; rich's rendering costs ~1 ms a line."""
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers[:] = [handler]


def _status_file(obj: Context) -> Path:
    return obj.settings.data_dir / "listener-status.json"


#: A running listener rewrites its status every few seconds; older than
#: this, it is not taken to be running.
STATUS_STALE_SECONDS = 120


def _listener_running(doc: dict) -> bool:
    """Is the listener that wrote this status still running?"""
    if doc.get("stopped") or time.time() - float(doc["updated"]) > STATUS_STALE_SECONDS:
        return False
    pid = doc.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _listener_options(obj: Context, overrides: dict) -> ListenerOptions:
    """``[listener]`` with the command line's options, checked as the file's values are (exit 2
    naming the setting). The port was checked by its option: 0 there asks for any free port."""
    port = overrides.pop("port", None)
    changes = {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items() if v not in (None, (), [])}
    try:
        section = obj.settings.with_overrides("listener", changes)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    options = ListenerOptions.from_settings(section)
    return options if port is None else dataclasses.replace(options, port=port)


def build_listener(
    obj: Context, overrides: dict, own_process: bool = False
) -> tuple[Listener, IngestProcess | IngestWorker]:
    """Listener, worker and spool from the settings plus command-line overrides.

    With ``own_process`` the ingest worker runs in a child process (the
    listener service); otherwise in a thread (retrieval).
    """
    options = _listener_options(obj, dict(overrides))
    if bool(options.tls_cert) != bool(options.tls_key):
        fail("--tls-cert and --tls-key go together", EXIT_USAGE)
    if options.tls_ca and not options.tls_cert:
        fail("--tls-ca needs --tls-cert and --tls-key: without them the listener would run plain TCP", EXIT_USAGE)
    store = obj.store()  # creates the schema and the site secret before any child starts
    quarantine = QuarantineFolder(obj.settings.quarantine_dir)
    spool = Spool(obj.settings.spool_dir, obj.settings.listener.after_ingest, obj.settings.archive_dir)
    hooks = IngestHooks.from_settings(obj.settings)
    worker: IngestProcess | IngestWorker
    if own_process:
        recalc = obj.settings.recalc
        worker = IngestProcess(
            obj.db_url,
            obj.settings.site_secret_path,
            obj.settings.quarantine_dir,
            spool,
            _status_file(obj),
            hooks,
            recalc_section=recalc if recalc.after_ingest else None,
        )
    else:
        worker = IngestWorker(Ingestor(store, quarantine, hooks=hooks), spool, _status_file(obj))
    return Listener(options, spool, quarantine, worker), worker


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), help="TCP port (default from config: 11112).")
@click.option("--aet", help="Our AE title (default SRDOSE).")
@click.option("--host", help="Address to listen on (default 0.0.0.0; 127.0.0.1 for this machine only).")
@click.option("--allow", multiple=True, metavar="CALLING_AE", help="Accept only these calling AE titles (repeat).")
@click.option("--max-pdu", type=click.IntRange(0), help="Maximum PDU size we receive (0: unlimited).")
@click.option("--max-associations", type=click.IntRange(1), help="Simultaneous associations.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="Server certificate (PEM): DICOM TLS.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="Its private key (PEM).")
@click.option(
    "--tls-ca", type=click.Path(exists=True, dir_okay=False), help="CA (PEM) whose client certificates are required."
)
@click.pass_obj
def listen(
    obj: Context,
    port: int | None,
    aet: str | None,
    host: str | None,
    allow: tuple[str, ...],
    max_pdu: int | None,
    max_associations: int | None,
    tls_cert: str | None,
    tls_key: str | None,
    tls_ca: str | None,
) -> None:
    """Receive dose SRs and MG images over DICOM (a Storage SCP) and ingest them.

    Every dataset is on disk (spooled, fsynced) before the sender hears
    Success; refused datasets get a failure status and go to quarantine.
    Whatever an earlier run left in the spool is ingested first. Stops
    cleanly on SIGTERM or Ctrl-C, finishing the datasets in hand.
    """
    _plain_service_log()
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        console.print(f"{signal.Signals(signum).name}: finishing the datasets in hand, then stopping")
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    listener, worker = build_listener(
        obj,
        dict(
            port=port,
            aet=aet,
            host=host,
            allow=list(allow),
            max_pdu=max_pdu,
            max_associations=max_associations,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_ca=tls_ca,
        ),
        own_process=True,
    )
    obj.store().close()  # the child process owns the database from here
    try:
        worker.start()
    except RuntimeError as exc:
        fail(str(exc), EXIT_FAILED)
    died = False
    try:
        # the child ingests what an earlier run left in the spool before
        # anything new; reception opens meanwhile, so that a backlog or a
        # database that is down cannot keep the port closed
        left = worker.recover()
        if left:
            console.print(f"{left} dataset(s) left in the spool by an earlier run: ingesting them first")
        try:
            listener.start()
        except OSError as exc:
            fail(f"cannot listen on port {listener.options.port}: {exc.strerror or exc}", EXIT_FAILED)
        console.print(f"srdose listening as {listener.options.aet} on port {listener.port}; Ctrl-C to stop")
        while not stop.is_set():
            stop.wait(0.2)
            if not worker.alive():
                # without its ingest process the listener must not accept data
                console.print(
                    "[red]the ingest process ended; stopping (the spool keeps what was received, "
                    "and the next start ingests it)[/]"
                )
                died = True
                break
    finally:
        listener.stop(grace=1.0 if died else 10.0)
        worker.stop(drain=not died)
    console.print(f"stopped: {dict(worker.counts)}")
    if died:
        sys.exit(EXIT_FAILED)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(obj: Context, as_json: bool) -> None:
    """Counts received / ingested / quarantined / spooled, last seen per calling AE."""
    store = obj.store(write=False)
    doc: dict[str, Any] = {
        "database": reception_counts(store),
        "spooled": len(Spool(obj.settings.spool_dir).pending()) if obj.settings.spool_dir.exists() else 0,
    }
    sf = _status_file(obj)
    if sf.exists():
        try:
            doc["listener"] = json.loads(sf.read_text())
            doc["listener"]["running"] = _listener_running(doc["listener"])
        except (OSError, ValueError, TypeError, KeyError):
            pass  # being rewritten, or not ours: no listener status
    if as_json:
        out.print_json(data=doc)
        return
    table = Table(title="By calling AE / source")
    for col in ("source", "ingested objects", "quarantined", "last received (UTC)"):
        table.add_column(col)
    for row in doc["database"]:
        table.add_row(esc(row["source"]), str(row["ingested"]), str(row["quarantined"]), esc(row["last_seen"] or ""))
    out.print(table)
    out.print(f"spooled, waiting for ingest: {doc['spooled']}")
    if "listener" in doc:
        lst = doc["listener"]
        age = time.time() - lst["updated"]
        if lst["running"]:
            out.print(f"listener running (pid {lst['pid']}, status {age:.0f} s old): {lst['counts']}")
        else:
            out.print(f"listener not running (its last status, {age:.0f} s old): {lst['counts']}")


@click.command()
@click.option("--pacs", required=True, metavar="HOST:PORT", help="The PACS's address.")
@click.option("--pacs-aet", required=True, help="The PACS's AE title.")
@click.option("--aet", default=None, help="Our AE title (default from config: SRDOSE); also the C-MOVE destination.")
@click.option("--from", "date_from", required=True, type=DATE, help="First study date.")
@click.option("--to", "date_to", required=True, type=DATE, help="Last study date.")
@click.option("--modality", default="MG", show_default=True, help="Modality in study to search for ('' for any).")
@click.option("--station", help="Only studies from this station name (if the PACS can match it).")
@click.option("--institution", help="Only studies from this institution (if the PACS can match it).")
@click.option("--move/--get", "use_move", default=True, help="Retrieve with C-MOVE (default) or C-GET.")
@click.option("--port", type=click.IntRange(0, 65535), help="Port of our Storage SCP for C-MOVE (default from config).")
@click.option(
    "--external-listener", is_flag=True, help="C-MOVE to an `srdose listen` already running, instead of our own SCP."
)
@click.option(
    "--associations",
    type=click.IntRange(1, 16),
    default=4,
    show_default=True,
    help="Associations to the PACS at once: about half query, the others retrieve (one of each at least).",
)
@click.pass_obj
def retrieve(
    obj: Context,
    pacs: str,
    pacs_aet: str,
    aet: str | None,
    date_from: dt.date,
    date_to: dt.date,
    modality: str,
    station: str | None,
    institution: str | None,
    use_move: bool,
    port: int | None,
    external_listener: bool,
    associations: int,
) -> None:
    """Find dose SRs on a PACS (C-FIND) and retrieve them (C-MOVE or C-GET).

    Only dose SR instances are fetched; studies without one fall back to
    their MG image headers. Instances already in the database are skipped,
    so the command can be re-run to resume. Exit 1 if any request failed.
    """
    if date_from > date_to:
        fail(f"--from {date_from} is after --to {date_to}", EXIT_USAGE)
    host, _, pacs_port = pacs.rpartition(":")
    if not host or not pacs_port.isdigit():
        fail(f"--pacs must be HOST:PORT, not {pacs!r}", EXIT_USAGE)
    listener, worker = build_listener(obj, dict(port=port, aet=aet))
    aet = listener.options.aet
    client = PacsClient(host, int(pacs_port), pacs_aet, aet, associations=associations)
    held = held_sop_instances(obj.store())
    summary = RetrieveSummary()
    try:
        studies = find_studies(
            client, date_from.isoformat(), date_to.isoformat(), modality or None, station, institution
        )
    except RetrieveError as exc:
        fail(str(exc), EXIT_FAILED)
    summary.studies = len(studies)
    console.print(f"{summary.studies} studies; finding their dose SRs and retrieving them as they are found")
    worker.start()
    with progress_bar() as bar:
        task = bar.add_task("retrieving", total=0, rate="")

        def found(n: int) -> None:
            with summary.lock:
                summary.requested += n
                bar.update(task, total=summary.requested)

        def stored(_report: object) -> None:
            summary.count(received=1)
            bar.update(task, advance=1)

        receiver = Receiver(
            listener.spool, listener.quarantine, worker, on_stored=stored, max_bytes=listener.receiver.max_bytes
        )
        if use_move:
            listener.receiver = receiver
            if not external_listener:
                listener.start()
        try:
            summary.failed_requests = client.find_and_retrieve(
                studies,
                lambda find, uid: study_instances(find, uid, held.__contains__, summary),
                client.move_stream(aet) if use_move else client.get_stream(receiver),
                on_found=found,
            )
        except RetrieveError as exc:
            worker.stop(drain=True)
            fail(str(exc), EXIT_FAILED)
        finally:
            if use_move and not external_listener:
                listener.stop()
        if summary.requested:
            wait_until_ingested(worker)
    console.print(
        f"{summary.studies} studies; {summary.dose_instances} dose SRs "
        f"({summary.already_held} already held); {summary.image_instances} image headers from "
        f"{summary.image_studies} studies without a dose SR"
    )
    worker.stop(drain=True)
    counts = dict(worker.counts)
    out.print(f"retrieved {summary.received} of {summary.requested}; ingest: {counts}")
    for failure in summary.failed_requests:
        console.print(f"[red]{failure}[/]")
    if summary.failed_requests or (use_move and external_listener is False and summary.received < summary.requested):
        if summary.received < summary.requested:
            console.print(
                f"[yellow]{summary.requested - summary.received} instance(s) did not arrive; "
                "run the command again to resume[/]"
            )
        sys.exit(EXIT_PARTIAL)
