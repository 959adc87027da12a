"""Reading a results table into the (N, D, C, L) frame the fits use; errors; interval estimates.

The sweep writes one row per trial (columns fixed in ../shared/DESIGN.md). The fits need four
numbers per healthy run: parameters N, training tokens D, compute C and final loss L, plus the
isoFLOP budget the run belongs to. `load_results` adds those as the columns `N`, `D`, `C`, `L`
and `budget` and keeps every original column (the training-time plot needs `wall_s`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

# Ways of counting a run's compute (see docs/README_SCALING_LAWS.md, "FLOP conventions").
FLOPS_CONVENTIONS = ("table", "actual", "6N")

# Canonical columns added by load_results.
CANONICAL_COLUMNS = ("N", "D", "C", "L", "budget")


class ScalingLawError(ValueError):
    """The data cannot be fitted as asked; the message says why and what to do."""


class NoHealthyRunsError(ScalingLawError):
    """Every row of the results table is diverged, failed, stopped or has no finite loss."""


class InsufficientDataError(ScalingLawError):
    """Too few points or budgets for the fit that was asked for."""


@dataclass(frozen=True)
class Estimate:
    """A fitted number with its bootstrap standard error and 95% interval.

    `se`, `low` and `high` are NaN when no bootstrap was run.
    """

    value: float
    se: float = math.nan
    low: float = math.nan
    high: float = math.nan

    @classmethod
    def from_samples(cls, value: float, samples: np.ndarray | None) -> Estimate:
        """Point estimate plus the spread of its bootstrap replicates (NaN replicates left out;
        the fits count them).

        The interval is the replicates' 2.5-97.5 percentile range moved so that their median
        sits on the estimate: it keeps the replicates' asymmetry, and always contains the
        estimate, which a plain percentile interval of a skewed statistic need not (estimates
        at the very edge of their own interval were the symptom).
        """
        if samples is None:
            return cls(float(value))
        samples = np.asarray(samples, dtype=float)
        samples = samples[~np.isnan(samples)]
        if samples.size < 2:
            return cls(float(value))
        # Infinite replicates (a flat parabola, a failed resample) stay in: they are tails.
        low, median, high = np.percentile(samples, [2.5, 50.0, 97.5])
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(median):
                low, high = value - (median - low), value + (high - median)
            else:
                low, high = -math.inf, math.inf
            # Replicates near 1e200 square to inf: so is the SE.
            se = float(np.std(samples, ddof=1)) if np.isfinite(samples).all() else math.inf
        return cls(float(value), se, float(low), float(high))

    @classmethod
    def from_dict(cls, d: dict) -> Estimate:
        """Inverse of to_dict (None, JSON's stand-in for NaN and inf, becomes NaN)."""

        def number(x: float | str | None) -> float:
            return math.nan if x is None else float(x)

        return cls(*(number(d[k]) for k in ("value", "se", "ci_low", "ci_high")))

    def contains(self, x: float) -> bool:
        """Whether x lies inside the 95% interval."""
        return bool(self.low <= x <= self.high)

    def to_dict(self) -> dict[str, float | str | None]:
        return {
            "value": json_number(self.value),
            "se": json_number(self.se),
            "ci_low": json_number(self.low),
            "ci_high": json_number(self.high),
        }


def json_number(x: float) -> float | str | None:
    """A float for JSON, which has no NaN or inf: NaN becomes None, inf the string "inf"."""
    x = float(x)
    if math.isnan(x):
        return None
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


def encode_array(array: np.ndarray) -> list:
    """A 2-D array as nested JSON-ready lists (see json_number)."""
    return [[json_number(v) for v in row] for row in np.asarray(array, dtype=float)]


def decode_array(rows: list, width: int) -> np.ndarray:
    """Inverse of encode_array."""
    values = [[math.nan if v is None else float(v) for v in row] for row in rows]
    return np.array(values, dtype=float).reshape(-1, width)


def read_table(source: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """A results table from a DataFrame, a .parquet/.csv file, or a sweep's output directory."""
    if isinstance(source, pd.DataFrame):
        return source.copy()
    path = Path(source)
    if path.is_dir():
        for name in ("results.parquet", "results.csv"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise ScalingLawError(
                f"{path}: no results.parquet or results.csv in this directory; "
                "point at a sweep's output directory or at a results file"
            )
    if not path.is_file():
        raise ScalingLawError(f"{path}: no such file or directory")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix in (".csv", ".txt"):
        return pd.read_csv(path)
    raise ScalingLawError(f"{path}: unknown file type {path.suffix!r}; expected .parquet or .csv")


def _group_budgets(flops: np.ndarray, tolerance_decades: float) -> np.ndarray:
    """Label each run with its isoFLOP budget.

    A sweep writes the exact budget, so equal values form a group. Digitised or hand-made tables
    scatter a little around each budget, so sorted values closer than `tolerance_decades` (in
    log10) to their neighbour are chained into one group, labelled by the group's median.
    """
    order = np.argsort(flops)
    logs = np.log10(flops[order])
    group_of_sorted = np.concatenate([[0], np.cumsum(np.diff(logs) > tolerance_decades)])
    labels = np.empty_like(flops)
    for group in np.unique(group_of_sorted):
        members = order[group_of_sorted == group]
        labels[members] = np.median(flops[members])
    return labels


def load_results(
    source: str | os.PathLike | pd.DataFrame,
    *,
    params_col: str = "params_scaling",
    tokens_col: str | None = "tokens",
    flops_col: str | None = "flops_budget",
    loss_col: str = "final_val_loss",
    status_col: str = "status",
    flops_convention: str = "table",
    budget_tolerance_decades: float = 0.05,
) -> tuple[pd.DataFrame, str]:
    """Read a results table and keep the healthy runs.

    Returns the healthy rows with columns added: `N` (params_col), `D` (tokens_col, or
    C / 6N when tokens_col is None), `L` (loss_col), `budget` (flops_col grouped into isoFLOP
    budgets) and `C`, the compute of each run under `flops_convention`:

    - "table": flops_col as written (the sweep's budget, which counts attention FLOPs);
    - "actual": flops_per_token * tokens, the FLOPs the run really did (whole steps can leave
      it slightly under the budget);
    - "6N": 6 * N * D, the convention of Kaplan et al. and Hoffmann et al.

    Rows whose status is not "ok" (when the table has a status column) or whose N, D, C or L is
    missing, non-positive or not finite are left out; the message says how many and why.
    """
    if flops_convention not in FLOPS_CONVENTIONS:
        raise ScalingLawError(
            f"flops_convention={flops_convention!r}; choose one of {', '.join(FLOPS_CONVENTIONS)}"
        )
    if tokens_col is None and flops_col is None:
        raise ScalingLawError("give tokens_col or flops_col (or both): D and C need one of them")
    table = read_table(source)
    needed = [c for c in (params_col, tokens_col, flops_col, loss_col) if c is not None]
    if flops_convention == "actual":
        needed.append("flops_per_token")
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ScalingLawError(
            f"the results table has no column {', '.join(map(repr, missing))}; it has "
            f"{', '.join(map(str, table.columns))}. Name the right ones with the column options."
        )
    total = len(table)
    if total == 0:
        raise NoHealthyRunsError("the results table is empty: nothing to fit")

    dropped: dict[str, int] = {}
    if status_col in table.columns:
        status = table[status_col].astype(str).str.strip().str.lower()
        for value, count in status[status != "ok"].value_counts().items():
            dropped[value] = int(count)
        table = table[status == "ok"].copy()

    n = table[params_col].to_numpy(dtype=float)
    loss = table[loss_col].to_numpy(dtype=float)
    if tokens_col is not None:
        d = table[tokens_col].to_numpy(dtype=float)
    if flops_col is not None:
        budget = table[flops_col].to_numpy(dtype=float)
    if tokens_col is None:
        d = budget / (6.0 * n)
    if flops_col is None:
        budget = 6.0 * n * d
    if flops_convention == "table":
        c = budget
    elif flops_convention == "actual":
        c = table["flops_per_token"].to_numpy(dtype=float) * d
    else:
        c = 6.0 * n * d
    with np.errstate(invalid="ignore"):
        usable = np.ones(len(table), dtype=bool)
        for values in (n, d, c, budget, loss):
            usable &= np.isfinite(values) & (values > 0)
    if (~usable).sum():
        dropped["no finite positive N, D, C or loss"] = int((~usable).sum())
    table = table[usable].copy()
    table["N"], table["D"], table["C"], table["L"] = n[usable], d[usable], c[usable], loss[usable]
    if len(table):
        table["budget"] = _group_budgets(budget[usable], budget_tolerance_decades)
    else:
        table["budget"] = np.array([], dtype=float)
    table = table.reset_index(drop=True)
    table.attrs["flops_convention"] = flops_convention

    detail = ", ".join(f"{count} {why}" for why, count in dropped.items())
    message = f"kept {len(table)} of {total} rows" + (f" (left out {detail})" if detail else "")
    if tokens_col is None:
        message += "; D derived as C / (6 N)"
    if len(table) == 0:
        raise NoHealthyRunsError(
            f"no healthy runs to fit: all {total} rows were left out ({detail}). "
            "Look at the sweep's logs for why the runs diverged or failed."
        )
    return table, message


def ensure_loaded(data: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """`data` as load_results returns it: loaded with the default columns unless it already is."""
    if isinstance(data, pd.DataFrame) and all(c in data.columns for c in CANONICAL_COLUMNS):
        return data
    return load_results(data)[0]
