"""Building the three reports: data from :mod:`srdose.store.reports`, statistics from
:mod:`srdose.report.stats` and friends, figures from :mod:`srdose.report.plots`, HTML from
the package's Jinja templates, tables as CSV and XLSX.

Each ``build_*`` returns a :class:`Built`: the files written (the HTML
first) and notes for the command to print.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from srdose.export import private_dir
from srdose.report import common as C
from srdose.report import stats
from srdose.report.render import Table, html_table, render_html, safe_name, write_csv, write_tables

Progress = Optional[Callable[[str], None]]
#: Columns the survey does not use (not read: 400,000 events are read faster without them).
SURVEY_SKIP = ("exposure_time_ms", "filter_thickness_mm", "compression_force_n", "hvl_mm", "entrance_exposure_mgy",
               "ratio_recalc_to_reported", "event_type", "recalc_flags")


@dataclass
class Built:
    html: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    partial: bool = False


def _period(since: str, until: str) -> str:
    return f"{since.replace('-', '')}-{until.replace('-', '')}"


def _tables_ctx(tables: dict, max_listed: int) -> dict:
    return {k: html_table(t, max_listed) for k, t in tables.items()}


# --- survey --------------------------------------------------------------------------------


def build_survey(store, settings, since: str, until: str, out_dir: Path, serial: Optional[str] = None,
                 progress: Progress = None) -> Built:
    from srdose.report import survey as S
    from srdose.store.reports import period_units, report_events

    section = settings["report"]
    configured = S.parse_survey_numbers(section["survey_numbers"])
    max_listed = int(section["max_listed"])
    built = Built()
    period = _period(since, until)
    units = period_units(store, since, until, serial)
    if not units:
        built.partial = True
        built.notes.append(f"no events between {since} and {until}" + (f" for unit {serial}" if serial else ""))
        return built
    out_dir = private_dir(out_dir / f"survey_{period}")
    # one unit read at a time, handed to a worker while the next is read:
    # reading (the database) and drawing (matplotlib) overlap on two cores
    def jobs():
        for u in units:
            if progress:
                progress(f"survey: unit {u['serial']}")
            cols = report_events(store, since, until, device_ids=[u["id"]], times=False, skip=SURVEY_SKIP)
            yield (u, cols, configured, out_dir, period, since, until, max_listed)

    for files, html, notes in _map_units(_survey_unit, jobs(), len(units)):
        built.files += files
        built.html.append(html)
        built.notes += notes
    return built


def _map_units(fn, jobs, n_jobs: int):
    """``fn`` over ``jobs`` on the machine's cores, results in job order.

    Each unit's tables, plots and HTML are independent, and drawing the plots
    is most of the time. Workers are forked; they never touch the database
    (and leave through os._exit, so nothing inherited is closed twice).
    """
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor

    workers = min(n_jobs, os.cpu_count() or 1)
    if workers < 2:
        yield from map(fn, jobs)
        return
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
        futures = [pool.submit(fn, job) for job in jobs]
        for future in futures:
            yield future.result()


def _survey_unit(job):
    """One unit's survey CSVs, tables, plots and HTML; returns (files, html, notes)."""
    from srdose.report import survey as S
    from srdose.report.reference import eu_levels, survey_reference

    u, cols, configured, out_dir, period, since, until, max_listed = job
    out_files: list[Path] = []
    reasons = S.classify(cols)
    mod = C.modality(cols)
    n2d, ndbt, how = S.survey_numbers(u, configured)
    name = safe_name(u["serial"])
    files = {}
    for m, number in (("2D", n2d), ("DBT", ndbt)):
        sel = (reasons == "") & (mod == m)
        if not sel.any():
            continue
        from srdose.store.reports import subset

        rows = S.survey_rows(subset(cols, sel), number)
        path = write_csv(out_dir / f"survey_{name}_{m}_{number}.csv", S.SURVEY_COLUMNS, rows, raw=True)
        files[m] = path.name
        out_files.append(path)
    tables = S.unit_tables(cols, reasons, (n2d, ndbt), files)
    figs = S.unit_plots(cols, reasons)
    tables["fit"] = figs.pop("fit_table")
    out_files += write_tables(out_dir / f"survey_{name}_{period}", list(tables.values()))
    included = reasons == ""
    women = np.unique(cols["woman"][included & (cols["woman"] >= 0)]).size
    rec = C.recalc_mgd(cols)[included & (cols["view"] == "MLO") & stats.in_band(cols["compressed_thickness_mm"], 50, 60)
                             & (mod == "2D")]
    keyfigs = [("women", f"{women:,}"), ("exposures in the survey", f"{int(included.sum()):,}"),
               ("exposures excluded", f"{int((~included).sum()):,}"),
               ("2D MLO 50–60 mm, mean recalculated MGD",
                f"{np.nanmean(rec):.2f} mGy" if np.isfinite(rec).any() else "–")]
    meta = [("unit", C.unit_label(u)), ("period", f"{since} to {until} (study dates)"),
            ("survey numbers", f"2D {n2d}, DBT {ndbt} ({how})")]
    html = render_html("survey.html", out_dir / f"survey_{name}_{period}.html",
                       title=f"Dose survey — {u['manufacturer']} {u['model']} ({u['serial']})",
                       kicker="national dose-survey submission", meta=meta, keyfigs=keyfigs,
                       tables=_tables_ctx(tables, max_listed), figures=figs, eu=eu_levels(),
                       survey_ref=survey_reference(), numbers_how=how)
    notes = [] if files else [f"unit {u['serial']}: no exposure qualifies for the survey"]
    not_recalculated = int((included & (cols["method"] == None)).sum())  # noqa: E711 (no result row)
    if not_recalculated:
        recalculated = np.isfinite(C.recalc_mgd(cols)[included]).any()
        shown = ("they are missing from the recalculated MGD figures" if recalculated
                 else "the plots and the key figures show the AGD as reported")
        notes.append(f"unit {u['serial']}: {not_recalculated:,} of {int(included.sum()):,} exposures in the survey "
                     f"have never been recalculated, so {shown}: run `srdose recalc`, then this report again")
    return out_files, html, notes


# --- DRL -----------------------------------------------------------------------------------


def build_drl(store, settings, since: str, until: str, out_dir: Path, drl_settings,
              serials: Optional[list[str]] = None, progress: Progress = None) -> Built:
    from srdose.report import drl as D
    from srdose.report import plots as P
    from srdose.store.reports import period_units, report_events

    s = drl_settings
    max_listed = int(settings["report"]["max_listed"])
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
    cols = report_events(store, since, until, device_ids=[u["id"] for u in units])
    dose = D.dose_column(cols, s)
    in_set = D.standard_set(cols, s)
    rs = D.room_statistics(cols["device_id"], dose, in_set, cols["not_patient"], C.infeasible(cols),
                           s.min_events, rooms=np.array([u["id"] for u in units]))
    values = D.drl_values(rs)
    by_id = {u["id"]: u for u in units}
    label = {u["id"]: f"{u['model']} {u['serial']}" for u in units}
    room_rows = []
    for j, rid in enumerate(rs.rooms):
        u = by_id[int(rid)]
        versus = ""
        if s.national_mgy is not None and np.isfinite(rs.median[j]):
            versus = f"{rs.median[j] / s.national_mgy:.2f} × national DRL" + (
                " — above" if rs.median[j] > s.national_mgy else "")
        room_rows.append([u["manufacturer"], u["model"], u["serial"], u["station"] or "", int(rs.in_set[j]),
                          int(rs.used[j]), rs.median[j], rs.p25[j], rs.p75[j], rs.mean[j],
                          "yes" if rs.qualifies[j] else f"no (< {s.min_events})", versus])
    unit = "mGy"
    value_rows = [
        ["rooms qualifying", values.rooms, "", f"of {rs.rooms.size} with events in the period"],
        ["local DRL (median of room medians)", values.local_drl, unit, "ICRP 135: the service's typical value"],
        ["national-style DRL (75th percentile of room medians)", values.national_style_drl, unit,
         "ICRP 135 national DRL definition applied to these rooms"],
        ["25th percentile of room medians", values.p25, unit, ""],
        ["lowest / highest room median", f"{values.minimum:.2f} / {values.maximum:.2f}" if values.rooms else "",
         unit, ""],
        ["national DRL (configured)", s.national_mgy, unit if s.national_mgy else "",
         s.national_source or "not configured: srdose ships no national value"],
    ]
    excl_rows = [[label[int(r)], int(rs.in_set[j]), int(rs.not_patient[j]), int(rs.infeasible[j]),
                  int(rs.no_dose[j]), int(rs.used[j])] for j, r in enumerate(rs.rooms)]
    excl_rows.append(["all rooms", int(rs.in_set.sum()), int(rs.not_patient.sum()), int(rs.infeasible.sum()),
                      int(rs.no_dose.sum()), int(rs.used.sum())])
    tables = {
        "drl_values": Table("values", "", ["quantity", "value", "unit", "note"], value_rows, numeric=(1,)),
        "rooms": Table("rooms", "Each room", ["manufacturer", "model", "serial", "station", "in set", "used",
                                              f"median ({unit})", f"p25 ({unit})", f"p75 ({unit})",
                                              f"mean ({unit})", "qualifies", "against national DRL"],
                       room_rows, numeric=(4, 5, 6, 7, 8, 9), wrap=(11,)),
        "exclusions": Table("exclusions", "Exposures of the standard set excluded, per room",
                            ["room", "in set", "not a patient study", "infeasible value", "no dose", "used"],
                            excl_rows, numeric=(1, 2, 3, 4, 5)),
    }
    if progress:
        progress("DRL: plots")
    figs = {}
    order = np.argsort(np.where(np.isfinite(rs.median), rs.median, -np.inf))
    fig, axes = P.figure(max(2.4, 0.32 * rs.rooms.size + 1.4))
    ax = axes[0]
    ypos = np.arange(order.size)
    meds = np.nan_to_num(rs.median[order], nan=0.0)
    colors = [P.PALETTE[0] if rs.qualifies[j] else "#b8c2cc" for j in order]
    ax.barh(ypos, meds, color=colors, height=0.6)
    ax.set_yticks(ypos, [P.mpl_text(f"{label[int(rs.rooms[j])]} (n={int(rs.used[j])})") for j in order])
    ax.set_xlabel(f"room median {'recalculated MGD' if s.dose == 'recalc' else 'reported AGD'} (mGy)")
    lines = [(values.local_drl, "local DRL (median)", P.PALETTE[2], "-"),
             (values.national_style_drl, "75th percentile", P.PALETTE[1], "--")]
    if s.national_mgy is not None:
        lines.append((s.national_mgy, "national DRL (configured)", "black", ":"))
    for x, name, color, style in lines:
        if x is not None and np.isfinite(x):
            ax.axvline(x, color=color, linestyle=style, linewidth=1.5, label=f"{name}: {x:.2f} mGy")
    ax.grid(axis="y", visible=False)
    if any(np.isfinite(x) for x, *_ in lines if x is not None):
        ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.4, -0.16), ncol=3, fontsize=7.5)
    figs["rooms"] = {"uri": P.to_data_uri(fig),
                     "caption": f"Median dose per room, standard set: {s.describe()}. Grey: fewer than "
                                f"{s.min_events} exposures (not in the statistics)."}
    fig, axes = P.figure(3.4)
    used = in_set & ~cols["not_patient"] & ~C.infeasible(cols) & np.isfinite(dose)
    room_names = np.empty(cols["n"], dtype=object)
    for rid in rs.rooms:
        room_names[cols["device_id"] == rid] = label[int(rid)]
    P.boxplot_groups(axes[0], dose[used], room_names[used], order=[label[int(rs.rooms[j])] for j in order],
                     ylabel="dose (mGy)")
    for x, name, color, style in lines:
        if x is not None and np.isfinite(x):
            axes[0].axhline(x, color=color, linestyle=style, linewidth=1.2, label=f"{name}: {x:.2f} mGy")
    if used.any():
        axes[0].legend(frameon=False, fontsize=7)
        axes[0].tick_params(axis="x", labelrotation=20, labelsize=7)
    figs["boxes"] = {"uri": P.to_data_uri(fig),
                     "caption": "Dose distribution of the standard set per room (boxes: quartiles and median; "
                                "whiskers: 1.5 × IQR; outliers not drawn)."}
    period = _period(since, until)
    out_dir = private_dir(out_dir / f"drl_{period}")
    built.files += write_tables(out_dir / f"drl_{period}", list(tables.values()))
    keyfigs = [("rooms in the statistics", f"{values.rooms} of {rs.rooms.size}"),
               ("local DRL (median)", f"{values.local_drl:.2f} mGy" if values.rooms else "–"),
               ("75th percentile", f"{values.national_style_drl:.2f} mGy" if values.rooms else "–"),
               ("exposures used", f"{int(rs.used.sum()):,}")]
    meta = [("period", f"{since} to {until} (study dates)"), ("standard set", s.describe()),
            ("rooms", f"{rs.rooms.size} unit(s) with events in the period")]
    html = render_html("drl.html", out_dir / f"drl_{period}.html", title="Diagnostic reference levels",
                       kicker="local and national-style DRLs", meta=meta, keyfigs=keyfigs,
                       tables=_tables_ctx(tables, max_listed), figures=figs, national=s.national_mgy,
                       national_source=s.national_source, standard=s.describe(), min_events=s.min_events)
    built.html.insert(0, html)
    if values.rooms == 0:
        built.partial = True
        built.notes.append(f"no room has {s.min_events} or more exposures in the standard set ({s.describe()})")
    if s.dose == "recalc" and rs.in_set.sum() and rs.no_dose.sum() == rs.in_set.sum() - rs.not_patient.sum() \
            - rs.infeasible.sum():
        built.notes.append("no recalculated MGD in the standard set: run `srdose recalc` (or --dose reported)")
    return built


# --- QA ------------------------------------------------------------------------------------


def build_qa(store, settings, since: str, until: str, out_dir: Path, serial: str,
             progress: Progress = None) -> Built:
    from srdose.report import plots as P
    from srdose.report import qa as Q
    from srdose.store.reports import period_units, report_events

    band = float(settings["recalc"]["ratio_band"])
    max_listed = int(settings["report"]["max_listed"])
    built = Built()
    units = period_units(store, since, until, serial)
    if not units:
        built.partial = True
        built.notes.append(f"unit {serial}: no events between {since} and {until}")
        return built
    if progress:
        progress(f"QA: reading events of {serial}")
    cols = report_events(store, since, until, device_ids=[u["id"] for u in units])
    u = units[0]
    mod = C.modality(cols)
    r = Q.ratio(cols)
    rec, rep = C.recalc_mgd(cols), C.reported_agd(cols)
    tf = Q.target_filter(cols)
    t = cols["compressed_thickness_mm"]
    lo, hi = 1 - band, 1 + band

    agreement = []
    for m in ("2D", "DBT", "all"):
        sel = (mod == m) if m != "all" else np.ones(cols["n"], bool)
        d = stats.describe(r[sel])
        ba = stats.bland_altman(rec[sel], rep[sel])
        with np.errstate(invalid="ignore"):
            within = np.isfinite(r[sel]) & (r[sel] >= lo) & (r[sel] <= hi)
        with np.errstate(invalid="ignore", divide="ignore"):
            u_rel = 100.0 * cols["mgd_u_mgy"][sel] / rec[sel]
        agreement.append([m, int(sel.sum()), int(np.isfinite(rec[sel]).sum()), d["n"], d["median"], d["mean"],
                          ba["bias"], ba["lower"], ba["upper"],
                          f"{100.0 * within.sum() / d['n']:.1f}%" if d["n"] else "",
                          float(np.nanmedian(u_rel)) if np.isfinite(u_rel).any() else float("nan")])
    idx, why = Q.flagged_events(cols, band)
    flagged_rows = [[C.iso(cols["study_date"][i]), Q_time(cols["t_start"][i]), cols["acquisition"][i] or "",
                     f"{cols['laterality'][i] or ''}{cols['view'][i] or ''}", cols["kvp"][i], tf[i], t[i],
                     rep[i], rec[i], cols["mgd_u_mgy"][i], r[i], cols["method"][i] or "", w]
                    for i, w in zip(idx, why)]
    comp = []
    for m in ("2D", "DBT"):
        for v in ("CC", "MLO", "other"):
            s_ = (mod == m) & (C.view_group(cols["view"]) == v)
            if not s_.any():
                continue
            f = stats.describe(cols["compression_force_n"][s_])
            th = stats.describe(t[s_])
            comp.append([m, v, int(s_.sum()), f["n"], f["mean"], f["median"], th["mean"], th["median"], th["min"],
                         th["max"]])
    durations, gaps = Q.timing(cols)
    dd, gg = stats.describe(durations / 60.0), stats.describe(gaps)
    timing_rows = [["exam duration, first to last exposure (min)", dd["n"], dd["median"], dd["p25"], dd["p75"],
                    dd["max"]],
                   ["time between consecutive exposures (s)", gg["n"], gg["median"], gg["p25"], gg["p75"],
                    gg["max"]]]
    tables = {
        "agreement": Table("agreement", "Agreement", ["modality", "events", "recalculated", "with ratio",
                                                      "median ratio", "mean ratio", "bias (mGy)",
                                                      "LoA lower (mGy)", "LoA upper (mGy)", "within band",
                                                      "median U (k = 2, %)"],
                           agreement, numeric=tuple(range(1, 11)),
                           note="Bias and 95 % limits of agreement (LoA): recalculated − reported. U: the "
                                "expanded uncertainty of each recalculated MGD (its budget: "
                                "reports/mgd-validation.md)."),
        "ratio_kv": Table("ratio_kv", "Ratio by kV", ["kV", "n", "mean", "median", "p25", "p75"],
                          Q.by_group(r[np.isfinite(r)], Q.kv_group(cols["kvp"])[np.isfinite(r)],
                                     order=sorted(set(Q.kv_group(cols["kvp"])[np.isfinite(r)].tolist()),
                                                  key=lambda k: (k == "?", int(k) if k != "?" else 0))),
                          numeric=(1, 2, 3, 4, 5)),
        "ratio_tf": Table("ratio_tf", "Ratio by target/filter and modality",
                          ["target/filter · modality", "n", "mean", "median", "p25", "p75"],
                          Q.by_group(r[np.isfinite(r)], (tf + " · " + mod)[np.isfinite(r)]),
                          numeric=(1, 2, 3, 4, 5)),
        "aec": Table("aec", "AEC: technique by compressed thickness (10 mm bands)",
                     ["thickness (mm)", "exposures", "mean kV", "mean mAs", "target/filter"], Q.aec_table(cols),
                     numeric=(1, 2, 3)),
        "compression": Table("compression", "Compression force and thickness per view",
                             ["modality", "view", "exposures", "with force", "force mean (N)", "force median (N)",
                              "thickness mean (mm)", "thickness median (mm)", "thickness min (mm)",
                              "thickness max (mm)"], comp, numeric=tuple(range(2, 10))),
        "timing": Table("timing", "", ["quantity", "n", "median", "p25", "p75", "max"], timing_rows,
                        numeric=(1, 2, 3, 4, 5),
                        note="From the event start times of each study (exams with two or more timed exposures)."),
        "flags": Table("flags", "Flags and their counts", ["source", "flag", "events"],
                       [list(x) for x in Q.flag_counts(cols)], numeric=(2,), wrap=(1,)),
        "flagged": Table("flagged", "", ["study date", "time", "acquisition", "view", "kV", "target/filter",
                                         "thickness (mm)", "reported (mGy)", "recalculated (mGy)",
                                         "U, k = 2 (mGy)", "ratio", "method", "why"], flagged_rows,
                       numeric=(4, 6, 7, 8, 9, 10), digits={4: 1, 6: 1}, wrap=(12,)),
    }
    if progress:
        progress(f"QA: plots of {serial}")
    figs = {}
    # agreement
    fig, axes = P.figure(3.4, 2)
    ax = axes[0]
    ok = np.isfinite(rec) & np.isfinite(rep)
    if ok.any():
        P.scatter_groups(ax, rep[ok], rec[ok], mod[ok], labels=["2D", "DBT"])
        top = float(np.nanmax(np.concatenate([rep[ok], rec[ok]]))) * 1.05
        xs = np.array([0, top])
        ax.plot(xs, xs, color="black", linewidth=1, label="identity")
        ax.plot(xs, xs * lo, color="grey", linestyle="--", linewidth=0.8, label=f"ratio {lo:.2f} / {hi:.2f}")
        ax.plot(xs, xs * hi, color="grey", linestyle="--", linewidth=0.8)
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
        mean = (rec[ok] + rep[ok]) / 2
        diff = rec[ok] - rep[ok]
        P.scatter_groups(ax, mean, diff, mod[ok], labels=["2D", "DBT"])
        ba = stats.bland_altman(rec[ok], rep[ok])
        ax.axhline(ba["bias"], color="black", linewidth=1.2, label=f"bias {ba['bias']:+.3f} mGy")
        if np.isfinite(ba["sd"]):
            ax.axhline(ba["lower"], color="grey", linestyle="--", linewidth=1,
                       label=f"95% LoA {ba['lower']:+.3f} / {ba['upper']:+.3f}")
            ax.axhline(ba["upper"], color="grey", linestyle="--", linewidth=1)
        ax.legend(frameon=False, fontsize=7)
    else:
        P.no_data(ax, "no event with both doses")
    ax.set_xlabel("mean of the two (mGy)")
    ax.set_ylabel("recalculated − reported (mGy)")
    ax.set_title("Bland–Altman")
    figs["agreement"] = {"uri": P.to_data_uri(fig), "caption": (
        f"Left: each event, with the ratio band 1 ± {band:g}. Right: differences against means, bias and 95 % "
        f"limits of agreement. Up to {P.MAX_POINTS:,} points drawn.")}
    fig, axes = P.figure(3.2, 2)
    fin = np.isfinite(r)
    kvs = Q.kv_group(cols["kvp"])
    kv_order = sorted(set(kvs[fin].tolist()) - {"?"}, key=int)
    P.boxplot_groups(axes[0], r[fin], kvs[fin], order=kv_order, ylabel="recalculated / reported", xlabel="kV")
    P.boxplot_groups(axes[1], r[fin], (tf + "\n" + mod)[fin], ylabel="recalculated / reported",
                     xlabel="target/filter, modality")
    for ax in axes:
        if fin.any():
            ax.axhline(1.0, color="black", linewidth=0.8)
            ax.axhspan(lo, hi, color=P.PALETTE[2], alpha=0.08)
        ax.tick_params(axis="x", labelsize=6.5)
    figs["ratio"] = {"uri": P.to_data_uri(fig), "caption": (
        f"Ratio of recalculated to reported dose by kV (rounded) and by target/filter; shaded: 1 ± {band:g}.")}
    # AEC
    fig, axes = P.figure(3.4, 2)
    for ax, (name, y, ylabel) in zip(axes, (("kV", cols["kvp"], "tube voltage (kV)"),
                                            ("mAs", cols["mas"], "tube current–time product (mAs)"))):
        okk = np.isfinite(t) & np.isfinite(y)
        if okk.any():
            P.scatter_groups(ax, t[okk], y[okk], (tf + " " + mod)[okk], size=3)
            ax.legend(frameon=False, fontsize=6.5)
        else:
            P.no_data(ax)
        ax.set_xlabel("compressed breast thickness (mm)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{name} against thickness")
    figs["aec"] = {"uri": P.to_data_uri(fig), "caption": (
        "The AEC's choices against compressed thickness, by target/filter and modality (DBT mAs is the whole sweep "
        f"as reported). Up to {P.MAX_POINTS:,} points drawn.")}
    fig, axes = P.figure(2.8)
    okt = np.isfinite(t)
    P.histogram_groups(axes[0], t[okt], (tf + " " + mod)[okt], bins=np.arange(0, 131, 5),
                       xlabel="compressed breast thickness (mm)", stacked=True)
    figs["tf"] = {"uri": P.to_data_uri(fig), "caption": "Target/filter selected against compressed thickness "
                                                       "(stacked counts, 5 mm bins)."}
    # compression
    fig, axes = P.figure(3.2, 2)
    groups = mod + " " + C.view_group(cols["view"])
    gorder = [g for g in ("2D CC", "2D MLO", "2D other", "DBT CC", "DBT MLO", "DBT other") if (groups == g).any()]
    if np.isfinite(cols["compression_force_n"]).any():
        P.boxplot_groups(axes[0], cols["compression_force_n"], groups, order=gorder, ylabel="compression force (N)")
    else:
        P.no_data(axes[0], "no compression force in these dose reports")
    P.boxplot_groups(axes[1], t, groups, order=gorder, ylabel="compressed thickness (mm)")
    for ax in axes:
        ax.tick_params(axis="x", labelsize=7)
    figs["compression"] = {"uri": P.to_data_uri(fig), "caption": "Compression force and compressed thickness per "
                                                                 "view and modality (boxes: quartiles; whiskers: "
                                                                 "1.5 × IQR)."}
    # timing
    fig, axes = P.figure(3.0, 2)
    if durations.size:
        axes[0].hist(durations / 60.0, bins=np.arange(0, max(15.0, min(60.0, np.percentile(durations / 60, 99) + 1)), 0.5),
                     color=P.PALETTE[0])
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
    figs["timing"] = {"uri": P.to_data_uri(fig), "caption": "Exam timing from the event start times."}

    period = _period(since, until)
    name = safe_name(serial)
    out_dir = private_dir(out_dir / f"qa_{name}_{period}")
    built.files += write_tables(out_dir / f"qa_{name}_{period}", list(tables.values()))
    d_all = stats.describe(r)
    keyfigs = [("exposures", f"{cols['n']:,}"), ("studies", f"{np.unique(cols['study_id']).size:,}"),
               ("recalculated", f"{int(np.isfinite(rec).sum()):,}"),
               ("median ratio recalculated / reported", f"{d_all['median']:.3f}" if d_all["n"] else "–"),
               ("flagged events", f"{idx.size:,}")]
    meta = [("unit", C.unit_label(u)), ("period", f"{since} to {until} (study dates)"),
            ("ratio band", f"{lo:.2f}–{hi:.2f} ([recalc] ratio_band = {band:g})")]
    html = render_html("qa.html", out_dir / f"qa_{name}_{period}.html",
                       title=f"Physics QA review — {u['manufacturer']} {u['model']} ({u['serial']})",
                       kicker="physics QA review", meta=meta, keyfigs=keyfigs, band=band,
                       tables=_tables_ctx(tables, max_listed), figures=figs,
                       operator_note="Per-operator distributions: the dose reports as stored by srdose carry no "
                                     "operator, so none can be shown.")
    built.html.insert(0, html)
    if not np.isfinite(rec).any():
        built.notes.append(f"unit {serial}: no recalculated MGD in the period: run `srdose recalc`")
    return built


def Q_time(t: float) -> str:
    from srdose.report.survey import _time_of_day

    return _time_of_day(t)
