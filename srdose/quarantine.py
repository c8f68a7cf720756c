"""Quarantine: where datasets that could not be ingested are kept, with why.

Each refused dataset is written as ``<sha256>.dcm`` with ``<sha256>.json``
beside it (reason, kind, when, where from). Nothing is lost: a physicist can
read the reason, fix the cause and ingest the file again.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that it survives a crash: temp name,
    fsync, atomic rename, fsync of the folder."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        # disk full, quota, I/O error: leave no half-written file behind
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class QuarantineFolder:
    """The quarantine folder.

    Parameters
    ----------
    root
        Folder to keep refused datasets in; created (mode 0700) when needed,
        since the files still carry patient identifiers.
    """

    def __init__(self, root: Path):
        self.root = Path(root)

    def put(self, data: bytes, sha256: str, kind: str, reason: str, origin: str | None = None) -> Path:
        """Keep ``data`` with its reason; returns where the dataset now is."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = self.root / f"{sha256}.dcm"
        if not target.exists():
            write_durably(target, data)
        note = {
            "kind": kind,
            "reason": reason,
            "sha256": sha256,
            "bytes": len(data),
            "quarantined_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "origin": origin,
        }
        write_durably(self.root / f"{sha256}.json", json.dumps(note, indent=2).encode())
        return target
