"""``srdose config``: the settings in force and where they came from."""

from __future__ import annotations

import json

import click

from srdose.cli.context import Context, out
from srdose.store.database import safe_url


@click.command("config")
@click.pass_obj
def show_config(obj: Context) -> None:
    """Print the settings in force and where they came from."""
    s = obj.settings
    for line in (
        f"# config file: {s.source or '(none: defaults and environment)'}",
        f"# database: {safe_url(obj.db_url)}",
        f"# site secret: {s.site_secret_path}",
        f"# quarantine: {s.quarantine_dir}",
        json.dumps(s.values, indent=2, default=str),
    ):
        out.print(line, markup=False, highlight=False)
