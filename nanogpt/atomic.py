"""Atomic writes: a reader sees the old file or the new one, never half of either.

Every file the project writes for someone else to read (checkpoints, results rows and tables,
fits, token shards, meta.json, figures) goes through here, path first in every function:

* :func:`write_text`, :func:`write_bytes`, :func:`write_json`, :func:`torch_save`;
* :func:`atomic_open` for a writer that wants a file object (token shards);
* :func:`atomic_path` for a writer that wants a path to write to (``fig.savefig``,
  ``DataFrame.to_parquet``).

The recipe is the same for all of them: write to a temporary name in the target's directory (a
rename is atomic only within one file system), flush and fsync it (so the rename cannot reach
the disk before the data), ``os.replace`` it over the target, then fsync the directory (so the
rename itself survives a crash). If anything fails the temporary file is removed and the old
file, if there was one, is left as it was. Temporary names are ``.<name>.tmp-<pid>-<random>``:
hidden, and never matched by a reader's glob for the real files.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


def temp_name(path: str | os.PathLike) -> Path:
    """A fresh temporary path beside ``path`` (same directory, so the rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def _fsync_dir(directory: Path) -> None:
    # Makes the rename durable. Not every platform or file system lets a directory be opened
    # for fsync; the rename is still atomic there, only its durability is left to the OS.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new contents to; on a clean exit it replaces
    ``path``, on an exception it is removed and ``path`` is untouched.

    The writer must create the file at the yielded path (e.g. ``fig.savefig(tmp)``)."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"nothing was written to {tmp} (the new contents of {path})")
        _fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike, mode: str = "w", encoding: str | None = None
) -> Iterator[IO[Any]]:
    """``open(path, mode)`` that writes a temporary file and renames it into place on a clean
    exit. ``mode`` is ``"w"`` (text, UTF-8 unless ``encoding`` says otherwise) or ``"wb"``."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes a whole new file: mode 'w' or 'wb', not {mode!r}")
    if mode == "w" and encoding is None:
        encoding = "utf-8"
    with atomic_path(path) as tmp, open(tmp, mode, encoding=encoding) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)
    return Path(path)


def write_json(
    path: str | os.PathLike,
    obj: Any,
    *,
    indent: int | None = 2,
    sort_keys: bool = False,
    allow_nan: bool = True,
    default: Callable[[Any], Any] | None = None,
) -> Path:
    """Write ``obj`` as JSON (and a final newline) to ``path`` atomically; returns the path.

    ``allow_nan=True`` (Python's default) writes NaN and infinities as the bare words ``NaN``
    and ``Infinity``, which Python's json reads back but strict JSON parsers refuse; files meant
    for other tools pass ``allow_nan=False``, which raises ``ValueError`` on a non-finite float
    before anything is written. ``default`` turns other objects into JSON (``str`` for paths).
    """
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=allow_nan, default=default)
    return write_text(path, text + "\n")


def torch_save(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save(obj, path)`` atomically; returns the path."""
    import torch  # here, so that the JSON and text writers do not import torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
    return Path(path)
