"""``python -m nanogpt.data.prepare NAME [options]``: see nanogpt/data/prepare/commands.py."""

from nanogpt.data.prepare.commands import main

main()
