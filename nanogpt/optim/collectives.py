"""Communication: the collectives that move the optimizer's buckets, and the probe that tells
whether a gloo build has reduce-scatter / all-gather into one tensor (where it has not, the
optimizer falls back to all-reduce / a list all-gather).

The only module of nanogpt.optim that talks to torch.distributed.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as torch_dist


def world_and_rank(process_group: Any = None) -> tuple[int, int]:
    """(world size, rank) in ``process_group``; (1, 0) without an initialised process group."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        return torch_dist.get_world_size(process_group), torch_dist.get_rank(process_group)
    return 1, 0


def reduce_scatter_fn():
    """Reduce-scatter from one tensor into one tensor.

    torch 2.13 renamed reduce_scatter_tensor / all_gather_into_tensor to *_single and deprecated
    the old names; torch 2.11 (the GPU machine) only has the old ones. Same signatures.
    """
    return getattr(torch_dist, "reduce_scatter_single", None) or torch_dist.reduce_scatter_tensor


def all_gather_fn():
    """All-gather from one tensor into one tensor (see ``reduce_scatter_fn`` for the names)."""
    return getattr(torch_dist, "all_gather_single", None) or torch_dist.all_gather_into_tensor


def all_reduce_async(tensor: torch.Tensor, group: Any) -> Any:
    """Sum ``tensor`` over the group in place; returns the work handle to wait on."""
    return torch_dist.all_reduce(tensor, group=group, async_op=True)


def all_gather_list_async(gathered: torch.Tensor, values: torch.Tensor, group: Any) -> Any:
    """All-gather ``values`` into the equal chunks of ``gathered`` (one per rank), for backends
    without an all-gather into one tensor."""
    world = torch_dist.get_world_size(group)
    return torch_dist.all_gather(list(gathered.chunk(world)), values, group=group, async_op=True)


def probe_collectives(
    world_size: int, process_group: Any, device: torch.device
) -> tuple[bool, bool]:
    """Whether this backend has reduce-scatter / all-gather into one tensor.

    NCCL has both. Gloo gained them late (torch 2.13's gloo has both; older ones raise), so on
    gloo we try once with a tiny tensor; every rank runs the same build, so all agree.
    """
    if world_size == 1:
        return False, False
    if torch_dist.get_backend(process_group) != "gloo":
        return True, True
    world, group = world_size, process_group
    probe = torch.zeros(world, device=device)
    try:
        reduce_scatter_fn()(probe[:1].clone(), probe, group=group)
        has_rs = True
    except (RuntimeError, NotImplementedError, ValueError):
        has_rs = False
    try:
        all_gather_fn()(probe.clone(), probe[:1].clone(), group=group)
        has_ag = True
    except (RuntimeError, NotImplementedError, ValueError):
        has_ag = False
    return has_rs, has_ag
