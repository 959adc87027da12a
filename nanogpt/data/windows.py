"""A split read as one long sequence cut into windows, the deterministic shuffle of those
windows, and the checks and conversions that both loaders (``loader.DataLoader`` and
``multiplex.MultiplexLoader``) share.

A split's shards are concatenated in order and cut into windows of ``seq_len + 1`` tokens that
overlap by one token, so ``x`` and ``y`` come from one window.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from nanogpt.data.format import (
    HEADER_BYTES,
    MAGIC,
    MASK_DTYPE,
    MASK_MAGIC,
    TOKEN_DTYPE,
    TokenFileError,
    check_token_ids,
    mask_path,
    memmap_payload,
    read_header,
)
from nanogpt.data.paths import redo_hint

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
            self.array = memmap_payload(path, dtype, count, insist=bool(mmap))
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
                f"{self.path}: the file shrank while being read; {redo_hint(self.path)}"
            )
        return np.frombuffer(buf, dtype=self.dtype)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.array = None


class TokenSplit:
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
        self.counts = [read_header(f, MAGIC) for f in files]
        self.starts = np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)])
        self.n_tokens = int(self.starts[-1])
        self.n_windows = max(0, (self.n_tokens - 1) // seq_len)
        with_mask = [mask_path(f).exists() for f in files]
        if any(with_mask) and not all(with_mask):
            missing = files[with_mask.index(False)]
            raise TokenFileError(
                f"{missing}: other files of this split have a .mask file but this one has none; "
                f"{redo_hint(missing)}"
            )
        self.has_mask = all(with_mask)
        self.use_mask = use_mask and self.has_mask
        if self.use_mask:
            for f, n in zip(files, self.counts):
                if (m := read_header(mask_path(f), MASK_MAGIC)) != n:
                    raise TokenFileError(
                        f"{mask_path(f)}: the mask has {m:,} entries but {f.name} holds {n:,} "
                        f"tokens; {redo_hint(f)}"
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
            dtype = MASK_DTYPE if masks else TOKEN_DTYPE
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
        epoch_key = hash64(key, epoch)
        return [permute(int(p), self.n_windows, epoch_key) * self.seq_len for p in positions]

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
            check_token_ids(self.files[i], tokens[b, t : t + 1], self.vocab_size, offset)
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


def hash64(*values: int) -> int:
    """splitmix64 over a few integers: a stable hash, independent of Python's hash seed."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (v & _MASK64)) * 0xBF58476D1CE4E5B9 & _MASK64
        h = (h ^ (h >> 27)) * 0x94D049BB133111EB & _MASK64
        h ^= h >> 31
    return h


def permute(i: int, n: int, key: int) -> int:
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
    round_keys = [hash64(key, r) for r in range(4)]
    x = i
    while True:
        left, right = x >> half, x & low
        for rk in round_keys:
            left, right = right, left ^ (hash64(rk, right) & low)
        x = (left << half) | right
        if x < n:
            return x


# ---------------------------------------------------------------------------------------------
# Loaders


def to_batch(
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


def check_loader_args(
    batch_size: int, seq_len: int, rank: int, world_size: int, loss_mask: str
) -> None:
    if batch_size < 1 or seq_len < 1:
        raise ValueError(f"batch_size and seq_len must be positive, got {batch_size}, {seq_len}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside 0..{world_size - 1} (world_size {world_size})")
    if loss_mask not in ("assistant", "all"):
        raise ValueError(f"loss_mask must be 'assistant' or 'all', got {loss_mask!r}")


def check_split_size(split: TokenSplit, name: str, windows_needed: int, per_step: str) -> None:
    if split.n_windows < windows_needed:
        need = windows_needed * split.seq_len + 1
        raise ValueError(
            f"{split.describe()}: the {name} split holds {split.n_tokens:,} tokens, but one step "
            f"({per_step}) needs at least {need:,}; use a smaller batch_size or seq_len, fewer "
            "ranks, or more data"
        )


def claim_block(epoch: int, position: int, n: int, n_windows: int) -> tuple[int, int]:
    """Where a block of ``n`` windows starts: here, or at the next epoch's start if it won't fit.

    A step never spans two epochs (the few windows left at an epoch's end are skipped, like
    drop_last), so no window is read twice in one step, whatever the shuffle.
    """
    return (epoch + 1, 0) if position + n > n_windows else (epoch, position)


def check_loader_state(state: dict, mine: dict, keys: Sequence[str]) -> None:
    for key in keys:
        if state.get(key) != mine.get(key):
            theirs, ours = state.get(key), mine.get(key)
            if isinstance(theirs, list) and isinstance(ours, list) and len(theirs) > 4:
                theirs, ours = f"{len(theirs)} files", f"{len(ours)} files"
            raise ValueError(
                f"loader state does not fit this loader: {key} was {theirs!r}, is now {ours!r}; "
                "resume with the same data and settings, or start the data from the beginning"
            )
