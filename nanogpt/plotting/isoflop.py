"""The isoFLOP figure (Approach 2): loss against parameters, one colour per budget, each budget's
parabola with its band, and its minimum N* with the interval of N*.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from nanogpt.plotting.style import (
    LOSS_LABEL,
    STYLE,
    budget_colours,
    budget_key,
    few_decade_ticks,
    flag_lines,
    interval,
    new_figure,
    sci,
)
from nanogpt.scaling_laws.isoflop import BudgetMinimum, IsoFlopFit

# How far past the sizes run each parabola is drawn, in decades of N: enough to see its trend,
# too little to suggest a minimum the runs did not find.
CURVE_OVERHANG_DECADES = 0.05
EDGE_MARKER = {"below": "<", "above": ">"}  # points to the side where an extrapolated N* lies


def plot_isoflop(
    data: pd.DataFrame,
    fit: IsoFlopFit,
    *,
    loss_label: str = LOSS_LABEL,
    flags: Sequence[dict] = (),
) -> Figure:
    """Loss against parameters, one colour per budget: the runs, each budget's fitted parabola
    (over the sizes run) with its 95% bootstrap band, and its minimum N* with the interval of
    N*. A budget whose minimum lies outside its sizes gets no star: a triangle at the end of its
    curve points to the side where the optimum lies, and its legend entry says "no interior
    minimum"."""
    with rc_context(STYLE):
        fig, ax = new_figure()
        colours = budget_colours(data["budget"])
        fitted = {m.budget: m for m in fit.minima}
        curve_losses = []  # the parabolas over the sizes run: with the runs, they set the y range
        for budget, rows in data.groupby("budget"):
            minimum = fitted.get(budget)
            if minimum is None:  # left out of the fit (too few runs, or no minimum)
                label = f"{sci(budget)} FLOPs"
                if "opens downward" in fit.left_out.get(budget, ""):
                    label += ": no minimum"
                ax.scatter(rows["N"], rows["L"], s=18, fc="none", ec=colours[budget], label=label)
                continue
            curve_losses.append(_draw_budget(ax, rows, minimum, colours[budget]))
        interior = sorted(fit.law_minima, key=lambda m: m.budget)
        if len(interior) >= 2:
            ax.plot(
                [m.params.value for m in interior],
                [m.loss.value for m in interior],
                ls="--",
                lw=0.8,
                color="0.3",
                zorder=2,
            )
        ax.set_xscale("log")
        # The runs set the range; an interval of N* reaching far beyond them is cut at the edge
        # rather than squeezing the curves into a corner.
        log_n = np.log10(data["N"].to_numpy())
        ax.set_xlim(10 ** (log_n.min() - 0.15), 10 ** (log_n.max() + 0.15))
        few_decade_ticks(ax.xaxis, *ax.get_xlim())
        ax.set_xlabel("Parameters N")
        ax.set_ylabel(loss_label)
        _clip_loss_axis(ax, data, curve_losses)
        ax.set_title(_isoflop_title(fit) + flag_lines(flags, 2), loc="left")
        extra = _key_entries(data, fit, fitted, interior)
        budget_key(fig, ax, data["budget"].unique(), extra)
    return fig


def _draw_budget(ax, rows: pd.DataFrame, minimum: BudgetMinimum, colour) -> np.ndarray:
    """One fitted budget: its runs (hollow outside the fit window), its parabola and band, and
    its minimum (a star with the interval of N*, or a triangle pointing to where N* lies).
    Returns the parabola's losses over the sizes run (they bound the loss axis)."""
    label = f"{sci(minimum.budget)} FLOPs" + ("" if minimum.interior else ": no interior minimum")
    low, high = minimum.log10_params_range
    # Runs outside the fit window (see fit_isoflop's window_decades) are drawn hollow.
    log_n = np.log10(rows["N"].to_numpy())
    used = (log_n >= low - 1e-12) & (log_n <= high + 1e-12)
    ax.scatter(rows["N"][used], rows["L"][used], s=18, color=colour, zorder=3, label=label)
    ax.scatter(rows["N"][~used], rows["L"][~used], s=18, fc="none", ec=colour, zorder=3)
    grid = np.logspace(low - CURVE_OVERHANG_DECADES, high + CURVE_OVERHANG_DECADES, 200)
    ax.plot(grid, minimum.curve(grid), color=colour, lw=1.3)
    band = minimum.curve_band(grid)
    if band is not None:
        ax.fill_between(grid, *band, color=colour, alpha=0.15, lw=0)
    if not minimum.interior:  # a triangle at the curve's end, pointing to where N* lies
        below = minimum.position == "below"
        edge = low - CURVE_OVERHANG_DECADES if below else high + CURVE_OVERHANG_DECADES
        ax.plot(
            10**edge,
            minimum.curve(np.array([10**edge]))[0],
            marker=EDGE_MARKER[minimum.position],
            ms=8,
            mfc="white",
            mec=colour,
            mew=1.3,
            ls="",
            zorder=4,
        )
    else:
        p = minimum.params
        xerr = [[p.value - p.low], [p.high - p.value]] if np.isfinite(p.low) else None
        ax.errorbar(
            p.value,
            minimum.loss.value,
            xerr=xerr,
            marker="*",
            ms=11,
            color=colour,
            mec="black",
            mew=0.6,
            capsize=2.5,
            elinewidth=1.0,
            zorder=4,
        )
    return minimum.curve(np.logspace(low, high, 50))


def _key_entries(
    data: pd.DataFrame, fit: IsoFlopFit, fitted: dict, interior: list[BudgetMinimum]
) -> list[tuple[Line2D, str]]:
    """The legend entries beside the budgets: the star, the edge triangles, hollow points."""
    extra = []
    if interior:
        star = Line2D([], [], marker="*", ms=10, color="0.5", mec="black", mew=0.6, ls="--", lw=0.8)
        extra.append((star, "minimum N* (95% CI)"))
    sides = sorted({m.position for m in fit.minima if not m.interior})
    if sides:
        marker = EDGE_MARKER[sides[0]] if len(sides) == 1 else "<"
        edge = Line2D([], [], marker=marker, ms=7, mfc="white", mec="0.3", mew=1.2, ls="")
        extra.append((edge, f"N* {' or '.join(sides)} the sizes run"))
    hollow = Line2D([], [], marker="o", ls="", mfc="none", mec="0.4")
    if set(data["budget"]) - set(fitted):
        extra.append((hollow, "budget or run not fitted"))
    elif fit.window is not None:
        extra.append((hollow, f"outside fit window (±{fit.window:g} in ln N)"))
    return extra


def _isoflop_title(fit: IsoFlopFit) -> str:
    """The exponent of N* ∝ C^a, or why there is none."""
    n_budgets = len(fit.minima) + len(fit.left_out)
    n_interior = len(fit.law_minima)
    if fit.params_law is None:
        return (
            "IsoFLOP profiles (Approach 2): no power law fitted\n"
            f"{n_interior} of {n_budgets} budgets have a minimum inside the sizes run (2 needed)"
        )
    title = (
        "IsoFLOP profiles (Approach 2): "
        f"$N^* \\propto C^{{a}}$, a = {interval(fit.params_law.exponent)} (95% CI)"
    )
    if n_interior < n_budgets:
        title += f"\nfrom the {n_interior} of {n_budgets} budgets with an interior minimum"
    return title


def _clip_loss_axis(ax, data: pd.DataFrame, curve_losses: list[np.ndarray]) -> None:
    """Show every run and each parabola over the sizes run, and no more: the parabolas'
    extensions, the bootstrap bands of flat parabolas and extrapolated vertices would otherwise
    stretch the loss axis. Interior minima lie on their curves, so they are inside too."""
    values = np.concatenate([data["L"].to_numpy(), *curve_losses])
    values = values[np.isfinite(values)]
    low, high = values.min(), values.max()
    margin = 0.06 * (high - low if high > low else 1.0)
    ax.set_ylim(low - margin, high + margin)
