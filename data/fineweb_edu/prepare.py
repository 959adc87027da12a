"""Prepare FineWeb-Edu (HuggingFaceFW/fineweb-edu) as GPT-2 token shards.

    python data/fineweb_edu/prepare.py                          # sample-10BT, streamed from the hub
    python data/fineweb_edu/prepare.py --config sample-100BT    # a larger sample
    python data/fineweb_edu/prepare.py --local-files DIR_OR_FILES.parquet   # no hub

sample-10BT: about 9.7 M documents and 10 B tokens, so about 20 GB of shards (100 M tokens each).
The first --val-docs documents of the stream (default 10,000, about 10 M tokens) are the
validation split, the rest train. Interrupted? Run the same command again: it resumes.
"""

from __future__ import annotations

import sys

from nanogpt.data.web_text import prepare_web_text

HUB_NAME = "HuggingFaceFW/fineweb-edu"


def main(argv: list[str] | None = None) -> dict:
    return prepare_web_text(
        argv,
        name="fineweb_edu",
        hub_name=HUB_NAME,
        description=__doc__.split("\n")[0],
        default_val_docs=10_000,
        default_config="sample-10BT",
        config_help="hub config: sample-10BT (default), sample-100BT, sample-350BT, default (all)",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
