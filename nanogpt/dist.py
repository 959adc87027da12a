"""The one place that knows rank, world size and device.

Everything distributed in nanogpt asks this module; the model never does. The one other
module that calls torch.distributed is nanogpt/optim/collectives.py, the optimizer's own
collectives (tests/test_structure.py keeps it that way). A process group is
created only if none exists yet: torchrun leaves the env:// variables for us to init from, and
Ray Train's TorchTrainer has already initialised one by the time a worker calls `train()`.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    owns_process_group: bool  # True when we created the group (and so must destroy it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_initialized() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized()


def get_rank() -> int:
    return torch_dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    return torch_dist.get_world_size() if is_initialized() else 1


def pick_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    """`auto` is the GPU of this local rank when CUDA is present, else the CPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for, but torch sees no CUDA GPU here")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if requested.startswith("cuda:") or requested in ("cpu", "mps"):
        return torch.device(requested)
    raise ValueError(f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N")


def init(device: str = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Join (or create) the process group if this is a multi-process run; pick the device.

    One process with no torchrun variables: no process group at all, and no communication.
    """
    owns = False
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dev = pick_device(device, local_rank)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        torch_dist.init_process_group(
            backend=backend, timeout=datetime.timedelta(seconds=timeout_s)
        )
        owns = True
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return DistInfo(get_rank(), local_rank, get_world_size(), dev, owns)


def teardown(info: DistInfo) -> None:
    """Destroy the process group only if `init` created it (Ray owns its own)."""
    if info.owns_process_group and is_initialized():
        torch_dist.destroy_process_group()


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; plain fp32 elsewhere (CPU bf16 matmuls are slow and inexact)."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over the ranks in place and return it; one process: ``t`` unchanged."""
    if is_initialized():
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)
    return t


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    """The largest ``t`` over the ranks, in place, and return it (the benchmarks' slowest rank);
    one process: ``t`` unchanged."""
    if is_initialized():
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
    return t


def barrier() -> None:
    if is_initialized():
        torch_dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` as rank ``src`` has it, on every rank (pickled); one process: ``obj`` itself."""
    if not is_initialized():
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=src)
    return box[0]
