"""``MuonAdamW``: Muon for the transformer's matrices, AdamW for the rest, in one optimizer that
is sharded ZeRO-2 style and syncs the gradients itself (the package docstring, nanogpt/optim,
gives the order of a step).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as torch_dist

from nanogpt.optim.collectives import (
    _SMALL_PARAM_NUMEL,
    _all_gather_fn,
    _FlatBucket,
    _MuonBucket,
    _probe_collectives,
    _reduce_scatter_fn,
)
from nanogpt.optim.newton_schulz import (
    _COEFFICIENT_SETS,
    compiled_muon_direction,
    muon_direction,
    muon_update_scale,
)

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
ADAMW_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3,
    "weight_decay": 0.0,
    "betas": (0.9, 0.95),
    "eps": 1e-8,
}


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
            for key, value in (MUON_DEFAULTS if kind == "muon" else ADAMW_DEFAULTS).items():
                group.setdefault(key, value)
            group.setdefault("initial_lr", group["lr"])
            if isinstance(group["params"], torch.Tensor):
                group["params"] = [group["params"]]
            else:
                group["params"] = list(group["params"])
        if ns_coefficients not in _COEFFICIENT_SETS:
            raise ValueError(
                f"unknown ns_coefficients {ns_coefficients!r}; use one of {sorted(_COEFFICIENT_SETS)}"
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
        self.step_count = 0

        self.process_group = process_group
        if torch_dist.is_available() and torch_dist.is_initialized():
            self.world_size = torch_dist.get_world_size(process_group)
            self.rank = torch_dist.get_rank(process_group)
        else:
            self.world_size, self.rank = 1, 0

        params = [p for g in self.param_groups for p in g["params"]]
        if not params:
            raise ValueError("MuonAdamW got parameter groups with no parameters in them")
        self.device = params[0].device
        for p in params:
            if p.device != self.device:
                raise ValueError(
                    f"all parameters must live on one device; found {p.device} and {self.device}"
                )
        self._validate_groups()
        # AdamW buckets first: their all-gathers are the big transfers (embedding, lm_head), and
        # starting them before the Muon buckets lets them run while Newton-Schulz computes.
        self._buckets: list[_FlatBucket | _MuonBucket] = self._build_flat_buckets()
        self._buckets += self._build_muon_buckets()
        self._has_reduce_scatter, self._has_all_gather = _probe_collectives(
            self.world_size, self.process_group, self.device
        )

    # ------------------------------------------------------------------ construction helpers

    def _validate_groups(self) -> None:
        for index, group in enumerate(self.param_groups):
            if group["kind"] == "muon":
                for p in group["params"]:
                    if p.ndim != 2:
                        raise ValueError(
                            f"param group {index} is a Muon group but holds a parameter of shape "
                            f"{tuple(p.shape)}; Muon takes 2-D weight matrices only, give "
                            "vectors, scalars and embeddings to an AdamW group"
                        )
                if not 0.0 <= group["momentum"] < 1.0:
                    raise ValueError(
                        f"param group {index}: momentum {group['momentum']} not in [0, 1)"
                    )
                if int(group["ns_steps"]) < 1:
                    raise ValueError(f"param group {index}: ns_steps must be >= 1")
                muon_update_scale((1, 1), group["update_scale"])  # rejects an unknown rule
            else:
                beta1, beta2 = group["betas"]
                if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
                    raise ValueError(f"param group {index}: betas {group['betas']} not in [0, 1)")

    def _build_muon_buckets(self) -> list[_MuonBucket]:
        world, rank = self.world_size, self.rank
        buckets = []
        for index, group in enumerate(self.param_groups):
            if group["kind"] != "muon":
                continue
            by_shape: dict[tuple, list[torch.Tensor]] = {}
            for p in group["params"]:
                by_shape.setdefault((tuple(p.shape), p.dtype), []).append(p)
            for (shape, dtype), members in by_shape.items():
                per_rank = -(-len(members) // world)  # ceil: zero matrices pad the stack
                start = min(rank * per_rank, len(members))
                count = min(per_rank, len(members) - start)
                bucket = _MuonBucket(
                    group_index=index,
                    params=members,
                    shape=shape,
                    per_rank=per_rank,
                    owned_start=start,
                    owned_count=count,
                    scale=muon_update_scale(shape, group["update_scale"]),
                )
                bucket.momentum_buffer = torch.zeros(
                    (count, *shape), dtype=dtype, device=self.device
                )
                buckets.append(bucket)
        return buckets

    def _build_flat_buckets(self) -> list[_FlatBucket]:
        world, rank = self.world_size, self.rank
        buckets = []
        for index, group in enumerate(self.param_groups):
            if group["kind"] != "adamw":
                continue
            runs: list[list[torch.Tensor]] = []
            small: dict[torch.dtype, list[torch.Tensor]] = {}
            for p in group["params"]:
                if p.numel() >= _SMALL_PARAM_NUMEL:
                    runs.append([p])
                else:
                    small.setdefault(p.dtype, []).append(p)
            runs += list(small.values())
            for members in runs:
                numel = sum(p.numel() for p in members)
                per_rank = -(-numel // world)
                start = min(rank * per_rank, numel)
                count = min(per_rank, numel - start)
                bucket = _FlatBucket(index, members, numel, per_rank, start, count)
                zeros = dict(dtype=members[0].dtype, device=self.device)
                bucket.exp_avg = torch.zeros(count, **zeros)
                bucket.exp_avg_sq = torch.zeros(count, **zeros)
                bucket.step_tensor = torch.zeros((), dtype=torch.float32, device=self.device)
                buckets.append(bucket)
        return buckets

    # ------------------------------------------------------------------ the step

    def _packed_grads(self, bucket: _FlatBucket | _MuonBucket) -> torch.Tensor:
        """The bucket's local gradients as one tensor, padded to world_size * per_rank."""
        world = self.world_size
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in bucket.params]
        if isinstance(bucket, _MuonBucket):
            pad = world * bucket.per_rank - len(grads)
            packed = torch.stack(grads)  # (n, out, in)
            if pad:
                packed = torch.cat([packed, packed.new_zeros((pad, *bucket.shape))])
            return packed
        pad = world * bucket.per_rank - bucket.numel
        if len(grads) == 1 and not pad and grads[0].is_contiguous():
            return grads[0].view(-1)  # no copy: the reduce-scatter reads the .grad itself
        flat = [g.reshape(-1) for g in grads]
        if pad:
            flat.append(grads[0].new_zeros(pad))
        return torch.cat(flat)

    def _owned_params(self, bucket: _FlatBucket | _MuonBucket) -> tuple[torch.Tensor, bool]:
        """This rank's shard of the current parameter values, and whether it is a view of them."""
        start, count = bucket.owned_start, bucket.owned_count
        if isinstance(bucket, _MuonBucket):
            owned = bucket.params[start : start + count]
            if not owned:
                return bucket.momentum_buffer.new_zeros((0, *bucket.shape)), False
            return torch.stack(owned), False
        if len(bucket.params) == 1:
            return bucket.params[0].view(-1)[start : start + count], True
        pieces, offset = [], 0
        for p in bucket.params:
            lo, hi = max(start, offset), min(start + count, offset + p.numel())
            if lo < hi:
                pieces.append(p.view(-1)[lo - offset : hi - offset])
            offset += p.numel()
        if not pieces:
            return bucket.exp_avg.new_zeros(0), False
        return torch.cat(pieces), False

    def _update_muon(
        self, bucket: _MuonBucket, grad: torch.Tensor, clip: torch.Tensor | None
    ) -> torch.Tensor | None:
        """Update this rank's block of the stack; `grad` is ours to overwrite.

        Returns the new values of the block to all-gather; None on one rank, where the
        parameters are updated where they are.
        """
        group = self.param_groups[bucket.group_index]
        lr, wd, beta = group["lr"], group["weight_decay"], group["momentum"]
        values = None if self.world_size == 1 else self._owned_params(bucket)[0]
        if bucket.owned_count:
            direction_fn = compiled_muon_direction() if self.compile_muon else muon_direction
            ortho = direction_fn(  # stays in ns_dtype: add_ below reads it without a cast
                grad,
                bucket.momentum_buffer,
                clip,
                beta,
                bool(group["nesterov"]),
                self.ns_dtype,
                int(group["ns_steps"]),
                self.ns_coefficients,
            )
            if values is None:
                # One rank: no stacked copy of the weights to write back afterwards.
                params, updates = bucket.params, list(ortho.unbind(0))
                if wd:
                    torch._foreach_mul_(params, 1.0 - lr * wd)
                torch._foreach_add_(params, updates, alpha=-lr * bucket.scale)
            else:
                if wd:
                    values.mul_(1.0 - lr * wd)  # decoupled weight decay (Loshchilov & Hutter)
                values.add_(ortho, alpha=-lr * bucket.scale)
        return values

    def _update_adamw(
        self, bucket: _FlatBucket, grad: torch.Tensor, clip: torch.Tensor | None
    ) -> tuple[torch.Tensor, bool]:
        """Update this rank's slice; `grad` is ours to overwrite. Returns (values, is_a_view)."""
        group = self.param_groups[bucket.group_index]
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        values, is_view = self._owned_params(bucket)
        if not bucket.owned_count:
            return values, is_view
        if self.fused_adamw:
            bucket.step_tensor.fill_(self.step_count)
            torch._fused_adamw_(
                [values],
                [grad],
                [bucket.exp_avg],
                [bucket.exp_avg_sq],
                [],
                [bucket.step_tensor],
                lr=lr,
                beta1=beta1,
                beta2=beta2,
                weight_decay=wd,
                eps=eps,
                amsgrad=False,
                maximize=False,
                # The kernel divides the gradient by grad_scale (it exists for AMP's loss
                # scaling): clipping rides along instead of costing a pass of its own.
                grad_scale=None if clip is None else 1.0 / clip,
                found_inf=None,
            )
        else:
            # The arithmetic of torch.optim.AdamW's single-tensor path, in its order.
            if clip is not None:
                grad.mul_(clip)
            step = self.step_count
            values.mul_(1.0 - lr * wd)
            bucket.exp_avg.lerp_(grad, 1.0 - beta1)
            bucket.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
            bias_correction1 = 1.0 - beta1**step
            bias_correction2_sqrt = math.sqrt(1.0 - beta2**step)
            denom = (bucket.exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
            values.addcdiv_(bucket.exp_avg, denom, value=-lr / bias_correction1)
        return values, is_view

    def _write_back(self, bucket: _FlatBucket | _MuonBucket, full: torch.Tensor) -> None:
        """Copy gathered (or, on one rank, updated) values into the parameters."""
        if isinstance(bucket, _MuonBucket):
            targets, sources = bucket.params, list(full[: len(bucket.params)].unbind(0))
        else:
            targets = bucket.params
            sources = [
                piece.view_as(p)
                for piece, p in zip(
                    full[: bucket.numel].split([p.numel() for p in targets]), targets, strict=True
                )
            ]
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
        world, group = self.world_size, self.process_group
        buckets = self._buckets

        # 1. Launch every reduce-scatter at once; collectives of one group run in launch order,
        #    so while bucket i's squares are being summed, bucket i+1's transfer continues.
        pending = []
        for bucket in buckets:
            packed = self._packed_grads(bucket)
            if world == 1:
                pending.append((bucket, packed, None))
            elif self._has_reduce_scatter:
                shard = packed.new_empty((bucket.per_rank, *packed.shape[1:]))
                work = _reduce_scatter_fn()(shard, packed, group=group, async_op=True)
                pending.append((bucket, shard, work))
            else:
                # Gloo without reduce-scatter: all-reduce a copy and keep our slice. Same sums,
                # world_size times the traffic; only the CPU test path ever takes this.
                packed = packed.clone()
                work = torch_dist.all_reduce(packed, group=group, async_op=True)
                pending.append((bucket, packed, work))

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

        # 2. Global norm of the averaged gradient, over every shard of every rank.
        total = torch.stack(squares).sum() if squares else torch.zeros((), device=self.device)
        norm_work = None
        if world > 1:
            norm_work = torch_dist.all_reduce(total, group=group, async_op=True)
        coefficient = None
        if self.max_grad_norm is not None and self.max_grad_norm > 0:
            if norm_work is not None:
                norm_work.wait()
                norm_work = None
            # A tensor, never a Python number: reading it on the host would wait for the GPU.
            coefficient = (self.max_grad_norm / (total.sqrt() + 1e-6)).clamp(max=1.0)
        # Without clipping nothing needs the norm yet: its all-reduce overlaps the updates.

        # 3 + 4. Update each owned shard, and start its all-gather at once, so that bucket i's
        #    transfer overlaps bucket i+1's Newton-Schulz.
        gathers = []
        for bucket, shard in zip(buckets, shards, strict=True):
            if isinstance(bucket, _MuonBucket):
                values = self._update_muon(bucket, shard, coefficient)
                is_view = values is None
            else:
                values, is_view = self._update_adamw(bucket, shard, coefficient)
            if world == 1:
                if not is_view:
                    self._write_back(bucket, values)
                continue
            pad = bucket.per_rank - bucket.owned_count
            if pad:
                values = torch.cat([values, values.new_zeros((pad, *values.shape[1:]))])
            if isinstance(bucket, _MuonBucket):
                full_shape = (world * bucket.per_rank, *bucket.shape)
            else:
                full_shape = (world * bucket.per_rank,)
            gathered = values.new_empty(full_shape)
            if self._has_all_gather:
                work = _all_gather_fn()(gathered, values.contiguous(), group=group, async_op=True)
            else:
                work = torch_dist.all_gather(
                    list(gathered.chunk(world)), values.contiguous(), group=group, async_op=True
                )
            gathers.append((bucket, gathered, work))
        for bucket, gathered, work in gathers:
            work.wait()
            self._write_back(bucket, gathered)

        if norm_work is not None:
            norm_work.wait()
        return total.sqrt()

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
