"""Figures of a sweep's results: isoFLOP profiles, compute-optimal scaling, training time.

Each `plot_*` function returns a matplotlib Figure built without pyplot (so no global backend
state and no display is touched; images are rendered by Agg), `save_figure` writes it as PNG and
PDF atomically, and `make_all_plots` does all three from a results table: the sweep calls it at
the end, and plots/*.py are thin command lines over it. docs/README_SCALING_LAWS.md says how to
read each figure.

Modules: ``style`` (what every figure shares), ``isoflop``, ``optimal``, ``training_time``,
``downstream`` (CORE against compute, when the sweep evaluated; one figure each), ``figures`` (``make_all_plots``), ``cli`` (``plot_main``, behind plots/*.py).
"""

from __future__ import annotations

from nanogpt.plotting.cli import plot_main
from nanogpt.plotting.downstream import downstream_metric, downstream_points, plot_downstream
from nanogpt.plotting.figures import (
    DOWNSTREAM_FIGURES,
    FIGURES,
    headline,
    make_all_plots,
    matching_fits,
)
from nanogpt.plotting.isoflop import plot_isoflop
from nanogpt.plotting.optimal import plot_optimal_scaling
from nanogpt.plotting.style import (
    BUDGET_CMAP,
    LOSS_LABEL,
    STYLE,
    budget_colours,
    flops_label,
    loss_label,
    save_figure,
)
from nanogpt.plotting.training_time import plot_training_time

__all__ = [
    "BUDGET_CMAP",
    "DOWNSTREAM_FIGURES",
    "FIGURES",
    "LOSS_LABEL",
    "STYLE",
    "budget_colours",
    "downstream_metric",
    "downstream_points",
    "flops_label",
    "headline",
    "loss_label",
    "make_all_plots",
    "matching_fits",
    "plot_downstream",
    "plot_isoflop",
    "plot_main",
    "plot_optimal_scaling",
    "plot_training_time",
    "save_figure",
]
