"""``python -m nanogpt.evals`` (see nanogpt/evals/cli.py)."""

import sys

from nanogpt.evals.cli import main

sys.exit(main())
