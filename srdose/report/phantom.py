"""The phantom QC report (``srdose qc``): each unit's PMMA exposures as equivalent-breast MGD against
the European acceptable and achievable levels, over time. HTML with its tables as CSV and XLSX."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from srdose.dates import parse_da
from srdose.physics.factors import load_pmma_equivalence
from srdose.recalc.engine import METHODS, Params, PhysicsFits, prepare
from srdose.recalc.qc import compute_phantom
from srdose.recalc.run import resolve_factor_set
from srdose.reference import eu_levels
from srdose.report import plots as P
from srdose.report.common import Built, Progress, period_tag
from srdose.report.render import (
    Column,
    Table,
    html_tables,
    number_columns,
    render_html,
    text_columns,
    write_tables,
)
from srdose.store import recalc as db


@dataclass
class PhantomExposure:
    """One phantom exposure as the report lists it (fields in the order of :data:`COLUMNS`)."""

    unit: str
    study_date: str  # YYYYMMDD
    view: str
    acquisition: str
    pmma_mm: float
    displayed_mm: float
    breast_mm: float  # the equivalent breast
    glandularity_pct: float
    method: str  # of the kerma: measured | rdsr
    kvp: float
    target_filter: str
    hvl_mm: float
    kerma_mgy: float  # at the PMMA surface
    g: float
    c: float
    s: float
    t: float
    mgd_mgy: float
    acceptable_mgy: float
    achievable_mgy: float
    verdict: str
    flags: str

    def row(self) -> list:
        return [getattr(self, f.name) for f in fields(self)]


COLUMNS = [
    *text_columns("unit", "study date", "view", "acquisition"),
    *number_columns("PMMA (mm)", "displayed thickness (mm)", "equivalent breast (mm)", "glandularity (%)"),
    # method and target/filter: short codes, right-aligned with the numbers around them
    *number_columns("method", "kV", "target/filter", "HVL (mm Al)"),
    Column("K at PMMA surface (mGy)", numeric=True, digits=3),
    *number_columns("g", "c", "s", "T", digits=4),
    Column("MGD (mGy)", numeric=True, digits=3),
    *number_columns("acceptable (mGy)", "achievable (mGy)"),
    *text_columns("verdict"),
    *text_columns("flags", wrap=True),
]


def phantom_exposures(
    store,
    settings,
    since: str | None,
    until: str | None,
    serials: list[str] | None,
    convention: str,
    protocol_like: str | None,
    tolerance_mm: float = 3.0,
) -> list[PhantomExposure]:
    """Each phantom exposure of the period (of ``serials``, when given) with its equivalent-breast MGD."""
    params = Params.from_settings(settings.recalc)
    fs = resolve_factor_set(store, settings.recalc.default_factor_set)
    sets = db.physics_sets(store)
    fits = PhysicsFits.build(sets, params.fit_degree)
    inputs = db.recalc_inputs(
        store,
        since=since and since.replace("-", ""),
        until=until and until.replace("-", ""),
        phantom=True,
        protocol_like=protocol_like,
    )
    if serials:
        keep = np.array([s in set(serials) for s in inputs["serial"]], dtype=bool)
    else:
        keep = np.ones(len(inputs["event_id"]), dtype=bool)
    batch = prepare(inputs, fits, params)
    pmma = load_pmma_equivalence()
    levels = eu_levels()["rows"]
    res = compute_phantom(batch, fits, fs, params, pmma["rows"], levels, convention, tolerance_mm)
    flag_text = res.flags.strings()
    out = []
    for i in np.nonzero(keep)[0].tolist():
        target, filt, _ = batch.beams[batch.beam[i]]
        out.append(
            PhantomExposure(
                inputs["label_unit"][i],
                inputs["label_date"][i],
                inputs["label_view"][i],
                inputs["acquisition"][i],
                res.pmma_mm[i],
                batch.thickness_mm[i],
                res.breast_mm[i],
                100 * res.glandularity[i],
                METHODS[res.method[i]],
                batch.kvp[i],
                f"{target or '?'}/{filt or '?'}",
                res.hvl[i],
                res.k[i],
                res.g[i],
                res.c[i],
                res.s[i],
                res.t[i],
                res.mgd[i],
                res.acceptable[i],
                res.achievable[i],
                res.verdict[i] or "",
                flag_text[i] or "",
            )
        )
    return out


def build_phantom_qc(
    store,
    settings,
    since: str,
    until: str,
    out_dir: Path,
    serials: list[str] | None = None,
    convention: str = "breast",
    protocol_like: str | None = None,
    progress: Progress = None,
) -> Built:
    built = Built()
    if progress:
        progress("phantom QC: computing")
    exposures = phantom_exposures(store, settings, since, until, serials, convention, protocol_like)
    if not exposures:
        built.partial = True
        built.notes.append(
            f"no phantom exposures between {since} and {until} (studies marked not-a-patient at ingest, or --protocol)"
        )
        return built
    eu = eu_levels()
    pmma = load_pmma_equivalence()
    tables = [summary_table(exposures), Table("exposures", "Phantom exposures", COLUMNS, [e.row() for e in exposures])]
    if progress:
        progress("phantom QC: plots")
    figs = {"levels": levels_figure(exposures, eu), "trend": trend_figure(exposures)}
    period = period_tag(since, until)
    out = out_dir / f"qc_phantom_{period}"
    out.mkdir(parents=True, exist_ok=True)
    built.files += write_tables(out / f"qc_phantom_{period}", tables)
    n_ok = sum(1 for e in exposures if e.verdict)
    above = sum(1 for e in exposures if e.verdict == "above acceptable")
    keyfigs = [
        ("phantom exposures", f"{len(exposures):,}"),
        ("units", str(len(_units(exposures)))),
        ("with a verdict", f"{n_ok:,}"),
        ("above acceptable", str(above)),
    ]
    meta = [
        ("period", f"{since} to {until} (study dates)"),
        (
            "thickness convention",
            "displayed thickness = equivalent breast (spacers)"
            if convention == "breast"
            else "displayed thickness = PMMA",
        ),
        ("PMMA equivalence", f"{pmma.get('source', '')} — status: {pmma.get('status', '')}"),
        ("levels", f"{eu['source']} — status: {eu['status']}"),
    ]
    html = render_html(
        "phantom_qc.html",
        out / f"qc_phantom_{period}.html",
        title="Phantom QC: dose",
        kicker="equivalent-breast MGD from PMMA exposures",
        meta=meta,
        keyfigs=keyfigs,
        tables=html_tables(tables, int(settings.report.max_listed)),
        figures=figs,
        levels_status=eu["status"],
        pmma_status=pmma.get("status", ""),
    )
    built.html.insert(0, html)
    if above:
        built.notes.append(f"{above} phantom exposure(s) above the acceptable level")
    return built


def _units(exposures: list[PhantomExposure]) -> list[str]:
    return sorted({e.unit for e in exposures})


def _with_mgd(exposures: list[PhantomExposure], unit: str) -> list[PhantomExposure]:
    return [e for e in exposures if e.unit == unit and np.isfinite(e.mgd_mgy)]


def summary_table(exposures: list[PhantomExposure]) -> Table:
    """Per unit and PMMA thickness: the median MGD and the latest exposure's."""
    rows = []
    for u in _units(exposures):
        mine = _with_mgd(exposures, u)
        for p in sorted({e.pmma_mm for e in mine}):
            at = [e for e in mine if e.pmma_mm == p]
            latest = max(at, key=lambda e: e.study_date or "")
            rows.append(
                [
                    u,
                    p,
                    len(at),
                    float(np.median([e.mgd_mgy for e in at])),
                    latest.study_date,
                    latest.mgd_mgy,
                    latest.acceptable_mgy,
                    latest.achievable_mgy,
                    latest.verdict,
                ]
            )
    return Table(
        "summary",
        "Per unit and PMMA thickness",
        [
            *text_columns("unit"),
            *number_columns("PMMA (mm)", "exposures"),
            Column("median MGD (mGy)", numeric=True, digits=3),
            *text_columns("latest"),
            Column("latest MGD (mGy)", numeric=True, digits=3),
            *number_columns("acceptable (mGy)", "achievable (mGy)"),
            *text_columns("latest verdict"),
        ],
        rows,
    )


def levels_figure(exposures: list[PhantomExposure], eu: dict) -> dict:
    """Each unit's MGD per PMMA thickness against the acceptable and achievable levels."""
    fig, axes = P.figure(3.4)
    ax = axes[0]
    lv = eu["rows"]
    ax.plot([r["pmma_cm"] * 10 for r in lv], [r["acceptable_mgy"] for r in lv], "k--", lw=1.2, label="acceptable")
    ax.plot([r["pmma_cm"] * 10 for r in lv], [r["achievable_mgy"] for r in lv], "k:", lw=1.2, label="achievable")
    for k, u in enumerate(_units(exposures)):
        pts = [(e.pmma_mm, e.mgd_mgy) for e in _with_mgd(exposures, u)]
        if pts:
            ax.plot(*zip(*pts), "o", ms=4, color=P.PALETTE[k % len(P.PALETTE)], label=P.mpl_text(str(u)))
    ax.set_xlabel("PMMA thickness (mm)")
    ax.set_ylabel("MGD of the equivalent breast (mGy)")
    ax.legend(frameon=False, fontsize=7)
    return {
        "uri": P.to_data_uri(fig),
        "caption": f"Equivalent-breast MGD per PMMA thickness against {eu['label']} ({eu['status_short']}).",
    }


def trend_figure(exposures: list[PhantomExposure]) -> dict:
    """Each unit's MGD over time, a line per PMMA thickness."""
    fig, axes = P.figure(3.0)
    ax = axes[0]
    for k, u in enumerate(_units(exposures)):
        mine = _with_mgd(exposures, u)
        for p in sorted({e.pmma_mm for e in mine}):
            pts = sorted(
                (dt.datetime.combine(day, dt.time()), e.mgd_mgy)
                for e in mine
                if e.pmma_mm == p and (day := parse_da(e.study_date)) is not None
            )
            if pts:
                ax.plot(
                    *zip(*pts),
                    "o-",
                    ms=3,
                    lw=0.8,
                    color=P.PALETTE[k % len(P.PALETTE)],
                    label=P.mpl_text(f"{u} {p:g} mm"),
                )
    ax.set_ylabel("MGD (mGy)")
    ax.legend(frameon=False, fontsize=6.5, ncol=2)
    return {"uri": P.to_data_uri(fig), "caption": "Each unit over time, per PMMA thickness."}
