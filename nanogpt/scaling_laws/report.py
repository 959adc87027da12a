"""The fits as text (the tables ``python -m nanogpt.scaling_laws`` prints), and
``analyze_results``: fit once, write fits.json, print the report, draw the figures — what the
sweep calls at its end.
"""

from __future__ import annotations

import os
import textwrap
import warnings
from pathlib import Path

import pandas as pd

from nanogpt.plotting import downstream_metric, downstream_points, make_all_plots
from nanogpt.plotting.downstream import METRIC_NAMES, scored_with
from nanogpt.scaling_laws.analysis import DEFAULT_BOOTSTRAP, fit_all, fitted_objects, write_fits
from nanogpt.scaling_laws.isoflop import DEFAULT_WINDOW_LN, POSITION_TEXT, BudgetMinimum, IsoFlopFit
from nanogpt.scaling_laws.options import CONVENTION_HELP
from nanogpt.scaling_laws.parametric import PARAMETER_NAMES, ParametricFit
from nanogpt.scaling_laws.results import Estimate, ScalingLawError, load_results


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


def downstream_summary(data: pd.DataFrame) -> dict | None:
    """Per budget, the lowest-loss run's CORE (or Gauntlet) score and the budget's best score:
    what the report prints and the downstream figure draws; None without scores."""
    metric = downstream_metric(data)
    if metric is None:
        return None
    points = downstream_points(data, metric)
    best_score = points["all"].loc[points["all"].groupby("budget")["score"].idxmax()]
    by_budget = best_score.set_index("budget")
    rows = []
    for _, run in points["best"].iterrows():
        top = by_budget.loc[run["budget"]]
        rows.append(
            {"budget": float(run["budget"]), "params": float(run["N"]), "loss": float(run["L"]),
             "score": float(run["score"]), "best_score": float(top["score"]),
             "best_score_params": float(top["N"])}
        )  # fmt: skip
    return {"metric": metric, "runs": len(points["all"]), "per_budget": rows, **scored_with(data)}


def format_downstream(summary: dict) -> str:
    """The downstream scores as a text table (the report's last section)."""
    name = METRIC_NAMES.get(summary["metric"], summary["metric"])
    how = []
    if summary.get("eval_baselines"):
        how.append(f"baselines {', '.join(summary['eval_baselines'])}")
    if summary.get("eval_max_per_task"):
        items = summary["eval_max_per_task"]
        how.append(
            "every item" if items == ["all"] else f"at most {', '.join(items)} items per task"
        )
    rows = [
        [f"{r['budget']:.3g}", f"{r['params']:.3g}", f"{r['loss']:.4g}", f"{r['score']:.4f}",
         f"{r['best_score']:.4f} (N {r['best_score_params']:.3g})"]
        for r in summary["per_budget"]
    ]  # fmt: skip
    header = ["budget C", "lowest-loss N", "its loss", name, f"best {name} at C"]
    head = (
        f"{name} of the final models ({summary['runs']} runs; centred, 0 = chance"
        + (f"; {'; '.join(how)}" if how else "")
        + ")"
    )
    return head + "\n" + _table(header, rows)


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


def analyze_results(
    results: str | os.PathLike | pd.DataFrame,
    out_dir: str | os.PathLike,
    *,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    window: float | None = DEFAULT_WINDOW_LN,
    formats: tuple[str, ...] = ("png", "pdf"),
    report: bool = True,
    **load_options,
) -> dict:
    """Fit once, write out_dir/fits.json atomically, draw the figures from that fits object
    into out_dir/plots, and print the report (the same text as `python -m nanogpt.scaling_laws`).

    Returns {"fits": path of fits.json, "plots": [paths], "fits_object": the fits} (and
    "downstream": CORE per budget, when the table has scores) or, when the table cannot be read
    or holds no healthy run, {"analysis_error": why}. A table too small
    for a fit still gives fits.json (with the fit's error) and whatever figures it supports.
    """

    def say(text: str) -> None:
        if report:
            print(text, flush=True)

    try:
        data, message = load_results(results, **load_options)
    except ScalingLawError as error:
        say(f"analysis skipped: {error}")
        return {"analysis_error": str(error)}
    source = "the table given" if isinstance(results, pd.DataFrame) else str(results)
    fits = fit_all(
        data, window=window, n_bootstrap=n_bootstrap, seed=seed, source=source, message=message
    )
    out_dir = Path(out_dir)
    path = write_fits(fits, out_dir / "fits.json")
    say(format_report(fits))
    downstream = downstream_summary(data)
    if downstream is not None:
        say("\n" + format_downstream(downstream))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = make_all_plots(data, out_dir / "plots", fits=fits, formats=formats)
    for warning in caught:
        if issubclass(warning.category, UserWarning):  # ours, not numpy's
            say(f"plots: {warning.message}")
    say(f"fits: {path}; plots: {', '.join(str(p) for p in written) or 'none'}")
    out = {"fits": str(path), "plots": [str(p) for p in written], "fits_object": fits}
    if downstream is not None:
        out["downstream"] = downstream
    return out
