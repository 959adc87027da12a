"""``python -m nanogpt.sweep``: the sweep command line (nanogpt.sweep.cli)."""

from nanogpt.sweep.cli import main

raise SystemExit(main())
