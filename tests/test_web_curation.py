"""The curation pages over HTTP: units renamed and aliased through the same store functions as
``srdose units``, protocol counts equal to the database's, and an event made infeasible on purpose
found by the check; viewers and forged forms refused; no identifier in any answer.

A real database (SQLite, then PostgreSQL) built by ingesting synthetic RDSRs (with the ingest hooks, so infeasible
values are flagged as the listener flags them) and one hand-built RDSR ingested without them; the
app is driven through Starlette's TestClient over the real ASGI app.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from srdose import synth as S
from srdose.curation.infeasible import load_rules
from srdose.governance.hooks import IngestHooks
from srdose.ingest import Ingestor
from srdose.pseudonym import Pseudonymiser
from srdose.quarantine import QuarantineFolder
from srdose.store import DoseStore, web_users
from srdose.store import governance as G
from srdose.store import models as M
from srdose.store.governance import audit_entries
from srdose.web.app import create_app
from srdose.web.auth import hash_password
from tests import builders as B
from tests.test_web import PASSWORD, _settings, csrf_of, name_forms, signed_in

USERS = {"vera": "viewer", "phil": "physicist", "ada": "admin"}
# the event made infeasible on purpose: a tube voltage no mammography tube delivers
BAD_SERIAL, BAD_KVP = "SN-CURATION-80KV", "80"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, module_db_url: str) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("web-curation")
    src = tmp / "in"
    identifiers: set[str] = set()
    for i, vendor in enumerate(("hologic", "ge")):
        out = src / vendor
        S.generate(vendor, 4, out, seed=90 + i, manifest=True, dbt_fraction=0.3)
        for st in json.loads((out / "manifest.json").read_text())["studies"]:
            ids = st["identifiers"]
            identifiers |= {ids["patient_id"], ids["accession_number"], ids["patient_birth_date"]}
            identifiers |= name_forms(ids["patient_name"])
            if ids.get("referring_physician"):
                identifiers |= name_forms(ids["referring_physician"])
    url = module_db_url
    store = DoseStore(url, Pseudonymiser(b"2" * 64))
    hooks = IngestHooks(("PHANTOM", "QA", "TEST"), load_rules())
    summary = Ingestor(store, QuarantineFolder(tmp / "q"), batch_size=50, hooks=hooks).ingest_paths([src])
    assert summary.n_quarantined == 0
    # ingested without the rules (as before a rules file existed): only a recheck finds it
    bad = B.rdsr(events=[B.event(kvp=BAD_KVP), B.event()])
    bad.DeviceSerialNumber, bad.StationName = BAD_SERIAL, "ROOM-CUR"
    plain = Ingestor(store, QuarantineFolder(tmp / "q2"))
    with store.begin() as conn:
        plain.ingest_one(conn, B.to_bytes(bad))
    identifiers |= {B.PATIENT["PatientID"], B.PATIENT["AccessionNumber"], B.PATIENT["PatientBirthDate"]}
    identifiers |= name_forms(B.PATIENT["PatientName"])
    for name, role in USERS.items():
        web_users.add_user(store, name, role, hash_password(PASSWORD))
    store.close()
    identifiers = {v for v in identifiers if len(v) >= 5}
    return {"url": url, "identifiers": identifiers, "settings": _settings(tmp), "tmp": tmp}


@pytest.fixture(scope="module")
def app(world: dict[str, Any]) -> Any:
    return create_app(world["settings"], world["url"])


def _rows(page: str, table_id: str) -> list[list[str]]:
    """The cells (tags stripped) of each body row of one table."""
    body = re.search(rf'<table[^>]*id="{table_id}".*?<tbody>(.*?)</tbody>', page, re.S)
    assert body, table_id
    rows = []
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(1), re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)
        rows.append([html.unescape(re.sub(r"<[^>]+>", " ", c)).strip() for c in cells])
    return rows


def _unit_row(page: str, serial: str) -> list[str]:
    return next(r for r in _rows(page, "curation-units") if r[0] == serial)


def _audit(store: Any, who: str) -> list[dict]:
    """The audit entries of one user, oldest first."""
    return [e for e in reversed(audit_entries(store)) if e["who"] == who]


def _device_id(store: Any, serial: str) -> int:
    return next(u["id"] for u in G.units(store) if u["serial"] == serial)


CURATION_PAGES = ("/curation", "/curation/protocols", "/curation/infeasible")


def test_curation_pages_for_every_role(app: Any) -> None:
    anonymous = TestClient(app)
    for path in CURATION_PAGES:
        r = anonymous.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path
    assert anonymous.post("/curation/units/rename", data={"unit": "1", "name": "x"}).status_code == 401
    for name, role in USERS.items():
        client = signed_in(app, name)
        nav = client.get("/").text
        assert ('href="/curation"' in nav) is (role != "viewer")
        for path in CURATION_PAGES:
            assert client.get(path).status_code == (403 if role == "viewer" else 200), (name, path)
    # a viewer with a valid form token still may not change anything
    vera = signed_in(app, "vera")
    token = csrf_of(vera.get("/").text)
    before = G.units(app.state.store)
    r = vera.post("/curation/units/rename", data={"csrf_token": token, "unit": "1", "name": "Viewer's name"})
    assert r.status_code == 403
    r = vera.post("/curation/units/alias", data={"csrf_token": token, "field": "serial", "value": "X", "name": "Y"})
    assert r.status_code == 403
    assert vera.post("/curation/infeasible", data={"csrf_token": token}).status_code == 403
    assert G.units(app.state.store) == before and G.aliases(app.state.store) == []


def test_forms_without_or_with_a_wrong_csrf_token_are_refused(app: Any) -> None:
    phil = signed_in(app, "phil")
    store = app.state.store
    device = _device_id(store, BAD_SERIAL)
    for extra in ({}, {"csrf_token": "forged"}):
        r = phil.post("/curation/units/rename", data={**extra, "unit": str(device), "name": "Forged"})
        assert r.status_code == 403
        r = phil.post("/curation/units/alias", data={**extra, "field": "serial", "value": BAD_SERIAL, "name": "F"})
        assert r.status_code == 403
    assert G.display_name(store, device) == "ROOM-CUR" and G.aliases(store) == []
    assert [e["action"] for e in _audit(store, "web:phil")][-4:] == ["web:csrf-refused"] * 4


def test_physicist_renames_a_unit_and_sets_an_alias(app: Any) -> None:
    store = app.state.store
    phil = signed_in(app, "phil")
    page = phil.get("/curation").text
    assert _unit_row(page, BAD_SERIAL)[5:8] == ["ROOM-CUR", "default", "2"]
    # the events column is the live events of each unit
    per_unit = G.unit_event_counts(store)
    for u in G.units(store):
        assert _unit_row(page, u["serial"])[7] == str(per_unit[u["id"]]["events"])

    device = _device_id(store, BAD_SERIAL)
    r = phil.post("/curation/units/rename", data={"csrf_token": csrf_of(page), "unit": str(device), "name": "Room 7"})
    assert r.status_code == 200 and "Unit now shown as &#39;Room 7&#39;" in r.text
    assert _unit_row(r.text, BAD_SERIAL)[5:7] == ["Room 7", "rename"]
    # the same store output as `srdose units list`
    unit = next(u for u in G.units(store) if u["serial"] == BAD_SERIAL)
    assert (unit["shown_as"], unit["named_by"]) == ("Room 7", "rename")
    events = phil.get("/events", params={"unit": BAD_SERIAL}).text
    assert "Room 7" in events

    other = next(u for u in G.units(store) if u["serial"] != BAD_SERIAL)
    r = phil.post(
        "/curation/units/alias",
        data={"csrf_token": csrf_of(r.text), "field": "serial", "value": other["serial"], "name": "Breast room A"},
    )
    assert r.status_code == 200 and ": added." in r.text
    assert _rows(r.text, "curation-aliases")[0][:3] == ["serial", other["serial"], "Breast room A"]
    assert _unit_row(r.text, other["serial"])[5:7] == ["Breast room A", "alias:serial"]
    assert G.aliases(store) == [
        {"match_field": "serial", "match_value": other["serial"], "display_name": "Breast room A"}
    ]
    assert G.display_name(store, other["id"]) == "Breast room A"
    assert "Breast room A" in phil.get("/events", params={"unit": other["serial"]}).text

    # an explicit name wins over an alias; clearing it lets the alias apply again
    token = csrf_of(r.text)
    phil.post("/curation/units/alias", data={"csrf_token": token, "field": "serial", "value": BAD_SERIAL, "name": "B"})
    assert G.display_name(store, device) == "Room 7"
    r = phil.post("/curation/units/rename", data={"csrf_token": token, "unit": str(device), "clear": "1"})
    assert r.status_code == 200 and G.display_name(store, device) == "B"
    r = phil.post(
        "/curation/units/alias", data={"csrf_token": token, "field": "serial", "value": BAD_SERIAL, "remove": "1"}
    )
    assert ": removed." in r.text and G.display_name(store, device) == "ROOM-CUR"

    # refused input changes nothing
    for data in ({"unit": "999999", "name": "X"}, {"unit": "abc", "name": "X"}, {"unit": str(device), "name": ""}):
        assert phil.post("/curation/units/rename", data={"csrf_token": token, **data}).status_code == 400
    bad_alias = {"csrf_token": token, "field": "patient_id", "value": "1", "name": "X"}
    assert phil.post("/curation/units/alias", data=bad_alias).status_code == 400
    assert G.display_name(store, device) == "ROOM-CUR" and len(G.aliases(store)) == 1

    # every change is in the audit trail under the curation actions, with who and what
    entries = _audit(store, "web:phil")
    renames = [e for e in entries if e["action"] == "web:curation.rename"]
    aliases = [e for e in entries if e["action"] == "web:curation.alias"]
    assert any(json.loads(e["parameters"])["form"].get("name") == "Room 7" for e in renames)
    assert any(json.loads(e["parameters"])["form"].get("name") == "Breast room A" for e in aliases)
    assert any(e["rows"] == 1 for e in renames)


def test_protocol_counts_equal_the_database(app: Any) -> None:
    store = app.state.store
    with store.engine.connect() as conn:
        expected = Counter(
            {
                p or "": n
                for p, n in conn.execute(
                    select(M.Event.protocol, func.count(M.Event.id))
                    .join(M.SourceObject, M.Event.source_object_id == M.SourceObject.id)
                    .where(M.SourceObject.superseded_by.is_(None))
                    .group_by(M.Event.protocol)
                )
            }
        )
    page = signed_in(app, "phil").get("/curation/protocols").text
    rows = _rows(page, "curation-protocols")
    assert Counter({r[0]: int(r[1]) for r in rows}) == expected
    assert len(rows) == len(expected) >= 2
    assert sum(int(r[1]) for r in _rows(page, "curation-standards")) == sum(expected.values())
    assert "protocol_map" in page and "file setting" in page


def test_infeasible_check_lists_the_event_made_infeasible(app: Any) -> None:
    store = app.state.store
    phil = signed_in(app, "phil")
    page = phil.get("/curation/infeasible").text
    kvp_row = next(r for r in _rows(page, "infeasible-rules") if r[0] == "kvp")
    assert kvp_row[-1] == "0"  # ingested without the rules: not flagged yet

    r = phil.post("/curation/infeasible", data={"csrf_token": csrf_of(page)})
    assert r.status_code == 200 and "flags changed on 1 event(s)" in r.text
    kvp_row = next(row for row in _rows(r.text, "infeasible-rules") if row[0] == "kvp")
    assert kvp_row[-1] == "1"
    assert [row for row in _rows(r.text, "infeasible-units") if row[1] == "kvp"] == [["ROOM-CUR", "kvp", "1"]]

    listed = phil.get("/curation/infeasible", params={"rule": "kvp"}).text
    events = _rows(listed, "infeasible-events")
    with store.engine.connect() as conn:
        event_id, study_id = conn.execute(
            select(M.Event.id, M.Event.study_id)
            .join(M.Device, M.Event.device_id == M.Device.id)
            .where(M.Device.serial == BAD_SERIAL, M.Event.kvp == float(BAD_KVP))
        ).one()
    assert events == [[str(event_id), "ROOM-CUR", "20250102", "2D", "kvp", "80.00"]]
    assert f'href="/studies/{study_id}"' in listed
    assert phil.get(f"/studies/{study_id}").status_code == 200
    # the same flag `srdose check` counts
    assert {(c["rule"], c["events"]) for c in G.flag_counts(store)} >= {("kvp", 1)}
    # a second recheck changes nothing; an unknown rule or page is refused
    assert "flags changed on 0 event(s)" in phil.post("/curation/infeasible", data={"csrf_token": csrf_of(r.text)}).text
    assert phil.get("/curation/infeasible", params={"rule": "no-such-rule"}).status_code == 400
    assert phil.get("/curation/infeasible", params={"rule": "kvp", "page": "0"}).status_code == 400
    recheck = [e for e in _audit(store, "web:phil") if e["action"] == "web:curation.recheck"]
    assert [e["rows"] for e in recheck][-2:] == [1, 0]


def test_infeasible_events_are_paged(world: dict[str, Any]) -> None:
    app = create_app(_settings(world["tmp"], page_size=1), world["url"])
    store = app.state.store
    phil = signed_in(app, "phil")
    # flag every live event of one unit by hand, as an earlier rules table would have
    device = _device_id(store, BAD_SERIAL)
    with store.engine.connect() as conn:
        kept = dict(conn.execute(select(M.Event.id, M.Event.flags).where(M.Event.device_id == device)).all())
    ids = sorted(kept)
    G.set_event_flags(store, {i: "infeasible:old_rule" for i in ids})
    try:
        seen = []
        for page in range(1, len(ids) + 2):
            text = phil.get("/curation/infeasible", params={"rule": "old_rule", "page": str(page)}).text
            seen += [int(r[0]) for r in _rows(text, "infeasible-events")]
        assert seen[: len(ids)] == ids and seen[len(ids) :] == ids[-1:]  # past the end: the last page
        # "old_rule" must not also match a flag that only starts with it
        G.set_event_flags(store, {ids[0]: "infeasible:old_rule_x"})
        text = phil.get("/curation/infeasible", params={"rule": "old_rule"}).text
        assert "Events flagged" in text and f">{ids[0]}<" not in text
    finally:
        G.set_event_flags(store, kept)
        store.close()


def test_no_identifier_in_any_curation_page(app: Any, world: dict[str, Any]) -> None:
    phil = signed_in(app, "ada")
    pages = [phil.get(path).text for path in CURATION_PAGES]
    pages.append(phil.get("/curation/infeasible", params={"rule": "kvp"}).text)
    assert world["identifiers"]
    for text in pages:
        for ident in world["identifiers"]:
            assert ident not in text, ident
