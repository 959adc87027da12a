"""Prepare the chat task mixture: the checkout's shortcut for `python -m nanogpt.data.prepare task_mixture`.

    python data/task_mixture/prepare.py --help      # the same options as `python -m nanogpt.data.prepare task_mixture --help`

The command lives in the package (nanogpt/data/prepare/commands.py), so that an installed
package has it too (`nanogpt-prepare task_mixture`); this file only forwards to it.
"""

from __future__ import annotations

import sys

from nanogpt.data.prepare.commands import prepare


def main(argv: list[str] | None = None) -> dict:
    return prepare(["task_mixture", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
