"""Prepared datasets: a name or directory resolved to its token files, its ``meta.json`` (the
tokenizer it was made with), its size, and the embedded Shakespeare corpus prepared on demand.

A prepared dataset is a directory ``<name>_train_000000.bin, ..., <name>_val_000000.bin`` (plus
``.mask`` files) and a ``meta.json`` written last, so its presence means "complete". Where
datasets live is ``nanogpt.data.paths``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from nanogpt.data.format import MAGIC, read_header
from nanogpt.data.paths import (
    DATASETS,
    REPO_DATA_DIR,
    data_root,
    default_data_root,
    default_out_dir,
    prepare_command,
    redo_hint,
)


def resolve_data_dir(name_or_path: str | Path) -> Path:
    """A dataset directory from a name (``"shakespeare"``) or a path.

    A name is looked up under ``data_root()`` (``$NANOGPT_DATA_DIR``; default ``data/`` in the
    checkout, else ``~/.cache/nanogpt/data``). A directory without token files raises FileNotFoundError naming the prepare command to run.
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    is_name = not path.is_absolute() and "/" not in text and os.sep not in text
    if is_name and not path.is_dir():
        path = data_root() / text
    if not path.is_dir():
        if is_name:
            raise FileNotFoundError(
                f"dataset {text!r} is not prepared: {path} does not exist; "
                f"run `{prepare_command(path)}`"
            )
        raise FileNotFoundError(f"{path}: no such data directory")
    if not any(path.glob("*.bin")):
        raise FileNotFoundError(
            f"{path}: no token files (*.bin) here yet; run `{prepare_command(path)}`"
        )
    return path


def list_shards(data_dir: str | Path, split: str) -> list[Path]:
    """The ``*_{split}_NNNNNN.bin`` files of a dataset directory, in order."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: no such data directory")
    pattern = re.compile(rf".+_{re.escape(split)}_\d+\.bin")
    shards = sorted(p for p in data_dir.glob(f"*_{split}_*.bin") if pattern.fullmatch(p.name))
    if not shards:
        raise FileNotFoundError(
            f"{data_dir}: no {split} shards (files named *_{split}_000000.bin, ...); "
            f"run `{prepare_command(data_dir)}`"
        )
    return shards


def token_files(data: str | Path | Sequence[str | Path], split: str) -> list[Path]:
    """The token files of a split: a dataset name or directory, one ``.bin`` file, or a list."""
    if isinstance(data, (str, Path)):
        path = Path(data)
        if path.suffix == ".bin" and path.is_file():
            return [path]
        return list_shards(resolve_data_dir(data), split)
    files = [Path(f) for f in data]
    if not files:
        raise ValueError("an empty list of token files was given")
    return files


def ensure_shakespeare(out_dir: str | Path | None = None, tokenizer: str = "gpt2") -> Path:
    """The embedded default corpus, prepared now if it is not there yet (no network; ~2 s)."""
    out = Path(out_dir) if out_dir is not None else default_out_dir("shakespeare", tokenizer)
    if not (out / "meta.json").is_file():
        from nanogpt.data.shakespeare import prepare_shakespeare

        prepare_shakespeare(out, num_proc=1, progress=False, tokenizer=tokenizer)
    return out


def dataset_meta(data_dir: str | Path) -> dict:
    """A prepared dataset's ``meta.json`` ({} for a directory of shards made elsewhere)."""
    meta = Path(data_dir) / "meta.json"
    if not meta.is_file():
        return {}
    try:
        return json.loads(meta.read_text())
    except ValueError as e:
        raise ValueError(f"{meta} is not valid JSON ({e}); {redo_hint(meta)}") from None


def dataset_tokenizer(data_dir: str | Path) -> tuple[str, int]:
    """(tokenizer name, vocabulary size) a dataset was made with, from its meta.json.

    Shards without a meta.json (llm.c's, modded-nanogpt's) are GPT-2 BPE, which is the only
    tokenizer those projects write in this format.
    """
    meta = dataset_meta(data_dir)
    name = meta.get("tokenizer", "gpt2")
    from nanogpt.tokenizer import TOKENIZERS, VOCAB_SIZES

    if name not in TOKENIZERS:
        raise ValueError(
            f"{Path(data_dir) / 'meta.json'}: tokenizer {name!r} is not one of "
            f"{', '.join(TOKENIZERS)}"
        )
    vocab = int(meta.get("vocab_size") or VOCAB_SIZES[name])
    return name, vocab


def count_tokens(data: str | Path | Sequence[str | Path], split: str = "train") -> int:
    """Tokens in a split, from the file headers only (no token is read)."""
    return sum(read_header(f, MAGIC) for f in token_files(data, split))


__all__ = [
    "DATASETS",
    "REPO_DATA_DIR",
    "count_tokens",
    "data_root",
    "dataset_meta",
    "dataset_tokenizer",
    "default_data_root",
    "default_out_dir",
    "ensure_shakespeare",
    "list_shards",
    "prepare_command",
    "resolve_data_dir",
    "token_files",
]
