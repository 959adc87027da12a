"""`python -m nanogpt.scaling_laws RESULTS [--approach 2|3|both] [--budget C] [--json]`."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from nanogpt.plotting import make_all_plots
from nanogpt.scaling_laws.analysis import fit_all, summary, write_fits
from nanogpt.scaling_laws.options import add_fit_options, add_table_options, load_options
from nanogpt.scaling_laws.report import (
    downstream_summary,
    errors_of,
    format_downstream,
    format_report,
    predictions,
)
from nanogpt.scaling_laws.results import ScalingLawError, load_results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nanogpt.scaling_laws",
        description="Fit Chinchilla scaling laws (Approach 2: isoFLOP parabolas; Approach 3: "
        "L = E + A/N^alpha + B/D^beta) to a results table, with bootstrap intervals. "
        "See docs/README_SCALING_LAWS.md.",
    )
    parser.add_argument("results", help="a sweep's output directory, or a .parquet/.csv table")
    parser.add_argument("--approach", choices=("2", "3", "both"), default="both")
    parser.add_argument(
        "--budget",
        type=float,
        action="append",
        default=[],
        metavar="C",
        help="predict the compute-optimal N, D and loss at C FLOPs (repeatable), e.g. 1e21",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="also write DIR/fits.json (with the bootstrap replicates) and DIR/plots/",
    )
    add_fit_options(parser)
    add_table_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        df, message = load_results(args.results, **load_options(args))
    except ScalingLawError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    approaches = ("2", "3") if args.approach == "both" else (args.approach,)
    fits = fit_all(
        df,
        approaches=approaches,
        window=args.window,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        source=str(args.results),
        message=message,
    )
    if args.out:
        write_fits(fits, f"{args.out}/fits.json")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            make_all_plots(df, f"{args.out}/plots", fits=fits, budget=(args.budget or [None])[0])
        for warning in caught:
            if issubclass(warning.category, UserWarning):  # ours, not numpy's
                print(f"plots: {warning.message}", file=sys.stderr)
    downstream = downstream_summary(df)  # CORE per budget, when the table has scores
    if args.json:
        report = summary(fits)
        report["predictions"] = predictions(fits, args.budget)
        if downstream is not None:
            report["downstream"] = downstream
        print(json.dumps(report, indent=2))
    else:
        print(format_report(fits, args.budget))
        if downstream is not None:
            print("\n" + format_downstream(downstream))
    errors = errors_of(fits)
    for approach, error in errors.items():
        print(f"error (Approach {approach}): {error}", file=sys.stderr)
    return 1 if errors else 0
