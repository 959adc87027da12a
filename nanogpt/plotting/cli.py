"""The command line shared by plots/*.py: draw one figure from a results table."""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence
from pathlib import Path

from nanogpt.plotting.figures import headline, make_all_plots, matching_fits
from nanogpt.scaling_laws.analysis import fit_all, read_fits
from nanogpt.scaling_laws.options import add_fit_options, add_table_options, load_options
from nanogpt.scaling_laws.results import ScalingLawError, load_results


def plot_main(figure: str, argv: Sequence[str] | None = None) -> int:
    """The command line shared by plots/*.py: draw one figure from a results table.

    The figure draws a fits object: the one given with --fits, else RESULTS/fits.json when it
    was made from this table with these options (the sweep writes it), else the one fit_all
    makes now with the command line's defaults: the numbers are the same either way.
    """
    parser = argparse.ArgumentParser(
        prog=f"python plots/{figure}.py",
        description=f"Draw the {figure.replace('_', ' ')} figure from a sweep's results table "
        "(see docs/README_SCALING_LAWS.md).",
    )
    parser.add_argument("results", help="a sweep's output directory, or a .parquet/.csv table")
    parser.add_argument(
        "--out", default=None, help="output directory (default: plots/ next to the results)"
    )
    parser.add_argument(
        "--format", nargs="+", default=["png", "pdf"], help="image formats (default: png pdf)"
    )
    parser.add_argument(
        "--fits",
        default=None,
        help="draw this fits.json (default: RESULTS/fits.json if it "
        "matches the table and options, else fit now)",
    )
    if figure == "optimal_scaling":
        parser.add_argument("--budget", type=float, default=None, help="mark a prediction at C")
    add_fit_options(parser)
    add_table_options(parser)
    args = parser.parse_args(argv)
    results = Path(args.results)
    out = args.out or (results if results.is_dir() else results.parent) / "plots"
    options = {"window_ln": args.window, "n_bootstrap": args.bootstrap, "seed": args.seed}
    try:
        data, message = load_results(results, **load_options(args))
        fits = None
        if figure not in ("training_time", "downstream"):
            folder = results if results.is_dir() else results.parent
            drawn_from = args.fits or folder / "fits.json"
            if args.fits:
                fits = read_fits(args.fits)
            else:
                fits = matching_fits(folder / "fits.json", data, options)
            if fits is None:
                drawn_from = "a fit made now (no matching fits.json)"
                fits = fit_all(
                    data,
                    window=args.window,
                    n_bootstrap=args.bootstrap,
                    seed=args.seed,
                    source=str(results),
                    message=message,
                )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            paths = make_all_plots(
                data,
                out,
                fits=fits,
                figures=(figure,),
                formats=args.format,
                budget=getattr(args, "budget", None),
            )
    except ScalingLawError as error:
        print(f"error: {error}")
        return 2
    for warning in caught:
        if issubclass(warning.category, UserWarning):  # ours, not numpy's
            print(f"error: {warning.message}")
    for path in paths:
        print(path)
    if fits is not None and paths:
        print(f"drawn from {drawn_from}: {headline(fits)}")
    return 0 if paths else 1
