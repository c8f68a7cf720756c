"""Retrieval from a real PACS (Orthanc on 127.0.0.1), and Orthanc's auto-routing
to `srdose listen`, as a PACS would forward in production."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest
from pydicom.sequence import Sequence

from srdose import synth
from srdose.parse import read_path
from tests import builders as B
from tests.netutil import (
    ListenerProcess,
    OrthancServer,
    free_port,
    wait_until,
)

pytestmark = pytest.mark.network


def _catalogue(tmp_path):
    """Studies of three kinds: RDSR + images, RDSR only, images only; plus a
    non-dose Basic Text SR in an SR series that must not be fetched."""
    files, dose, fallback = [], [], []
    for i in range(4):
        rdsr, images, _ = synth.write_study_with_images("hologic", tmp_path / "both", seed=300, unit=0, index=i)
        files += [rdsr, *images]
        dose.append(rdsr)
    only = synth.generate("ge", 5, tmp_path / "rdsr-only", seed=301)
    files += only
    dose += only
    img_only = synth.generate("hologic", 2, tmp_path / "img-only", seed=302, rdsr=False, images=True)
    files += img_only
    fallback += img_only
    text_sr = B.rdsr()
    text_sr.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR: not a dose object
    text_sr.ConceptNameCodeSequence = Sequence([B.code("18748-4", "LN", "Diagnostic Imaging Report")])
    text_sr.StudyInstanceUID = read_path(only[0]).study.study_instance_uid
    path = tmp_path / "text-sr.dcm"
    path.write_bytes(B.to_bytes(text_sr))
    files.append(path)
    return files, dose, fallback


def _sops(files):
    return {read_path(f).sop_instance_uid for f in files}


def _run(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "srdose", *map(str, args)], env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize("method", ["--move", "--get"])
def test_retrieve_finds_and_fetches_exactly_the_dose_srs(tmp_path, method):
    import os

    files, dose, fallback = _catalogue(tmp_path)
    our_port = free_port()
    orthanc = OrthancServer(tmp_path / "orthanc", {"srdose": ("SRDOSE", our_port)}).start()
    try:
        orthanc.load(files)
        env = {**os.environ, "SRDOSE_DATA_DIR": str(tmp_path / "data")}
        args = [
            "retrieve",
            "--pacs",
            f"127.0.0.1:{orthanc.dicom_port}",
            "--pacs-aet",
            "ORTHANC",
            "--aet",
            "SRDOSE",
            "--from",
            "1990-01-01",
            "--to",
            "2100-12-31",
            method,
            "--port",
            our_port,
        ]
        r = _run(env, *args)
        assert r.returncode == 0, r.stdout + r.stderr
        lst = ListenerProcess(tmp_path / "data", our_port)  # only for its export helper
        rows = lst.events()
        got = Counter(row["sop_instance_uid"] for row in rows)
        assert set(got) == _sops(dose) | _sops(fallback)  # dose SRs, and headers where no SR
        sources = Counter(row["source"] for row in rows)
        assert sources["image"] == len(fallback)
        expected = sum(len(read_path(f).events) for f in dose) + len(fallback)
        assert len(rows) == expected
        assert "quarantined" not in r.stdout  # the Basic Text SR was never fetched
        # a second run retrieves nothing new
        r = _run(env, *args)
        assert r.returncode == 0, r.stderr
        assert "retrieved 0 of 0" in r.stdout
        assert len(lst.events()) == expected
    finally:
        orthanc.stop()


def test_unknown_pacs_says_what_to_check(tmp_path):
    import os

    env = {**os.environ, "SRDOSE_DATA_DIR": str(tmp_path / "data")}
    r = _run(
        env,
        "retrieve",
        "--pacs",
        f"127.0.0.1:{free_port()}",
        "--pacs-aet",
        "NOBODY",
        "--from",
        "2024-01-01",
        "--to",
        "2024-12-31",
    )
    assert r.returncode == 3
    assert "did not accept an association" in r.stderr


AUTOROUTE = """
-- Orthanc's documented auto-routing: forward every dose SR as it arrives
function OnStoredInstance(instanceId, tags, metadata, origin)
   if origin['RequestOrigin'] ~= 'Lua' and tags['Modality'] == 'SR' then
      SendToModality(instanceId, 'srdose')
   end
end
"""


def test_orthanc_autorouting_to_the_listener(tmp_path):
    port = free_port()
    lst = ListenerProcess(tmp_path / "data", port).start()
    orthanc = OrthancServer(tmp_path / "orthanc", {"srdose": ("SRDOSE", port)}, lua=AUTOROUTE).start()
    try:
        files = synth.generate("giotto", 10, tmp_path / "g", seed=400) + synth.generate(
            "siemens", 10, tmp_path / "s", seed=401
        )
        orthanc.load(files)
        expected = sum(len(read_path(f).events) for f in files)
        wait_until(lambda: len(lst.events()) >= expected, 120, 0.5, "auto-routed RDSRs ingested")
        rows = lst.events()
        assert Counter(r["sop_instance_uid"] for r in rows).keys() == _sops(files)
        assert len(rows) == expected
        r = lst.srdose("status", "--json")
        assert "dicom:ORTHANC" in r.stdout
    finally:
        orthanc.stop()
        lst.stop()


def _qr_scp(on_move=None, on_find=None):
    """A pynetdicom Query/Retrieve SCP on 127.0.0.1 (a PACS that answers as told)."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelMove,
    )

    ae = AE("PACS")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelMove)
    handlers = [(evt.EVT_C_MOVE, on_move)] if on_move else []
    handlers += [(evt.EVT_C_FIND, on_find)] if on_find else []
    return ae, ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)


def test_the_pacs_client_sends_without_nagle_and_acknowledges_at_once():
    """Every C-FIND of a retrieval (two per study) would otherwise wait on Nagle's
    algorithm and the PACS's delayed ACK: 50-90 ms each instead of about 3 against Orthanc."""
    import socket

    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore[attr-defined]

    from srdose.receive.retrieve import PacsClient

    ae, server = _qr_scp()
    try:
        client = PacsClient("127.0.0.1", server.server_address[1], "PACS", "SRDOSE", timeout=10)
        scu = client._ae()
        scu.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        assoc = client._associate(scu)
        try:
            sock = assoc.dul.socket.socket
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            # reads go through the wrapper that asks for an immediate ACK before each
            assert assoc.dul.socket.recv.__name__ == "recv" and assoc.dul.socket.recv.__qualname__.startswith(
                "quick_acks"
            )
        finally:
            assoc.release()
    finally:
        ae.shutdown()


def test_a_move_left_unanswered_is_reported_not_raised():
    """A PACS that never answers one C-MOVE: the association is aborted by the timeout, and the
    requests no association was left to send are failures to report (and to resume), not an
    exception."""
    import threading

    from srdose.receive.retrieve import PacsClient

    release = threading.Event()

    def on_move(event):
        release.wait(20)  # longer than the client's timeout
        yield "127.0.0.1", 1
        yield 0, 0

    ae, server = _qr_scp(on_move)
    try:
        # one query and one retrieval association; three studies of one series each
        client = PacsClient("127.0.0.1", server.server_address[1], "PACS", "SRDOSE", timeout=1, associations=2)
        failures = client.find_and_retrieve(
            [f"1.2.3.{i}" for i in range(3)],
            lambda find, uid: [(uid, f"{uid}.1", f"{uid}.1.1")],
            client.move_stream("SRDOSE"),
        )
    finally:
        release.set()
        ae.shutdown()
    assert failures == [
        "C-MOVE: no answer (timeout or abort)",
        "2 request(s) not sent: every retrieval association had ended",
    ]


def test_a_find_left_unanswered_is_a_retrieve_error():
    """A PACS that never answers a C-FIND: the command's error names it, no traceback."""
    import threading

    from srdose.receive.retrieve import PacsClient, RetrieveError, study_query

    release = threading.Event()

    def on_find(event):
        release.wait(20)  # longer than the client's timeout
        yield 0x0000, None

    ae, server = _qr_scp(on_find=on_find)
    try:
        client = PacsClient("127.0.0.1", server.server_address[1], "PACS", "SRDOSE", timeout=1)
        with pytest.raises(RetrieveError, match="stopped answering a C-FIND"):
            client.find([study_query("2025-01-01", "2025-01-31", "MG", None, None)])
    finally:
        release.set()
        ae.shutdown()


def test_instances_are_retrieved_while_the_next_studies_are_queried():
    """Retrieval overlaps the queries: the PACS is asked to move the first study's dose SR while
    it still answers the queries of the others. Here the last study's series query waits for a
    C-MOVE: a client that queried every study before retrieving would leave it waiting in vain."""
    import threading

    from pydicom.dataset import Dataset

    from srdose.receive.retrieve import PacsClient, study_instances

    studies = [f"1.2.826.0.1.3680043.10.1.{i}" for i in range(3)]
    moved = threading.Event()
    waited: list[bool] = []
    moves: list[str] = []

    def on_find(event):
        ident = event.identifier
        match = Dataset()
        match.QueryRetrieveLevel = ident.QueryRetrieveLevel
        match.StudyInstanceUID = ident.StudyInstanceUID
        if ident.QueryRetrieveLevel == "SERIES":
            if ident.StudyInstanceUID == studies[-1]:
                waited.append(moved.wait(20))
            match.SeriesInstanceUID = f"{ident.StudyInstanceUID}.1"
            match.Modality = "SR"
        else:
            match.SeriesInstanceUID = ident.SeriesInstanceUID
            match.SOPInstanceUID = f"{ident.SeriesInstanceUID}.1"
            match.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.67"  # X-Ray Radiation Dose SR
        yield 0xFF00, match

    def on_move(event):
        moves.append(str(event.identifier.SOPInstanceUID))
        moved.set()
        yield "127.0.0.1", free_port()  # this PACS cannot send anywhere: each move fails, as reported
        yield 1

    ae, server = _qr_scp(on_move, on_find)
    try:
        client = PacsClient("127.0.0.1", server.server_address[1], "PACS", "SRDOSE", timeout=30, associations=2)
        failures = client.find_and_retrieve(studies, study_instances, client.move_stream("SRDOSE"))
    finally:
        moved.set()
        ae.shutdown()
    assert waited == [True]
    assert sorted(moves) == sorted(f"{s}.1.1" for s in studies)
    assert len(failures) == 3 and all(f.startswith("C-MOVE status 0x") for f in failures)
