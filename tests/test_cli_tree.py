"""The ``srdose`` command tree: every command and subcommand, whatever was imported first, and a
command whose module cannot be imported stops srdose with that import error instead of vanishing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]

#: Every top-level command (None) and group (its subcommands), as `srdose --help` lists them.
EXPECTED_TREE = {
    "alerts": {"check": None},
    "audit": None,
    "check": None,
    "config": None,
    "conformance": None,
    "db": {"current": None, "upgrade": None},
    "demo": None,
    "export": {"events": None, "fhir": None, "research": None},
    "ingest": None,
    "inspect": None,
    "listen": None,
    "mc": {"tables": None},
    "optout": {"import": None, "status": None},
    "physics": {"import": None, "show": None},
    "protocols": None,
    "purge": None,
    "qc": None,
    "recalc": None,
    "reidentify": None,
    "report": {"drl": None, "qa": None, "survey": None},
    "retrieve": None,
    "serve": None,
    "status": None,
    "synth": None,
    "units": {"alias": None, "list": None, "rename": None},
    "users": {"add": None, "disable": None, "list": None, "passwd": None},
    "validate": None,
}

# the command tree as JSON, from a fresh interpreter
_TREE_SCRIPT = """
import json, click
from srdose.cli import main
def tree(cmd):
    return {n: tree(c) for n, c in sorted(cmd.commands.items())} if isinstance(cmd, click.Group) else None
print(json.dumps(tree(main)))
"""

# modules that hold (or held) a stage's commands: imported before srdose.cli, where they exist
_STAGE_MODULES = (
    "srdose.receive",
    "srdose.receive.cli",
    "srdose.recalc.cli",
    "srdose.report.cli",
    "srdose.governance.cli",
    "srdose.curation.cli",
    "srdose.physics.mc_cli",
)


def _tree(cmd: click.Command) -> dict | None:
    if isinstance(cmd, click.Group):
        return {name: _tree(sub) for name, sub in sorted(cmd.commands.items())}
    return None


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, check=False, timeout=300
    )


def test_command_tree_is_exact():
    from srdose.cli import main

    assert _tree(main) == EXPECTED_TREE


def test_command_tree_does_not_depend_on_import_order():
    first = "\n".join(
        f"""
try:
    import {name}
except ModuleNotFoundError as exc:
    if exc.name != {name!r}:
        raise
"""
        for name in _STAGE_MODULES
    )
    r = _python(first + _TREE_SCRIPT)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == EXPECTED_TREE


def test_missing_dependency_is_an_import_error_not_a_missing_command():
    # numpy cannot be imported: `srdose recalc` must say so, not that there is no such command
    r = _python("""
import sys
sys.modules["numpy"] = None
from srdose.cli import main
main(["recalc", "--help"])
""")
    assert r.returncode != 0
    assert "No such command" not in r.stderr + r.stdout
    assert "numpy" in r.stderr
