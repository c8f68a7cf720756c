"""Retrospective extraction: find dose SRs on a PACS and pull them.

1. C-FIND at STUDY level: date range, modality, optional station/institution.
2. C-FIND at SERIES level: the SR series of each study (and its MG series).
3. C-FIND at IMAGE level: the SOP instances of those series, keeping the SR
   classes that can hold a dose report; instances already held are skipped,
   so a second run fetches nothing new.
4. C-MOVE (to our own AE, received by an embedded Storage SCP or a running
   ``srdose listen``) or C-GET (on the same association) of just those
   instances, batched up to :data:`UIDS_PER_REQUEST` per request (one
   request's UID list must stay under the 64 KB element limit).
5. Studies with no dose SR: their MG image headers instead (the listener
   drops the pixel data).

Everything received goes through the same spool and ingest worker as the
listener's datasets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # generated at import by pynetdicom
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from srdose import codes as C
from srdose import compat
from srdose.receive.scp import (
    IMAGE_CLASSES,
    IMAGE_SYNTAXES,
    SR_CLASSES,
    SR_SYNTAXES,
    Receiver,
)
from srdose.vocab import RetrieveStatus

log = logging.getLogger("srdose.retrieve")

#: ~1,000 UIDs of up to 64 characters fit in one 64 KB element.
UIDS_PER_REQUEST = 900


class RetrieveError(Exception):
    """The PACS could not be queried or refused a request; the message says which."""


@dataclass
class RetrieveSummary:
    studies: int = 0
    dose_instances: int = 0
    already_held: int = 0
    requested: int = 0
    received: int = 0
    image_studies: int = 0
    failed_requests: list = field(default_factory=list)


def _answered(status) -> bool:
    """pynetdicom yields an empty status (not None) when the peer timed out, aborted or
    sent no valid answer."""
    return status is not None and "Status" in status


def _ok(status) -> bool:
    return status is not None and getattr(status, "Status", None) == RetrieveStatus.SUCCESS


def _pending(status) -> bool:
    return status is not None and getattr(status, "Status", None) in (
        RetrieveStatus.PENDING,
        RetrieveStatus.PENDING_OPTIONAL_KEYS,
    )


class PacsClient:
    """Query/retrieve SCU for one PACS.

    Parameters
    ----------
    host, port, pacs_aet
        The PACS's address and AE title.
    our_aet
        Our calling AE title (and C-MOVE destination).
    """

    def __init__(self, host: str, port: int, pacs_aet: str, our_aet: str, timeout: float = 60, associations: int = 1):
        self.host, self.port, self.pacs_aet, self.our_aet = host, int(port), pacs_aet, our_aet
        self.timeout = timeout
        self.associations = max(1, int(associations))

    def _shared(self, requests: Iterable[Dataset], work: Callable[[list[Dataset]], list]) -> list:
        """``work`` over the requests shared among up to :attr:`associations` associations at
        once, each in a thread of its own: a request waits on the PACS, and while one does the
        others go on. The results of all; the first error is raised once all have ended."""
        pending = list(requests)
        shares = [pending[i :: self.associations] for i in range(self.associations)]
        shares = [share for share in shares if share]
        if len(shares) <= 1:
            return work(pending)
        results: list[list] = [[] for _ in shares]
        errors: list[BaseException] = []

        def run(i: int) -> None:
            try:
                results[i] = work(shares[i])
            except BaseException as exc:  # raised in the caller's thread below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,), name=f"srdose-pacs-{i}") for i in range(len(shares))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return [r for result in results for r in result]

    def _ae(self) -> AE:
        ae = AE(ae_title=self.our_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        return ae

    def _associate(self, ae: AE, **kw):
        assoc = ae.associate(self.host, self.port, ae_title=self.pacs_aet, **kw)
        if not assoc.is_established:
            raise RetrieveError(
                f"the PACS {self.pacs_aet}@{self.host}:{self.port} did not accept an association "
                f"from {self.our_aet}; check the address, the AE titles and that the PACS knows "
                f"{self.our_aet} (e.g. Orthanc's DicomModalities)"
            )
        # every request and answer sent at once and acknowledged at once: with Nagle's
        # algorithm and delayed ACKs each C-FIND took 50-90 ms instead of 3
        compat.quick_acks(assoc)
        compat.responses_to_the_caller(assoc)
        return assoc

    @staticmethod
    def _retrieve(assoc, requests: Iterable[Dataset], send, what: str) -> list[str]:
        """Send each request (``send(assoc, identifier)`` yields its statuses); the failures.
        A request left unanswered ends the association: the ones after it are failures too."""
        failures = []
        pending = list(requests)
        for i, ident in enumerate(pending):
            last = None
            for status, _ in send(assoc, ident):
                if not _answered(status):
                    break
                last = status
            if last is None or not assoc.is_established:
                left = len(pending) - i
                failures.append(f"{what}: no answer (timeout or abort); {left} request(s) not completed")
                return failures
            if not _ok(last):
                failed = int(last.get("NumberOfFailedSuboperations", 0) or 0)
                failures.append(f"{what} status 0x{last.Status:04X} ({failed} failed)")
        return failures

    def find(self, identifiers: Iterable[Dataset]) -> list[Dataset]:
        """C-FIND each identifier; all matches."""
        return self._shared(identifiers, self._find)

    def _find(self, identifiers: list[Dataset]) -> list[Dataset]:
        """C-FIND each identifier on one association; all matches."""
        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        assoc = self._associate(ae)
        out: list[Dataset] = []
        try:
            for ident in identifiers:
                for status, match in assoc.send_c_find(ident, StudyRootQueryRetrieveInformationModelFind):
                    if not _answered(status):
                        raise RetrieveError("the PACS stopped answering a C-FIND (timeout or abort)")
                    if _pending(status) and match is not None:
                        out.append(match)
                    elif not _ok(status) and not _pending(status):
                        raise RetrieveError(f"C-FIND failed with status 0x{status.Status:04X}")
        finally:
            assoc.release()
        return out

    def move(self, instances: list[tuple[str, str, str]], destination: str) -> list[str]:
        """C-MOVE instances (study, series, SOP UIDs) to ``destination``;
        returns the failures."""
        return self._shared(image_requests(instances), lambda share: self._move(share, destination))

    def _move(self, requests: list[Dataset], destination: str) -> list[str]:
        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = self._associate(ae)
        try:
            return self._retrieve(
                assoc,
                requests,
                lambda a, ident: a.send_c_move(ident, destination, StudyRootQueryRetrieveInformationModelMove),
                "C-MOVE",
            )
        finally:
            assoc.release()

    def get(self, instances: list[tuple[str, str, str]], receiver: Receiver) -> list[str]:
        """C-GET instances; they arrive as C-STOREs on the same association."""
        return self._shared(image_requests(instances), lambda share: self._get(share, receiver))

    def _get(self, requests: list[Dataset], receiver: Receiver) -> list[str]:
        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        roles = []
        # C-GET's storage sub-operations need us in the SCP role (PS3.4 C.4.3)
        for uid in SR_CLASSES:
            ae.add_requested_context(uid, SR_SYNTAXES[:2])
            roles.append(build_role(uid, scp_role=True))
        for uid in IMAGE_CLASSES:
            ae.add_requested_context(uid, IMAGE_SYNTAXES[:2])
            roles.append(build_role(uid, scp_role=True))
        assoc = self._associate(ae, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, receiver.on_store)])
        try:
            return self._retrieve(
                assoc,
                requests,
                lambda a, ident: a.send_c_get(ident, StudyRootQueryRetrieveInformationModelGet),
                "C-GET",
            )
        finally:
            assoc.release()


def image_requests(instances: list[tuple[str, str, str]]) -> Iterable[Dataset]:
    """IMAGE-level identifiers, one per series, each with a SOP instance
    list no longer than :data:`UIDS_PER_REQUEST`: what srdose asks the PACS for
    (the retrieval benchmark's peer asks for the same)."""
    by_series: dict[tuple[str, str], list[str]] = {}
    for study, series, sop in instances:
        by_series.setdefault((study, series), []).append(sop)
    for (study, series), sops in by_series.items():
        for start in range(0, len(sops), UIDS_PER_REQUEST):
            ds = Dataset()
            ds.QueryRetrieveLevel = "IMAGE"
            ds.StudyInstanceUID = study
            ds.SeriesInstanceUID = series
            ds.SOPInstanceUID = sops[start : start + UIDS_PER_REQUEST]
            yield ds


def study_query(
    date_from: str, date_to: str, modality: str | None, station: str | None, institution: str | None
) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = ""
    ds.StudyDate = f"{date_from.replace('-', '')}-{date_to.replace('-', '')}"
    ds.ModalitiesInStudy = modality or ""
    if station:
        ds.StationName = station
    if institution:
        ds.InstitutionName = institution
    return ds


#: Modalities that carry no images of their own: a study of only these may
#: hold the dose SR of a mammogram whose images were stored elsewhere.
NON_IMAGING = {"SR", "KO", "PR", "DOC", "OT", ""}


def _wanted_study(match: Dataset, modality: str | None) -> bool:
    """A study of the asked modality, or one of dose SRs only (a CT study
    with its CT dose SR is not wanted)."""
    found = match.get("ModalitiesInStudy", "")
    found = {found.upper()} if isinstance(found, str) else {str(m).upper() for m in found}
    if not modality or modality.upper() in found:
        return True
    return found <= NON_IMAGING


def _series_query(study_uid: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = ""
    ds.Modality = ""
    return ds


def _instance_query(study_uid: str, series_uid: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = ""
    ds.SOPClassUID = ""
    return ds


def plan(
    client: PacsClient,
    date_from: str,
    date_to: str,
    modality: str | None = "MG",
    station: str | None = None,
    institution: str | None = None,
    held: Callable[[str], bool] = lambda uid: False,
    summary: RetrieveSummary | None = None,
) -> tuple[list, list]:
    """What to fetch: (dose SR instances, MG image instances of studies with no dose SR)."""
    summary = summary or RetrieveSummary()
    queries = [study_query(date_from, date_to, modality, station, institution)]
    if modality and modality.upper() != "SR":
        # dose SRs stored in a study of their own (images sent elsewhere)
        queries.append(study_query(date_from, date_to, "SR", station, institution))
    studies = client.find(queries)
    study_uids = sorted(
        {str(s.StudyInstanceUID) for s in studies if s.get("StudyInstanceUID") and _wanted_study(s, modality)}
    )
    summary.studies = len(study_uids)
    series = client.find(_series_query(uid) for uid in study_uids)
    sr_series = [
        (str(s.StudyInstanceUID), str(s.SeriesInstanceUID))
        for s in series
        if str(s.get("Modality", "")).upper() == "SR"
    ]
    mg_series = [
        (str(s.StudyInstanceUID), str(s.SeriesInstanceUID))
        for s in series
        if str(s.get("Modality", "")).upper() == "MG"
    ]
    dose, with_dose = [], set()
    for inst in client.find(_instance_query(*s) for s in sr_series):
        sop_class = str(inst.get("SOPClassUID", "") or "")
        # a PACS that does not return SOPClassUID: take the instance, ingest decides
        if sop_class and sop_class not in C.DOSE_SR_CLASSES:
            continue
        summary.dose_instances += 1
        with_dose.add(str(inst.StudyInstanceUID))
        if held(str(inst.SOPInstanceUID)):
            summary.already_held += 1
            continue
        dose.append((str(inst.StudyInstanceUID), str(inst.SeriesInstanceUID), str(inst.SOPInstanceUID)))
    images = []
    fallback = [s for s in mg_series if s[0] not in with_dose]
    summary.image_studies = len({s[0] for s in fallback})
    for inst in client.find(_instance_query(*s) for s in fallback):
        sop_class = str(inst.get("SOPClassUID", "") or "")
        if sop_class and sop_class not in C.MG_IMAGE_CLASSES:
            continue
        if held(str(inst.SOPInstanceUID)):
            summary.already_held += 1
            continue
        images.append((str(inst.StudyInstanceUID), str(inst.SeriesInstanceUID), str(inst.SOPInstanceUID)))
    return dose, images


def wait_until_ingested(worker, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not worker.idle() and time.monotonic() < deadline:
        time.sleep(0.05)
