"""A results table drawn from a known scaling law, for tests, demos and plots before a sweep.

The rows are built as a real sweep's are (``nanogpt.results_row``), so they have its columns
(docs/README_SWEEPS.md): the shapes, parameter counts and FLOPs per token come from
``nanogpt.scaling`` (width 64 * DEPTH, one head per 64 channels, GPT-2's padded vocabulary; N is
params_scaling, which counts the head; FLOPs are 6 N plus the attention term), and the loss is
L(N, D) = E + A/N^alpha + B/D^beta times log-normal noise.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from nanogpt import scaling
from nanogpt.results_row import planned_row, trial_row
from nanogpt.tokenizer import N_VOCAB

H200_PEAK = scaling.PEAK_BF16_FLOPS["H200"]

# Besiroglu et al. 2024 (https://arxiv.org/abs/2404.10102), table 1: a realistic default law.
BESIROGLU_LAW = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def synthetic_results(
    budgets: tuple[float, ...] = (1e16, 3e16, 1e17, 3e17, 1e18),
    *,
    law: dict[str, float] | None = None,
    depths_per_budget: int = 7,
    seq_len: int = 1024,
    noise: float = 0.003,
    n_diverged: int = 2,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (budget, depth): depths centred on each budget's optimum under `law`.

    `seq_len=0` drops the attention term, so that C = 6 N D exactly and the compute-optimal
    exponents are the law's a = beta/(alpha+beta), b = alpha/(alpha+beta). `noise` is the
    standard deviation of log L. `n_diverged` extra rows have status "diverged" and no loss.
    """
    law = dict(BESIROGLU_LAW if law is None else law)
    rng = np.random.default_rng(seed)
    tokens_per_step = 32 * max(seq_len, 256)
    rows = []
    for budget in budgets:
        centre = _depth_nearest(float(optimal_params(budget, law)), seq_len)
        first = max(1, centre - depths_per_budget // 2)
        for depth in range(first, first + depths_per_budget):
            plan = planned_row(depth, budget, seed, _shape(depth, seq_len), tokens_per_step)
            params, tokens = plan["params_scaling"], plan["tokens_planned"]
            loss = (
                law["E"]
                + law["A"] / params ** law["alpha"]
                + law["B"] / max(tokens, 1) ** law["beta"]
            )
            loss *= np.exp(noise * rng.standard_normal())
            # Utilisation grows with model size, as measured on an H200 (docs/benchmarks.md).
            mfu = float(np.clip(0.16 + 0.29 * (np.log10(params) - 6.8) / 1.3, 0.05, 0.5))
            tokens_per_s = (
                mfu * H200_PEAK / plan["flops_per_token"] * np.exp(0.03 * rng.standard_normal())
            )
            outcome = {
                "tokens": tokens,
                "steps": plan["steps_planned"],
                "final_train_loss": loss * 0.99,
                "final_val_loss": loss,
                "val_bpb": loss / np.log(2) / 4.5,
                "status": "ok",
                "wall_s": tokens / tokens_per_s + 20.0,  # + start-up of a Ray trial
                "tokens_per_s": tokens_per_s,
                "mfu": mfu,
                "gpu": "synthetic",
                "trial_id": f"synthetic_{budget:.0e}_d{depth}",
                "checkpoint": "",
            }
            rows.append(trial_row(plan, outcome))
    for i in range(n_diverged):
        row = dict(rows[i % len(rows)])
        row.update(
            status="diverged",
            final_val_loss=np.nan,
            final_train_loss=np.nan,
            val_bpb=np.nan,
            trial_id=row["trial_id"] + "_diverged",
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _shape(depth: int, seq_len: int) -> scaling.ModelShape:
    """The project's shape at ``depth`` with GPT-2's chat vocabulary; seq_len 0 (no attention
    term in the FLOPs) is allowed here, unlike for a real model."""
    shape = scaling.shape_for_depth(depth, max(seq_len, 1), N_VOCAB)
    return scaling.ModelShape(shape.n_layer, shape.n_embd, shape.n_head, N_VOCAB, seq_len)


def _depth_nearest(params: float, seq_len: int) -> int:
    """The DEPTH whose params_scaling is closest to ``params`` on a log scale."""
    return min(
        range(1, 257),
        key=lambda d: abs(
            math.log(scaling.param_counts(_shape(d, seq_len))["params_scaling"] / params)
        ),
    )


def optimal_params(budget: float | np.ndarray, law: dict[str, float] | None = None) -> np.ndarray:
    """The law's compute-optimal N at `budget` FLOPs with C = 6 N D (Hoffmann et al. 2022,
    appendix D.3): N* = G (C/6)^(beta/(alpha+beta)), G = (alpha A / (beta B))^(1/(alpha+beta))."""
    law = BESIROGLU_LAW if law is None else law
    alpha, beta = law["alpha"], law["beta"]
    g = (alpha * law["A"] / (beta * law["B"])) ** (1 / (alpha + beta))
    return g * (np.asarray(budget, dtype=float) / 6) ** (beta / (alpha + beta))


def synthetic_isoflop_grid(
    budgets: tuple[float, ...] = (1e18, 3e18, 1e19, 3e19, 1e20),
    *,
    law: dict[str, float] | None = None,
    span_decades: float = 1.0,
    n_sizes: int = 9,
    shift: tuple[float, float] = (0.0, 0.0),
    noise: float = 0.003,
    seed: int = 0,
) -> pd.DataFrame:
    """An isoFLOP grid with C = 6 N D exactly, for measuring the fits against a known answer.

    At each budget, `n_sizes` model sizes evenly spaced in log N from span_decades below to
    span_decades above a centre; the centre sits `shift` (a fraction of span_decades) above the
    law's optimum, moving linearly from shift[0] at the smallest budget to shift[1] at the
    largest. A fixed set of sizes run at every budget does this: its optimum moves from the
    large end towards the small end as the budget grows. The loss is the law times log-normal
    noise of standard deviation `noise`; the true exponent of N* is beta / (alpha + beta).
    """
    law = dict(BESIROGLU_LAW if law is None else law)
    rng = np.random.default_rng(seed)
    rows = []
    fractions = np.linspace(shift[0], shift[1], len(budgets)) if len(budgets) > 1 else [shift[0]]
    for budget, fraction in zip(budgets, fractions):
        centre = np.log10(optimal_params(budget, law)) + fraction * span_decades
        for log_n in np.linspace(centre - span_decades, centre + span_decades, n_sizes):
            params = 10.0**log_n
            tokens = budget / (6 * params)
            loss = law["E"] + law["A"] / params ** law["alpha"] + law["B"] / tokens ** law["beta"]
            rows.append(
                {
                    "params_scaling": params,
                    "tokens": tokens,
                    "flops_budget": budget,
                    "final_val_loss": loss * np.exp(noise * rng.standard_normal()),
                    "status": "ok",
                }
            )
    return pd.DataFrame(rows)
