"""`srdose listen` against real DICOM peers on 127.0.0.1 (DCMTK, pynetdicom).

Every test starts its own listener subprocess on a free port with its own
data directory, and stops it. Loops are bounded by counts and timeouts.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, XRayRadiationDoseSRStorage

from srdose import synth
from srdose.parse import read_path
from tests import builders as B
from tests.conftest import SAMPLE_DATA, SHARED_RDSR
from tests.netutil import (
    ECHOSCU,
    ListenerProcess,
    free_port,
    need,
    storescu,
    wait_until,
)

pytestmark = pytest.mark.network


@pytest.fixture
def listener(tmp_path):
    procs = []

    def start(*args, env=None, port=None):
        p = ListenerProcess(tmp_path / f"data{len(procs)}", port or free_port(), *args, env=env)
        procs.append(p)
        return p.start()

    yield start
    for p in procs:
        p.stop()


def expected_events(files) -> Counter:
    """Events per SOP instance, by srdose's parser on the files themselves."""
    out = Counter()
    for f in files:
        r = read_path(f)
        out[r.sop_instance_uid] += len(r.events)
    return out


def wait_for_events(lst: ListenerProcess, n: int, timeout=120):
    def done():
        return lst.spooled() == 0 and len(lst.events()) >= n

    wait_until(done, timeout, 0.5, f"{n} events ingested")
    time.sleep(0.5)
    return lst.events()


def assert_exactly(rows, expected: Counter):
    got = Counter(r["sop_instance_uid"] for r in rows)
    assert got == expected
    pairs = [(r["sop_instance_uid"], r["event_uid"]) for r in rows]
    assert len(pairs) == len(set(pairs)), "an event is counted twice"


def vendor_files() -> list[Path]:
    shared = [
        SHARED_RDSR / n
        for n in (
            "MG-RDSR-Hologic_mix.dcm",
            "MG-RDSR-GEPristina-2D.dcm",
            "MG-RDSR-Giotto-DBT.dcm",
            "MG-Im-GE-SenDS-scaled.dcm",
        )
    ]
    if all(p.exists() for p in shared):
        return shared
    # without ../shared, the project's own sample data covers the same paths
    # (the study sent both as RDSR and as images is left out: its images add
    # no events once the RDSR is there, which test_store covers)
    return sorted(p for p in SAMPLE_DATA.rglob("*.dcm") if p.parent.name != "rdsr_and_images")


def test_storescu_vendor_files_and_500_synthetic(listener, tmp_path):
    lst = listener()
    r = subprocess.run(
        [need(ECHOSCU), "-aec", "SRDOSE", "127.0.0.1", str(lst.port)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr  # C-ECHO Success

    files = (
        vendor_files()
        + synth.generate("hologic", 250, tmp_path / "syn", seed=41)
        + synth.generate("giotto", 250, tmp_path / "syn", seed=42)
    )
    expected = expected_events(files)
    r = storescu(lst.port, files)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = wait_for_events(lst, sum(expected.values()))
    assert_exactly(rows, expected)
    # the same files again: nothing changes
    assert storescu(lst.port, files).returncode == 0
    time.sleep(3)
    assert_exactly(wait_for_events(lst, sum(expected.values())), expected)


def test_unknown_calling_ae_is_rejected(listener, tmp_path):
    lst = listener("--allow", "MAMMO1")
    [f] = synth.generate("ge", 1, tmp_path / "syn", seed=5)
    r = storescu(lst.port, [f], aet="INTRUDER")
    assert r.returncode != 0
    assert "Association Rejected" in r.stderr + r.stdout
    assert storescu(lst.port, [f], aet="MAMMO1").returncode == 0
    assert len(wait_for_events(lst, 1)) >= 1


def test_ct_image_class_is_refused_and_bad_content_gets_a_failure_status(listener, tmp_path):
    lst = listener()
    ae = AE(ae_title="MAMMO1")
    ae.add_requested_context(CTImageStorage)
    ae.add_requested_context(XRayRadiationDoseSRStorage)
    assoc = ae.associate("127.0.0.1", lst.port, ae_title="SRDOSE")
    assert assoc.is_established
    accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
    assert str(CTImageStorage) not in accepted  # refused at negotiation
    assert str(XRayRadiationDoseSRStorage) in accepted
    # an RDSR-class object whose content is not a mammography dose report
    bad = B.rdsr()
    bad.ConceptNameCodeSequence[0].CodeValue = "18748-4"
    bad.ConceptNameCodeSequence[0].CodingSchemeDesignator = "LN"
    bad.ConceptNameCodeSequence[0].CodeMeaning = "Diagnostic Imaging Report"
    B.to_bytes(bad)  # sets file meta
    status = assoc.send_c_store(bad)
    assert status.Status == 0xC002  # failure, never Success
    assert "not a dose report" in status.ErrorComment
    good = B.rdsr()
    B.to_bytes(good)
    assert assoc.send_c_store(good).Status == 0x0000
    assoc.release()
    wait_for_events(lst, 1)
    notes = list((lst.data_dir / "quarantine").glob("*.json"))
    assert len(notes) == 1 and "Diagnostic Imaging Report" in notes[0].read_text()
    r = lst.srdose("status", "--json")
    assert '"quarantined": 1' in r.stdout


def test_garbage_on_the_port_does_not_stop_the_listener(listener):
    lst = listener()
    for payload in (os.urandom(20000), b"\x01\x00\x00\x00\x10\x00" + b"\x00" * 8, b"GET / HTTP/1.0\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", lst.port), timeout=5) as s:
            try:
                s.sendall(payload)
                s.settimeout(3)
                s.recv(100)
            except OSError:
                pass
    r = subprocess.run(
        [need(ECHOSCU), "-aec", "SRDOSE", "127.0.0.1", str(lst.port)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert lst.proc.poll() is None


def test_eight_simultaneous_associations(listener, tmp_path):
    lst = listener()
    batches = [
        synth.generate(v, 25, tmp_path / f"b{i}", seed=200 + i)
        for i, v in enumerate(["hologic", "ge", "giotto", "siemens", "fujifilm", "hologic", "ge", "giotto"])
    ]
    expected = expected_events([f for b in batches for f in b])
    procs = [
        subprocess.Popen(
            [need("/usr/bin/storescu"), "-aet", f"SEND{i}", "-aec", "SRDOSE", "127.0.0.1", str(lst.port), *map(str, b)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i, b in enumerate(batches)
    ]
    for p in procs:
        assert p.wait(300) == 0, p.stderr.read()[-1000:]
    assert_exactly(wait_for_events(lst, sum(expected.values())), expected)


def _sent_ok(output: str) -> list[str]:
    """Files DCMTK storescu -v reports a Success response for."""
    ok, current = [], None
    for line in output.splitlines():
        m = re.match(r"I: Sending file: (.+)$", line)
        if m:
            current = m.group(1).strip()
        elif "Received Store Response (Success)" in line and current:
            ok.append(current)
            current = None
    return ok


def test_sigkill_while_receiving_loses_nothing_acknowledged(listener, tmp_path):
    need("/usr/bin/storescu")
    files = synth.generate("hologic", 300, tmp_path / "k", seed=7) + synth.generate("ge", 300, tmp_path / "k", seed=8)
    expected = expected_events(files)
    data = tmp_path / "kill-data"
    port = free_port()
    lst = ListenerProcess(data, port).start()
    sender = subprocess.Popen(
        [need("/usr/bin/storescu"), "-v", "-aet", "MAMMO1", "-aec", "SRDOSE", "127.0.0.1", str(port), *map(str, files)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # kill -9 once a good part has been acknowledged
    log_lines: list[str] = []
    reader = threading.Thread(target=lambda: log_lines.extend(sender.stdout), daemon=True)
    reader.start()
    wait_until(lambda: sum("(Success)" in line for line in list(log_lines)) >= 180, 120, 0.05, "180 acknowledged")
    lst.kill()
    sender.wait(120)
    reader.join(10)
    acknowledged = _sent_ok("".join(log_lines))
    assert 180 <= len(acknowledged) < len(files)
    # restart: the spool is ingested first; then the sender finishes the job
    lst2 = ListenerProcess(data, port).start()
    try:
        rows = wait_for_events(lst2, sum(expected[read_path(f).sop_instance_uid] for f in acknowledged))
        held = Counter(r["sop_instance_uid"] for r in rows)
        for f in acknowledged:  # every acknowledged dataset survived the kill
            uid = read_path(f).sop_instance_uid
            assert held[uid] == expected[uid]
        assert storescu(port, files).returncode == 0
        assert_exactly(wait_for_events(lst2, sum(expected.values())), expected)
    finally:
        lst2.stop()


def _mount(fs_opts: str, where: Path) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", fs_opts, "tmpfs", str(where)], capture_output=True)
    return r.returncode == 0


@pytest.mark.parametrize("fs_opts,what", [("size=64k", "full"), ("ro", "read-only")])
def test_full_or_read_only_spool_answers_out_of_resources(listener, tmp_path, fs_opts, what):
    spool = tmp_path / f"spool-{what}"
    if not _mount(fs_opts, spool):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        lst = listener(env={"SRDOSE_LISTENER__SPOOL_DIR": str(spool)})
        ae = AE(ae_title="MAMMO1")
        ae.add_requested_context(XRayRadiationDoseSRStorage)
        assoc = ae.associate("127.0.0.1", lst.port, ae_title="SRDOSE")
        statuses = []
        big = B.item("CONTAINS", "TEXT", ("125203", "DCM", "Acquisition Protocol"), text="X" * 80_000)
        for _ in range(8):  # each ~85 KB: more than the 64 KB file system holds
            ds = B.rdsr(events=[B.event(extra=[big])])
            B.to_bytes(ds)
            statuses.append(assoc.send_c_store(ds).Status)
        assoc.release()
        assert 0xA700 in statuses  # out of resources: never a false Success
        if what == "read-only":
            assert set(statuses) == {0xA700}
        # whatever got Success is ingested
        n_ok = statuses.count(0x0000)
        if n_ok:
            wait_for_events(lst, n_ok)
        assert lst.proc.poll() is None
    finally:
        subprocess.run(["umount", "-l", str(spool)], capture_output=True)


def test_tls(listener, tmp_path):
    need("/usr/bin/storescu")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    lst = listener("--tls-cert", str(cert), "--tls-key", str(key))
    [f] = synth.generate("hologic", 1, tmp_path / "t", seed=3)
    # DCMTK over TLS, checking the server against our test certificate
    r = storescu(lst.port, [f], "+tls", str(key), str(cert), "+cf", str(cert))
    assert r.returncode == 0, r.stderr
    assert len(wait_for_events(lst, 1)) >= 1
    # a plain connection to the TLS port fails cleanly, and the listener stays up
    r = storescu(lst.port, [f], "-to", "5", "-ta", "5")
    assert r.returncode != 0
    assert lst.proc.poll() is None
    r = storescu(lst.port, [f], "+tls", str(key), str(cert), "+cf", str(cert))
    assert r.returncode == 0


@pytest.mark.parametrize("propose", ["-xb", "-xi", "-xd", "-xe"])
def test_every_uncompressed_transfer_syntax(listener, tmp_path, propose):
    """DCMTK offers big endian, implicit, deflated or explicit little endian
    first; the listener takes each and reads the same values."""
    lst = listener()
    files = synth.generate("giotto", 3, tmp_path / "g", seed=500 + len(propose)) + synth.generate(
        "hologic", 3, tmp_path / "h", seed=510
    )
    r = storescu(lst.port, files, "-v", propose)
    assert r.returncode == 0, r.stderr[-1000:]
    wanted = {
        "-xb": "Big Endian Explicit",
        "-xi": "Little Endian Implicit",
        "-xd": "Deflated Explicit VR Little Endian",
        "-xe": "Little Endian Explicit",
    }[propose]
    assert f"-> {wanted}" in r.stdout + r.stderr  # DCMTK really sent that syntax
    expected = expected_events(files)
    rows = wait_for_events(lst, sum(expected.values()))
    assert_exactly(rows, expected)
    kvps = sorted(float(r["kvp"]) for r in rows)
    assert kvps == sorted(e.kvp for f in files for e in read_path(f).events)
