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
        colours = budget_colours([m.budget for m in fit.minima] + list(fit.left_out))
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
        n_budgets = len(fit.minima) + len(fit.left_out)
        for ax, quantity, law, symbol, ylabel in panels:
            shown = []  # y values of points and lines (not bands): they set the y range
            for m in points:
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
            if law is not None:
                ax.plot(
                    grid,
                    law(grid),
                    color="black",
                    lw=1.2,
                    label=f"Approach 2: {symbol} = {interval(law.exponent)}",
                )
                shown.extend(law(grid))
                band = law.band(grid)
                if band is not None:
                    ax.fill_between(grid, *band, color="black", alpha=0.12, lw=0, label="95% CI")
            else:
                ax.plot(
                    [],
                    [],
                    ls="",
                    label=f"Approach 2: no power law ({len(points)} of {n_budgets} budgets\n"
                    "have a minimum inside the sizes run)",
                )
            if parametric is not None:
                index = 0 if quantity == "params" else 1
                exponent = parametric.a if quantity == "params" else parametric.b
                label = f"Approach 3 (C = 6ND): {symbol} = {interval(exponent)}"
                if parametric.degenerate:  # its interval describes a flat valley: leave it out
                    label = f"Approach 3 (C = 6ND): {symbol} = {exponent.value:.3f}\n"
                    label += "(degenerate fit, not to be trusted: see its notes)"
                line = parametric.optimal(grid)[index]
                ax.plot(grid, line, color="tab:red", ls="--", lw=1.2, label=label)
                shown.extend(line)
                # A degenerate fit's resamples sit in a flat valley: their band means nothing.
                bands = None if parametric.degenerate else parametric.optimal_band(grid)
                if bands is not None:
                    ax.fill_between(grid, *bands[quantity], color="tab:red", alpha=0.1, lw=0)
            if budget is not None and law is not None:
                prediction = law.predict(budget)
                yerr = None
                if np.isfinite(prediction.low):
                    yerr = [
                        [prediction.value - prediction.low],
                        [prediction.high - prediction.value],
                    ]
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
                shown.append(prediction.value)
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
            # Points and lines set the range: bands of a loose fit would stretch it.
            ax.set_ylim(*(limits or (1.0, 10.0)))
            if limits is None:
                ax.yaxis.set_major_formatter(NullFormatter())
                ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(f"Compute C (FLOPs, {convention})")
            ax.set_ylabel(ylabel)
            # Below the panel: inside, a legend would cover a line or a point at some budgets.
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
        fig.suptitle(
            "Compute-optimal scaling (points: interior isoFLOP minima with 95% CI; bands: 95% CI)"
            + flag_lines(flags),
            fontsize=10,
        )
    return fig
