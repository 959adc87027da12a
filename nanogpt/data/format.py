"""The token file format: write, read and validate token files and their loss masks.

File format (llm.c's and modded-nanogpt's, so their shards load as they are): little-endian, a
header of 256 int32 — [0] magic 20240520, [1] version 1, [2] number of tokens — then the tokens as
uint16. A chat dataset adds a parallel loss-mask file with the same stem and the extension
``.mask``: the same header layout with magic 20240521, then one uint8 per token (1 = train on it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nanogpt.atomic import atomic_open
from nanogpt.data.paths import redo_hint
from nanogpt.tokenizer import N_VOCAB

MAGIC = 20240520
MASK_MAGIC = 20240521
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4

TOKEN_DTYPE = np.dtype("<u2")
MASK_DTYPE = np.dtype("u1")
_DTYPES = {MAGIC: TOKEN_DTYPE, MASK_MAGIC: MASK_DTYPE}
_KIND = {MAGIC: "token file", MASK_MAGIC: "loss-mask file"}


class TokenFileError(ValueError):
    """A token or loss-mask file is corrupt, truncated, or does not match its partner."""


def mask_path(token_path: str | Path) -> Path:
    """The loss-mask file that goes with a token file."""
    return Path(token_path).with_suffix(".mask")


# ---------------------------------------------------------------------------------------------
# Writing


def _write_array(path: Path, magic: int, array: np.ndarray) -> None:
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = (magic, VERSION, len(array))
    with atomic_open(path, "wb") as f:
        f.write(header.tobytes())
        array.astype(_DTYPES[magic], copy=False).tofile(f)


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


def read_header(path: Path, magic: int) -> int:
    """Validate a file's header and size; return the number of items it holds."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such {_KIND[magic]}; {redo_hint(path)}") from None
    if len(raw) < HEADER_BYTES:
        raise TokenFileError(
            f"{path}: {size:,} bytes, shorter than the {HEADER_BYTES:,}-byte header; the file is "
            f"truncated or not a {_KIND[magic]}; {redo_hint(path)}"
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
            f"{path}: magic number {int(header[0])} is not {magic}: {what}; {redo_hint(path)}"
        )
    if int(header[1]) != VERSION:
        extra = (
            " (version 2 is llm.c's uint32 format for vocabularies over 65,536, e.g. Llama 3)"
            if int(header[1]) == 2
            else ""
        )
        raise TokenFileError(
            f"{path}: format version {int(header[1])}{extra}; this reader knows version {VERSION} "
            f"(uint16 tokens); {redo_hint(path)}"
        )
    count = int(header[2])
    itemsize = _DTYPES[magic].itemsize
    held, stray = divmod(size - HEADER_BYTES, itemsize)
    if count < 0 or held != count or stray:
        unit = "tokens" if magic == MAGIC else "mask entries"
        raise TokenFileError(
            f"{path}: header says {count:,} {unit} but the file holds {held:,}"
            + (f" and {stray} stray byte(s)" if stray else "")
            + f"; the file is truncated or corrupt; {redo_hint(path)}"
        )
    return count


def memmap_payload(path: Path, dtype: np.dtype, count: int, insist: bool) -> np.ndarray | None:
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
    if (
        mmap is not False
        and (array := memmap_payload(path, dtype, count, insist=bool(mmap))) is not None
    ):
        return array
    with open(path, "rb") as f:
        f.seek(HEADER_BYTES)
        return np.fromfile(f, dtype=dtype, count=count)


def check_token_ids(path: Path, tokens: np.ndarray, vocab_size: int, offset: int = 0) -> None:
    if len(tokens) and int(tokens.max()) >= vocab_size:
        pos = int(np.argmax(tokens >= vocab_size))
        raise TokenFileError(
            f"{path}: token id {int(tokens[pos])} at position {offset + pos:,} is outside the "
            f"vocabulary (0..{vocab_size - 1}); the file is corrupt or was made with another "
            f"tokenizer; {redo_hint(path)}"
        )


def read_tokens(
    path: str | Path, vocab_size: int | None = N_VOCAB, mmap: bool | None = None
) -> np.ndarray:
    """The tokens of a validated token file, as a read-only uint16 array.

    ``mmap``: None maps the file and falls back to a plain read where mapping is unavailable;
    True insists on mapping; False reads the file into memory. ``vocab_size=None`` skips the
    check that every id is in range (which reads the whole file once).
    """
    path = Path(path)
    tokens = _open_array(path, _DTYPES[MAGIC], read_header(path, MAGIC), mmap)
    if vocab_size is not None:
        check_token_ids(path, tokens, vocab_size)
    return tokens


def read_mask(path: str | Path, mmap: bool | None = None) -> np.ndarray:
    """The validated loss mask of a token file (``path`` may name the ``.bin`` or the ``.mask``)."""
    token_file, mfile = Path(path).with_suffix(".bin"), mask_path(path)
    count = read_header(mfile, MASK_MAGIC)
    if token_file.exists() and (n := read_header(token_file, MAGIC)) != count:
        raise TokenFileError(
            f"{mfile}: the mask has {count:,} entries but {token_file.name} holds {n:,} tokens; "
            f"they were not written together; {redo_hint(mfile)}"
        )
    return _open_array(mfile, _DTYPES[MASK_MAGIC], count, mmap)
