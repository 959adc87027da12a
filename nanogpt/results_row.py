"""The results table's row: its columns and the one function that builds a row.

A row is a trial's plan (:func:`planned_row`: the swept values, the shape, the parameter counts
and FLOPs per token from ``nanogpt.scaling``, the planned steps and tokens) merged with what
happened (``train()``'s summary and the trial's timings, or a failure's status and error) by
:func:`trial_row`. The sweep (``nanogpt.sweep``) writes these rows; the synthetic tables of
``nanogpt.scaling_laws.synthetic`` are built by the same two functions, so a synthetic table has
the columns a sweep's has. Nothing here imports Ray or torch.
"""

from __future__ import annotations

import math
from typing import Any

from nanogpt import scaling

RESULT_COLUMNS = [
    "depth", "flops_budget", "seed", "n_layer", "n_embd", "n_head", "params_total",
    "params_nonembedding", "params_scaling", "tokens", "steps", "epochs", "flops_per_token",
    "final_train_loss", "final_val_loss", "val_bpb", "status", "wall_s", "tokens_per_s", "mfu",
    "gpu", "tokenizer", "dataset", "trial_id", "checkpoint", "core",
]  # fmt: skip
EXTRA_COLUMNS = [
    "trial_key", "steps_planned", "flops", "seq_len", "total_batch_size", "run_dir", "error",
    "node_id",  # the Ray node its first worker ran on
    "trial_wall_s",  # the whole trial: Ray Train start-up and teardown + training (wall_s)
    "ray_startup_s",  # trial start until the worker function runs (controller, workers, PG)
    "ray_teardown_s",  # worker function returned until fit() returned
    "setup_s",  # inside train(): model, data and validation batches before the first step
    "trial_started_at",  # Unix time the trial function started (the sweep's timeline)
    "trial_imports_s",  # the trial function's imports (Ray Train, torch) before it starts
    # With the sweep's --eval (nanogpt.sweep.trial_eval): core is a table column above
    "gauntlet",  # the Eval Gauntlet v0.3 score of the final model (--eval gauntlet)
    "eval_baselines",  # the random baselines the score is centred on (dclm-v2, v1, bundle)
    "eval_max_per_task",  # items per task evaluated (a seeded subsample; 0 = every item)
    "eval_s",  # seconds the evaluation took, loading the checkpoint included
]  # fmt: skip


def planned_row(
    depth: int,
    flops_budget: float,
    seed: int,
    shape: scaling.ModelShape,
    tokens_per_step: int,
    train_tokens: int | None = None,
) -> dict[str, Any]:
    """A trial as planned: swept values, shape columns (``scaling.shape_columns``), whole steps
    that fit in the budget, their tokens, tokens per parameter and epochs of the data."""
    columns = scaling.shape_columns(shape)
    steps = int(flops_budget // (columns["flops_per_token"] * tokens_per_step))
    tokens = steps * tokens_per_step
    return {
        "depth": depth,
        "flops_budget": flops_budget,
        "seed": seed,
        **columns,
        "steps_planned": steps,
        "tokens_planned": tokens,
        "tokens_per_param": tokens / columns["params_scaling"],
        "epochs_planned": tokens / train_tokens if train_tokens else None,
    }


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def trial_row(spec: dict[str, Any], outcome: dict[str, Any]) -> dict[str, Any]:
    """A trial's row: its plan (:func:`planned_row`, or ``grid.trial_spec``) and what happened
    (``train()``'s summary and the trial's timings, or a failure's status and error). Keeps the
    table's columns only, the outcome winning where both have one; a non-finite float becomes
    None (the row file is strict JSON). The one place a row is built."""
    columns = RESULT_COLUMNS + EXTRA_COLUMNS
    row = {k: v for k, v in spec.items() if k in columns}
    row.update({k: v for k, v in outcome.items() if k in columns})
    row.setdefault("steps", 0 if outcome.get("status") == "failed" else None)
    return {k: _json_safe(v) for k, v in row.items()}
