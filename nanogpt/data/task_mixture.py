"""Prepare the chat task mixture (SmolTalk + MMLU + GSM8K) as token shards with a loss mask.

    python -m nanogpt.data.prepare task_mixture              # streamed from the hub
    python -m nanogpt.data.prepare task_mixture --local-files smoltalk-train=st.parquet \\
        smoltalk-test=st_test.parquet mmlu-train=aux.parquet mmlu-val=val.parquet \\
        gsm8k-train=gsm_train.jsonl gsm8k-test=gsm_test.jsonl   # no hub

Every example is rendered as `<|im_start|>role\\n...<|im_end|>` turns; the `.mask` files mark
the assistant's tokens (and its `<|im_end|>`), the only ones trained on by default.

| split | source | rows |
|---|---|---|
| train | HuggingFaceTB/smol-smoltalk `train` (first 460,000 of 460,341) | 460,000 |
| train | cais/mmlu `all` `auxiliary_train` | 99,842 |
| train | openai/gsm8k `main` `train` | 7,473 |
| val | HuggingFaceTB/smol-smoltalk `test` (first 5,000) | 5,000 |
| val | cais/mmlu `all` `validation` | 1,531 |
| val | openai/gsm8k `main` `test` | 1,319 |

567,315 training and 7,850 validation examples, the seed's table. Within a split the sources are
interleaved in proportion to their sizes (a fixed order), so any prefix of a split is a fair
sample of the mixture.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from nanogpt.data.documents import (
    count_local_rows,
    encode_task,
    expand_files,
    interleave,
    load_rows,
)
from nanogpt.data.paths import PREPARE_COMMAND
from nanogpt.data.prepare import Split, add_common_args, parse_args, parse_count, run_from_args

# name: (kind, hub dataset, config, hub split, rows in the hub split)
SOURCES = {
    "smoltalk-train": ("smoltalk", "HuggingFaceTB/smol-smoltalk", None, "train", 460_341),
    "mmlu-train": ("mmlu", "cais/mmlu", "all", "auxiliary_train", 99_842),
    "gsm8k-train": ("gsm8k", "openai/gsm8k", "main", "train", 7_473),
    "smoltalk-test": ("smoltalk", "HuggingFaceTB/smol-smoltalk", None, "test", None),
    "mmlu-val": ("mmlu", "cais/mmlu", "all", "validation", 1_531),
    "gsm8k-test": ("gsm8k", "openai/gsm8k", "main", "test", 1_319),
}
TRAIN = ("smoltalk-train", "mmlu-train", "gsm8k-train")
VAL = ("smoltalk-test", "mmlu-val", "gsm8k-test")
# the fields each kind needs (rows of the hub datasets carry a few more)
FIELDS = {
    "smoltalk": ("messages",),
    "mmlu": ("question", "subject", "choices", "answer", "train"),
    "gsm8k": ("question", "answer"),
}


def parse_local_files(pairs: list[str]) -> dict[str, list[str]]:
    """``NAME=PATH[,PATH...]`` pairs → {name: [files]}."""
    local: dict[str, list[str]] = {}
    for pair in pairs:
        name, sep, paths = pair.partition("=")
        if not sep or name not in SOURCES:
            raise SystemExit(
                f"--local-files {pair!r}: expected NAME=PATH with NAME one of {', '.join(SOURCES)}"
            )
        files = expand_files([p for p in paths.split(",") if p])
        local.setdefault(name, []).extend(str(f) for f in files)
    return local


def rows_of(name: str, local: dict[str, list[str]], limit: int | None):
    """A factory for the (kind, row) records of one source, at most ``limit`` of them."""
    kind, hub, config, split, _ = SOURCES[name]
    fields = FIELDS[kind]

    def records():
        rows = load_rows(hub, config, split, local.get(name))
        for i, row in enumerate(rows):
            if limit is not None and i >= limit:
                return
            yield kind, {k: row[k] for k in fields if k in row}

    return records


def size_of(name: str, local: dict[str, list[str]], limit: int | None) -> int:
    """How many rows a source gives (to interleave in proportion): local files are counted."""
    known = count_local_rows(local[name]) if name in local else SOURCES[name][4]
    if known is None:
        return limit or 1
    return known if limit is None else min(known, limit)


def main(argv: Sequence[str] | None = None) -> dict:
    """``python -m nanogpt.data.prepare task_mixture [options]``."""
    parser = argparse.ArgumentParser(
        prog=f"{PREPARE_COMMAND} task_mixture", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--local-files",
        nargs="+",
        default=[],
        metavar="NAME=PATH",
        help="read a source from local parquet/jsonl files of the hub schema instead of the hub; "
        f"NAME is one of {', '.join(SOURCES)}; PATH may be a comma-separated list, a directory "
        "or a glob; sources not given stream from the hub",
    )
    parser.add_argument(
        "--smoltalk-train-limit",
        type=parse_count,
        default=460_000,
        help="first N smol-smoltalk training conversations (default 460,000, the seed's table; "
        "0: all)",
    )
    parser.add_argument(
        "--smoltalk-val",
        type=parse_count,
        default=5_000,
        help="first N smol-smoltalk test conversations in the validation split (default 5,000)",
    )
    add_common_args(parser)
    args = parse_args(parser, argv)

    local = parse_local_files(args.local_files)
    limits = {
        "smoltalk-train": args.smoltalk_train_limit or None,
        "smoltalk-test": args.smoltalk_val,
    }

    def split(names: tuple[str, ...]) -> Split:
        factories = [rows_of(n, local, limits.get(n)) for n in names]
        weights = [size_of(n, local, limits.get(n)) for n in names]
        return Split(
            "train" if names == TRAIN else "val",
            lambda: interleave([f() for f in factories], weights),
        )

    source = {
        "sources": {
            n: local.get(n)
            or f"{SOURCES[n][1]} {SOURCES[n][2] or ''} {SOURCES[n][3]}".replace("  ", " ")
            for n in SOURCES
        },
        "limits": limits,
    }
    return run_from_args(
        args,
        "task_mixture",
        [split(VAL), split(TRAIN)],
        encode_task,
        has_mask=True,
        source=source,
        command_name="task_mixture",
    )
