"""``srdose alerts check``: evaluate the alert rules once and e-mail what is unsent.

The web application does the same every ``[alerts] evaluate_minutes``; this command serves a
cron job or a site without the app running. Exit codes: 0 done (alerts or not), 1 alerts are
left unsent (the SMTP server could not be reached), 3 could not run.
"""

from __future__ import annotations

import sys

import click

from srdose.cli.context import EXIT_PARTIAL, Context, console, out
from srdose.governance import audit as audit_trail
from srdose.store import alerts as db
from srdose.terminal import esc
from srdose.web import alerting


@click.group()
def alerts() -> None:
    """Alert rules: MGD above a level, ratio out of band, drift, silent units, listener, quarantine."""


@alerts.command("check")
@click.pass_obj
def alerts_check(obj: Context) -> None:
    """Evaluate the enabled rules once, then e-mail every alert not yet sent."""
    store = obj.store(write=False)
    new, sent = alerting.check_and_send(store, obj.settings)
    unsent = len(db.alerts(store, unsent=True)) if obj.settings.alerts.smtp_host else 0
    audit_trail.record(store, "alerts.check", {}, len(new), {"new": len(new), "emailed": sent, "unsent": unsent})
    for a in new:
        out.print(f"{a['kind']}: {esc(a['message'])}")
    console.print(f"{len(new)} new alert(s); {sent} e-mailed" + (f"; {unsent} left unsent" if unsent else ""))
    if unsent:
        sys.exit(EXIT_PARTIAL)
