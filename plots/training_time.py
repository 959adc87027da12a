"""Wall-clock time of each run against model size, one line per compute budget.

    python plots/training_time.py RESULTS [--out DIR] [--format png pdf]

RESULTS is a sweep's output directory or a results table (.parquet/.csv); see
docs/README_SCALING_LAWS.md for how to read the figure.
"""

from __future__ import annotations

import sys

from nanogpt.plotting import plot_main


def main(argv: list[str] | None = None) -> int:
    return plot_main("training_time", argv)


if __name__ == "__main__":
    sys.exit(main())
