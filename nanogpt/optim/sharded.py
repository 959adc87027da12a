"""``MuonAdamW``: Muon for the transformer's matrices, AdamW for the rest, in one optimizer that
is sharded ZeRO-2 style and syncs the gradients itself (the package docstring, nanogpt/optim,
gives the order of a step).

This module is the sharded wrapper: it sorts the groups into buckets (``muon.MuonBucket``,
``adamw.AdamWBucket``), moves them (``collectives``) and asks each bucket to update its shard;
a bucket knows its own kind, packing and update, so nothing here tests which kind it holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from nanogpt.optim.adamw import ADAMW_DEFAULTS, AdamWBucket, validate_adamw_group
from nanogpt.optim.collectives import (
    all_gather_fn,
    all_gather_list_async,
    all_reduce_async,
    probe_collectives,
    reduce_scatter_fn,
    world_and_rank,
)
from nanogpt.optim.muon import MUON_DEFAULTS, MuonBucket, validate_muon_group
from nanogpt.optim.newton_schulz import COEFFICIENT_SETS

Bucket = MuonBucket | AdamWBucket
DEFAULTS = {MuonBucket.kind: MUON_DEFAULTS, AdamWBucket.kind: ADAMW_DEFAULTS}
VALIDATORS = {MuonBucket.kind: validate_muon_group, AdamWBucket.kind: validate_adamw_group}


class MuonAdamW(torch.optim.Optimizer):
    """Muon for the transformer's matrices, AdamW for the rest; ZeRO-2 sharded over all ranks.

    param_groups: torch param-group dicts, each with "kind" ("muon" or "adamw"), "params", "lr",
    "weight_decay"; adamw groups also "betas", "eps"; muon groups also "momentum" (0.95),
    "nesterov" (True), "ns_steps" (5), "update_scale" ("shape"). Missing keys take the defaults
    in MUON_DEFAULTS / ADAMW_DEFAULTS. Every group keeps "initial_lr" (set to "lr" if absent):
    the training loop drives the schedule with group["lr"] = group["initial_lr"] * multiplier.

    max_grad_norm: clip by the global gradient norm (over all shards and ranks); None or <= 0
    turns clipping off (the norm is still computed and returned).
    ns_dtype: the Newton-Schulz compute dtype (bf16; fp32 for exact comparisons in tests).
    ns_coefficients: "polar_express" (default) or "quintic".
    fused_adamw: update AdamW shards with torch's fused kernel (torch._fused_adamw_, the one
    behind torch.optim.AdamW(fused=True)); None: whenever this torch has it.
    compile_muon: torch.compile Muon's per-bucket maths (see below).
    fast_muon: Newton-Schulz without copies of the matrices (``newton_schulz(fold_linear=True)``)
    and its result in the parameters' dtype, so the update is one kernel per bucket; the same
    polynomial, rounded slightly differently in bf16 (off by default).
    compile_adamw: AdamW shards through ``adamw.adamw_update`` under torch.compile instead of
    torch's fused kernel: the unfused arithmetic as one Inductor kernel (off by default; GPU
    only in practice, a CPU compiles C++ for minutes).
    process_group: the ranks to shard over; default: the default group if torch.distributed is
    initialised, else this process alone.

    Every rank must build the optimizer with the same groups in the same order. step() may scale
    the parameters' .grad in place (clipping, as torch.nn.utils.clip_grad_norm_ does).
    """

    def __init__(
        self,
        param_groups: Iterable[dict[str, Any]],
        max_grad_norm: float | None = 1.0,
        *,
        ns_dtype: torch.dtype | None = torch.bfloat16,
        ns_coefficients: str = "polar_express",
        fused_adamw: bool | None = None,
        compile_muon: bool = False,
        fast_muon: bool = False,
        compile_adamw: bool = False,
        process_group: Any = None,
    ) -> None:
        groups = [dict(g) for g in param_groups]
        if not groups:
            raise ValueError("MuonAdamW got no parameter groups")
        for index, group in enumerate(groups):
            kind = group.get("kind")
            if kind not in ("muon", "adamw"):
                raise ValueError(
                    f'param group {index} has kind={kind!r}; every group needs "kind": "muon" or "adamw"'
                )
            for key, value in DEFAULTS[kind].items():
                group.setdefault(key, value)
            group.setdefault("initial_lr", group["lr"])
            if isinstance(group["params"], torch.Tensor):
                group["params"] = [group["params"]]
            else:
                group["params"] = list(group["params"])
        if ns_coefficients not in COEFFICIENT_SETS:
            raise ValueError(
                f"unknown ns_coefficients {ns_coefficients!r}; use one of {sorted(COEFFICIENT_SETS)}"
            )
        super().__init__(groups, defaults={})
        self.max_grad_norm = max_grad_norm
        self.ns_dtype = ns_dtype
        self.ns_coefficients = ns_coefficients
        # One kernel reads p, g, m, v and writes p, m, v; the unfused ops below make about eight
        # passes over the shard, which on one H200 cost ~1.3 ms a step at DEPTH=12.
        available = hasattr(torch, "_fused_adamw_")
        if fused_adamw and not available:
            raise ValueError("fused_adamw=True, but this torch has no torch._fused_adamw_")
        self.fused_adamw = available if fused_adamw is None else fused_adamw
        # torch.compile Muon's per-bucket maths (clip, momentum, Nesterov, cast, Newton-Schulz):
        # the elementwise passes fuse around the batched matmuls. Same arithmetic; GPU only in
        # practice (a CPU compiles C++ for minutes).
        self.compile_muon = compile_muon
        self.fast_muon = fast_muon
        self.compile_adamw = compile_adamw
        self.step_count = 0

        self.process_group = process_group
        self.world_size, self.rank = world_and_rank(process_group)

        params = [p for g in self.param_groups for p in g["params"]]
        if not params:
            raise ValueError("MuonAdamW got parameter groups with no parameters in them")
        self.device = params[0].device
        for p in params:
            if p.device != self.device:
                raise ValueError(
                    f"all parameters must live on one device; found {p.device} and {self.device}"
                )
        for index, group in enumerate(self.param_groups):
            VALIDATORS[group["kind"]](index, group)
        # AdamW buckets first: their all-gathers are the big transfers (embedding, lm_head), and
        # starting them before the Muon buckets lets them run while Newton-Schulz computes.
        world, rank, groups = self.world_size, self.rank, self.param_groups
        self._buckets: list[Bucket] = AdamWBucket.build_all(groups, world, rank, self.device)
        self._buckets += MuonBucket.build_all(groups, world, rank, self.device)
        self._has_reduce_scatter, self._has_all_gather = probe_collectives(
            self.world_size, self.process_group, self.device
        )

    # ------------------------------------------------------------------ the step

    def _write_back(self, bucket: Bucket, full: torch.Tensor) -> None:
        """Copy gathered (or, on one rank, updated) values into the parameters."""
        targets, sources = bucket.write_back_pairs(full)
        if hasattr(torch, "_foreach_copy_"):
            torch._foreach_copy_(targets, sources)  # one launch for the whole bucket on CUDA
        else:
            for p, s in zip(targets, sources, strict=True):
                p.copy_(s)

    @torch.no_grad()
    def step(self, closure: Any = None) -> torch.Tensor:
        """Average grads over ranks, clip by the global norm, update owned shards, all-gather.

        Returns the global gradient norm before clipping, a 0-dim fp32 tensor on the parameters'
        device; nothing here waits on the host for the GPU.
        """
        if closure is not None:
            with torch.enable_grad():
                closure()
        self.step_count += 1
        shards, squares = self._reduce_scatter_grads()

        # 2. Global norm of the averaged gradient, over every shard of every rank.
        total = torch.stack(squares).sum() if squares else torch.zeros((), device=self.device)
        norm_work = None
        if self.world_size > 1:
            norm_work = all_reduce_async(total, self.process_group)
        coefficient = None
        if self.max_grad_norm is not None and self.max_grad_norm > 0:
            if norm_work is not None:
                norm_work.wait()
                norm_work = None
            # A tensor, never a Python number: reading it on the host would wait for the GPU.
            coefficient = (self.max_grad_norm / (total.sqrt() + 1e-6)).clamp(max=1.0)
        # Without clipping nothing needs the norm yet: its all-reduce overlaps the updates.

        self._update_and_gather(shards, coefficient)
        if norm_work is not None:
            norm_work.wait()
        return total.sqrt()

    def _reduce_scatter_grads(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """1. Each bucket's averaged gradient shard, and the sum of squares of each shard.

        Every reduce-scatter is launched at once; collectives of one group run in launch order,
        so while bucket i's squares are being summed, bucket i+1's transfer continues.
        """
        world, group = self.world_size, self.process_group
        pending = []
        for bucket in self._buckets:
            packed = bucket.packed_grads(world)
            if world == 1:
                pending.append((bucket, packed, None))
            elif self._has_reduce_scatter:
                shard = packed.new_empty((bucket.per_rank, *packed.shape[1:]))
                work = reduce_scatter_fn()(shard, packed, group=group, async_op=True)
                pending.append((bucket, shard, work))
            else:
                # Gloo without reduce-scatter: all-reduce a copy and keep our slice. Same sums,
                # world_size times the traffic; only the CPU test path ever takes this.
                packed = packed.clone()
                pending.append((bucket, packed, all_reduce_async(packed, group)))

        shards, squares = [], []
        for bucket, tensor, work in pending:
            if work is not None:
                work.wait()
            if world > 1 and not self._has_reduce_scatter:
                start = self.rank * bucket.per_rank
                tensor = tensor[start : start + bucket.per_rank]
            shard = tensor[: bucket.owned_count]  # drop the padding
            if world > 1:
                # Summed, not averaged: ReduceOp.AVG is NCCL-only, and dividing the owned shard
                # costs 1/world of dividing the whole gradient.
                shard.div_(world)
            shards.append(shard)
            flat = shard.reshape(-1).float()
            squares.append(torch.dot(flat, flat))  # one pass, no squared copy
        return shards, squares

    def _update_and_gather(self, shards: list[torch.Tensor], clip: torch.Tensor | None) -> None:
        """3 + 4. Update each owned shard and start its all-gather at once, so that bucket i's
        transfer overlaps bucket i+1's Newton-Schulz; then write the gathered values back."""
        world, group = self.world_size, self.process_group
        gathers = []
        for bucket, shard in zip(self._buckets, shards, strict=True):
            values, is_view = bucket.update(shard, clip, self)
            if world == 1:
                if not is_view:
                    self._write_back(bucket, values)
                continue
            pad = bucket.per_rank - bucket.owned_count
            if pad:
                values = torch.cat([values, values.new_zeros((pad, *values.shape[1:]))])
            gathered = values.new_empty(bucket.gathered_shape(world))
            if self._has_all_gather:
                work = all_gather_fn()(gathered, values.contiguous(), group=group, async_op=True)
            else:
                work = all_gather_list_async(gathered, values.contiguous(), group)
            gathers.append((bucket, gathered, work))
        for bucket, gathered, work in gathers:
            work.wait()
            self._write_back(bucket, gathered)

    # ------------------------------------------------------------------ state

    def state_bytes(self) -> int:
        """Bytes of optimizer state this rank holds (momentum; AdamW's two moments)."""
        return sum(
            t.numel() * t.element_size() for b in self._buckets for t in b.state_tensors().values()
        )

    def state_dict(self) -> dict[str, Any]:
        """This rank's shards only; save one file per rank (checkpoint.py: optim_rank{r}.pt).

        Plain tensors, numbers, strings, lists and dicts: loads with torch.load(weights_only=True).
        """
        groups = []
        for group in self.param_groups:
            saved = {k: v for k, v in group.items() if k != "params"}
            if isinstance(saved.get("betas"), tuple):
                saved["betas"] = list(saved["betas"])
            saved["num_params"] = len(group["params"])
            groups.append(saved)
        return {
            "format": "nanogpt.optim.MuonAdamW/1",
            "world_size": self.world_size,
            "rank": self.rank,
            "step_count": self.step_count,
            "param_groups": groups,
            "buckets": [
                {
                    "layout": b.layout(),
                    "state": {k: v.clone() for k, v in b.state_tensors().items()},
                }
                for b in self._buckets
            ],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore this rank's shards, saved by state_dict() on the same rank of the same world size."""
        if state_dict.get("format") != "nanogpt.optim.MuonAdamW/1":
            raise ValueError(
                "this is not a MuonAdamW state dict (no format 'nanogpt.optim.MuonAdamW/1'); "
                "was it written by another optimizer?"
            )
        if state_dict["world_size"] != self.world_size or state_dict["rank"] != self.rank:
            raise ValueError(
                f"optimizer state was saved by rank {state_dict['rank']} of "
                f"{state_dict['world_size']}, but this is rank {self.rank} of {self.world_size}; "
                "sharded state only resumes on the same world size (load optim_rank{r}.pt on rank "
                "r), or start the optimizer afresh from the model weights"
            )
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"optimizer state has {len(saved_groups)} param groups, this optimizer has "
                f"{len(self.param_groups)}; build the groups as the saved run did"
            )
        saved_buckets = state_dict["buckets"]
        layouts = [b.layout() for b in self._buckets]
        if [s["layout"] for s in saved_buckets] != layouts:
            raise ValueError(
                "optimizer state does not match this model's parameters (shapes, group order or "
                "sharding differ); was it saved for another model or another grouping?"
            )
        for index, (group, saved) in enumerate(zip(self.param_groups, saved_groups, strict=True)):
            if saved["num_params"] != len(group["params"]) or saved["kind"] != group["kind"]:
                raise ValueError(f"param group {index} differs from the saved one")
            for key, value in saved.items():
                if key == "num_params":
                    continue
                group[key] = tuple(value) if key == "betas" else value
        for bucket, saved in zip(self._buckets, saved_buckets, strict=True):
            for name, tensor in bucket.state_tensors().items():
                tensor.copy_(saved["state"][name])
        self.step_count = int(state_dict["step_count"])
