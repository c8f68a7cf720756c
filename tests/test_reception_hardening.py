"""Reception under hostile or failing conditions: silent and slow peers,
decompression bombs, truncated images, a wrong called AE title, a dead
ingest process, a failing database, bad listener settings.

Real sockets and associations on 127.0.0.1, real SQLite. The tests that
need short timeouts or a small size cap run the listener in this process
(its options set directly); the others run `srdose listen`.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import (
    DigitalMammographyXRayImageStorageForPresentation,
    Verification,
    XRayRadiationDoseSRStorage,
)
from sqlalchemy import text

from srdose import synth
from srdose.parse import Malformed, read_bytes
from tests import builders as B
from tests.conftest import SAMPLE_DATA
from tests.netutil import ListenerProcess, free_port, need, storescu, wait_until

pytestmark = pytest.mark.network

GE_IMAGE = SAMPLE_DATA / "images_only" / "ge_essential_mg01_RCC.dcm"


# --- helpers -------------------------------------------------------------------------


def _client(*contexts, **syntaxes) -> AE:
    ae = AE(ae_title="MAMMO1")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 15
    ae.connection_timeout = 10  # TCP connect and, under TLS, the handshake
    for cx in contexts:
        ae.add_requested_context(cx, syntaxes.get("transfer_syntax", [ExplicitVRLittleEndian]))
    return ae


def _rdsr_bytes(extra_text: str = "") -> tuple:
    """An RDSR (dataset, bytes), optionally with a large text item."""
    extra = (
        [B.item("CONTAINS", "TEXT", ("125203", "DCM", "Acquisition Protocol"), text=extra_text)] if extra_text else []
    )
    ds = B.rdsr(events=[B.event(extra=extra)])
    return ds, B.to_bytes(ds)


def _quarantine_rows(db_path: Path) -> list:
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{db_path}")
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text("SELECT kind, reason, stored_as FROM quarantine"))]
    finally:
        engine.dispose()


@pytest.fixture
def inproc(srdose_env, tmp_path):
    """A listener in this process (options given directly), its ingest
    worker in a thread, on a fresh SQLite database."""
    from srdose.ingest import Ingestor
    from srdose.pseudonym import Pseudonymiser
    from srdose.quarantine import QuarantineFolder
    from srdose.receive.scp import Listener, ListenerOptions
    from srdose.receive.worker import IngestWorker
    from srdose.spool import Spool
    from srdose.store import DoseStore

    running = []

    def start(**opts):
        db = tmp_path / "inproc.sqlite"
        store = DoseStore(f"sqlite:///{db}", Pseudonymiser(b"0" * 64))
        quarantine = QuarantineFolder(tmp_path / "quarantine")
        spool = Spool(tmp_path / "spool")
        worker = IngestWorker(Ingestor(store, quarantine), spool, tmp_path / "status.json")
        worker.start()
        lst = Listener(ListenerOptions(aet="SRDOSE", host="127.0.0.1", port=0, **opts), spool, quarantine, worker)
        lst.start()
        running.append((lst, worker, store))
        lst.db_path = db
        return lst, worker

    yield start
    for lst, worker, store in running:
        lst.stop(grace=1)
        worker.stop(drain=False)
        store.close()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A throw-away certificate for 127.0.0.1 and its key (PEM)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = tmp_path / "tls-key.pem", tmp_path / "tls-cert.pem"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """Has the other end closed ``sock`` (within ``timeout`` seconds)?"""
    sock.settimeout(timeout)
    try:
        return sock.recv(100) == b""
    except TimeoutError:
        return False
    except OSError:  # reset
        return True


def _ingest_child(listener_pid: int) -> int:
    """PID of `srdose listen`'s ingest process (a multiprocessing spawn child)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == listener_pid and b"spawn_main" in cmdline:
            return int(entry.name)
    return 0


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


# --- 1. TLS: a silent connection must not stop the others ----------------------------


def test_idle_connection_on_the_tls_port_does_not_block_tls_associations(tmp_path):
    cert, key = _self_signed(tmp_path)
    lst = ListenerProcess(tmp_path / "data", free_port(), "--tls-cert", str(cert), "--tls-key", str(key)).start()
    idle = []
    try:
        # plain TCP connections that never start their handshake
        idle = [socket.create_connection(("127.0.0.1", lst.port), timeout=5) for _ in range(3)]
        time.sleep(0.5)  # accepted by now
        client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
        ae = _client(Verification)
        assoc = ae.associate("127.0.0.1", lst.port, ae_title="SRDOSE", tls_args=(client_ctx, "127.0.0.1"))
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
    finally:
        for s in idle:
            s.close()
        assert lst.stop() == 0


# --- 5. slow association requests ---------------------------------------------------


def test_slow_association_requests_hold_no_slot(tmp_path):
    need("/usr/bin/echoscu")
    lst = ListenerProcess(tmp_path / "data", free_port()).start()
    slow = []
    try:
        # 20 peers start an A-ASSOCIATE-RQ (type 0x01, then a byte now and then)
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", lst.port), timeout=5)
            s.sendall(b"\x01")
            slow.append(s)
        time.sleep(0.5)
        for s in slow:
            s.sendall(b"\x00")
        r = subprocess.run(
            [
                "/usr/bin/echoscu",
                "-to",
                "10",
                "-ta",
                "10",
                "-aet",
                "MAMMO1",
                "-aec",
                "SRDOSE",
                "127.0.0.1",
                str(lst.port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        [f] = synth.generate("hologic", 1, tmp_path / "syn", seed=11)
        r = storescu(lst.port, [f], timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        for s in slow:
            s.close()
        lst.stop()


def test_an_association_request_has_a_deadline_and_few_may_wait(inproc):
    lst, _ = inproc(request_timeout=1.0, max_pending=4)
    conns = []
    try:
        for _ in range(6):
            s = socket.create_connection(("127.0.0.1", lst.port), timeout=5)
            s.sendall(b"\x01\x00")
            conns.append(s)
            time.sleep(0.05)  # arrival order decides which are the oldest
        # two over the limit: the two oldest are dropped at once
        assert _closed_by_peer(conns[0], 0.8) and _closed_by_peer(conns[1], 0.8)
        # a real association meanwhile
        ae = _client(Verification)
        assoc = ae.associate("127.0.0.1", lst.port, ae_title="SRDOSE")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        # the rest, dribbling bytes, are dropped when their time is up
        for s in conns[2:]:
            try:
                s.sendall(b"\x00")
            except OSError:
                pass
        assert all(_closed_by_peer(s, 10) for s in conns[2:])
    finally:
        for s in conns:
            s.close()


# --- 6. decompression bomb ------------------------------------------------------------


def test_deflated_dataset_beyond_the_size_cap_is_refused_and_quarantined(inproc, tmp_path, monkeypatch):
    from pynetdicom import _config

    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # the file's bytes as they are
    lst, worker = inproc(max_dataset_mb=1)
    ds, _ = _rdsr_bytes("X" * 20_000_000)  # 20 MB of text, a few kB deflated
    path = tmp_path / "bomb.dcm"
    B.to_bytes(ds, DeflatedExplicitVRLittleEndian)
    ds.save_as(path, enforce_file_format=True)
    assert path.stat().st_size < 200_000
    small, _ = _rdsr_bytes()
    small_path = tmp_path / "small.dcm"
    B.to_bytes(small, DeflatedExplicitVRLittleEndian)
    small.save_as(small_path, enforce_file_format=True)

    ae = _client(XRayRadiationDoseSRStorage, transfer_syntax=[DeflatedExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", lst.port, ae_title="SRDOSE")
    assert assoc.is_established
    status = assoc.send_c_store(path)
    assert status.Status == 0xC000
    assert "larger than srdose accepts" in status.ErrorComment
    assert assoc.send_c_store(small_path).Status == 0x0000  # under the cap: taken
    assoc.release()
    wait_until(worker.idle, 30, 0.1, "ingest idle")
    [row] = _quarantine_rows(lst.db_path)
    assert row["kind"] == "too_large" and "max_dataset_mb" in row["reason"]
    assert Path(row["stored_as"]).stat().st_size < 200_000  # the dataset as sent


# --- 7. truncated MG image ------------------------------------------------------------


def test_truncated_mg_image_is_refused_as_ingest_refuses_it(tmp_path, monkeypatch):
    from pynetdicom import _config

    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # the file's bytes as they are
    data = GE_IMAGE.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[:-60])  # the pixel data runs past the end
    with pytest.raises(Malformed):
        read_bytes(cut.read_bytes())  # what `srdose ingest` does with these bytes
    lst = ListenerProcess(tmp_path / "data", free_port()).start()
    try:
        ae = _client(DigitalMammographyXRayImageStorageForPresentation)
        assoc = ae.associate("127.0.0.1", lst.port, ae_title="SRDOSE")
        assert assoc.is_established
        status = assoc.send_c_store(cut)
        assert status.Status == 0xC000 and "truncated" in status.ErrorComment
        assert assoc.send_c_store(GE_IMAGE).Status == 0x0000  # the whole image is taken
        assoc.release()
        wait_until(
            lambda: lst.spooled() == 0 and len(list((lst.data_dir / "spool").glob("*.refused"))) == 0,
            60,
            0.2,
            "spool empty",
        )
        rows = _quarantine_rows(lst.data_dir / "srdose.sqlite")
        assert [r["kind"] for r in rows] == ["malformed"]
        assert "truncated" in rows[0]["reason"]
        kept = Path(rows[0]["stored_as"]).read_bytes()
        assert kept[-500:] == cut.read_bytes()[-500:]  # as received (file meta made by the receiver)
        assert len(lst.events()) == 1
    finally:
        lst.stop()


# --- 15. called AE title ----------------------------------------------------------------


def test_wrong_called_ae_title_is_rejected(tmp_path):
    lst = ListenerProcess(tmp_path / "data", free_port()).start()
    try:
        [f] = synth.generate("ge", 1, tmp_path / "syn", seed=6)
        r = storescu(lst.port, [f], aec="WRONG", timeout=60)
        assert r.returncode != 0
        assert "Association Rejected" in r.stdout + r.stderr
        assert storescu(lst.port, [f], timeout=60).returncode == 0
    finally:
        lst.stop()


# --- 3. the ingest process dies -------------------------------------------------------


def test_dead_ingest_process_stops_acknowledgements_and_the_listener(tmp_path):
    data = tmp_path / "data"
    port = free_port()
    lst = ListenerProcess(data, port).start()
    child = wait_until(lambda: _ingest_child(lst.proc.pid), 30, 0.1, "ingest process found")
    files = synth.generate("hologic", 8, tmp_path / "syn", seed=21)
    try:
        ae = _client(XRayRadiationDoseSRStorage)
        assoc = ae.associate("127.0.0.1", port, ae_title="SRDOSE")
        assert assoc.is_established
        # held in the spool while the ingest process cannot run
        os.kill(child, signal.SIGSTOP)
        for f in files[:3]:
            assert assoc.send_c_store(f).Status == 0x0000
        os.kill(child, signal.SIGKILL)
        wait_until(lambda: _gone(child), 30, 0.05, "ingest process dead")
        statuses = []
        for f in files[3:]:
            if not assoc.is_established:
                break
            statuses.append(getattr(assoc.send_c_store(f), "Status", None))
        # A dataset arriving in the same instant as the death may still be acknowledged (it is in the
        # spool, durably); from the first refusal on, nothing more is.
        refused_from = next(k for k, st in enumerate(statuses) if st != 0x0000)
        assert refused_from <= 1 and 0x0000 not in statuses[refused_from:]
        acknowledged = 3 + refused_from
        assoc.abort()
        assert lst.proc.wait(30) != 0  # exits, and says so
        assert lst.spooled() == acknowledged
    finally:
        lst.stop()
    # the next start ingests what the spool kept: everything acknowledged
    lst2 = ListenerProcess(data, port).start()
    try:
        wait_until(
            lambda: lst2.spooled() == 0 and len({r["sop_instance_uid"] for r in lst2.events()}) == acknowledged,
            60,
            0.5,
            "spool ingested",
        )
    finally:
        assert lst2.stop() == 0


# --- 2. a dataset the database refuses does not stop ingest ---------------------------


def test_dataset_the_database_refuses_is_quarantined_and_the_batch_commits(srdose_env, tmp_path):
    from srdose.ingest import Ingestor
    from srdose.pseudonym import Pseudonymiser
    from srdose.quarantine import QuarantineFolder
    from srdose.receive.worker import IngestWorker, Received
    from srdose.spool import Spool
    from srdose.store import DoseStore

    store = DoseStore(f"sqlite:///{tmp_path / 'db.sqlite'}", Pseudonymiser(b"0" * 64))
    # the database refuses one SOP instance, and its quarantine record too
    with store.begin() as conn:
        for table in ("source_objects", "quarantine"):
            conn.execute(
                text(
                    f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
                    "WHEN NEW.sop_instance_uid LIKE '%.666' "
                    "BEGIN SELECT RAISE(ABORT, 'refused by the database'); END"
                )
            )
    spool = Spool(tmp_path / "spool")
    worker = IngestWorker(Ingestor(store, QuarantineFolder(tmp_path / "quarantine")), spool)
    for uid in ("1.2.3.1", "1.2.3.666", "1.2.3.2"):  # one batch, the bad one in the middle
        worker.submit(Received(spool.put(B.to_bytes(B.rdsr(sop_uid=uid)), "MAMMO1"), "dicom:MAMMO1", None, ""))
    worker.start()
    try:
        wait_until(worker.idle, 30, 0.1, "ingest idle")  # not retried forever
    finally:
        worker.stop(drain=False)
    assert spool.pending() == []
    assert worker.counts["ingested"] == 2 and worker.counts["quarantined"] == 1
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT reason, stored_as FROM quarantine")).all()
        held = {r[0] for r in conn.execute(text("SELECT sop_instance_uid FROM source_objects"))}
    store.close()
    assert held == {"1.2.3.1", "1.2.3.2"}
    assert len(rows) == 1 and "refused by the database" in rows[0][0]
    assert Path(rows[0][1]).is_file()


# --- 17. settings and status -------------------------------------------------------------


@pytest.mark.parametrize("port", ['"eleven"', "70000"])
def test_bad_listener_port_is_a_usage_error(tmp_path, port):
    cfg = tmp_path / "srdose.toml"
    cfg.write_text(f"[listener]\nport = {port}\n")
    env = {**os.environ, "SRDOSE_DATA_DIR": str(tmp_path / "data"), "SRDOSE_CONFIG": str(cfg)}
    r = subprocess.run(
        [sys.executable, "-m", "srdose", "listen", "--host", "127.0.0.1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert "[listener] port" in r.stdout + r.stderr  # says which setting


def test_status_says_when_the_listener_is_down(tmp_path):
    lst = ListenerProcess(tmp_path / "data", free_port()).start()
    wait_until(lambda: (lst.data_dir / "listener-status.json").exists(), 30, 0.2, "status written")
    assert "listener running" in lst.srdose("status").stdout
    assert lst.stop() == 0
    r = lst.srdose("status")
    assert r.returncode == 0 and "listener not running" in r.stdout
    assert '"running": false' in lst.srdose("status", "--json").stdout
    # killed: its last status stays behind, its process is gone
    lst.start()
    wait_until(lambda: "listener running" in lst.srdose("status").stdout, 30, 0.5, "status of the new run")
    lst.kill()
    assert "listener not running" in lst.srdose("status").stdout


# --- 18. the database is current after reception --------------------------------------


def test_recalculation_after_ingest_waits_for_a_pause_in_a_stream(tmp_path, caplog):
    """One sender's datasets arrive one at a time, the queue empty after each commit: the MGD is
    recalculated at most once per interval while they stream, and for all of them once they
    pause, not after each one (that took more of the machine than receiving them)."""
    import logging

    from srdose.config import RecalcSettings
    from srdose.ingest import Ingestor
    from srdose.pseudonym import Pseudonymiser
    from srdose.quarantine import QuarantineFolder
    from srdose.receive.worker import AfterIngestRecalc, IngestWorker, Received
    from srdose.spool import Spool
    from srdose.store import DoseStore

    store = DoseStore(f"sqlite:///{tmp_path / 'db.sqlite'}", Pseudonymiser(b"0" * 64))
    spool = Spool(tmp_path / "spool")
    recalc = AfterIngestRecalc(store, RecalcSettings(), interval=600)
    worker = IngestWorker(Ingestor(store, QuarantineFolder(tmp_path / "quarantine")), spool, recalc=recalc)
    files = synth.generate("hologic", 8, tmp_path / "syn", seed=32)
    caplog.set_level(logging.INFO, logger="srdose.listen")
    worker.start()
    try:
        for f in files:
            worker.submit(Received(spool.put(f.read_bytes(), "MAMMO1"), "dicom:MAMMO1", None, ""))
            wait_until(worker.idle, 30, 0.005, "committed")
            time.sleep(0.02)  # the next dataset's round trip: the queue is empty meanwhile
        runs = [r for r in caplog.records if r.getMessage().startswith("recalculated the MGD")]
        assert len(runs) == 1  # the first commit's: the interval has not passed since
        wait_until(lambda: not recalc.wanted, 30, 0.05, "recalculated after the pause")
    finally:
        worker.stop(drain=False)
    with store.engine.connect() as conn:
        events = conn.execute(text("SELECT count(*) FROM events")).scalar_one()
        results = conn.execute(text("SELECT count(*) FROM recalc_results")).scalar_one()
    store.close()
    assert events == results > len(files)


def test_mgd_is_recalculated_after_ingest(tmp_path):
    lst = ListenerProcess(tmp_path / "data", free_port()).start()
    try:
        [f] = synth.generate("hologic", 1, tmp_path / "syn", seed=31)
        assert storescu(lst.port, [f], timeout=60).returncode == 0

        def recalculated():
            rows = lst.events()
            return rows and all(r["method"] for r in rows) and rows

        rows = wait_until(recalculated, 60, 0.5, "recalculated events")
        assert all(r["mgd_recalc_mgy"] or "no_mgd" in r["recalc_flags"] for r in rows)
    finally:
        lst.stop()
