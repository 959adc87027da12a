"""Scaling-law analysis of a sweep's results table (no Ray import).

    df, message = load_results("sweeps_out/isoflop")     # or a .parquet/.csv file, or a DataFrame
    fits = fit_all(df)                                   # both, flags, the fits object (JSON-ready)
    iso = fit_isoflop(df)                                # Approach 2: isoFLOP parabolas, power laws
    par = fit_parametric(df)                             # Approach 3: L = E + A/N^alpha + B/D^beta
    predict(iso, 1e21), predict(par, 1e21)               # compute-optimal N, D, loss with intervals

Approaches 2 and 3 are those of Hoffmann et al. 2022 (https://arxiv.org/abs/2203.15556); the
Approach 3 fit follows the replication of Besiroglu et al. 2024
(https://arxiv.org/abs/2404.10102). docs/README_SCALING_LAWS.md explains the assumptions and
conventions. Command line: `python -m nanogpt.scaling_laws RESULTS [--approach 2|3|both]
[--budget C] [--json]`.

Fit, report and figures in one call (what the sweep does at its end) is
``nanogpt.scaling_laws.report.analyze_results("sweeps_out/isoflop", "out")``: it draws with
``nanogpt.plotting``, which imports this package, so it is not re-exported here (that would be
an import circle).
"""

from __future__ import annotations

from nanogpt.scaling_laws.analysis import fit_all, read_fits, write_fits
from nanogpt.scaling_laws.isoflop import BudgetMinimum, IsoFlopFit, PowerLaw, fit_isoflop
from nanogpt.scaling_laws.parametric import ParametricFit, fit_parametric
from nanogpt.scaling_laws.results import (
    FLOPS_CONVENTIONS,
    Estimate,
    InsufficientDataError,
    NoHealthyRunsError,
    ScalingLawError,
    load_results,
)
from nanogpt.scaling_laws.synthetic import synthetic_isoflop_grid, synthetic_results

__all__ = [
    "FLOPS_CONVENTIONS",
    "BudgetMinimum",
    "Estimate",
    "InsufficientDataError",
    "IsoFlopFit",
    "NoHealthyRunsError",
    "ParametricFit",
    "PowerLaw",
    "ScalingLawError",
    "fit_all",
    "fit_isoflop",
    "fit_parametric",
    "load_results",
    "predict",
    "read_fits",
    "synthetic_isoflop_grid",
    "synthetic_results",
    "write_fits",
]


def predict(fit: IsoFlopFit | ParametricFit, budget: float) -> dict:
    """Compute-optimal parameters, tokens and loss at `budget` FLOPs, each as
    {"value", "se", "ci_low", "ci_high"} (intervals from the fit's bootstrap).

    Approach 2 reads the budget in the FLOP convention the fit was made with; Approach 3 takes
    C = 6 N D, as Hoffmann et al. did.
    """
    if budget <= 0:
        raise ScalingLawError(f"budget={budget!r}: a compute budget is a positive number of FLOPs")
    return fit.predict(budget)
