"""The SR listener: a pynetdicom Storage SCP that never acknowledges what it
could lose.

For each C-STORE the handler

1. reads the dataset as the peer encoded it (no decode/re-encode),
2. checks it is a dose object srdose reads (the byte-level parse is ~5 ms),
   and if not, quarantines it with the reason and answers a failure status;
3. writes it to the spool (temp name, fsync, rename, fsync of the folder),
   answering 0xA700 "out of resources" if that fails;
4. only then answers Success, and hands the spooled file to the ingest
   worker, which commits it to the database off the network thread.
"""

from __future__ import annotations

import hashlib
import io
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from srdose import codes as C
from srdose.ingest import bug_reason
from srdose.parse import Refused, read_bytes
from srdose.quarantine import QuarantineFolder
from srdose.receive.worker import IngestWorker, Received
from srdose.spool import Spool, SpoolError

log = logging.getLogger("srdose.listen")

#: Transfer syntaxes for dose SRs: the uncompressed ones, deflated included.
SR_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
               ExplicitVRBigEndian]
#: Images may come compressed; srdose reads only their header.
IMAGE_SYNTAXES = SR_SYNTAXES + [JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLosslessSV1, JPEGLSLossless,
                                JPEGLSNearLossless, JPEG2000Lossless, JPEG2000, RLELossless]
SR_CLASSES = sorted(C.DOSE_SR_CLASSES)
IMAGE_CLASSES = sorted(C.MG_IMAGE_CLASSES)

# C-STORE failure statuses (PS3.4 Table B.2-1) and their ErrorComment (LO, 64 chars).
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
REFUSED_STATUS = {
    "not_dicom": 0xC000,
    "malformed": 0xC000,
    "unsupported": 0xC001,  # understood, but not a dose object srdose reads
    "not_dose_report": 0xC002,  # an SR that is not a dose report
    "error": 0xC0FF,
}
#: Error Comment (LO, at most 64 characters) per refusal; the full reason is
#: in the quarantine folder's JSON note and the log.
REFUSED_COMMENT = {
    "not_dicom": "malformed dataset; quarantined by srdose",
    "malformed": "malformed or truncated dataset; quarantined by srdose",
    "unsupported": "not a mammography dose object; quarantined by srdose",
    "not_dose_report": "SR is not a dose report; quarantined by srdose",
    "error": "srdose could not parse this dataset; quarantined",
}

TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def _quick_acks(assoc) -> None:
    """Acknowledge every PDU at once.

    DCMTK (and many modalities) write a PDU's header and body separately
    with Nagle's algorithm on; with Linux's delayed ACK the second write then
    waits ~40 ms for the first one's ACK, capping a sender at ~11-22 files/s.
    TCP_QUICKACK is cleared by the kernel after use, so it is set again
    before every read.
    """
    try:
        sock_wrapper = assoc.dul.socket
        raw = sock_wrapper.socket
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        return
    if TCP_QUICKACK is None:
        return
    original = sock_wrapper.recv

    def recv(nr_bytes):
        try:
            raw.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)
        except OSError:
            pass
        data = original(nr_bytes)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)
        except OSError:
            pass
        return data

    sock_wrapper.recv = recv


def _failure(status: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment[:64]
    return ds


def encoded(event, sop_class: str) -> bytes:
    """The dataset as a Part 10 file; MG images without their pixel data
    (srdose reads the header only, and keeps no pixels)."""
    if sop_class not in C.MG_IMAGE_CLASSES:
        return event.encoded_dataset(include_meta=True)
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
    """

    def __init__(self, spool: Spool, quarantine: QuarantineFolder, worker: IngestWorker,
                 on_stored=None):
        self.spool = spool
        self.quarantine = quarantine
        self.worker = worker
        self.on_stored = on_stored
        self.per_association: dict[int, int] = {}

    def on_store(self, event):
        t0 = time.monotonic()
        calling = event.assoc.requestor.ae_title.strip()
        sop_class = str(event.request.AffectedSOPClassUID)
        key = id(event.assoc)
        self.per_association[key] = self.per_association.get(key, 0) + 1
        origin = f"dicom:{calling}"
        try:
            data = encoded(event, sop_class)
        except Exception as exc:  # the peer sent something pynetdicom cannot frame
            log.warning("C-STORE from %s: cannot read the dataset (%s)", calling, exc)
            return _failure(CANNOT_UNDERSTAND, "cannot read dataset")
        sha = hashlib.sha256(data).hexdigest()
        report = None
        try:
            report = read_bytes(data, "dataset")
        except Refused as exc:
            kind, reason = exc.kind, exc.reason
        except Exception as exc:
            log.exception("parser failed on a dataset from %s", calling)
            kind, reason = "error", bug_reason(exc)
        if report is None:
            try:
                self.quarantine.put(data, sha, kind, reason, origin)
            except OSError as exc:
                log.error("cannot quarantine a refused dataset from %s: %s", calling, exc)
                return _failure(OUT_OF_RESOURCES, "cannot store dataset")
            self.worker.submit(Received(None, origin, None, sha, kind=kind, reason=reason,
                                        sop_instance_uid=str(event.request.AffectedSOPInstanceUID or "")))
            log.info("C-STORE %s from %s: refused (%s) in %.0f ms", UID(sop_class).name, calling,
                     kind, (time.monotonic() - t0) * 1e3)
            return _failure(REFUSED_STATUS.get(kind, CANNOT_UNDERSTAND),
                            REFUSED_COMMENT.get(kind, "refused; quarantined by srdose"))
        try:
            path = self.spool.put(data, calling)
        except SpoolError as exc:
            log.error("C-STORE from %s: %s; answering out-of-resources", calling, exc)
            return _failure(OUT_OF_RESOURCES, "cannot spool dataset")
        self.worker.submit(Received(path, origin, report, sha))
        if self.on_stored:
            self.on_stored(report)
        log.info("C-STORE %s from %s: spooled in %.0f ms", UID(sop_class).name, calling,
                 (time.monotonic() - t0) * 1e3)
        return 0x0000



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

    @classmethod
    def from_settings(cls, section: dict) -> "ListenerOptions":
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in section.items() if k in names})


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

    def __init__(self, options: ListenerOptions, spool: Spool, quarantine: QuarantineFolder,
                 worker: IngestWorker):
        self.options = options
        self.spool = spool
        self.quarantine = quarantine
        self.worker = worker
        self.receiver = Receiver(spool, quarantine, worker)
        self.server = None
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
        ae.maximum_pdu_size = int(o.max_pdu)
        ae.maximum_associations = int(o.max_associations)
        ae.acse_timeout = o.acse_timeout
        ae.dimse_timeout = o.dimse_timeout
        ae.network_timeout = o.network_timeout
        return ae

    # --- event handlers -----------------------------------------------------

    def _on_open(self, event) -> None:
        _quick_acks(event.assoc)

    def _on_accepted(self, event) -> None:
        with self._lock:
            self._assoc_started[id(event.assoc)] = (time.monotonic(), 0)

    def _on_closed(self, event, how: str) -> None:
        assoc = event.assoc
        with self._lock:
            started, _ = self._assoc_started.pop(id(assoc), (time.monotonic(), 0))
            n = self.receiver.per_association.pop(id(assoc), 0)
        log.info("association %s from %s (%s): %d datasets in %.1f s", how,
                 assoc.requestor.ae_title, assoc.requestor.address, n, time.monotonic() - started)

    def _on_rejected(self, event) -> None:
        log.warning("association rejected: calling AE %r from %s", event.assoc.requestor.ae_title,
                    event.assoc.requestor.address)

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
        self.server = self.ae.start_server((o.host, int(o.port)), block=False, ssl_context=ctx,
                                           evt_handlers=self.handlers())
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
        while (any(a.is_established for a in self.ae.active_associations)
               and time.monotonic() < deadline):
            time.sleep(0.05)
        self.ae.shutdown()
        self.server = None
