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

import math
import re
import zlib
from typing import Optional

import numpy as np

from srdose.report import common as C
from srdose.report import stats

SURVEY_COLUMNS = ("Survey number", "Patient number", "View code", "kV", "Anode", "Filter", "Thickness", "mAs",
                  "large cassette used", "auto/man", "Auto mode", "Density setting", "Age", "Comment",
                  "AEC density mode")

VIEW_CODES = {"CC": "CC", "MLO": "OB", "ML": "ML", "LM": "LM", "LMO": "LMO", "FB": "FB", "SIO": "SIO",
              "ISO": "ISO", "XCCL": "XCCL", "XCCM": "XCCM"}

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
    key = f"{manufacturer or ''}|{model or ''}|{serial or ''}".encode("utf-8")
    return 100000 + 2 * (zlib.crc32(key) % 450000)


def parse_survey_numbers(entries) -> dict[str, int]:
    """``["SERIAL=NUMBER", ...]`` -> {serial: number}; ValueError on a bad entry."""
    out: dict[str, int] = {}
    for entry in entries or []:
        if "=" not in str(entry):
            raise ValueError(f"[report] survey_numbers entry {entry!r}: expected SERIAL=NUMBER")
        serial, number = str(entry).rsplit("=", 1)
        try:
            n = int(number.strip())
        except ValueError:
            raise ValueError(f"[report] survey_numbers entry {entry!r}: NUMBER must be a whole number") from None
        if n < 0:
            raise ValueError(f"[report] survey_numbers entry {entry!r}: NUMBER must not be negative")
        out[serial.strip()] = n
    return out


def survey_numbers(unit: dict, configured: dict[str, int]) -> tuple[int, int, str]:
    """(2D number, DBT number, 'configured' | 'default')."""
    if unit["serial"] in configured:
        n, how = configured[unit["serial"]], "configured"
    else:
        n, how = default_survey_number(unit["manufacturer"], unit["model"], unit["serial"]), "default"
    return n, n + 1, how


def _text_reason(protocol: Optional[str], label: Optional[str], modifiers: Optional[str]) -> str:
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
    mark(~np.isin(lat, ["L", "R", None, "", "B"]), "laterality not L or R")
    mark((view == None) | (view == ""), "no view")  # noqa: E711
    has_view = (view != None) & (view != "")  # noqa: E711
    mark(has_view & ~np.isin(view.astype(str), list(VIEW_CODES)), "view has no survey code")
    mark((cols["anode"] == None) | (cols["anode"] == ""), "no anode")  # noqa: E711
    mark((cols["filter_material"] == None) | (cols["filter_material"] == ""), "no filter")  # noqa: E711
    # protocol texts: decided once per distinct (protocol, label, view modifiers)
    cache: dict = {}
    text_reason = np.empty(n, dtype=object)
    for i, key in enumerate(zip(cols["protocol"], cols["label"], cols["view_modifiers"])):
        r = cache.get(key)
        if r is None:
            r = cache[key] = _text_reason(*key)
        text_reason[i] = r
    sel = (reason == "") & (text_reason != "")
    reason[sel] = text_reason[sel]
    inf = C.infeasible(cols)
    if inf.any():
        idx = np.flatnonzero(inf & (reason == ""))
        for i in idx:
            reason[i] = "infeasible value (" + ", ".join(C.infeasible_rules(cols["flags"][i])) + ")"
    mark(C.modality(cols) == "", "neither 2D nor DBT")
    return reason


def _num(value: float, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = f"{value:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _auto(protocol: Optional[str], label: Optional[str]) -> tuple[str, str]:
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


def _formatter(digits: int):
    cache: dict = {}

    def f(value) -> str:
        text = cache.get(value)
        if text is None:
            text = cache[value] = _num(value, digits)
        return text

    return f


def survey_rows(cols: dict, survey_number: int) -> list[list]:
    """The survey rows of ``cols`` (already the included events of one unit and modality, in order)."""
    n = cols["n"]
    if n == 0:
        return []
    patient = stats.sequence_number(cols["study_id"]).tolist()
    lat = cols["laterality"].astype(str)
    code = np.array([VIEW_CODES[v] for v in cols["view"]], dtype=object)
    views = np.char.add(lat.astype("U1"), code.astype(str))
    occ = stats.occurrence_number(cols["study_id"], views).tolist()
    views = views.tolist()
    kv, mm, mas = _formatter(2), _formatter(1), _formatter(2)
    auto_cache: dict = {}
    ages = [("" if not math.isfinite(a) else str(int(math.floor(a)))) for a in cols["age_years"].tolist()]
    rows = []
    for i, (v, k, t, m, anode, filt, prot, label) in enumerate(zip(
            views, cols["kvp"].tolist(), cols["compressed_thickness_mm"].tolist(), cols["mas"].tolist(),
            cols["anode"], cols["filter_material"], cols["protocol"], cols["label"])):
        am = auto_cache.get((prot, label))
        if am is None:
            am = auto_cache[(prot, label)] = _auto(prot, label)
        rows.append([survey_number, patient[i], f"{v}{occ[i]}" if occ[i] > 1 else v, kv(k), anode, filt, mm(t),
                     mas(m), "", am[0], am[1], "", ages[i], prot or "", ""])
    return rows


# --- the report ------------------------------------------------------------------------------


def _time_of_day(t: float) -> str:
    if not np.isfinite(t):
        return ""
    s = int(round(t % 86400.0))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _dose_stats(x) -> tuple:
    d = stats.describe(x)
    return d["n"], d["mean"], d["median"]


def unit_tables(cols: dict, reasons: np.ndarray, numbers: tuple[int, int], files: dict) -> dict:
    """The tables of one unit's survey report (pure: columns in, :class:`Table` objects out)."""
    from srdose.report.render import Table

    included = reasons == ""
    mod = C.modality(cols)
    recalc, reported = C.recalc_mgd(cols), C.reported_agd(cols)
    t = cols["compressed_thickness_mm"]
    overview, views, mlo = [], [], []
    for m, number in (("2D", numbers[0]), ("DBT", numbers[1])):
        sel = included & (mod == m)
        women = np.unique(cols["woman"][sel & (cols["woman"] >= 0)]).size
        studies = np.unique(cols["study_id"][sel]).size
        overview.append([m, str(number), files.get(m, "(no exposures)"), int(women), int(studies), int(sel.sum())])
        if not sel.any():
            continue
        present = set(cols["view"][sel].tolist())
        for v in [v for v in C.VIEW_ORDER if v in present]:
            s = sel & (cols["view"] == v)
            nr, mr, medr = _dose_stats(recalc[s])
            np_, mp, medp = _dose_stats(reported[s])
            views.append([m, v, int(s.sum()), nr, mr, medr, np_, mp, medp, stats.describe(t[s])["mean"],
                          stats.describe(t[s])["median"], stats.describe(cols["kvp"][s])["mean"]])
        s = sel & (cols["view"] == "MLO") & stats.in_band(t, 50, 60)
        nr, mr, medr = _dose_stats(recalc[s])
        np_, mp, medp = _dose_stats(reported[s])
        mlo.append([m, int(s.sum()), int(np.unique(cols["woman"][s & (cols["woman"] >= 0)]).size),
                    nr, mr, medr, np_, mp, medp, stats.describe(t[s])["mean"]])
    excluded = np.flatnonzero(~included)
    r_keys, r_counts = np.unique(reasons[excluded].astype(str), return_counts=True) if excluded.size \
        else (np.zeros(0, str), np.zeros(0, int))
    order = np.argsort(-r_counts, kind="stable")
    ex_rows = [[C.iso(cols["study_date"][i]), cols["acquisition"][i] or "",
                cols["laterality"][i] or "", cols["view"][i] or "", cols["protocol"][i] or "",
                cols["anode"][i] or "", cols["filter_material"][i] or "", reasons[i]] for i in excluded]
    return {
        "overview": Table("overview", "Survey files", ["modality", "survey number", "file", "women", "studies",
                                                      "exposures"], overview, numeric=(3, 4, 5)),
        "views": Table("views", "Dose and thickness per view (included exposures)",
                       ["modality", "view", "exposures", "n recalc", "MGD recalc mean (mGy)",
                        "MGD recalc median (mGy)", "n reported", "AGD reported mean (mGy)",
                        "AGD reported median (mGy)", "thickness mean (mm)", "thickness median (mm)",
                        "kV mean"], views, numeric=tuple(range(2, 12)), digits={9: 1, 10: 1, 11: 1}),
        "mlo_50_60": Table("mlo_50_60", "MLO views of 50–60 mm compressed thickness",
                           ["modality", "exposures", "women", "n recalc", "MGD recalc mean (mGy)",
                            "MGD recalc median (mGy)", "n reported", "AGD reported mean (mGy)",
                            "AGD reported median (mGy)", "thickness mean (mm)"], mlo, numeric=tuple(range(1, 10)),
                           digits={9: 1}),
        "exclusion_reasons": Table("exclusion_reasons", "Exclusions by reason", ["reason", "exposures"],
                                   [[r_keys[k], int(r_counts[k])] for k in order], numeric=(1,)),
        "excluded": Table("excluded", "Excluded exposures",
                          ["study date", "acquisition", "laterality", "view", "protocol", "anode", "filter",
                           "reason"], ex_rows, wrap=(4, 7)),
    }


def unit_plots(cols: dict, reasons: np.ndarray) -> dict:
    """Figures (data URIs) of one unit's survey report, with their captions."""
    from srdose.report import plots as P
    from srdose.report.reference import eu_levels

    included = reasons == ""
    mod = C.modality(cols)
    recalc, reported = C.recalc_mgd(cols), C.reported_agd(cols)
    use_recalc = bool(np.isfinite(recalc[included]).any())
    dose = recalc if use_recalc else reported
    dose_name = "MGD, recalculated (mGy)" if use_recalc else "AGD as reported (mGy)"
    t = cols["compressed_thickness_mm"]
    eu = eu_levels()
    out = {}
    fig, axes = P.figure(3.6, 2)
    fits = []
    for ax, m in zip(axes, ("2D", "DBT")):
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
            ax.plot(xs, fit(xs), color="black", linewidth=1.5,
                    label=f"fit {fit.a:.3g}·exp({fit.b:.4f}·t)")
            fits.append([m, f"{fit.a:.4g}", f"{fit.b:.5f}", fit.n, fit.n_outliers, f"{fit.r2:.3f}"])
        if m == "2D":
            xt = [r["thickness_mm"] for r in eu["rows"]]
            ax.plot(xt, [r["acceptable_mgy"] for r in eu["rows"]], "--", color=P.PALETTE[1], linewidth=1.2,
                    marker="s", markersize=3, label=f"EU acceptable ({eu['status_short']})")
            ax.plot(xt, [r["achievable_mgy"] for r in eu["rows"]], ":", color=P.PALETTE[2], linewidth=1.4,
                    marker="^", markersize=3, label=f"EU achievable ({eu['status_short']})")
        ax.set_ylim(bottom=0)
        ax.legend(frameon=False, fontsize=6.5, loc="upper left")
    n_shown = int(min(P.MAX_POINTS, (included & np.isfinite(dose) & np.isfinite(t)).sum()))
    out["scatter"] = {
        "uri": P.to_data_uri(fig),
        "caption": (f"{dose_name.split(' (')[0]} against compressed thickness, included exposures by view; "
                    f"black: least-squares fit of ln(MGD) on thickness (see the table). Dashed/dotted: {eu['label']} for PMMA "
                    f"phantoms, plotted at the equivalent breast thickness — status: {eu['status_short']} "
                    f"({eu['source']}). Up to {P.MAX_POINTS:,} points drawn per panel ({n_shown:,} here)."),
    }
    fig, axes = P.figure(3.0, 1)
    sel = included & np.isfinite(t)
    P.histogram_groups(axes[0], t[sel], C.view_group(cols["view"][sel]), bins=np.arange(0, 131, 5),
                       xlabel="compressed breast thickness (mm)", order=["CC", "MLO", "other"])
    out["thickness"] = {"uri": P.to_data_uri(fig),
                        "caption": "Compressed thickness of the included exposures (2D and DBT), 5 mm bins."}
    from srdose.report.render import Table

    out["fit_table"] = Table("fit", "Fitted curves MGD = a·exp(b·thickness)", ["modality", "a (mGy)", "b (1/mm)",
                                                                               "n", "left out", "R² (log scale)"],
                          fits, numeric=(1, 2, 3, 4, 5),
                          note="Least squares on ln(MGD); exposures more than a factor 2 from a first fit are "
                               "left out of the second (e.g. 20 kV events).")
    return out
