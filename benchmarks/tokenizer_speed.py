"""Tokenization speed on the Shakespeare corpus: one process against all cores.

    python benchmarks/tokenizer_speed.py                 # 1 process and os.cpu_count() processes
    python benchmarks/tokenizer_speed.py --procs 1 2 4 --repeats 5 --copies 4

Rows:
- ``encode``: the documents tokenized one after another in this process (`encode_document`);
- ``pool``: the same work split over a warm ``multiprocessing.Pool`` (start-up not counted), in
  chunks as the prepare scripts send them;
- ``prepare``: ``run_prepare`` end to end into a temporary directory (worker start-up, shard
  writing and the meta file included), as ``data/shakespeare/prepare.py`` runs it.

Each figure is the median of --repeats runs. Prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import os
import sys

# This file's name shadows the standard library's `tokenize` (which `linecache` and so `logging`
# import) when it runs as a script: take its folder off the import path before anything else.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse  # noqa: E402
import datetime  # noqa: E402
import multiprocessing  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import tiktoken  # noqa: E402

from nanogpt.data.documents import encode_text  # noqa: E402
from nanogpt.data.prepare import Split, _encode_chunk, run_prepare  # noqa: E402
from nanogpt.data.shakespeare import shakespeare_files  # noqa: E402
from nanogpt.tokenizer import get_tokenizer  # noqa: E402


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
                pool.starmap(_encode_chunk, [(encode_text, c) for c in chunks[:procs]])  # warm up
                seconds = median_time(
                    lambda pool=pool: pool.starmap(
                        _encode_chunk, [(encode_text, c) for c in chunks]
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
