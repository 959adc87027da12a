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

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from nanogpt.data.datasets import _files_for, _redo_hint
from nanogpt.data.format import (
    _DTYPES,
    HEADER_BYTES,
    MAGIC,
    MASK_MAGIC,
    TokenFileError,
    _check_ids,
    _memmap,
    _read_header,
    mask_path,
)
from nanogpt.tokenizer import N_VOCAB

# ---------------------------------------------------------------------------------------------
# A split read as one long sequence


class _Reader:
    """Slices of one file's payload: through a memory map, or with plain reads (pread)."""

    def __init__(self, path: Path, dtype: np.dtype, count: int, mmap: bool | None) -> None:
        self.path, self.dtype = path, dtype
        self.array: np.ndarray | None = None
        self.fd: int | None = None
        if count == 0:
            return
        if mmap is not False:
            self.array = _memmap(path, dtype, count, insist=bool(mmap))
        if self.array is None:
            self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))

    def get(self, lo: int, hi: int) -> np.ndarray:
        if self.array is not None:
            return np.asarray(self.array[lo:hi])
        if self.fd is None:
            return np.zeros(0, dtype=self.dtype)
        nbytes, offset = (hi - lo) * self.dtype.itemsize, HEADER_BYTES + lo * self.dtype.itemsize
        if hasattr(os, "pread"):
            buf = os.pread(self.fd, nbytes, offset)
        else:  # Windows
            os.lseek(self.fd, offset, os.SEEK_SET)
            buf = os.read(self.fd, nbytes)
        if len(buf) != nbytes:
            raise TokenFileError(
                f"{self.path}: the file shrank while being read; {_redo_hint(self.path)}"
            )
        return np.frombuffer(buf, dtype=self.dtype)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.array = None


class _Split:
    """The token files of one split, read as one sequence cut into windows of seq_len + 1."""

    def __init__(
        self,
        files: list[Path],
        seq_len: int,
        use_mask: bool,
        vocab_size: int,
        mmap: bool | None,
    ) -> None:
        self.files, self.seq_len, self.vocab_size, self.mmap = files, seq_len, vocab_size, mmap
        self.counts = [_read_header(f, MAGIC) for f in files]
        self.starts = np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)])
        self.n_tokens = int(self.starts[-1])
        self.n_windows = max(0, (self.n_tokens - 1) // seq_len)
        with_mask = [mask_path(f).exists() for f in files]
        if any(with_mask) and not all(with_mask):
            missing = files[with_mask.index(False)]
            raise TokenFileError(
                f"{missing}: other files of this split have a .mask file but this one has none; "
                f"{_redo_hint(missing)}"
            )
        self.has_mask = all(with_mask)
        self.use_mask = use_mask and self.has_mask
        if self.use_mask:
            for f, n in zip(files, self.counts):
                if (m := _read_header(mask_path(f), MASK_MAGIC)) != n:
                    raise TokenFileError(
                        f"{mask_path(f)}: the mask has {m:,} entries but {f.name} holds {n:,} "
                        f"tokens; {_redo_hint(f)}"
                    )
        self._tokens: dict[int, _Reader] = {}
        self._masks: dict[int, _Reader] = {}

    def describe(self) -> str:
        """The directory of the files, or the file itself when it is alone in a different name."""
        if len(self.files) == 1 and not re.fullmatch(r".+_\w+_\d+\.bin", self.files[0].name):
            return str(self.files[0])
        return str(self.files[0].parent)

    def _reader(self, cache: dict[int, _Reader], i: int, masks: bool) -> _Reader:
        if i not in cache:
            path = mask_path(self.files[i]) if masks else self.files[i]
            dtype = _DTYPES[MASK_MAGIC if masks else MAGIC]
            cache[i] = _Reader(path, dtype, self.counts[i], self.mmap)
        return cache[i]

    def _locate(self, position: int) -> tuple[int, int]:
        """(file index, offset in that file) of a position in the concatenated split."""
        i = int(np.searchsorted(self.starts, position, side="right")) - 1
        return i, position - int(self.starts[i])

    def read_into(self, start: int, tokens: np.ndarray, mask: np.ndarray | None) -> None:
        """Fill ``tokens`` (and ``mask``) with the split's tokens from ``start`` on."""
        i, lo = self._locate(start)
        filled, length = 0, len(tokens)
        while filled < length:
            hi = min(self.counts[i], lo + length - filled)
            if hi > lo:
                tokens[filled : filled + hi - lo] = self._reader(self._tokens, i, False).get(lo, hi)
                if mask is not None:
                    mask[filled : filled + hi - lo] = self._reader(self._masks, i, True).get(lo, hi)
                filled += hi - lo
            i, lo = i + 1, 0

    def window_starts(
        self, epoch: int, positions: Sequence[int], shuffle: bool, key: int
    ) -> list[int]:
        """Token offsets of windows ``positions`` of ``epoch`` (a shuffled order when asked)."""
        if not shuffle:
            return [int(p) * self.seq_len for p in positions]
        epoch_key = _hash64(key, epoch)
        return [_permute(int(p), self.n_windows, epoch_key) * self.seq_len for p in positions]

    def read_windows(self, starts: Sequence[int]) -> tuple[np.ndarray, np.ndarray | None]:
        """Windows of seq_len + 1 tokens at ``starts``: (rows, seq_len + 1) int64 (and masks)."""
        rows = len(starts)
        tokens = np.empty((rows, self.seq_len + 1), dtype=np.int64)
        masks = np.empty((rows, self.seq_len + 1), dtype=np.uint8) if self.use_mask else None
        for b, start in enumerate(starts):
            self.read_into(start, tokens[b], None if masks is None else masks[b])
        if rows and int(tokens.max()) >= self.vocab_size:  # find the file to name it
            b, t = divmod(int(np.argmax(tokens >= self.vocab_size)), self.seq_len + 1)
            i, offset = self._locate(starts[b] + t)
            _check_ids(self.files[i], tokens[b, t : t + 1], self.vocab_size, offset)
        return tokens, masks

    def close(self) -> None:
        for reader in [*self._tokens.values(), *self._masks.values()]:
            reader.close()
        self._tokens.clear()
        self._masks.clear()

    def fingerprint(self) -> dict:
        return {"files": [f.name for f in self.files], "n_tokens": self.n_tokens}


# ---------------------------------------------------------------------------------------------
# Deterministic shuffling without a permutation table (an epoch of fineweb at T=1024 has ~10 M
# windows; every rank would otherwise hold the same 80 MB array).

_MASK64 = (1 << 64) - 1


def _hash64(*values: int) -> int:
    """splitmix64 over a few integers: a stable hash, independent of Python's hash seed."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (v & _MASK64)) * 0xBF58476D1CE4E5B9 & _MASK64
        h = (h ^ (h >> 27)) * 0x94D049BB133111EB & _MASK64
        h ^= h >> 31
    return h


def _permute(i: int, n: int, key: int) -> int:
    """Position ``i`` of a pseudo-random permutation of range(n), keyed by ``key``.

    A four-round Feistel network on the smallest even number of bits that covers ``n`` is a
    bijection of [0, 2**bits); cycle-walking (re-applying it until the value is below ``n``)
    turns it into a bijection of [0, n). Since 2**bits < 4n, that takes under four steps on average.
    """
    if n <= 1:
        return 0
    bits = max(2, (n - 1).bit_length())
    bits += bits % 2
    half = bits // 2
    low = (1 << half) - 1
    round_keys = [_hash64(key, r) for r in range(4)]
    x = i
    while True:
        left, right = x >> half, x & low
        for rk in round_keys:
            left, right = right, left ^ (_hash64(rk, right) & low)
        x = (left << half) | right
        if x < n:
            return x


# ---------------------------------------------------------------------------------------------
# Loaders


def _to_batch(
    tokens: np.ndarray, masks: np.ndarray | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T+1) windows → x, y (B, T) int64; masked-out targets in y become -1."""
    x = torch.from_numpy(np.ascontiguousarray(tokens[:, :-1]))
    y_np = np.ascontiguousarray(tokens[:, 1:])
    if masks is not None:
        y_np[masks[:, 1:] == 0] = -1
    y = torch.from_numpy(y_np)
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(
            device, non_blocking=True
        )
    return x.to(device), y.to(device)


def _check_args(batch_size: int, seq_len: int, rank: int, world_size: int, loss_mask: str) -> None:
    if batch_size < 1 or seq_len < 1:
        raise ValueError(f"batch_size and seq_len must be positive, got {batch_size}, {seq_len}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside 0..{world_size - 1} (world_size {world_size})")
    if loss_mask not in ("assistant", "all"):
        raise ValueError(f"loss_mask must be 'assistant' or 'all', got {loss_mask!r}")


def _check_size(split: _Split, name: str, windows_needed: int, per_step: str) -> None:
    if split.n_windows < windows_needed:
        need = windows_needed * split.seq_len + 1
        raise ValueError(
            f"{split.describe()}: the {name} split holds {split.n_tokens:,} tokens, but one step "
            f"({per_step}) needs at least {need:,}; use a smaller batch_size or seq_len, fewer "
            "ranks, or more data"
        )


def _claim(epoch: int, position: int, n: int, n_windows: int) -> tuple[int, int]:
    """Where a block of ``n`` windows starts: here, or at the next epoch's start if it won't fit.

    A step never spans two epochs (the few windows left at an epoch's end are skipped, like
    drop_last), so no window is read twice in one step, whatever the shuffle.
    """
    return (epoch + 1, 0) if position + n > n_windows else (epoch, position)


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
        _check_args(batch_size, seq_len, rank, world_size, loss_mask)
        self.split_name, self.batch_size, self.seq_len = split, batch_size, seq_len
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.device = torch.device(device)
        self.shuffle = (split == "train") if shuffle is None else shuffle
        self.split = _Split(
            _files_for(data, split), seq_len, loss_mask == "assistant", vocab_size, mmap
        )
        per_step = f"{world_size} rank(s) x {batch_size} sequences x {seq_len}+1 tokens"
        _check_size(self.split, split, batch_size * world_size, per_step)
        self.epoch, self.position = 0, 0  # next window: number `position` of epoch `epoch`
        self._key = _hash64(seed, 0)

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
        self.epoch, self.position = _claim(self.epoch, self.position, rows, self.split.n_windows)
        positions = self.position + self.rank * B + np.arange(B)
        starts = self.split.window_starts(self.epoch, positions, self.shuffle, self._key)
        tokens, masks = self.split.read_windows(starts)
        self.position += rows
        return _to_batch(tokens, masks, self.device)

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
        _check_state(state, self.state_dict(), keys)
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def close(self) -> None:
        self.split.close()


def _check_state(state: dict, mine: dict, keys: Sequence[str]) -> None:
    for key in keys:
        if state.get(key) != mine.get(key):
            theirs, ours = state.get(key), mine.get(key)
            if isinstance(theirs, list) and isinstance(ours, list) and len(theirs) > 4:
                theirs, ours = f"{len(theirs)} files", f"{len(ours)} files"
            raise ValueError(
                f"loader state does not fit this loader: {key} was {theirs!r}, is now {ours!r}; "
                "resume with the same data and settings, or start the data from the beginning"
            )


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
