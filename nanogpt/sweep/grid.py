"""The grid of a sweep: parsing ``--depths`` and ``--flops``, the sweep's settings
(``SweepConfig``), every trial's shape, tokens and steps, and the dry run that prices them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nanogpt import scaling
from nanogpt.config import TrainConfig

# MFU of the whole training step at each DEPTH on one H200 (bf16, torch.compile, 1024 context,
# 32 sequences per step, MuonAdamW included): DEPTH 6-14 measured with
# benchmarks/train_throughput.py on 2026-11-30 (docs/benchmarks.md); DEPTH 2 and 4 are the
# figures for a plain GPT in ../shared/DESIGN.md. The dry run turns these into an estimated time
# per trial; --throughput overrides them with your own measurement.
MEASURED_H200_MFU = {2: 0.16, 4: 0.27, 6: 0.329, 8: 0.376, 10: 0.391, 12: 0.413, 14: 0.410}
H200_PEAK_BF16 = 989e12


# --- the grid ---------------------------------------------------------------------------------


def parse_depths(text: str) -> list[int]:
    """``6..14`` (inclusive), ``6..14:2`` (with a step) or ``6,8,12``."""
    try:
        if ".." in text:
            span, _, step = text.partition(":")
            lo, hi = (int(x) for x in span.split(".."))
            depths = list(range(lo, hi + 1, int(step) if step else 1))
        else:
            depths = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(
            f"--depths {text!r}: expected A..B, A..B:STEP or a list like 6,8,12"
        ) from None
    if not depths or min(depths) < 1:
        raise ValueError(f"--depths {text!r}: depths must be whole numbers >= 1")
    return sorted(set(depths))


def parse_flops(text: str, num: int = 3) -> list[float]:
    """``1e18..6e18`` with ``num`` log-spaced points (ends included), or ``1e18,3e18,6e18``."""
    try:
        if ".." in text:
            lo, hi = (float(x) for x in text.split(".."))
            if num < 1:
                raise ValueError
            if num == 1 or lo == hi:
                budgets = [lo]
            else:
                ratio = (hi / lo) ** (1.0 / (num - 1))
                budgets = [float(f"{lo * ratio**i:.4g}") for i in range(num)]
        else:
            budgets = [float(x) for x in text.split(",") if x.strip()]
    except (ValueError, ZeroDivisionError):
        raise ValueError(
            f"--flops {text!r}: expected A..B (with --num-flops K) or a list like 1e18,3e18"
        ) from None
    if not budgets or min(budgets) <= 0:
        raise ValueError(f"--flops {text!r}: budgets must be positive")
    return sorted(set(budgets))


def trial_key(depth: int, flops_budget: float, seed: int) -> str:
    return f"d{depth:02d}_c{flops_budget:.3g}_s{seed}".replace("+", "")


@dataclass
class SweepConfig:
    depths: list[int]
    flops: list[float]
    seeds: list[int] = field(default_factory=lambda: [0])
    name: str = "isoflop"
    storage: str = "sweeps_out"  # a directory; or a URI for Ray's storage (see docs)
    address: str | None = None  # an existing Ray cluster; None starts a local one
    gpus_per_trial: int = 1
    trials_per_gpu: int = 1
    cpus_per_trial: int = 1  # CPU-only clusters: one gloo worker per trial, with this many CPUs
    max_concurrent: int = 0  # 0: as many as the cluster's resources allow (+ prefetch_trials)
    # Trials started beyond what the resources fit: their Ray start-up (trial actor, Train
    # controller) runs while other trials train, and they take the next free slot. None: two
    # per GPU on a GPU cluster, 0 on CPUs (where start-up would steal the trainers' cores).
    prefetch_trials: int | None = None
    resume: bool = False
    max_worker_restarts: int = 2  # Ray Train FailureConfig: worker-group restarts per trial
    max_trial_retries: int = 1  # Ray Tune FailureConfig: retries of a failed trial
    analyze: bool = True  # fit scaling laws and draw plots at the end
    train: TrainConfig = field(default_factory=TrainConfig)
    # Per-trial changes to the training config, keyed by trial_key (tests use this to plant
    # a divergence or a crash in one trial); not part of the swept values.
    trial_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def sweep_dir(self) -> Path:
        if "://" in self.storage:
            return Path("sweeps_out") / self.name
        return Path(self.storage).resolve() / self.name

    @property
    def ray_storage(self) -> str:
        return self.storage if "://" in self.storage else str(Path(self.storage).resolve())


def grid(sweep: SweepConfig) -> list[dict[str, Any]]:
    """Every trial: shape, parameters, tokens, steps, tokens per parameter."""
    rows = []
    for depth in sweep.depths:
        for budget in sweep.flops:
            for seed in sweep.seeds:
                shape = scaling.shape_for_depth(depth, seq_len=sweep.train.seq_len)
                counts = scaling.param_counts(shape)
                per_token = scaling.flops_per_token(shape)
                steps = int(budget // (per_token * sweep.train.total_batch_size))
                tokens = steps * sweep.train.total_batch_size
                rows.append(
                    {
                        "trial_key": trial_key(depth, budget, seed),
                        "depth": depth,
                        "flops_budget": budget,
                        "seed": seed,
                        "n_layer": shape.n_layer,
                        "n_embd": shape.n_embd,
                        "n_head": shape.n_head,
                        **counts,
                        "flops_per_token": per_token,
                        "steps": steps,
                        "tokens": tokens,
                        "tokens_per_param": tokens / counts["params_scaling"],
                    }
                )
    return rows


def human(x: float) -> str:
    """1234567 -> '1.23 M'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g}"


def estimated_mfu(depth: int) -> float:
    """Interpolated (in DEPTH) from the measured H200 table; flat beyond its ends."""
    points = sorted(MEASURED_H200_MFU.items())
    if depth <= points[0][0]:
        return points[0][1]
    for (d0, m0), (d1, m1) in zip(points, points[1:]):
        if depth <= d1:
            return m0 + (m1 - m0) * (depth - d0) / (d1 - d0)
    return points[-1][1]


def dry_run(sweep: SweepConfig, throughput: dict[int, float] | None = None) -> str:
    """The grid as a table, with the time each trial should take on one H200."""
    rows = grid(sweep)
    lines = [
        f"sweep {sweep.name!r}: {len(rows)} trials ({len(sweep.depths)} depths x "
        f"{len(sweep.flops)} budgets x {len(sweep.seeds)} seed(s)); "
        f"{sweep.train.total_batch_size:,} tokens per step, context {sweep.train.seq_len}",
        "| trial | depth | width | params_scaling | budget | steps | tokens | tokens/param "
        "| est. H200 tok/s | est. GPU-hours |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    total_hours = 0.0
    problems = []
    for r in rows:
        if throughput and r["depth"] in throughput:
            tok_s = throughput[r["depth"]]
        else:
            tok_s = estimated_mfu(r["depth"]) * H200_PEAK_BF16 / r["flops_per_token"]
        hours = r["tokens"] / tok_s / 3600 if tok_s else math.nan
        total_hours += hours
        if r["steps"] < 1:
            problems.append(f"{r['trial_key']}: the budget is too small for one step")
        lines.append(
            f"| {r['trial_key']} | {r['depth']} | {r['n_embd']} | {human(r['params_scaling'])} "
            f"| {r['flops_budget']:.3g} | {r['steps']:,} | {human(r['tokens'])} "
            f"| {r['tokens_per_param']:.3g} | {human(tok_s)} | {hours:.3g} |"
        )
    lines.append(
        f"total: about {total_hours:,.3g} H200-hours of training (plus ~20 s of Ray start-up per "
        f"trial); the estimate uses measured MFU by DEPTH on one H200 (docs/benchmarks.md)"
    )
    lines += [f"warning: {p}" for p in problems]
    return "\n".join(lines)
