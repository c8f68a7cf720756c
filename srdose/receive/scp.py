"""The SR listener: a pynetdicom Storage SCP that never acknowledges what it
could lose.

For each C-STORE the handler

1. reads the dataset as the peer encoded it (no decode/re-encode), and
   refuses one that is, or inflates to, more than the size cap;
2. checks it with the very parse ``srdose ingest`` uses (completeness of the
   encoding included; the byte-level parse is ~5 ms), and if srdose refuses
   it, quarantines it with the reason and answers a failure status;
3. writes it to the spool (temp name, fsync, rename, fsync of the folder),
   answering Out of Resources (0xA700) if that fails or if the ingest
   worker is gone;
4. only then answers Success, and hands the spooled file to the ingest
   worker, which commits it to the database off the network thread.

Before any of that, a connection must complete its TLS handshake and its
association request within ``request_timeout`` seconds, in a thread of its
own (never in the accept loop), and only so many connections may be at that
stage at once: a peer that connects and sends nothing, or a byte now and
then, holds no slot that a real sender needs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import socket
import ssl
import threading
import time
import zlib
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # generated at import by pynetdicom
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from srdose import codes as C
from srdose import compat
from srdose.config import ListenerSettings
from srdose.ingest import bug_reason
from srdose.parse import Refused, read_bytes
from srdose.quarantine import QuarantineFolder
from srdose.receive.worker import IngestSink, Received
from srdose.spool import Spool, SpoolError
from srdose.vocab import RefusalKind, StoreStatus

log = logging.getLogger("srdose.listen")

#: Transfer syntaxes for dose SRs: the uncompressed ones, deflated included.
SR_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian]
#: Images may come compressed; srdose reads only their header.
IMAGE_SYNTAXES = SR_SYNTAXES + [
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
]
SR_CLASSES = sorted(C.DOSE_SR_CLASSES)
IMAGE_CLASSES = sorted(C.MG_IMAGE_CLASSES)

#: C-STORE failure status per refusal (PS3.4 Annex B.2.3).
REFUSED_STATUS: dict[str, StoreStatus] = {
    RefusalKind.NOT_DICOM: StoreStatus.CANNOT_UNDERSTAND,
    RefusalKind.MALFORMED: StoreStatus.CANNOT_UNDERSTAND,
    RefusalKind.UNSUPPORTED: StoreStatus.NOT_A_DOSE_OBJECT,
    RefusalKind.NOT_DOSE_REPORT: StoreStatus.NOT_A_DOSE_REPORT,
    RefusalKind.TOO_LARGE: StoreStatus.CANNOT_UNDERSTAND,
    RefusalKind.ERROR: StoreStatus.PARSER_FAILED,
}
#: Error Comment (LO, at most 64 characters) per refusal; the full reason is
#: in the quarantine folder's JSON note and the log.
REFUSED_COMMENT: dict[str, str] = {
    RefusalKind.NOT_DICOM: "malformed dataset; quarantined by srdose",
    RefusalKind.MALFORMED: "malformed or truncated dataset; quarantined by srdose",
    RefusalKind.UNSUPPORTED: "not a mammography dose object; quarantined by srdose",
    RefusalKind.NOT_DOSE_REPORT: "SR is not a dose report; quarantined by srdose",
    RefusalKind.TOO_LARGE: "dataset larger than srdose accepts; quarantined",
    RefusalKind.ERROR: "srdose could not parse this dataset; quarantined",
}
#: Decoded size (MB) above which a dataset is refused, unless configured.
MAX_DATASET_MB = 512


def _failure(status: StoreStatus, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = int(status)
    ds.ErrorComment = comment[:64]
    return ds


def decoded_size(body: bytes, transfer_syntax: str, limit: int) -> int:
    """Size of a dataset (as sent, without file meta) once decoded: inflated
    when deflated, counted without keeping the output and stopping once past
    ``limit``."""
    if str(transfer_syntax) != DeflatedExplicitVRLittleEndian:
        return len(body)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total, pending = 0, body
    try:
        while pending and total <= limit:
            total += len(inflater.decompress(pending, 1 << 20))
            pending = inflater.unconsumed_tail
    except zlib.error:
        return total  # not inflatable: the parse refuses it with the reason
    return total


def without_pixels(event) -> bytes:
    """An MG image as a Part 10 file without its pixel data (srdose reads
    the header only, and keeps no pixels)."""
    ds = event.dataset
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.file_meta = event.file_meta
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # no pixels left to be compressed
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return buf.getvalue()


class Receiver:
    """What happens to one C-STORE, for the listener and for C-GET/C-MOVE
    retrieval alike: check, spool durably, answer, hand to the worker.

    Parameters
    ----------
    spool, quarantine, worker
        Where accepted datasets wait, where refused ones go, who ingests.
    on_stored
        Optional callback per accepted dataset (retrieval counts them).
    max_bytes
        Decoded size above which a dataset is refused and quarantined.
    """

    def __init__(
        self,
        spool: Spool,
        quarantine: QuarantineFolder,
        worker: IngestSink,
        on_stored=None,
        max_bytes: int = MAX_DATASET_MB * 1_000_000,
    ):
        self.spool = spool
        self.quarantine = quarantine
        self.worker = worker
        self.on_stored = on_stored
        self.max_bytes = int(max_bytes)
        self.per_association: dict[int, int] = {}

    def on_store(self, event):
        t0 = time.monotonic()
        calling = event.assoc.requestor.ae_title.strip()
        sop_class = str(event.request.AffectedSOPClassUID)
        sop_uid = str(event.request.AffectedSOPInstanceUID or "")
        key = id(event.assoc)
        self.per_association[key] = self.per_association.get(key, 0) + 1
        origin = f"dicom:{calling}"
        if not self.worker.alive():
            # what is acknowledged must reach the database: without an
            # ingest worker, nothing more is taken (the sender retries later)
            log.error("C-STORE from %s: the ingest worker is not running; answering out-of-resources", calling)
            return _failure(StoreStatus.OUT_OF_RESOURCES, "srdose cannot ingest now; send again later")
        try:
            raw = event.encoded_dataset(include_meta=True)
        except Exception as exc:  # the file meta cannot be made from what the peer sent
            log.warning("C-STORE from %s: cannot frame the dataset (%s)", calling, exc)
            raw = bytes(getattr(event.request.DataSet, "getvalue", lambda: b"")())
            return self._refuse(
                raw,
                RefusalKind.MALFORMED,
                f"the dataset cannot be framed as a DICOM file ({type(exc).__name__}: {str(exc)[:200]})",
                calling,
                sop_uid,
                sop_class,
                t0,
            )
        ts = str(event.context.transfer_syntax)
        size = decoded_size(event.encoded_dataset(include_meta=False), ts, self.max_bytes)
        if size > self.max_bytes:
            return self._refuse(
                raw,
                RefusalKind.TOO_LARGE,
                f"the dataset is more than {self.max_bytes / 1e6:g} MB "
                f"once decoded ({len(raw)} bytes as sent, transfer syntax {UID(ts).name}); the cap "
                "is [listener] max_dataset_mb",
                calling,
                sop_uid,
                sop_class,
                t0,
            )
        # the same checks as `srdose ingest`, on the bytes as received
        try:
            report = read_bytes(raw, "dataset")
        except Refused as exc:
            return self._refuse(raw, exc.kind, exc.reason, calling, sop_uid, sop_class, t0)
        except Exception as exc:
            log.exception("parser failed on a dataset from %s", calling)
            return self._refuse(raw, RefusalKind.ERROR, bug_reason(exc), calling, sop_uid, sop_class, t0)
        data = raw
        if sop_class in C.MG_IMAGE_CLASSES:
            try:
                data = without_pixels(event)
            except Exception as exc:  # read fine as received: keep it so
                log.warning("C-STORE from %s: kept with its pixel data (%s)", calling, exc)
        sha = hashlib.sha256(data).hexdigest()
        try:
            path = self.spool.put(data, calling)
        except SpoolError as exc:
            log.error("C-STORE from %s: %s; answering out-of-resources", calling, exc)
            return _failure(StoreStatus.OUT_OF_RESOURCES, "cannot spool dataset")
        self.worker.submit(Received(path, origin, report, sha))
        if self.on_stored:
            self.on_stored(report)
        log.info("C-STORE %s from %s: spooled in %.0f ms", UID(sop_class).name, calling, (time.monotonic() - t0) * 1e3)
        return int(StoreStatus.SUCCESS)

    def _refuse(
        self, raw: bytes, kind: str, reason: str, calling: str, sop_uid: str, sop_class: str, t0: float
    ) -> Dataset:
        """Quarantine a refused dataset (file, note, then the database
        record by way of the spool) and answer a failure status."""
        origin = f"dicom:{calling}"
        sha = hashlib.sha256(raw).hexdigest()
        try:
            stored = self.quarantine.put(raw, sha, kind, reason, origin)
        except OSError as exc:
            log.error("cannot quarantine a refused dataset from %s: %s", calling, exc)
            return _failure(StoreStatus.OUT_OF_RESOURCES, "cannot store dataset")
        note = {"kind": kind, "reason": reason, "sha256": sha, "sop_instance_uid": sop_uid, "stored_as": str(stored)}
        try:
            path = self.spool.put_refusal(note, calling)
        except SpoolError as exc:  # the dataset and its reason are in the quarantine folder
            log.error("C-STORE from %s: %s", calling, exc)
            path = None
        self.worker.submit(Received(path, origin, None, sha, kind=kind, reason=reason, sop_instance_uid=sop_uid))
        try:
            name = UID(sop_class).name
        except Exception:
            name = "dataset"
        log.info("C-STORE %s from %s: refused (%s) in %.0f ms", name, calling, kind, (time.monotonic() - t0) * 1e3)
        return _failure(
            REFUSED_STATUS.get(kind, StoreStatus.CANNOT_UNDERSTAND),
            REFUSED_COMMENT.get(kind, "refused; quarantined by srdose"),
        )


@dataclass
class ListenerOptions:
    """How the listener presents itself and what it accepts."""

    aet: str = "SRDOSE"
    host: str = "0.0.0.0"
    port: int = 11112
    allow: list[str] = field(default_factory=list)
    max_pdu: int = 0
    max_associations: int = 16
    acse_timeout: float = 30
    dimse_timeout: float = 30
    network_timeout: float = 60
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    #: seconds a connection has for its TLS handshake and association request
    request_timeout: float = 10
    #: connections that may be at that stage at once; beyond, the oldest goes
    max_pending: int = 32
    #: decoded size (MB) above which a dataset is refused and quarantined
    max_dataset_mb: float = MAX_DATASET_MB

    @classmethod
    def from_settings(cls, section: ListenerSettings) -> ListenerOptions:
        values = {f.name: getattr(section, f.name) for f in dataclasses.fields(cls)}
        return cls(**{**values, "allow": list(section.allow)})


def tls_context(cert: str, key: str, ca: str = "") -> ssl.SSLContext:
    """Server-side TLS (DICOM TLS, PS3.15 B.1): TLS 1.2 or later; with a CA,
    clients must present a certificate it signed."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile=cert, keyfile=key)
    if ca:
        ctx.load_verify_locations(cafile=ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class _Pending:
    """A connection that has not yet completed its association request."""

    __slots__ = ("sock", "address", "deadline", "assoc")

    def __init__(self, sock, address, deadline: float):
        self.sock, self.address, self.deadline, self.assoc = sock, address, deadline, None


def _cut(sock) -> None:
    """End a connection another thread may be blocked reading from.

    ``socket.shutdown`` of the plain socket (also under TLS: the TLS layer
    must not be torn down under its reader) wakes that reader with an end
    of file."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass


class _RequestHandler(RequestHandler):
    def _create_association(self):
        assoc = super()._create_association()
        self.server._attach(assoc)
        return assoc


class GuardedServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with bounds on connections that have not
    associated yet.

    The TLS handshake runs in the connection's own thread with a timeout
    (pynetdicom runs it in the accept loop, where one silent peer stops every
    other); the association request must be complete within
    ``request_timeout`` seconds of the connection; at most ``max_pending``
    connections may be waiting for theirs (a new one ends the oldest); and the
    association limit counts established associations only, not connections
    still on their way.
    """

    daemon_threads = True

    def __init__(
        self,
        ae: AE,
        address: tuple[str, int] | tuple[str, int, int, int],
        ae_title: str,
        contexts: list[PresentationContext],
        ssl_context: ssl.SSLContext | None = None,
        evt_handlers: list[evt.EventHandlerType] | None = None,
        *,
        request_timeout: float = 10,
        max_pending: int = 32,
        max_established: int = 16,
        **kwargs,
    ):
        self.request_timeout = float(request_timeout)
        self.max_pending = max(1, int(max_pending))
        self.max_established = max(1, int(max_established))
        self._pending: dict[int, _Pending] = {}  # in arrival order
        self._pending_lock = threading.Lock()
        self._local = threading.local()
        self._closing = threading.Event()
        super().__init__(
            ae, address, ae_title, contexts, ssl_context, evt_handlers, request_handler=_RequestHandler, **kwargs
        )
        self.bind(evt.EVT_REQUESTED, self._on_requested)
        self._reaper = threading.Thread(target=self._reap, name="srdose-reaper", daemon=True)
        self._reaper.start()

    def get_request(self):
        # accept only: the handshake is the connection thread's business
        return self.socket.accept()

    def process_request_thread(self, request, client_address):
        pending = self._admit(request, client_address)
        if self.ssl_context is not None:
            try:
                request.settimeout(max(0.05, pending.deadline - time.monotonic()))
                request = self.ssl_context.wrap_socket(request, server_side=True)
                request.settimeout(None)
            except (OSError, ValueError) as exc:  # SSLError and timeouts are OSErrors
                log.warning("TLS handshake with %s failed: %s", client_address[0], exc)
                self._forget(pending)
                _cut(request)
                request.close()
                return
            pending.sock = request
        self._local.pending = pending
        try:
            return super().process_request_thread(request, client_address)
        finally:
            self._local.pending = None

    def _admit(self, sock, address) -> _Pending:
        pending = _Pending(sock, address, time.monotonic() + self.request_timeout)
        evicted = None
        with self._pending_lock:
            if len(self._pending) >= self.max_pending:
                evicted = self._pending.pop(next(iter(self._pending)))
            self._pending[id(pending)] = pending
        if evicted is not None:
            log.warning(
                "%d connections waiting to associate: dropping the oldest, from %s",
                self.max_pending,
                evicted.address[0],
            )
            _cut(evicted.sock)
        return pending

    def _forget(self, pending: _Pending) -> None:
        with self._pending_lock:
            self._pending.pop(id(pending), None)

    def _attach(self, assoc) -> None:
        pending = getattr(self._local, "pending", None)
        if pending is None:
            return
        pending.assoc = assoc
        assoc._srdose_pending = pending
        # pynetdicom waits acse_timeout for the request: no longer than the deadline
        assoc.acse_timeout = max(
            0.05, min(self.ae.acse_timeout or self.request_timeout, pending.deadline - time.monotonic())
        )

    def _on_requested(self, event) -> None:
        """The association request is complete: the connection is no longer
        pending; refuse it if the established associations are at the limit."""
        assoc = event.assoc
        pending = getattr(assoc, "_srdose_pending", None)
        if pending is not None:
            self._forget(pending)
        assoc.acse_timeout = self.ae.acse_timeout
        busy = sum(1 for a in self.active_associations if a is not assoc and a.is_established)
        if busy >= self.max_established:
            log.warning("association from %s refused: %d associations already", assoc.requestor.address, busy)
            assoc.acse.send_reject(0x02, 0x03, 0x02)  # rejected transient: local limit exceeded
            assoc.is_rejected = True
            evt.trigger(assoc, evt.EVT_REJECTED, {})
            assoc.kill()

    def _reap(self) -> None:
        while not self._closing.wait(0.25):
            now = time.monotonic()
            expired = []
            with self._pending_lock:
                for key, p in list(self._pending.items()):
                    if p.deadline <= now:
                        expired.append(self._pending.pop(key))
                    elif p.assoc is not None and not p.assoc.is_alive() and p.assoc.ident is not None:
                        del self._pending[key]  # ended before its request was complete
            for p in expired:
                log.info(
                    "connection from %s dropped: no association request within %g s", p.address[0], self.request_timeout
                )
                _cut(p.sock)

    def server_close(self) -> None:
        self._closing.set()
        with self._pending_lock:
            pending, self._pending = list(self._pending.values()), {}
        for p in pending:
            _cut(p.sock)
        super().server_close()


class Listener:
    """A Storage SCP that spools, then ingests.

    Parameters
    ----------
    options
        AE title, address, allow list, limits, timeouts, TLS files.
    spool
        Where datasets wait, durably, for the ingest worker.
    quarantine
        Where refused datasets go.
    worker
        The ingest worker (its own thread and database connection).
    """

    def __init__(self, options: ListenerOptions, spool: Spool, quarantine: QuarantineFolder, worker: IngestSink):
        self.options = options
        self.spool = spool
        self.quarantine = quarantine
        self.worker = worker
        self.receiver = Receiver(spool, quarantine, worker, max_bytes=int(float(options.max_dataset_mb) * 1_000_000))
        self.server: ThreadedAssociationServer | None = None
        self.ae = self._make_ae()
        self._assoc_started: dict[int, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def _make_ae(self) -> AE:
        o = self.options
        ae = AE(ae_title=o.aet)
        ae.add_supported_context(Verification)
        for uid in SR_CLASSES:
            ae.add_supported_context(uid, SR_SYNTAXES)
        for uid in IMAGE_CLASSES:
            ae.add_supported_context(uid, IMAGE_SYNTAXES)
        if o.allow:
            ae.require_calling_aet = list(o.allow)
        ae.require_called_aet = True  # a peer must address us by our AE title
        ae.maximum_pdu_size = int(o.max_pdu)
        # the limit is GuardedServer's, on established associations only:
        # pynetdicom's counts connections that have not associated yet too
        ae.maximum_associations = 1_000_000
        ae.acse_timeout = o.acse_timeout
        ae.dimse_timeout = o.dimse_timeout
        ae.network_timeout = o.network_timeout
        return ae

    # --- event handlers -----------------------------------------------------

    def _on_open(self, event) -> None:
        compat.quick_acks(event.assoc)

    def _on_accepted(self, event) -> None:
        with self._lock:
            self._assoc_started[id(event.assoc)] = (time.monotonic(), 0)

    def _on_closed(self, event, how: str) -> None:
        assoc = event.assoc
        with self._lock:
            started, _ = self._assoc_started.pop(id(assoc), (time.monotonic(), 0))
            n = self.receiver.per_association.pop(id(assoc), 0)
        log.info(
            "association %s from %s (%s): %d datasets in %.1f s",
            how,
            assoc.requestor.ae_title,
            assoc.requestor.address,
            n,
            time.monotonic() - started,
        )

    def _on_rejected(self, event) -> None:
        primitive = event.assoc.requestor.primitive
        called = getattr(primitive, "called_ae_title", "") if primitive is not None else ""
        log.warning(
            "association rejected: calling AE %r, called AE %r, from %s",
            event.assoc.requestor.ae_title,
            called,
            event.assoc.requestor.address,
        )

    def handlers(self):
        return [
            (evt.EVT_CONN_OPEN, self._on_open),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_RELEASED, self._on_closed, ["released"]),
            (evt.EVT_ABORTED, self._on_closed, ["aborted"]),
            (evt.EVT_C_STORE, self.receiver.on_store),
        ]

    # --- life cycle -----------------------------------------------------------

    def start(self) -> None:
        """Start serving (in background threads)."""
        o = self.options
        ctx = tls_context(o.tls_cert, o.tls_key, o.tls_ca) if o.tls_cert else None
        server = self.ae.make_server(
            (o.host, int(o.port)),
            ssl_context=ctx,
            evt_handlers=self.handlers(),
            server_class=GuardedServer,
            request_timeout=o.request_timeout,
            max_pending=o.max_pending,
            max_established=o.max_associations,
        )
        threading.Thread(target=server.serve_forever, name="srdose-accept", daemon=True).start()
        compat.keep_server(self.ae, server)  # so that the AE's shutdown stops it
        self.server = server
        log.info("listening as %s on %s:%d%s", o.aet, o.host, self.port, " (TLS)" if ctx else "")

    @property
    def port(self) -> int:
        return self.server.server_address[1] if self.server else int(self.options.port)

    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let associations in progress finish (up to
        ``grace`` seconds), then abort what is left."""
        if self.server is None:
            return
        # stop the accept loop first: no new associations
        self.server.shutdown()
        deadline = time.monotonic() + grace
        # only associations that are established can have a dataset in hand
        while any(a.is_established for a in self.ae.active_associations) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.ae.shutdown()
        self.server = None
