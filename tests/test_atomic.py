"""nanogpt.atomic: contents round-trip, a failed write leaves the old file and no temporary."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from nanogpt import atomic


def _only(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_round_trips(tmp_path: Path) -> None:
    assert atomic.write_text(tmp_path / "a.txt", "héllo\n").read_text("utf-8") == "héllo\n"
    assert atomic.write_bytes(tmp_path / "b.bin", b"\x00\xff").read_bytes() == b"\x00\xff"
    obj = {"b": [1, 2.5, None], "a": "x"}
    path = atomic.write_json(tmp_path / "c.json", obj, sort_keys=True)
    assert json.loads(path.read_text()) == obj and path.read_text().endswith("\n")
    assert path.read_text().index('"a"') < path.read_text().index('"b"')
    state = {"w": torch.arange(6.0).view(2, 3), "step": 7}
    loaded = torch.load(atomic.torch_save(tmp_path / "d.pt", state), weights_only=True)
    assert torch.equal(loaded["w"], state["w"]) and loaded["step"] == 7
    with atomic.atomic_path(tmp_path / "e.txt") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".e.txt.tmp-")
        tmp.write_text("via a path")
    assert (tmp_path / "e.txt").read_text() == "via a path"
    assert _only(tmp_path) == ["a.txt", "b.bin", "c.json", "d.pt", "e.txt"]  # no temporaries


def test_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    atomic.write_json(path, {"v": 1})
    atomic.write_json(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 2} and _only(tmp_path) == ["x.json"]


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("cannot pickle this")


@pytest.mark.parametrize(
    "write",
    [
        lambda p: atomic.write_json(p, {"v": object()}),  # not JSON-serialisable
        lambda p: atomic.write_json(p, {"loss": math.nan}, allow_nan=False),
        lambda p: atomic.torch_save(p, {"v": Unpicklable()}),
        lambda p: atomic.write_text(p, b"bytes, not text"),  # type: ignore[arg-type]
    ],
    ids=["json-type", "json-nan-strict", "torch", "text-type"],
)
def test_a_failed_write_keeps_the_old_file(tmp_path: Path, write) -> None:
    path = tmp_path / "keep.dat"
    path.write_text("old contents")
    with pytest.raises((TypeError, ValueError, RuntimeError)):
        write(path)
    assert path.read_text() == "old contents"
    assert _only(tmp_path) == ["keep.dat"]  # the temporary file is gone


def test_an_error_mid_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "shard.bin"
    path.write_bytes(b"old")
    with pytest.raises(OSError, match="disk full"):
        with atomic.atomic_open(path, "wb") as f:
            f.write(b"half of the new")
            raise OSError("disk full")
    assert path.read_bytes() == b"old" and _only(tmp_path) == ["shard.bin"]
    with pytest.raises(FileNotFoundError, match="nothing was written"):
        with atomic.atomic_path(path):
            pass  # a writer that wrote nothing must not leave path as it was silently
    assert path.read_bytes() == b"old" and _only(tmp_path) == ["shard.bin"]


def test_nan_in_json(tmp_path: Path) -> None:
    """Lenient by default (Python reads NaN back: checkpoints and summaries of diverged runs);
    strict on request (fits.json, for other tools), with the error before anything is written."""
    path = atomic.write_json(tmp_path / "s.json", {"loss": math.nan, "inf": math.inf})
    back = json.loads(path.read_text())
    assert math.isnan(back["loss"]) and back["inf"] == math.inf
    with pytest.raises(ValueError, match="JSON compliant"):
        atomic.write_json(tmp_path / "f.json", {"loss": math.nan}, allow_nan=False)
    assert not (tmp_path / "f.json").exists() and _only(tmp_path) == ["s.json"]


def test_default_turns_paths_into_strings(tmp_path: Path) -> None:
    path = atomic.write_json(tmp_path / "m.json", {"dir": tmp_path}, default=str)
    assert json.loads(path.read_text()) == {"dir": str(tmp_path)}


def test_bad_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode 'w' or 'wb'"):
        with atomic.atomic_open(tmp_path / "x", "a"):
            pass
