"""Prepare your own text for training or finetuning.

    python -m nanogpt.data.prepare text notes.txt more/*.txt                 # one document per line
    python -m nanogpt.data.prepare text book.txt --delimiter '\\n\\n\\n'        # documents split by a delimiter
    python -m nanogpt.data.prepare text essays/ --whole-file                  # each file is one document
    python -m nanogpt.data.prepare text chats.jsonl --name mychat             # {"messages": [...]} per line
    python -m nanogpt.data.prepare text corpus.parquet --field body           # a text column

Writes <data root>/<name>/ (default name `text`); train on it with the training loop's data-directory
option (the name, or the directory). Plain-text files are read as UTF-8. Structured files
(.jsonl, .json, .parquet) give one document per row: the `--field` column (default: `messages`
if the rows have it, else `text`); `messages` rows are conversations, prepared with a loss mask
on the assistant's turns. Every --val-every'th document (default: 1 in 100, at least one) is held
out for validation.
"""

from __future__ import annotations

import argparse
import codecs
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from nanogpt.data.documents import column, count_local_rows, encode_chat, encode_text, load_rows
from nanogpt.data.paths import PREPARE_COMMAND, data_root
from nanogpt.data.prepare import Split, add_common_args, parse_args, run_from_args

STRUCTURED = (".jsonl", ".json", ".parquet")


def input_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
            if not found:
                raise SystemExit(f"{p}: the directory holds no files")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise SystemExit(f"{p}: no such file or directory")
    return [f.resolve() for f in files]


def split_on(path: Path, delimiter: str, block: int = 1 << 20) -> Iterator[str]:
    """Pieces of a file between delimiters, read a block at a time."""
    with open(path, encoding="utf-8") as f:
        pending = ""
        while text := f.read(block):
            *pieces, pending = (pending + text).split(delimiter)
            yield from (p.strip("\n") for p in pieces if p.strip())
        if pending.strip():
            yield pending.strip("\n")


def documents(files: list[Path], args: argparse.Namespace, field: str) -> Iterator[Any]:
    for f in files:
        try:
            if f.suffix in STRUCTURED:
                yield from column(load_rows("", None, "train", [f]), field, str(f))
            elif args.whole_file:
                yield f.read_text(encoding="utf-8")
            elif args.delimiter is not None:
                yield from split_on(f, args.delimiter)
            else:
                with open(f, encoding="utf-8") as fh:
                    yield from (line.rstrip("\n") for line in fh if line.strip())
        except UnicodeDecodeError as e:
            raise SystemExit(f"{f}: not UTF-8 text ({e}); convert it, e.g. with iconv") from None


def detect_field(files: list[Path], requested: str | None) -> str:
    structured = [f for f in files if f.suffix in STRUCTURED]
    if requested or not structured:
        return requested or "text"
    first = next(iter(load_rows("", None, "train", [structured[0]])), {})
    return "messages" if "messages" in first else "text"


def main(argv: Sequence[str] | None = None) -> dict:
    """``python -m nanogpt.data.prepare text FILES... [options]``."""
    parser = argparse.ArgumentParser(
        prog=f"{PREPARE_COMMAND} text", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "files", nargs="+", help="text, jsonl, json or parquet files, or directories"
    )
    parser.add_argument(
        "--name", default="text", help="dataset name: <data root>/<name>/<name>_*.bin"
    )
    how = parser.add_mutually_exclusive_group()
    how.add_argument(
        "--delimiter",
        type=lambda s: codecs.decode(s, "unicode_escape"),
        default=None,
        help="documents are separated by this string (escapes such as \\n work) instead of by "
        "line breaks",
    )
    how.add_argument("--whole-file", action="store_true", help="each text file is one document")
    parser.add_argument(
        "--field", default=None, help="column of structured files (default: messages, else text)"
    )
    parser.add_argument(
        "--val-every",
        type=int,
        default=100,
        help="every N-th document goes to the validation split (default 100; 0: no validation)",
    )
    add_common_args(parser)
    args = parse_args(parser, argv)
    files = input_files(args.files)
    field = detect_field(files, args.field)
    chat = field == "messages"
    if chat and any(f.suffix not in STRUCTURED for f in files):
        raise SystemExit("conversations (`messages` rows) cannot be mixed with plain-text files")

    def all_docs():
        return documents(files, args, field)

    splits = [Split("train", all_docs)]
    if args.val_every > 0:
        n_docs = sum(1 for _ in all_docs()) if not chat else count_local_rows(files)
        if n_docs < 2:
            raise SystemExit(
                f"found {n_docs} document(s); need at least 2 to hold one out for validation "
                "(or pass --val-every 0)"
            )
        every = min(args.val_every, n_docs)  # a small corpus still gets one validation document

        def pick(val: bool):
            return lambda: (d for i, d in enumerate(all_docs()) if (i % every == every - 1) == val)

        splits = [Split("val", pick(True)), Split("train", pick(False))]
    source = {
        "files": [str(f) for f in files],
        "mode": "whole-file" if args.whole_file else "delimiter" if args.delimiter else "lines",
        "delimiter": args.delimiter,
        "field": field,
        "val_every": args.val_every,
    }
    if args.out_dir is None:
        args.out_dir = data_root() / args.name
    return run_from_args(
        args,
        args.name,
        splits,
        encode_chat if chat else encode_text,
        has_mask=chat,
        source=source,
        command_name="text",
    )
