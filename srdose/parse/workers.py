"""The parse workers of ``srdose ingest --jobs``: each file read, checked, parsed and digested
in a process of its own, for the one process that writes the database.

Only what a parse needs is imported here: a worker is a new interpreter (spawned), and loading
the database's modules as well would double its start-up.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from srdose.digest import content_digest
from srdose.parse import read_bytes
from srdose.parse.records import DoseReport
from srdose.pseudonym import Pseudonymiser


@dataclass
class Parsed:
    """What a parse worker sends back for one file."""

    sha: str | None  # None: the file could not be read (the writer says so)
    report: DoseReport | None = None  # None: refused, or the parser failed (the writer quarantines it)
    digest: str | None = None


_worker_settings: tuple[Pseudonymiser | None, int] = (None, 1)


def start_parse_worker(pseudonymiser: Pseudonymiser | None, age_resolution_years: int) -> None:
    global _worker_settings
    _worker_settings = (pseudonymiser, age_resolution_years)


def parse_files(paths: list[str]) -> list[Parsed]:
    out = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError:
            out.append(Parsed(None))
            continue
        sha = hashlib.sha256(data).hexdigest()
        try:
            report = read_bytes(data, "file")
        except Exception:  # refused, or a parser bug: the writer parses it again and quarantines it
            out.append(Parsed(sha))
            continue
        out.append(Parsed(sha, report, content_digest(report, *_worker_settings)))
    return out
