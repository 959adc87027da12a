"""Prepare OpenWebText: the checkout's shortcut for `python -m nanogpt.data.prepare openwebtext`.

    python data/openwebtext/prepare.py --help      # the same options as `python -m nanogpt.data.prepare openwebtext --help`

The command lives in the package (nanogpt/data/prepare/commands.py), so that an installed
package has it too (`nanogpt-prepare openwebtext`); this file only forwards to it.
"""

from __future__ import annotations

import sys

from nanogpt.data.prepare.commands import prepare


def main(argv: list[str] | None = None) -> dict:
    return prepare(["openwebtext", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
