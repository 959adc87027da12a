"""One analysis of a results table: both fits, their flags, one fits object (fits.json).

The sweep's end-of-run analysis, `python -m nanogpt.scaling_laws` and plots/*.py all call
`fit_all` with the same defaults, so the same table gives the same numbers everywhere; the
figures draw the fits object (`make_all_plots(..., fits=...)`) and never fit anything
themselves. The object holds, per approach, the estimates, the intervals, the bootstrap
replicates the figures' bands are drawn from, the convention (FLOPs, parameter count, loss
unit) the fit used, and every warning and flag.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from nanogpt import atomic
from nanogpt.scaling_laws.isoflop import DEFAULT_WINDOW_LN, IsoFlopFit, fit_isoflop
from nanogpt.scaling_laws.parametric import (
    NEGLIGIBLE_EXPONENT,
    NEGLIGIBLE_SHARE,
    PARAMETER_NAMES,
    ParametricFit,
    fit_parametric,
)
from nanogpt.scaling_laws.results import ScalingLawError, load_results

FITS_VERSION = 2
DEFAULT_BOOTSTRAP = 1000
# Fewer interior budgets than this leave a power law with no check of its straightness: two
# points always lie on a line.
MIN_TRUSTED_INTERIOR_BUDGETS = 3
# More failed resamples than this share and the interval's stated 95% is not to be trusted.
MAX_FAILED_SHARE = 0.025


def table_fingerprint(data: pd.DataFrame) -> str:
    """sha256 of the (N, D, C, L, budget) columns the fits use: fits.json is for this table."""
    values = data[["N", "D", "C", "L", "budget"]].to_numpy(dtype=float)
    return hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()


def _flag(code: str, message: str, approach: int | None = None) -> dict:
    return {"code": code, "approach": approach, "message": message}


def _approach2_flags(fit: IsoFlopFit) -> list[dict]:
    flags = []
    n_interior = len(fit.law_minima)
    n_budgets = len(fit.minima) + len(fit.left_out)
    if n_interior < MIN_TRUSTED_INTERIOR_BUDGETS:
        flags.append(
            _flag(
                "few_interior_budgets",
                f"only {n_interior} of {n_budgets} budgets have a minimum inside the sizes run; "
                f"a power law through fewer than {MIN_TRUSTED_INTERIOR_BUDGETS} cannot show "
                "that it fits (run sizes around more budgets' best runs)",
                2,
            )
        )
    for m in fit.law_minima:
        low, high = m.log10_params_run
        p = m.params
        if math.isfinite(p.low) and (p.low <= 10**low or p.high >= 10**high):
            side = "smallest" if p.low <= 10**low else "largest"
            flags.append(
                _flag(
                    "at_bound",
                    f"C={m.budget:.3g}: the interval of N* [{p.low:.3g}, {p.high:.3g}] reaches "
                    f"the {side} size run: the runs only just bracket this budget's minimum",
                    2,
                )
            )
    if fit.params_law is not None:
        a = fit.params_law.exponent
        if math.isfinite(a.low) and (a.low <= 0 or a.high >= 1):
            flags.append(
                _flag(
                    "at_bound",
                    f"the interval of a [{a.low:.3g}, {a.high:.3g}] reaches a bound of 0 < a < 1: "
                    "the minima barely constrain the power law",
                    2,
                )
            )
    if fit.n_bootstrap and fit.n_bootstrap_failed > MAX_FAILED_SHARE * fit.n_bootstrap:
        flags.append(
            _flag(
                "failed_resamples",
                f"{fit.n_bootstrap_failed} of {fit.n_bootstrap} resamples gave no power law: the "
                "intervals are wider than 95% would need, and the fit is fragile",
                2,
            )
        )
    return flags


def _approach3_flags(fit: ParametricFit, min_loss: float) -> list[dict]:
    flags = [_flag("at_bound" if "bound" in n else "degenerate", n, 3) for n in fit.notes]
    # An interval that reaches a parameter's natural bound (E, A, B > 0; exponents > 0), even
    # when the estimate itself does not.
    floors = {"E": NEGLIGIBLE_SHARE * min_loss, "alpha": NEGLIGIBLE_EXPONENT}
    floors["beta"] = NEGLIGIBLE_EXPONENT
    for name, floor in floors.items():
        estimate = getattr(fit, name)
        if math.isfinite(estimate.low) and estimate.low <= floor and estimate.value > floor:
            flags.append(
                _flag(
                    "at_bound",
                    f"the interval of {name} [{estimate.low:.3g}, {estimate.high:.3g}] reaches its "
                    f"lower bound 0: the runs do not pin {name} down",
                    3,
                )
            )
    if fit.n_bootstrap and fit.n_bootstrap_failed > MAX_FAILED_SHARE * fit.n_bootstrap:
        flags.append(
            _flag(
                "failed_resamples",
                f"{fit.n_bootstrap_failed} of {fit.n_bootstrap} refits did not converge",
                3,
            )
        )
    return flags


def _disagreement(iso: IsoFlopFit, par: ParametricFit) -> list[dict]:
    if iso.params_law is None or par.degenerate:
        return []
    a2, a3 = iso.params_law.exponent, par.a
    if not (math.isfinite(a2.low) and math.isfinite(a3.low)):
        return []
    if a2.high >= a3.low and a3.high >= a2.low:
        return []
    convention = ""
    if iso.flops_convention != "6N":
        convention = (
            f" (Approach 2 counts FLOPs as '{iso.flops_convention}', Approach 3 as 6ND: rerun "
            "Approach 2 with --flops-convention 6N to compare like with like)"
        )
    return [
        _flag(
            "approaches_disagree",
            f"Approaches 2 and 3 disagree: a = {a2.value:.3f} [{a2.low:.3f}, {a2.high:.3f}] "
            f"against {a3.value:.3f} [{a3.low:.3f}, {a3.high:.3f}], intervals that do not "
            f"overlap{convention}; the law's form or the grid is suspect",
        )
    ]


def fit_all(
    data: str | os.PathLike | pd.DataFrame,
    *,
    approaches: tuple[str, ...] = ("2", "3"),
    window: float | None = DEFAULT_WINDOW_LN,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    source: str | None = None,
    message: str = "",
) -> dict:
    """Fit the approaches asked for to a loaded table (see load_results) and return the fits
    object: JSON-ready, with the bootstrap replicates the figures draw their bands from."""
    if not isinstance(data, pd.DataFrame) or "budget" not in data.columns:
        data, message = load_results(data)
    attrs = data.attrs
    fits: dict = {
        "version": FITS_VERSION,
        "table": {
            "source": source,
            "message": message,
            "rows": len(data),
            "sha256": table_fingerprint(data),
        },
        "convention": {
            "flops": attrs.get("flops_convention", "table"),
            "flops_label": attrs.get("flops_label", "as tabled"),
            "loss_unit": attrs.get("loss_unit", "nats/token"),
            "columns": attrs.get("columns", {}),
        },
        "options": {"window_ln": window, "n_bootstrap": n_bootstrap, "seed": seed},
        "warnings": list(attrs.get("warnings", [])),
        "flags": [],
    }
    fitted: dict = {}
    for approach in approaches:
        try:
            if approach == "2":
                fitted[approach] = fit_isoflop(
                    data, window=window, n_bootstrap=n_bootstrap, seed=seed
                )
            else:
                fitted[approach] = fit_parametric(data, n_bootstrap=n_bootstrap, seed=seed)
            fits[f"approach{approach}"] = fitted[approach].to_dict(samples=True)
            # The convention this approach's numbers are in: Approach 3's optimum takes C = 6ND
            # whatever the table's FLOP column counts.
            convention = fits["convention"]
            fits[f"approach{approach}"]["convention"] = {
                "flops": convention["flops"] if approach == "2" else "6N",
                "flops_label": convention["flops_label"] if approach == "2" else "6ND",
                "params": convention["columns"].get("params") or "C / (6 D)",
                "loss_unit": convention["loss_unit"],
            }
        except ScalingLawError as error:
            fits[f"approach{approach}"] = {"approach": int(approach), "error": str(error)}
    if "2" in fitted:
        fits["flags"] += _approach2_flags(fitted["2"])
    if "3" in fitted:
        fits["flags"] += _approach3_flags(fitted["3"], float(data["L"].min()))
    if "2" in fitted and "3" in fitted:
        fits["flags"] += _disagreement(fitted["2"], fitted["3"])
    fits["flags"] += [_flag("table", w) for w in fits["warnings"]]
    return fits


def fitted_objects(fits: dict) -> tuple[IsoFlopFit | None, ParametricFit | None]:
    """The fits object's approaches as IsoFlopFit and ParametricFit (None where not fitted)."""
    two, three = fits.get("approach2"), fits.get("approach3")
    iso = IsoFlopFit.from_dict(two) if two and "minima" in two else None
    par = ParametricFit.from_dict(three) if three and "E" in three else None
    return iso, par


def write_fits(fits: dict, path: str | os.PathLike) -> Path:
    """Write the fits object as JSON, atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic.write_json(path, fits, indent=1, allow_nan=False)


def read_fits(path: str | os.PathLike) -> dict:
    """A fits object written by write_fits."""
    path = Path(path)
    try:
        fits = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ScalingLawError(f"{path}: cannot read a fits object ({error})") from error
    if fits.get("version") != FITS_VERSION:
        raise ScalingLawError(
            f"{path}: fits object version {fits.get('version')!r}, this code reads "
            f"{FITS_VERSION}; rerun `python -m nanogpt.scaling_laws RESULTS --out DIR`"
        )
    return fits


def summary(fits: dict) -> dict:
    """The headline numbers of a fits object (no replicates): what tests and reports compare."""

    def strip(d):
        if isinstance(d, dict):
            return {k: strip(v) for k, v in d.items() if k not in ("samples", "parabola_samples")}
        if isinstance(d, list):
            return [strip(v) for v in d]
        return d

    return strip(fits)


__all__ = [
    "DEFAULT_BOOTSTRAP",
    "PARAMETER_NAMES",
    "fit_all",
    "fitted_objects",
    "read_fits",
    "summary",
    "table_fingerprint",
    "write_fits",
]
