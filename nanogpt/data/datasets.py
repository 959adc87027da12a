"""Where datasets live: the data root, dataset names and directories, their shards, and the
command that (re)creates each one.

A prepared dataset is a directory ``<name>_train_000000.bin, ..., <name>_val_000000.bin`` (plus
``.mask`` files) and a ``meta.json`` written last, so its presence means "complete".
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

DATASETS = ("shakespeare", "fineweb_edu", "openwebtext", "task_mixture", "text")
REPO_DATA_DIR = Path(__file__).resolve().parents[2] / "data"


def default_data_root(checkout: Path = REPO_DATA_DIR.parent) -> Path:
    """``data/`` of the checkout the package runs from (an editable install or ``PYTHONPATH=.``),
    else the user's cache directory (``$XDG_CACHE_HOME/nanogpt/data``, by default
    ``~/.cache/nanogpt/data``), where an installed package keeps its data."""
    if (checkout / "pyproject.toml").is_file() and (checkout / "nanogpt").is_dir():
        return checkout / "data"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "nanogpt" / "data"


def data_root() -> Path:
    """Root of named datasets: ``$NANOGPT_DATA_DIR`` if set, else ``default_data_root()``."""
    env = os.environ.get("NANOGPT_DATA_DIR")
    return Path(env).expanduser() if env else default_data_root()


def default_out_dir(name: str, tokenizer: str = "gpt2") -> Path:
    """Where a named dataset is prepared: ``<root>/<name>``, or ``<root>/<name>_bytes`` for the
    byte-level tokenizer (the two never share a directory)."""
    return data_root() / (name if tokenizer == "gpt2" else f"{name}_{tokenizer}")


def _dataset_and_tokenizer(dir_name: str) -> tuple[str, str]:
    for suffix in ("_bytes",):
        if dir_name.endswith(suffix) and dir_name.removesuffix(suffix) in DATASETS:
            return dir_name.removesuffix(suffix), suffix[1:]
    return dir_name, "gpt2"


def prepare_command(data_dir: str | Path) -> str:
    """The command that (re)creates ``data_dir``, for error messages."""
    data_dir = Path(data_dir)
    name, tokenizer = _dataset_and_tokenizer(data_dir.name)
    meta = data_dir / "meta.json"
    if meta.is_file():
        try:
            command = json.loads(meta.read_text()).get("command")
            if command:
                return command
        except (OSError, ValueError):
            pass
    if name in DATASETS:
        default = data_root() / data_dir.name
        out = "" if data_dir.resolve() == default.resolve() else f" --out-dir {data_dir}"
        flag = "" if tokenizer == "gpt2" else f" --tokenizer {tokenizer}"
        return f"python data/{name}/prepare.py{flag}{out}"
    return f"python data/text/prepare.py YOUR_FILES --out-dir {data_dir}"


def _redo_hint(path: Path) -> str:
    return f"re-create it: `{prepare_command(path.parent)} --overwrite`"


def resolve_data_dir(name_or_path: str | Path) -> Path:
    """A dataset directory from a name (``"shakespeare"``) or a path.

    A name is looked up under ``data_root()`` (``$NANOGPT_DATA_DIR``; default ``data/`` in the
    checkout, else ``~/.cache/nanogpt/data``). A directory without token files raises FileNotFoundError naming the prepare script to run.
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


def _files_for(data: str | Path | Sequence[str | Path], split: str) -> list[Path]:
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
        raise ValueError(f"{meta} is not valid JSON ({e}); {_redo_hint(meta)}") from None


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
