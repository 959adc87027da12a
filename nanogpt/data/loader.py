"""The loader: a split read as one long sequence, cut into windows, and dealt out as batches
that are disjoint across ranks and resumable from a state dict.

Batches: a split is read as one sequence (its shards concatenated in order) cut into windows of
``seq_len + 1`` tokens that overlap by one token, so ``x`` and ``y`` come from one window. Global
window number ``g = consumed + rank * B + b`` goes to row ``b`` of ``rank``; ``consumed`` grows by
``B * world_size`` per step, so ranks never read the same window in a step, and the loader state
is the same on every rank. Each epoch visits every window once, in an order shuffled from the
seed (train) or in file order (val).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from nanogpt.data.datasets import token_files
from nanogpt.data.windows import (
    TokenSplit,
    check_loader_args,
    check_loader_state,
    check_split_size,
    claim_block,
    hash64,
    to_batch,
)
from nanogpt.tokenizer import N_VOCAB


class DataLoader:
    """Batches ``(x, y)`` of shape (B, T) from a prepared dataset, disjoint across ranks.

    ``data``: a dataset name or directory (``resolve_data_dir``), a ``.bin`` file, or a list of
    token files. ``shuffle``: None means shuffled windows for train and file order otherwise.
    ``loss_mask="assistant"`` sets targets whose mask is 0 to -1 (cross_entropy's
    ignore_index) where the data has ``.mask`` files; ``"all"`` trains on every token.
    ``mmap``: None maps the files and falls back to plain reads where mapping is unavailable;
    True insists on mapping; False always uses plain reads.
    """

    def __init__(
        self,
        data: str | Path | Sequence[str | Path],
        split: str = "train",
        batch_size: int = 8,
        seq_len: int = 1024,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        mmap: bool | None = None,
        loss_mask: str = "assistant",
        device: str | torch.device = "cpu",
        shuffle: bool | None = None,
        vocab_size: int = N_VOCAB,
    ) -> None:
        check_loader_args(batch_size, seq_len, rank, world_size, loss_mask)
        self.split_name, self.batch_size, self.seq_len = split, batch_size, seq_len
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.device = torch.device(device)
        self.shuffle = (split == "train") if shuffle is None else shuffle
        self.split = TokenSplit(
            token_files(data, split), seq_len, loss_mask == "assistant", vocab_size, mmap
        )
        per_step = f"{world_size} rank(s) x {batch_size} sequences x {seq_len}+1 tokens"
        check_split_size(self.split, split, batch_size * world_size, per_step)
        self.epoch, self.position = 0, 0  # next window: number `position` of epoch `epoch`
        self._key = hash64(seed, 0)

    @property
    def n_tokens(self) -> int:
        return self.split.n_tokens

    @property
    def has_mask(self) -> bool:
        return self.split.has_mask

    def __iter__(self) -> DataLoader:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        B, rows = self.batch_size, self.batch_size * self.world_size
        self.epoch, self.position = claim_block(
            self.epoch, self.position, rows, self.split.n_windows
        )
        positions = self.position + self.rank * B + np.arange(B)
        starts = self.split.window_starts(self.epoch, positions, self.shuffle, self._key)
        tokens, masks = self.split.read_windows(starts)
        self.position += rows
        return to_batch(tokens, masks, self.device)

    def reset(self) -> None:
        """Back to the first batch (for a fixed set of validation batches)."""
        self.epoch, self.position = 0, 0

    def state_dict(self) -> dict:
        """JSON-serialisable position; the same on every rank."""
        return {
            "kind": "DataLoader",
            "version": 1,
            "split": self.split_name,
            "seq_len": self.seq_len,
            "seed": self.seed,
            "shuffle": self.shuffle,
            **self.split.fingerprint(),
            "epoch": self.epoch,
            "position": self.position,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue where ``state`` left off; batch size and world size may differ."""
        keys = ("kind", "split", "seq_len", "seed", "shuffle", "files", "n_tokens")
        check_loader_state(state, self.state_dict(), keys)
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def close(self) -> None:
        self.split.close()


def val_batches(
    data: str | Path | Sequence[str | Path],
    n_batches: int,
    batch_size: int,
    seq_len: int,
    rank: int = 0,
    world_size: int = 1,
    loss_mask: str = "assistant",
    device: str | torch.device = "cpu",
    mmap: bool | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``n_batches`` validation batches, in file order: the same tokens every call."""
    loader = DataLoader(
        data, "val", batch_size, seq_len, rank, world_size, 0, mmap, loss_mask, device, False
    )
    try:
        for _ in range(n_batches):
            yield next(loader)
    finally:
        loader.close()
