"""The byte-level content reader builds the same tree as pydicom's decoder."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from srdose.parse import Malformed, read_bytes, read_dataset
from srdose.parse.elements import MAX_NESTING
from srdose.parse.tree import content_nodes, walk
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


@pytest.mark.parametrize(
    "syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian]
)
def test_same_tree_in_every_transfer_syntax(syntax):
    ev = B.event(
        extra=[
            B.item(
                "CONTAINS",
                "TEXT",
                ("125203", "DCM", "Acquisition Protocol"),
                text="Mammographie gauche — réglage spécial",
            )
        ]
    )
    ds = B.rdsr(events=[ev, B.event(laterality=("7771000", "SCT", "Left"))])
    ds.SpecificCharacterSet = "ISO_IR 192"
    fast, slow = both(B.to_bytes(ds, syntax))
    assert_same(fast, slow)
    texts = [n.value for e in fast if e.name == "event" for n in e.children if n.name == "protocol"]
    assert texts == ["Mammographie gauche — réglage spécial"]


def test_same_tree_for_every_shared_file():
    files = sorted(SHARED_RDSR.glob("*.dcm"))
    if not files:
        pytest.skip("the shared vendor dose reports are not here")
    compared = 0
    for path in files:
        data = path.read_bytes()
        if "ContentSequence" not in pydicom.dcmread(io.BytesIO(data)):
            continue
        assert_same(*both(data), path.name)
        compared += 1
    assert compared >= 8


def _nested(levels: int):
    """An RDSR whose content tree is ``levels`` deep, ending in a NUM item (whose
    measured value and units are two more sequences)."""
    ds = B.rdsr()
    node = B.item("CONTAINS", "CONTAINER", ("113706", "DCM", "Irradiation Event X-Ray Data"))
    top = node
    for _ in range(levels - 1):
        child = B.num(B.KVP, "28", "kV")
        node.ContentSequence = Sequence([child])
        node = child
    ds.ContentSequence.append(top)
    return ds


def _refused_as_nested(read) -> bool:
    try:
        read()
    except Malformed as exc:
        assert "nested more than" in exc.reason
        return True
    return False


def test_one_nesting_limit_for_bytes_and_memory():
    """The bytes and a dataset in memory are refused at the same depth: sequences
    nested more than MAX_NESTING deep, code sequences counted."""
    for levels in range(MAX_NESTING - 4, MAX_NESTING + 3):
        ds = _nested(levels)
        in_memory = _refused_as_nested(lambda ds=ds: read_dataset(ds))
        from_bytes = _refused_as_nested(lambda ds=ds: read_bytes(B.to_bytes(ds)))
        assert in_memory == from_bytes, levels
        assert in_memory == (levels + 2 > MAX_NESTING), levels


def test_deflated_content_is_read_from_the_bytes():
    data = B.to_bytes(
        B.rdsr(events=[B.event(), B.event(laterality=("7771000", "SCT", "Left"))]), DeflatedExplicitVRLittleEndian
    )
    assert len(read_bytes(data).events) == 2
    ds = pydicom.dcmread(io.BytesIO(data))
    assert content_nodes(data, ds) is not None
