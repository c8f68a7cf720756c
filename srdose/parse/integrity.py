"""Is a DICOM file complete? pydicom reads a truncated file without a word.

A file cut short (an interrupted copy, a half-finished transfer) reads in
pydicom as a smaller, valid-looking dataset: a dose report missing its last
events would be ingested as if it were whole, and the complete copy arriving
later would then be skipped as a duplicate. :func:`check_complete` walks the
encoded element headers (tag, VR, length) of the whole file without decoding
values, and refuses a file whose elements run past its end or whose
undefined-length sequences are never closed.
"""

from __future__ import annotations

import struct
import zlib

from srdose.parse.errors import Malformed

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
#: Nesting beyond this is refused here already (the content walk allows 32).
MAX_NESTING = 64

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"


class _Truncated(Exception):
    pass


class _Scanner:
    def __init__(self, buf: bytes, implicit: bool, little: bool):
        self.buf = buf
        self.implicit = implicit
        self.e = "<" if little else ">"

    def _need(self, pos: int, n: int) -> None:
        if pos + n > len(self.buf):
            raise _Truncated()

    def _tag(self, pos: int) -> int:
        self._need(pos, 4)
        group, elem = struct.unpack_from(self.e + "HH", self.buf, pos)
        return (group << 16) | elem

    def dataset(self, pos: int, end: int, depth: int) -> int:
        """Scan elements from ``pos``; stop at ``end`` or an item delimiter."""
        if depth > MAX_NESTING:
            raise Malformed(f"sequences nested more than {MAX_NESTING} deep: damaged or hostile file")
        while pos < end:
            tag = self._tag(pos)
            if tag == _ITEM_END:
                return pos + 8
            if self.implicit:
                self._need(pos, 8)
                (length,) = struct.unpack_from(self.e + "I", self.buf, pos + 4)
                pos += 8
            else:
                self._need(pos, 8)
                vr = self.buf[pos + 4:pos + 6]
                if vr in _LONG_VRS:
                    self._need(pos, 12)
                    (length,) = struct.unpack_from(self.e + "I", self.buf, pos + 8)
                    pos += 12
                else:
                    (length,) = struct.unpack_from(self.e + "H", self.buf, pos + 6)
                    pos += 8
            if length == _UNDEFINED:
                pos = self.items(pos, depth + 1)
            else:
                self._need(pos, length)
                pos += length
        return pos

    def items(self, pos: int, depth: int) -> int:
        """Scan the items of an undefined-length sequence up to its delimiter."""
        while True:
            tag = self._tag(pos)
            self._need(pos, 8)
            (length,) = struct.unpack_from(self.e + "I", self.buf, pos + 4)
            pos += 8
            if tag == _SEQ_END:
                return pos
            if tag != _ITEM:
                raise Malformed(f"unexpected tag {tag:08X} inside a sequence: damaged file")
            if length == _UNDEFINED:
                pos = self.dataset(pos, len(self.buf), depth + 1)
            else:
                self._need(pos, length)
                pos += length


def check_complete(data: bytes, transfer_syntax: str) -> None:
    """Raise :class:`Malformed` unless ``data`` (a Part 10 file) is whole.

    Parameters
    ----------
    data
        The file's bytes, preamble and meta group included.
    transfer_syntax
        The Transfer Syntax UID from the file meta information.
    """
    try:
        if data[128:132] == b"DICM":
            pos = 132
        else:
            pos = 0
        meta = _Scanner(data, implicit=False, little=True)
        # file meta group (0002,xxxx): always explicit VR little endian
        while pos + 4 <= len(data) and struct.unpack_from("<H", data, pos)[0] == 0x0002:
            (length_vr,) = (data[pos + 4:pos + 6],)
            if length_vr in _LONG_VRS:
                meta._need(pos, 12)
                (length,) = struct.unpack_from("<I", data, pos + 8)
                pos += 12
            else:
                meta._need(pos, 8)
                (length,) = struct.unpack_from("<H", data, pos + 6)
                pos += 8
            meta._need(pos, length)
            pos += length
        body = data[pos:]
        ts = str(transfer_syntax or "")
        if ts == DEFLATED:
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            body = inflater.decompress(body) + inflater.flush()
            if not inflater.eof:
                raise _Truncated()
        scanner = _Scanner(body, implicit=(ts == IMPLICIT_LE), little=(ts != EXPLICIT_BE))
        scanner.dataset(0, len(body), 0)
    except _Truncated:
        raise Malformed(
            "file is truncated: its last element runs past the end of the file; "
            "fetch or send it again"
        ) from None
    except zlib.error as exc:
        raise Malformed(f"deflated dataset cannot be inflated ({exc}): damaged file") from None
