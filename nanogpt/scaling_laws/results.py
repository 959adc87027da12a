"""Reading a results table into the (N, D, C, L) frame the fits use; errors; interval estimates.

The sweep writes one row per trial (columns in docs/README_SWEEPS.md). The fits need four
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
    def from_samples(
        cls, value: float, samples: np.ndarray | None, positive: bool = False
    ) -> Estimate:
        """Point estimate plus the spread of its bootstrap replicates (NaN replicates left out;
        the fits count them).

        The interval is the replicates' 2.5-97.5 percentile range moved so that their median
        sits on the estimate: it keeps the replicates' asymmetry, and always contains the
        estimate, which a plain percentile interval of a skewed statistic need not (estimates
        at the very edge of their own interval were the symptom). For a `positive` quantity (a
        size, a token count, a scale factor) the move is a factor, not a difference, so the
        interval stays positive.
        """
        if samples is None:
            return cls(float(value))
        samples = np.asarray(samples, dtype=float)
        samples = samples[~np.isnan(samples)]
        if samples.size < 2:
            return cls(float(value))
        # Infinite replicates (a flat parabola, a failed resample) stay in: they are tails. The
        # percentiles are taken with them as huge finite numbers, since interpolating between
        # inf and a number gives NaN, and the ends that are huge become infinite again.
        huge = np.finfo(float).max / 8
        low, median, high = np.percentile(np.clip(samples, -huge, huge), [2.5, 50.0, 97.5])
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if positive and value > 0 and 0 < median < huge / 2:
                low, high = value * (low / median), value * (high / median)
            elif abs(median) < huge / 2:
                low, high = value - (median - low), value + (high - median)
            else:
                low, high = -math.inf, math.inf
            low = -math.inf if low <= -huge / 2 else low
            high = math.inf if high >= huge / 2 else high
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


def group_budgets(flops: np.ndarray, tolerance_decades: float) -> np.ndarray:
    """Label each run with its isoFLOP budget.

    A sweep writes the exact budget, so equal values form a group. Digitised or hand-made tables
    scatter a little around each budget, so runs are grouped in order of FLOPs: a group starts
    at its smallest value and takes every run within `tolerance_decades` (log10) of it, so no
    group spans more than the tolerance (chaining neighbours instead once merged the Chinchilla
    points from 1.6e19 to 1.5e20 into one budget). A group is labelled by its median.
    """
    order = np.argsort(flops)
    logs = np.log10(flops[order])
    labels = np.empty_like(flops)
    start = 0
    while start < len(logs):
        stop = int(np.searchsorted(logs, logs[start] + tolerance_decades * (1 + 1e-12), "right"))
        members = order[start:stop]
        labels[members] = np.median(flops[members])
        start = stop
    return labels


# Loss units by the tokenizer column's value: byte-level runs report nats per byte.
LOSS_UNITS = {"gpt2": "nats/token", "bytes": "nats/byte"}
# How the sweep's own FLOP column counts (nanogpt/scaling.py): the label of the "table"
# convention when the table is a sweep's.
SWEEP_FLOPS_LABEL = "6N + attention"


def _column(table: pd.DataFrame, name: str) -> np.ndarray:
    return table[name].to_numpy(dtype=float)


def load_results(
    source: str | os.PathLike | pd.DataFrame,
    *,
    params_col: str | None = "params_scaling",
    tokens_col: str | None = "tokens",
    flops_col: str | None = "flops_budget",
    loss_col: str = "final_val_loss",
    status_col: str = "status",
    flops_convention: str = "table",
    budget_col: str | None = None,
    budget_tolerance_decades: float = 0.05,
    best_per_size: bool = True,
    loss_unit: str | None = None,
    flops_label: str | None = None,
) -> tuple[pd.DataFrame, str]:
    """Read a results table and keep the healthy runs.

    Returns the healthy rows with columns added: `N` (params_col, or C / 6D when params_col is
    None), `D` (tokens_col, or C / 6N when tokens_col is None), `L` (loss_col), `budget` (the
    isoFLOP budget: budget_col as written, or flops_col grouped within
    `budget_tolerance_decades`) and `C`, the compute of each run under `flops_convention`:

    - "table": flops_col as written (the sweep's budget counts attention FLOPs; another
      table's column counts however its authors did: say how with `flops_label`);
    - "actual": flops_per_token * tokens, the FLOPs the run really did (whole steps can leave
      it slightly under the budget);
    - "6N": 6 * N * D, the convention of Kaplan et al. and Hoffmann et al.

    Rows whose status is not "ok" (when the table has a status column) or whose N, D, C or L is
    missing, non-positive or not finite are left out; the message says how many and why. With
    `best_per_size`, only the lowest-loss run of each (size, budget) is kept: the isoFLOP curve
    is the best each size can do, and a table with several learning rates or seeds per size
    would otherwise fit its parabolas through the poor settings too.

    `df.attrs` carries what the fits and figures label with: "flops_convention", "flops_label",
    "loss_unit" (from `loss_unit`, else the tokenizer column, else nats/token), "columns" and
    "warnings" (a table that is not an isoFLOP grid, runs of one size and budget merged, ...).
    """
    _check_options(params_col, tokens_col, flops_col, flops_convention)
    table = read_table(source)
    _check_columns(table, params_col, tokens_col, flops_col, loss_col, budget_col, flops_convention)
    total = len(table)
    if total == 0:
        raise NoHealthyRunsError("the results table is empty: nothing to fit")
    warnings_: list[str] = []
    loss_unit = loss_unit or _loss_unit(table, warnings_)

    table, dropped = _ok_rows(table, status_col)
    n, d, c, flops, loss = _derive(
        table, params_col, tokens_col, flops_col, loss_col, flops_convention
    )
    budget = _column(table, budget_col) if budget_col is not None else flops
    with np.errstate(invalid="ignore"):
        usable = np.ones(len(table), dtype=bool)
        for values in (n, d, c, budget, loss):
            usable &= np.isfinite(values) & (values > 0)
    if (~usable).sum():
        dropped["no finite positive N, D, C or loss"] = int((~usable).sum())
    table = table[usable].copy()
    table["N"], table["D"], table["C"], table["L"] = n[usable], d[usable], c[usable], loss[usable]
    if len(table) and budget_col is None:
        table["budget"] = group_budgets(budget[usable], budget_tolerance_decades)
    else:
        table["budget"] = budget[usable]
    table = table.reset_index(drop=True)

    message = _kept_message(table, total, dropped, params_col, tokens_col)
    if best_per_size:
        table, merged = _best_per_size(table)
        if merged:
            message += f"; kept the best of {merged} runs sharing a size and budget"
    else:
        merged = _repeats(table)
    warnings_ += _grid_warnings(table, merged, best_per_size)

    columns = dict(params=params_col, tokens=tokens_col, flops=flops_col, loss=loss_col)
    columns["budget"] = budget_col
    _set_attrs(table, flops_convention, flops_label, loss_unit, columns, warnings_)
    return table, message


def _ok_rows(table: pd.DataFrame, status_col: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """The rows whose status is "ok" (all of them without a status column), and how many of
    each other status were left out."""
    dropped: dict[str, int] = {}
    if status_col in table.columns:
        status = table[status_col].astype(str).str.strip().str.lower()
        for value, count in status[status != "ok"].value_counts().items():
            dropped[value] = int(count)
        table = table[status == "ok"].copy()
    return table, dropped


def _kept_message(
    table: pd.DataFrame,
    total: int,
    dropped: dict[str, int],
    params_col: str | None,
    tokens_col: str | None,
) -> str:
    """How many rows were kept and why the others were not; no healthy row at all raises."""
    detail = ", ".join(f"{count} {why}" for why, count in dropped.items())
    message = f"kept {len(table)} of {total} rows" + (f" (left out {detail})" if detail else "")
    if params_col is None:
        message += "; N derived as C / (6 D)"
    if tokens_col is None:
        message += "; D derived as C / (6 N)"
    if len(table) == 0:
        raise NoHealthyRunsError(
            f"no healthy runs to fit: all {total} rows were left out ({detail}). "
            "Look at the sweep's logs for why the runs diverged or failed."
        )
    return message


def _set_attrs(
    table: pd.DataFrame,
    flops_convention: str,
    flops_label: str | None,
    loss_unit: str,
    columns: dict[str, str | None],
    warnings_: list[str],
) -> None:
    """What the fits and figures label with, in ``table.attrs``."""
    if flops_label is None:
        flops_label = SWEEP_FLOPS_LABEL if "flops_per_token" in table.columns else "as tabled"
    table.attrs.update(
        flops_convention=flops_convention,
        flops_label=flops_label,
        loss_unit=loss_unit,
        columns=columns,
        warnings=warnings_,
    )


def _check_options(
    params_col: str | None, tokens_col: str | None, flops_col: str | None, flops_convention: str
) -> None:
    """Options that cannot work whatever the table holds."""
    if flops_convention not in FLOPS_CONVENTIONS:
        raise ScalingLawError(
            f"flops_convention={flops_convention!r}; choose one of {', '.join(FLOPS_CONVENTIONS)}"
        )
    given = [c for c in (params_col, tokens_col, flops_col) if c is not None]
    if len(given) < 2:
        raise ScalingLawError(
            "give at least two of the parameter, token and FLOP columns: the third is derived "
            "from C = 6 N D (got " + (", ".join(repr(c) for c in given) or "none") + ")"
        )
    if flops_convention == "actual" and tokens_col is None:
        raise ScalingLawError(
            "flops_convention='actual' multiplies flops_per_token by the token column; "
            "a table without tokens (tokens_col None) can use 'table' or '6N'"
        )


def _check_columns(
    table: pd.DataFrame,
    params_col: str | None,
    tokens_col: str | None,
    flops_col: str | None,
    loss_col: str,
    budget_col: str | None,
    flops_convention: str,
) -> None:
    """Every column the options name is in the table (the error lists the ones it has)."""
    needed = [c for c in (params_col, tokens_col, flops_col, loss_col, budget_col) if c is not None]
    if flops_convention == "actual":
        needed.append("flops_per_token")
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ScalingLawError(
            f"the results table has no column {', '.join(map(repr, missing))}; it has "
            f"{', '.join(map(str, table.columns))}. Name the right ones with the column options "
            "(--params-col, --tokens-col, --flops-col, --loss-col, --budget-col)."
        )


def _derive(
    table: pd.DataFrame,
    params_col: str | None,
    tokens_col: str | None,
    flops_col: str | None,
    loss_col: str,
    flops_convention: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(N, D, C, the FLOP column, L) per row: a missing one of N, D, FLOPs from C = 6 N D, and C
    in the FLOP convention asked for."""
    loss = _column(table, loss_col)
    flops = _column(table, flops_col) if flops_col is not None else None
    n = _column(table, params_col) if params_col is not None else None
    d = _column(table, tokens_col) if tokens_col is not None else None
    with np.errstate(divide="ignore", invalid="ignore"):
        if n is None:
            n = flops / (6.0 * d)
        if d is None:
            d = flops / (6.0 * n)
        if flops is None:
            flops = 6.0 * n * d
        if flops_convention == "table":
            c = flops
        elif flops_convention == "actual":
            c = _column(table, "flops_per_token") * d
        else:
            c = 6.0 * n * d
    return n, d, c, flops, loss


def _loss_unit(table: pd.DataFrame, warnings_: list[str]) -> str:
    """The loss unit a sweep's table implies (its tokenizer column), or nats/token."""
    if "tokenizer" not in table.columns:
        return LOSS_UNITS["gpt2"]
    tokenizers = sorted(set(table["tokenizer"].dropna().astype(str)))
    if len(tokenizers) > 1:
        raise ScalingLawError(
            f"the table mixes tokenizers ({', '.join(tokenizers)}): losses per token and per "
            "byte cannot be fitted together; fit one tokenizer's rows at a time"
        )
    return (
        LOSS_UNITS.get(tokenizers[0], f"nats per {tokenizers[0]} token")
        if tokenizers
        else (LOSS_UNITS["gpt2"])
    )


def _setting_key(table: pd.DataFrame) -> list[pd.Series]:
    """Runs of one budget and size trained on the same tokens (to a relative 1e-6): repeats of
    one point of the grid with other learning rates or seeds. Matching D as well as N keeps
    distinct runs whose budgets merely fall in one group (digitised tables) apart."""
    return [
        table["budget"],
        np.log10(table["N"]).round(6).rename("size"),
        np.log10(table["D"]).round(6).rename("data"),
    ]


def _repeats(table: pd.DataFrame) -> int:
    """Runs that share a size and token count with another run."""
    counts = table.groupby(_setting_key(table)).size()
    return int(counts[counts > 1].sum())


def _best_per_size(table: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The lowest-loss run of each (budget, size, tokens), and how many runs were in groups of
    two or more."""
    repeats = _repeats(table)
    if not repeats:
        return table, 0
    best = table.loc[table.groupby(_setting_key(table))["L"].idxmin()]
    return best.sort_index().reset_index(drop=True), repeats


def _grid_warnings(table: pd.DataFrame, repeats: int, kept_best: bool) -> list[str]:
    """Why a table may not be an isoFLOP grid: what to check before trusting Approach 2."""
    out = []
    if repeats:
        out.append(
            f"{repeats} runs share a model size and budget with another (several learning "
            "rates or seeds?): this is not a plain isoFLOP grid; "
            + ("each size's best run was kept" if kept_best else "every run is fitted")
        )
    sizes = table.groupby("budget")["N"].nunique()
    thin = int((sizes < 3).sum())
    if len(sizes) and thin * 2 > len(sizes):
        out.append(
            f"not an isoFLOP grid: {thin} of {len(sizes)} budgets have fewer than 3 model sizes "
            "(runs at scattered compute, or budgets grouped too finely: set the budget column "
            "or the tolerance); Approach 2 needs several sizes per budget, Approach 3 does not"
        )
    return out


def ensure_loaded(data: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """`data` as load_results returns it: loaded with the default columns unless it already is."""
    if isinstance(data, pd.DataFrame) and all(c in data.columns for c in CANONICAL_COLUMNS):
        return data
    return load_results(data)[0]
