"""The seed's path to the sweep command line: ``python sweeps/isoflop.py --help``.

The command lives in the package (nanogpt/sweep/cli.py); ``nanogpt-sweep`` and
``python -m nanogpt.sweep`` are the same command.
"""

from nanogpt.sweep.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
