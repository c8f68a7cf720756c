"""The phantom QC report (``srdose qc``): each unit's PMMA exposures as equivalent-breast MGD against
the European acceptable and achievable levels, over time. HTML with its tables as CSV and XLSX."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np

from srdose.physics.factors import load_pmma_equivalence
from srdose.recalc.engine import Params, PhysicsFits, prepare
from srdose.recalc.qc import compute_phantom
from srdose.recalc.run import resolve_factor_set
from srdose.report.build import Built, _period, _tables_ctx
from srdose.report.reference import eu_levels
from srdose.report.render import Table, render_html, write_tables
from srdose.store import recalc as db

COLUMNS = ["unit", "study date", "view", "acquisition", "PMMA (mm)", "displayed thickness (mm)",
           "equivalent breast (mm)", "glandularity (%)", "method", "kV", "target/filter", "HVL (mm Al)",
           "K at PMMA surface (mGy)", "g", "c", "s", "T", "MGD (mGy)", "acceptable (mGy)", "achievable (mGy)",
           "verdict", "flags"]


def phantom_rows(store, settings, since: Optional[str], until: Optional[str], serials: Optional[list[str]],
                 convention: str, protocol_like: Optional[str], tolerance_mm: float = 3.0) -> list[list]:
    """One row per phantom exposure (see :data:`COLUMNS`)."""
    params = Params.from_settings(settings["recalc"])
    fs = resolve_factor_set(store, settings["recalc"]["default_factor_set"])
    sets = db.physics_sets(store)
    fits = PhysicsFits.build(sets, params.fit_degree)
    inputs = db.recalc_inputs(store, since=since and since.replace("-", ""), until=until and until.replace("-", ""),
                              phantom=True, protocol_like=protocol_like)
    if serials:
        keep = np.array([s in set(serials) for s in inputs["serial"]], dtype=bool)
    else:
        keep = np.ones(len(inputs["event_id"]), dtype=bool)
    batch = prepare(inputs, fits, params)
    pmma = load_pmma_equivalence()
    levels = eu_levels()["rows"]
    res = compute_phantom(batch, fits, fs, params, pmma["rows"], levels, convention, tolerance_mm)
    flag_text = res.flags.strings()
    rows = []
    for i in np.nonzero(keep)[0].tolist():
        target, filt, _ = batch.beams[batch.beam[i]]
        rows.append([inputs["label_unit"][i], inputs["label_date"][i], inputs["label_view"][i],
                     inputs["acquisition"][i], res.pmma_mm[i], batch.thickness_mm[i], res.breast_mm[i],
                     100 * res.glandularity[i], ("measured", "rdsr")[res.method[i]], batch.kvp[i],
                     f"{target or '?'}/{filt or '?'}", res.hvl[i], res.k[i], res.g[i], res.c[i], res.s[i],
                     res.t[i], res.mgd[i], res.acceptable[i], res.achievable[i], res.verdict[i] or "",
                     flag_text[i] or ""])
    return rows


def build_phantom_qc(store, settings, since: str, until: str, out_dir: Path, serials: Optional[list[str]] = None,
                     convention: str = "breast", protocol_like: Optional[str] = None,
                     progress: Optional[Callable[[str], None]] = None) -> Built:
    from srdose.report import plots as P

    built = Built()
    if progress:
        progress("phantom QC: computing")
    rows = phantom_rows(store, settings, since, until, serials, convention, protocol_like)
    if not rows:
        built.partial = True
        built.notes.append(f"no phantom exposures between {since} and {until} (studies marked not-a-patient at "
                           "ingest, or --protocol)")
        return built
    eu = eu_levels()
    pmma = load_pmma_equivalence()
    table = Table("exposures", "Phantom exposures", COLUMNS, rows, numeric=tuple(range(4, 20)),
                  digits={17: 3, 12: 3, 13: 4, 14: 4, 15: 4, 16: 4}, wrap=(21,))
    units = sorted({r[0] for r in rows})
    summary = []
    for u in units:
        mine = [r for r in rows if r[0] == u and np.isfinite(r[17])]
        for p in sorted({r[4] for r in mine}):
            at = [r for r in mine if r[4] == p]
            latest = max(at, key=lambda r: r[1] or "")
            summary.append([u, p, len(at), float(np.median([r[17] for r in at])), latest[1], latest[17],
                            latest[18], latest[19], latest[20]])
    stable = Table("summary", "Per unit and PMMA thickness", ["unit", "PMMA (mm)", "exposures",
                                                              "median MGD (mGy)", "latest", "latest MGD (mGy)",
                                                              "acceptable (mGy)", "achievable (mGy)",
                                                              "latest verdict"],
                   summary, numeric=(1, 2, 3, 5, 6, 7), digits={3: 3, 5: 3})
    tables = {"summary": stable, "exposures": table}
    if progress:
        progress("phantom QC: plots")
    figs = {}
    fig, axes = P.figure(3.4)
    ax = axes[0]
    lv = eu["rows"]
    ax.plot([r["pmma_cm"] * 10 for r in lv], [r["acceptable_mgy"] for r in lv], "k--", lw=1.2,
            label="acceptable")
    ax.plot([r["pmma_cm"] * 10 for r in lv], [r["achievable_mgy"] for r in lv], "k:", lw=1.2, label="achievable")
    for k, u in enumerate(units):
        pts = [(r[4], r[17]) for r in rows if r[0] == u and np.isfinite(r[17])]
        if pts:
            ax.plot(*zip(*pts), "o", ms=4, color=P.PALETTE[k % len(P.PALETTE)], label=P.mpl_text(str(u)))
    ax.set_xlabel("PMMA thickness (mm)")
    ax.set_ylabel("MGD of the equivalent breast (mGy)")
    ax.legend(frameon=False, fontsize=7)
    figs["levels"] = {"uri": P.to_data_uri(fig),
                      "caption": f"Equivalent-breast MGD per PMMA thickness against {eu['label']} "
                                 f"({eu['status_short']})."}
    fig, axes = P.figure(3.0)
    ax = axes[0]
    import datetime as dt

    for k, u in enumerate(units):
        for p in sorted({r[4] for r in rows if r[0] == u and np.isfinite(r[17])}):
            pts = sorted((dt.datetime.strptime(r[1], "%Y%m%d"), r[17]) for r in rows
                         if r[0] == u and r[4] == p and np.isfinite(r[17]) and r[1])
            if pts:
                ax.plot(*zip(*pts), "o-", ms=3, lw=0.8, color=P.PALETTE[k % len(P.PALETTE)],
                        label=P.mpl_text(f"{u} {p:g} mm"))
    ax.set_ylabel("MGD (mGy)")
    ax.legend(frameon=False, fontsize=6.5, ncol=2)
    figs["trend"] = {"uri": P.to_data_uri(fig), "caption": "Each unit over time, per PMMA thickness."}
    period = _period(since, until)
    out = out_dir / f"qc_phantom_{period}"
    out.mkdir(parents=True, exist_ok=True)
    built.files += write_tables(out / f"qc_phantom_{period}", list(tables.values()))
    n_ok = sum(1 for r in rows if r[20])
    above = sum(1 for r in rows if r[20] == "above acceptable")
    keyfigs = [("phantom exposures", f"{len(rows):,}"), ("units", str(len(units))),
               ("with a verdict", f"{n_ok:,}"), ("above acceptable", str(above))]
    meta = [("period", f"{since} to {until} (study dates)"),
            ("thickness convention", "displayed thickness = equivalent breast (spacers)" if convention == "breast"
             else "displayed thickness = PMMA"),
            ("PMMA equivalence", f"{pmma.get('source', '')} — status: {pmma.get('status', '')}"),
            ("levels", f"{eu['source']} — status: {eu['status']}")]
    html = render_html("phantom_qc.html", out / f"qc_phantom_{period}.html", title="Phantom QC: dose",
                       kicker="equivalent-breast MGD from PMMA exposures", meta=meta, keyfigs=keyfigs,
                       tables=_tables_ctx(tables, int(settings["report"]["max_listed"])), figures=figs,
                       levels_status=eu["status"], pmma_status=pmma.get("status", ""))
    built.html.insert(0, html)
    if above:
        built.notes.append(f"{above} phantom exposure(s) above the acceptable level")
    return built
