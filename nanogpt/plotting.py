"""Figures of a sweep's results: isoFLOP profiles, compute-optimal scaling, training time.

Each `plot_*` function returns a matplotlib Figure built without pyplot (so no global backend
state and no display is touched; images are rendered by Agg), `save_figure` writes it as PNG and
PDF atomically, and `make_all_plots` does all three from a results table: the sweep calls it at
the end, and plots/*.py are thin command lines over it. docs/README_SCALING_LAWS.md says how to
read each figure.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps, rc_context
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from nanogpt import atomic
from nanogpt.scaling_laws import IsoFlopFit, ParametricFit, ScalingLawError, load_results
from nanogpt.scaling_laws.analysis import (
    DEFAULT_BOOTSTRAP,
    fit_all,
    fitted_objects,
    read_fits,
    table_fingerprint,
)
from nanogpt.scaling_laws.isoflop import DEFAULT_WINDOW_LN

FIGURES = ("isoflop", "optimal_scaling", "training_time")
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


def _flag_lines(flags: Sequence[dict], approach: int | None = None) -> str:
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


def _sci(x: float) -> str:
    """A FLOP count as mathtext: 1e18 -> 10^18, 3e18 -> 3x10^18."""
    exponent = int(np.floor(np.log10(x) + 1e-9))
    mantissa = x / 10**exponent
    if abs(mantissa - 1) < 1e-3:
        return rf"$10^{{{exponent}}}$"
    return rf"${mantissa:.3g}\times10^{{{exponent}}}$"


def _interval(estimate, digits: int = 3) -> str:
    text = f"{estimate.value:.{digits}f}"
    if np.isfinite(estimate.low):
        text += f" [{estimate.low:.{digits}f}, {estimate.high:.{digits}f}]"
    return text


# Viridis without its pale yellow end, so that the largest budget stays readable on white.
BUDGET_CMAP = ListedColormap(colormaps["viridis"](np.linspace(0.0, 0.85, 256)), "budgets")
MAX_LEGEND_BUDGETS = 8  # more budgets than this get a colour bar instead of legend entries


def _budget_norm(budgets: Sequence[float]) -> LogNorm:
    low, high = float(np.min(budgets)), float(np.max(budgets))
    return LogNorm(low, high if high > low else low * 10)


def budget_colours(budgets: Sequence[float]) -> dict[float, tuple]:
    """One colour per budget, evenly along BUDGET_CMAP by log budget."""
    norm = _budget_norm(budgets)
    return {b: BUDGET_CMAP(norm(b)) for b in sorted(set(budgets))}


def _budget_key(fig: Figure, ax, budgets: Sequence[float], extra: list | None = None) -> None:
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
    mappable = ScalarMappable(norm=_budget_norm(budgets), cmap=BUDGET_CMAP)
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


def _new_figure(width: float = 6.4, height: float = 4.2, ncols: int = 1):
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(1, ncols)


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
        fig, ax = _new_figure()
        colours = budget_colours(data["budget"])
        fitted = {m.budget: m for m in fit.minima}
        curve_losses = []  # the parabolas over the sizes run: with the runs, they set the y range
        for budget, rows in data.groupby("budget"):
            colour = colours[budget]
            minimum = fitted.get(budget)
            label = f"{_sci(budget)} FLOPs"
            if minimum is None:  # left out of the fit (too few runs, or no minimum)
                if "opens downward" in fit.left_out.get(budget, ""):
                    label += ": no minimum"
                ax.scatter(
                    rows["N"], rows["L"], s=18, facecolors="none", edgecolors=colour, label=label
                )
                continue
            if not minimum.interior:
                label += ": no interior minimum"
            low, high = minimum.log10_params_range
            # Runs outside the fit window (see fit_isoflop's window_decades) are drawn hollow.
            log_n = np.log10(rows["N"].to_numpy())
            used = (log_n >= low - 1e-12) & (log_n <= high + 1e-12)
            ax.scatter(rows["N"][used], rows["L"][used], s=18, color=colour, zorder=3, label=label)
            ax.scatter(rows["N"][~used], rows["L"][~used], s=18, fc="none", ec=colour, zorder=3)
            grid = np.logspace(low - CURVE_OVERHANG_DECADES, high + CURVE_OVERHANG_DECADES, 200)
            ax.plot(grid, minimum.curve(grid), color=colour, lw=1.3)
            curve_losses.append(minimum.curve(np.logspace(low, high, 50)))
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
                continue
            p = minimum.params
            xerr = None
            if np.isfinite(p.low):
                xerr = [[p.value - p.low], [p.high - p.value]]
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
        _few_decade_ticks(ax.xaxis, *ax.get_xlim())
        ax.set_xlabel("Parameters N")
        ax.set_ylabel(loss_label)
        _clip_loss_axis(ax, data, curve_losses)
        ax.set_title(_isoflop_title(fit) + _flag_lines(flags, 2), loc="left")
        extra = []
        if interior:
            star = Line2D(
                [], [], marker="*", ms=10, color="0.5", mec="black", mew=0.6, ls="--", lw=0.8
            )
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
        _budget_key(fig, ax, data["budget"].unique(), extra)
    return fig


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
        f"$N^* \\propto C^{{a}}$, a = {_interval(fit.params_law.exponent)} (95% CI)"
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


def _log_limits(values: list[float], margin_decades: float = 0.15) -> tuple[float, float] | None:
    """Log-axis limits around the finite positive values, or None if there are none."""
    logs = np.log10([v for v in values if np.isfinite(v) and v > 0])
    if logs.size == 0:
        return None
    margin = margin_decades + 0.05 * (logs.max() - logs.min())
    return 10 ** (logs.min() - margin), 10 ** (logs.max() + margin)


def _few_decade_ticks(axis, low: float, high: float) -> None:
    """Over less than two decades matplotlib labels every minor tick of a log axis, and labels
    like 3x10^6 and 4x10^6 run into each other: label 1, 2 and 5 times powers of ten instead."""
    if np.log10(high / low) < 2:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda value, _: _sci(value)))
        axis.set_minor_formatter(NullFormatter())


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
        fig, axes = _new_figure(width=8.0, height=4.6, ncols=2)
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
                    label=f"Approach 2: {symbol} = {_interval(law.exponent)}",
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
                label = f"Approach 3 (C = 6ND): {symbol} = {_interval(exponent)}"
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
                    label=f"prediction at {_sci(budget)} FLOPs",
                )
                shown.append(prediction.value)
            limits = _log_limits(shown)
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
            _few_decade_ticks(ax.xaxis, grid[0], grid[-1])
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
            + _flag_lines(flags),
            fontsize=10,
        )
    return fig


def _time_unit(seconds: np.ndarray) -> tuple[float, str]:
    longest = np.nanmax(seconds)
    if longest >= 2 * 3600:
        return 3600.0, "h"
    if longest >= 2 * 60:
        return 60.0, "min"
    return 1.0, "s"


def _plain_log_ticks(axis) -> None:
    """Label a log axis at 1-2-5 steps with plain numbers: a time axis spanning a decade or
    two would otherwise show only one or two labelled ticks."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def plot_training_time(data: pd.DataFrame) -> Figure:
    """Wall-clock time of each run against its parameter count, one line per budget."""
    if "wall_s" not in data.columns or not np.isfinite(data["wall_s"].to_numpy(float)).any():
        raise ScalingLawError(
            "the results table has no wall_s values: the training-time plot needs the sweep's "
            "wall-clock seconds per run"
        )
    with rc_context(STYLE):
        fig, ax = _new_figure()
        colours = budget_colours(data["budget"])
        scale, unit = _time_unit(data["wall_s"].to_numpy(float))
        for budget, rows in data.sort_values("N").groupby("budget"):
            ax.plot(
                rows["N"],
                rows["wall_s"] / scale,
                marker="o",
                ms=4,
                lw=1.2,
                color=colours[budget],
                label=f"{_sci(budget)} FLOPs",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("Parameters N")
        ax.set_ylabel(f"Wall-clock time per run ({unit})")
        _plain_log_ticks(ax.yaxis)
        gpus = data["gpu"].dropna().unique() if "gpu" in data.columns else []
        where = f" on {gpus[0]}" if len(gpus) == 1 and gpus[0] else ""
        total_h = data["wall_s"].sum() / 3600
        ax.set_title(f"Training time per run{where} (sum over runs: {total_h:.3g} h)", loc="left")
        _budget_key(fig, ax, data["budget"].unique())
    return fig


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


def make_all_plots(
    results: str | os.PathLike | pd.DataFrame,
    out_dir: str | os.PathLike,
    *,
    fits: dict | None = None,
    figures: Sequence[str] = FIGURES,
    formats: Sequence[str] = ("png", "pdf"),
    budget: float | None = None,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    window: float | None = DEFAULT_WINDOW_LN,
    **load_options,
) -> list[Path]:
    """Draw `figures` from a results table (see load_results for `load_options`) and its fits
    object into out_dir; returns the files written.

    The figures draw `fits` (what fit_all returned, or fits.json read back) and fit nothing;
    without it, fit_all runs once with the same defaults as the command line and the sweep.
    A figure the data cannot support (one budget only, no wall_s, ...) is skipped with a
    warning rather than an error, so a sweep that calls this at its end still finishes; an
    empty or all-diverged table raises, since there is nothing to draw.
    """
    unknown = set(figures) - set(FIGURES)
    if unknown:
        raise ValueError(f"unknown figure(s) {sorted(unknown)}; choose from {FIGURES}")
    if isinstance(results, pd.DataFrame) and "budget" in results.columns:
        data = results
    else:
        data, _ = load_results(results, **load_options)
    if fits is None and {"isoflop", "optimal_scaling"} & set(figures):
        fits = fit_all(data, window=window, n_bootstrap=n_bootstrap, seed=seed)
    isoflop, parametric = fitted_objects(fits) if fits is not None else (None, None)
    flags = (fits or {}).get("flags", [])
    if {"isoflop", "optimal_scaling"} & set(figures) and isoflop is None:
        error = (fits.get("approach2") or {}).get("error", "Approach 2 was not fitted")
        warnings.warn(f"isoFLOP figures skipped: {error}", stacklevel=2)
    if "optimal_scaling" in figures and isoflop is not None and parametric is None:
        error = (fits.get("approach3") or {}).get("error", "not fitted")
        warnings.warn(f"Approach 3 left out of the scaling figure: {error}", stacklevel=2)

    paths: list[Path] = []
    if "isoflop" in figures and isoflop is not None:
        fig = plot_isoflop(data, isoflop, loss_label=loss_label(fits), flags=flags)
        paths += save_figure(fig, out_dir, "isoflop", formats)
    if "optimal_scaling" in figures and isoflop is not None:
        fig = plot_optimal_scaling(
            isoflop,
            parametric,
            budget=budget,
            flops_label=flops_label(fits, isoflop.flops_convention),
            flags=flags,
        )
        paths += save_figure(fig, out_dir, "optimal_scaling", formats)
    if "training_time" in figures:
        try:
            fig = plot_training_time(data)
            paths += save_figure(fig, out_dir, "training_time", formats)
        except ScalingLawError as error:
            warnings.warn(f"training-time figure skipped: {error}", stacklevel=2)
    return paths


def matching_fits(path: Path, data: pd.DataFrame, options: dict) -> dict | None:
    """The fits object at `path` if it was made from this table with these options, else None."""
    if not path.is_file():
        return None
    fits = read_fits(path)
    same_table = fits["table"]["sha256"] == table_fingerprint(data)
    same_options = all(fits["options"].get(k) == v for k, v in options.items())
    same_convention = fits["convention"]["flops"] == data.attrs.get("flops_convention")
    return fits if same_table and same_options and same_convention else None


def plot_main(figure: str, argv: Sequence[str] | None = None) -> int:
    """The command line shared by plots/*.py: draw one figure from a results table.

    The figure draws a fits object: the one given with --fits, else RESULTS/fits.json when it
    was made from this table with these options (the sweep writes it), else the one fit_all
    makes now with the command line's defaults: the numbers are the same either way.
    """
    from nanogpt.scaling_laws.cli import add_fit_options, add_table_options, load_options

    parser = argparse.ArgumentParser(
        prog=f"python plots/{figure}.py",
        description=f"Draw the {figure.replace('_', ' ')} figure from a sweep's results table "
        "(see docs/README_SCALING_LAWS.md).",
    )
    parser.add_argument("results", help="a sweep's output directory, or a .parquet/.csv table")
    parser.add_argument(
        "--out", default=None, help="output directory (default: plots/ next to the results)"
    )
    parser.add_argument(
        "--format", nargs="+", default=["png", "pdf"], help="image formats (default: png pdf)"
    )
    parser.add_argument(
        "--fits",
        default=None,
        help="draw this fits.json (default: RESULTS/fits.json if it "
        "matches the table and options, else fit now)",
    )
    if figure == "optimal_scaling":
        parser.add_argument("--budget", type=float, default=None, help="mark a prediction at C")
    add_fit_options(parser)
    add_table_options(parser)
    args = parser.parse_args(argv)
    results = Path(args.results)
    out = args.out or (results if results.is_dir() else results.parent) / "plots"
    options = {"window_ln": args.window, "n_bootstrap": args.bootstrap, "seed": args.seed}
    try:
        data, message = load_results(results, **load_options(args))
        fits = None
        if figure != "training_time":
            folder = results if results.is_dir() else results.parent
            drawn_from = args.fits or folder / "fits.json"
            if args.fits:
                fits = read_fits(args.fits)
            else:
                fits = matching_fits(folder / "fits.json", data, options)
            if fits is None:
                drawn_from = "a fit made now (no matching fits.json)"
                fits = fit_all(
                    data,
                    window=args.window,
                    n_bootstrap=args.bootstrap,
                    seed=args.seed,
                    source=str(results),
                    message=message,
                )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            paths = make_all_plots(
                data,
                out,
                fits=fits,
                figures=(figure,),
                formats=args.format,
                budget=getattr(args, "budget", None),
            )
    except ScalingLawError as error:
        print(f"error: {error}")
        return 2
    for warning in caught:
        if issubclass(warning.category, UserWarning):  # ours, not numpy's
            print(f"error: {warning.message}")
    for path in paths:
        print(path)
    if fits is not None and paths:
        print(f"drawn from {drawn_from}: {headline(fits)}")
    return 0 if paths else 1


def headline(fits: dict) -> str:
    """The exponents a figure shows, as text: what a reader checks against the report."""
    parts = []
    iso, par = fitted_objects(fits)
    if iso is not None and iso.params_law is not None:
        parts.append(f"Approach 2 a = {_interval(iso.params_law.exponent, 4)}")
    if par is not None:
        parts.append(f"Approach 3 a = {_interval(par.a, 4)}")
    return "; ".join(parts) or "no exponent fitted"
