"""National dose-survey submission (``srdose report survey``).

The UK breast screening survey format: one CSV per unit and per modality
(2D and DBT apart), 15 columns in :data:`SURVEY_COLUMNS` order, one row per
exposure.

* **Survey number**: ``[report] survey_numbers`` ("SERIAL=NUMBER") gives the 2D
  survey of a unit; the DBT survey is that number + 1. A unit not listed gets
  :func:`default_survey_number`: 100000 + 2 × (CRC-32 of
  ``manufacturer|model|serial`` mod 450000), even and the same on every run.
* **Patient number**: 1, 2, ... per study within the file (in date order): no
  identifier or pseudonym is written.
* **View code**: laterality letter + CC / OB (MLO) / ML / LM / LMO / FB / SIO /
  ISO / XCCL / XCCM; the 2nd, 3rd ... exposure of the same view of a study in
  the file gets 2, 3, ... appended (``RCC2``).
* kV (2 decimals at most), anode and filter (element symbols), thickness (mm,
  1 decimal), mAs (2 decimals), age (whole years, from the study's age).
* ``auto/man`` and ``Auto mode`` only where the dose report says so (IMS
  Giotto labels "AUTOMATIC - AEC: "<mode>""); ``large cassette used``,
  ``Density setting`` and ``AEC density mode`` are not in dose reports and
  stay empty. ``Comment`` holds the acquisition protocol name.

Excluded, and listed with the reason (:func:`classify`): events without
laterality (or with both), view, anode or filter; views with no survey code;
specimen views; scout, post-clip, pre-fire, biopsy, stereo and artefact
protocols; studies that are not a patient's; events with an ``infeasible:``
flag; events that are neither 2D nor DBT.
"""

from __future__ import annotations

import multiprocessing as mp
import re
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from srdose import compat
from srdose.files import decimal_text, private_dir, write_csv_tables
from srdose.reference import eu_levels, survey_reference
from srdose.report import common as C
from srdose.report import plots as P
from srdose.report import stats
from srdose.report.common import Built, Progress, period_tag
from srdose.report.render import (
    Table,
    html_tables,
    number_columns,
    render_html,
    safe_name,
    text_columns,
    write_tables,
)
from srdose.store.reports import report_event_batches, subset, unit_event_counts

SURVEY_COLUMNS = (
    "Survey number",
    "Patient number",
    "View code",
    "kV",
    "Anode",
    "Filter",
    "Thickness",
    "mAs",
    "large cassette used",
    "auto/man",
    "Auto mode",
    "Density setting",
    "Age",
    "Comment",
    "AEC density mode",
)

VIEW_CODES = {
    "CC": "CC",
    "MLO": "OB",
    "ML": "ML",
    "LM": "LM",
    "LMO": "LMO",
    "FB": "FB",
    "SIO": "SIO",
    "ISO": "ISO",
    "XCCL": "XCCL",
    "XCCM": "XCCM",
}

#: Protocols excluded from a survey: (reason, pattern searched in the protocol name and label).
EXCLUDED_PROTOCOLS = (
    ("scout protocol", re.compile(r"scout", re.I)),
    ("post-clip protocol", re.compile(r"post[\s_-]*clip", re.I)),
    ("pre-fire protocol", re.compile(r"pre[\s_-]*fire", re.I)),
    ("biopsy protocol", re.compile(r"biops", re.I)),
    ("stereo protocol", re.compile(r"stereo", re.I)),
    ("artefact protocol", re.compile(r"arti?e?fact", re.I)),
)
SPECIMEN = re.compile(r"specimen", re.I)
_AEC_MODE = re.compile(r'AEC:\s*"([^"]+)"')


def default_survey_number(manufacturer: str, model: str, serial: str) -> int:
    key = f"{manufacturer or ''}|{model or ''}|{serial or ''}".encode()
    return 100000 + 2 * (zlib.crc32(key) % 450000)


def survey_numbers(unit: dict, configured: dict[str, int]) -> tuple[int, int, str]:
    """(2D number, DBT number, 'configured' | 'default')."""
    if unit["serial"] in configured:
        n, how = configured[unit["serial"]], "configured"
    else:
        n, how = default_survey_number(unit["manufacturer"], unit["model"], unit["serial"]), "default"
    return n, n + 1, how


def _text_reason(protocol: str | None, label: str | None, modifiers: str | None) -> str:
    for text in (modifiers, protocol, label):
        if text and SPECIMEN.search(text):
            return "specimen view"
    for reason, pattern in EXCLUDED_PROTOCOLS:
        for text in (protocol, label):
            if text and pattern.search(text):
                return reason
    return ""


def classify(cols: dict) -> np.ndarray:
    """Exclusion reason per event ('' = included in the survey), first reason that applies."""
    n = cols["n"]
    reason = np.full(n, "", dtype=object)

    def mark(mask, text):
        sel = mask & (reason == "")
        reason[sel] = text

    lat, view = cols["laterality"], cols["view"]
    mark(cols["not_patient"], "not a patient study")
    mark((lat == None) | (lat == ""), "no laterality")  # noqa: E711
    mark((lat == "B"), "laterality both breasts")
    mark(~np.isin(lat, np.array(["L", "R", None, "", "B"], dtype=object)), "laterality not L or R")
    mark((view == None) | (view == ""), "no view")  # noqa: E711
    has_view = (view != None) & (view != "")  # noqa: E711
    mark(has_view & ~np.isin(view.astype(str), list(VIEW_CODES)), "view has no survey code")
    mark((cols["anode"] == None) | (cols["anode"] == ""), "no anode")  # noqa: E711
    mark((cols["filter_material"] == None) | (cols["filter_material"] == ""), "no filter")  # noqa: E711
    # protocol texts: decided once per distinct (protocol, label, view modifiers)
    texts = [_coded(cols[name]) for name in ("protocol", "label", "view_modifiers")]
    key = np.zeros(n, dtype=np.int64)
    for coded in texts:
        key = key * (len(coded.dictionary) + 1) + _codes(coded)
    combos, which = np.unique(key, return_inverse=True)
    values = [_values(coded) + [None] for coded in texts]
    decided = []
    for k in combos.tolist():
        parts = []
        for vals in reversed(values):
            k, code = divmod(k, len(vals))
            parts.append(vals[code])
        decided.append(_text_reason(*reversed(parts)))
    text_reason = np.array(decided, dtype=object)[which.reshape(-1)] if n else np.empty(0, dtype=object)
    sel = (reason == "") & (text_reason != "")
    reason[sel] = text_reason[sel]
    inf = C.infeasible(cols)
    if inf.any():
        idx = np.flatnonzero(inf & (reason == ""))
        for k in idx:
            reason[k] = "infeasible value (" + ", ".join(C.infeasible_rules(cols["flags"][k])) + ")"
    mark(C.modality(cols) == "", "neither 2D nor DBT")
    return reason


def _auto(protocol: str | None, label: str | None) -> tuple[str, str]:
    """(auto/man, auto mode) where the report's texts say so."""
    for text in (label, protocol):
        if not text:
            continue
        upper = text.upper()
        if upper.startswith("AUTOMATIC") or "AEC" in upper:
            m = _AEC_MODE.search(text)
            return "auto", (m.group(1) if m else "")
        if upper.startswith("MANUAL"):
            return "man", ""
    return "", ""


def _text(values) -> pa.Array:
    return pa.array(np.asarray(values, dtype=object), pa.string())


def _coded(values) -> pa.DictionaryArray:
    return pc.dictionary_encode(_text(values))


def _values(coded: pa.DictionaryArray) -> list:
    return coded.dictionary.to_pylist()


def _codes(coded: pa.DictionaryArray) -> np.ndarray:
    """The code of each value; NULL as one more code, after the values'."""
    return coded.indices.fill_null(len(coded.dictionary)).to_numpy().astype(np.int64)


def survey_table(cols: dict, survey_number: int) -> pa.Table:
    """The survey rows of ``cols`` (already the included events of one unit and modality, in
    order) as columns of text, :data:`SURVEY_COLUMNS`: numbers to their digits without trailing
    zeros, empty where unknown."""
    n = cols["n"]
    # each text column's distinct values, coded: the view code, the occurrence of each view and the
    # auto/man mode are worked out per distinct value, not per exposure
    lat, view = _coded(cols["laterality"]), _coded(cols["view"])
    texts = [
        ("None" if la is None else la)[:1] + VIEW_CODES.get(v, "")
        for la in _values(lat) + [None]
        for v in _values(view) + [None]
    ]
    distinct = {t: k for k, t in enumerate(dict.fromkeys(texts))}  # R + MLO and Right + MLO are both ROB
    combo = _codes(lat) * (len(view.dictionary) + 1) + _codes(view)
    view_key = np.array([distinct[t] for t in texts], dtype=np.int64)[combo]
    occ = stats.occurrence_number(cols["study_id"], view_key)
    views = pc.take(pa.array(list(distinct), pa.string()), pa.array(view_key))
    view_code = pc.if_else(
        pa.array(occ > 1), pc.binary_join_element_wise(views, pc.cast(pa.array(occ), pa.string()), ""), views
    )
    protocol, label = _coded(cols["protocol"]), _coded(cols["label"])
    pair_key = _codes(protocol) * (len(label.dictionary) + 1) + _codes(label)
    pairs, which = np.unique(pair_key, return_inverse=True)
    names, labels = _values(protocol) + [None], _values(label) + [None]
    auto = [_auto(names[k // len(labels)], labels[k % len(labels)]) for k in pairs.tolist()]
    which = pa.array(which.reshape(-1).astype(np.int64))
    age = np.floor(np.asarray(cols["age_years"], dtype=float))
    age[~np.isfinite(age)] = np.nan
    empty = pa.array([""] * n, pa.string())
    columns = [
        pa.array(np.full(n, survey_number, dtype=np.int64)),
        pa.array(stats.sequence_number(cols["study_id"])),
        view_code,
        decimal_text(cols["kvp"], 2, short=True),
        _text(cols["anode"]),
        _text(cols["filter_material"]),
        decimal_text(cols["compressed_thickness_mm"], 1, short=True),
        decimal_text(cols["mas"], 2, short=True),
        empty,
        pc.take(pa.array([a[0] for a in auto], pa.string()), which),
        pc.take(pa.array([a[1] for a in auto], pa.string()), which),
        empty,
        decimal_text(age, 0, short=True),
        pc.fill_null(protocol.dictionary_decode(), ""),
        empty,
    ]
    return pa.table(columns, names=list(SURVEY_COLUMNS))


# --- the report ------------------------------------------------------------------------------

#: Columns the survey does not use (not read: 400,000 events are read faster without them).
SURVEY_SKIP = (
    "exposure_time_ms",
    "filter_thickness_mm",
    "compression_force_n",
    "hvl_mm",
    "entrance_exposure_mgy",
    "ratio_recalc_to_reported",
    "event_type",
    "recalc_flags",
)
MODALITIES = ("2D", "DBT")
#: Counts and dose statistics of a group of exposures, recalculated then reported (see :func:`_dose_cells`).
DOSE_COLUMNS = number_columns(
    "n recalc",
    "MGD recalc mean (mGy)",
    "MGD recalc median (mGy)",
    "n reported",
    "AGD reported mean (mGy)",
    "AGD reported median (mGy)",
)


@dataclass
class UnitJob:
    """What the worker drawing one unit's report needs (the events already read)."""

    unit: dict
    cols: dict
    configured: dict[str, int]
    out_dir: Path
    period: str
    since: str
    until: str
    max_listed: int


def build_survey(
    store, settings, since: str, until: str, out_dir: Path, serial: str | None = None, progress: Progress = None
) -> Built:
    """The survey CSVs and HTML report of each unit with events in the period (or of ``serial``)."""
    section = settings.report
    configured = section.survey_numbers
    built = Built()
    period = period_tag(since, until)
    units = unit_event_counts(store, since, until, serial)  # superseded events counted too
    if not units:
        built.partial = True
        built.notes.append(f"no events between {since} and {until}" + (f" for unit {serial}" if serial else ""))
        return built
    out_dir = private_dir(out_dir / f"survey_{period}")

    # the events read once, kept a batch of units at a time, and each unit handed to the workers:
    # the next batch is sorted while they draw. A query per unit (or per batch) would join every
    # study and result again each time (four hundred units, four hundred passes over ten million
    # results).
    def jobs() -> Iterator[UnitJob]:
        batches = list(unit_batches(units, BATCH_EVENTS))
        total = sum(u["events"] for u in units)

        def reading(events: int) -> None:
            if progress:
                progress(f"survey: {events:,} of about {total:,} events read")

        read = report_event_batches(
            store,
            since,
            until,
            [[u["id"] for u in batch] for batch in batches],
            times=False,
            skip=SURVEY_SKIP,
            progress=reading,
        )
        for batch, cols in zip(batches, read):
            if progress:
                progress(f"survey: {len(batch)} unit(s) from {batch[0]['serial']}")
            for u in batch:
                part = subset(cols, cols["device_id"] == u["id"])
                if not part["n"]:  # its events all superseded
                    continue
                yield UnitJob(u, part, configured, out_dir, period, since, until, section.max_listed)
            del cols

    for files, html, notes in map_units(survey_unit, jobs(), len(units)):
        built.files += files
        built.html.append(html)
        built.notes += notes
    if not built.html:
        built.partial = True
        built.notes.append(f"no live events between {since} and {until}: each was superseded by a later dose report")
    return built


#: Events of the units held in memory at once, at most (a unit above it alone): memory stays bounded.
BATCH_EVENTS = 2_000_000


def unit_batches(units: list[dict], limit: int) -> Iterator[list[dict]]:
    """``units`` in order, in runs of at most ``limit`` events (a unit above it alone)."""
    batch: list[dict] = []
    total = 0
    for u in units:
        if batch and total + u["events"] > limit:
            yield batch
            batch, total = [], 0
        batch.append(u)
        total += u["events"]
    if batch:
        yield batch


def map_units(fn: Callable, jobs: Iterable, n_jobs: int) -> Iterator:
    """``fn`` over ``jobs`` on the machine's cores, results in job order.

    Each unit's tables, plots and HTML are independent, and drawing the plots
    is most of the time. Workers are forked; they never touch the database
    (and leave through os._exit, so nothing inherited is closed twice).
    """
    workers = min(n_jobs, compat.cores())
    if workers < 2:
        yield from map(fn, jobs)
        return
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
        # a job holds its unit's columns: only a job per worker and one more are read ahead,
        # not every unit's (ten million events' columns would not fit in memory)
        pending: deque[Future] = deque()
        for job in jobs:
            pending.append(pool.submit(fn, job))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def survey_unit(job: UnitJob) -> tuple[list[Path], Path, list[str]]:
    """One unit's survey CSVs, tables, plots and HTML; returns (files, html, notes)."""
    u, cols = job.unit, job.cols
    reasons = classify(cols)
    n2d, ndbt, how = survey_numbers(u, job.configured)
    name = safe_name(u["serial"])
    survey_files = write_survey_csvs(cols, reasons, (n2d, ndbt), job.out_dir, name)
    files = {m: path.name for m, path in survey_files.items()}
    tables = unit_tables(cols, reasons, (n2d, ndbt), files)
    figs, fit_table = unit_plots(cols, reasons)
    tables.append(fit_table)
    out_files = list(survey_files.values())
    out_files += write_tables(job.out_dir / f"survey_{name}_{job.period}", tables)
    meta = [
        ("unit", C.unit_label(u)),
        ("period", f"{job.since} to {job.until} (study dates)"),
        ("survey numbers", f"2D {n2d}, DBT {ndbt} ({how})"),
    ]
    html = render_html(
        "survey.html",
        job.out_dir / f"survey_{name}_{job.period}.html",
        title=f"Dose survey — {u['manufacturer']} {u['model']} ({u['serial']})",
        kicker="national dose-survey submission",
        meta=meta,
        keyfigs=key_figures(cols, reasons),
        tables=html_tables(tables, job.max_listed),
        figures=figs,
        eu=eu_levels(),
        survey_ref=survey_reference(),
        numbers_how=how,
    )
    return out_files, html, unit_notes(u, cols, reasons, files)


def write_survey_csvs(
    cols: dict, reasons: np.ndarray, numbers: tuple[int, int], out_dir: Path, name: str
) -> dict[str, Path]:
    """The survey CSV of each modality with included exposures: {modality: path}."""
    mod = C.modality(cols)
    written = {}
    for m, number in zip(MODALITIES, numbers):
        sel = (reasons == "") & (mod == m)
        if not sel.any():
            continue
        path = out_dir / f"survey_{name}_{m}_{number}.csv"
        write_csv_tables([partial(survey_table, subset(cols, sel), number)], path, SURVEY_COLUMNS)
        written[m] = path
    return written


def key_figures(cols: dict, reasons: np.ndarray) -> list[tuple[str, str]]:
    included = reasons == ""
    women = np.unique(cols["woman"][included & (cols["woman"] >= 0)]).size
    rec = C.recalc_mgd(cols)[
        included
        & (cols["view"] == "MLO")
        & stats.in_band(cols["compressed_thickness_mm"], 50, 60)
        & (C.modality(cols) == "2D")
    ]
    return [
        ("women", f"{women:,}"),
        ("exposures in the survey", f"{int(included.sum()):,}"),
        ("exposures excluded", f"{int((~included).sum()):,}"),
        ("2D MLO 50–60 mm, mean recalculated MGD", f"{np.nanmean(rec):.2f} mGy" if np.isfinite(rec).any() else "–"),
    ]


def unit_notes(u: dict, cols: dict, reasons: np.ndarray, files: dict) -> list[str]:
    """What the command tells about a unit: no survey file, exposures never recalculated."""
    included = reasons == ""
    notes = [] if files else [f"unit {u['serial']}: no exposure qualifies for the survey"]
    not_recalculated = int((included & (cols["method"] == None)).sum())  # noqa: E711 (no result row)
    if not_recalculated:
        recalculated = np.isfinite(C.recalc_mgd(cols)[included]).any()
        shown = (
            "they are missing from the recalculated MGD figures"
            if recalculated
            else "the plots and the key figures show the AGD as reported"
        )
        notes.append(
            f"unit {u['serial']}: {not_recalculated:,} of {int(included.sum()):,} exposures in the survey "
            f"have never been recalculated, so {shown}: run `srdose recalc`, then this report again"
        )
    return notes


def _dose_cells(recalc: np.ndarray, reported: np.ndarray) -> list:
    """The values of :data:`DOSE_COLUMNS`."""
    d_rec, d_rep = stats.describe(recalc), stats.describe(reported)
    return [d_rec["n"], d_rec["mean"], d_rec["median"], d_rep["n"], d_rep["mean"], d_rep["median"]]


def unit_tables(cols: dict, reasons: np.ndarray, numbers: tuple[int, int], files: dict) -> list[Table]:
    """The tables of one unit's survey report (pure: columns in, :class:`Table` objects out)."""
    included = reasons == ""
    mod = C.modality(cols)
    recalc, reported = C.recalc_mgd(cols), C.reported_agd(cols)
    t = cols["compressed_thickness_mm"]
    overview, views, mlo = [], [], []
    for m, number in zip(MODALITIES, numbers):
        sel = included & (mod == m)
        women = np.unique(cols["woman"][sel & (cols["woman"] >= 0)]).size
        studies = np.unique(cols["study_id"][sel]).size
        overview.append([m, str(number), files.get(m, "(no exposures)"), int(women), int(studies), int(sel.sum())])
        if not sel.any():
            continue
        present = set(cols["view"][sel].tolist())
        for v in [v for v in C.VIEW_ORDER if v in present]:
            s = sel & (cols["view"] == v)
            views.append(
                [
                    m,
                    v,
                    int(s.sum()),
                    *_dose_cells(recalc[s], reported[s]),
                    stats.describe(t[s])["mean"],
                    stats.describe(t[s])["median"],
                    stats.describe(cols["kvp"][s])["mean"],
                ]
            )
        s = sel & (cols["view"] == "MLO") & stats.in_band(t, 50, 60)
        mlo.append(
            [
                m,
                int(s.sum()),
                int(np.unique(cols["woman"][s & (cols["woman"] >= 0)]).size),
                *_dose_cells(recalc[s], reported[s]),
                stats.describe(t[s])["mean"],
            ]
        )
    return [
        Table(
            "overview",
            "Survey files",
            [*text_columns("modality", "survey number", "file"), *number_columns("women", "studies", "exposures")],
            overview,
        ),
        Table(
            "views",
            "Dose and thickness per view (included exposures)",
            [
                *text_columns("modality", "view"),
                *number_columns("exposures"),
                *DOSE_COLUMNS,
                *number_columns("thickness mean (mm)", "thickness median (mm)", "kV mean", digits=1),
            ],
            views,
        ),
        Table(
            "mlo_50_60",
            "MLO views of 50–60 mm compressed thickness",
            [
                *text_columns("modality"),
                *number_columns("exposures", "women"),
                *DOSE_COLUMNS,
                *number_columns("thickness mean (mm)", digits=1),
            ],
            mlo,
        ),
        *exclusion_tables(cols, reasons),
    ]


def exclusion_tables(cols: dict, reasons: np.ndarray) -> list[Table]:
    """The exclusions counted by reason, and each excluded exposure."""
    excluded = np.flatnonzero(reasons != "")
    r_keys, r_counts = (
        np.unique(reasons[excluded].astype(str), return_counts=True)
        if excluded.size
        else (np.zeros(0, str), np.zeros(0, int))
    )
    order = np.argsort(-r_counts, kind="stable")
    ex_rows = [
        [
            C.iso(cols["study_date"][i]),
            cols["acquisition"][i] or "",
            cols["laterality"][i] or "",
            cols["view"][i] or "",
            cols["protocol"][i] or "",
            cols["anode"][i] or "",
            cols["filter_material"][i] or "",
            reasons[i],
        ]
        for i in excluded
    ]
    return [
        Table(
            "exclusion_reasons",
            "Exclusions by reason",
            [*text_columns("reason"), *number_columns("exposures")],
            [[r_keys[k], int(r_counts[k])] for k in order],
        ),
        Table(
            "excluded",
            "Excluded exposures",
            [
                *text_columns("study date", "acquisition", "laterality", "view"),
                *text_columns("protocol", wrap=True),
                *text_columns("anode", "filter"),
                *text_columns("reason", wrap=True),
            ],
            ex_rows,
        ),
    ]


def unit_plots(cols: dict, reasons: np.ndarray) -> tuple[dict, Table]:
    """Figures (data URIs, with their captions) of one unit's survey report, and the table of the curves
    fitted in them."""
    included = reasons == ""
    recalc, reported = C.recalc_mgd(cols), C.reported_agd(cols)
    use_recalc = bool(np.isfinite(recalc[included]).any())
    dose = recalc if use_recalc else reported
    dose_name = "MGD, recalculated (mGy)" if use_recalc else "AGD as reported (mGy)"
    figs = {}
    figs["scatter"], fits = _dose_scatter(cols, included, dose, dose_name)
    fig, axes = P.figure(3.0, 1)
    t = cols["compressed_thickness_mm"]
    sel = included & np.isfinite(t)
    P.histogram_groups(
        axes[0],
        t[sel],
        C.view_group(cols["view"][sel]),
        bins=np.arange(0, 131, 5),
        xlabel="compressed breast thickness (mm)",
        order=["CC", "MLO", "other"],
    )
    figs["thickness"] = {
        "uri": P.to_data_uri(fig),
        "caption": "Compressed thickness of the included exposures (2D and DBT), 5 mm bins.",
    }
    fit_table = Table(
        "fit",
        "Fitted curves MGD = a·exp(b·thickness)",
        [*text_columns("modality"), *number_columns("a (mGy)", "b (1/mm)", "n", "left out", "R² (log scale)")],
        fits,
        note="Least squares on ln(MGD); exposures more than a factor 2 from a first fit are "
        "left out of the second (e.g. 20 kV events).",
    )
    return figs, fit_table


def _dose_scatter(cols: dict, included: np.ndarray, dose: np.ndarray, dose_name: str) -> tuple[dict, list[list]]:
    """Dose against thickness per modality with the fitted curve (and the EU levels on 2D); the figure
    and the fit table's rows."""
    mod = C.modality(cols)
    t = cols["compressed_thickness_mm"]
    eu = eu_levels()
    fig, axes = P.figure(3.6, 2)
    fits = []
    for ax, m in zip(axes, MODALITIES):
        sel = included & (mod == m)
        ax.set_title(f"{m}")
        ax.set_xlabel("compressed breast thickness (mm)")
        ax.set_ylabel(dose_name)
        ok = sel & np.isfinite(dose) & np.isfinite(t)
        if not ok.any():
            P.no_data(ax, f"no {m} exposures with dose and thickness")
            continue
        P.scatter_groups(ax, t[ok], dose[ok], C.view_group(cols["view"][ok]), labels=["CC", "MLO", "other"])
        fit = stats.fit_exponential(t[ok], dose[ok])
        if fit is not None:
            xs = np.linspace(np.nanmin(t[ok]), np.nanmax(t[ok]), 100)
            ax.plot(xs, fit(xs), color="black", linewidth=1.5, label=f"fit {fit.a:.3g}·exp({fit.b:.4f}·t)")
            fits.append([m, f"{fit.a:.4g}", f"{fit.b:.5f}", fit.n, fit.n_outliers, f"{fit.r2:.3f}"])
        if m == "2D":
            xt = [r["thickness_mm"] for r in eu["rows"]]
            ax.plot(
                xt,
                [r["acceptable_mgy"] for r in eu["rows"]],
                "--",
                color=P.PALETTE[1],
                linewidth=1.2,
                marker="s",
                markersize=3,
                label=f"EU acceptable ({eu['status_short']})",
            )
            ax.plot(
                xt,
                [r["achievable_mgy"] for r in eu["rows"]],
                ":",
                color=P.PALETTE[2],
                linewidth=1.4,
                marker="^",
                markersize=3,
                label=f"EU achievable ({eu['status_short']})",
            )
        ax.set_ylim(bottom=0)
        ax.legend(frameon=False, fontsize=6.5, loc="upper left")
    n_shown = int(min(P.MAX_POINTS, (included & np.isfinite(dose) & np.isfinite(t)).sum()))
    figure = {
        "uri": P.to_data_uri(fig),
        "caption": (
            f"{dose_name.split(' (')[0]} against compressed thickness, included exposures by view; "
            f"black: least-squares fit of ln(MGD) on thickness (see the table). Dashed/dotted: {eu['label']} "
            f"for PMMA phantoms, plotted at the equivalent breast thickness — status: {eu['status_short']} "
            f"({eu['source']}). Up to {P.MAX_POINTS:,} points drawn per panel ({n_shown:,} here)."
        ),
    }
    return figure, fits
