"""Benchmark scripts (not part of the installed package).

Each runs as ``python benchmarks/NAME.py`` where nanogpt is installed (``make environment``), or
as ``python -m benchmarks.NAME`` from the checkout's root without an install.
"""
