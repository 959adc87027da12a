"""Tokenization speed on the Shakespeare corpus: one process against all cores.

    python benchmarks/tokenizer_speed.py                 # 1 process and os.cpu_count() processes
    python benchmarks/tokenizer_speed.py --procs 1 2 4 --repeats 5 --copies 4

Rows:
- ``encode``: the documents tokenized one after another in this process (`encode_document`);
- ``pool``: the same work split over a warm ``multiprocessing.Pool`` (start-up not counted), in
  chunks as the prepare commands send them;
- ``prepare``: ``run_prepare`` end to end into a temporary directory (worker start-up, shard
  writing and the meta file included), as ``python -m nanogpt.data.prepare shakespeare`` runs it.

Each figure is the median of --repeats runs. Prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import tiktoken

try:
    from nanogpt.data.documents import encode_text
    from nanogpt.data.prepare import Split, encode_chunk, run_prepare
    from nanogpt.data.shakespeare import shakespeare_files
    from nanogpt.tokenizer import get_tokenizer
except ModuleNotFoundError as error:  # a script, with nanogpt neither installed nor on the path
    if error.name != "nanogpt":
        raise
    from needs_nanogpt import missing_nanogpt  # benchmarks/needs_nanogpt.py, beside this file

    raise missing_nanogpt(__file__) from None


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--procs", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copies", type=int, default=1, help="repeat the corpus this many times")
    parser.add_argument("--chunk-docs", type=int, default=1, help="documents per worker task")
    args = parser.parse_args(argv)

    texts = [p.read_text(encoding="utf-8") for p in shakespeare_files()] * args.copies
    tok = get_tokenizer()
    n_tokens = sum(len(tok.encode_document(t)) for t in texts)
    chunks = [texts[i : i + args.chunk_docs] for i in range(0, len(texts), args.chunk_docs)]
    print(
        f"# {len(texts)} documents, {n_tokens:,} tokens, {sum(map(len, texts)) / 1e6:.1f} MB; "
        f"python {platform.python_version()}, tiktoken {tiktoken.__version__}, "
        f"{os.cpu_count()} CPU(s) ({platform.machine()}), {datetime.date.today()}"
    )
    rows = []
    for procs in args.procs:
        if procs == 1:
            seconds = median_time(lambda: [tok.encode_document(t) for t in texts], args.repeats)
            rows.append(("encode", 1, seconds))
        else:
            with multiprocessing.get_context().Pool(procs, initializer=get_tokenizer) as pool:
                pool.starmap(encode_chunk, [(encode_text, c) for c in chunks[:procs]])  # warm up
                seconds = median_time(
                    lambda pool=pool: pool.starmap(
                        encode_chunk, [(encode_text, c) for c in chunks]
                    ),
                    args.repeats,
                )
            rows.append(("pool", procs, seconds))

        def prepare(procs=procs):
            with tempfile.TemporaryDirectory() as out:
                run_prepare(
                    "bench",
                    Path(out),
                    [Split("train", lambda: iter(texts))],
                    encode_text,
                    num_proc=procs,
                    chunk_docs=args.chunk_docs,
                    progress=False,
                )

        with open(os.devnull, "w") as devnull:
            stdout, sys.stdout = sys.stdout, devnull
            try:
                seconds = median_time(prepare, args.repeats)
            finally:
                sys.stdout = stdout
        rows.append(("prepare", procs, seconds))

    print("\n| method | processes | seconds | tokens/s |")
    print("|---|---|---|---|")
    for method, procs, seconds in rows:
        print(f"| {method} | {procs} | {seconds:.3f} | {n_tokens / seconds / 1e6:.2f} M |")


if __name__ == "__main__":
    main()
