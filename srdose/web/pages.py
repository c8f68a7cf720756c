"""The pages every role sees: the overview, the event list (and its downloads), a study, a unit."""

from __future__ import annotations

import datetime as dt
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from srdose.curation import conformance as K
from srdose.dates import parse_iso_day
from srdose.files import csv_text, write_xlsx
from srdose.store import cache, unitpage
from srdose.store import governance as G
from srdose.store import web as q
from srdose.web.auth import error_page, require
from srdose.web.render import render

#: A listener rewrites its status file every few seconds; older than this it is taken to be down.
STATUS_STALE_SECONDS = 120


def listener_status(data_dir: Path) -> dict | None:
    """The listener's own status file, if there is one: its counts and whether it looks alive."""
    path = data_dir / "listener-status.json"
    try:
        doc = json.loads(path.read_text())
        updated = float(doc.get("updated", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return {
        "running": time.time() - updated < STATUS_STALE_SECONDS,
        "age_s": int(time.time() - updated),
        "counts": doc.get("counts", {}) if isinstance(doc.get("counts"), dict) else {},
        "pid": doc.get("pid"),
    }


@require("viewer")
def overview(request: Request) -> Response:
    store, settings = request.app.state.store, request.app.state.settings
    data = q.overview(store, dt.date.today(), seconds=settings.web.cache_seconds)
    request.state.audit_rows = len(data["units"])
    peak = max((w["events"] for w in data["weeks"]), default=0)
    return render(
        request,
        "web/overview.html",
        {**data, "peak": peak, "listener": listener_status(settings.data_dir)},
    )


# --- the event list ---------------------------------------------------------------------


class BadFilter(ValueError):
    pass


def _number(params: Any, name: str) -> float | None:
    text = params.get(name, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadFilter(f"{name} must be a number, not {text!r}") from None
    if not math.isfinite(value):
        raise BadFilter(f"{name} must be a finite number")
    return value


def _day(params: Any, name: str) -> str | None:
    text = params.get(name, "").strip()
    if not text:
        return None
    day = parse_iso_day(text)
    if day is None:
        raise BadFilter(f"{name} must be a date YYYY-MM-DD, not {text!r}")
    return day.strftime("%Y%m%d")


def _word(params: Any, name: str, upper: bool = True, limit: int = 64) -> str | None:
    text = params.get(name, "").strip()[:limit]
    if not text:
        return None
    return text.upper() if upper else text


def parse_filter(params: Any, ratio_band: float) -> q.EventFilter:
    """The event filter from a query string; BadFilter names a parameter that cannot be read."""
    kv_min = kv_max = None
    kv = params.get("kv", "").strip()
    if kv:
        lo, sep, hi = kv.partition("-")
        try:
            kv_min, kv_max = (float(lo), float(hi)) if sep else (float(kv) - 0.5, float(kv) + 0.5)
        except ValueError:
            raise BadFilter(f"kv must be a kV (28) or a band (26-30), not {kv!r}") from None
        # NaN compares unlike on the engines (PostgreSQL sorts it above every number)
        if not (math.isfinite(kv_min) and math.isfinite(kv_max)):
            raise BadFilter("kv must be finite numbers")
    anode = filt = None
    tf = params.get("tf", "").strip()
    if tf:
        anode, sep, filt = tf.partition("/")
        if not sep or not anode or not filt:
            raise BadFilter(f"tf must be TARGET/FILTER such as W/Rh, not {tf!r}")
    ratio = params.get("ratio", "").strip().lower()
    ratio_outside: float | None = None
    if ratio == "outside":
        ratio_outside = ratio_band
    elif ratio:
        try:
            ratio_outside = float(ratio)
        except ValueError:
            raise BadFilter(f"ratio must be 'outside' or a band such as 0.2, not {ratio!r}") from None
        if not math.isfinite(ratio_outside):
            raise BadFilter("ratio must be a finite band such as 0.2")
    acquisition = _word(params, "acquisition")
    if acquisition and acquisition not in ("2D", "DBT"):
        raise BadFilter("acquisition must be 2D or DBT")
    laterality = _word(params, "laterality")
    if laterality and laterality not in ("L", "R", "B"):
        raise BadFilter("laterality must be L, R or B")
    sort_text = params.get("sort", "").strip() or "-study_date"
    sort = []
    for part in sort_text.split(","):
        name = part.strip().lstrip("-")
        if name not in q.SORTABLE:
            raise BadFilter(f"sort must name one of {', '.join(q.SORTABLE)} (a leading - for descending)")
        sort.append((name, part.strip().startswith("-")))
    return q.EventFilter(
        since=_day(params, "from"),
        until=_day(params, "to"),
        serial=_word(params, "unit", upper=False, limit=256),
        view=_word(params, "view"),
        acquisition=acquisition,
        laterality=laterality,
        tmin=_number(params, "tmin"),
        tmax=_number(params, "tmax"),
        amin=_number(params, "amin"),
        amax=_number(params, "amax"),
        kv_min=kv_min,
        kv_max=kv_max,
        anode=anode.strip().upper() if anode else None,
        filter_material=filt.strip().upper() if filt else None,
        flag=_word(params, "flag", upper=False),
        method=_word(params, "method", upper=False),
        ratio_outside=ratio_outside,
        sort=tuple(sort),
    )


#: Query parameters of the event list, kept in every link the page builds.
FILTER_PARAMS = (
    "from",
    "to",
    "unit",
    "view",
    "acquisition",
    "laterality",
    "tmin",
    "tmax",
    "amin",
    "amax",
    "kv",
    "tf",
    "flag",
    "method",
    "ratio",
    "sort",
)


def _query(params: Any, **changes: Any) -> str:
    kept = {k: params.get(k, "") for k in FILTER_PARAMS if params.get(k, "")}
    kept.update({k: v for k, v in changes.items() if v not in (None, "")})
    return urlencode(kept)


@require("viewer")
def events(request: Request) -> Response:
    store, settings = request.app.state.store, request.app.state.settings
    params = request.query_params
    try:
        f = parse_filter(params, settings.recalc.ratio_band)
        page = int(params.get("page", "1") or 1)
        if page < 1:
            raise ValueError
    except BadFilter as exc:
        return error_page(request, 400, str(exc))
    except ValueError:
        return error_page(request, 400, "page must be a whole number from 1")
    fmt = params.get("format", "").lower()
    if fmt in ("csv", "xlsx"):
        return _download(request, f, fmt)
    if fmt:
        return error_page(request, 400, "format must be csv or xlsx")
    size = settings.web.page_size
    listed = q.event_list(store, f, page, size)
    page, pages, rows = listed.page, listed.pages, listed.rows
    request.state.audit_rows = len(rows)
    current_sort = params.get("sort", "") or "-study_date"
    return render(
        request,
        "web/events.html",
        {
            "rows": rows,
            "total": listed.total,
            "exact": listed.exact,
            "page": page,
            "pages": pages,
            "params": {k: params.get(k, "") for k in FILTER_PARAMS},
            "choices": q.filter_choices(store, settings.web.cache_seconds),
            "prev_q": _query(params, page=page - 1) if page > 1 else None,
            "next_q": _query(params, page=page + 1) if listed.has_next else None,
            "csv_q": _query(params, format="csv"),
            "xlsx_q": _query(params, format="xlsx"),
            "sort_q": {
                col: _query(params, sort=(col if current_sort == "-" + col else "-" + col)) for col in q.SORTABLE
            },
            "current_sort": current_sort,
            # the name reports show each unit under (curation: renames and aliases)
            "unit_names": {u["serial"]: u["shown_as"] for u in G.units(store) if u["serial"]},
        },
    )


def _download(request: Request, f: q.EventFilter, fmt: str) -> Response:
    """Exactly the filtered rows, all pages, through the package's CSV/XLSX writers. A CSV is sent
    as it is read (the browser shows it arriving); an XLSX is a zip, written whole first."""
    store = request.app.state.store
    request.state.audit_action = "web:download"
    name = f"srdose-events-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.{fmt}"
    if fmt == "csv":
        rows = q.EventRows(store, f)
        request.state.audit_rows = rows.count
        return StreamingResponse(
            csv_text(rows, q.EVENT_COLUMNS),  # read in a worker thread, piece by piece
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
            background=BackgroundTask(rows.close),  # also when the browser gives up half-way
        )
    tmp = Path(tempfile.mkdtemp(prefix="srdose-web-"))
    out = tmp / name
    request.state.audit_rows = write_xlsx(q.iter_events(store, f), out, q.EVENT_COLUMNS)

    def remove() -> None:
        out.unlink(missing_ok=True)
        tmp.rmdir()

    return FileResponse(
        out,
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        filename=name,
        background=BackgroundTask(remove),
    )


# --- a study, a unit -------------------------------------------------------------------


@require("viewer")
def study(request: Request) -> Response:
    data = q.study(request.app.state.store, int(request.path_params["study_id"]))
    if data is None:
        return error_page(request, 404, "No such study.")
    request.state.audit_rows = len(data["events"])
    return render(request, "web/study.html", {"study": data})


@require("viewer")
def unit(request: Request) -> Response:
    serial = request.path_params["serial"]
    devices = q.unit(request.app.state.store, serial)
    if not devices:
        return error_page(request, 404, "No unit with this serial number.")
    request.state.audit_rows = sum(d["events"] for d in devices)
    store, settings = request.app.state.store, request.app.state.settings
    # every flagged event of the unit is read (half a second for a busy unit): kept a while too
    conformance = cache.cached(
        store, f"unit_conformance:{serial}", lambda: _conformance(store, serial), settings.web.cache_seconds
    )
    return render(request, "web/unit.html", {"serial": serial, "devices": devices, "conformance": conformance})


def _conformance(store, serial: str) -> K.UnitConformance | None:
    units = list(K.from_database(store, serial).values())
    return K.merged(units) if units else None


@require("viewer")
def unit_charts(request: Request) -> Response:
    serial = request.path_params["serial"]
    store, settings = request.app.state.store, request.app.state.settings
    if not unitpage.unit_devices(store, serial):  # the devices only: no count of their events
        return JSONResponse({"error": "no such unit"}, status_code=404)
    # a unit's charts read all its events (hundreds of milliseconds for a busy unit): kept a
    # while ([web] cache_seconds), so that several people on one unit, or a reload, do not each pay
    body = cache.cached(
        store, f"unit_charts:{serial}", lambda: _charts_json(store, serial, settings), settings.web.cache_seconds
    )
    return Response(body, media_type="application/json")


def _charts_json(store, serial: str, settings) -> bytes:
    """The unit's charts, stamped with when, encoded once as JSONResponse encodes them."""
    as_of = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    return bytes(JSONResponse({**unitpage.unit_charts(store, serial, settings), "as_of": as_of}).body)


def routes() -> list[BaseRoute]:
    return [
        Route("/", overview, methods=["GET"]),
        Route("/events", events, methods=["GET"]),
        Route("/studies/{study_id:int}", study, methods=["GET"]),
        Route("/units/{serial:str}/charts.json", unit_charts, methods=["GET"]),
        Route("/units/{serial:str}", unit, methods=["GET"]),
    ]
