"""Physics QA review of one unit (``srdose report qa``).

Recalculated against reported MGD (ratio, Bland–Altman, by kV and by
target/filter, the flagged events and why), the AEC behaviour (kV,
target/filter, mAs against thickness), compression force and thickness per
view, exam timing from event start times, data-quality flags.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from srdose.curation import conformance as K
from srdose.files import private_dir
from srdose.report import common as C
from srdose.report import plots as P
from srdose.report import stats
from srdose.report.common import Built, Progress, period_tag, time_of_day
from srdose.report.render import (
    Table,
    html_tables,
    number_columns,
    render_html,
    safe_name,
    text_columns,
    write_tables,
)
from srdose.store.reports import period_units, report_events


def target_filter(cols: dict) -> np.ndarray:
    return _target_filter_fast(cols["anode"], cols["filter_material"])


def _target_filter_fast(a, f) -> np.ndarray:
    cache: dict = {}
    out = np.empty(a.size, dtype=object)
    for i, key in enumerate(zip(a, f)):
        v = cache.get(key)
        if v is None:
            v = cache[key] = f"{key[0] or '?'}/{key[1] or '?'}"
        out[i] = v
    return out


def ratio(cols: dict) -> np.ndarray:
    """Recalculated MGD / reported AGD (NaN where either is missing or not positive)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return C.recalc_mgd(cols) / C.reported_agd(cols)


def flagged_events(cols: dict, band: float) -> tuple[np.ndarray, np.ndarray]:
    """(indices, reasons) of the events a physicist should look at: ratio outside 1 ± band,
    no recalculated MGD, or a data-quality flag from the parse (missing or zero values, ...).

    The recalculation's own flags (interpolation clamped, suspect table cell, fallback
    method, ...) are counted in :func:`flag_counts` and given here as part of the reason, but
    do not on their own put an event on the list: on a busy unit they mark most events.
    """
    r = ratio(cols)
    rec = C.recalc_mgd(cols)
    lo, hi = 1.0 - band, 1.0 + band
    with np.errstate(invalid="ignore"):
        outside = np.isfinite(r) & ((r < lo) | (r > hi))
    no_mgd = ~np.isfinite(rec)
    has_flags = cols["flags"] != None  # noqa: E711
    idx = np.flatnonzero(outside | no_mgd | has_flags)
    # ratio outside the band first, then by row order
    idx = idx[np.argsort(~outside[idx], kind="stable")]
    cache: dict = {}
    why = np.empty(idx.size, dtype=object)
    for j, i in enumerate(idx):
        key = (cols["flags"][i], cols["recalc_flags"][i], bool(no_mgd[i]), cols["method"][i] is None)
        tail = cache.get(key)
        if tail is None:
            parts = []
            if key[2]:
                parts.append("not recalculated" if key[3] else "no recalculated MGD")
            parts += [f.replace(";", "; ") for f in key[:2] if f]
            tail = cache[key] = "; ".join(parts)
        head = f"ratio {r[i]:.2f} outside {lo:.2f}–{hi:.2f}" if outside[i] else ""
        why[j] = "; ".join(p for p in (head, tail) if p)
    return idx, why


def flag_counts(cols: dict) -> list[tuple[str, str, int]]:
    """(source, flag, events) for every event flag and recalculation flag, most frequent first."""
    rows = []
    for source, name in (("event (parse)", "flags"), ("recalculation", "recalc_flags")):
        values, counts = (
            np.unique(
                np.where(cols[name] == None, "", cols[name]).astype(str),  # noqa: E711
                return_counts=True,
            )
            if cols["n"]
            else (np.array([], dtype=str), np.array([], dtype=np.int64))
        )
        c: Counter = Counter()
        for v, k in zip(values, counts):
            for f in v.split(";"):
                if f:
                    c[f] += int(k)
        rows += [(source, f, k) for f, k in c.most_common()]
    return rows


def by_group(values, groups, order=None) -> list[list]:
    """[group, n, mean, median, p25, p75] per group."""
    groups = np.asarray(groups).astype(str)
    names = order if order is not None else sorted(set(groups.tolist()))
    out = []
    for g in names:
        d = stats.describe(np.asarray(values, float)[groups == str(g)])
        if d["n"]:
            out.append([g, d["n"], d["mean"], d["median"], d["p25"], d["p75"]])
    return out


def kv_group(kvp) -> np.ndarray:
    """kV rounded to whole kV, as text ('?' missing)."""
    kvp = np.asarray(kvp, float)
    out = np.full(kvp.size, "?", dtype=object)
    ok = np.isfinite(kvp)
    out[ok] = np.round(kvp[ok]).astype(int).astype(str)
    return out


def thickness_bands(t, width: float = 10.0) -> np.ndarray:
    t = np.asarray(t, float)
    out = np.full(t.size, "?", dtype=object)
    ok = np.isfinite(t)
    lo = (np.floor(t[ok] / width) * width).astype(int)
    if ok.any():
        out[ok] = np.char.add(
            np.char.add(np.char.zfill(lo.astype(str), 3), "–"), np.char.zfill((lo + int(width)).astype(str), 3)
        )
    return out


def aec_table(cols: dict) -> list[list]:
    """Per 10 mm thickness band: exposures, mean kV, mean mAs, the target/filter shares."""
    t = cols["compressed_thickness_mm"]
    bands = thickness_bands(t)
    tf = target_filter(cols)
    rows = []
    for b in sorted(set(bands.tolist()) - {"?"}) + (["?"] if (bands == "?").any() else []):
        s = bands == b
        k, c = np.unique(tf[s].astype(str), return_counts=True)
        shares = ", ".join(f"{k[j]} {100.0 * c[j] / s.sum():.0f}%" for j in np.argsort(-c))
        rows.append(
            [
                b.replace("?", "no thickness"),
                int(s.sum()),
                stats.describe(cols["kvp"][s])["mean"],
                stats.describe(cols["mas"][s])["mean"],
                shares,
            ]
        )
    return rows


def timing(cols: dict) -> tuple[np.ndarray, np.ndarray]:
    """(exam durations, gaps between consecutive exposures) in seconds."""
    return stats.exam_timing(cols["study_id"], cols["t_start"])


# --- the report ------------------------------------------------------------------------------

#: Columns of a table of ratio statistics per group (see :func:`by_group`).
RATIO_STATS = number_columns("n", "mean", "median", "p25", "p75")
#: The groups of the compression table and plot, in their order.
VIEW_GROUPS = ("CC", "MLO", "other")


@dataclass
class QAData:
    """One unit's events and the columns derived from them that the tables and figures share."""

    cols: dict
    band: float  # the ratio band is 1 ± band
    mod: np.ndarray
    ratio: np.ndarray
    rec: np.ndarray
    rep: np.ndarray
    tf: np.ndarray
    thickness: np.ndarray
    durations: np.ndarray  # exam durations, s
    gaps: np.ndarray  # between consecutive exposures, s

    @classmethod
    def of(cls, cols: dict, band: float) -> QAData:
        durations, gaps = timing(cols)
        return cls(
            cols,
            band,
            C.modality(cols),
            ratio(cols),
            C.recalc_mgd(cols),
            C.reported_agd(cols),
            target_filter(cols),
            cols["compressed_thickness_mm"],
            durations,
            gaps,
        )

    @property
    def lo(self) -> float:
        return 1 - self.band

    @property
    def hi(self) -> float:
        return 1 + self.band


def build_qa(store, settings, since: str, until: str, out_dir: Path, serial: str, progress: Progress = None) -> Built:
    """The physics QA review of unit ``serial`` over the period."""
    built = Built()
    units = period_units(store, since, until, serial)
    if not units:
        built.partial = True
        built.notes.append(f"unit {serial}: no events between {since} and {until}")
        return built
    if progress:
        progress(f"QA: reading events of {serial}")
    cols = report_events(store, since, until, device_ids=[u["id"] for u in units])
    data = QAData.of(cols, float(settings.recalc.ratio_band))
    tables = qa_tables(data)
    conformance = K.merged(K.from_database(store, serial, since, until).values())
    tables.append(conformance_table(conformance))
    if progress:
        progress(f"QA: plots of {serial}")
    figs = qa_plots(data)
    period = period_tag(since, until)
    name = safe_name(serial)
    out_dir = private_dir(out_dir / f"qa_{name}_{period}")
    built.files += write_tables(out_dir / f"qa_{name}_{period}", tables)
    u = units[0]
    d_all = stats.describe(data.ratio)
    n_flagged = len(next(t for t in tables if t.name == "flagged").rows)
    keyfigs = [
        ("exposures", f"{cols['n']:,}"),
        ("studies", f"{np.unique(cols['study_id']).size:,}"),
        ("recalculated", f"{int(np.isfinite(data.rec).sum()):,}"),
        ("median ratio recalculated / reported", f"{d_all['median']:.3f}" if d_all["n"] else "–"),
        ("flagged events", f"{n_flagged:,}"),
        ("conformance", conformance.verdict),
    ]
    meta = [
        ("unit", C.unit_label(u)),
        ("period", f"{since} to {until} (study dates)"),
        ("ratio band", f"{data.lo:.2f}–{data.hi:.2f} ([recalc] ratio_band = {data.band:g})"),
    ]
    html = render_html(
        "qa.html",
        out_dir / f"qa_{name}_{period}.html",
        title=f"Physics QA review — {u['manufacturer']} {u['model']} ({u['serial']})",
        kicker="physics QA review",
        meta=meta,
        keyfigs=keyfigs,
        band=data.band,
        tables=html_tables(tables, int(settings.report.max_listed)),
        figures=figs,
        conformance=conformance.verdict,
        operator_note="Per-operator distributions: the dose reports as stored by srdose carry no "
        "operator, so none can be shown.",
    )
    built.html.insert(0, html)
    if not np.isfinite(data.rec).any():
        built.notes.append(f"unit {serial}: no recalculated MGD in the period: run `srdose recalc`")
    return built


# --- tables


def conformance_table(c: K.UnitConformance) -> Table:
    """The unit's deviations from the templates in the period (``srdose conformance``, from the
    database: events)."""
    rows = [
        [f.rule, f.what, "unusable" if f.fails else "usable", f.count, C.iso(f.first or ""), C.iso(f.last or "")]
        for f in sorted(c.findings.values(), key=lambda f: (not f.fails, f.rule))
    ]
    return Table(
        "conformance",
        f"Conformance of the unit's dose reports: {c.verdict}",
        [
            *text_columns("rule"),
            *text_columns("what", wrap=True),
            *text_columns("for the survey"),
            *number_columns("events"),
            *text_columns("first seen", "last seen"),
        ],
        rows,
        note="srdose's verdict: fail when events lack a value the survey needs because of how they "
        "were encoded; pass with quirks when every event is usable but deviations were found. "
        "`srdose conformance --sample` also reads the unit's objects through highdicom.",
    )


def qa_tables(d: QAData) -> list[Table]:
    cols, r, tf, mod = d.cols, d.ratio, d.tf, d.mod
    fin = np.isfinite(r)
    kvs = kv_group(cols["kvp"])
    kv_order = sorted(set(kvs[fin].tolist()), key=lambda k: (k == "?", int(k) if k != "?" else 0))
    return [
        Table(
            "agreement",
            "Agreement",
            [
                *text_columns("modality"),
                *number_columns(
                    "events",
                    "recalculated",
                    "with ratio",
                    "median ratio",
                    "mean ratio",
                    "bias (mGy)",
                    "LoA lower (mGy)",
                    "LoA upper (mGy)",
                    "within band",
                    "median U (k = 2, %)",
                ),
            ],
            agreement_rows(d),
            note="Bias and 95 % limits of agreement (LoA): recalculated − reported. U: the "
            "expanded uncertainty of each recalculated MGD (its budget: reports/mgd-validation.md).",
        ),
        Table(
            "ratio_kv", "Ratio by kV", [*text_columns("kV"), *RATIO_STATS], by_group(r[fin], kvs[fin], order=kv_order)
        ),
        Table(
            "ratio_tf",
            "Ratio by target/filter and modality",
            [*text_columns("target/filter · modality"), *RATIO_STATS],
            by_group(r[fin], (tf + " · " + mod)[fin]),
        ),
        Table(
            "aec",
            "AEC: technique by compressed thickness (10 mm bands)",
            [
                *text_columns("thickness (mm)"),
                *number_columns("exposures", "mean kV", "mean mAs"),
                *text_columns("target/filter"),
            ],
            aec_table(cols),
        ),
        Table(
            "compression",
            "Compression force and thickness per view",
            [
                *text_columns("modality", "view"),
                *number_columns(
                    "exposures",
                    "with force",
                    "force mean (N)",
                    "force median (N)",
                    "thickness mean (mm)",
                    "thickness median (mm)",
                    "thickness min (mm)",
                    "thickness max (mm)",
                ),
            ],
            compression_rows(d),
        ),
        Table(
            "timing",
            "",
            [*text_columns("quantity"), *number_columns("n", "median", "p25", "p75", "max")],
            timing_rows(d),
            note="From the event start times of each study (exams with two or more timed exposures).",
        ),
        Table(
            "flags",
            "Flags and their counts",
            [*text_columns("source"), *text_columns("flag", wrap=True), *number_columns("events")],
            [list(x) for x in flag_counts(cols)],
        ),
        Table(
            "flagged",
            "",
            [
                *text_columns("study date", "time", "acquisition", "view"),
                *number_columns("kV", digits=1),
                *text_columns("target/filter"),
                *number_columns("thickness (mm)", digits=1),
                *number_columns("reported (mGy)", "recalculated (mGy)", "U, k = 2 (mGy)", "ratio"),
                *text_columns("method"),
                *text_columns("why", wrap=True),
            ],
            flagged_rows(d),
        ),
    ]


def agreement_rows(d: QAData) -> list[list]:
    """Per modality and for all events: counts, the ratio, Bland–Altman, the share within the band."""
    cols, r, rec, rep = d.cols, d.ratio, d.rec, d.rep
    rows = []
    for m in ("2D", "DBT", "all"):
        sel = (d.mod == m) if m != "all" else np.ones(cols["n"], bool)
        desc = stats.describe(r[sel])
        ba = stats.bland_altman(rec[sel], rep[sel])
        with np.errstate(invalid="ignore"):
            within = np.isfinite(r[sel]) & (r[sel] >= d.lo) & (r[sel] <= d.hi)
        with np.errstate(invalid="ignore", divide="ignore"):
            u_rel = 100.0 * cols["mgd_u_mgy"][sel] / rec[sel]
        rows.append(
            [
                m,
                int(sel.sum()),
                int(np.isfinite(rec[sel]).sum()),
                desc["n"],
                desc["median"],
                desc["mean"],
                ba["bias"],
                ba["lower"],
                ba["upper"],
                f"{100.0 * within.sum() / desc['n']:.1f}%" if desc["n"] else "",
                float(np.nanmedian(u_rel)) if np.isfinite(u_rel).any() else float("nan"),
            ]
        )
    return rows


def flagged_rows(d: QAData) -> list[list]:
    cols = d.cols
    idx, why = flagged_events(cols, d.band)
    return [
        [
            C.iso(cols["study_date"][i]),
            time_of_day(cols["t_start"][i]),
            cols["acquisition"][i] or "",
            f"{cols['laterality'][i] or ''}{cols['view'][i] or ''}",
            cols["kvp"][i],
            d.tf[i],
            d.thickness[i],
            d.rep[i],
            d.rec[i],
            cols["mgd_u_mgy"][i],
            d.ratio[i],
            cols["method"][i] or "",
            w,
        ]
        for i, w in zip(idx, why)
    ]


def compression_rows(d: QAData) -> list[list]:
    cols, t = d.cols, d.thickness
    rows = []
    for m in ("2D", "DBT"):
        for v in VIEW_GROUPS:
            sel = (d.mod == m) & (C.view_group(cols["view"]) == v)
            if not sel.any():
                continue
            f = stats.describe(cols["compression_force_n"][sel])
            th = stats.describe(t[sel])
            rows.append(
                [m, v, int(sel.sum()), f["n"], f["mean"], f["median"], th["mean"], th["median"], th["min"], th["max"]]
            )
    return rows


def timing_rows(d: QAData) -> list[list]:
    dd, gg = stats.describe(d.durations / 60.0), stats.describe(d.gaps)
    return [
        ["exam duration, first to last exposure (min)", dd["n"], dd["median"], dd["p25"], dd["p75"], dd["max"]],
        ["time between consecutive exposures (s)", gg["n"], gg["median"], gg["p25"], gg["p75"], gg["max"]],
    ]


# --- figures


def qa_plots(d: QAData) -> dict:
    return {
        "agreement": agreement_figure(d),
        "ratio": ratio_figure(d),
        "aec": aec_figure(d),
        "tf": target_filter_figure(d),
        "compression": compression_figure(d),
        "timing": timing_figure(d),
    }


def agreement_figure(d: QAData) -> dict:
    """Recalculated against reported, and Bland–Altman."""
    rec, rep, mod = d.rec, d.rep, d.mod
    fig, axes = P.figure(3.4, 2)
    ax = axes[0]
    ok = np.isfinite(rec) & np.isfinite(rep)
    if ok.any():
        P.scatter_groups(ax, rep[ok], rec[ok], mod[ok], labels=["2D", "DBT"])
        top = float(np.nanmax(np.concatenate([rep[ok], rec[ok]]))) * 1.05
        xs = np.array([0, top])
        ax.plot(xs, xs, color="black", linewidth=1, label="identity")
        ax.plot(xs, xs * d.lo, color="grey", linestyle="--", linewidth=0.8, label=f"ratio {d.lo:.2f} / {d.hi:.2f}")
        ax.plot(xs, xs * d.hi, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.legend(frameon=False, fontsize=7)
    else:
        P.no_data(ax, "no event with both doses")
    ax.set_xlabel("AGD reported (mGy)")
    ax.set_ylabel("MGD recalculated (mGy)")
    ax.set_title("Recalculated against reported")
    ax = axes[1]
    if ok.any():
        P.scatter_groups(ax, (rec[ok] + rep[ok]) / 2, rec[ok] - rep[ok], mod[ok], labels=["2D", "DBT"])
        ba = stats.bland_altman(rec[ok], rep[ok])
        ax.axhline(ba["bias"], color="black", linewidth=1.2, label=f"bias {ba['bias']:+.3f} mGy")
        if np.isfinite(ba["sd"]):
            ax.axhline(
                ba["lower"],
                color="grey",
                linestyle="--",
                linewidth=1,
                label=f"95% LoA {ba['lower']:+.3f} / {ba['upper']:+.3f}",
            )
            ax.axhline(ba["upper"], color="grey", linestyle="--", linewidth=1)
        ax.legend(frameon=False, fontsize=7)
    else:
        P.no_data(ax, "no event with both doses")
    ax.set_xlabel("mean of the two (mGy)")
    ax.set_ylabel("recalculated − reported (mGy)")
    ax.set_title("Bland–Altman")
    return {
        "uri": P.to_data_uri(fig),
        "caption": (
            f"Left: each event, with the ratio band 1 ± {d.band:g}. Right: differences against means, bias and 95 % "
            f"limits of agreement. Up to {P.MAX_POINTS:,} points drawn."
        ),
    }


def ratio_figure(d: QAData) -> dict:
    r = d.ratio
    fig, axes = P.figure(3.2, 2)
    fin = np.isfinite(r)
    kvs = kv_group(d.cols["kvp"])
    kv_order = sorted(set(kvs[fin].tolist()) - {"?"}, key=int)
    P.boxplot_groups(axes[0], r[fin], kvs[fin], order=kv_order, ylabel="recalculated / reported", xlabel="kV")
    P.boxplot_groups(
        axes[1], r[fin], (d.tf + "\n" + d.mod)[fin], ylabel="recalculated / reported", xlabel="target/filter, modality"
    )
    for ax in axes:
        if fin.any():
            ax.axhline(1.0, color="black", linewidth=0.8)
            ax.axhspan(d.lo, d.hi, color=P.PALETTE[2], alpha=0.08)
        ax.tick_params(axis="x", labelsize=6.5)
    return {
        "uri": P.to_data_uri(fig),
        "caption": (
            f"Ratio of recalculated to reported dose by kV (rounded) and by target/filter; shaded: 1 ± {d.band:g}."
        ),
    }


def aec_figure(d: QAData) -> dict:
    cols, t = d.cols, d.thickness
    fig, axes = P.figure(3.4, 2)
    for ax, (name, y, ylabel) in zip(
        axes, (("kV", cols["kvp"], "tube voltage (kV)"), ("mAs", cols["mas"], "tube current–time product (mAs)"))
    ):
        ok = np.isfinite(t) & np.isfinite(y)
        if ok.any():
            P.scatter_groups(ax, t[ok], y[ok], (d.tf + " " + d.mod)[ok], size=3)
            ax.legend(frameon=False, fontsize=6.5)
        else:
            P.no_data(ax)
        ax.set_xlabel("compressed breast thickness (mm)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{name} against thickness")
    return {
        "uri": P.to_data_uri(fig),
        "caption": (
            "The AEC's choices against compressed thickness, by target/filter and modality (DBT mAs is the whole sweep "
            f"as reported). Up to {P.MAX_POINTS:,} points drawn."
        ),
    }


def target_filter_figure(d: QAData) -> dict:
    t = d.thickness
    fig, axes = P.figure(2.8)
    ok = np.isfinite(t)
    P.histogram_groups(
        axes[0],
        t[ok],
        (d.tf + " " + d.mod)[ok],
        bins=np.arange(0, 131, 5),
        xlabel="compressed breast thickness (mm)",
        stacked=True,
    )
    return {
        "uri": P.to_data_uri(fig),
        "caption": "Target/filter selected against compressed thickness (stacked counts, 5 mm bins).",
    }


def compression_figure(d: QAData) -> dict:
    cols = d.cols
    fig, axes = P.figure(3.2, 2)
    groups = d.mod + " " + C.view_group(cols["view"])
    order = [g for g in (f"{m} {v}" for m in ("2D", "DBT") for v in VIEW_GROUPS) if (groups == g).any()]
    if np.isfinite(cols["compression_force_n"]).any():
        P.boxplot_groups(axes[0], cols["compression_force_n"], groups, order=order, ylabel="compression force (N)")
    else:
        P.no_data(axes[0], "no compression force in these dose reports")
    P.boxplot_groups(axes[1], d.thickness, groups, order=order, ylabel="compressed thickness (mm)")
    for ax in axes:
        ax.tick_params(axis="x", labelsize=7)
    return {
        "uri": P.to_data_uri(fig),
        "caption": "Compression force and compressed thickness per view and "
        "modality (boxes: quartiles; whiskers: 1.5 × IQR).",
    }


def timing_figure(d: QAData) -> dict:
    durations, gaps = d.durations, d.gaps
    fig, axes = P.figure(3.0, 2)
    if durations.size:
        top = max(15.0, min(60.0, np.percentile(durations / 60, 99) + 1))
        axes[0].hist(durations / 60.0, bins=np.arange(0, top, 0.5), color=P.PALETTE[0])
    else:
        P.no_data(axes[0])
    axes[0].set_xlabel("exam duration, first to last exposure (min)")
    axes[0].set_ylabel("exams")
    if gaps.size:
        axes[1].hist(np.clip(gaps, 0, 300), bins=np.arange(0, 301, 10), color=P.PALETTE[3])
    else:
        P.no_data(axes[1])
    axes[1].set_xlabel("time between exposures (s; > 300 s shown at 300)")
    axes[1].set_ylabel("intervals")
    return {"uri": P.to_data_uri(fig), "caption": "Exam timing from the event start times."}
