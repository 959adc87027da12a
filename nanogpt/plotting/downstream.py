"""The downstream figure: CORE (or the Gauntlet) of each trial's final model against its compute.

Drawn when the results table has scores (a sweep run with ``--eval core``): every healthy trial
as a point coloured by its parameter count, and a line through each budget's best trial, the one
with the lowest validation loss (the isoFLOP minimum the scaling-law fits are about), so that
the line is the downstream score of the compute-optimal run at each budget. CORE is centred on
random guessing, so 0 is chance; the title says which baselines and how many items per task.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm

from nanogpt.plotting.style import BUDGET_CMAP, STYLE, new_figure, sci
from nanogpt.scaling_laws.results import ScalingLawError

DOWNSTREAM_METRICS = ("core", "gauntlet")
METRIC_NAMES = {"core": "CORE", "gauntlet": "Eval Gauntlet v0.3"}


def downstream_metric(data: pd.DataFrame) -> str | None:
    """The first score column (core, then gauntlet) with a finite value, or None."""
    for metric in DOWNSTREAM_METRICS:
        if metric in data.columns:
            values = pd.to_numeric(data[metric], errors="coerce").to_numpy(float)
            if np.isfinite(values).any():
                return metric
    return None


def downstream_points(data: pd.DataFrame, metric: str = "core") -> dict[str, pd.DataFrame]:
    """What the figure draws: ``all`` (every run with a score: budget, C, N, L, score) and
    ``best`` (per budget, the run with the lowest loss among those with a score)."""
    if metric not in data.columns:
        raise ScalingLawError(
            f"the results table has no {metric} column: run the sweep with --eval {metric}"
        )
    score = pd.to_numeric(data[metric], errors="coerce")
    runs = data.assign(score=score)[np.isfinite(score.to_numpy(float))]
    if runs.empty:
        raise ScalingLawError(
            f"the results table has no {metric} scores: run the sweep with --eval {metric}"
        )
    runs = runs[["budget", "C", "N", "L", "score"]].sort_values(["budget", "N"])
    best = runs.loc[runs.groupby("budget")["L"].idxmin()].sort_values("budget")
    return {"all": runs.reset_index(drop=True), "best": best.reset_index(drop=True)}


def scored_with(data: pd.DataFrame) -> dict[str, list[str]]:
    """The baselines and per-task subsamples the rows' scores were made with (more than one
    value each: a table that mixes evaluations, which the figure and the report say)."""
    out = {}
    for column in ("eval_baselines", "eval_max_per_task"):
        if column not in data.columns:
            continue
        values = set()
        for v in data[column].dropna():
            if column == "eval_max_per_task":
                v = "all" if float(v) == 0 else str(int(float(v)))
            values.add(str(v))
        if values:
            out[column] = sorted(values)
    return out


def _how_scored(data: pd.DataFrame) -> str:
    parts = []
    for column, values in scored_with(data).items():
        what = "baselines" if column == "eval_baselines" else "items/task"
        mixed = "MIXED " if len(values) > 1 else ""
        parts.append(f"{mixed}{what} {', '.join(values)}")
    return "; ".join(parts)


def plot_downstream(
    data: pd.DataFrame, metric: str = "core", *, flops_label: str = "6N + attention"
):
    """The score of each run against its compute C, coloured by N, and a line through each
    budget's lowest-loss run. Raises ScalingLawError when the table has no scores."""
    points = downstream_points(data, metric)
    runs, best = points["all"], points["best"]
    name = METRIC_NAMES.get(metric, metric)
    with rc_context(STYLE):
        fig, ax = new_figure()
        norm = LogNorm(float(runs["N"].min()), float(max(runs["N"].max(), runs["N"].min() * 1.01)))
        ax.axhline(0.0, color="0.6", lw=0.8, ls=":", zorder=0)
        ax.scatter(
            runs["C"], runs["score"], c=runs["N"], cmap=BUDGET_CMAP, norm=norm, s=22,
            alpha=0.75, ec="none", label="every run", zorder=2,
        )  # fmt: skip
        ax.plot(
            best["C"], best["score"], color="black", marker="o", ms=6, mfc="none", lw=1.2,
            label="each budget's lowest-loss run", zorder=3,
        )  # fmt: skip
        for _, row in best.iterrows():
            ax.annotate(
                f"N={sci(row['N'])}", (row["C"], row["score"]), xytext=(4, 5),
                textcoords="offset points", fontsize=7,
            )  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel(f"Compute C (FLOPs, {flops_label})")
        ax.set_ylabel(f"{name} (centred: 0 = chance, 1 = perfect)")
        how = _how_scored(data)
        ax.set_title(
            f"{name} of the final models against compute" + (f"\n({how})" if how else ""),
            loc="left",
        )
        ax.legend(loc="upper left", fontsize=7)
        fig.colorbar(
            ScalarMappable(norm=norm, cmap=BUDGET_CMAP), ax=ax, label="Parameters N", pad=0.02
        )
    return fig
