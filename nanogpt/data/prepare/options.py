"""The command-line options every dataset's prepare command shares, and running a prepare
from them (``run_from_args``)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from nanogpt.data.documents import Encoded, encode_text
from nanogpt.data.paths import PREPARE_COMMAND, data_root_help, default_out_dir
from nanogpt.data.prepare.pipeline import HUB_SHARD_TOKENS, Split, run_prepare
from nanogpt.tokenizer import TOKENIZERS, VOCAB_SIZES


def parse_count(text: str) -> int:
    """``100M``, ``1e8``, ``100_000_000`` → 100000000."""
    units = {"k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9}
    t = text.strip().lower().replace("_", "").replace(",", "")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(float(t))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count (e.g. 100M, 1e8)") from None


def add_common_args(parser: argparse.ArgumentParser, shard_tokens: int = HUB_SHARD_TOKENS) -> None:
    """The flags every prepare command shares; the epilog says where named datasets live."""
    parser.epilog = parser.epilog or data_root_help()
    parser.add_argument(
        "--tokenizer",
        choices=TOKENIZERS,
        default="gpt2",
        help=f"gpt2 (BPE, {VOCAB_SIZES['gpt2']:,} ids) or bytes (UTF-8 bytes, "
        f"{VOCAB_SIZES['bytes']} ids); meta.json records it (default gpt2)",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="where the shards go (default: $NANOGPT_DATA_DIR/<name>, or <name>_bytes with "
        "--tokenizer bytes; see below)",
    )
    parser.add_argument(
        "--shard-tokens",
        type=parse_count,
        default=shard_tokens,
        help=f"most tokens per shard, cut at document boundaries (default {shard_tokens:,})",
    )
    parser.add_argument(
        "--num-proc",
        type=int,
        default=os.cpu_count(),
        help="tokenizer processes (default: all cores; 1 tokenizes in this process)",
    )
    parser.add_argument(
        "--chunk-docs",
        type=int,
        default=256,
        help="documents per unit of work sent to a tokenizer process (default 256)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="delete earlier output and prepare again"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--stop-after-shards",
        type=int,
        default=None,
        help="stop after writing this many shards, as an interruption would (to try resuming)",
    )


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, keeping the arguments so that meta.json can record the command."""
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def run_from_args(
    args: argparse.Namespace,
    name: str,
    splits: Sequence[Split],
    encode: Callable[..., Encoded] = encode_text,
    *,
    has_mask: bool = False,
    source: dict | None = None,
    command_name: str | None = None,
    chunk_docs: int | None = None,
) -> dict:
    """``run_prepare`` with the options of ``add_common_args``; meta.json records the command
    line (``python -m nanogpt.data.prepare COMMAND_NAME ARGS...``) that made the dataset."""
    tokenizer = getattr(args, "tokenizer", "gpt2")
    return run_prepare(
        name,
        args.out_dir if args.out_dir is not None else default_out_dir(name, tokenizer),
        splits,
        encode,
        tokenizer=tokenizer,
        has_mask=has_mask,
        shard_tokens=args.shard_tokens,
        num_proc=args.num_proc,
        chunk_docs=chunk_docs or args.chunk_docs,
        source=source,
        command=(
            shlex.join([*PREPARE_COMMAND.split(), command_name, *getattr(args, "argv", [])])
            if command_name
            else None
        ),
        overwrite=args.overwrite,
        stop_after_shards=args.stop_after_shards,
        progress=not args.no_progress,
    )
