"""Prepare the embedded Shakespeare corpus: the checkout's shortcut for `python -m nanogpt.data.prepare shakespeare`.

    python data/shakespeare/prepare.py --help      # the same options as `python -m nanogpt.data.prepare shakespeare --help`

The command lives in the package (nanogpt/data/prepare/commands.py), so that an installed
package has it too (`nanogpt-prepare shakespeare`); this file only forwards to it.
"""

from __future__ import annotations

import sys

from nanogpt.data.prepare.commands import prepare


def main(argv: list[str] | None = None) -> dict:
    return prepare(["shakespeare", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
