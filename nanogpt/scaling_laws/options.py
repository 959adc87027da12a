"""The command-line options shared by every tool that reads a results table (the fit's command
line, plots/*.py): which columns mean what, the FLOP convention, and the fit's settings.
"""

from __future__ import annotations

import argparse
import math

from nanogpt.scaling_laws.analysis import DEFAULT_BOOTSTRAP
from nanogpt.scaling_laws.isoflop import DEFAULT_WINDOW_LN
from nanogpt.scaling_laws.parabolas import MIN_WINDOW_SIZES
from nanogpt.scaling_laws.results import FLOPS_CONVENTIONS

CONVENTION_HELP = {
    "table": "the FLOP column as written (the sweep's budget: 6N plus the attention term)",
    "actual": "flops_per_token * tokens (what each run really did; whole steps)",
    "6N": "6 * N * D (Kaplan et al.; Hoffmann et al.)",
}


def _window(text: str) -> float | None:
    if text.lower() in ("none", "all"):
        return None
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text}: a positive half-width in ln N, or 'none'")
    return value


def _column_or_none(text: str) -> str | None:
    return None if text.lower() == "none" else text


def add_table_options(parser: argparse.ArgumentParser) -> None:
    """The options that say how to read a table: shared by this command and plots/*.py."""
    table = parser.add_argument_group("reading the table (docs/README_SCALING_LAWS.md, 'Input')")
    table.add_argument(
        "--params-col",
        type=_column_or_none,
        default="params_scaling",
        help="column of N, or 'none' to derive N = C / (6 D) (default params_scaling)",
    )
    table.add_argument(
        "--tokens-col",
        type=_column_or_none,
        default="tokens",
        help="column of D, or 'none' to derive D = C / (6 N) (default tokens)",
    )
    table.add_argument(
        "--flops-col", default="flops_budget", help="column of C (default flops_budget)"
    )
    table.add_argument(
        "--loss-col", default="final_val_loss", help="column of the loss (default final_val_loss)"
    )
    table.add_argument(
        "--budget-col",
        default=None,
        help="column naming each run's isoFLOP budget (default: group the FLOP column within "
        "--budget-tolerance)",
    )
    table.add_argument(
        "--budget-tolerance",
        type=float,
        default=0.05,
        metavar="DECADES",
        help="runs whose FLOPs lie within this many decades of a group's smallest are one "
        "budget; no group spans more (default 0.05, a factor 1.12)",
    )
    table.add_argument(
        "--all-runs",
        action="store_true",
        help="fit every run; by default only the lowest-loss run of each (size, budget) is kept "
        "(tables with several learning rates or seeds per size)",
    )
    table.add_argument(
        "--flops-convention",
        choices=FLOPS_CONVENTIONS,
        default="table",
        help="how to count each run's compute: "
        + "; ".join(f"{k}: {v}" for k, v in CONVENTION_HELP.items()),
    )
    table.add_argument(
        "--flops-label",
        default=None,
        help="how the table's FLOP column counts, for labels (default '6N + attention' for a "
        "sweep's table, else 'as tabled'; e.g. '6ND')",
    )
    table.add_argument(
        "--loss-unit",
        default=None,
        help="unit of the loss column, for labels (default: nats/byte when the tokenizer column "
        "says bytes, else nats/token)",
    )


def add_fit_options(parser: argparse.ArgumentParser) -> None:
    """The options of the fits: shared by this command and plots/*.py (same defaults)."""
    fit = parser.add_argument_group("the fits")
    fit.add_argument(
        "--bootstrap",
        type=int,
        default=DEFAULT_BOOTSTRAP,
        help=f"bootstrap resamples for the intervals, both approaches (default "
        f"{DEFAULT_BOOTSTRAP}; Approach 3 on 240 runs takes a few seconds)",
    )
    fit.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    fit.add_argument(
        "--window",
        type=_window,
        default=DEFAULT_WINDOW_LN,
        metavar="LN_N",
        help="Approach 2: fit each parabola to the runs within this half-width of its vertex, "
        f"in ln N (natural log of parameters), and to at least {MIN_WINDOW_SIZES} sizes; "
        f"'none' fits every run (default {DEFAULT_WINDOW_LN}: a factor "
        f"{math.exp(DEFAULT_WINDOW_LN):.1f} either side, {DEFAULT_WINDOW_LN / math.log(10):.2f} "
        "decades)",
    )


def load_options(args: argparse.Namespace) -> dict:
    """load_results keyword arguments from parsed table options."""
    return {
        "params_col": args.params_col,
        "tokens_col": args.tokens_col,
        "flops_col": args.flops_col,
        "loss_col": args.loss_col,
        "budget_col": args.budget_col,
        "budget_tolerance_decades": args.budget_tolerance,
        "best_per_size": not args.all_runs,
        "flops_convention": args.flops_convention,
        "flops_label": args.flops_label,
        "loss_unit": args.loss_unit,
    }
