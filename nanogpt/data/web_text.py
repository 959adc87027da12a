"""The command line of a plain-text hub corpus (a ``text`` column, one split): FineWeb-Edu and
OpenWebText use it (data/fineweb_edu/prepare.py, data/openwebtext/prepare.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from nanogpt.data.prepare import Split, add_common_args, parse_args, parse_count, run_from_args


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

    parser = argparse.ArgumentParser(description=description)
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
    return run_from_args(args, name, splits, source=source, script=f"data/{name}/prepare.py")
