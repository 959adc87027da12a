"""`python -m nanogpt.scaling_laws`: see nanogpt/scaling_laws/cli.py."""

import sys

from nanogpt.scaling_laws.cli import main

sys.exit(main())
