"""One pass over a DICOM file's encoded elements: is it whole, and what is its content tree?

pydicom reads a file cut short (an interrupted copy, a half-finished transfer)
as a smaller, valid-looking dataset: a dose report missing its last events
would be ingested as if it were whole, and the complete copy arriving later
would then be skipped as a duplicate. :func:`scan` walks the element headers
(tag, VR, length) of the whole file without decoding values, and refuses a
file whose elements run past its end or whose undefined-length sequences are
never closed.

In the same pass it reads the SR content tree: pydicom builds a full
``DataElement``/``Dataset`` for every element of every item (about 20 µs an
element, ~50 ms for a vendor RDSR of 2,500 elements), while the tree needs a
dozen tags. Those tags are decoded here and everything else is skipped by
length. The result is a list of raw items (dicts of tag -> value) that
:mod:`srdose.parse.tree` turns into nodes; it turns a pydicom dataset's
ContentSequence into the same raw items (:func:`dataset_items`), so both
sources feed one tree builder.

Header attributes (manufacturer, dates, patient identifiers) are still read
by pydicom, which handles their character sets; the content tree's text
values are decoded with the dataset's Specific Character Set through
pydicom's own decoder.
"""

from __future__ import annotations

import struct
import zlib

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from srdose.parse.errors import Malformed

#: Sequences nested deeper than this are refused, in the bytes and in a
#: dataset in memory alike: a dose report's content is 4-8 levels deep.
MAX_NESTING = 32

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"

_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF

# Tags of the content tree (PS3.3 C.17.3), as ints.
CONTENT_SEQ = 0x0040A730
CONCEPT_NAME = 0x0040A043
CONCEPT_CODE = 0x0040A168
MEASURED_VALUE_SEQ = 0x0040A300
UNITS_SEQ = 0x004008EA
VALUE_TYPE, RELATIONSHIP = 0x0040A040, 0x0040A010
NUMERIC_VALUE, FLOAT_VALUE = 0x0040A30A, 0x0040A161
TEXT_VALUE, DATETIME, UID = 0x0040A160, 0x0040A120, 0x0040A124
CODE_VALUE, SCHEME, MEANING = 0x00080100, 0x00080102, 0x00080104
LONG_CODE_VALUE, URN_CODE_VALUE = 0x00080119, 0x00080120
#: Sequences the content tree needs; all others are skipped.
DESCEND = frozenset({CONTENT_SEQ, CONCEPT_NAME, CONCEPT_CODE, MEASURED_VALUE_SEQ, UNITS_SEQ})
#: Every non-sequence tag the content tree needs.
READ = frozenset(
    {
        VALUE_TYPE,
        RELATIONSHIP,
        NUMERIC_VALUE,
        TEXT_VALUE,
        DATETIME,
        UID,
        CODE_VALUE,
        SCHEME,
        MEANING,
        LONG_CODE_VALUE,
        URN_CODE_VALUE,
        FLOAT_VALUE,
    }
)
#: Text-valued tags whose characters depend on the Specific Character Set.
_CHARSET_TAGS = frozenset({TEXT_VALUE, MEANING})
_TOP = frozenset({CONTENT_SEQ})
_NOTHING: frozenset = frozenset()

_EXPLICIT_LE_SHORT = struct.Struct("<HH2sH").unpack_from
_LE_U32 = struct.Struct("<I").unpack_from


class _Truncated(Exception):
    pass


def too_deep() -> Malformed:
    """The refusal of a file whose sequences are nested beyond :data:`MAX_NESTING`."""
    return Malformed(
        f"sequences nested more than {MAX_NESTING} levels deep; a dose report's content is 4-8 "
        "levels deep, so this file is damaged or hostile"
    )


class _Walker:
    """Element headers of one encoded dataset (no file meta), checked for completeness.

    ``encodings`` None: check only. Otherwise the top-level ContentSequence is
    also read into raw items, its text decoded with ``encodings``.
    """

    def __init__(self, buf: bytes, implicit: bool, little: bool, encodings: list[str] | None):
        self.buf = buf
        self.n = len(buf)
        self.implicit = implicit
        self.fast = not implicit and little  # explicit VR little endian: nearly every RDSR
        e = "<" if little else ">"
        self.u16 = struct.Struct(e + "H").unpack_from
        self.u32 = struct.Struct(e + "I").unpack_from
        self.tag = struct.Struct(e + "HH").unpack_from
        self.item_header = struct.Struct(e + "HHI").unpack_from  # items and delimiters have no VR
        self.f64 = struct.Struct(e + "d").unpack_from
        self.encodings = encodings

    def header(self, pos: int) -> tuple[int, bytes | None, int, int]:
        """(tag, VR, length, value position) of the element at ``pos``."""
        buf = self.buf
        if pos + 8 > self.n:
            raise _Truncated()
        group, elem = self.tag(buf, pos)
        tag = (group << 16) | elem
        if self.implicit or group == 0xFFFE:
            return tag, None, self.u32(buf, pos + 4)[0], pos + 8
        vr = buf[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > self.n:
                raise _Truncated()
            return tag, vr, self.u32(buf, pos + 8)[0], pos + 12
        return tag, vr, self.u16(buf, pos + 6)[0], pos + 8

    def top(self) -> list[dict] | None:
        """Walk the whole dataset; the ContentSequence's items if asked for and present."""
        if self.encodings is None:
            self.elements(0, self.n, 0, None, _NOTHING)
            return None
        found: dict = {}
        self.elements(0, self.n, 0, found, _TOP)
        return found.get(CONTENT_SEQ)

    def elements(self, pos: int, end: int | None, depth: int, item: dict | None, descend: frozenset) -> int:
        """Walk the elements from ``pos`` to ``end`` (None: to the item delimiter).

        ``item``, when given, receives the values of :data:`READ` tags and the
        items of the ``descend`` sequences. Returns the position after.
        """
        buf, n = self.buf, self.n
        stop = n if end is None else end
        if stop > n:
            raise _Truncated()
        fast, short = self.fast, _EXPLICIT_LE_SHORT
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
                        raise _Truncated()
                    vlen = _LE_U32(buf, pos + 8)[0]
                    pos += 12
                else:
                    pos += 8
            else:
                tag, vr, vlen, pos = self.header(pos)
            if tag == _ITEM_END:
                return pos
            if vlen == _UNDEFINED or vr == b"SQ" or (self.implicit and tag in descend):
                if tag in descend:
                    items: list | None = []
                elif vlen == _UNDEFINED:
                    items = None  # walked to its delimiter, not kept
                else:
                    if pos + vlen > n:
                        raise _Truncated()
                    pos += vlen
                    continue
                pos = self.sequence(pos, vlen, depth + 1, items)
                if item is not None and items is not None:
                    item[tag] = items
                continue
            if pos + vlen > n:
                raise _Truncated()
            if item is not None and tag in READ:
                # decoded here, not in a method: this runs for ~2,000 values a file
                if tag == FLOAT_VALUE:
                    item[tag] = self.f64(buf, pos)[0] if vlen >= 8 else None
                else:
                    raw = buf[pos : pos + vlen]
                    if tag in _CHARSET_TAGS:
                        try:
                            text = raw.decode("ascii")
                        except UnicodeDecodeError:
                            assert self.encodings is not None  # top() reads items only with encodings
                            text = decode_bytes(raw, self.encodings, set())
                    else:
                        text = raw.decode("latin-1")
                    item[tag] = text.rstrip(" \x00") if tag != TEXT_VALUE else text.rstrip("\x00").rstrip(" ")
            pos += vlen
        if end is None:
            raise _Truncated()  # an undefined-length item never closed
        return pos

    def sequence(self, pos: int, length: int, depth: int, items: list | None) -> int:
        """Walk a sequence's items; read each into ``items`` when it is a list."""
        if depth > MAX_NESTING:
            raise too_deep()
        end = None if length == _UNDEFINED else pos + length
        if end is not None and end > self.n:
            raise _Truncated()
        inner = DESCEND if items is not None else _NOTHING
        n, item_header = self.n, self.item_header
        while end is None or pos < end:
            if pos + 8 > n:
                raise _Truncated()
            group, elem, ilen = item_header(self.buf, pos)
            tag = (group << 16) | elem
            pos += 8
            if tag == _SEQ_END:
                return pos
            if tag != _ITEM:
                raise Malformed(f"unexpected tag {tag:08X} inside a sequence: damaged file")
            if ilen == _UNDEFINED:
                item: dict | None = {} if items is not None else None
                pos = self.elements(pos, None, depth, item, inner)
            elif items is not None:
                item = {}
                self.elements(pos, pos + ilen, depth, item, inner)
                pos += ilen
            else:
                if pos + ilen > self.n:
                    raise _Truncated()
                pos += ilen
                continue
            if items is not None:
                items.append(item)
        return pos


def _body(data: bytes) -> int:
    """Position of the dataset after the preamble and the file meta group."""
    pos = 132 if data[128:132] == b"DICM" else 0
    n = len(data)
    # file meta group (0002,xxxx): always explicit VR little endian
    while pos + 4 <= n and struct.unpack_from("<H", data, pos)[0] == 0x0002:
        if pos + 8 > n:
            raise _Truncated()
        if data[pos + 4 : pos + 6] in _LONG_VRS:
            if pos + 12 > n:
                raise _Truncated()
            (length,) = struct.unpack_from("<I", data, pos + 8)
            pos += 12
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            pos += 8
        if pos + length > n:
            raise _Truncated()
        pos += length
    return pos


def encodings_of(ds: Dataset) -> list[str]:
    """Python codecs of a dataset's Specific Character Set."""
    charset = ds.get("SpecificCharacterSet") or "ISO_IR 6"
    return convert_encodings(charset if isinstance(charset, str) else list(charset))


def scan(data: bytes, transfer_syntax: str, encodings: list[str] | None = None) -> list[dict] | None:
    """Refuse ``data`` (a Part 10 file) unless it is whole; read its content tree if asked.

    Parameters
    ----------
    data
        The file's bytes, preamble and meta group included.
    transfer_syntax
        The Transfer Syntax UID from the file meta information.
    encodings
        The dataset's character set as Python codecs (:func:`encodings_of`)
        to read the top-level ContentSequence too; None to check only.

    Returns
    -------
    The ContentSequence's items as raw dicts (tag -> str, float or list of
    items), or None when not asked or the dataset has none.

    Raises
    ------
    Malformed
        When the file is truncated or damaged, or nested beyond :data:`MAX_NESTING`.
    """
    ts = str(transfer_syntax or "")
    try:
        body = data[_body(data) :]
        if ts == DEFLATED:
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            body = inflater.decompress(body) + inflater.flush()
            if not inflater.eof:
                raise _Truncated()
        return _Walker(body, implicit=(ts == IMPLICIT_LE), little=(ts != EXPLICIT_BE), encodings=encodings).top()
    except _Truncated:
        raise Malformed(
            "file is truncated: its last element runs past the end of the file; fetch or send it again"
        ) from None
    except zlib.error as exc:
        raise Malformed(f"deflated dataset cannot be inflated ({exc}): damaged file") from None


def check_complete(data: bytes, transfer_syntax: str) -> None:
    """Raise :class:`Malformed` unless ``data`` (a Part 10 file) is whole."""
    scan(data, transfer_syntax)


def _plain(value):
    """A decoded text value as the byte walker gives it: str or None (DS numbers as written)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return None
    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join(str(v) for v in value)  # several values, as they are encoded
    return str(value)


def dataset_items(seq, depth: int = 1) -> list[dict]:
    """The raw items of a pydicom Sequence, as :func:`scan` reads them from bytes.

    Raises
    ------
    Malformed
        When sequences are nested beyond :data:`MAX_NESTING`.
    """
    if depth > MAX_NESTING:
        raise too_deep()
    out = []
    for ds in seq:
        item: dict = {}
        for tag in READ:
            elem = ds.get(tag)
            if elem is None:
                continue
            value = elem.value
            if tag == FLOAT_VALUE:
                # one FD value as the walker reads it: the first
                if value is not None and not isinstance(value, float):
                    value = value[0] if len(value) else None
                item[tag] = value
            else:
                item[tag] = _plain(value)
        for tag in DESCEND:
            elem = ds.get(tag)
            if elem is not None and elem.value is not None:
                item[tag] = dataset_items(elem.value, depth + 1)
        out.append(item)
    return out
