"""What every dataset's prepare command shares: tokenize documents in worker processes, write
shards atomically, resume after an interruption, show progress, and print a summary.

A prepare run reads each split's documents in a fixed order, tokenizes chunks of them in a
``multiprocessing.Pool`` (a bounded number of chunks in flight, results taken in order) and cuts
the token stream into shards at document boundaries: a shard holds at most ``shard_tokens``
tokens, unless one document alone is longer. After each shard is written (tmp file, then
rename), ``.partial/progress.json`` records how many documents the finished shards hold, so a
rerun skips exactly those documents and rewrites anything after them: nothing is duplicated
or lost, and the output does not depend on ``num_proc``. ``meta.json`` is written last; its
presence means "complete", and a rerun then prints "already prepared" and does nothing.

The command-line options every prepare command shares are in ``options.py``; the commands
themselves (``python -m nanogpt.data.prepare NAME``) in ``commands.py``.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import itertools
import json
import multiprocessing
import os
import re
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nanogpt import atomic
from nanogpt.data.documents import Encoded, encode_text
from nanogpt.data.format import (
    MAGIC,
    MASK_MAGIC,
    VERSION,
    write_tokens,
)
from nanogpt.tokenizer import TOKENIZERS, get_tokenizer

HUB_SHARD_TOKENS = 100_000_000  # like llm.c's fineweb shards (200 MB each)


@dataclass
class Split:
    """One output split: its name and a function returning a fresh iterator of its records."""

    name: str
    documents: Callable[[], Iterable[Any]]


# ---------------------------------------------------------------------------------------------
# Tokenizing chunks of documents in worker processes (the encoders are in documents.py)


def encode_chunk(
    encode: Callable[[Any], Encoded], records: list[Any]
) -> tuple[np.ndarray, np.ndarray | None, list[int]]:
    """Tokenize one chunk of records: (uint16 tokens, uint8 loss mask or None, each record's
    token count). What a worker process runs; benchmarks time it alone."""
    ids: list[int] = []
    masks: list[int] = []
    lengths = []
    for record in records:
        tokens, mask = encode(record)
        ids.extend(tokens)
        lengths.append(len(tokens))
        if mask is not None:
            masks.extend(mask)
    mask_array = np.array(masks, dtype=np.uint8) if len(masks) == len(ids) and masks else None
    return np.array(ids, dtype=np.uint16), mask_array, lengths


def _encoded_chunks(
    chunks: Iterable[list[Any]], encode: Callable[[Any], Encoded], num_proc: int, tokenizer: str
) -> Iterator[tuple[np.ndarray, np.ndarray | None, list[int], int]]:
    """Encoded chunks in input order; at most 2 * num_proc chunks are in flight at a time."""
    if num_proc <= 1:
        for chunk in chunks:
            yield (*encode_chunk(encode, chunk), len(chunk))
        return
    # Pool.imap would read the whole input ahead of the workers; apply_async with a bounded
    # queue keeps memory flat on a 10-billion-token stream.
    pool = multiprocessing.get_context().Pool(
        num_proc, initializer=functools.partial(get_tokenizer, tokenizer)
    )
    pending: deque = deque()
    try:
        for chunk in chunks:
            pending.append((pool.apply_async(encode_chunk, (encode, chunk)), len(chunk)))
            if len(pending) >= 2 * num_proc:
                result, n = pending.popleft()
                yield (*result.get(), n)
        while pending:
            result, n = pending.popleft()
            yield (*result.get(), n)
    finally:
        # Shut down cleanly even when the consumer stops early (--stop-after-shards, an error):
        # let the few chunks in flight finish, then close and join. Pool.terminate (what the
        # context manager does) killed workers mid-task and now and then hung in its handler
        # threads (seen in tests/test_prepare.py's interrupted-prepare test).
        for result, _ in pending:
            result.wait()
        pool.close()
        pool.join()


# ---------------------------------------------------------------------------------------------
# Shards, progress, resume


class _Stopped(Exception):
    """Raised after --stop-after-shards shards, to leave the run as an interruption would."""


def shard_path(out_dir: Path, name: str, split: str, index: int) -> Path:
    return out_dir / f"{name}_{split}_{index:06d}.bin"


def _remove_shards(out_dir: Path, name: str, split: str, first: int = 0) -> None:
    """Delete this split's shards numbered ``first`` and up (left by an interrupted run)."""
    pattern = re.compile(rf"{re.escape(name)}_{re.escape(split)}_(\d+)\.(bin|mask)")
    for path in out_dir.iterdir():
        m = pattern.fullmatch(path.name)
        if m and int(m.group(1)) >= first:
            path.unlink()
        elif path.name.startswith(f".{name}_{split}_") and ".tmp-" in path.name:
            path.unlink()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One prepare at a time per directory (ranks of a job may all call ensure_shakespeare)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class _ShardWriter:
    """Cuts a stream of encoded documents into shards at document boundaries."""

    def __init__(self, run: _Run, split: str) -> None:
        self.run, self.split = run, split
        self.state = run.progress["splits"][split]
        self.pieces: list[tuple[np.ndarray, np.ndarray | None]] = []
        self.n_tokens = 0
        self.n_docs = 0

    def add(self, tokens: np.ndarray, mask: np.ndarray | None, lengths: list[int]) -> None:
        start = pos = 0
        for length in lengths:
            if self.n_tokens > 0 and self.n_tokens + length > self.run.shard_tokens:
                self._keep(tokens, mask, start, pos)
                self.flush()
                start = pos
            pos += length
            self.n_tokens += length
            self.n_docs += 1
        self._keep(tokens, mask, start, pos)

    def _keep(self, tokens: np.ndarray, mask: np.ndarray | None, lo: int, hi: int) -> None:
        if hi > lo:
            if self.run.has_mask and mask is None:
                raise ValueError(
                    f"{self.run.name}: a chat dataset produced a document without a mask"
                )
            self.pieces.append((tokens[lo:hi], None if mask is None else mask[lo:hi]))

    def flush(self) -> None:
        if self.n_tokens == 0:
            return
        tokens = np.concatenate([t for t, _ in self.pieces])
        mask = np.concatenate([m for _, m in self.pieces]) if self.run.has_mask else None
        path = shard_path(self.run.out_dir, self.run.name, self.split, self.state["shards"])
        write_tokens(path, tokens, mask)
        self.state["shards"] += 1
        self.state["documents"] += self.n_docs
        self.state["tokens"] += self.n_tokens
        self.run.save_progress()
        self.pieces, self.n_tokens, self.n_docs = [], 0, 0
        self.run.shards_this_run += 1
        if self.run.stop_after_shards and self.run.shards_this_run >= self.run.stop_after_shards:
            raise _Stopped


class _Run:
    """The state of one prepare run, shared by its splits."""

    def __init__(
        self, name: str, out_dir: Path, shard_tokens: int, has_mask: bool, stop_after: int | None
    ) -> None:
        self.name, self.out_dir, self.shard_tokens, self.has_mask = (
            name,
            out_dir,
            shard_tokens,
            has_mask,
        )
        self.stop_after_shards = stop_after
        self.partial = out_dir / ".partial"
        self.progress_path = self.partial / "progress.json"
        self.progress: dict = {}
        self.shards_this_run = 0
        self.started = time.time()
        self.seconds_before = 0.0

    def seconds(self) -> float:
        return self.seconds_before + time.time() - self.started

    def save_progress(self) -> None:
        self.progress["seconds"] = self.seconds()
        atomic.write_json(self.progress_path, self.progress)


def run_prepare(
    name: str,
    out_dir: str | Path,
    splits: Sequence[Split],
    encode: Callable[..., Encoded] = encode_text,
    *,
    tokenizer: str = "gpt2",
    has_mask: bool = False,
    shard_tokens: int = HUB_SHARD_TOKENS,
    num_proc: int | None = None,
    chunk_docs: int = 256,
    source: dict | None = None,
    command: str | None = None,
    overwrite: bool = False,
    stop_after_shards: int | None = None,
    progress: bool = True,
) -> dict:
    """Tokenize ``splits`` into ``out_dir/<name>_<split>_NNNNNN.bin`` (+ ``.mask``); resumable.

    ``source`` describes where the documents come from (hub name, config, local files, options
    that change the output); a rerun with a different ``source`` or ``shard_tokens`` refuses to
    mix its shards with the earlier ones. Returns the summary (``meta.json`` plus ``status``).
    ``encode(record, tokenizer=...)`` turns a record into tokens with the tokenizer named
    ``tokenizer`` (``gpt2`` or ``bytes``), which meta.json records with its vocabulary size.
    """
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"--tokenizer {tokenizer!r} is not one of {', '.join(TOKENIZERS)}")
    out_dir = Path(out_dir)
    meta_path = out_dir / "meta.json"
    if shard_tokens < 1 or shard_tokens >= 2**31:
        raise ValueError(f"shard_tokens must be in 1..{2**31 - 1:,}, got {shard_tokens:,}")
    num_proc = max(1, num_proc or os.cpu_count() or 1)
    params = {
        "dataset": name,
        "splits": [s.name for s in splits],
        "shard_tokens": shard_tokens,
        "has_mask": has_mask,
        "source": source or {},
        "tokenizer": tokenizer,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    if overwrite:
        _start_over(out_dir, name, splits)
    if meta_path.is_file():
        return _already(meta_path)
    run = _Run(name, out_dir, shard_tokens, has_mask, stop_after_shards)
    with _locked(run.partial / "lock"):
        if meta_path.is_file():  # another process finished it while we waited
            return _already(meta_path)
        run.progress = _load_progress(run.progress_path, params)
        run.seconds_before = run.progress.get("seconds", 0.0)
        resumed = any(s["shards"] for s in run.progress["splits"].values())
        if resumed:
            done = ", ".join(
                f"{k}: {v['shards']} shards" for k, v in run.progress["splits"].items()
            )
            print(f"{name}: resuming in {out_dir} ({done} already written)")
        try:
            for split in splits:
                _prepare_split(
                    run,
                    split,
                    functools.partial(encode, tokenizer=tokenizer),
                    num_proc,
                    chunk_docs,
                    progress,
                    tokenizer,
                )
        except _Stopped:
            print(
                f"{name}: stopped after {run.shards_this_run} shard(s), as asked; rerun to resume"
            )
            return {**run.progress, "status": "stopped"}
        meta = _meta(run, tokenizer, has_mask, shard_tokens, source, command)
        atomic.write_json(meta_path, meta)
        shutil.rmtree(run.partial, ignore_errors=True)
    _print_summary(name, meta, time.time() - run.started, out_dir)
    return {**meta, "status": "done"}


def _start_over(out_dir: Path, name: str, splits: Sequence[Split]) -> None:
    """--overwrite: remove meta.json, the partial state and every shard of these splits."""
    (out_dir / "meta.json").unlink(missing_ok=True)
    shutil.rmtree(out_dir / ".partial", ignore_errors=True)
    for split in splits:
        _remove_shards(out_dir, name, split.name)


def _meta(
    run: _Run,
    tokenizer: str,
    has_mask: bool,
    shard_tokens: int,
    source: dict | None,
    command: str | None,
) -> dict:
    """meta.json of a finished dataset: what it holds, how it was made, how to make it again."""
    state = run.progress["splits"]
    return {
        "dataset": run.name,
        "tokenizer": tokenizer,
        "vocab_size": get_tokenizer(tokenizer).n_vocab,
        "format": {"magic": MAGIC, "version": VERSION, "dtype": "uint16"}
        | ({"mask_magic": MASK_MAGIC, "mask_dtype": "uint8"} if has_mask else {}),
        "has_mask": has_mask,
        "documents": {k: v["documents"] for k, v in state.items()},
        "tokens": {k: v["tokens"] for k, v in state.items()},
        "shards": {k: v["shards"] for k, v in state.items()},
        "shard_tokens": shard_tokens,
        "source": source or {},
        "command": command,
        "seconds": round(run.seconds(), 1),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _print_summary(name: str, meta: dict, seconds: float, out_dir: Path) -> None:
    docs, toks = sum(meta["documents"].values()), sum(meta["tokens"].values())
    files = sum(meta["shards"].values())
    split_docs = ", ".join(f"{k} {v:,}" for k, v in meta["documents"].items())
    split_tokens = ", ".join(f"{k} {v:,}" for k, v in meta["tokens"].items())
    masks = f" (+{files} .mask)" if meta["has_mask"] else ""
    print(
        f"{name}: {docs:,} documents ({split_docs}), {toks:,} tokens ({split_tokens}), "
        f"{files} files{masks}, {seconds:.1f} s -> {out_dir}"
    )


def _already(meta_path: Path) -> dict:
    meta = json.loads(meta_path.read_text())
    print(
        f"{meta.get('dataset', meta_path.parent.name)}: already prepared in {meta_path.parent} "
        "(meta.json is there); pass --overwrite to prepare it again"
    )
    return {**meta, "status": "already prepared"}


def _load_progress(path: Path, params: dict) -> dict:
    fresh = {
        "params": params,
        "splits": {
            s: {"shards": 0, "documents": 0, "tokens": 0, "done": False} for s in params["splits"]
        },
    }
    if not path.is_file():
        return fresh
    progress = json.loads(path.read_text())
    if progress.get("params") != params:
        old, new = progress.get("params", {}), params
        diff = [k for k in set(old) | set(new) if old.get(k) != new.get(k)]
        raise ValueError(
            f"{path}: an interrupted run with different settings ({', '.join(sorted(diff))}: "
            f"{[old.get(k) for k in sorted(diff)]} then, {[new.get(k) for k in sorted(diff)]} "
            "now) left its shards here; rerun with the same settings to resume it, or pass "
            "--overwrite to start again"
        )
    return progress


def _chunks(records: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(records)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _prepare_split(
    run: _Run,
    split: Split,
    encode: Callable[[Any], Encoded],
    num_proc: int,
    chunk_docs: int,
    progress: bool,
    tokenizer: str,
) -> None:
    from tqdm import tqdm

    state = run.progress["splits"][split.name]
    if state["done"]:
        return
    _remove_shards(run.out_dir, run.name, split.name, first=state["shards"])
    records = itertools.islice(iter(split.documents()), state["documents"], None)
    writer = _ShardWriter(run, split.name)
    bar = tqdm(
        desc=f"{run.name} {split.name}",
        unit="tok",
        unit_scale=True,
        disable=not progress,
        mininterval=0.5,
        initial=state["tokens"],
    )
    stream = _encoded_chunks(_chunks(records, chunk_docs), encode, num_proc, tokenizer)
    try:
        docs = state["documents"]
        for tokens, mask, lengths, n in stream:
            writer.add(tokens, mask, lengths)
            docs += n
            bar.update(len(tokens))
            bar.set_postfix(docs=f"{docs:,}", shards=state["shards"], refresh=False)
        writer.flush()
    finally:
        stream.close()
        bar.close()
    state["done"] = True
    if state["documents"] == 0:
        print(f"{run.name}: warning: the {split.name} split has no documents")
    run.save_progress()
