"""Prepare OpenWebText (Skylion007/openwebtext) as GPT-2 token shards.

    python data/openwebtext/prepare.py                                 # streamed from the hub
    python data/openwebtext/prepare.py --local-files DIR_OR_FILES.parquet   # no hub

About 8.0 M documents and 9 B tokens, so about 18 GB of shards (100 M tokens each). The first
--val-docs documents (default 4,000, about 4.5 M tokens, the size of nanoGPT's 0.05% split) are
the validation split, the rest train. Interrupted? Run the same command again: it resumes.
"""

from __future__ import annotations

import sys

from nanogpt.data.web_text import prepare_web_text

HUB_NAME = "Skylion007/openwebtext"


def main(argv: list[str] | None = None) -> dict:
    return prepare_web_text(
        argv,
        name="openwebtext",
        hub_name=HUB_NAME,
        description=__doc__.split("\n")[0],
        default_val_docs=4_000,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
