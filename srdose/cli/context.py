"""What every ``srdose`` command shares: the settings and database of the run, the exit codes, the
two consoles and the progress bar.

A leaf of the command package: the command modules import it, it imports none of them.

Exit codes scripts can trust: 0 all done; 1 done, but some datasets were quarantined (or some checks
failed); 2 a usage or configuration error; 3 srdose could not run (database unreachable, disk full, ...).
"""

from __future__ import annotations

import sys
from typing import NoReturn

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from srdose.config import Settings
from srdose.pseudonym import Pseudonymiser, load_or_create_secret
from srdose.store import DoseStore
from srdose.store.database import create_private_sqlite_file, safe_url
from srdose.terminal import esc

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3

# messages and progress on stderr, results on stdout: a script can pipe the one without the other
console = Console(stderr=True)
out = Console()


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    # taken literally: a message naming "[governance] retention_days" is not rich markup
    console.print(f"[bold red]error:[/] {esc(message)}")
    sys.exit(code)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


class Context:
    """What every command gets: the settings and, on demand, the database."""

    def __init__(self, settings: Settings, db_url: str | None):
        self.settings = settings
        self.db_url: str = db_url or settings.database_url
        self._store: DoseStore | None = None

    def pseudonymiser(self) -> Pseudonymiser:
        return Pseudonymiser(load_or_create_secret(self.settings.site_secret_path))

    def store(self, write: bool = True) -> DoseStore:
        if self._store is None:
            try:
                create_private_sqlite_file(self.db_url)
                self._store = DoseStore(
                    self.db_url,
                    self.pseudonymiser() if write else None,
                    age_resolution_years=self.settings.governance.site_age_resolution_years,
                )
            except PermissionError as exc:
                fail(str(exc), EXIT_USAGE)
            except Exception as exc:
                fail(
                    f"cannot open the database {safe_url(self.db_url)}: {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:300]}\nCheck --db / SRDOSE_DATABASE_URL and that the "
                    "server is running.",
                    EXIT_FAILED,
                )
        return self._store
