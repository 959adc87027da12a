"""Compute-optimal parameters and tokens against compute, with the fitted power laws.

    python plots/optimal_scaling.py RESULTS [--out DIR] [--format png pdf]

RESULTS is a sweep's output directory or a results table (.parquet/.csv); see
docs/README_SCALING_LAWS.md for how to read the figure.
"""

from __future__ import annotations

import sys

from nanogpt.plotting import plot_main


def main(argv: list[str] | None = None) -> int:
    return plot_main("optimal_scaling", argv)


if __name__ == "__main__":
    sys.exit(main())
