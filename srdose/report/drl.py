"""Local and national-style diagnostic reference levels (``srdose report drl``), ICRP 135 practice.

Per room (X-ray unit) the median MGD of a standard exposure set (default: 2D
MLO views of 50–60 mm compressed thickness, recalculated MGD; see the
``[report] drl_*`` settings). A room enters the statistics with at least
``drl_min_events`` exposures in the set. Then

* local DRL (the service's typical value) = median of the room medians;
* national-style DRL = 75th percentile of the room medians (numpy's default
  linear interpolation, Hyndman–Fan type 7).

Excluded from the set, and counted per room: studies that are not a
patient's, events with any ``infeasible:`` flag, events without the dose.
The national DRL shown beside them comes only from ``[report]
national_drl_mgy`` with its ``national_drl_source``: srdose has no built-in
value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from srdose.config import ReportSettings, parse_band, parse_drl_views
from srdose.files import private_dir
from srdose.report import common as C
from srdose.report import plots as P
from srdose.report import stats
from srdose.report.common import Built, Progress, period_tag
from srdose.report.render import (
    Table,
    html_tables,
    number_columns,
    render_html,
    text_columns,
    write_tables,
)
from srdose.store.reports import NUMERIC, TEXT, period_units, report_events


@dataclass
class DRLSettings:
    views: tuple[str, ...] = ("MLO",)
    band: tuple[float, float] = (50.0, 60.0)
    acquisition: str = "2D"
    dose: str = "recalc"  # recalc | reported
    min_events: int = 20
    national_mgy: float | None = None
    national_source: str = ""

    @classmethod
    def from_settings(
        cls, section: ReportSettings, band: str | None = None, views=None, acquisition=None, dose=None, min_events=None
    ) -> DRLSettings:
        """From ``[report]`` (checked when the settings were read) with command-line overrides;
        ValueError on a bad override."""
        lo, hi = parse_band(band) if band else section.drl_band_mm
        vs = parse_drl_views(views) if views else section.drl_views
        acq = (acquisition or section.drl_acquisition).strip().upper()
        if acq not in ("2D", "DBT"):
            raise ValueError(f"DRL acquisition {acq!r}: 2D or DBT")
        d = (dose or section.drl_dose).strip().lower()
        if d not in ("recalc", "reported"):
            raise ValueError(f"DRL dose {d!r}: recalc or reported")
        m = int(section.drl_min_events if min_events is None else min_events)
        if m < 1:
            raise ValueError("drl_min_events must be at least 1")
        return cls(vs, (lo, hi), acq, d, m, section.national_drl_mgy, section.national_drl_source.strip())

    def describe(self) -> str:
        dose = "recalculated MGD" if self.dose == "recalc" else "AGD as reported"
        return (
            f"{self.acquisition} {'/'.join(self.views)} views, compressed thickness "
            f"{self.band[0]:g}–{self.band[1]:g} mm, {dose}"
        )


@dataclass
class RoomStats:
    """Per room (arrays aligned with ``rooms``)."""

    rooms: np.ndarray  # device ids
    in_set: np.ndarray  # exposures in the standard set (before exclusions)
    not_patient: np.ndarray
    infeasible: np.ndarray
    no_dose: np.ndarray
    used: np.ndarray
    median: np.ndarray
    p25: np.ndarray
    p75: np.ndarray
    mean: np.ndarray
    qualifies: np.ndarray


def standard_set(cols: dict, s: DRLSettings) -> np.ndarray:
    return (
        C.per_text(cols["view"], lambda v: v in s.views)
        & stats.in_band(cols["compressed_thickness_mm"], *s.band)
        & (C.modality(cols) == s.acquisition)
    )


def room_statistics(room, dose, in_set, not_patient, infeasible, min_events: int, rooms=None) -> RoomStats:
    """Counts and dose statistics per room of the events ``in_set``: pure numpy.

    An event counts as used when in the set, a patient's, without an
    ``infeasible:`` flag and with a finite dose; a room qualifies with at
    least ``min_events`` used events. Exclusions are counted in that order
    (an event is counted under its first reason only).
    """
    room = np.asarray(room)
    dose = np.asarray(dose, dtype=float)
    in_set = np.asarray(in_set, bool)
    np_ = in_set & np.asarray(not_patient, bool)
    inf = in_set & ~np_ & np.asarray(infeasible, bool)
    nod = in_set & ~np_ & ~inf & ~np.isfinite(dose)
    used = in_set & ~np_ & ~inf & ~nod
    rooms = np.unique(room) if rooms is None else np.asarray(rooms)
    k = rooms.size
    # every count one bincount and every room's doses one slice of the used doses sorted by
    # room, rather than a pass over all events per room (400 rooms, ten million events)
    pos = room_positions(room, rooms)

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(pos[mask], minlength=k + 1)[:k].astype(np.int64)

    out = RoomStats(
        rooms=rooms,
        in_set=count(in_set),
        not_patient=count(np_),
        infeasible=count(inf),
        no_dose=count(nod),
        used=count(used),
        median=np.full(k, np.nan),
        p25=np.full(k, np.nan),
        p75=np.full(k, np.nan),
        mean=np.full(k, np.nan),
        qualifies=np.zeros(k, dtype=bool),
    )
    for j, v in enumerate(per_room(dose, pos, used, k)):
        if v.size:
            out.p25[j], out.median[j], out.p75[j] = np.percentile(v, [25, 50, 75])
            out.mean[j] = float(v.mean())
        out.qualifies[j] = v.size >= min_events
    return out


def room_positions(room: np.ndarray, rooms: np.ndarray) -> np.ndarray:
    """Each event's room as its position in ``rooms``; ``rooms.size`` for a room not in it."""
    k = rooms.size
    pos = np.full(room.size, k, dtype=np.int64)
    if k:
        sorter = np.argsort(rooms, kind="stable")
        at = np.minimum(np.searchsorted(rooms, room, sorter=sorter), k - 1)
        found = rooms[sorter[at]] == room
        pos[found] = sorter[at[found]]
    return pos


def per_room(values: np.ndarray, pos: np.ndarray, mask: np.ndarray, k: int) -> list[np.ndarray]:
    """The ``values`` of the events in ``mask``, split by room (``pos``: the event's room
    number, k: none), in room order."""
    sel = mask & (pos < k)
    p, v = pos[sel], values[sel]
    order = np.argsort(p, kind="stable")
    bounds = np.searchsorted(p[order], np.arange(k + 1))
    v = v[order]
    return [v[bounds[j] : bounds[j + 1]] for j in range(k)]


def drl_values(rs: RoomStats) -> stats.DRL:
    return stats.drl_from_room_medians(rs.median[rs.qualifies])


def dose_column(cols: dict, s: DRLSettings) -> np.ndarray:
    return C.recalc_mgd(cols) if s.dose == "recalc" else C.reported_agd(cols)


# --- the report ------------------------------------------------------------------------------


@dataclass
class DRLData:
    """The events of the period and what the report shows of them."""

    cols: dict
    dose: np.ndarray
    in_set: np.ndarray
    infeasible: np.ndarray  # events with an infeasible: flag (tested once: ten million flag texts)
    rooms: RoomStats
    values: stats.DRL
    units: dict  # device id -> unit
    label: dict  # device id -> "model serial"

    def used(self) -> np.ndarray:
        """Events that enter the statistics (see :func:`room_statistics`)."""
        return self.in_set & ~self.cols["not_patient"] & ~self.infeasible & np.isfinite(self.dose)


#: The columns the DRL report does not use, left unread (see report_events): it needs the unit,
#: the dose (recalculated or reported), the view, thickness and acquisition of the standard set,
#: and the flags that mark infeasible values; not who the woman was.
DRL_SKIP = (
    "patient_pseudonym",
    *(
        c
        for c in (*NUMERIC, *TEXT)
        if c not in ("agd_mgy", "mgd_recalc_mgy", "compressed_thickness_mm", "view", "acquisition", "flags")
    ),
)


def build_drl(
    store,
    settings,
    since: str,
    until: str,
    out_dir: Path,
    drl_settings: DRLSettings,
    serials: list[str] | None = None,
    progress: Progress = None,
) -> Built:
    """The DRL report over the rooms with events in the period (or ``serials``)."""
    s = drl_settings
    built = Built()
    units = period_units(store, since, until)
    if serials:
        units = [u for u in units if u["serial"] in set(serials)]
    if not units:
        built.partial = True
        built.notes.append(f"no events between {since} and {until}")
        return built
    if progress:
        progress("DRL: reading events")
    cols = report_events(
        store, since, until, device_ids=[u["id"] for u in units], times=False, skip=DRL_SKIP, ordered=False
    )
    data = drl_data(cols, units, s)
    tables = drl_tables(data, s)
    if progress:
        progress("DRL: plots")
    figs = drl_plots(data, s)
    period = period_tag(since, until)
    out_dir = private_dir(out_dir / f"drl_{period}")
    built.files += write_tables(out_dir / f"drl_{period}", tables)
    rs, values = data.rooms, data.values
    keyfigs = [
        ("rooms in the statistics", f"{values.rooms} of {rs.rooms.size}"),
        ("local DRL (median)", f"{values.local_drl:.2f} mGy" if values.rooms else "–"),
        ("75th percentile", f"{values.national_style_drl:.2f} mGy" if values.rooms else "–"),
        ("exposures used", f"{int(rs.used.sum()):,}"),
    ]
    meta = [
        ("period", f"{since} to {until} (study dates)"),
        ("standard set", s.describe()),
        ("rooms", f"{rs.rooms.size} unit(s) with events in the period"),
    ]
    html = render_html(
        "drl.html",
        out_dir / f"drl_{period}.html",
        title="Diagnostic reference levels",
        kicker="local and national-style DRLs",
        meta=meta,
        keyfigs=keyfigs,
        tables=html_tables(tables, int(settings.report.max_listed)),
        figures=figs,
        national=s.national_mgy,
        national_source=s.national_source,
        standard=s.describe(),
        min_events=s.min_events,
    )
    built.html.insert(0, html)
    built.notes += drl_notes(rs, values, s)
    if values.rooms == 0:
        built.partial = True
    return built


def drl_data(cols: dict, units: list[dict], s: DRLSettings) -> DRLData:
    dose = dose_column(cols, s)
    in_set = standard_set(cols, s)
    infeasible = C.infeasible(cols)
    rs = room_statistics(
        cols["device_id"],
        dose,
        in_set,
        cols["not_patient"],
        infeasible,
        s.min_events,
        rooms=np.array([u["id"] for u in units]),
    )
    return DRLData(
        cols,
        dose,
        in_set,
        infeasible,
        rs,
        drl_values(rs),
        {u["id"]: u for u in units},
        {u["id"]: f"{u['model']} {u['serial']}" for u in units},
    )


def drl_notes(rs: RoomStats, values: stats.DRL, s: DRLSettings) -> list[str]:
    notes = []
    if values.rooms == 0:
        notes.append(f"no room has {s.min_events} or more exposures in the standard set ({s.describe()})")
    if (
        s.dose == "recalc"
        and rs.in_set.sum()
        and rs.no_dose.sum() == rs.in_set.sum() - rs.not_patient.sum() - rs.infeasible.sum()
    ):
        notes.append("no recalculated MGD in the standard set: run `srdose recalc` (or --dose reported)")
    return notes


def drl_tables(data: DRLData, s: DRLSettings) -> list[Table]:
    """The values, each room, and the exclusions per room."""
    rs, values = data.rooms, data.values
    room_rows = []
    for j, rid in enumerate(rs.rooms):
        u = data.units[int(rid)]
        versus = ""
        if s.national_mgy is not None and np.isfinite(rs.median[j]):
            versus = f"{rs.median[j] / s.national_mgy:.2f} × national DRL" + (
                " — above" if rs.median[j] > s.national_mgy else ""
            )
        room_rows.append(
            [
                u["manufacturer"],
                u["model"],
                u["serial"],
                u["station"] or "",
                int(rs.in_set[j]),
                int(rs.used[j]),
                rs.median[j],
                rs.p25[j],
                rs.p75[j],
                rs.mean[j],
                "yes" if rs.qualifies[j] else f"no (< {s.min_events})",
                versus,
            ]
        )
    unit = "mGy"
    value_rows = [
        ["rooms qualifying", values.rooms, "", f"of {rs.rooms.size} with events in the period"],
        ["local DRL (median of room medians)", values.local_drl, unit, "ICRP 135: the service's typical value"],
        [
            "national-style DRL (75th percentile of room medians)",
            values.national_style_drl,
            unit,
            "ICRP 135 national DRL definition applied to these rooms",
        ],
        ["25th percentile of room medians", values.p25, unit, ""],
        [
            "lowest / highest room median",
            f"{values.minimum:.2f} / {values.maximum:.2f}" if values.rooms else "",
            unit,
            "",
        ],
        [
            "national DRL (configured)",
            s.national_mgy,
            unit if s.national_mgy else "",
            s.national_source or "not configured: srdose ships no national value",
        ],
    ]
    excl_rows = [
        [
            data.label[int(r)],
            int(rs.in_set[j]),
            int(rs.not_patient[j]),
            int(rs.infeasible[j]),
            int(rs.no_dose[j]),
            int(rs.used[j]),
        ]
        for j, r in enumerate(rs.rooms)
    ]
    excl_rows.append(
        [
            "all rooms",
            int(rs.in_set.sum()),
            int(rs.not_patient.sum()),
            int(rs.infeasible.sum()),
            int(rs.no_dose.sum()),
            int(rs.used.sum()),
        ]
    )
    return [
        Table(
            "values",
            "",
            [*text_columns("quantity"), *number_columns("value"), *text_columns("unit", "note")],
            value_rows,
        ),
        Table(
            "rooms",
            "Each room",
            [
                *text_columns("manufacturer", "model", "serial", "station"),
                *number_columns(
                    "in set", "used", f"median ({unit})", f"p25 ({unit})", f"p75 ({unit})", f"mean ({unit})"
                ),
                *text_columns("qualifies"),
                *text_columns("against national DRL", wrap=True),
            ],
            room_rows,
        ),
        Table(
            "exclusions",
            "Exposures of the standard set excluded, per room",
            [
                *text_columns("room"),
                *number_columns("in set", "not a patient study", "infeasible value", "no dose", "used"),
            ],
            excl_rows,
        ),
    ]


def _reference_lines(values: stats.DRL, s: DRLSettings) -> list[tuple]:
    """(value, name, colour, line style) of the levels drawn over the rooms."""
    lines = [
        (values.local_drl, "local DRL (median)", P.PALETTE[2], "-"),
        (values.national_style_drl, "75th percentile", P.PALETTE[1], "--"),
    ]
    if s.national_mgy is not None:
        lines.append((s.national_mgy, "national DRL (configured)", "black", ":"))
    return lines


def drl_plots(data: DRLData, s: DRLSettings) -> dict:
    """The room medians as bars, and each room's dose distribution."""
    rs = data.rooms
    order = np.argsort(np.where(np.isfinite(rs.median), rs.median, -np.inf))
    lines = _reference_lines(data.values, s)
    fig, axes = P.figure(max(2.4, 0.32 * rs.rooms.size + 1.4))
    ax = axes[0]
    ypos = np.arange(order.size)
    meds = np.nan_to_num(rs.median[order], nan=0.0)
    colors = [P.PALETTE[0] if rs.qualifies[j] else "#b8c2cc" for j in order]
    ax.barh(ypos, meds, color=colors, height=0.6)
    ax.set_yticks(ypos, [P.mpl_text(f"{data.label[int(rs.rooms[j])]} (n={int(rs.used[j])})") for j in order])
    ax.set_xlabel(f"room median {'recalculated MGD' if s.dose == 'recalc' else 'reported AGD'} (mGy)")
    for x, name, color, style in lines:
        if x is not None and np.isfinite(x):
            ax.axvline(x, color=color, linestyle=style, linewidth=1.5, label=f"{name}: {x:.2f} mGy")
    ax.grid(axis="y", visible=False)
    if any(np.isfinite(x) for x, *_ in lines if x is not None):
        ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.4, -0.16), ncol=3, fontsize=7.5)
    figs = {
        "rooms": {
            "uri": P.to_data_uri(fig),
            "caption": f"Median dose per room, standard set: {s.describe()}. Grey: fewer than "
            f"{s.min_events} exposures (not in the statistics).",
        }
    }
    figs["boxes"] = _boxes_figure(data, order, lines)
    return figs


def _boxes_figure(data: DRLData, order: np.ndarray, lines: list[tuple]) -> dict:
    rs, cols = data.rooms, data.cols
    fig, axes = P.figure(3.4)
    doses = per_room(data.dose, room_positions(cols["device_id"], rs.rooms), data.used(), rs.rooms.size)
    P.boxplot_values(
        axes[0],
        [doses[j] for j in order],
        [data.label[int(rs.rooms[j])] for j in order],
        ylabel="dose (mGy)",
    )
    for x, name, color, style in lines:
        if x is not None and np.isfinite(x):
            axes[0].axhline(x, color=color, linestyle=style, linewidth=1.2, label=f"{name}: {x:.2f} mGy")
    if any(v.size for v in doses):
        axes[0].legend(frameon=False, fontsize=7)
        axes[0].tick_params(axis="x", labelrotation=20, labelsize=7)
    return {
        "uri": P.to_data_uri(fig),
        "caption": "Dose distribution of the standard set per room (boxes: quartiles and median; "
        "whiskers: 1.5 × IQR; outliers not drawn).",
    }
