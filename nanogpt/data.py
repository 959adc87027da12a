"""Token files, and the loaders that turn them into training batches.

File format (llm.c's and modded-nanogpt's, so their shards load as they are): little-endian, a
header of 256 int32 — [0] magic 20240520, [1] version 1, [2] number of tokens — then the tokens as
uint16. A chat dataset adds a parallel loss-mask file with the same stem and the extension
``.mask``: the same header layout with magic 20240521, then one uint8 per token (1 = train on it).

A prepared dataset is a directory ``<name>_train_000000.bin, ..., <name>_val_000000.bin`` (plus
``.mask`` files) and a ``meta.json`` written last, so its presence means "complete".

Batches: a split is read as one sequence (its shards concatenated in order) cut into windows of
``seq_len + 1`` tokens that overlap by one token, so ``x`` and ``y`` come from one window. Global
window number ``g = consumed + rank * B + b`` goes to row ``b`` of ``rank``; ``consumed`` grows by
``B * world_size`` per step, so ranks never read the same window in a step, and the loader state
is the same on every rank. Each epoch visits every window once, in an order shuffled from the
seed (train) or in file order (val).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

MAGIC = 20240520
MASK_MAGIC = 20240521
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
VOCAB_SIZE = 50259  # GPT-2's 50,257 + <|im_start|> + <|im_end|> (nanogpt.tokenizer.N_VOCAB)
DATASETS = ("shakespeare", "fineweb_edu", "openwebtext", "task_mixture", "text")
REPO_DATA_DIR = Path(__file__).resolve().parents[1] / "data"

_DTYPES = {MAGIC: np.dtype("<u2"), MASK_MAGIC: np.dtype("u1")}
_KIND = {MAGIC: "token file", MASK_MAGIC: "loss-mask file"}


class TokenFileError(ValueError):
    """A token or loss-mask file is corrupt, truncated, or does not match its partner."""


# ---------------------------------------------------------------------------------------------
# Where datasets live


def data_root() -> Path:
    """Root of named datasets: ``$NANOGPT_DATA_DIR`` if set, else ``data/`` in the repository."""
    env = os.environ.get("NANOGPT_DATA_DIR")
    return Path(env).expanduser() if env else REPO_DATA_DIR


def prepare_command(data_dir: str | Path) -> str:
    """The command that (re)creates ``data_dir``, for error messages."""
    data_dir = Path(data_dir)
    name = data_dir.name
    meta = data_dir / "meta.json"
    if meta.is_file():
        try:
            command = json.loads(meta.read_text()).get("command")
            if command:
                return command
        except (OSError, ValueError):
            pass
    if name in DATASETS:
        out = (
            ""
            if data_dir.resolve() == (REPO_DATA_DIR / name).resolve()
            else f" --out-dir {data_dir}"
        )
        return f"python data/{name}/prepare.py{out}"
    return f"python data/text/prepare.py YOUR_FILES --out-dir {data_dir}"


def _redo_hint(path: Path) -> str:
    return f"re-create it: `{prepare_command(path.parent)} --overwrite`"


def resolve_data_dir(name_or_path: str | Path) -> Path:
    """A dataset directory from a name (``"shakespeare"``) or a path.

    A name is looked up under ``$NANOGPT_DATA_DIR`` (default: ``data/`` in the repository). A
    directory without token files raises FileNotFoundError naming the prepare script to run.
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


def count_tokens(data: str | Path | Sequence[str | Path], split: str = "train") -> int:
    """Tokens in a split, from the file headers only (no token is read)."""
    return sum(_read_header(f, MAGIC) for f in _files_for(data, split))


def mask_path(token_path: str | Path) -> Path:
    """The loss-mask file that goes with a token file."""
    return Path(token_path).with_suffix(".mask")


# ---------------------------------------------------------------------------------------------
# Writing


def write_json_atomic(path: str | Path, obj: object) -> None:
    """Write JSON to a temporary name, then rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_array(path: Path, magic: int, array: np.ndarray) -> None:
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = (magic, VERSION, len(array))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(header.tobytes())
            array.astype(_DTYPES[magic], copy=False).tofile(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_tokens(
    path: str | Path,
    tokens: np.ndarray | Sequence[int],
    mask: np.ndarray | Sequence[int] | None = None,
) -> Path:
    """Write a token file (and its ``.mask`` if a mask is given), each atomically.

    The mask is written first, so a token file never exists without the mask it was made with.
    """
    path = Path(path)
    tokens = np.asarray(tokens)
    if tokens.ndim != 1:
        raise ValueError(f"{path}: tokens must be one-dimensional, got shape {tokens.shape}")
    if len(tokens) >= 2**31:
        raise ValueError(f"{path}: {len(tokens):,} tokens do not fit the int32 header; shard it")
    if len(tokens) and (int(tokens.min()) < 0 or int(tokens.max()) > 65535):
        raise ValueError(f"{path}: token ids must be in 0..65535 to fit uint16")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != tokens.shape:
            raise ValueError(f"{path}: mask has shape {mask.shape}, tokens {tokens.shape}")
        _write_array(mask_path(path), MASK_MAGIC, (mask != 0).astype(np.uint8))
    _write_array(path, MAGIC, tokens)
    return path


# ---------------------------------------------------------------------------------------------
# Reading and validating


def _read_header(path: Path, magic: int) -> int:
    """Validate a file's header and size; return the number of items it holds."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such {_KIND[magic]}; {_redo_hint(path)}") from None
    if len(raw) < HEADER_BYTES:
        raise TokenFileError(
            f"{path}: {size:,} bytes, shorter than the {HEADER_BYTES:,}-byte header; the file is "
            f"truncated or not a {_KIND[magic]}; {_redo_hint(path)}"
        )
    header = np.frombuffer(raw, dtype="<i4")
    if int(header[0]) != magic:
        other = next((k for k in _KIND if k != magic), None)
        what = (
            f"it is a {_KIND[other]}, not a {_KIND[magic]}"
            if int(header[0]) == other
            else "not an llm.c/nanogpt token file, or corrupted"
        )
        raise TokenFileError(
            f"{path}: magic number {int(header[0])} is not {magic}: {what}; {_redo_hint(path)}"
        )
    if int(header[1]) != VERSION:
        extra = (
            " (version 2 is llm.c's uint32 format for vocabularies over 65,536, e.g. Llama 3)"
            if int(header[1]) == 2
            else ""
        )
        raise TokenFileError(
            f"{path}: format version {int(header[1])}{extra}; this reader knows version {VERSION} "
            f"(uint16 tokens); {_redo_hint(path)}"
        )
    count = int(header[2])
    itemsize = _DTYPES[magic].itemsize
    held, stray = divmod(size - HEADER_BYTES, itemsize)
    if count < 0 or held != count or stray:
        unit = "tokens" if magic == MAGIC else "mask entries"
        raise TokenFileError(
            f"{path}: header says {count:,} {unit} but the file holds {held:,}"
            + (f" and {stray} stray byte(s)" if stray else "")
            + f"; the file is truncated or corrupt; {_redo_hint(path)}"
        )
    return count


def _memmap(path: Path, dtype: np.dtype, count: int, insist: bool) -> np.ndarray | None:
    """A read-only map of the payload, or None where mapping is unavailable (unless insisted on)."""
    try:
        return np.memmap(path, dtype=dtype, mode="r", offset=HEADER_BYTES, shape=(count,))
    except (OSError, ValueError) as e:
        if insist:
            raise TokenFileError(
                f"{path}: cannot memory-map it ({e}); pass mmap=None or mmap=False to use plain "
                "reads"
            ) from e
        return None


def _open_array(path: Path, dtype: np.dtype, count: int, mmap: bool | None) -> np.ndarray:
    if count == 0:
        return np.zeros(0, dtype=dtype)
    if mmap is not False and (array := _memmap(path, dtype, count, insist=bool(mmap))) is not None:
        return array
    with open(path, "rb") as f:
        f.seek(HEADER_BYTES)
        return np.fromfile(f, dtype=dtype, count=count)


def _check_ids(path: Path, tokens: np.ndarray, vocab_size: int, offset: int = 0) -> None:
    if len(tokens) and int(tokens.max()) >= vocab_size:
        pos = int(np.argmax(tokens >= vocab_size))
        raise TokenFileError(
            f"{path}: token id {int(tokens[pos])} at position {offset + pos:,} is outside the "
            f"vocabulary (0..{vocab_size - 1}); the file is corrupt or was made with another "
            f"tokenizer; {_redo_hint(path)}"
        )


def read_tokens(
    path: str | Path, vocab_size: int | None = VOCAB_SIZE, mmap: bool | None = None
) -> np.ndarray:
    """The tokens of a validated token file, as a read-only uint16 array.

    ``mmap``: None maps the file and falls back to a plain read where mapping is unavailable;
    True insists on mapping; False reads the file into memory. ``vocab_size=None`` skips the
    check that every id is in range (which reads the whole file once).
    """
    path = Path(path)
    tokens = _open_array(path, _DTYPES[MAGIC], _read_header(path, MAGIC), mmap)
    if vocab_size is not None:
        _check_ids(path, tokens, vocab_size)
    return tokens


def read_mask(path: str | Path, mmap: bool | None = None) -> np.ndarray:
    """The validated loss mask of a token file (``path`` may name the ``.bin`` or the ``.mask``)."""
    token_file, mfile = Path(path).with_suffix(".bin"), mask_path(path)
    count = _read_header(mfile, MASK_MAGIC)
    if token_file.exists() and (n := _read_header(token_file, MAGIC)) != count:
        raise TokenFileError(
            f"{mfile}: the mask has {count:,} entries but {token_file.name} holds {n:,} tokens; "
            f"they were not written together; {_redo_hint(mfile)}"
        )
    return _open_array(mfile, _DTYPES[MASK_MAGIC], count, mmap)


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
        vocab_size: int = VOCAB_SIZE,
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
        vocab_size: int = VOCAB_SIZE,
    ) -> None:
        _check_args(batch_size, seq_len, rank, world_size, loss_mask)
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
            _Split(_files_for(data, split), seq_len, loss_mask == "assistant", vocab_size, mmap)
            for data, _ in sources
        ]
        rows = batch_size * world_size
        for src, w in zip(self.sources, self.weights):
            # weighted round robin gives a source at most ceil(w * rows) + 1 rows of a step
            need = min(rows, math.ceil(w * rows) + 1)
            _check_size(src, split, need, f"{need} sequence(s) of {seq_len}+1 tokens from it")
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
        key = _hash64(self.seed, self.steps, 0x6D78)
        return [assign[_permute(j, rows, key)] for j in range(rows)]

    def __iter__(self) -> MultiplexLoader:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        B, T = self.batch_size, self.seq_len
        assign = self._assign()
        for s, src in enumerate(self.sources):
            epoch, position = self.cursors[s]
            self.cursors[s] = list(_claim(epoch, position, assign.count(s), src.n_windows))
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
                self.cursors[s][0], [positions[j]], self.shuffle, _hash64(self.seed, s + 1)
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
        return _to_batch(tokens, masks if any_mask else None, self.device)

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
        _check_state(state, self.state_dict(), keys)
        self.steps, self.rows_done = int(state["steps"]), int(state["rows_done"])
        self.counts = [int(c) for c in state["counts"]]
        self.cursors = [[int(e), int(p)] for e, p in state["cursors"]]

    def close(self) -> None:
        for src in self.sources:
            src.close()


# ---------------------------------------------------------------------------------------------


def ensure_shakespeare(out_dir: str | Path | None = None) -> Path:
    """The embedded default corpus, prepared now if it is not there yet (no network; ~1 s)."""
    out = Path(out_dir) if out_dir is not None else data_root() / "shakespeare"
    if not (out / "meta.json").is_file():
        from nanogpt.prepare import prepare_shakespeare

        prepare_shakespeare(out, num_proc=1, progress=False)
    return out
