"""The compute-optimal scaling figure: N*(C) and D*(C) from the isoFLOP minima, Approach 2's
power laws and Approach 3's curves, with their 95% bands and an optional prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from nanogpt.plotting.style import (
    STYLE,
    budget_colours,
    few_decade_ticks,
    flag_lines,
    interval,
    log_limits,
    new_figure,
    sci,
)
from nanogpt.scaling_laws.isoflop import IsoFlopFit
from nanogpt.scaling_laws.parametric import ParametricFit


def plot_optimal_scaling(
    fit: IsoFlopFit,
    parametric: ParametricFit | None = None,
    *,
    budget: float | None = None,
    flops_label: str | None = None,
    flags: Sequence[dict] = (),
) -> Figure:
    """N*(C) and D*(C): the interior per-budget minima with their intervals, the Approach 2
    power laws with 95% bootstrap bands, and (if given) Approach 3's compute-optimal curves.
    `budget` extends the lines to a prediction and marks it. Without an Approach 2 power law
    (fewer than two interior minima) the panels say so and draw no Approach 2 line."""
    with rc_context(STYLE):
        fig, axes = new_figure(width=8.0, height=4.6, ncols=2)
        points = fit.law_minima
        if points:
            flops = np.array([m.flops for m in points])
        else:  # only the budgets' extent is known
            flops = np.array([m.budget for m in fit.minima] + list(fit.left_out))
        c_max = max(flops.max(), budget if budget and fit.params_law is not None else 0)
        grid = np.logspace(np.log10(flops.min()) - 0.3, np.log10(c_max) + 0.3, 200)
        convention = flops_label or {"table": "6N + attention", "6N": "6ND"}.get(
            fit.flops_convention, fit.flops_convention
        )
        panels = [
            (
                axes[0],
                "params",
                fit.params_law,
                "a",
                "Compute-optimal model size $N^*$ (parameters)",
            ),
            (axes[1], "tokens", fit.tokens_law, "b", "Compute-optimal data $D^*$ (tokens)"),
        ]
        for ax, quantity, law, symbol, ylabel in panels:
            shown = _draw_minima(ax, fit, quantity)
            shown += _draw_power_law(ax, fit, law, symbol, grid)
            if parametric is not None:
                shown += _draw_parametric(ax, parametric, quantity, symbol, grid)
            if budget is not None and law is not None:
                shown += _draw_prediction(ax, law, budget)
            _finish_panel(ax, shown, grid, f"Compute C (FLOPs, {convention})", ylabel)
        fig.suptitle(
            "Compute-optimal scaling (points: interior isoFLOP minima with 95% CI; bands: 95% CI)"
            + flag_lines(flags),
            fontsize=10,
        )
    return fig


def _draw_minima(ax, fit: IsoFlopFit, quantity: str) -> list[float]:
    """The interior per-budget minima of ``quantity`` (params or tokens) with their intervals."""
    colours = budget_colours([m.budget for m in fit.minima] + list(fit.left_out))
    shown = []  # y values of points and lines (not bands): they set the y range
    for m in fit.law_minima:
        estimate = getattr(m, quantity)
        yerr = None
        if np.isfinite(estimate.low):
            yerr = [[estimate.value - estimate.low], [estimate.high - estimate.value]]
        ax.errorbar(
            m.flops,
            estimate.value,
            yerr=yerr,
            fmt="o",
            ms=5,
            color=colours[m.budget],
            mec="black",
            mew=0.5,
            capsize=2.5,
            zorder=4,
        )
        shown.append(estimate.value)
    return shown


def _draw_power_law(ax, fit: IsoFlopFit, law, symbol: str, grid: np.ndarray) -> list[float]:
    """Approach 2's power law and its band, or a legend line saying why there is none."""
    if law is None:
        n_budgets = len(fit.minima) + len(fit.left_out)
        ax.plot(
            [],
            [],
            ls="",
            label=f"Approach 2: no power law ({len(fit.law_minima)} of {n_budgets} budgets\n"
            "have a minimum inside the sizes run)",
        )
        return []
    line = law(grid)
    ax.plot(
        grid, line, color="black", lw=1.2, label=f"Approach 2: {symbol} = {interval(law.exponent)}"
    )
    band = law.band(grid)
    if band is not None:
        ax.fill_between(grid, *band, color="black", alpha=0.12, lw=0, label="95% CI")
    return list(line)


def _draw_parametric(
    ax, parametric: ParametricFit, quantity: str, symbol: str, grid: np.ndarray
) -> list[float]:
    """Approach 3's compute-optimal curve (C = 6ND) and, unless degenerate, its band."""
    index = 0 if quantity == "params" else 1
    exponent = parametric.a if quantity == "params" else parametric.b
    label = f"Approach 3 (C = 6ND): {symbol} = {interval(exponent)}"
    if parametric.degenerate:  # its interval describes a flat valley: leave it out
        label = f"Approach 3 (C = 6ND): {symbol} = {exponent.value:.3f}\n"
        label += "(degenerate fit, not to be trusted: see its notes)"
    line = parametric.optimal(grid)[index]
    ax.plot(grid, line, color="tab:red", ls="--", lw=1.2, label=label)
    # A degenerate fit's resamples sit in a flat valley: their band means nothing.
    bands = None if parametric.degenerate else parametric.optimal_band(grid)
    if bands is not None:
        ax.fill_between(grid, *bands[quantity], color="tab:red", alpha=0.1, lw=0)
    return list(line)


def _draw_prediction(ax, law, budget: float) -> list[float]:
    """The power law's prediction at ``budget``, a diamond with its interval."""
    prediction = law.predict(budget)
    yerr = None
    if np.isfinite(prediction.low):
        yerr = [[prediction.value - prediction.low], [prediction.high - prediction.value]]
    ax.errorbar(
        budget,
        prediction.value,
        yerr=yerr,
        fmt="D",
        ms=5,
        color="white",
        mec="black",
        ecolor="black",
        capsize=3,
        zorder=5,
        label=f"prediction at {sci(budget)} FLOPs",
    )
    return [prediction.value]


def _finish_panel(ax, shown: list[float], grid: np.ndarray, xlabel: str, ylabel: str) -> None:
    """Axes, ranges set by points and lines (bands of a loose fit would stretch them), legend."""
    limits = log_limits(shown)
    if limits is None:  # a degenerate Approach 3 can have no optimum (alpha < 0)
        ax.text(
            0.5,
            0.5,
            "nothing to draw:\nno interior minimum,\nno Approach 3 optimum",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="0.4",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(grid[0], grid[-1])
    few_decade_ticks(ax.xaxis, grid[0], grid[-1])
    ax.set_ylim(*(limits or (1.0, 10.0)))
    if limits is None:
        ax.yaxis.set_major_formatter(NullFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    # Below the panel: inside, a legend would cover a line or a point at some budgets.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
