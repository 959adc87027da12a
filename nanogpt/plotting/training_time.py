"""The training-time figure: each run's wall-clock time against its parameter count."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from nanogpt.plotting.style import STYLE, budget_colours, budget_key, new_figure, sci
from nanogpt.scaling_laws.results import ScalingLawError


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
        fig, ax = new_figure()
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
                label=f"{sci(budget)} FLOPs",
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
        budget_key(fig, ax, data["budget"].unique())
    return fig
