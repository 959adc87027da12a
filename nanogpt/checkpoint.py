"""Checkpoints: one directory per step, written atomically, the latest k kept.

Layout of ``<run_dir>/step_000500/``:

* ``model.pt`` — state dict of the uncompiled model (rank 0 writes it);
* ``optim_rank{r}.pt`` — rank r's optimizer shard, plus its RNG state;
* ``meta.json`` — config, step, tokens, data-loader state, world size, versions, git revision.

Every rank writes into ``step_000500.tmp/``; once all are done rank 0 writes ``meta.json`` last
and renames the folder. A directory named ``step_*`` (no ``.tmp``) with a ``meta.json`` is
therefore always complete; a crash leaves only a ``.tmp`` folder, which the next save removes.
The same directory is what a Ray trial hands to ``ray.train.Checkpoint.from_directory``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import torch

from nanogpt import atomic, dist

_STEP_DIR = re.compile(r"^step_(\d+)$")
MODEL_FILE = "model.pt"
META_FILE = "meta.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, or from a different model or world size."""


def git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str | None]:
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "git": git_revision(),
    }


def step_dir_name(step: int) -> str:
    return f"step_{step:06d}"


def save(
    run_dir: str | Path,
    step: int,
    model: torch.nn.Module,
    optimizer: Any,
    meta: dict[str, Any],
    keep: int = 3,
) -> Path:
    """Save a checkpoint from every rank (call on all ranks); returns the final directory."""
    run_dir = Path(run_dir)
    final = run_dir / step_dir_name(step)
    tmp = run_dir / (step_dir_name(step) + ".tmp")
    rank = dist.get_rank()
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)  # left by a crash mid-save
        tmp.mkdir()
    dist.barrier()
    per_rank = {"optimizer": optimizer.state_dict(), "rng_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        per_rank["rng_cuda"] = torch.cuda.get_rng_state()
    atomic.torch_save(tmp / f"optim_rank{rank}.pt", per_rank)
    if rank == 0:
        atomic.torch_save(tmp / MODEL_FILE, model.state_dict())
    dist.barrier()
    if rank == 0:
        meta = {**meta, "step": step, "world_size": dist.get_world_size(), "versions": versions()}
        atomic.write_json(tmp / META_FILE, meta, sort_keys=True, default=str)
        if final.exists():
            shutil.rmtree(final)  # the same step saved again (e.g. after a resume)
        os.replace(tmp, final)
        prune(run_dir, keep)
    dist.barrier()
    return final


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints in ``run_dir``, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for child in run_dir.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / META_FILE).is_file():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def find_latest(run_dir: str | Path) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def prune(run_dir: str | Path, keep: int) -> None:
    if keep <= 0:
        return
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def read_meta(ckpt_dir: str | Path) -> dict[str, Any]:
    ckpt_dir = Path(ckpt_dir)
    meta_path = ckpt_dir / META_FILE
    if not meta_path.is_file():
        raise CheckpointError(
            f"{ckpt_dir} is not a complete checkpoint (no {META_FILE}); "
            "point at a step_NNNNNN directory written by nanogpt"
        )
    try:
        return json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(
            f"{meta_path} is not valid JSON ({e}); the checkpoint is damaged"
        ) from e


SHAPE_KEYS = ("n_layer", "n_head", "n_embd", "vocab_size", "tie_embeddings")


class TokenizerMismatchError(CheckpointError):
    """A checkpoint trained with one tokenizer, used with data made by another."""


def check_compatible(
    meta: dict[str, Any],
    model_config: dict[str, Any],
    where: Path,
    tokenizer: str | None = None,
) -> None:
    """A checkpoint of another tokenizer, shape or vocabulary is an error that names both."""
    saved_tokenizer = meta.get("tokenizer", "gpt2")  # checkpoints before byte-level data: GPT-2
    if tokenizer is not None and saved_tokenizer != tokenizer:
        raise TokenizerMismatchError(
            f"{where} was trained on {saved_tokenizer!r} tokens and this run's data is "
            f"{tokenizer!r} tokens (its meta.json says so); use data prepared with "
            f"--tokenizer {saved_tokenizer}, or a checkpoint trained on {tokenizer!r} data"
        )
    saved = meta.get("model_config", {})
    diffs = [
        f"{k}: checkpoint {saved.get(k)!r}, this run {model_config.get(k)!r}"
        for k in SHAPE_KEYS
        if saved.get(k) != model_config.get(k)
    ]
    if diffs:
        raise CheckpointError(
            f"{where} holds a different model ({'; '.join(diffs)}); use a checkpoint of this "
            "shape, or set --depth / model flags to match it"
        )


def load_model(
    ckpt_dir: str | Path,
    model: torch.nn.Module,
    model_config: dict[str, Any],
    tokenizer: str | None = None,
) -> dict:
    """Load weights into ``model`` after checking the tokenizer and the shape; returns the
    checkpoint's meta."""
    ckpt_dir = Path(ckpt_dir)
    meta = read_meta(ckpt_dir)
    check_compatible(meta, model_config, ckpt_dir, tokenizer)
    weights = ckpt_dir / MODEL_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing; the checkpoint is incomplete")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return meta


def load_rank_state(ckpt_dir: str | Path, optimizer: Any) -> None:
    """Restore this rank's optimizer shard and RNG state."""
    ckpt_dir = Path(ckpt_dir)
    meta = read_meta(ckpt_dir)
    world = dist.get_world_size()
    if meta.get("world_size") != world:
        raise CheckpointError(
            f"{ckpt_dir} was written by {meta.get('world_size')} ranks and this run has {world}; "
            "optimizer shards only resume on the same number of ranks"
        )
    path = ckpt_dir / f"optim_rank{dist.get_rank()}.pt"
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; the checkpoint is incomplete")
    state = torch.load(path, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng_cpu"])
    if "rng_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["rng_cuda"])
