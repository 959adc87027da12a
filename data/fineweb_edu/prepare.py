"""Prepare FineWeb-Edu: the checkout's shortcut for `python -m nanogpt.data.prepare fineweb_edu`.

    python data/fineweb_edu/prepare.py --help      # the same options as `python -m nanogpt.data.prepare fineweb_edu --help`

The command lives in the package (nanogpt/data/prepare/commands.py), so that an installed
package has it too (`nanogpt-prepare fineweb_edu`); this file only forwards to it.
"""

from __future__ import annotations

import sys

from nanogpt.data.prepare.commands import prepare


def main(argv: list[str] | None = None) -> dict:
    return prepare(["fineweb_edu", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
