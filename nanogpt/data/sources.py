"""The data a training run reads: one dataset (a name or a directory) or a mixture
(``a:0.8,b:0.2``), its tokenizer, its loaders and its size. ``nanogpt.train`` calls these."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nanogpt.data.datasets import (
    count_tokens,
    dataset_tokenizer,
    ensure_shakespeare,
    resolve_data_dir,
)
from nanogpt.data.format import TokenFileError
from nanogpt.data.loader import DataLoader
from nanogpt.data.multiplex import MultiplexLoader, parse_mixture


def is_mixture(source: str | Path) -> bool:
    text = str(source)
    return ("," in text or ":" in text) and not Path(text).exists()


def run_data(data: str | None, mode: str) -> tuple[str | Path, str]:
    """The data for this run (``--data``, else the mode's default), and a sentence saying
    where it came from."""
    if data:
        return data, f"data: {data}"
    if mode == "mid-training":
        try:
            return resolve_data_dir("task_mixture"), "data: the task mixture"
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"mid-training needs the task mixture: {e}; or pass --data DIR"
            ) from None
    try:
        fineweb = resolve_data_dir("fineweb_edu")
        if (fineweb / "meta.json").is_file():
            return fineweb, "data: FineWeb-Edu (prepared)"
    except FileNotFoundError:
        pass
    return (
        ensure_shakespeare(),
        "data: FineWeb-Edu is not prepared (python -m nanogpt.data.prepare fineweb_edu), so this run "
        "uses the embedded Shakespeare corpus",
    )


def _directories(source: str | Path) -> list[Path]:
    if is_mixture(source):
        return [resolve_data_dir(name) for name, _ in parse_mixture(str(source))]
    return [resolve_data_dir(str(source))]


def data_tokenizer(source: str | Path) -> tuple[str, int]:
    """(tokenizer, vocabulary size) of the data, from its meta.json; a mixture must agree."""
    found = {path: dataset_tokenizer(path) for path in _directories(source)}
    if len(set(found.values())) > 1:
        listed = "; ".join(f"{p}: {t}" for p, (t, _) in found.items())
        raise TokenFileError(
            f"the datasets of {source} were made with different tokenizers ({listed}); "
            "prepare them all with the same --tokenizer"
        )
    return next(iter(found.values()))


def make_loader(
    source: str | Path,
    split: str,
    *,
    vocab_size: int,
    batch_size: int,
    seq_len: int,
    rank: int,
    world_size: int,
    seed: int,
    loss_mask: str,
    device: torch.device,
) -> Any:
    """A rank's loader of ``split``: a ``DataLoader``, or a ``MultiplexLoader`` for a mixture."""
    kwargs: dict[str, Any] = dict(
        vocab_size=vocab_size,
        split=split,
        batch_size=batch_size,
        seq_len=seq_len,
        rank=rank,
        world_size=world_size,
        seed=seed,
        loss_mask=loss_mask,
        device=device,
    )
    if is_mixture(source):
        weighted = [(resolve_data_dir(n), w) for n, w in parse_mixture(str(source))]
        return MultiplexLoader(weighted, **kwargs)
    return DataLoader(resolve_data_dir(str(source)), **kwargs)


def count_train_tokens(source: str | Path) -> int | None:
    """Tokens in the train split; None for a mixture, which has no single "one pass"."""
    if is_mixture(source):
        return None
    return count_tokens(resolve_data_dir(str(source)), "train")
