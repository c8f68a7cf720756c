"""Plots of the reports: matplotlib (Agg), returned as base64 PNG data URIs for embedding.

Sized for an A4 page (17 cm printable width), axis labels with units.
matplotlib is imported on the first figure, so that importing the reports
(and ``srdose --help``) stays fast.
Scatter plots draw at most :data:`MAX_POINTS` points (a fixed random
sample, stated in the caption by the caller); statistics and fitted curves
always use every point.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

MAX_POINTS = 10000
WIDTH_IN = 6.7  # 17 cm


#: Longest label drawn from the data (a 250-character serial would squeeze the axes to nothing).
LABEL_MAX = 60


def mpl_text(text: str, limit: int = LABEL_MAX) -> str:
    """Text for a matplotlib label: no mathtext (a '$' pair in a unit name would be parsed), no
    control characters, at most ``limit`` characters."""
    text = str(text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return "".join("?" if ord(ch) < 32 or ord(ch) == 127 else ch for ch in text).replace("$", r"\$")


PALETTE = ["#1f4e79", "#c0504d", "#4f8f3a", "#8064a2", "#e69138", "#3d85c6", "#7f6000", "#666666"]

STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 100,
    "svg.fonttype": "none",
}


@lru_cache(maxsize=1)
def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed) with the reports' style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(STYLE)
    return plt


def figure(height_in: float = 3.4, ncols: int = 1):
    # constrained layout fits labels in the one draw savefig makes anyway;
    # tight_layout would draw the figure a second time
    fig, axes = pyplot().subplots(1, ncols, figsize=(WIDTH_IN, height_in), squeeze=False, layout="constrained")
    return fig, list(axes[0])


def to_data_uri(fig, dpi: int = 130) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def sample_index(n: int, limit: int = MAX_POINTS, seed: int = 0) -> np.ndarray:
    """Indices of at most ``limit`` of ``n`` points (a fixed random sample, sorted)."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def no_data(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#888")
    ax.set_xticks([])
    ax.set_yticks([])


def scatter_groups(ax, x, y, groups, labels: Sequence[str] | None = None, size: float = 2.4, alpha: float = 0.6) -> int:
    """Scatter coloured by group (sampled); returns the number of points drawn."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    groups = np.asarray(groups).astype(str)
    ok = np.isfinite(x) & np.isfinite(y)
    idx = np.flatnonzero(ok)
    idx = idx[sample_index(idx.size)]
    names = labels if labels is not None else sorted(set(groups[idx].tolist()))
    for k, name in enumerate(names):
        sel = idx[groups[idx] == name]
        if sel.size:
            # markers of a line: several times faster to draw than a PathCollection
            ax.plot(
                x[sel],
                y[sel],
                "o",
                markersize=size,
                alpha=alpha,
                markeredgewidth=0,
                color=PALETTE[k % len(PALETTE)],
                label=mpl_text(f"{name} (n={int((groups[ok] == name).sum()):,})"),
            )
    return int(idx.size)


def boxplot_groups(
    ax, values, groups, order: Sequence | None = None, ylabel: str = "", xlabel: str = "", min_n: int = 1
) -> None:
    """Box plot per group (whiskers 1.5 IQR, no outlier markers), n under each label."""
    values = np.asarray(values, float)
    groups = np.asarray(groups).astype(str)
    ok = np.isfinite(values)
    names = list(order) if order is not None else sorted(set(groups[ok].tolist()))
    data = [values[ok & (groups == str(name))] for name in names]
    keep = [k for k, v in enumerate(data) if v.size >= min_n]
    boxplot_values(ax, [data[k] for k in keep], [names[k] for k in keep], ylabel=ylabel, xlabel=xlabel)


def boxplot_values(ax, data: Sequence[np.ndarray], names: Sequence, ylabel: str = "", xlabel: str = "") -> None:
    """Box plot per group of ``data`` (the values of each group, NaN left out), named ``names``:
    whiskers 1.5 IQR, no outlier markers, n under each label."""
    data = [v[np.isfinite(v)] for v in data]
    keep = [k for k, v in enumerate(data) if v.size]
    if not keep:
        no_data(ax)
        return
    # group names come from the data; their own line breaks (target/filter over modality) stay
    labels = ["\n".join(mpl_text(part) for part in str(names[k]).split("\n")) + f"\nn={data[k].size:,}" for k in keep]
    ax.boxplot(
        [data[k] for k in keep],
        showfliers=False,
        widths=0.6,
        medianprops={"color": PALETTE[1], "linewidth": 1.5},
        boxprops={"color": PALETTE[0]},
        whiskerprops={"color": PALETTE[0]},
        capprops={"color": PALETTE[0]},
    )
    ax.set_xticks(range(1, len(labels) + 1), labels)
    ax.set_ylabel(ylabel)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", visible=False)


def histogram_groups(
    ax, values, groups, bins, xlabel: str, order: Sequence | None = None, stacked: bool = False
) -> None:
    values = np.asarray(values, float)
    groups = np.asarray(groups).astype(str)
    ok = np.isfinite(values)
    names = list(order) if order is not None else sorted(set(groups[ok].tolist()))
    data = [values[ok & (groups == n)] for n in names]
    keep = [(n, d) for n, d in zip(names, data) if d.size]
    if not keep:
        no_data(ax)
        return
    ax.hist(
        [d for _, d in keep],
        bins=bins,
        stacked=stacked,
        histtype="barstacked" if stacked else "step",
        linewidth=1.4,
        color=[PALETTE[names.index(n) % len(PALETTE)] for n, _ in keep],
        label=[mpl_text(f"{n} (n={d.size:,})") for n, d in keep],
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("exposures")
    ax.legend(frameon=False)
