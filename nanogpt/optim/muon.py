"""Muon's part of the sharded optimizer: its hyperparameters, the checks of a Muon group, and
the bucket — a stack of same-shape matrices of one group, each rank owning a contiguous block
of it — with its update (momentum, Nesterov, Newton-Schulz, shape scaling, weight decay).

The maths lives in ``newton_schulz``; the order of a step in ``sharded.MuonAdamW.step``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from nanogpt.optim.newton_schulz import (
    bmm_out_dtype_available,
    compiled_muon_direction,
    muon_direction,
    muon_update_scale,
)

if TYPE_CHECKING:
    from nanogpt.optim.sharded import MuonAdamW

MUON_DEFAULTS: dict[str, Any] = {
    "lr": 0.02,
    "weight_decay": 0.0,
    "momentum": 0.95,
    "nesterov": True,
    "ns_steps": 5,
    # "shape": sqrt(max(1, out/in)) (Keller Jordan); "adamw_rms": 0.2 * sqrt(max(out, in))
    # (Moonlight). See `muon_update_scale`.
    "update_scale": "shape",
}


def validate_muon_group(index: int, group: dict[str, Any]) -> None:
    """Reject a Muon group that Muon cannot update, naming the group and what is wrong."""
    for p in group["params"]:
        if p.ndim != 2:
            raise ValueError(
                f"param group {index} is a Muon group but holds a parameter of shape "
                f"{tuple(p.shape)}; Muon takes 2-D weight matrices only, give "
                "vectors, scalars and embeddings to an AdamW group"
            )
    if not 0.0 <= group["momentum"] < 1.0:
        raise ValueError(f"param group {index}: momentum {group['momentum']} not in [0, 1)")
    if int(group["ns_steps"]) < 1:
        raise ValueError(f"param group {index}: ns_steps must be >= 1")
    muon_update_scale((1, 1), group["update_scale"])  # rejects an unknown rule


@dataclass
class MuonBucket:
    """Same-shape matrices of one Muon group, stacked; this rank owns a block of the stack."""

    group_index: int
    params: list[torch.Tensor]
    shape: tuple[int, int]
    per_rank: int  # k: matrices each rank owns, after padding the stack to world_size * k
    owned_start: int  # index of this rank's first matrix in the stack
    owned_count: int  # real matrices this rank owns (< k on the last ranks when padded)
    scale: float
    momentum_buffer: torch.Tensor = field(default=None)  # (owned_count, out, in)

    kind = "muon"

    @classmethod
    def build_all(
        cls, groups: list[dict[str, Any]], world: int, rank: int, device: torch.device
    ) -> list[MuonBucket]:
        """One bucket per (group, shape, dtype) of the Muon groups, in group order."""
        buckets = []
        for index, group in enumerate(groups):
            if group["kind"] != cls.kind:
                continue
            by_shape: dict[tuple, list[torch.Tensor]] = {}
            for p in group["params"]:
                by_shape.setdefault((tuple(p.shape), p.dtype), []).append(p)
            for (shape, dtype), members in by_shape.items():
                per_rank = -(-len(members) // world)  # ceil: zero matrices pad the stack
                start = min(rank * per_rank, len(members))
                count = min(per_rank, len(members) - start)
                bucket = cls(
                    group_index=index,
                    params=members,
                    shape=shape,
                    per_rank=per_rank,
                    owned_start=start,
                    owned_count=count,
                    scale=muon_update_scale(shape, group["update_scale"]),
                )
                bucket.momentum_buffer = torch.zeros((count, *shape), dtype=dtype, device=device)
                buckets.append(bucket)
        return buckets

    def packed_grads(self, world: int) -> torch.Tensor:
        """The local gradients as one (world * per_rank, out, in) stack, zero-padded."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        pad = world * self.per_rank - len(grads)
        packed = torch.stack(grads)  # (n, out, in)
        if pad:
            packed = torch.cat([packed, packed.new_zeros((pad, *self.shape))])
        return packed

    def gathered_shape(self, world: int) -> tuple[int, ...]:
        return (world * self.per_rank, *self.shape)

    def owned_values(self) -> tuple[torch.Tensor, bool]:
        """This rank's block of the current weights (a stacked copy), and False: not a view."""
        owned = self.params[self.owned_start : self.owned_start + self.owned_count]
        if not owned:
            return self.momentum_buffer.new_zeros((0, *self.shape)), False
        return torch.stack(owned), False

    def update(
        self, grad: torch.Tensor, clip: torch.Tensor | None, opt: MuonAdamW
    ) -> tuple[torch.Tensor | None, bool]:
        """Update this rank's block; ``grad`` is ours to overwrite.

        Returns (new values of the block to all-gather, False); on one rank (None, True): the
        parameters were updated where they are, with no stacked copy to write back.
        """
        group = opt.param_groups[self.group_index]
        lr, wd, beta = group["lr"], group["weight_decay"], group["momentum"]
        values = None if opt.world_size == 1 else self.owned_values()[0]
        if self.owned_count:
            direction_fn = compiled_muon_direction() if opt.compile_muon else muon_direction
            fast = opt.fast_muon
            ortho = direction_fn(  # in ns_dtype (fast: the parameters' dtype), read as it is
                grad,
                self.momentum_buffer,
                clip,
                beta,
                bool(group["nesterov"]),
                opt.ns_dtype,
                int(group["ns_steps"]),
                opt.ns_coefficients,
                fast,
                fast and bmm_out_dtype_available(grad.device),
            )
            if values is None:
                # With fast_muon the updates share the parameters' dtype and layout, so each
                # _foreach_ below is one multi-tensor kernel; a bf16 update of fp32 parameters
                # makes torch fall back to one add per parameter (60 kernels at DEPTH 12).
                params, updates = self.params, list(ortho.unbind(0))
                if wd:
                    torch._foreach_mul_(params, 1.0 - lr * wd)
                torch._foreach_add_(params, updates, alpha=-lr * self.scale)
            else:
                if wd:
                    values.mul_(1.0 - lr * wd)  # decoupled weight decay (Loshchilov & Hutter)
                values.add_(ortho, alpha=-lr * self.scale)
        return values, values is None

    def write_back_pairs(self, full: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(parameters, their new values) from the gathered stack."""
        return self.params, list(full[: len(self.params)].unbind(0))

    def layout(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "group_index": self.group_index,
            "shape": list(self.shape),
            "num_params": len(self.params),
            "owned": [self.owned_start, self.owned_count],
        }

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"momentum_buffer": self.momentum_buffer}
