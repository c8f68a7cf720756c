"""Spool: received datasets, on disk and durable, until they are ingested.

The listener writes each dataset here *before* it answers the sender; only
then is it parsed. A dataset leaves the spool once the database transaction
that holds it (or its quarantine record) has committed, so a crash or kill
at any moment loses nothing: on start, whatever is still here is ingested
first.

File names carry what the database needs to know about where a dataset came
from and in which order: ``<ns since epoch>-<pid>-<counter>-<calling AE>.dcm``.
A dataset refused at the door is kept in the quarantine folder at once; a
small ``.refused`` note (JSON) waits here beside the accepted datasets until
its quarantine record is in the database, so that a crash cannot lose the
record either.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import threading
import time
from pathlib import Path

from srdose.quarantine import write_durably

_SAFE_AE = re.compile(r"[^A-Za-z0-9_.-]")
#: Suffix of the note left for a dataset refused at the door.
REFUSED_SUFFIX = ".refused"


class SpoolError(OSError):
    """The spool could not take a dataset (disk full, read-only, ...)."""


class Spool:
    """A folder of received, not yet ingested datasets.

    Parameters
    ----------
    root
        The spool folder; created with mode 0700 (datasets carry patient
        identifiers until they are pseudonymised at ingest).
    after_ingest
        What to do with an ingested dataset: ``delete``, ``keep`` (leave it
        in ``root/ingested``) or ``archive`` (move it to ``archive_dir``).
    archive_dir
        Where ``archive`` puts them.
    """

    def __init__(self, root: Path, after_ingest: str = "delete", archive_dir: Path | None = None):
        if after_ingest not in ("delete", "keep", "archive"):
            raise ValueError(f"after_ingest must be delete, keep or archive, not {after_ingest!r}")
        if after_ingest == "archive" and archive_dir is None:
            raise ValueError("after_ingest = archive needs an archive folder")
        self.root = Path(root)
        self.after_ingest = after_ingest
        self.archive_dir = Path(archive_dir) if archive_dir else None
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _name(self, calling_ae: str, suffix: str) -> Path:
        with self._lock:
            n = next(self._counter)
        ae = _SAFE_AE.sub("_", calling_ae.strip())[:16] or "unknown"
        return self.root / f"{time.time_ns():020d}-{os.getpid()}-{n:08d}-{ae}{suffix}"

    def put(self, data: bytes, calling_ae: str = "") -> Path:
        """Write one dataset durably; returns its spool path.

        Raises
        ------
        SpoolError
            When it could not be written: the sender must not hear success.
        """
        path = self._name(calling_ae, ".dcm")
        try:
            write_durably(path, data)
        except OSError as exc:
            raise SpoolError(exc.errno, f"cannot spool dataset: {exc.strerror}") from exc
        return path

    def put_refusal(self, note: dict, calling_ae: str = "") -> Path:
        """Write durably the note of a dataset refused (and already
        quarantined) at the door, until its database record is written.

        ``note`` holds ``kind``, ``reason``, ``sha256``, ``sop_instance_uid``
        and ``stored_as``.
        """
        path = self._name(calling_ae, REFUSED_SUFFIX)
        try:
            write_durably(path, json.dumps(note).encode())
        except OSError as exc:
            raise SpoolError(exc.errno, f"cannot spool a refusal note: {exc.strerror}") from exc
        return path

    @staticmethod
    def is_refusal(path: Path) -> bool:
        return Path(path).suffix == REFUSED_SUFFIX

    @staticmethod
    def read_refusal(path: Path) -> dict:
        return json.loads(Path(path).read_bytes())

    def pending(self) -> list[Path]:
        """Spooled datasets and refusal notes still to ingest, oldest first."""
        return sorted(
            (p for pattern in ("*.dcm", "*" + REFUSED_SUFFIX) for p in self.root.glob(pattern) if p.is_file()),
            key=lambda p: p.name,
        )

    @staticmethod
    def calling_ae(path: Path) -> str:
        """The calling AE title a spooled dataset came from."""
        parts = Path(path).stem.split("-", 3)
        return parts[3] if len(parts) == 4 else ""

    def done(self, path: Path) -> None:
        """Remove an ingested (or quarantined) dataset from the spool."""
        path = Path(path)
        if self.after_ingest == "delete" or self.is_refusal(path):  # the dataset itself is in quarantine
            path.unlink(missing_ok=True)
        elif self.after_ingest == "keep":
            target = self.root / "ingested"
            target.mkdir(exist_ok=True, mode=0o700)
            os.replace(path, target / path.name)
        else:
            archive_dir = self.archive_dir
            assert archive_dir is not None  # __init__ refuses "archive" without one
            archive_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                os.replace(path, archive_dir / path.name)
            except OSError:  # another file system
                shutil.move(str(path), archive_dir / path.name)
