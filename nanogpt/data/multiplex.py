"""Mixtures: batches drawn from several datasets in given proportions (``MultiplexLoader``), and
the ``NAME:WEIGHT,NAME:WEIGHT`` spec that names them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
    permute,
    to_batch,
)
from nanogpt.tokenizer import N_VOCAB


def parse_mixture(spec: str) -> list[tuple[str, float]]:
    """``"fineweb_edu:0.8,task_mixture:0.2"`` → [("fineweb_edu", 0.8), ("task_mixture", 0.2)]."""
    sources = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, sep, weight = item.rpartition(":")
        try:
            if not sep:
                raise ValueError
            sources.append((name, float(weight)))
        except ValueError:
            raise ValueError(f"mixture item {item!r}: expected NAME_OR_DIR:WEIGHT") from None
    if not sources:
        raise ValueError(f"mixture {spec!r} names no sources; expected NAME:WEIGHT,NAME:WEIGHT")
    return sources


class MultiplexLoader:
    """Batches mixed from several datasets with given weights (see docs/README_MULTIPLEX.md).

    Each step's ``B * world_size`` rows are given to sources by weighted round robin, so after
    any step every source's share of rows is within one row of its weight; the rows are then
    shuffled from ``(seed, step)`` and dealt out to the ranks. Each source keeps its own epoch
    and window position, so ranks never share a window within a step.
    """

    def __init__(
        self,
        sources: Sequence[tuple[str | Path | Sequence[str | Path], float]],
        split: str = "train",
        batch_size: int = 8,
        seq_len: int = 1024,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        loss_mask: str = "assistant",
        device: str | torch.device = "cpu",
        mmap: bool | None = None,
        shuffle: bool | None = None,
        vocab_size: int = N_VOCAB,
    ) -> None:
        check_loader_args(batch_size, seq_len, rank, world_size, loss_mask)
        if not sources:
            raise ValueError("MultiplexLoader needs at least one (dataset, weight) source")
        weights = [float(w) for _, w in sources]
        if any(not math.isfinite(w) or w <= 0 for w in weights):
            raise ValueError(f"mixture weights must be positive and finite, got {weights}")
        self.weights = [w / sum(weights) for w in weights]
        self.split_name, self.batch_size, self.seq_len = split, batch_size, seq_len
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.device = torch.device(device)
        self.shuffle = (split == "train") if shuffle is None else shuffle
        self.sources = [
            TokenSplit(
                token_files(data, split), seq_len, loss_mask == "assistant", vocab_size, mmap
            )
            for data, _ in sources
        ]
        rows = batch_size * world_size
        for src, w in zip(self.sources, self.weights):
            # weighted round robin gives a source at most ceil(w * rows) + 1 rows of a step
            need = min(rows, math.ceil(w * rows) + 1)
            check_split_size(src, split, need, f"{need} sequence(s) of {seq_len}+1 tokens from it")
        self.steps = 0
        self.rows_done = 0
        self.counts = [0] * len(self.sources)  # rows drawn from each source so far
        self.cursors = [[0, 0] for _ in self.sources]  # [epoch, position] of each source
        self.last_sources: list[int] = []  # source index of each row of this rank's last batch

    def _assign(self) -> list[int]:
        """The source of each of this step's B * world_size rows (all ranks agree)."""
        rows = self.batch_size * self.world_size
        counts, assign = list(self.counts), []
        for j in range(rows):
            done = self.rows_done + j + 1
            s = max(range(len(counts)), key=lambda i: self.weights[i] * done - counts[i])
            counts[s] += 1
            assign.append(s)
        key = hash64(self.seed, self.steps, 0x6D78)
        return [assign[permute(j, rows, key)] for j in range(rows)]

    def __iter__(self) -> MultiplexLoader:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        B, T = self.batch_size, self.seq_len
        assign = self._assign()
        for s, src in enumerate(self.sources):
            epoch, position = self.cursors[s]
            self.cursors[s] = list(claim_block(epoch, position, assign.count(s), src.n_windows))
        # window position of each row: the source's cursor plus the rows of it dealt before
        positions, seen = [], [c[1] for c in self.cursors]
        for s in assign:
            positions.append(seen[s])
            seen[s] += 1
        mine = range(self.rank * B, (self.rank + 1) * B)
        tokens = np.empty((B, T + 1), dtype=np.int64)
        masks = np.ones((B, T + 1), dtype=np.uint8)
        any_mask = False
        for b, j in enumerate(mine):
            s = assign[j]
            src = self.sources[s]
            start = src.window_starts(
                self.cursors[s][0], [positions[j]], self.shuffle, hash64(self.seed, s + 1)
            )
            tok, m = src.read_windows(start)
            tokens[b] = tok[0]
            if m is not None:
                masks[b], any_mask = m[0], True
        for s in range(len(self.sources)):
            n = assign.count(s)
            self.cursors[s][1] += n
            self.counts[s] += n
        self.last_sources = [assign[j] for j in mine]
        self.rows_done += B * self.world_size
        self.steps += 1
        return to_batch(tokens, masks if any_mask else None, self.device)

    @property
    def source_counts(self) -> dict[str, int]:
        """Rows drawn so far from each source, over all ranks."""
        return {src.describe(): c for src, c in zip(self.sources, self.counts)}

    def reset(self) -> None:
        self.steps, self.rows_done = 0, 0
        self.counts = [0] * len(self.sources)
        self.cursors = [[0, 0] for _ in self.sources]

    def state_dict(self) -> dict:
        """JSON-serialisable position; the same on every rank."""
        return {
            "kind": "MultiplexLoader",
            "version": 1,
            "split": self.split_name,
            "seq_len": self.seq_len,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "sources": [
                {**src.fingerprint(), "weight": w} for src, w in zip(self.sources, self.weights)
            ],
            "steps": self.steps,
            "rows_done": self.rows_done,
            "counts": list(self.counts),
            "cursors": [list(c) for c in self.cursors],
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue where ``state`` left off; batch size and world size may differ."""
        keys = ("kind", "split", "seq_len", "seed", "shuffle", "sources")
        check_loader_state(state, self.state_dict(), keys)
        self.steps, self.rows_done = int(state["steps"]), int(state["rows_done"])
        self.counts = [int(c) for c in state["counts"]]
        self.cursors = [[int(e), int(p)] for e, p in state["cursors"]]

    def close(self) -> None:
        for src in self.sources:
            src.close()
