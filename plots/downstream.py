"""CORE (or the Gauntlet) of each run's final model against its compute, and each budget's
lowest-loss run as a line: the downstream scaling curve of a sweep run with ``--eval core``.

    python plots/downstream.py RESULTS [--out DIR] [--format png pdf]

RESULTS is a sweep's output directory or a results table (.parquet/.csv) with a core column;
see docs/README_SCALING_LAWS.md for how to read the figure.
"""

from __future__ import annotations

import sys

from nanogpt.plotting import plot_main


def main(argv: list[str] | None = None) -> int:
    return plot_main("downstream", argv)


if __name__ == "__main__":
    sys.exit(main())
