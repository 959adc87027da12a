"""What every figure shares: the style sheet, axis labels, budget colours and their key, log-axis
ticks, and the atomic writer of figures.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from nanogpt import atomic

LOSS_LABEL = "Final validation loss (nats/token)"


def loss_label(fits: dict | None) -> str:
    """The loss axis' label in the unit the fits object says the table uses."""
    unit = (fits or {}).get("convention", {}).get("loss_unit", "nats/token")
    return f"Final validation loss ({unit})"


def flops_label(fits: dict | None, convention: str) -> str:
    """How the compute axis counts FLOPs: the convention, in the table's own terms."""
    table_label = (fits or {}).get("convention", {}).get("flops_label", "6N + attention")
    return {"table": table_label, "actual": f"{table_label}, as run", "6N": "6ND"}.get(
        convention, convention
    )


def flag_lines(flags: Sequence[dict], approach: int | None = None) -> str:
    """Flags for a title: one short line each (the text report and fits.json have them whole)."""
    chosen = [f for f in flags if approach is None or f.get("approach") in (None, approach)]
    if not chosen:
        return ""
    codes = sorted({f["code"] for f in chosen})
    return "\nFLAGS: " + ", ".join(c.replace("_", " ") for c in codes) + " (see fits.json)"


STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "grid.linewidth": 0.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.dpi": 200,
}


def sci(x: float) -> str:
    """A FLOP count as mathtext: 1e18 -> 10^18, 3e18 -> 3x10^18."""
    exponent = int(np.floor(np.log10(x) + 1e-9))
    mantissa = x / 10**exponent
    if abs(mantissa - 1) < 1e-3:
        return rf"$10^{{{exponent}}}$"
    return rf"${mantissa:.3g}\times10^{{{exponent}}}$"


def interval(estimate, digits: int = 3) -> str:
    text = f"{estimate.value:.{digits}f}"
    if np.isfinite(estimate.low):
        text += f" [{estimate.low:.{digits}f}, {estimate.high:.{digits}f}]"
    return text


# Viridis without its pale yellow end, so that the largest budget stays readable on white.
BUDGET_CMAP = ListedColormap(colormaps["viridis"](np.linspace(0.0, 0.85, 256)), "budgets")
MAX_LEGEND_BUDGETS = 8  # more budgets than this get a colour bar instead of legend entries


def budget_norm(budgets: Sequence[float]) -> LogNorm:
    low, high = float(np.min(budgets)), float(np.max(budgets))
    return LogNorm(low, high if high > low else low * 10)


def budget_colours(budgets: Sequence[float]) -> dict[float, tuple]:
    """One colour per budget, evenly along BUDGET_CMAP by log budget."""
    norm = budget_norm(budgets)
    return {b: BUDGET_CMAP(norm(b)) for b in sorted(set(budgets))}


def budget_key(fig: Figure, ax, budgets: Sequence[float], extra: list | None = None) -> None:
    """Say which colour is which budget: legend entries beside the axes for a few budgets, a
    colour bar for many (a legend of twenty entries runs off the figure). `extra` holds
    (handle, label) pairs that always go in a legend."""
    handles, labels = ax.get_legend_handles_labels()
    extra = extra or []
    if len(set(budgets)) <= MAX_LEGEND_BUDGETS:
        handles += [h for h, _ in extra]
        labels += [label for _, label in extra]
        ax.legend(handles, labels, title="Budget C", loc="upper left", bbox_to_anchor=(1.01, 1))
        return
    mappable = ScalarMappable(norm=budget_norm(budgets), cmap=BUDGET_CMAP)
    fig.colorbar(mappable, ax=ax, label="Budget C (FLOPs)", pad=0.02)
    if extra:
        ax.legend(
            [h for h, _ in extra],
            [label for _, label in extra],
            loc="upper center",
            bbox_to_anchor=(0.5, -0.14),
            ncol=len(extra),
            frameon=False,
        )


def new_figure(width: float = 6.4, height: float = 4.2, ncols: int = 1):
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(1, ncols)


def log_limits(values: list[float], margin_decades: float = 0.15) -> tuple[float, float] | None:
    """Log-axis limits around the finite positive values, or None if there are none."""
    logs = np.log10([v for v in values if np.isfinite(v) and v > 0])
    if logs.size == 0:
        return None
    margin = margin_decades + 0.05 * (logs.max() - logs.min())
    return 10 ** (logs.min() - margin), 10 ** (logs.max() + margin)


def few_decade_ticks(axis, low: float, high: float) -> None:
    """Over less than two decades matplotlib labels every minor tick of a log axis, and labels
    like 3x10^6 and 4x10^6 run into each other: label 1, 2 and 5 times powers of ten instead."""
    if np.log10(high / low) < 2:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda value, _: sci(value)))
        axis.set_minor_formatter(NullFormatter())


def save_figure(
    fig: Figure, out_dir: str | os.PathLike, stem: str, formats: Sequence[str] = ("png", "pdf")
) -> list[Path]:
    """Write `fig` as out_dir/stem.<format> for each format. Each file is written to a temporary
    name in the same directory and renamed, so a reader never sees half an image."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with rc_context(STYLE):
        for fmt in formats:
            path = out_dir / f"{stem}.{fmt}"
            with atomic.atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt)
            paths.append(path)
    return paths
