"""One trial of the sweep: the Tune trial function that builds and fits a ``TorchTrainer`` and
writes the trial's row, and the function each of its Ray Train workers runs. Ray is imported
inside the functions only.

A trial reports to Tune along one path: the trial function's return value (its row). Nothing
forwards intermediate results to Tune (no ``TuneReportCallback``): the driver's progress table
tails each run's metrics.jsonl, and divergence is stopped inside the worker. In Ray 2.60 a Tune
function trial that both forwards Train results through ``TuneReportCallback`` and returns a
value can deadlock: the trial's main thread forwards the callback's last result into the
one-slot result queue that the runner thread has already filled with the return value, and
only the main thread drains that queue (docs/README_SWEEPS.md, "Ray 2.60 notes").
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nanogpt.config import TrainConfig
from nanogpt.sweep.grid import trial_key, trial_spec
from nanogpt.sweep.results import trial_row, write_row
from nanogpt.sweep.trial_eval import TrialEval, evaluate_or_note

# Called as hook(metrics, run_dir, rank) at every report inside a trial's worker, before Ray
# hears of it. The fault-tolerance tests kill a worker from one (tests/test_sweep.py); nothing in
# the package sets it.
ReportHook = Callable[[dict[str, Any], Path, int], None]


@dataclass(frozen=True)
class TrialSettings:
    """Everything a trial needs besides its swept values; Tune passes it to every trial."""

    sweep_name: str
    train: TrainConfig  # the base training config; data is an absolute dataset path
    vocab_size: int  # of the dataset's tokenizer (for the trial's plan)
    train_tokens: int  # in the dataset's train split (for the epochs column)
    runs_dir: str  # each trial runs in runs_dir/<trial_key>
    ray_storage: str
    use_gpu: bool
    gpus_per_trial: int
    gpu_per_worker: float  # 1 / trials_per_gpu: Ray packs that many trials onto one GPU
    cpus_per_trial: float
    max_worker_restarts: int
    # True: the Tune trial process runs train() itself (one CPU worker: no process group to
    # form, so Ray Train's controller and worker actors would only add start-up); False: a
    # TorchTrainer runs it over Ray Train workers (GPUs, or a forced ``--trial-runner ray-train``)
    in_process: bool = False
    trial_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    report_hook: ReportHook | None = None
    # After training, rank 0 scores the final model on this suite on the trial's device
    evaluation: TrialEval = field(default_factory=TrialEval)

    def trial_config(self, depth: int, budget: float, seed: int) -> TrainConfig:
        key = trial_key(depth, budget, seed)
        overrides = self.trial_overrides.get(key, {})
        return dataclasses.replace(
            self.train,
            depth=depth,
            target_flops=budget,
            num_iterations=0,
            seed=seed,
            run_name=key,
            out_dir=self.runs_dir,
            resume="auto",
            wandb_group=self.train.wandb_group or self.sweep_name,  # one wandb group per sweep
            **overrides,
        )


# --- inside a Ray Train worker ------------------------------------------------------------------


def train_worker(loop_config: dict[str, Any]) -> dict[str, Any]:
    """The per-worker function of a trial's TorchTrainer: ``train()`` with Ray's checkpoints."""
    entered_at = time.time()  # worker process up, process group ready: Ray's start-up is done
    import ray.train
    import torch

    from nanogpt import checkpoint as ckpt
    from nanogpt.train import train

    cfg = TrainConfig(**loop_config["cfg"])
    evaluation = TrialEval(**loop_config.get("evaluation", {}))
    hook: ReportHook | None = loop_config.get("report_hook")
    rank = ray.train.get_context().get_world_rank()
    if torch.cuda.is_available():
        import ray.train.torch

        cfg = dataclasses.replace(cfg, device=str(ray.train.torch.get_device()))
    else:
        cfg = dataclasses.replace(cfg, device="cpu")
        torch.set_num_threads(max(1, int(loop_config.get("cpus_per_worker", 1))))
    run_dir = Path(cfg.out_dir) / (cfg.run_name or "run")

    # A restarted worker resumes from the trial's newest checkpoint: the run directory's own if
    # this node can see it, else the one Ray kept in its storage (another node, no shared disk).
    if ckpt.find_latest(run_dir) is None:
        ray_ckpt = ray.train.get_checkpoint()
        if ray_ckpt is not None:
            cfg = dataclasses.replace(cfg, resume=ray_ckpt.to_directory())

    def report(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        if hook is not None:
            hook(metrics, run_dir, rank)
        # Ray Train keeps the newest checkpoint to restart a dead worker group. The last step's
        # stays in the run directory only: after it there is nothing left to restart.
        final = metrics.get("step") is not None and metrics.get("step") == metrics.get(
            "steps_planned"
        )
        checkpoint = None
        if checkpoint_dir is not None and rank == 0 and not final:
            checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir)
        ray.train.report(
            {k: v for k, v in metrics.items() if isinstance(v, int | float | str)},
            checkpoint=checkpoint,
        )

    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / ("train.log" if rank == 0 else f"train_rank{rank}.log")
    with log_path.open("a") as log, contextlib.redirect_stdout(log):
        summary = train(cfg, report)
        if rank == 0:  # the other ranks are done; rank 0 evaluates alone (no collectives)
            summary.update(evaluate_or_note(summary, run_dir, evaluation, cfg.device))
    summary["worker_entered_at"] = entered_at
    summary["worker_finished_at"] = time.time()
    summary["node_id"] = ray.get_runtime_context().get_node_id()  # where Ray placed rank 0
    return summary


def train_in_process(
    cfg: TrainConfig, hook: ReportHook | None, cpus: float, evaluation: TrialEval | None = None
) -> dict[str, Any]:
    """Run ``train()`` in the Tune trial's own process (a one-worker CPU trial).

    A killed process fails the trial; Tune's FailureConfig retries it and ``resume="auto"``
    continues from the run directory's newest checkpoint."""
    entered_at = time.time()
    import ray
    import torch

    from nanogpt.train import train

    torch.set_num_threads(max(1, int(cpus)))
    cfg = dataclasses.replace(cfg, device="cpu")
    run_dir = Path(cfg.out_dir) / (cfg.run_name or "run")

    def report(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        if hook is not None:
            hook(metrics, run_dir, 0)

    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "train.log").open("a") as log, contextlib.redirect_stdout(log):
        summary = train(cfg, report)
        summary.update(evaluate_or_note(summary, run_dir, evaluation or TrialEval(), "cpu"))
    summary["worker_entered_at"] = entered_at
    summary["worker_finished_at"] = time.time()
    summary["node_id"] = ray.get_runtime_context().get_node_id()
    return summary


# --- one Tune trial = one TorchTrainer ------------------------------------------------------------


def trial_function(params: dict[str, Any], settings: TrialSettings) -> dict[str, Any]:
    """Run the trial (in this process, or as a TorchTrainer), write its row file, and return
    the row (Tune's one result)."""
    entered = time.time()
    import ray.tune

    point = params["point"]  # the swept values: {"depth", "flops_budget", "seed"}
    depth, budget, seed = int(point["depth"]), float(point["flops_budget"]), int(point["seed"])
    key = trial_key(depth, budget, seed)
    cfg = settings.trial_config(depth, budget, seed)
    started = time.time()
    if settings.in_process:
        summary = train_in_process(
            cfg, settings.report_hook, settings.cpus_per_trial, settings.evaluation
        )
    else:
        summary = _fit_torch_trainer(cfg, key, settings)
    finished = time.time()
    outcome = {
        **summary,
        "seq_len": cfg.seq_len,
        "total_batch_size": cfg.total_batch_size,
        "trial_id": ray.tune.get_context().get_trial_id(),
        "trial_wall_s": finished - started,
        "trial_started_at": started,
        "trial_imports_s": started - entered,
        # Ray's part of the trial: before the worker function ran, and after it returned.
        "ray_startup_s": summary.get("worker_entered_at", started) - started,
        "ray_teardown_s": finished - summary.get("worker_finished_at", finished),
    }
    spec = trial_spec(depth, budget, seed, cfg, settings.vocab_size, settings.train_tokens)
    row = trial_row(spec, outcome)
    write_row(Path(settings.runs_dir) / key, row)
    return {k: v for k, v in row.items() if v is None or isinstance(v, int | float | str)}


def _fit_torch_trainer(cfg: TrainConfig, key: str, settings: TrialSettings) -> dict[str, Any]:
    """Fit a TorchTrainer over the trial's Ray Train workers; return rank 0's summary."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if settings.use_gpu:
        workers = settings.gpus_per_trial
        per_worker = {"GPU": settings.gpu_per_worker, "CPU": 1}
    else:
        workers = 1
        per_worker = {"CPU": settings.cpus_per_trial}
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={
            "cfg": dataclasses.asdict(cfg),
            "report_hook": settings.report_hook,
            "cpus_per_worker": per_worker["CPU"],
            "evaluation": dataclasses.asdict(settings.evaluation),
        },
        torch_config=TorchConfig(backend="nccl" if settings.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=workers, use_gpu=settings.use_gpu, resources_per_worker=per_worker
        ),
        run_config=RunConfig(
            name=f"{settings.sweep_name}-{key}",
            storage_path=settings.ray_storage,
            failure_config=FailureConfig(max_failures=settings.max_worker_restarts),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
        ),
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error  # Tune retries the trial (its FailureConfig); it resumes from disk
    return dict(result.return_value or {})


def gpu_share(trials_per_gpu: int) -> float:
    """The GPU fraction each worker asks Ray for so that ``trials_per_gpu`` trials share a GPU.
    Ray counts resources in units of 1e-4: round down, or 3 shares of 0.3334 would not fit."""
    return math.floor(1e4 / trials_per_gpu) / 1e4
