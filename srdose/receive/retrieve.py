"""Retrospective extraction: find dose SRs on a PACS and pull them.

1. C-FIND at STUDY level: date range, modality, optional station/institution.
2. For each study, C-FIND at SERIES level (its SR and MG series), then at IMAGE
   level: the SOP instances of its SR series, keeping the SR classes that can
   hold a dose report; where there is none, its MG images instead (the
   listener drops their pixel data). Instances already held are skipped, so
   a second run fetches nothing new.
3. C-MOVE (to our own AE, received by an embedded Storage SCP or a running
   ``srdose listen``) or C-GET (on the same association) of just those
   instances, one request per series with up to :data:`UIDS_PER_REQUEST` UIDs
   (one request's UID list must stay under the 64 KB element limit).

Steps 2 and 3 run at once (:meth:`PacsClient.find_and_retrieve`): a study's
instances are retrieved as soon as they are found, on their own associations,
while the next studies are queried.

Everything received goes through the same spool and ingest worker as the
listener's datasets.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
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
    image_instances: int = 0
    failed_requests: list = field(default_factory=list)
    # the counts are kept by several query threads at once
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, **added: int) -> None:
        with self.lock:
            for name, n in added.items():
                setattr(self, name, getattr(self, name) + n)


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
        A request left unanswered ends the association; the ones after it are left to the
        other retrieval associations (:meth:`find_and_retrieve` reports those none could send)."""
        failures = []
        for ident in requests:
            last = None
            for status, _ in send(assoc, ident):
                if not _answered(status):
                    break
                last = status
            if last is None or not assoc.is_established:
                failures.append(f"{what}: no answer (timeout or abort)")
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
        with self._finder() as find:
            return [match for ident in identifiers for match in find(ident)]

    @contextmanager
    def _finder(self) -> Iterator[Callable[[Dataset], list[Dataset]]]:
        """A query association, as a function that C-FINDs one identifier on it and returns the
        matches."""
        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        assoc = self._associate(ae)

        def find(ident: Dataset) -> list[Dataset]:
            out: list[Dataset] = []
            for status, match in assoc.send_c_find(ident, StudyRootQueryRetrieveInformationModelFind):
                if not _answered(status):
                    raise RetrieveError("the PACS stopped answering a C-FIND (timeout or abort)")
                if _pending(status) and match is not None:
                    out.append(match)
                elif not _ok(status) and not _pending(status):
                    raise RetrieveError(f"C-FIND failed with status 0x{status.Status:04X}")
            return out

        try:
            yield find
        finally:
            assoc.release()

    def find_and_retrieve(
        self,
        study_uids: list[str],
        resolve: Callable[[Callable[[Dataset], list[Dataset]], str], list[tuple[str, str, str]]],
        retrieve: Callable[[Iterable[Dataset]], list[str]],
        on_found: Callable[[int], None] | None = None,
    ) -> list[str]:
        """Find what to fetch of each study and fetch it as it is found.

        ``resolve(find, study_uid)`` lists a study's instances to fetch (study, series, SOP UIDs),
        ``find`` being a C-FIND on a query association; ``retrieve(requests)`` sends the requests
        of :func:`image_requests` on one retrieval association, as they come, and returns its
        failures. About half of :attr:`associations` query and the others retrieve (one of each
        at least): the PACS answers the next study's queries while it sends the last one's
        instances, instead of one after the other. ``on_found(n)``: n more instances to fetch.
        Returns the retrieval failures; the first error of a query or an association is raised once
        every thread has ended.
        """
        finders = max(1, (self.associations + 1) // 2)
        retrievers = max(1, self.associations - finders)
        work: queue.Queue = queue.Queue()  # requests; None: no more
        errors: list[BaseException] = []
        failures: list[str] = []
        stop = threading.Event()

        def find_share(share: list[str]) -> None:
            try:
                with self._finder() as find:
                    for uid in share:
                        if stop.is_set():
                            return
                        instances = resolve(find, uid)
                        if instances and on_found:
                            on_found(len(instances))
                        for ident in image_requests(instances):
                            work.put(ident)
            except BaseException as exc:  # raised in the caller's thread below
                errors.append(exc)
                stop.set()

        def requests() -> Iterator[Dataset]:
            while not stop.is_set():
                ident = work.get()
                if ident is None:
                    work.put(None)  # for the other retrieval threads
                    return
                yield ident

        def retrieve_share() -> None:
            first = next(requests(), None)
            if first is None:  # nothing to fetch: no association
                return
            try:
                failures.extend(retrieve(itertools.chain([first], requests())))
            except BaseException as exc:
                errors.append(exc)
                stop.set()

        shares = [share for share in (study_uids[i::finders] for i in range(finders)) if share]
        finding = [
            threading.Thread(target=find_share, args=(s,), name=f"srdose-find-{i}") for i, s in enumerate(shares)
        ]
        fetching = [threading.Thread(target=retrieve_share, name=f"srdose-fetch-{i}") for i in range(retrievers)]
        for t in finding + fetching:
            t.start()
        for t in finding:
            t.join()
        work.put(None)
        for t in fetching:
            t.join()
        if errors:
            raise errors[0]
        left = 0
        while work.get_nowait() is not None:  # what no association was left to send (a None follows)
            left += 1
        if left:
            failures.append(f"{left} request(s) not sent: every retrieval association had ended")
        return failures

    def move_stream(self, destination: str) -> Callable[[Iterable[Dataset]], list[str]]:
        """A ``retrieve`` of :meth:`find_and_retrieve` by C-MOVE to ``destination``."""
        return lambda requests: self._move(requests, destination)

    def get_stream(self, receiver: Receiver) -> Callable[[Iterable[Dataset]], list[str]]:
        """A ``retrieve`` of :meth:`find_and_retrieve` by C-GET into ``receiver``."""
        return lambda requests: self._get(requests, receiver)

    def _move(self, requests: Iterable[Dataset], destination: str) -> list[str]:
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

    def _get(self, requests: Iterable[Dataset], receiver: Receiver) -> list[str]:
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


def find_studies(
    client: PacsClient,
    date_from: str,
    date_to: str,
    modality: str | None = "MG",
    station: str | None = None,
    institution: str | None = None,
) -> list[str]:
    """The UIDs of the studies to look into (STUDY-level C-FINDs)."""
    queries = [study_query(date_from, date_to, modality, station, institution)]
    if modality and modality.upper() != "SR":
        # dose SRs stored in a study of their own (images sent elsewhere)
        queries.append(study_query(date_from, date_to, "SR", station, institution))
    studies = client.find(queries)
    return sorted(
        {str(s.StudyInstanceUID) for s in studies if s.get("StudyInstanceUID") and _wanted_study(s, modality)}
    )


def study_instances(
    find: Callable[[Dataset], list[Dataset]],
    study_uid: str,
    held: Callable[[str], bool] = lambda uid: False,
    summary: RetrieveSummary | None = None,
) -> list[tuple[str, str, str]]:
    """What to fetch of one study (``find``: a C-FIND): its dose SR instances, or where it has
    none, its MG image instances (their headers); those already held left out."""
    summary = summary or RetrieveSummary()
    series = find(_series_query(study_uid))
    of = {
        m: [
            (str(s.StudyInstanceUID), str(s.SeriesInstanceUID))
            for s in series
            if str(s.get("Modality", "")).upper() == m
        ]
        for m in ("SR", "MG")
    }
    dose, any_dose = [], False
    for inst in (i for s in of["SR"] for i in find(_instance_query(*s))):
        sop_class = str(inst.get("SOPClassUID", "") or "")
        # a PACS that does not return SOPClassUID: take the instance, ingest decides
        if sop_class and sop_class not in C.DOSE_SR_CLASSES:
            continue
        any_dose = True
        summary.count(dose_instances=1)
        if held(str(inst.SOPInstanceUID)):
            summary.count(already_held=1)
            continue
        dose.append((str(inst.StudyInstanceUID), str(inst.SeriesInstanceUID), str(inst.SOPInstanceUID)))
    if any_dose or not of["MG"]:
        return dose
    summary.count(image_studies=1)
    images = []
    for inst in (i for s in of["MG"] for i in find(_instance_query(*s))):
        sop_class = str(inst.get("SOPClassUID", "") or "")
        if sop_class and sop_class not in C.MG_IMAGE_CLASSES:
            continue
        if held(str(inst.SOPInstanceUID)):
            summary.count(already_held=1)
            continue
        summary.count(image_instances=1)
        images.append((str(inst.StudyInstanceUID), str(inst.SeriesInstanceUID), str(inst.SOPInstanceUID)))
    return images


def wait_until_ingested(worker, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not worker.idle() and time.monotonic() < deadline:
        time.sleep(0.05)
