"""All the figures of a results table at once (``make_all_plots``, which the sweep calls at its
end), drawn from one fits object; and the fits object's headline numbers as text.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from nanogpt.plotting.downstream import downstream_metric, plot_downstream
from nanogpt.plotting.isoflop import plot_isoflop
from nanogpt.plotting.optimal import plot_optimal_scaling
from nanogpt.plotting.style import flops_label, interval, loss_label, save_figure
from nanogpt.plotting.training_time import plot_training_time
from nanogpt.scaling_laws.analysis import (
    DEFAULT_BOOTSTRAP,
    fit_all,
    fitted_objects,
    read_fits,
    table_fingerprint,
)
from nanogpt.scaling_laws.isoflop import DEFAULT_WINDOW_LN
from nanogpt.scaling_laws.results import ScalingLawError, load_results

FIGURES = ("isoflop", "optimal_scaling", "training_time")
# Drawn only from a table with downstream scores (a sweep run with --eval core): by default
# when the table has them, and nothing changes for one without
DOWNSTREAM_FIGURES = ("downstream",)


def make_all_plots(
    results: str | os.PathLike | pd.DataFrame,
    out_dir: str | os.PathLike,
    *,
    fits: dict | None = None,
    figures: Sequence[str] | None = None,
    formats: Sequence[str] = ("png", "pdf"),
    budget: float | None = None,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    window: float | None = DEFAULT_WINDOW_LN,
    **load_options,
) -> list[Path]:
    """Draw `figures` from a results table (see load_results for `load_options`) and its fits
    object into out_dir; returns the files written. By default: FIGURES, and the downstream
    figure (``core_vs_compute``) when the table has CORE (or Gauntlet) scores.

    The figures draw `fits` (what fit_all returned, or fits.json read back) and fit nothing;
    without it, fit_all runs once with the same defaults as the command line and the sweep.
    A figure the data cannot support (one budget only, no wall_s, ...) is skipped with a
    warning rather than an error, so a sweep that calls this at its end still finishes; an
    empty or all-diverged table raises, since there is nothing to draw.
    """
    known = FIGURES + DOWNSTREAM_FIGURES
    unknown = set(figures or ()) - set(known)
    if unknown:
        raise ValueError(f"unknown figure(s) {sorted(unknown)}; choose from {known}")
    if isinstance(results, pd.DataFrame) and "budget" in results.columns:
        data = results
    else:
        data, _ = load_results(results, **load_options)
    metric = downstream_metric(data)
    if figures is None:
        figures = FIGURES + (DOWNSTREAM_FIGURES if metric is not None else ())
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
    if "downstream" in figures:
        try:
            label = flops_label(fits, data.attrs.get("flops_convention", "table"))
            fig = plot_downstream(data, metric or "core", flops_label=label)
            paths += save_figure(fig, out_dir, f"{metric or 'core'}_vs_compute", formats)
        except ScalingLawError as error:
            warnings.warn(f"downstream figure skipped: {error}", stacklevel=2)
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


def headline(fits: dict) -> str:
    """The exponents a figure shows, as text: what a reader checks against the report."""
    parts = []
    iso, par = fitted_objects(fits)
    if iso is not None and iso.params_law is not None:
        parts.append(f"Approach 2 a = {interval(iso.params_law.exponent, 4)}")
    if par is not None:
        parts.append(f"Approach 3 a = {interval(par.a, 4)}")
    return "; ".join(parts) or "no exponent fitted"
