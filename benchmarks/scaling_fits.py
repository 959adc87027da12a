"""How right the scaling-law fits are, and how fast: bias, interval coverage, Approach 3 speed.

    python benchmarks/scaling_fits.py                    # everything, the full counts (~minutes)
    python benchmarks/scaling_fits.py --only speed       # Approach 3, 1000 resamples, Chinchilla
    python benchmarks/scaling_fits.py --sweeps 20 --workers 2

Bias: on synthetic isoFLOP grids with a known exponent a (nanogpt.scaling_laws.synthetic
.synthetic_isoflop_grid: 5 budgets, 9 sizes spanning +-0.5 to +-1.5 decades of N, the optimum
placed off-centre by amounts that change across budgets, three noise levels), the mean error of
Approach 2's a with the default window and with a parabola through every run. Coverage: the share
of sweeps whose 95% interval of a contains the true a, for Approaches 2 and 3, with the share of
estimates inside their own interval and the mean count of failed resamples. Speed: Approach 3
with 1000 resamples on the 240 Chinchilla points (Besiroglu et al. 2024), the batched refits
against scipy's L-BFGS-B one resample at a time (timed on a sample of resamples and scaled).
Prints Markdown tables for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd

try:
    from nanogpt.scaling_laws import fit_isoflop, fit_parametric, load_results
    from nanogpt.scaling_laws.parametric import HUBER_DELTA, minimise_scipy, to_theta
    from nanogpt.scaling_laws.synthetic import BESIROGLU_LAW, synthetic_isoflop_grid
except ModuleNotFoundError as error:  # a script, with nanogpt neither installed nor on the path
    if error.name != "nanogpt":
        raise
    from needs_nanogpt import missing_nanogpt  # benchmarks/needs_nanogpt.py, beside this file

    raise missing_nanogpt(__file__) from None

A_TRUE = BESIROGLU_LAW["beta"] / (BESIROGLU_LAW["alpha"] + BESIROGLU_LAW["beta"])
SPANS = (0.5, 1.0, 1.5)  # half-width of each budget's grid, decades of N
# Where each budget's grid centre sits above the optimum, as a fraction of the half-width, from
# the smallest budget to the largest: a fixed set of sizes drifts like (+0.5 -> -0.5).
PLACEMENTS = ((0.5, -0.5), (-0.5, 0.5), (0.4, 0.4))
NOISES = (0.001, 0.003, 0.01)  # standard deviation of log L
CHINCHILLA_CSV = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / ("chinchilla_svg_extracted.csv")
)


def _one_sweep(task: tuple) -> dict:
    """Fit one synthetic sweep: the estimates and intervals of a from each method asked."""
    span, placement, noise, seed, what, n_bootstrap = task
    table = synthetic_isoflop_grid(span_decades=span, shift=placement, noise=noise, seed=seed)
    data = load_results(table)[0]
    out = {"span": span, "placement": placement, "noise": noise, "seed": seed}
    if what == "bias":
        for name, window in (("default", "default"), ("all_runs", None)):
            kwargs = {} if window == "default" else {"window": window}
            fit = fit_isoflop(data, n_bootstrap=0, **kwargs)
            out[name] = fit.params_law.exponent.value if fit.params_law else np.nan
        return out
    if what == "approach2":
        fit = fit_isoflop(data, n_bootstrap=n_bootstrap, seed=seed)
        estimate, failed = (
            (fit.params_law.exponent if fit.params_law else None),
            fit.n_bootstrap_failed,
        )
    else:
        fit = fit_parametric(data, n_bootstrap=n_bootstrap, seed=seed)
        estimate, failed = fit.a, fit.n_bootstrap_failed
    if estimate is None:
        out.update(value=np.nan, covers=False, inside=False, failed=failed)
    else:
        out.update(
            value=estimate.value,
            covers=estimate.contains(A_TRUE),
            inside=bool(estimate.low <= estimate.value <= estimate.high),
            failed=failed,
            width=estimate.high - estimate.low,
        )
    return out


def _run(tasks: list[tuple], workers: int) -> pd.DataFrame:
    if workers <= 1:
        return pd.DataFrame([_one_sweep(t) for t in tasks])
    with Pool(workers) as pool:
        return pd.DataFrame(pool.map(_one_sweep, tasks, chunksize=4))


def bias_table(sweeps: int, workers: int) -> str:
    tasks = [
        (span, placement, noise, seed, "bias", 0)
        for span, placement, noise in itertools.product(SPANS, PLACEMENTS, NOISES)
        for seed in range(sweeps)
    ]
    rows = _run(tasks, workers)
    lines = [
        f"Approach 2 bias: mean a - {A_TRUE:.4f} over {sweeps} sweeps per row (± its standard "
        "error), default window against a parabola through every run",
        "",
        "| grid ± decades | centre vs optimum | noise | default window | every run |",
        "|---|---|---|---|---|",
    ]
    for (span, placement, noise), group in rows.groupby(["span", "placement", "noise"], sort=False):
        cells = []
        for name in ("default", "all_runs"):
            error = group[name] - A_TRUE
            cells.append(f"{error.mean():+.4f} ± {error.std(ddof=1) / np.sqrt(len(error)):.4f}")
        lines.append(
            f"| ±{span} | {placement[0]:+.1f} → {placement[1]:+.1f} | {noise} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def coverage_table(
    approach: str, sweeps: int, n_bootstrap: int, workers: int, spans, placements
) -> str:
    tasks = [
        (span, placement, noise, seed, approach, n_bootstrap)
        for span, placement, noise in itertools.product(spans, placements, NOISES)
        for seed in range(sweeps)
    ]
    rows = _run(tasks, workers)
    number = approach[-1]
    lines = [
        f"Approach {number}: 95% intervals of a over {sweeps} sweeps per row, {n_bootstrap} "
        "resamples each",
        "",
        "| grid ± decades | centre vs optimum | noise | covers true a | estimate inside "
        "| mean width | failed resamples (mean) |",
        "|---|---|---|---|---|---|---|",
    ]
    for (span, placement, noise), group in rows.groupby(["span", "placement", "noise"], sort=False):
        lines.append(
            f"| ±{span} | {placement[0]:+.1f} → {placement[1]:+.1f} | {noise} | "
            f"{group['covers'].mean():.1%} | {group['inside'].mean():.0%} | "
            f"{group['width'].mean():.4f} | {group['failed'].mean():.1f} |"
        )
    return "\n".join(lines)


def chinchilla_points() -> pd.DataFrame:
    raw = pd.read_csv(CHINCHILLA_CSV).sort_values("loss").iloc[:-5]
    return load_results(
        raw, params_col="Model Size", tokens_col=None, flops_col="Training FLOP", loss_col="loss"
    )[0]


def speed_table(repeats: int, scipy_sample: int) -> str:
    data = chinchilla_points()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        fit = fit_parametric(data, n_bootstrap=1000, seed=0)
        timings.append(time.perf_counter() - started)
    started = time.perf_counter()
    fit_parametric(data, n_bootstrap=0)
    full_fit_s = time.perf_counter() - started
    # The old way: scipy's L-BFGS-B on each resample in turn, from the full-data optimum.
    theta = to_theta({k: getattr(fit, k).value for k in ("E", "A", "B", "alpha", "beta")})
    log_n, log_d, log_loss = (np.log(data[c].to_numpy(float)) for c in ("N", "D", "L"))
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for _ in range(scipy_sample):
        pick = rng.integers(0, len(data), len(data))
        minimise_scipy(theta, (log_n[pick], log_d[pick], log_loss[pick], HUBER_DELTA))
    scipy_s = (time.perf_counter() - started) / scipy_sample * 1000 + full_fit_s
    lines = [
        f"Approach 3, 1000 resamples, 240 Chinchilla points ({os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()})",
        "",
        "| method | seconds |",
        "|---|---|",
        f"| batched refits (default), whole fit, median of {repeats} | {np.median(timings):.2f} |",
        f"| scipy L-BFGS-B per resample (timed on {scipy_sample}, scaled to 1000) "
        f"| {scipy_s:.1f} |",
        f"| full-data fit alone (grid + 5 L-BFGS starts) | {full_fit_s:.2f} |",
        "",
        f"a = {fit.a.value:.4f} [{fit.a.low:.4f}, {fit.a.high:.4f}], failed refits "
        f"{fit.n_bootstrap_failed}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("bias", "coverage", "speed"), action="append")
    parser.add_argument("--sweeps", type=int, default=200, help="synthetic sweeps per row")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples per sweep")
    parser.add_argument("--workers", type=int, default=1, help="processes for the sweeps")
    parser.add_argument("--repeats", type=int, default=3, help="speed: timed repeats")
    parser.add_argument(
        "--approach", choices=("2", "3"), action="append", help="coverage: which (default both)"
    )
    parser.add_argument(
        "--spans", type=float, nargs="+", default=list(SPANS), help="grid half-widths, decades"
    )
    parser.add_argument(
        "--placements",
        type=int,
        nargs="+",
        default=list(range(len(PLACEMENTS))),
        help=f"indices into {PLACEMENTS}",
    )
    parser.add_argument("--scipy-sample", type=int, default=50, help="speed: scipy resamples")
    args = parser.parse_args(argv)
    parts = args.only or ["bias", "coverage", "speed"]
    print(f"# benchmarks/scaling_fits.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    if "bias" in parts:
        print(bias_table(args.sweeps, args.workers), "\n", flush=True)
    if "coverage" in parts:
        placements = [PLACEMENTS[i] for i in args.placements]
        for approach in args.approach or ["2", "3"]:
            table = coverage_table(
                f"approach{approach}",
                args.sweeps,
                args.bootstrap,
                args.workers,
                args.spans,
                # Approach 3 does not depend on where the grid sits: one placement is enough.
                placements if approach == "2" else placements[:1],
            )
            print(table, "\n", flush=True)
    if "speed" in parts:
        print(speed_table(args.repeats, args.scipy_sample), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
