"""What a benchmark says when it runs as ``python benchmarks/NAME.py`` where the nanogpt package
is neither installed nor on the path. Run that way, Python puts the script's folder (this one)
on the path, so each script imports this module by its plain name, in its import guard only.
"""

from __future__ import annotations

from pathlib import Path


def missing_nanogpt(script: str) -> SystemExit:
    """The exit, with what to do, for the benchmark at path ``script``."""
    name = Path(script).stem
    return SystemExit(
        f"benchmarks/{name}.py imports the nanogpt package: install it (`make environment`, or "
        f"`pip install .`), or run it from the checkout's root as `python -m benchmarks.{name}`"
    )
