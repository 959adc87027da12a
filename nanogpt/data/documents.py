"""Documents: the encoders that turn a dataset's records into tokens (and loss masks), and the
readers that stream the records from the Hugging Face hub or from local files.
"""

from __future__ import annotations

import glob
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from nanogpt.tokenizer import get_tokenizer

Encoded = tuple[list[int], list[int] | None]


# ---------------------------------------------------------------------------------------------
# Encoders: top-level functions, so that worker processes can unpickle them by name.


# Each takes the tokenizer's name (``gpt2`` or ``bytes``); run_prepare binds it.


def encode_text(record: str | dict, tokenizer: str = "gpt2") -> Encoded:
    """A pretraining document: ``<|endoftext|>`` + text."""
    text = record if isinstance(record, str) else record["text"]
    return get_tokenizer(tokenizer).encode_document(text), None


def encode_chat(record: Sequence[dict] | dict, tokenizer: str = "gpt2") -> Encoded:
    """A conversation (a list of {role, content}, or a row with ``messages``): tokens + mask."""
    messages = record["messages"] if isinstance(record, dict) else record
    return get_tokenizer(tokenizer).render_conversation(
        [{"role": m["role"], "content": m["content"]} for m in messages]
    )


def mmlu_messages(row: dict) -> list[dict[str, str]]:
    """An MMLU row as a user question with lettered choices and the answer letter."""
    if "question" not in row and isinstance(row.get("train"), dict):
        row = row["train"]  # older auxiliary_train files nest the fields under "train"
    choices, answer = list(row["choices"]), int(row["answer"])
    if not 0 <= answer < len(choices) <= 26:
        raise ValueError(f"MMLU row: answer {answer} does not index its {len(choices)} choices")
    letters = [chr(ord("A") + i) for i in range(len(choices))]
    subject = str(row.get("subject") or "").replace("_", " ").strip()
    intro = f"The following is a multiple choice question about {subject}.\n\n" if subject else ""
    lettered = "\n".join(f"{letter}. {choice}" for letter, choice in zip(letters, choices))
    user = (
        f"{intro}{row['question'].strip()}\n\n{lettered}\n\n"
        "Answer with the letter of the correct choice."
    )
    return [{"role": "user", "content": user}, {"role": "assistant", "content": letters[answer]}]


def gsm8k_messages(row: dict) -> list[dict[str, str]]:
    """A GSM8K row: the question, then the full worked answer ending in ``#### <number>``.

    The ``<<48/2=24>>`` calculator annotations are removed: our chat format has no tool calls.
    """
    answer = re.sub(r"<<[^>]*>>", "", row["answer"]).strip()
    return [
        {"role": "user", "content": row["question"].strip()},
        {"role": "assistant", "content": answer},
    ]


TASK_RENDERERS: dict[str, Callable[[dict], list[dict[str, str]]]] = {
    "smoltalk": lambda row: list(row["messages"]),
    "mmlu": mmlu_messages,
    "gsm8k": gsm8k_messages,
}


def encode_task(item: tuple[str, dict], tokenizer: str = "gpt2") -> Encoded:
    """A task-mixture record ``(kind, row)`` rendered as a conversation."""
    kind, row = item
    return encode_chat(TASK_RENDERERS[kind](row), tokenizer)


# ---------------------------------------------------------------------------------------------
# Reading documents: the hub or local files of the same schema


def expand_files(paths: Sequence[str | Path]) -> list[Path]:
    """Files, directories (their parquet/json/jsonl files, sorted) and globs → a list of files."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix in (".parquet", ".jsonl", ".json"))
            if not found:
                raise FileNotFoundError(
                    f"{p}: no .parquet, .jsonl or .json files in this directory"
                )
            files += found
        elif p.is_file():
            files.append(p)
        elif matches := sorted(glob.glob(str(p))):
            files += map(Path, matches)
        else:
            raise FileNotFoundError(f"{p}: no such file")
    return [f.resolve() for f in files]


def local_format(files: Sequence[Path]) -> str:
    """The `datasets` builder for a list of local files: "parquet" or "json"."""
    kinds = {"parquet" if f.suffix == ".parquet" else "json" for f in files}
    if len(kinds) != 1 or not all(f.suffix in (".parquet", ".json", ".jsonl") for f in files):
        raise ValueError(
            f"local files must be all .parquet or all .jsonl/.json, got {[f.name for f in files]}"
        )
    return kinds.pop()


def load_rows(
    hub_name: str,
    config: str | None,
    split: str,
    local_files: Sequence[str | Path] | None = None,
) -> Iterable[dict]:
    """Rows of a dataset split, streamed from the Hugging Face hub, or read from local parquet /
    jsonl files that have the hub dataset's schema (``--local-files``)."""
    import datasets

    if local_files:
        files = expand_files(local_files)
        return datasets.load_dataset(
            local_format(files), data_files=[str(f) for f in files], split="train", streaming=True
        )
    try:
        return datasets.load_dataset(hub_name, config, split=split, streaming=True)
    except (ConnectionError, OSError) as e:
        raise ConnectionError(
            f"could not stream {hub_name} ({config or 'default config'}, split {split}) from the "
            f"Hugging Face hub: {e}. Check the network (and HF_HUB_OFFLINE / HF_DATASETS_OFFLINE), "
            "or download the dataset's parquet files and pass them with --local-files"
        ) from e


def count_local_rows(local_files: Sequence[str | Path]) -> int:
    """Rows in local parquet (from its metadata) or jsonl files (non-empty lines)."""
    import pyarrow.parquet as pq

    total = 0
    for f in expand_files(local_files):
        if f.suffix == ".parquet":
            total += pq.ParquetFile(f).metadata.num_rows
        elif f.suffix == ".json":
            text = f.read_text().lstrip()
            total += (
                len(json.loads(text))
                if text.startswith("[")
                else sum(1 for line in text.splitlines() if line.strip())
            )
        else:
            with open(f, "rb") as fh:
                total += sum(1 for line in fh if line.strip())
    return total


def column(rows: Iterable[dict], name: str, where: str) -> Iterator[Any]:
    """``row[name]`` for each row, with an error that lists the columns if it is missing.

    A `datasets` dataset is read a thousand rows at a time and only this column is decoded,
    which is about 1.6x faster than row by row (the reading happens in the main process).
    """
    if hasattr(rows, "select_columns") and hasattr(rows, "iter"):
        try:
            selected = rows.select_columns([name])
        except ValueError as e:
            raise KeyError(f"{where}: rows have no {name!r} column ({e})") from None
        for batch in selected.iter(batch_size=1000):
            yield from batch[name]
        return
    for row in rows:
        if name not in row:
            raise KeyError(f"{where}: rows have no {name!r} column (they have {sorted(row)})")
        yield row[name]


def interleave(streams: Sequence[Iterable[Any]], weights: Sequence[float]) -> Iterator[Any]:
    """Merge streams in a fixed order, in proportion to ``weights``: the next item comes from
    the stream whose (taken + 1/2) / weight is smallest, so every prefix of the output is within
    one item of the proportions. When a stream runs out, the others go on."""
    its = [iter(s) for s in streams]
    taken = [0] * len(its)
    live = [i for i, w in enumerate(weights) if w > 0]
    while live:
        i = min(live, key=lambda k: ((taken[k] + 0.5) / weights[k], k))
        try:
            item = next(its[i])
        except StopIteration:
            live.remove(i)
            continue
        taken[i] += 1
        yield item


def skip_take(
    make: Callable[[], Iterable[Any]], skip: int = 0, take: int | None = None
) -> Callable[[], Iterator[Any]]:
    """A factory for ``islice(make(), skip, skip + take)`` (``take=None``: to the end)."""
    stop = None if take is None else skip + take
    return lambda: itertools.islice(iter(make()), skip, stop)
