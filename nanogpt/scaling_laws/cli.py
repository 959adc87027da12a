"""`python -m nanogpt.scaling_laws RESULTS [--approach 2|3|both] [--budget C] [--json]`."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time

from nanogpt.scaling_laws.isoflop import POSITION_TEXT, BudgetMinimum, IsoFlopFit, fit_isoflop
from nanogpt.scaling_laws.parametric import PARAMETER_NAMES, ParametricFit, fit_parametric
from nanogpt.scaling_laws.results import FLOPS_CONVENTIONS, Estimate, ScalingLawError, load_results

CONVENTION_HELP = {
    "table": "the FLOP column as written (the sweep's budget: 6N plus the attention term)",
    "actual": "flops_per_token * tokens (what each run really did; whole steps)",
    "6N": "6 * N * D (Kaplan et al.; Hoffmann et al.)",
}


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
        "--flops-convention",
        choices=FLOPS_CONVENTIONS,
        default="table",
        help="how to count each run's compute: "
        + "; ".join(f"{k}: {v}" for k, v in CONVENTION_HELP.items()),
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        help="bootstrap resamples for the intervals, both approaches (default 1000; Approach 3 "
        "refits every resample, about 10 s per 1000 on 240 runs)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument(
        "--window",
        type=float,
        default=None,
        metavar="DECADES",
        help="Approach 2: fit each parabola only to runs within this many decades of N around "
        "the budget's lowest-loss run (default: all runs)",
    )
    parser.add_argument("--params-col", default="params_scaling", help="column of N")
    parser.add_argument(
        "--tokens-col", default="tokens", help="column of D, or 'none' to derive D = C / (6N)"
    )
    parser.add_argument("--flops-col", default="flops_budget", help="column of the FLOP budget")
    parser.add_argument("--loss-col", default="final_val_loss", help="column of the loss")
    return parser


def _cell(estimate: Estimate, spec: str = ".3g") -> str:
    text = format(estimate.value, spec)
    if estimate.low == estimate.low:  # not NaN
        text += f" [{estimate.low:{spec}}, {estimate.high:{spec}}]"
    return text


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    head = "  ".join(cell.ljust(w) for cell, w in zip(header, widths)).rstrip()
    return "\n".join(["  " + head, "  " + "-" * len(head), *("  " + line for line in lines)])


def _minimum_row(m: BudgetMinimum) -> list[str]:
    if m.interior:
        return [_cell(m.params), _cell(m.tokens), _cell(m.loss, ".4g"), "yes"]
    # An extrapolated vertex is the parabola's shape, not a minimum the runs found: say only
    # on which side of the sizes run the optimum lies.
    low, high = (10.0**x for x in m.log10_params_range)
    params = f"< {low:.3g}" if m.position == "below" else f"> {high:.3g}"
    return [params, "-", "-", f"NO: {POSITION_TEXT[m.position]}"]


def format_isoflop(fit: IsoFlopFit) -> str:
    """Approach 2 as text tables."""
    rows = [[f"{m.budget:.3g}", str(m.n_points), *_minimum_row(m)] for m in fit.minima]
    head = f"Approach 2: isoFLOP parabolas (FLOP convention {fit.flops_convention}"
    if fit.law_error is None:
        n_budgets, n_law = len(fit.minima) + len(fit.left_out), len(fit.law_minima)
        if n_law < n_budgets:
            head += (
                f"; power laws through the {n_law} of {n_budgets} budgets with an interior minimum"
            )
        head += f"; {fit.n_bootstrap_used} of {fit.n_bootstrap} bootstrap resamples used"
    out = [head + ")"]
    if rows:
        header = ["budget C", "runs", "N* [95% CI]", "D* [95% CI]", "L* [95% CI]", "inside"]
        out.append(_table(header, rows))
    out.append("")
    if fit.law_error is None:
        laws = [
            ("N* = k * C^a", "a", fit.params_law),
            ("D* = k * C^b", "b", fit.tokens_law),
            ("L* = k * C^c", "c", fit.loss_law),
        ]
        rows = [
            [law, name, _cell(p.exponent, ".4f"), f"{p.exponent.se:.4f}", _cell(p.coefficient)]
            for law, name, p in laws
        ]
        out.append(_table(["power law", "", "exponent [95% CI]", "SE", "k [95% CI]"], rows))
    else:
        out.append("  power laws N* = k * C^a, D* = k * C^b, L* = k * C^c:")
        out.extend(
            textwrap.wrap(fit.law_error, 96, initial_indent="    ", subsequent_indent="    ")
        )
    out.extend(f"  note: {note}" for note in fit.notes)
    return "\n".join(out)


def format_parametric(fit: ParametricFit) -> str:
    """Approach 3 as a text table."""
    names = [*PARAMETER_NAMES, "a", "b"]
    labels = {"a": "a = beta/(alpha+beta)", "b": "b = alpha/(alpha+beta)"}
    rows = [
        [labels.get(n, n), f"{getattr(fit, n).value:.4g}", f"{getattr(fit, n).se:.3g}"]
        + [f"[{getattr(fit, n).low:.4g}, {getattr(fit, n).high:.4g}]"]
        for n in names
    ]
    out = [
        f"Approach 3: L(N, D) = E + A/N^alpha + B/D^beta ({fit.n_points} runs, "
        f"{fit.n_bootstrap} bootstrap resamples; Huber objective {fit.objective:.6g}; "
        f"L-BFGS: {fit.optimizer_message})",
        _table(["parameter", "estimate", "SE", "95% CI"], rows),
    ]
    if fit.degenerate:
        out.append("  DEGENERATE FIT: do not trust these numbers (see the notes)")
    out.extend(f"  note: {note}" for note in fit.notes)
    return "\n".join(out)


def format_prediction(prediction: dict) -> str:
    def cell(d: dict, spec: str = ".3g") -> str:
        spread = (float("nan") if d[k] is None else d[k] for k in ("se", "ci_low", "ci_high"))
        return _cell(Estimate(d["value"], *spread), spec)

    if "error" in prediction:
        return (
            f"  Approach {prediction['approach']} at C = {prediction['budget']:.3g} FLOPs: "
            "no prediction (its power laws were not fitted)"
        )
    return (
        f"  Approach {prediction['approach']} at C = {prediction['budget']:.3g} FLOPs "
        f"({prediction['flops_convention']}): N* = {cell(prediction['params'])}, "
        f"D* = {cell(prediction['tokens'])}, L* = {cell(prediction['loss'], '.4g')}"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tokens_col = None if args.tokens_col.lower() == "none" else args.tokens_col
    try:
        df, message = load_results(
            args.results,
            params_col=args.params_col,
            tokens_col=tokens_col,
            flops_col=args.flops_col,
            loss_col=args.loss_col,
            flops_convention=args.flops_convention,
        )
    except ScalingLawError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    report: dict = {
        "results": str(args.results),
        "message": message,
        "flops_convention": args.flops_convention,
        "columns": {
            "params": args.params_col,
            "tokens": tokens_col,
            "flops": args.flops_col,
            "loss": args.loss_col,
        },
    }
    fits = {}
    errors = {}
    approaches = ("2", "3") if args.approach == "both" else (args.approach,)
    for approach in approaches:
        started = time.perf_counter()
        try:
            if approach == "2":
                fits[approach] = fit_isoflop(
                    df, window_decades=args.window, n_bootstrap=args.bootstrap, seed=args.seed
                )
            else:
                fits[approach] = fit_parametric(df, n_bootstrap=args.bootstrap, seed=args.seed)
        except ScalingLawError as error:
            errors[approach] = str(error)
        report[f"approach{approach}"] = (
            fits[approach].to_dict() if approach in fits else {"error": errors[approach]}
        )
        report[f"approach{approach}"]["fit_s"] = round(time.perf_counter() - started, 3)
        # Minima that the runs do not bracket give no power law: Approach 2 has no answer, and
        # the exit status says so, though its per-budget table is still printed.
        if approach == "2" and approach in fits and fits[approach].law_error is not None:
            errors[approach] = fits[approach].law_error
    predictions = []
    for budget in args.budget:
        for approach, fit in fits.items():
            try:
                predictions.append(fit.predict(budget))
            except ScalingLawError as error:
                predictions.append(
                    {"approach": int(approach), "budget": budget, "error": str(error)}
                )
    report["predictions"] = predictions

    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{args.results}: {message}")
        print(
            f"FLOP convention: {args.flops_convention} = {CONVENTION_HELP[args.flops_convention]}"
        )
        for approach in approaches:
            print()
            if approach in fits:
                fit = fits[approach]
                print(format_isoflop(fit) if approach == "2" else format_parametric(fit))
            else:
                print(f"Approach {approach}: error: {errors[approach]}")
        if predictions:
            print("\nCompute-optimal predictions (95% CI):")
            print("\n".join(format_prediction(p) for p in predictions))
    for approach, error in errors.items():
        print(f"error (Approach {approach}): {error}", file=sys.stderr)
    return 1 if errors else 0
