"""Prepare FineWeb-Edu (HuggingFaceFW/fineweb-edu) as GPT-2 token shards.

    python data/fineweb_edu/prepare.py                          # sample-10BT, streamed from the hub
    python data/fineweb_edu/prepare.py --config sample-100BT    # a larger sample
    python data/fineweb_edu/prepare.py --local-files DIR_OR_FILES.parquet   # no hub

sample-10BT: about 9.7 M documents and 10 B tokens, so about 20 GB of shards (100 M tokens each).
The first --val-docs documents of the stream (default 10,000, about 10 M tokens) are the
validation split, the rest train. Interrupted? Run the same command again: it resumes.
"""

from __future__ import annotations

import argparse
import sys

from nanogpt.data.documents import column, expand_files, load_rows, skip_take
from nanogpt.data.prepare import Split, add_common_args, parse_args, parse_count, run_from_args

HUB_NAME = "HuggingFaceFW/fineweb-edu"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--config",
        default="sample-10BT",
        help="hub config: sample-10BT (default), sample-100BT, sample-350BT, default (all)",
    )
    parser.add_argument(
        "--local-files",
        nargs="+",
        default=None,
        metavar="PATH",
        help="parquet or jsonl files (or directories of them) with a `text` column, read instead "
        "of the hub",
    )
    parser.add_argument(
        "--val-docs",
        type=parse_count,
        default=10_000,
        help="the first N documents are the validation split (default 10,000)",
    )
    parser.add_argument(
        "--max-docs",
        type=parse_count,
        default=None,
        help="stop after this many training documents (default: the whole dataset)",
    )
    add_common_args(parser)
    args = parse_args(parser, argv)

    local = [str(f) for f in expand_files(args.local_files)] if args.local_files else None
    where = ", ".join(local) if local else f"{HUB_NAME} ({args.config})"

    def texts():
        return column(load_rows(HUB_NAME, args.config, "train", local), "text", where)

    splits = [
        Split("val", skip_take(texts, 0, args.val_docs)),
        Split("train", skip_take(texts, args.val_docs, args.max_docs)),
    ]
    source = {
        "hub": HUB_NAME,
        "config": None if local else args.config,
        "local_files": local,
        "val_docs": args.val_docs,
        "max_docs": args.max_docs,
    }
    return run_from_args(
        args, "fineweb_edu", splits, source=source, script="data/fineweb_edu/prepare.py"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
