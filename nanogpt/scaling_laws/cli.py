"""`python -m nanogpt.scaling_laws RESULTS [--approach 2|3|both] [--budget C] [--json]`."""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap

from nanogpt.scaling_laws.analysis import (
    DEFAULT_BOOTSTRAP,
    fit_all,
    fitted_objects,
    summary,
    write_fits,
)
from nanogpt.scaling_laws.isoflop import (
    DEFAULT_WINDOW_LN,
    MIN_WINDOW_SIZES,
    POSITION_TEXT,
    BudgetMinimum,
    IsoFlopFit,
)
from nanogpt.scaling_laws.parametric import PARAMETER_NAMES, ParametricFit
from nanogpt.scaling_laws.results import FLOPS_CONVENTIONS, Estimate, ScalingLawError, load_results

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
    window = "every run" if fit.window is None else f"window ±{fit.window:g} in ln N"
    head = f"Approach 2: isoFLOP parabolas ({window}; FLOP convention {fit.flops_convention}"
    if fit.law_error is None:
        n_budgets, n_law = len(fit.minima) + len(fit.left_out), len(fit.law_minima)
        if n_law < n_budgets:
            head += (
                f"; power laws through the {n_law} of {n_budgets} budgets with an interior minimum"
            )
    if fit.n_bootstrap:
        head += (
            f"; {fit.n_bootstrap} bootstrap resamples, {fit.n_bootstrap_failed} without a power "
            f"law; noise of log L {fit.noise_sigma:.2g} ({fit.noise_dof} dof)"
        )
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
        f"{fit.n_bootstrap} bootstrap resamples, {fit.n_bootstrap_failed} refits unconverged; "
        f"Huber objective {fit.objective:.6g}; "
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


def format_flags(fits: dict) -> str:
    """The fits object's flags, one per line (empty when there are none)."""
    lines = []
    for flag in fits.get("flags", []):
        where = f"Approach {flag['approach']}: " if flag.get("approach") else ""
        lines.extend(
            textwrap.wrap(
                f"FLAG {flag['code']}: {where}{flag['message']}",
                98,
                initial_indent="  ",
                subsequent_indent="    ",
            )
        )
    return "\n".join(lines)


def predictions(fits: dict, budgets: list[float]) -> list[dict]:
    """Predictions of each fitted approach at each budget (errors as entries)."""
    out = []
    iso, par = fitted_objects(fits)
    for budget in budgets:
        for approach, fit in (("2", iso), ("3", par)):
            if f"approach{approach}" not in fits:
                continue
            try:
                if fit is None:
                    raise ScalingLawError(fits[f"approach{approach}"].get("error", "not fitted"))
                out.append(fit.predict(budget))
            except ScalingLawError as error:
                out.append({"approach": int(approach), "budget": budget, "error": str(error)})
    return out


def format_report(fits: dict, budgets: list[float] = ()) -> str:
    """The fits object as text: what the command line and the sweep's analysis print."""
    convention = fits["convention"]
    label = CONVENTION_HELP.get(convention["flops"], convention["flops"])
    if convention["flops"] == "table":
        label = f"the FLOP column as written ({convention['flops_label']})"
    out = [
        f"{fits['table']['source']}: {fits['table']['message']}",
        f"FLOP convention: {convention['flops']} = {label}; loss in {convention['loss_unit']}",
    ]
    iso, par = fitted_objects(fits)
    for key, fit, formatter in (
        ("approach2", iso, format_isoflop),
        ("approach3", par, format_parametric),
    ):
        if key not in fits:
            continue
        out.append("")
        if fit is None:
            out.append(f"Approach {key[-1]}: error: {fits[key]['error']}")
        else:
            out.append(formatter(fit))
    flags = format_flags(fits)
    if flags:
        out += ["", "Flags (weak fits; docs/README_SCALING_LAWS.md, 'Flags'):", flags]
    found = predictions(fits, list(budgets))
    if found:
        out.append("\nCompute-optimal predictions (95% CI):")
        out.extend(format_prediction(p) for p in found)
    return "\n".join(out)


def errors_of(fits: dict) -> dict[str, str]:
    """Approaches that have no answer, and why: the exit status says so."""
    errors = {}
    for approach in ("2", "3"):
        entry = fits.get(f"approach{approach}")
        if entry is None:
            continue
        # Minima that the runs do not bracket give no power law: Approach 2 has no answer,
        # though its per-budget table is still printed.
        if entry.get("error"):
            errors[approach] = entry["error"]
    return errors


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
        import warnings

        from nanogpt.plotting import make_all_plots

        write_fits(fits, f"{args.out}/fits.json")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            make_all_plots(df, f"{args.out}/plots", fits=fits, budget=(args.budget or [None])[0])
        for warning in caught:
            if issubclass(warning.category, UserWarning):  # ours, not numpy's
                print(f"plots: {warning.message}", file=sys.stderr)
    if args.json:
        report = summary(fits)
        report["predictions"] = predictions(fits, args.budget)
        print(json.dumps(report, indent=2))
    else:
        print(format_report(fits, args.budget))
    errors = errors_of(fits)
    for approach, error in errors.items():
        print(f"error (Approach {approach}): {error}", file=sys.stderr)
    return 1 if errors else 0
