"""The results table: its columns, writing and reading it (parquet + csv, atomically), the row of
a failed trial, and the live progress table printed while trials run.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from nanogpt import scaling
from nanogpt.sweep.grid import SweepConfig, grid, trial_key

RESULT_COLUMNS = [
    "depth", "flops_budget", "seed", "n_layer", "n_embd", "n_head", "params_total",
    "params_nonembedding", "params_scaling", "tokens", "steps", "flops_per_token",
    "final_train_loss", "final_val_loss", "val_bpb", "status", "wall_s", "tokens_per_s", "mfu",
    "gpu", "trial_id", "checkpoint",
]  # fmt: skip
EXTRA_COLUMNS = [
    "trial_key", "steps_planned", "flops", "seq_len", "total_batch_size", "run_dir",
    "trial_wall_s",  # the whole trial: Ray Train start-up and teardown + training (wall_s)
    "ray_startup_s",  # trial start until the worker function runs (controller, workers, PG)
    "ray_teardown_s",  # worker function returned until fit() returned
    "setup_s",  # inside train(): model, data and validation batches before the first step
    "slot_wait_s",  # a trial started ahead: its workers up, waiting for a GPU slot
    "trial_started_at",  # Unix time the trial function started (the sweep's timeline)
    "trial_imports_s",  # the trial function's imports (Ray Train, torch) before it starts
]  # fmt: skip


# --- the results table ----------------------------------------------------------------------------


def write_results(rows: list[dict[str, Any]], sweep_dir: Path) -> Path:
    """results.parquet and results.csv, each written to a temporary name and renamed."""
    import pandas as pd

    columns = RESULT_COLUMNS + EXTRA_COLUMNS
    frame = pd.DataFrame(rows)
    for column in columns:
        if column not in frame:
            frame[column] = None
    frame = frame[columns].sort_values(["flops_budget", "depth", "seed"], kind="stable")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    parquet, csv = sweep_dir / "results.parquet", sweep_dir / "results.csv"
    frame.to_parquet(parquet.with_name("results.parquet.partial"), index=False)
    os.replace(parquet.with_name("results.parquet.partial"), parquet)
    frame.to_csv(csv.with_name("results.csv.partial"), index=False)
    os.replace(csv.with_name("results.csv.partial"), csv)
    return parquet


def read_results(sweep_dir: Path) -> list[dict[str, Any]]:
    import pandas as pd

    path = sweep_dir / "results.parquet"
    if not path.is_file():
        return []
    frame = pd.read_parquet(path)
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


def failed_row(params: dict[str, Any], sweep: SweepConfig, trial_id: str, error: str) -> dict:
    depth, budget, seed = int(params["depth"]), float(params["flops_budget"]), int(params["seed"])
    shape = scaling.shape_for_depth(depth, seq_len=sweep.train.seq_len)
    return {
        **scaling.param_counts(shape),
        "trial_key": trial_key(depth, budget, seed),
        "depth": depth,
        "flops_budget": budget,
        "seed": seed,
        "n_layer": shape.n_layer,
        "n_embd": shape.n_embd,
        "n_head": shape.n_head,
        "flops_per_token": scaling.flops_per_token(shape),
        "status": "failed",
        "trial_id": trial_id,
        "error": error[-500:],
    }


def tail_metrics(run_dir: Path, max_bytes: int = 16384) -> dict[str, Any] | None:
    """The newest training-step record of a run's ``metrics.jsonl`` (None if there is none yet).

    Reads only the end of the file, so the driver can poll every running trial cheaply; this is
    how the progress table moves between the (rare) evaluations that reach Tune. Needs the run
    directory to be visible to the driver (one node, or shared storage).
    """
    path = Path(run_dir) / "metrics.jsonl"
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a partial first line of the window, or one being written
        if isinstance(record, dict) and "step" in record and "train_loss" in record:
            return record
    return None


def progress_table(
    sweep: SweepConfig,
    latest: dict[str, dict[str, Any]],
    state: dict[str, str],
    rows: dict[str, dict[str, Any]],
) -> str:
    lines = [f"{'trial':<22} {'depth':>5} {'budget':>8} {'step':>13} {'loss':>7} "
             f"{'tok/s':>10} {'ETA':>7}  status"]  # fmt: skip
    for spec in grid(sweep):
        key = spec["trial_key"]
        m = latest.get(key, {})
        done = rows.get(key)
        status = done.get("status", "ok") if done else state.get(key, "pending")
        step = (done or m).get("step") or (done or {}).get("steps") or 0
        planned = spec["steps"]
        loss = (done or {}).get("final_train_loss") or m.get("train_loss")
        tok_s = (done or m).get("tokens_per_s") or 0.0
        eta = ""
        if not done and tok_s and step:
            eta = f"{(planned - step) * sweep.train.total_batch_size / tok_s:.0f}s"
        lines.append(
            f"{key:<22} {spec['depth']:>5} {spec['flops_budget']:>8.2g} "
            f"{f'{step}/{planned}':>13} {f'{loss:.3f}' if loss else '':>7} "
            f"{f'{tok_s:,.0f}' if tok_s else '':>10} {eta:>7}  {status}"
        )
    finished = sum(1 for k in rows if rows[k].get("status"))
    lines.append(f"{finished}/{len(grid(sweep))} trials finished")
    return "\n".join(lines)
