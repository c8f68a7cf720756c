"""The byte-level content reader builds the same tree as pydicom's decoder."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from srdose.parse.content import content_nodes
from srdose.parse.rdsr import walk
from tests import builders as B
from tests.conftest import SHARED_RDSR


def assert_same(fast, slow, path="root"):
    assert len(fast) == len(slow), path
    for a, b in zip(fast, slow):
        for slot in ("rel", "vt", "name", "meaning", "value", "unit", "problem"):
            assert getattr(a, slot) == getattr(b, slot), f"{path}: {slot}"
        assert_same(a.children, b.children, f"{path}/{a.meaning}")


def both(data: bytes):
    fast = content_nodes(data, pydicom.dcmread(io.BytesIO(data)))
    slow = walk(pydicom.dcmread(io.BytesIO(data)).ContentSequence)
    return fast, slow


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian])
def test_same_tree_in_every_transfer_syntax(syntax):
    ev = B.event(extra=[B.item("CONTAINS", "TEXT", ("125203", "DCM", "Acquisition Protocol"),
                               text="Mammographie gauche — réglage spécial")])
    ds = B.rdsr(events=[ev, B.event(laterality=("7771000", "SCT", "Left"))])
    ds.SpecificCharacterSet = "ISO_IR 192"
    fast, slow = both(B.to_bytes(ds, syntax))
    assert_same(fast, slow)
    texts = [n.value for e in fast if e.name == "event" for n in e.children if n.name == "protocol"]
    assert texts == ["Mammographie gauche — réglage spécial"]


def test_same_tree_for_every_shared_file():
    files = sorted(SHARED_RDSR.glob("*.dcm"))
    if not files:
        pytest.skip("../shared/rdsr is not here")
    compared = 0
    for path in files:
        data = path.read_bytes()
        if "ContentSequence" not in pydicom.dcmread(io.BytesIO(data)):
            continue
        assert_same(*both(data), path.name)
        compared += 1
    assert compared >= 8
