"""Communication: the buckets that are its unit, and the collectives that move them, with the
probe that tells whether a gloo build has reduce-scatter / all-gather into one tensor (MuonAdamW
falls back to all-reduce / a list all-gather where it has not).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as torch_dist

# AdamW tensors smaller than this are concatenated into one flat bucket per group, so that a
# model with many gains and biases does not pay one collective each.
_SMALL_PARAM_NUMEL = 1 << 16


# ---------------------------------------------------------------------------------------------
# Buckets: the unit of communication. A Muon bucket is a stack of same-shape matrices of one
# group; an AdamW bucket is one flat run of elements (one big tensor, or a group's small ones).


@dataclass
class _MuonBucket:
    group_index: int
    params: list[torch.Tensor]
    shape: tuple[int, int]
    per_rank: int  # k: matrices each rank owns, after padding the stack to world_size * k
    owned_start: int  # index of this rank's first matrix in the stack
    owned_count: int  # real matrices this rank owns (< k on the last ranks when padded)
    scale: float
    momentum_buffer: torch.Tensor = field(default=None)  # (owned_count, out, in)

    def layout(self) -> dict[str, Any]:
        return {
            "kind": "muon",
            "group_index": self.group_index,
            "shape": list(self.shape),
            "num_params": len(self.params),
            "owned": [self.owned_start, self.owned_count],
        }

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"momentum_buffer": self.momentum_buffer}


@dataclass
class _FlatBucket:
    group_index: int
    params: list[torch.Tensor]
    numel: int  # real elements (before padding)
    per_rank: int  # elements each rank owns, after padding to world_size * per_rank
    owned_start: int
    owned_count: int  # real elements this rank owns
    exp_avg: torch.Tensor = field(default=None)  # (owned_count,)
    exp_avg_sq: torch.Tensor = field(default=None)
    step_tensor: torch.Tensor = field(default=None)  # 0-dim fp32: the fused kernel reads it

    def layout(self) -> dict[str, Any]:
        return {
            "kind": "adamw",
            "group_index": self.group_index,
            "shapes": [list(p.shape) for p in self.params],
            "owned": [self.owned_start, self.owned_count],
        }

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}


def _reduce_scatter_fn():
    # torch 2.13 renamed reduce_scatter_tensor / all_gather_into_tensor to *_single and deprecated
    # the old names; torch 2.11 (the GPU machine) only has the old ones. Same signatures.
    return getattr(torch_dist, "reduce_scatter_single", None) or torch_dist.reduce_scatter_tensor


def _all_gather_fn():
    return getattr(torch_dist, "all_gather_single", None) or torch_dist.all_gather_into_tensor


def _probe_collectives(
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
        _reduce_scatter_fn()(probe[:1].clone(), probe, group=group)
        has_rs = True
    except (RuntimeError, NotImplementedError, ValueError):
        has_rs = False
    try:
        _all_gather_fn()(probe.clone(), probe[:1].clone(), group=group)
        has_ag = True
    except (RuntimeError, NotImplementedError, ValueError):
        has_ag = False
    return has_rs, has_ag
