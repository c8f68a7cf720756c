"""Alert rules evaluated, and the new alerts e-mailed once.

Free of the web framework so that the listener or the command line can call it too
(``srdose alerts check``); the web application runs :class:`Evaluator` in a thread.

:func:`evaluate` checks every enabled rule and records an alert for each subject and period
not alerted before (the store's unique key: a rule fires once). The kinds:

* ``mgd`` -- patient exposures above ``threshold`` mGy (recalculated MGD, else the reported
  AGD), per view and compressed-thickness band if given; one alert per unit and study date,
  looking back ``days`` (7);
* ``ratio`` -- recalculated/reported MGD outside 1 ± ``threshold`` (``[recalc] ratio_band``
  when unset); per unit and study date, looking back ``days`` (7);
* ``drift`` -- the control chart of the ratio flags a unit
  (:func:`srdose.store.unitpage.ratio_drift`); once per unit and flagged point;
* ``silent`` -- a unit's latest study is more than ``days`` (7) old; once per silence;
* ``listener`` -- the listener's status file is absent, says it stopped, or is older than
  ``threshold`` minutes (5); once per outage;
* ``quarantine`` -- more than ``threshold`` (10) datasets quarantined in the last day; once a day.

:func:`send` e-mails the alerts not yet sent as one plain-text message and marks them sent;
when the server cannot be reached they stay unsent and go with the next call.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import smtplib
import ssl
import threading
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from srdose.config import AlertsSettings, Settings
from srdose.store import alerts as db
from srdose.store import unitpage

log = logging.getLogger(__name__)

#: Defaults of the rules' numbers when a rule leaves them unset.
LOOKBACK_DAYS = 7
SILENT_DAYS = 7
LISTENER_STALE_MINUTES = 5.0
QUARANTINE_FILES = 10

#: (subject, period, unit, message) of one firing
Firing = tuple[str, str, str | None, str]


def utcnow() -> dt.datetime:
    """Now, as the database keeps times: UTC without a time zone."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _day(yyyymmdd: str) -> str:
    return f"{yyyymmdd[:4]}-{yyyymmdd[4:6]}-{yyyymmdd[6:8]}" if len(yyyymmdd) == 8 else yyyymmdd


def _where(rule: dict) -> str:
    """The rule's selection in words: view and thickness band."""
    parts = []
    if rule.get("view"):
        parts.append(str(rule["view"]))
    lo, hi = rule.get("band_min_mm"), rule.get("band_max_mm")
    if lo is not None or hi is not None:
        parts.append(f"{'' if lo is None else f'{lo:g}'}-{'' if hi is None else f'{hi:g}'} mm")
    return f" ({', '.join(parts)})" if parts else ""


def _since(now: dt.datetime, days: int | None) -> str:
    return (now.date() - dt.timedelta(days=days or LOOKBACK_DAYS)).strftime("%Y%m%d")


def _band(rule: dict) -> tuple[float | None, float | None]:
    return rule.get("band_min_mm"), rule.get("band_max_mm")


def _mgd(store: Any, settings: Settings, rule: dict, now: dt.datetime) -> Iterator[Firing]:
    level = rule.get("threshold")
    if level is None:
        return
    for row in db.mgd_above(
        store, level, _since(now, rule.get("days")), serial=rule.get("serial"), view=rule.get("view"), band=_band(rule)
    ):
        day = _day(row["study_date"])
        yield (
            row["serial"],
            row["study_date"],
            row["serial"],
            f"Unit {row['serial']}: {row['n']} exposure(s){_where(rule)} on {day} with MGD above "
            f"{level:g} mGy, highest {row['mgd_mgy']:.2f} mGy.",
        )


def _ratio(store: Any, settings: Settings, rule: dict, now: dt.datetime) -> Iterator[Firing]:
    band = rule.get("threshold")
    if band is None:
        band = settings.recalc.ratio_band
    low, high = 1.0 - band, 1.0 + band
    for row in db.ratio_outside(
        store,
        low,
        high,
        _since(now, rule.get("days")),
        serial=rule.get("serial"),
        view=rule.get("view"),
        band=_band(rule),
    ):
        yield (
            row["serial"],
            row["study_date"],
            row["serial"],
            f"Unit {row['serial']}: {row['n']} exposure(s){_where(rule)} on {_day(row['study_date'])} with the "
            f"recalculated/reported MGD ratio outside {low:.2f}-{high:.2f} "
            f"(from {row['lowest']:.2f} to {row['highest']:.2f}).",
        )


def _drift(store: Any, settings: Settings, rule: dict, now: dt.datetime) -> Iterator[Firing]:
    serials = [rule["serial"]] if rule.get("serial") else db.unit_serials(store)
    for serial in serials:
        chart = unitpage.ratio_drift(store, serial)
        flagged = [p for p in chart.get("points", []) if p.get("flags")]
        if not chart.get("drift") or not flagged:
            continue
        why = sorted({f for p in flagged for f in p["flags"]})
        # keyed by the first signal: one alert per drift, not one per day it lasts
        yield (
            serial,
            str(chart.get("first_signal")),
            serial,
            f"Unit {serial}: the recalculated/reported MGD ratio drifts on its control chart since "
            f"{chart.get('first_signal')} ({len(flagged)} flagged point(s): {', '.join(why)}; centre "
            f"{chart.get('centre') or 0:.3f}, latest median {flagged[-1].get('median') or 0:.3f} "
            f"on {flagged[-1].get('date')}).",
        )


def _silent(store: Any, settings: Settings, rule: dict, now: dt.datetime) -> Iterator[Firing]:
    days = rule.get("days") or SILENT_DAYS
    for row in db.last_study_dates(store, rule.get("serial")):
        try:
            last = dt.datetime.strptime(row["last_study"], "%Y%m%d").date()
        except (TypeError, ValueError):
            continue
        age = (now.date() - last).days
        if age > days:
            # keyed by the last study: a unit that sends again and falls silent again alerts again
            yield (
                row["serial"],
                row["last_study"],
                row["serial"],
                f"Unit {row['serial']}: no study for {age} days (last study {last.isoformat()}; "
                f"the rule allows {days}).",
            )


def _listener(store: Any, settings: Settings, rule: dict, now: dt.datetime) -> Iterator[Firing]:
    path = settings.data_dir / "listener-status.json"
    stale = float(rule.get("threshold") or LISTENER_STALE_MINUTES)
    try:
        doc = json.loads(path.read_text())
        updated = float(doc["updated"])
    except FileNotFoundError:
        yield ("listener", "absent", None, f"The DICOM listener is not running: no status file {path}.")
        return
    except (OSError, ValueError, KeyError, TypeError):
        return  # being rewritten: judge it next time
    age_min = (now.replace(tzinfo=dt.timezone.utc).timestamp() - updated) / 60.0
    at = dt.datetime.fromtimestamp(updated, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    if doc.get("stopped"):
        yield ("listener", f"{updated:.0f}", None, f"The DICOM listener stopped (its last status at {at}).")
    elif age_min > stale:
        yield (
            "listener",
            f"{updated:.0f}",
            None,
            f"The DICOM listener is down: its status was last written at {at}, {age_min:.0f} minutes ago.",
        )


def quarantined_since(folder: Path, since: dt.datetime) -> int:
    """Datasets put in the quarantine folder at or after ``since`` (naive UTC), by their notes."""
    count = 0
    try:
        notes = list(Path(folder).glob("*.json"))
    except OSError:
        return 0
    for note in notes:
        try:
            when = dt.datetime.fromisoformat(json.loads(note.read_text())["quarantined_at"])
            if when.tzinfo is not None:
                when = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
        except (OSError, ValueError, KeyError, TypeError):
            try:  # a note of another shape: its file time
                when = dt.datetime.fromtimestamp(note.stat().st_mtime, dt.timezone.utc).replace(tzinfo=None)
            except OSError:
                continue
        if when >= since:
            count += 1
    return count


def _quarantine(store: Any, settings: Settings, rule: dict, now: dt.datetime) -> Iterator[Firing]:
    limit = int(rule.get("threshold") or QUARANTINE_FILES)
    n = quarantined_since(settings.quarantine_dir, now - dt.timedelta(days=1))
    if n > limit:
        yield (
            "quarantine",
            now.date().isoformat(),
            None,
            f"{n} datasets were quarantined in the last day (the rule allows {limit}); see {settings.quarantine_dir}.",
        )


CHECKS: dict[str, Callable[[Any, Settings, dict, dt.datetime], Iterator[Firing]]] = {
    "mgd": _mgd,
    "ratio": _ratio,
    "drift": _drift,
    "silent": _silent,
    "listener": _listener,
    "quarantine": _quarantine,
}


def evaluate(store: Any, settings: Settings, now: dt.datetime | None = None) -> list[dict]:
    """Check every enabled rule; the alerts fired now (those fired before are not repeated)."""
    now = now or utcnow()
    new: list[int] = []
    for rule in db.rules(store, enabled_only=True):
        check = CHECKS.get(rule["kind"])
        if check is None:
            continue
        try:
            for subject, period, unit, message in check(store, settings, rule, now):
                key = f"{rule['id']}:{rule['kind']}:{subject}:{period}"
                alert_id = db.fire(store, rule["id"], key, message, unit, now)
                if alert_id is not None:
                    new.append(alert_id)
        except Exception:
            # one broken rule must not keep the others from being checked
            log.exception("alert rule %s (%s) could not be evaluated", rule["id"], rule["kind"])
    return db.alerts(store, ids=new) if new else []


def _password(smtp: AlertsSettings) -> str:
    return Path(smtp.smtp_password_file).expanduser().read_text().rstrip("\r\n")


def message(alerts: list[dict], smtp: AlertsSettings) -> EmailMessage:
    """The plain-text e-mail of ``alerts``."""
    msg = EmailMessage()
    msg["From"] = smtp.mail_from
    msg["To"] = ", ".join(smtp.mail_to)
    msg["Subject"] = (
        f"srdose alert: {alerts[0]['message'][:120]}" if len(alerts) == 1 else f"srdose: {len(alerts)} new alerts"
    )
    lines = [f"{a['fired_at']:%Y-%m-%d %H:%M} UTC  [{a['kind']}]  {a['message']}" for a in alerts]
    lines += ["", "Acknowledge them on the Alerts page of srdose."]
    msg.set_content("\n".join(lines) + "\n")
    return msg


def send(store: Any, smtp: AlertsSettings, alerts: list[dict] | None = None, now: dt.datetime | None = None) -> int:
    """E-mail the alerts not yet sent (``alerts``: only those of them) and mark them sent; the
    number sent. Nothing configured (``smtp_host`` or ``mail_to`` empty): 0. A failure is logged
    and the alerts stay unsent, to go with the next call."""
    if not smtp.smtp_host or not smtp.mail_to:
        return 0
    pending = db.alerts(store, unsent=True)
    if alerts is not None:
        wanted = {a["id"] for a in alerts}
        pending = [a for a in pending if a["id"] in wanted]
    if not pending:
        return 0
    try:
        with smtplib.SMTP(smtp.smtp_host, smtp.smtp_port, timeout=30) as server:
            if smtp.smtp_starttls:
                server.starttls(context=ssl.create_default_context())
            if smtp.smtp_user:
                server.login(smtp.smtp_user, _password(smtp))
            server.send_message(message(pending, smtp))
    except (OSError, smtplib.SMTPException) as exc:
        log.warning(
            "cannot e-mail %d alert(s) through %s:%s (%s); they will be sent next time",
            len(pending),
            smtp.smtp_host,
            smtp.smtp_port,
            exc,
        )
        return 0
    db.mark_emailed(store, [a["id"] for a in pending], now or utcnow())
    return len(pending)


def check_and_send(store: Any, settings: Settings, now: dt.datetime | None = None) -> tuple[list[dict], int]:
    """Evaluate the rules, then e-mail every unsent alert (earlier failures too)."""
    new = evaluate(store, settings, now)
    return new, send(store, settings.alerts, now=now)


class Evaluator:
    """Evaluates the rules and sends the e-mails every ``[alerts] evaluate_minutes`` in a daemon thread."""

    def __init__(self, store: Any, settings: Settings):
        self.store = store
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="srdose-alerts", daemon=True)

    def start(self) -> Evaluator:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        interval = 60.0 * self.settings.alerts.evaluate_minutes
        while not self._stop.is_set():
            try:
                check_and_send(self.store, self.settings)
            except Exception:
                log.exception(
                    "alert evaluation failed; trying again in %s minutes", self.settings.alerts.evaluate_minutes
                )
            self._stop.wait(interval)


def start_evaluator(store: Any, settings: Settings) -> Evaluator:
    """Start the background evaluation (the web application calls this once, at start-up)."""
    return Evaluator(store, settings).start()
