"""Loss against model size per compute budget, with the Approach 2 parabolas and minima.

    python plots/isoflop.py RESULTS [--out DIR] [--format png pdf]

RESULTS is a sweep's output directory or a results table (.parquet/.csv); see
docs/README_SCALING_LAWS.md for how to read the figure.
"""

from __future__ import annotations

import sys

from nanogpt.plotting import plot_main


def main(argv: list[str] | None = None) -> int:
    return plot_main("isoflop", argv)


if __name__ == "__main__":
    sys.exit(main())
