"""Each private part of a dependency that srdose relies on still exists and
behaves as relied on, in the installed versions (see srdose/compat.py)."""

from __future__ import annotations

import io
import socket
import threading

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification
from pynetdicom.transport import RequestHandler

from srdose import codes as C
from srdose import compat


def test_snomed_rt_table_translates_legacy_codes():
    table = compat.SNOMED_RT_TO_CT
    assert isinstance(table, dict) and len(table) > 1000
    assert table["T-04000"] == "76752008"  # breast
    assert C.normalise("SRT", "T-04000") == ("SCT", "76752008")


def test_elements_written_directly_are_the_dataset_elements():
    ds = Dataset()
    tag = BaseTag(0x00100020)
    compat.elements_of(ds)[tag] = DataElement(tag, "LO", "X1")
    assert ds.PatientID == "X1" and tag in ds
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.3", "1.2.3.4"
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=False, little_endian=True)
    assert pydicom.dcmread(io.BytesIO(buf.getvalue()), force=True).PatientID == "X1"


def _serve(handlers):
    ae = AE(ae_title="COMPAT")
    ae.add_supported_context(Verification)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    return ae, server


def test_quick_acks_sets_nodelay_on_the_acceptors_socket_and_wraps_its_reads():
    seen: dict = {}

    def on_open(event):
        wrapper = event.assoc.dul.socket
        reads = seen.setdefault("reads", [0])
        plain = wrapper.recv

        def counted(nr_bytes):
            reads[0] += 1
            return plain(nr_bytes)

        wrapper.recv = counted  # the DUL must read through this attribute
        compat.quick_acks(event.assoc)
        raw = wrapper.socket
        seen["nodelay"] = raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        seen["wrapped"] = wrapper.recv is not counted

    ae, server = _serve([(evt.EVT_CONN_OPEN, on_open)])
    try:
        client = AE(ae_title="CALLER")
        client.add_requested_context(Verification)
        assoc = client.associate("127.0.0.1", server.server_address[1], ae_title="COMPAT")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
    finally:
        ae.shutdown()
    assert seen["nodelay"] != 0
    if compat.TCP_QUICKACK is not None:
        assert seen["wrapped"]
    assert seen["reads"][0] > 0


def test_a_server_kept_by_the_ae_stops_with_it():
    ae = AE(ae_title="COMPAT")
    ae.add_supported_context(Verification)
    server = ae.make_server(("127.0.0.1", 0))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    compat.keep_server(ae, server)
    ae.shutdown()
    thread.join(5)
    assert not thread.is_alive()


def test_request_handler_still_creates_the_association_in_the_method_scp_overrides():
    # srdose.receive.scp's _RequestHandler overrides this private method to
    # attach each new association to its pending connection
    assert callable(getattr(RequestHandler, "_create_association", None))


def test_a_requestors_answers_are_read_by_the_caller_alone():
    import time

    ae, server = _serve([])
    try:
        client = AE(ae_title="CALLER")
        client.add_requested_context(Verification)
        assoc = client.associate("127.0.0.1", server.server_address[1], ae_title="COMPAT")
        assert assoc.is_established
        callers: list = []
        plain = assoc.dimse.get_msg

        def counted(block=False):
            callers.append(threading.current_thread())
            return plain(block)

        assoc.dimse.get_msg = counted  # both threads must read through this attribute
        deadline = time.monotonic() + 5
        while assoc not in callers and time.monotonic() < deadline:
            time.sleep(0.01)
        assert assoc in callers  # the association's own thread polls for messages: the race
        compat.responses_to_the_caller(assoc)
        callers.clear()
        for _ in range(20):
            assert assoc.send_c_echo().Status == 0x0000
        time.sleep(0.05)
        assert callers and set(callers) == {threading.current_thread()}
        assoc.release()
    finally:
        ae.shutdown()


def test_processes_spawned_in_the_block_do_not_run_the_main_script_again(tmp_path, monkeypatch):
    import sys
    import types
    from multiprocessing import spawn

    script = tmp_path / "srdose"  # as the installed console script: a file, no module spec
    script.write_text("raise SystemExit('a spawned child ran the main script')\n")
    main = types.ModuleType("__main__")
    main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert spawn.get_preparation_data("worker")["init_main_from_path"] == str(script)
    with compat.spawned_without_main_script():
        data = spawn.get_preparation_data("worker")
        assert "init_main_from_path" not in data and "init_main_from_name" not in data
    assert sys.modules["__main__"] is main
