"""A fast reader of an SR content tree, straight from the encoded bytes.

pydicom builds a full ``DataElement``/``Dataset`` object for every element
of every item, about 20 µs an element here: a vendor RDSR of 2,500 elements
costs ~50 ms, and the listener would spend most of its time there. The
content tree needs a dozen tags, so this module reads the element headers
with :mod:`struct`, decodes only those tags and skips the rest by length.
The result is the same :class:`~srdose.parse.rdsr.Node` tree that
:func:`srdose.parse.rdsr.walk` builds from a pydicom dataset (a test checks
the two agree on every vendor and synthetic file).

Header attributes (manufacturer, dates, patient identifiers) are still read
by pydicom, which handles their character sets; the content tree's text
values are decoded with the dataset's Specific Character Set through
pydicom's own decoder.
"""

from __future__ import annotations

import struct
from typing import Optional

from pydicom.charset import convert_encodings, decode_bytes

from srdose import codes as C
from srdose.parse.errors import Malformed
from srdose.parse.integrity import DEFLATED, EXPLICIT_BE, IMPLICIT_LE
from srdose.parse.rdsr import MAX_DEPTH, NO_MEASURED_VALUE, Node, concept_name, set_measured_value

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF

CONTENT_SEQ = 0x0040A730
CONCEPT_NAME = 0x0040A043
CONCEPT_CODE = 0x0040A168
MEASURED_VALUE_SEQ = 0x0040A300
UNITS_SEQ = 0x004008EA
#: Sequences the content tree needs; all others are skipped by length.
_DESCEND = {CONTENT_SEQ, CONCEPT_NAME, CONCEPT_CODE, MEASURED_VALUE_SEQ, UNITS_SEQ}

VALUE_TYPE, RELATIONSHIP = 0x0040A040, 0x0040A010
NUMERIC_VALUE, FLOAT_VALUE = 0x0040A30A, 0x0040A161
TEXT_VALUE, DATETIME, UID = 0x0040A160, 0x0040A120, 0x0040A124
CODE_VALUE, SCHEME, MEANING = 0x00080100, 0x00080102, 0x00080104
LONG_CODE_VALUE, URN_CODE_VALUE = 0x00080119, 0x00080120
#: Text-valued tags whose characters depend on the Specific Character Set.
_CHARSET_TAGS = {TEXT_VALUE, MEANING}
#: Every non-sequence tag the content tree needs.
_READ = frozenset({VALUE_TYPE, RELATIONSHIP, NUMERIC_VALUE, TEXT_VALUE, DATETIME, UID, CODE_VALUE,
                   SCHEME, MEANING, LONG_CODE_VALUE, URN_CODE_VALUE, FLOAT_VALUE})
_EXPLICIT_LE_SHORT = struct.Struct("<HH2sH").unpack_from
_LE_U32 = struct.Struct("<I").unpack_from


class _Reader:
    def __init__(self, buf: bytes, implicit: bool, little: bool, encodings: list[str]):
        self.buf = buf
        self.implicit = implicit
        self.e = "<" if little else ">"
        self.u16 = struct.Struct(self.e + "H").unpack_from
        self.u32 = struct.Struct(self.e + "I").unpack_from
        self.tag = struct.Struct(self.e + "HH").unpack_from
        self.f64 = struct.Struct(self.e + "d").unpack_from
        self.encodings = encodings

    def _truncated(self):
        raise Malformed("content tree runs past the end of the file: truncated or damaged")

    def header(self, pos: int):
        """(tag, vr, length, value position) of the element at ``pos``."""
        buf = self.buf
        if pos + 8 > len(buf):
            self._truncated()
        group, elem = self.tag(buf, pos)
        tag = (group << 16) | elem
        if self.implicit or group == 0xFFFE:
            return tag, None, self.u32(buf, pos + 4)[0], pos + 8
        vr = buf[pos + 4:pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > len(buf):
                self._truncated()
            return tag, vr, self.u32(buf, pos + 8)[0], pos + 12
        return tag, vr, self.u16(buf, pos + 6)[0], pos + 8

    def skip_undefined(self, pos: int) -> int:
        """Position after an undefined-length sequence we do not read."""
        depth = 1
        while depth:
            tag, _vr, length, pos = self.header(pos)
            if tag == _SEQ_END:
                depth -= 1
            elif tag == _ITEM_END:
                continue
            elif tag == _ITEM:
                if length != _UNDEFINED:
                    pos += length
            elif length == _UNDEFINED:
                depth += 1
            else:
                pos += length
            if depth > 2 * MAX_DEPTH + 8:
                raise Malformed(f"sequences nested more than {MAX_DEPTH} levels deep: damaged or hostile file")
        return pos

    def items(self, pos: int, length: int, depth: int) -> tuple[list[dict], int]:
        """Items of a sequence as dicts of the tags we read."""
        if depth > 2 * MAX_DEPTH:
            raise Malformed(
                f"content tree is nested more than {MAX_DEPTH} levels deep; a dose report is 4-6 "
                "levels deep, so this file is damaged or not a dose report")
        end = pos + length if length != _UNDEFINED else None
        if end is not None and end > len(self.buf):
            self._truncated()
        out = []
        while end is None or pos < end:
            tag, _vr, ilen, pos = self.header(pos)
            if tag == _SEQ_END:
                break
            if tag != _ITEM:
                raise Malformed(f"unexpected tag {tag:08X} in a sequence: damaged file")
            item, pos = self.dataset(pos, ilen, depth + 1)
            out.append(item)
        return out, pos

    def dataset(self, pos: int, length: int, depth: int) -> tuple[dict, int]:
        end = pos + length if length != _UNDEFINED else None
        n = len(self.buf)
        if end is not None and end > n:
            self._truncated()
        stop = n if end is None else end
        item: dict = {}
        buf = self.buf
        # explicit VR little endian (nearly every RDSR): one unpack per
        # element header, inline; other encodings go through header()
        fast = not self.implicit and self.e == "<"
        short = _EXPLICIT_LE_SHORT
        closed = False
        while pos < stop:
            if fast and pos + 8 <= n:
                group, elem, vr, vlen = short(buf, pos)
                tag = (group << 16) | elem
                if group == 0xFFFE:
                    vr = None
                    vlen = _LE_U32(buf, pos + 4)[0]
                    pos += 8
                elif vr in _LONG_VRS:
                    if pos + 12 > n:
                        self._truncated()
                    vlen = _LE_U32(buf, pos + 8)[0]
                    pos += 12
                else:
                    pos += 8
            else:
                tag, vr, vlen, pos = self.header(pos)
            if tag == _ITEM_END:
                closed = True
                break
            if vr == b"SQ" or vlen == _UNDEFINED or (self.implicit and tag in _DESCEND):
                if tag in _DESCEND:
                    item[tag], pos = self.items(pos, vlen, depth + 1)
                elif vlen == _UNDEFINED:
                    pos = self.skip_undefined(pos)
                else:
                    pos += vlen
                continue
            if tag in _READ:
                if pos + vlen > n:
                    self._truncated()
                if tag == FLOAT_VALUE:
                    if vlen >= 8:
                        item[tag] = self.f64(buf, pos)[0]
                else:
                    raw = buf[pos:pos + vlen]
                    if tag in _CHARSET_TAGS:
                        try:
                            text = raw.decode("ascii")
                        except UnicodeDecodeError:
                            text = decode_bytes(raw, self.encodings, set())
                    else:
                        text = raw.decode("latin-1")
                    item[tag] = text.rstrip(" \x00") if tag != TEXT_VALUE else text.rstrip("\x00").rstrip(" ")
            pos += vlen
        if (end is None and not closed) or pos > n:
            self._truncated()  # an undefined-length item never closed, or a value past the end
        return item, pos


def _code(seq) -> Optional[tuple[tuple[str, str], str]]:
    if not seq:
        return None
    item = seq[0]
    value = item.get(CODE_VALUE) or item.get(LONG_CODE_VALUE) or item.get(URN_CODE_VALUE) or ""
    return C.normalise(item.get(SCHEME, ""), value.strip()), item.get(MEANING, "").strip()


def _nodes(items: list[dict]) -> list[Node]:
    nodes = []
    for item in items:
        node = Node()
        node.rel = item.get(RELATIONSHIP, "").strip() or None
        vt = node.vt = item.get(VALUE_TYPE, "").strip() or None
        code = _code(item.get(CONCEPT_NAME))
        if code is not None:
            node.name = concept_name(*code)
            node.meaning = code[1]
        if vt == "NUM":
            mvs = item.get(MEASURED_VALUE_SEQ)
            if mvs:
                mv = mvs[0]
                num = mv.get(FLOAT_VALUE)
                if num is None:
                    num = mv.get(NUMERIC_VALUE, "").strip()
                set_measured_value(node, num, _code(mv.get(UNITS_SEQ)))
            else:
                node.problem = NO_MEASURED_VALUE
        elif vt == "CODE":
            node.value = _code(item.get(CONCEPT_CODE))
        elif vt == "TEXT":
            node.value = item.get(TEXT_VALUE)
        elif vt == "DATETIME":
            node.value = item.get(DATETIME, "").strip() or None
        elif vt == "UIDREF":
            node.value = item.get(UID, "").strip() or None
        children = item.get(CONTENT_SEQ)
        if children:
            node.children = _nodes(children)
        nodes.append(node)
    return nodes


def content_nodes(data: bytes, ds) -> Optional[list[Node]]:
    """The content tree of a Part 10 file as :class:`Node` objects.

    Parameters
    ----------
    data
        The whole file.
    ds
        The same file read by pydicom (``dcmread``), untouched below the top
        level: it gives the transfer syntax, the character set and the
        offset of the ContentSequence.

    Returns
    -------
    list of Node, or None when the dataset has no ContentSequence.
    """
    raw = ds._dict.get(CONTENT_SEQ)  # the element before pydicom decodes it
    if raw is None:
        return None
    value_tell = getattr(raw, "value_tell", None)
    length = getattr(raw, "length", None)
    ts = str(ds.file_meta.get("TransferSyntaxUID", ""))
    if value_tell is None or length is None or ts == DEFLATED:
        return None  # already decoded or deflated: the caller uses pydicom
    charset = ds.get("SpecificCharacterSet") or "ISO_IR 6"
    encodings = convert_encodings(charset if isinstance(charset, str) else list(charset))
    reader = _Reader(data, implicit=(ts == IMPLICIT_LE), little=(ts != EXPLICIT_BE), encodings=encodings)
    items, _ = reader.items(value_tell, length, 0)
    return _nodes(items)

