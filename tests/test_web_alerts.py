"""Alert rules on a real database built from synthetic RDSRs; e-mail through a real SMTP server
(aiosmtpd) on 127.0.0.1; the /alerts page over the real application."""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import time
from collections import defaultdict

import pytest

from srdose import config, synth
from srdose.ingest import Ingestor
from srdose.pseudonym import Pseudonymiser
from srdose.quarantine import QuarantineFolder
from srdose.store import DoseStore
from srdose.store import alerts as db
from srdose.web import alerting
from tests import builders as B

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")

#: The evaluation's "now": two days after the last synthetic study.
NOW = dt.datetime(2026, 11, 22, 12, 0)
RECENT = (dt.date(2026, 11, 1), dt.date(2026, 11, 20))
OLD = (dt.date(2026, 10, 1), dt.date(2026, 10, 10))


class Inbox:
    """An aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], str]] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd's handler hook
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content.decode("utf-8")))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    controller = aiosmtpd_controller.Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


@pytest.fixture
def seeded(srdose_env, db_url, tmp_path, monkeypatch):
    """Settings over a fresh data folder and a database (SQLite, PostgreSQL) of two units: a
    Hologic unit sending until 20 November, a GE unit silent since 10 October; their manifests."""
    monkeypatch.setenv("SRDOSE_DATABASE_URL", db_url)
    settings = config.load()
    store = DoseStore(settings.database_url, Pseudonymiser(b"0" * 64))
    src = tmp_path / "src"
    manifests = []
    for vendor, seed, dates in (("hologic", 11, RECENT), ("ge", 12, OLD)):
        out = src / vendor
        synth.generate(vendor, 8, out, seed=seed, manifest=True, date_range=dates)
        manifests.append(json.loads((out / "manifest.json").read_text()))
    summary = Ingestor(store, QuarantineFolder(tmp_path / "q")).ingest_paths([src])
    assert summary.events > 0 and not summary.quarantined
    yield settings, store, manifests
    store.close()


def _identifiers(manifests: list[dict]) -> list[str]:
    keys = ("patient_name", "patient_id", "patient_birth_date", "accession_number", "study_instance_uid")
    out = [s["identifiers"][k] for m in manifests for s in m["studies"] for k in keys if s["identifiers"][k]]
    out += [s["identifiers"]["sop_instance_uid"] for m in manifests for s in m["studies"]]
    out += [e["irradiation_event_uid"] for m in manifests for s in m["studies"] for e in s["events"]]
    # a name as it may be written: "TAYLOR^KAREN", "TAYLOR", "KAREN"
    out += [p for name in list(out) if "^" in name for p in name.split("^") if len(p) > 2]
    return out


def _expected_mgd(manifests: list[dict], level: float, view: str, band: tuple[float, float], since: str) -> dict:
    """(serial, study date) -> (exposures, highest AGD), computed from the manifests."""
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for m in manifests:
        for s in m["studies"]:
            ids = s["identifiers"]
            if ids["study_date"] < since:
                continue
            for e in s["events"]:
                if e["view"] == view and band[0] <= e["thickness_mm"] <= band[1] and e["agd_mgy"] > level:
                    groups[(ids["device_serial_number"], ids["study_date"])].append(e["agd_mgy"])
    return {k: (len(v), max(v)) for k, v in groups.items()}


def test_mgd_rule_fires_once_and_the_mail_reaches_smtp(seeded, smtp_server):
    settings, store, manifests = seeded
    controller, inbox = smtp_server
    level, band = 1.2, (40.0, 70.0)
    db.add_rule(store, "mgd", "web:phys", view="MLO", band_mm=band, threshold=level, days=30)
    expected = _expected_mgd(manifests, level, "MLO", band, (NOW.date() - dt.timedelta(days=30)).strftime("%Y%m%d"))
    assert expected, "the synthetic data should hold MLO exposures above the level"

    first = alerting.evaluate(store, settings, NOW)
    assert {(a["unit"], a["key"].rsplit(":", 1)[1]) for a in first} == set(expected)
    for a in first:
        n, highest = expected[(a["unit"], a["key"].rsplit(":", 1)[1])]
        assert f"{n} exposure(s)" in a["message"] and f"highest {highest:.2f} mGy" in a["message"]
    # the same data evaluated again fires nothing more
    assert alerting.evaluate(store, settings, NOW) == []
    assert alerting.evaluate(store, settings, NOW + dt.timedelta(hours=1)) == []
    assert len(db.alerts(store)) == len(first)

    smtp = settings.with_overrides(
        "alerts", {"smtp_host": "127.0.0.1", "smtp_port": controller.port, "mail_to": ["physics@example.org"]}
    )
    assert alerting.send(store, smtp, now=NOW) == len(first)
    assert len(inbox.messages) == 1
    sender, rcpt, text = inbox.messages[0]
    assert rcpt == ["physics@example.org"] and sender == "srdose@localhost"
    for (serial, _day), (_n, highest) in expected.items():
        assert serial in text and f"{highest:.2f} mGy" in text
    for identifier in _identifiers(manifests):
        assert identifier not in text
    assert all(a["emailed_at"] == NOW for a in db.alerts(store))
    # sent once: nothing left to send
    assert alerting.send(store, smtp, now=NOW) == 0
    assert len(inbox.messages) == 1


def test_silent_unit_fires_for_the_unit_whose_last_study_is_old(seeded):
    settings, store, manifests = seeded
    db.add_rule(store, "silent", "web:phys", days=14)
    fired = alerting.evaluate(store, settings, NOW)
    ge = {s["identifiers"]["device_serial_number"] for s in manifests[1]["studies"]}
    last_ge = max(s["identifiers"]["study_date"] for s in manifests[1]["studies"])
    assert [a["unit"] for a in fired] == sorted(ge)
    age = (NOW.date() - dt.datetime.strptime(last_ge, "%Y%m%d").date()).days
    assert f"no study for {age} days" in fired[0]["message"]
    # the recent Hologic unit is not silent; and the silence is alerted once
    assert alerting.evaluate(store, settings, NOW + dt.timedelta(days=3)) == []


def test_a_failed_send_keeps_the_alert_and_a_later_send_delivers_it(seeded, smtp_server):
    settings, store, _ = seeded
    controller, inbox = smtp_server
    db.add_rule(store, "silent", "web:phys", days=14)
    fired = alerting.evaluate(store, settings, NOW)
    assert fired
    closed = settings.with_overrides(
        "alerts", {"smtp_host": "127.0.0.1", "smtp_port": _free_port(), "mail_to": ["physics@example.org"]}
    )
    assert alerting.send(store, closed, now=NOW) == 0
    assert [a["id"] for a in db.alerts(store, unsent=True)] == [a["id"] for a in fired]
    working = settings.with_overrides(
        "alerts", {"smtp_host": "127.0.0.1", "smtp_port": controller.port, "mail_to": ["physics@example.org"]}
    )
    assert alerting.send(store, working, now=NOW) == len(fired)
    assert db.alerts(store, unsent=True) == []
    assert fired[0]["unit"] in inbox.messages[0][2]


def test_listener_and_quarantine_rules(seeded):
    settings, store, _ = seeded
    db.add_rule(store, "listener", "web:phys", threshold=5)
    db.add_rule(store, "quarantine", "web:phys", threshold=2)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    status = settings.data_dir / "listener-status.json"
    fired = alerting.evaluate(store, settings, NOW)
    assert [a["kind"] for a in fired] == ["listener"] and "no status file" in fired[0]["message"]
    # running: a status written a minute before now
    stamp = NOW.replace(tzinfo=dt.timezone.utc).timestamp()
    status.write_text(json.dumps({"updated": stamp - 60, "pid": 1, "stopped": None, "counts": {}}))
    assert alerting.evaluate(store, settings, NOW) == []
    # down: its status is 22 minutes old; alerted once for that outage
    later = NOW + dt.timedelta(minutes=21)
    fired = alerting.evaluate(store, settings, later)
    assert len(fired) == 1 and "22 minutes ago" in fired[0]["message"]
    assert alerting.evaluate(store, settings, later + dt.timedelta(minutes=15)) == []

    q = QuarantineFolder(settings.quarantine_dir)
    for i in range(3):
        q.put(b"not dicom", f"{i:064x}", "unreadable", "not a DICOM file")
    # the notes say when (the real clock): evaluate a moment after they were written
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(seconds=1)
    status.write_text(json.dumps({"updated": time.time(), "pid": 1, "stopped": None, "counts": {}}))
    fired = alerting.evaluate(store, settings, now)
    assert [a["kind"] for a in fired] == ["quarantine"] and fired[0]["message"].startswith("3 datasets")
    assert alerting.evaluate(store, settings, now) == []


def test_disabled_rule_does_not_fire(seeded):
    settings, store, _ = seeded
    rule = db.add_rule(store, "silent", "web:phys", days=14)
    assert db.set_rule_enabled(store, rule, False)
    assert alerting.evaluate(store, settings, NOW) == []
    assert db.set_rule_enabled(store, rule, True)
    assert len(alerting.evaluate(store, settings, NOW)) == 1


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found
    return found.group(1)


def _sign_in(client, name: str) -> str:
    page = client.get("/login")
    r = client.post(
        "/login",
        data={"username": name, "password": "a long password 1", "csrf_token": _csrf(page.text), "next": "/alerts"},
    )
    assert r.status_code == 200 and "Alerts" in r.text, r.text[:500]
    return _csrf(r.text)


def test_alerts_page_rules_and_acknowledgement(seeded):
    starlette_testclient = pytest.importorskip("starlette.testclient")
    from srdose.store import web_users
    from srdose.web.app import create_app
    from srdose.web.auth import hash_password

    settings, store, manifests = seeded
    for name, role in (("phys", "physicist"), ("view", "viewer")):
        web_users.add_user(store, name, role, hash_password("a long password 1"))
    app = create_app(settings, settings.database_url)
    with starlette_testclient.TestClient(app, base_url="http://127.0.0.1") as client:
        token = _sign_in(client, "phys")
        r = client.post("/alerts/rules", data={"kind": "silent", "days": "14", "csrf_token": token})
        assert r.status_code == 200 and "silent" in r.text
        # a form without its token is refused
        assert client.post("/alerts/rules", data={"kind": "silent", "days": "3"}).status_code == 403
        bad = client.post("/alerts/rules", data={"kind": "mgd", "csrf_token": token})
        assert bad.status_code == 400 and "needs its level" in bad.text
        assert [r["kind"] for r in db.rules(store)] == ["silent"]
        fired = alerting.evaluate(store, settings, NOW)
        page = client.get("/alerts")
        assert fired[0]["unit"] in page.text and "Acknowledge" in page.text
        for identifier in _identifiers(manifests):
            assert identifier not in page.text
        r = client.post(f"/alerts/{fired[0]['id']}/acknowledge", data={"csrf_token": token})
        assert r.status_code == 200 and "by web:phys" in r.text
        assert db.alerts(store, open_only=True) == []
        rule = db.rules(store)[0]["id"]
        client.post(f"/alerts/rules/{rule}", data={"enabled": "0", "csrf_token": token})
        assert db.rules(store, enabled_only=True) == []
        client.post("/logout", data={"csrf_token": token})

        token = _sign_in(client, "view")
        assert client.get("/alerts").status_code == 200
        assert client.post(f"/alerts/rules/{rule}", data={"enabled": "1", "csrf_token": token}).status_code == 403
        assert "Add a rule" not in client.get("/alerts").text
    from srdose.store.governance import audit_entries

    changes = [e for e in audit_entries(store, action="web:change") if "/alerts" in (e["parameters"] or "")]
    assert changes and all(e["who"] == "web:phys" for e in changes)


def test_check_command(seeded, smtp_server, monkeypatch):
    from click.testing import CliRunner

    from srdose.cli import main

    settings, store, _ = seeded
    controller, inbox = smtp_server
    # looking back a century: fires whatever today's date
    db.add_rule(store, "mgd", "web:phys", threshold=0.1, days=36500)
    monkeypatch.setenv("SRDOSE_ALERTS__SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SRDOSE_ALERTS__SMTP_PORT", str(controller.port))
    monkeypatch.setenv("SRDOSE_ALERTS__MAIL_TO", "physics@example.org")
    result = CliRunner().invoke(main, ["alerts", "check"])
    assert result.exit_code == 0, result.output
    assert "mgd: Unit" in result.output and len(inbox.messages) == 1
    assert db.alerts(store, unsent=True) == []
    assert CliRunner().invoke(main, ["alerts", "check"]).exit_code == 0
    assert len(inbox.messages) == 1


def test_store_refuses_an_unknown_kind(seeded):
    _, store, _ = seeded
    with pytest.raises(ValueError, match="unknown alert rule kind"):
        db.add_rule(store, "weather", "web:phys")


def test_drift_and_ratio_rules_on_a_step_in_reported_agd(store, ingestor, tmp_path, caplog):
    """January as made, February's reported AGD × 0.8 (recalculated MGD unchanged, so the ratio
    rises by 1.25): the drift rule fires once, from February; the ratio rule fires on February's
    days only."""
    from srdose.physics.factors import load_bundled
    from srdose.recalc import Params, run

    settings = config.load(None, environ={"SRDOSE_DATA_DIR": str(tmp_path / "data")})
    synth.generate("hologic", 200, tmp_path / "jan", seed=11, date_range=(dt.date(2025, 1, 1), dt.date(2025, 1, 31)))
    feb = synth.generate(
        "hologic", 200, tmp_path / "feb", seed=12, date_range=(dt.date(2025, 2, 1), dt.date(2025, 2, 28))
    )
    assert sum(B.scale_agd(p, 0.8) for p in feb) > 200
    ingestor.ingest_paths([tmp_path / "jan", tmp_path / "feb"])
    run(store, load_bundled(), Params())
    (serial,) = db.unit_serials(store)

    db.add_rule(store, "drift", "web:phys", serial=serial)
    now = dt.datetime(2025, 3, 1, 8, 0)
    fired = alerting.evaluate(store, settings, now)
    assert [a["unit"] for a in fired] == [serial]
    since = fired[0]["key"].rsplit(":", 1)[1]
    assert since >= "2025-02-01" and f"since {since}" in fired[0]["message"]
    assert alerting.evaluate(store, settings, now + dt.timedelta(days=1)) == []
    assert "could not be evaluated" not in caplog.text

    # a band the unchanged ratios keep to and the stepped ones leave (median ratio ~1 before, ~1.25 after)
    db.add_rule(store, "ratio", "web:phys", serial=serial, threshold=0.2, days=60)
    days = {a["key"].rsplit(":", 1)[1] for a in alerting.evaluate(store, settings, now)}
    assert days and all(d >= "20250201" for d in days)
