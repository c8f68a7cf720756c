"""Validation report of srdose's Monte Carlo against the public Dance factors: Markdown with PNG plots.

    python3 bench/bench_montecarlo.py > reports/mc-validation/bench.txt
    python3 tools/mc_report.py --tables srdose/physics/tables \
        --out reports/mc-validation.md --bench-output reports/mc-validation/bench.txt \
        --notes reports/mc-validation-notes.md

Reads the generated tables (and their raw responses), runs a few small extra
Monte Carlo variants for the sensitivity study (seeded), writes the Markdown
with its plots under ``mc-validation/`` beside it. A tool of the repository,
not of the installed package: it documents how the shipped tables were checked.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from srdose.physics.io import load_public_factors, read_commented_csv  # noqa: E402
from srdose.physics.montecarlo import conversion, materials, spectra, systems, tables, transport  # noqa: E402

#: Published s factors per target/filter (Dance et al. 2000; W/Ag from the Dance et al. 2009 abstract).
PUBLISHED_S = {"Mo/Rh": 1.017, "Rh/Rh": 1.061, "Rh/Al": 1.044, "W/Rh": 1.042, "W/Ag": 1.042}
#: Folder of the plots, beside the Markdown; the Markdown links them relative to itself.
PLOTS = "mc-validation"


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    """Header comment lines and rows of a generated table."""
    table = read_commented_csv(path)
    return list(table.comments), table.rows


def md_table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def save_plot(fig, plot_dir: Path, name: str, alt: str) -> list[str]:
    """The figure written as ``<name>.png`` and closed; the Markdown lines that show it."""
    fig.tight_layout()
    fig.savefig(plot_dir / f"{name}.png", dpi=120)
    plt.close(fig)
    return [f"![{alt}]({PLOTS}/{name}.png)", ""]


# --- g -------------------------------------------------------------------------------------


@dataclass
class GComparison:
    """Our g table against the published one, cell by cell (rows: HVL, columns: thickness)."""

    hvls: list[float]
    ths: list[float]
    ours: np.ndarray
    published: np.ndarray
    dev: np.ndarray  # ours / published - 1, %
    unc: np.ndarray  # statistical uncertainty of ours, %, 1 s.d.
    flagged: np.ndarray  # doubtful cells of the public copy
    spectra_used: dict  # HVL -> spectrum label

    @property
    def ok(self) -> np.ndarray:
        return ~self.flagged


def compare_g(g_rows: list[dict], public: dict) -> GComparison:
    hvls, ths = systems.G_TABLE_HVL_MM_AL, systems.G_TABLE_THICKNESS_CM
    dev = np.full((len(hvls), len(ths)), np.nan)
    unc = np.full_like(dev, np.nan)
    ours = np.full_like(dev, np.nan)
    flagged = np.zeros(dev.shape, dtype=bool)
    spectra_used = {}
    for r in g_rows:
        if round(float(r["hvl_mm_al"]), 2) not in hvls or float(r["thickness_cm"]) not in ths:
            continue  # the extension beyond the published table: compared in the MGD dossier
        i = hvls.index(round(float(r["hvl_mm_al"]), 2))
        j = ths.index(float(r["thickness_cm"]))
        ours[i, j] = float(r["g"])
        unc[i, j] = 100 * float(r["g_rel_unc"])
        dev[i, j] = float(r["deviation_pct"])
        flagged[i, j] = bool(r["public_copy_flag"])
        spectra_used[hvls[i]] = r["spectrum"]
    published = np.array(public["g_factor"]["values_rows_hvl_cols_thickness"])
    return GComparison(hvls, ths, ours, published, dev, unc, flagged, spectra_used)


def g_section(gc: GComparison) -> list[str]:
    """Section 1: the statistics of the deviations, the cell tables and the misses."""
    hvls, ths, dev, ok, flagged = gc.hvls, gc.ths, gc.dev, gc.ok, gc.flagged
    within = int(np.sum(np.abs(dev[ok]) <= 3.0))
    lines = ["## 1. g (50 % glandular) against the published g table", ""]
    lines += [
        f"Cells compared: {dev.size} ({int(flagged.sum())} flagged as doubtful by the "
        "public copy itself, excluded from the statistics below). Statistical uncertainty of every g cell: "
        f"max {np.nanmax(gc.unc):.2f} %, median {np.nanmedian(gc.unc):.2f} % (1 s.d.).",
        "",
    ]
    lines += [
        f"* median deviation (unflagged): **{np.median(dev[ok]):+.2f} %** (target within +-1.5 %)",
        f"* mean {np.mean(dev[ok]):+.2f} %, min {np.min(dev[ok]):+.2f} %, max {np.max(dev[ok]):+.2f} %",
        f"* cells within +-3 %: **{within} of {int(ok.sum())}**",
        "",
    ]
    lines += ["Deviation (ours / published - 1, %) cell by cell; * = flagged cell of the public copy:", ""]
    header = ["HVL \\ cm"] + [f"{t:g}" for t in ths]
    rows = [
        [f"{h:.2f}"] + [f"{dev[i, j]:+.1f}{'*' if flagged[i, j] else ''}" for j in range(len(ths))]
        for i, h in enumerate(hvls)
    ]
    lines += [md_table(header, rows), ""]
    lines += ["Our g values:", ""]
    rows = [[f"{h:.2f}"] + [f"{gc.ours[i, j]:.4g}" for j in range(len(ths))] for i, h in enumerate(hvls)]
    lines += [md_table(header, rows), ""]
    lines += [
        "Spectra used per HVL row (Mo/Mo 0.03 mm, 1 mm Be, no paddle; rule fixed in "
        "systems.momo_spectrum_for_hvl before the comparison):",
        "",
    ]
    lines += [f"* {h:.2f} mm Al: {s}" for h, s in gc.spectra_used.items()] + [""]
    misses = [
        (hvls[i], ths[j], dev[i, j])
        for i in range(len(hvls))
        for j in range(len(ths))
        if ok[i, j] and abs(dev[i, j]) > 3.0
    ]
    if misses:
        lines += [
            "Unflagged cells outside +-3 %: " + ", ".join(f"g({h:.2f}, {t:g} cm) {d:+.1f} %" for h, t, d in misses),
            "",
        ]
    return lines + suspect_cells(gc)


def suspect_cells(gc: GComparison) -> list[str]:
    """The doubtful cells of the public copy against their unflagged neighbours."""
    hvls, ths, dev, ok = gc.hvls, gc.ths, gc.dev, gc.ok
    lines = ["### The doubtful cells of the public copy", ""]
    rows = []
    for (h, t), why in tables.SUSPECT_G_CELLS.items():
        i, j = hvls.index(h), ths.index(t)
        neigh = [
            dev[a, b]
            for a, b in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1))
            if 0 <= a < len(hvls) and 0 <= b < len(ths) and ok[a, b]
        ]
        rows.append(
            [
                f"g({h:.2f}, {t:g} cm)",
                f"{dev[i, j]:+.2f} %",
                f"{np.median(neigh):+.2f} %",
                f"{dev[i, j] - np.median(neigh):+.2f} %",
                why,
            ]
        )
    lines += [md_table(["cell", "our deviation", "median of unflagged neighbours", "step", "note"], rows), ""]
    lines += [
        "A copying error shows as a step between a cell's deviation and its neighbours' that the "
        "smooth Monte Carlo cannot produce (statistical uncertainty ~0.1-0.2 %).",
        "",
    ]
    return lines


def g_plots(gc: GComparison, plot_dir: Path) -> list[str]:
    """The deviation map and the g curves against the published points."""
    hvls, ths, dev, flagged = gc.hvls, gc.ths, gc.dev, gc.flagged
    fig, ax = plt.subplots(figsize=(8, 4))
    im = ax.imshow(dev, cmap="RdBu_r", vmin=-6, vmax=6, aspect="auto")
    ax.set_xticks(range(len(ths)), [f"{t:g}" for t in ths])
    ax.set_yticks(range(len(hvls)), [f"{h:.2f}" for h in hvls])
    for i in range(len(hvls)):
        for j in range(len(ths)):
            ax.text(j, i, f"{dev[i, j]:+.1f}{'*' if flagged[i, j] else ''}", ha="center", va="center", fontsize=7)
    ax.set_xlabel("thickness (cm)")
    ax.set_ylabel("HVL (mm Al)")
    ax.set_title("g: srdose MC vs public copy of Dance's table (%)")
    fig.colorbar(im, ax=ax)
    lines = save_plot(fig, plot_dir, "g_deviation", "g deviation")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, h in enumerate(hvls):
        (line,) = ax.plot(ths, gc.ours[i], "-", label=f"MC {h:.2f}")
        ax.plot(ths, gc.published[i], "o", color=line.get_color(), ms=4)
    ax.set_yscale("log")
    ax.set_xlabel("thickness (cm)")
    ax.set_ylabel("g (mGy/mGy)")
    ax.set_title("g: lines = srdose MC, dots = public copy")
    ax.legend(fontsize=7, ncol=2)
    return lines + save_plot(fig, plot_dir, "g_curves", "g curves")


# --- sensitivity ---------------------------------------------------------------------------


def _variant_g(thicknesses, fluence, photons: int, seed: int, ash: dict | None = None, **geom_kw) -> list[float]:
    """g for a model variant (ash representation or geometry), seeded."""
    saved = (dict(materials.ADIPOSE_HAMMERSTEIN), dict(materials.GLANDULAR_HAMMERSTEIN))
    try:
        if ash is not None:
            for comp, frac in ((materials.ADIPOSE_HAMMERSTEIN, 0.001), (materials.GLANDULAR_HAMMERSTEIN, 0.005)):
                for el in [e for e in comp if e not in ("H", "C", "N", "O")]:
                    del comp[el]
                for el, f in ash.items():
                    comp[el] = frac * f
                if not ash:  # ash left out: renormalise H, C, N, O
                    tot = sum(comp.values())
                    for el in comp:
                        comp[el] /= tot
        media = transport.make_media(0.5)
        out = []
        for t in thicknesses:
            geom = transport.BreastGeometry(thickness_cm=t, **geom_kw)
            tal = transport.simulate(
                geom, spectra.BIN_CENTRES_KEV, conversion.sampling_weights(fluence), photons, seed, media=media
            )
            r = conversion.response_from_tally(geom, tal, geom.central_mass_g(media.mixture.density), seed)
            out.append(conversion.dose_per_kerma(r, fluence)[0])
        return out
    finally:
        materials.ADIPOSE_HAMMERSTEIN.clear()
        materials.ADIPOSE_HAMMERSTEIN.update(saved[0])
        materials.GLANDULAR_HAMMERSTEIN.clear()
        materials.GLANDULAR_HAMMERSTEIN.update(saved[1])


def _deviations(resp: dict, fluence, gc: GComparison, h: float) -> str:
    """Median (range) over the unflagged thicknesses of g folded with ``fluence`` against the published g."""
    pub = {(hv, t): gc.published[i, j] for i, hv in enumerate(gc.hvls) for j, t in enumerate(gc.ths)}
    d = [
        100 * (conversion.dose_per_kerma(resp[(t, 0.5, 0.0)], fluence)[0] / pub[(h, t)] - 1)
        for t in gc.ths
        if (round(h, 2), t) not in tables.SUSPECT_G_CELLS
    ]
    return f"{np.median(d):+.1f} ({min(d):+.1f}..{max(d):+.1f})"


def spectrum_sensitivity(resp: dict, gc: GComparison) -> list[str]:
    """The same responses folded with Mo/Mo spectra of each HVL made at other tube voltages."""
    rows = []
    for h in gc.hvls:
        cells = []
        for kv in (24, 26, 28, 30, 32):
            try:
                sp = spectra.spectrum_for_hvl("Mo", "Mo", 0.03, kv, h, paddle_pmma_mm=systems.MOMO_REFERENCE_PADDLE_MM)
            except ValueError:
                cells.append("-")
                continue
            cells.append(_deviations(resp, sp.fluence, gc, h))
        try:  # the first choice, with a 3 mm PMMA paddle (HVL 0.30 then forces 24 kV)
            sp = spectra.spectrum_for_hvl("Mo", "Mo", 0.03, 28.0, h)
        except ValueError:
            sp = spectra.spectrum_for_hvl("Mo", "Mo", 0.03, 24.0, h)
        cells.append(f"{_deviations(resp, sp.fluence, gc, h)} [{sp.label}]")
        rows.append([f"{h:.2f}"] + cells)
    lines = [
        "Spectrum: the same Monte Carlo responses folded with Mo/Mo spectra of the same HVL made "
        "at other tube voltages (more or less added Al). Median (range) of the deviation over the "
        "unflagged thicknesses, %:",
        "",
    ]
    return lines + [
        md_table(["HVL", "24 kV", "26 kV", "28 kV", "30 kV", "32 kV", "with 3 mm PMMA paddle (first choice)"], rows),
        "",
    ]


def model_variants(resp: dict | None, sens_photons: int) -> list[str]:
    """g at HVL 0.40 mm Al of a few model variants, against the baseline model."""
    sp40 = systems.momo_spectrum_for_hvl(0.40)
    th3 = (2.0, 5.0, 8.0)
    base = _variant_g(th3, sp40.fluence, sens_photons, 99)
    variants = [
        ("ash as P, S, K, Ca (equal)", dict(ash=materials.ASH_VARIANTS["P,S,K,Ca equal"])),
        ("ash left out (H, C, N, O renormalised)", dict(ash={})),
        ("adipose layer 4 mm", dict(adipose_layer_cm=0.4)),
        ("focus 60 cm above the support", dict(source_height_cm=60.0)),
        ("breast radius 10 cm", dict(radius_cm=10.0)),
    ]
    rows = [["baseline (ash as P, 5 mm, 65 cm, R 8 cm, no paddle)"] + [f"{b:.4f}" for b in base]]
    for name, kw in variants:
        v = _variant_g(th3, sp40.fluence, sens_photons, 99, **kw)
        rows.append([name] + [f"{100 * (a / b - 1):+.2f} %" for a, b in zip(v, base)])
    if resp is not None:  # with the paddle: a spectrum of the same HVL through 3 mm PMMA
        f_p = spectra.spectrum_for_hvl("Mo", "Mo", 0.03, 28.0, 0.40)
        v = [conversion.dose_per_kerma(resp[(t, 0.5, 0.0)], f_p.fluence)[0] for t in th3]
        tab_base = [conversion.dose_per_kerma(resp[(t, 0.5, 0.0)], sp40.fluence)[0] for t in th3]
        rows.append(
            [f"3 mm PMMA paddle in the spectrum ({f_p.label})"]
            + [f"{100 * (a / b - 1):+.2f} %" for a, b in zip(v, tab_base)]
        )
    lines = [
        f"Model variants at HVL 0.40 mm Al ({sp40.label}); {sens_photons:,} photons each, "
        "same seed; first row g, others change relative to it:",
        "",
    ]
    return lines + [md_table(["variant", "2 cm", "5 cm", "8 cm"], rows), ""]


def sensitivity_section(tables_dir: Path, gc: GComparison, sens_photons: int) -> list[str]:
    """Section 2: what moves g (not used to adjust anything)."""
    lines = ["## 2. What moves g (sensitivity, not used to adjust anything)", ""]
    resp_path = tables_dir / "responses.npz"
    resp = tables.load_responses(resp_path) if resp_path.exists() else None
    if resp is not None:
        lines += spectrum_sensitivity(resp, gc)
    return lines + model_variants(resp, sens_photons)


# --- s, c, DBT, uncertainty ----------------------------------------------------------------


def s_section(tables_dir: Path) -> list[str]:
    """Section 3: our s per beam (mean over kV and 2-8 cm) against the published single values."""
    _, s_rows = read_csv(tables_dir / "s_factors.csv")
    lines = ["## 3. s against the published s factors", ""]
    lines += [
        "Ours: mean over the tabulated tube voltages and thicknesses 2-8 cm (range in brackets); the "
        "published values are single numbers per target/filter (public copy of Dance et al. 2000; "
        "W/Ag from the Dance et al. 2009 abstract).",
        "",
    ]
    by: dict[str, list] = {}
    for r in s_rows:
        if r["s"] and 2.0 <= float(r["thickness_cm"]) <= 8.0:
            by.setdefault(f"{r['target']}/{r['filter']} {r['filter_mm']} mm", []).append(float(r["s"]))
    rows, s_dev = [], []
    for name, vals in by.items():
        tf = name.split()[0]
        pubv = PUBLISHED_S.get(tf) if not tf.startswith("W/Al") else None
        mean = float(np.mean(vals))
        d = "" if pubv is None else f"{100 * (mean / pubv - 1):+.2f} %"
        if pubv is not None:
            s_dev.append((name, 100 * (mean / pubv - 1)))
        rows.append([name, f"{mean:.3f}", f"{min(vals):.3f}-{max(vals):.3f}", "" if pubv is None else f"{pubv:.3f}", d])
    lines += [md_table(["beam", "our s (mean)", "range", "published", "difference"], rows), ""]
    if s_dev:
        lines += [
            "Largest |difference| against a published s: " + f"{max(abs(d) for _, d in s_dev):.2f} % (target +-1.5 %).",
            "",
        ]
    return lines


def c_section(tables_dir: Path, plot_dir: Path) -> list[str]:
    """Section 4: c of the typical breasts of women aged 50-64, table and plot."""
    _, ct = read_csv(tables_dir / "c_typical.csv")
    lines = ["## 4. c for typical breasts, women aged 50-64", ""]
    rows = []
    tlist = sorted({float(r["thickness_cm"]) for r in ct})
    for t in tlist:
        sel = [r for r in ct if r["age_group"] == "50-64" and float(r["thickness_cm"]) == t]
        rows.append(
            [f"{t:g}", f"{100 * float(sel[0]['typical_glandularity']):g} %"] + [f"{float(r['c']):.3f}" for r in sel]
        )
    hv = [r["hvl_mm_al"] for r in ct if r["age_group"] == "50-64" and float(r["thickness_cm"]) == tlist[0]]
    lines += [md_table(["cm", "glandularity"] + [f"HVL {h}" for h in hv], rows), ""]
    lines += [
        "Trends expected from Dance et al. 2000: c < 1 for thin breasts (glandularity above 50 %), "
        "c = 1 where the typical glandularity is 50 %, c > 1 and rising with thickness as typical "
        "glandularity falls, and only a weak HVL dependence that grows with thickness. Check "
        "against the table: see the plot.",
        "",
    ]
    fig, ax = plt.subplots(figsize=(7, 4))
    for h in ("0.30", "0.40", "0.50", "0.60"):
        xs = [float(r["thickness_cm"]) for r in ct if r["age_group"] == "50-64" and r["hvl_mm_al"] == h]
        ys = [float(r["c"]) for r in ct if r["age_group"] == "50-64" and r["hvl_mm_al"] == h]
        ax.plot(xs, ys, "o-", label=f"HVL {h}")
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.set_xlabel("thickness (cm)")
    ax.set_ylabel("c (typical breast, 50-64)")
    ax.legend()
    return lines + save_plot(fig, plot_dir, "c_typical_50_64", "c typical")


def dbt_section(tables_dir: Path, plot_dir: Path) -> list[str]:
    """Section 5: T of each sweep at its middle tube voltage, and t(theta) of one beam."""
    _, tt = read_csv(tables_dir / "dbt_t_theta.csv")
    _, big_t = read_csv(tables_dir / "dbt_T.csv")
    lines = ["## 5. Tomosynthesis t(theta) and T", ""]
    rows = []
    for sw in systems.DBT_SWEEPS:
        mid = str(sw.beam.kvs[len(sw.beam.kvs) // 2])
        sel = {float(r["thickness_cm"]): r for r in big_t if r["system"] == sw.system and r["kv"] == mid}
        rows.append(
            [sw.system, f"{sw.arc_deg:g} deg / {len(sw.angles_deg)}", f"{sw.beam.name} {mid} kV"]
            + [f"{float(sel[t]['T']):.3f}" for t in (2.0, 4.0, 6.0, 8.0, 11.0)]
            + ["yes" if sw.verified else "**not checked against an RDSR**"]
        )
    lines += [md_table(["system", "sweep", "beam", "2 cm", "4 cm", "6 cm", "8 cm", "11 cm", "geometry"], rows), ""]
    fig, ax = plt.subplots(figsize=(7, 4))
    for t in (2.0, 5.0, 8.0, 11.0):
        sel = sorted(
            (float(r["angle_deg"]), float(r["t"]))
            for r in tt
            if (r["target"], r["filter"], r["kv"]) == ("W", "Rh", "31") and float(r["thickness_cm"]) == t
        )
        ax.plot([a for a, _ in sel], [v for _, v in sel], "o-", ms=3, label=f"{t:g} cm")
    ax.set_xlabel("projection angle (deg)")
    ax.set_ylabel("t(theta)")
    ax.set_title("t(theta), W/Rh 0.05 mm, 31 kV beam, 50 % glandular")
    ax.legend()
    lines += save_plot(fig, plot_dir, "t_theta", "t theta")
    lines += [
        "No public t or T values were available to compare with. Physical checks: t(0) = 1 by definition, "
        "t falls with angle (longer oblique paths, larger distance from the focus to the breast's far side) "
        "and falls faster for thicker breasts.",
        "",
    ]
    return lines


def uncertainty_section(tables_dir: Path) -> list[str]:
    """The largest and median statistical uncertainty of each table."""
    lines = ["## Statistical uncertainty of the tables (1 s.d., relative)", ""]
    rows = []
    for name, col in (
        ("g_factors", "g_rel_unc"),
        ("c_factors", "c_rel_unc"),
        ("c_typical", "c_rel_unc"),
        ("s_factors", "s_rel_unc"),
        ("dbt_t_theta", "t_rel_unc"),
        ("dbt_T", "T_rel_unc"),
    ):
        _, rr = read_csv(tables_dir / f"{name}.csv")
        v = [float(r[col]) for r in rr if r[col]]
        rows.append([f"{name}.csv", len(rr), f"{100 * max(v):.3f} %", f"{100 * statistics.median(v):.3f} %"])
    lines += [md_table(["table", "rows", "max", "median"], rows), ""]
    lines += [
        "Target: <= 0.5 % for every tabulated factor. Ratios (c, t, T) use quadrature of independent "
        "runs (conservative); s uses the exact per-bin delta method on one run.",
        "",
    ]
    return lines


# --- the report ----------------------------------------------------------------------------


def build_report(
    tables_dir: Path, out_md: Path, bench_text: str | None, sens_photons: int = 1_500_000, notes: str | None = None
) -> None:
    tables_dir = Path(tables_dir)
    plot_dir = out_md.parent / PLOTS
    plot_dir.mkdir(parents=True, exist_ok=True)
    header, g_rows = read_csv(tables_dir / "g_factors.csv")
    lines = ["# Monte Carlo validation: srdose vs the public Dance factors", ""]
    lines += [f"Generated by `python3 tools/mc_report.py` from the tables in `{tables_dir}`. Table provenance:", ""]
    lines += [f"    {h}" for h in header if not h.startswith("table:")]
    lines += [""]
    gc = compare_g(g_rows, load_public_factors())
    lines += g_section(gc)
    lines += g_plots(gc, plot_dir)
    lines += sensitivity_section(tables_dir, gc, sens_photons)
    lines += s_section(tables_dir)
    lines += c_section(tables_dir, plot_dir)
    lines += dbt_section(tables_dir, plot_dir)
    lines += uncertainty_section(tables_dir)
    if bench_text:
        lines += ["## 6. Speed", "", "```", bench_text.strip(), "```", ""]
    if notes:
        lines += [notes.strip(), ""]
    out_md.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--bench-output", type=Path, default=None)
    ap.add_argument("--sens-photons", type=int, default=1_500_000)
    ap.add_argument("--notes", type=Path, default=None, help="Markdown appended as the discussion section.")
    a = ap.parse_args()
    bench = a.bench_output.read_text() if a.bench_output else None
    notes = a.notes.read_text() if a.notes else None
    build_report(a.tables, a.out, bench, a.sens_photons, notes)


if __name__ == "__main__":
    main()
