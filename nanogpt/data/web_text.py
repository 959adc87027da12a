"""Plain-text hub corpora (a ``text`` column, one split): FineWeb-Edu and OpenWebText.

    python -m nanogpt.data.prepare fineweb_edu                          # sample-10BT, streamed from the hub
    python -m nanogpt.data.prepare fineweb_edu --config sample-100BT    # a larger sample
    python -m nanogpt.data.prepare fineweb_edu --local-files DIR_OR_FILES.parquet   # no hub
    python -m nanogpt.data.prepare openwebtext                          # streamed from the hub

FineWeb-Edu sample-10BT: about 9.7 M documents and 10 B tokens, so about 20 GB of shards (100 M
tokens each); the first --val-docs documents of the stream (default 10,000, about 10 M tokens)
are the validation split, the rest train. OpenWebText: about 8.0 M documents and 9 B tokens,
about 18 GB; the first 4,000 documents (about 4.5 M tokens, the size of nanoGPT's 0.05% split)
are validation. Interrupted? Run the same command again: it resumes.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from nanogpt.data.paths import PREPARE_COMMAND
from nanogpt.data.prepare import Split, add_common_args, parse_args, parse_count, run_from_args

# name: the options of prepare_web_text that make its command
WEB_CORPORA: dict[str, dict] = {
    "fineweb_edu": {
        "hub_name": "HuggingFaceFW/fineweb-edu",
        "description": "Prepare FineWeb-Edu (HuggingFaceFW/fineweb-edu) as GPT-2 token shards.",
        "default_val_docs": 10_000,
        "default_config": "sample-10BT",
        "config_help": "hub config: sample-10BT (default), sample-100BT, sample-350BT, "
        "default (all)",
    },
    "openwebtext": {
        "hub_name": "Skylion007/openwebtext",
        "description": "Prepare OpenWebText (Skylion007/openwebtext) as GPT-2 token shards.",
        "default_val_docs": 4_000,
    },
}


def main(name: str, argv: Sequence[str] | None = None) -> dict:
    """``python -m nanogpt.data.prepare fineweb_edu|openwebtext [options]``."""
    return prepare_web_text(argv, name=name, **WEB_CORPORA[name])


def prepare_web_text(
    argv: Sequence[str] | None,
    *,
    name: str,
    hub_name: str,
    description: str,
    default_val_docs: int,
    default_config: str | None = None,
    config_help: str = "",
) -> dict:
    """The command line of a plain-text hub corpus (a `text` column, one split): the first
    --val-docs documents are validation, the rest train. FineWeb-Edu and OpenWebText use it."""
    from nanogpt.data.documents import column, expand_files, load_rows, skip_take

    parser = argparse.ArgumentParser(prog=f"{PREPARE_COMMAND} {name}", description=description)
    if default_config is not None:
        parser.add_argument("--config", default=default_config, help=config_help)
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
        default=default_val_docs,
        help=f"the first N documents are the validation split (default {default_val_docs:,})",
    )
    parser.add_argument(
        "--max-docs",
        type=parse_count,
        default=None,
        help="stop after this many training documents (default: the whole dataset)",
    )
    add_common_args(parser)
    args = parse_args(parser, argv)

    config = getattr(args, "config", None)
    local = [str(f) for f in expand_files(args.local_files)] if args.local_files else None
    where = ", ".join(local) if local else hub_name + (f" ({config})" if config else "")

    def texts():
        return column(load_rows(hub_name, config, "train", local), "text", where)

    splits = [
        Split("val", skip_take(texts, 0, args.val_docs)),
        Split("train", skip_take(texts, args.val_docs, args.max_docs)),
    ]
    source = {
        "hub": hub_name,
        "local_files": local,
        "val_docs": args.val_docs,
        "max_docs": args.max_docs,
    }
    if default_config is not None:
        source["config"] = None if local else config
    return run_from_args(args, name, splits, source=source, command_name=name)
