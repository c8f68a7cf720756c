"""Every use srdose makes of a dependency's private parts, in one place.

Each helper says what it relies on; ``tests/test_compat.py`` checks each on
the installed versions, and ``pyproject.toml`` bounds those dependencies
below their next major version.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import types
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.sr._snomed_dict import mapping as _snomed_mapping
from pydicom.tag import BaseTag

#: Legacy SNOMED-RT code value -> SNOMED CT code value. Relies on pydicom's
#: private table ``pydicom.sr._snomed_dict.mapping["SRT"]`` (a dict of str to
#: str), the one pydicom itself uses to translate SRT codes.
SNOMED_RT_TO_CT: dict[str, str] = _snomed_mapping["SRT"]

#: Linux's per-read "acknowledge now" socket option; None elsewhere.
TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def elements_of(ds: Dataset) -> MutableMapping[BaseTag, DataElement | RawDataElement]:
    """The dict of tag -> element behind a pydicom Dataset, to be written directly.

    Relies on ``Dataset._dict`` holding the elements keyed by ``BaseTag``: the
    synthetic generator sets thousands of elements a study, and
    ``Dataset.__setitem__`` checks each one again.
    """
    return ds._dict


def quick_acks(assoc: Any) -> None:
    """Acknowledge every PDU of a pynetdicom association at once.

    DCMTK (and many modalities) write a PDU's header and body separately
    with Nagle's algorithm on; with Linux's delayed ACK the second write then
    waits ~40 ms for the first one's ACK, capping a sender at ~11-22 files/s.
    TCP_QUICKACK is cleared by the kernel after use, so it is set again
    before every read.

    Relies on pynetdicom's ``assoc.dul.socket`` (an ``AssociationSocket``)
    keeping the connected socket in ``.socket`` and reading the peer only
    through its own ``recv(nr_bytes)`` method, which is wrapped here.
    Does nothing when those are not there.
    """
    try:
        sock_wrapper = assoc.dul.socket
        raw = sock_wrapper.socket
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        return
    if TCP_QUICKACK is None:
        return
    original = sock_wrapper.recv

    def recv(nr_bytes: int) -> bytes:
        try:
            raw.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)
        except OSError:
            pass
        data = original(nr_bytes)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)
        except OSError:
            pass
        return data

    sock_wrapper.recv = recv


def responses_to_the_caller(assoc: Any) -> None:
    """Leave every DIMSE message of a requestor's association to the thread that sent the
    request.

    pynetdicom's association thread keeps polling for incoming requests while the caller
    waits for the answers to its C-FIND, C-MOVE or C-GET. ``send_c_*`` pauses that thread
    first, but checks the pause before the thread has taken it: an answer that arrives
    within that moment is taken by the association thread and dropped as unexpected. Over
    loopback with quick ACKs, several C-FINDs in a thousand came back with no match that
    way. An association srdose requests serves no requests of its own (a C-GET's C-STOREs
    are handled by the caller's loop), so its thread is given none.

    Relies on pynetdicom's ``Association`` being the ``threading.Thread`` that polls
    ``assoc.dimse.get_msg(block=False)``, and on the caller's ``send_c_*`` reading its
    answers through the same ``assoc.dimse.get_msg``.
    """
    dimse = assoc.dimse
    original = dimse.get_msg

    def get_msg(block: bool = False):
        if threading.current_thread() is assoc:
            return None, None
        return original(block)

    dimse.get_msg = get_msg


def cores() -> int:
    """The cores this process may run on (its affinity where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@contextmanager
def spawned_without_main_script() -> Iterator[None]:
    """Processes started with the "spawn" method inside this block do not run the parent's
    main script again.

    A spawned child first imports the parent's ``__main__``. Run as ``python -m srdose`` that
    is skipped (a package's ``__main__``); run as the installed ``srdose`` script, the child
    runs the script, which imports every command (about 1.5 s of CPU per child, for a parse
    worker that needs none of them). srdose's children run functions of srdose's modules only.

    Relies on ``multiprocessing.spawn.get_preparation_data`` reading ``sys.modules["__main__"]``
    (its ``__spec__``, else its ``__file__``) when a process is started.
    """
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None or not getattr(main, "__file__", None):
        yield
        return
    sys.modules["__main__"] = types.ModuleType("__main__")  # no spec, no file: nothing to run again
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def keep_server(ae: Any, server: Any) -> None:
    """Register a server started outside ``AE.start_server`` with its AE, so that
    ``AE.shutdown()`` stops it too.

    Relies on pynetdicom's ``ApplicationEntity._servers``, the list of
    servers ``shutdown()`` stops.
    """
    ae._servers.append(server)
