"""One trial of the sweep: the Tune trial function that builds and fits a ``TorchTrainer``, and
the function each of its Ray Train workers runs. Ray is imported inside the functions only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any

from nanogpt.config import TrainConfig
from nanogpt.sweep.grid import trial_key

# --- inside a Ray Train worker ------------------------------------------------------------------


def _json_safe(metrics: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out[key] = value
    return out


def _crash_once(cfg_dict: dict[str, Any], run_dir: Path, step: int) -> None:
    """Kill this worker process at ``step`` the first time only (fault-tolerance tests)."""
    marker = run_dir / f".crashed_at_{step}"
    if not marker.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text("killed once on purpose to test recovery\n")
        os.kill(os.getpid(), 9)


def train_worker(loop_config: dict[str, Any]) -> dict[str, Any]:
    """The per-worker function of a trial's TorchTrainer."""
    entered_at = time.time()  # worker process up, process group ready: Ray's start-up is done
    import ray.train
    import torch

    from nanogpt.train import train

    settings = dict(loop_config["cfg"])
    crash_at = settings.pop("debug_crash_at_step", None)
    cfg = TrainConfig(**settings)
    context = ray.train.get_context()
    rank = context.get_world_rank()
    if torch.cuda.is_available():
        import ray.train.torch

        cfg = dataclasses.replace(cfg, device=str(ray.train.torch.get_device()))
    else:
        cfg = dataclasses.replace(cfg, device="cpu")
        torch.set_num_threads(max(1, int(loop_config.get("cpus_per_worker", 1))))
    run_dir = Path(cfg.out_dir) / (cfg.run_name or "run")

    # A restarted worker resumes from the trial's newest checkpoint: the run directory's own if
    # this node can see it, else the one Ray kept in its storage (another node, no shared disk).
    from nanogpt import checkpoint as ckpt

    if ckpt.find_latest(run_dir) is None:
        ray_ckpt = ray.train.get_checkpoint()
        if ray_ckpt is not None:
            local = ray_ckpt.to_directory()
            cfg = dataclasses.replace(cfg, resume=local)

    def report(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        if crash_at is not None and metrics.get("step", 0) >= crash_at and rank == 0:
            _crash_once(settings, run_dir, crash_at)
        checkpoint = None
        # The last step's checkpoint stays in the run directory only: Ray restores from its copy
        # to restart a worker, and after the last step there is nothing left to restart, so
        # copying it into Ray's storage would only cost time at the end of every trial.
        final = metrics.get("step") is not None and metrics.get("step") == metrics.get(
            "steps_planned"
        )
        if checkpoint_dir is not None and rank == 0 and not final:
            checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir)
        ray.train.report(_json_safe(metrics), checkpoint=checkpoint)

    run_dir.mkdir(parents=True, exist_ok=True)
    standby = loop_config.get("standby_board")
    slot_wait = 0.0
    if standby:
        # Started ahead of a free slot: everything Ray starts is up; wait for a training slot.
        from nanogpt.sweep.slots import release_slot, wait_for_slot

        marker = run_dir / ".standby"  # the driver's progress table shows "standby"
        if rank == 0:
            marker.write_text("workers up, waiting for a GPU slot\n")
        try:
            slot_wait = wait_for_slot(standby, cfg.run_name or "run")
        finally:
            marker.unlink(missing_ok=True)
    log_path = run_dir / ("train.log" if rank == 0 else f"train_rank{rank}.log")
    try:
        with log_path.open("a") as log, contextlib.redirect_stdout(log):
            summary = train(cfg, report)
    finally:
        if standby and rank == 0:
            release_slot(standby, cfg.run_name or "run")  # the next trial starts during teardown
    summary["slot_wait_s"] = slot_wait
    summary["worker_entered_at"] = entered_at
    summary["worker_finished_at"] = time.time()
    return _json_safe(summary)


# --- one Tune trial = one TorchTrainer ------------------------------------------------------------


def trial_function(params: dict[str, Any], sweep_settings: dict[str, Any]) -> dict[str, Any]:
    """Build and fit the trial's TorchTrainer; return its row of the results table."""
    entered = time.time()
    import ray.train
    import ray.tune
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    depth, budget, seed = int(params["depth"]), float(params["flops_budget"]), int(params["seed"])
    key = trial_key(depth, budget, seed)
    base = dict(sweep_settings["train"])
    base.update(
        depth=depth,
        target_flops=budget,
        num_iterations=0,
        seed=seed,
        run_name=key,
        out_dir=sweep_settings["runs_dir"],
        resume="auto",
    )
    if base.get("wandb_group") is None:
        base["wandb_group"] = sweep_settings["name"]  # one wandb group per sweep
    base.update(sweep_settings["trial_overrides"].get(key, {}))
    use_gpu = sweep_settings["use_gpu"]
    if use_gpu:
        workers = sweep_settings["gpus_per_trial"]
        # With standby trials, more trials fit on a GPU than train on it (see slots.py). Ray
        # counts resources in units of 1e-4: round down, or 6 shares of 0.1667 would not fit.
        per_worker = {"GPU": math.floor(1e4 / sweep_settings["gpu_shares"]) / 1e4, "CPU": 1}
    else:
        workers = 1
        per_worker = {"CPU": sweep_settings["cpus_per_trial"]}
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={
            "cfg": base,
            "cpus_per_worker": per_worker.get("CPU", 1),
            "standby_board": sweep_settings.get("standby"),
        },
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=workers, use_gpu=use_gpu, resources_per_worker=per_worker
        ),
        run_config=RunConfig(
            name=f"{sweep_settings['name']}-{key}",
            storage_path=sweep_settings["ray_storage"],
            failure_config=FailureConfig(max_failures=sweep_settings["max_worker_restarts"]),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            callbacks=[TuneReportCallback()],
        ),
    )
    if sweep_settings.get("standby"):
        # A trial started ahead of a free slot waits for its placement group for as long as
        # another trial trains; Train's default 60 s start timeout would tear the wait down and
        # start it again every minute. (The group's size is fixed and fits the cluster: Train
        # refuses at once a request the cluster can never hold.)
        os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", str(7 * 24 * 3600))
    started = time.time()
    try:
        result = trainer.fit()
    finally:
        if sweep_settings.get("standby"):
            from nanogpt.sweep.slots import release_slot

            release_slot(sweep_settings["standby"], key)  # also when the trial failed for good
    if result.error is not None:
        raise result.error  # Tune retries the trial (its FailureConfig); it resumes from disk
    summary = dict(result.return_value or {})
    summary.update(
        trial_key=key,
        depth=depth,
        flops_budget=budget,
        seed=seed,
        seq_len=base["seq_len"],
        total_batch_size=base["total_batch_size"],
        trial_id=ray.tune.get_context().get_trial_id(),
        trial_wall_s=time.time() - started,
        trial_started_at=started,
        trial_imports_s=started - entered,
        # Ray's part of the trial: before the worker function ran, and after it returned.
        ray_startup_s=summary.pop("worker_entered_at", started) - started,
        ray_teardown_s=time.time() - summary.pop("worker_finished_at", time.time()),
    )
    return summary
