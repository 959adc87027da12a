"""The Ray glue: a depth × FLOP-budget grid run by Ray Tune, each trial one Ray Train job.

* Ray Tune owns the grid: one trial per (depth, budget, seed), no early-stopping scheduler (the
  isoFLOP fit needs every healthy run's final loss), retries for failed trials, and the
  experiment state that ``--resume`` restores.
* Each trial is a plain function (Train V2 style) that builds and fits one ``TorchTrainer``. Its
  workers call ``nanogpt.train.train(cfg, report)``; the optimizer syncs gradients itself, so
  there is no DDP and no ``prepare_model``. Metrics reach Tune through Train's
  ``TuneReportCallback``; the final summary comes back as the worker function's return value.
* Only diverging runs end early, and they end themselves inside the worker (non-finite loss, or
  a smoothed loss ``blowup_factor`` times its best after warmup; every rank sees the same
  all-reduced loss, so all agree). A diverged trial returns normally: a row with status
  ``diverged``, never retried.
* Faults: Train's ``FailureConfig`` restarts a dead worker group, and the worker resumes from the
  trial's last checkpoint (``resume="auto"`` in the trial's run directory); Tune's
  ``FailureConfig`` retries a failed trial the same way; a killed driver continues with
  ``--resume`` (Tune restores the experiment: finished trials stay finished).
* Results: one row per trial, written atomically to ``results.parquet`` and ``results.csv`` as
  trials finish; at the end the scaling-law fits and plots are made from them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nanogpt import scaling
from nanogpt.config import TrainConfig

RESULT_COLUMNS = [
    "depth", "flops_budget", "seed", "n_layer", "n_embd", "n_head", "params_total",
    "params_nonembedding", "params_scaling", "tokens", "steps", "flops_per_token",
    "final_train_loss", "final_val_loss", "val_bpb", "status", "wall_s", "tokens_per_s", "mfu",
    "gpu", "trial_id", "checkpoint",
]  # fmt: skip
EXTRA_COLUMNS = [
    "trial_key", "steps_planned", "flops", "seq_len", "total_batch_size", "run_dir",
    "trial_wall_s",  # the whole trial: Ray Train start-up and teardown + training (wall_s)
]  # fmt: skip

# MFU of a plain GPT at each DEPTH on one H200 (bf16, torch.compile, 1024 context, 32 sequences
# per step), measured 2026-11 (see ../shared/DESIGN.md and docs/benchmarks.md). The dry run turns
# these into an estimated time per trial; --throughput overrides them with your own measurement.
MEASURED_H200_MFU = {2: 0.16, 4: 0.27, 6: 0.35, 12: 0.45}
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
    max_concurrent: int = 0  # 0: as many as the cluster's resources allow
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
        if checkpoint_dir is not None and rank == 0:
            checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir)
        ray.train.report(_json_safe(metrics), checkpoint=checkpoint)

    log_path = run_dir / ("train.log" if rank == 0 else f"train_rank{rank}.log")
    run_dir.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as log, contextlib.redirect_stdout(log):
        summary = train(cfg, report)
    return _json_safe(summary)


# --- one Tune trial = one TorchTrainer ------------------------------------------------------------


def trial_function(params: dict[str, Any], sweep_settings: dict[str, Any]) -> dict[str, Any]:
    """Build and fit the trial's TorchTrainer; return its row of the results table."""
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
    base.update(sweep_settings["trial_overrides"].get(key, {}))
    use_gpu = sweep_settings["use_gpu"]
    if use_gpu:
        workers = sweep_settings["gpus_per_trial"]
        per_worker = {"GPU": 1.0 / sweep_settings["trials_per_gpu"], "CPU": 1}
    else:
        workers = 1
        per_worker = {"CPU": sweep_settings["cpus_per_trial"]}
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"cfg": base, "cpus_per_worker": per_worker.get("CPU", 1)},
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
    started = time.time()
    result = trainer.fit()
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
    )
    return summary


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


# --- the driver: progress table and results as trials finish -------------------------------------


def _make_callback(sweep: SweepConfig, rows: dict[str, dict[str, Any]]):
    from ray.tune import Callback

    class SweepProgress(Callback):
        """Keeps the results table current and prints a live progress table."""

        def __init__(self) -> None:
            self.latest: dict[str, dict[str, Any]] = {}
            self.state: dict[str, str] = {}
            self.last_print = 0.0
            self.tty = sys.stdout.isatty()

        def _key(self, trial) -> str:
            c = trial.config
            return trial_key(int(c["depth"]), float(c["flops_budget"]), int(c["seed"]))

        def on_trial_start(self, iteration, trials, trial, **info):
            self.state[self._key(trial)] = "running"
            self._print(trials)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            key = self._key(trial)
            if "step" in result:
                self.latest[key] = dict(result)
            self._print(trials)

        def on_trial_complete(self, iteration, trials, trial, **info):
            key = self._key(trial)
            result = dict(trial.last_result or {})
            row = {k: v for k, v in result.items() if k in RESULT_COLUMNS + EXTRA_COLUMNS}
            row.setdefault("trial_id", trial.trial_id)
            rows[key] = row
            self.state[key] = row.get("status", "ok")
            write_results(list(rows.values()), sweep.sweep_dir)
            self._print(trials, force=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            key = self._key(trial)
            error = str(getattr(trial, "error_msg", "") or "see the trial's error.txt")
            rows[key] = failed_row(trial.config, sweep, trial.trial_id, error)
            self.state[key] = "failed"
            write_results(list(rows.values()), sweep.sweep_dir)
            self._print(trials, force=True)

        def _print(self, trials, force: bool = False) -> None:
            now = time.time()
            if not force and now - self.last_print < (2.0 if self.tty else 15.0):
                return
            self.last_print = now
            print(progress_table(sweep, self.latest, self.state, rows), flush=True)

    return SweepProgress()


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


def _capacity(sweep: SweepConfig, resources: dict[str, float], use_gpu: bool) -> int:
    if use_gpu:
        return max(1, int(resources.get("GPU", 0) * sweep.trials_per_gpu // sweep.gpus_per_trial))
    return max(1, int(resources.get("CPU", 1) // sweep.cpus_per_trial))


def run_sweep(sweep: SweepConfig) -> dict[str, Any]:
    """Run (or resume) the sweep; returns the results rows and where things were written."""
    import ray
    from ray import tune

    from nanogpt import data as data_mod

    sweep_dir = sweep.sweep_dir
    sweep_dir.mkdir(parents=True, exist_ok=True)
    train_cfg = sweep.train
    if train_cfg.data is None:
        train_cfg = dataclasses.replace(train_cfg, data=str(data_mod.ensure_shakespeare()))
    else:
        train_cfg = dataclasses.replace(
            train_cfg, data=str(data_mod.resolve_data_dir(train_cfg.data).resolve())
        )
    for spec in grid(sweep):
        if spec["steps"] < 1:
            raise ValueError(
                f"trial {spec['trial_key']}: a budget of {spec['flops_budget']:.3g} FLOPs is too "
                f"small for one step of {sweep.train.total_batch_size:,} tokens at DEPTH "
                f"{spec['depth']}; raise the budget or lower --total-batch-size"
            )

    env_vars = {
        # Workers report every evaluation; poll them quickly rather than every 2 s.
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": os.environ.get(
            "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25"
        ),
        "WANDB_MODE": os.environ.get("WANDB_MODE", train_cfg.wandb),
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")) if p
        ),
    }
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=sweep.address,
            runtime_env={"env_vars": env_vars},
            log_to_driver=False,
            configure_logging=True,
            logging_level="WARNING",
        )
    try:
        resources = ray.cluster_resources()
        use_gpu = resources.get("GPU", 0) > 0
        capacity = _capacity(sweep, resources, use_gpu)
        concurrent = min(sweep.max_concurrent or capacity, capacity)
        dashboard = ray.get_runtime_context().dashboard_url if hasattr(
            ray.get_runtime_context(), "dashboard_url") else None  # fmt: skip
        print(
            f"sweep {sweep.name!r} in {sweep_dir}: {len(grid(sweep))} trials, up to {concurrent} "
            f"at a time ({'GPU' if use_gpu else 'CPU'}: {resources.get('GPU', 0):g} GPUs, "
            f"{resources.get('CPU', 0):g} CPUs)"
            + (f"; Ray dashboard at http://{dashboard}" if dashboard else ""),
            flush=True,
        )
        settings = {
            "name": sweep.name,
            "train": dataclasses.asdict(train_cfg),
            "runs_dir": str(sweep_dir / "runs"),
            "ray_storage": sweep.ray_storage,
            "use_gpu": use_gpu,
            "gpus_per_trial": sweep.gpus_per_trial,
            "trials_per_gpu": sweep.trials_per_gpu,
            "cpus_per_trial": sweep.cpus_per_trial,
            "max_worker_restarts": sweep.max_worker_restarts,
            "trial_overrides": sweep.trial_overrides,
        }
        # The trial function holds only a sliver of CPU: the TorchTrainer's workers hold the
        # real resources, and max_concurrent_trials keeps Tune from queueing more than fit.
        trainable = tune.with_resources(
            tune.with_parameters(trial_function, sweep_settings=settings), {"CPU": 0.01}
        )
        rows = {r["trial_key"]: r for r in read_results(sweep_dir) if r.get("trial_key")}
        callback = _make_callback(sweep, rows)
        experiment = Path(sweep.ray_storage) / f"{sweep.name}-tune"
        if sweep.resume and tune.Tuner.can_restore(str(experiment)):
            print(f"resuming the sweep from {experiment}", flush=True)
            tuner = tune.Tuner.restore(
                str(experiment), trainable, resume_unfinished=True, resume_errored=True
            )
            # restore() keeps the original run config; attach this driver's callback
            tuner._local_tuner._run_config.callbacks = [callback]  # noqa: SLF001
        else:
            if experiment.exists() and not sweep.resume and "://" not in sweep.ray_storage:
                raise FileExistsError(
                    f"{experiment} already holds a sweep named {sweep.name!r}; pass --resume to "
                    "continue it, or --name to start another"
                )
            tuner = tune.Tuner(
                trainable,
                param_space={
                    "depth": tune.grid_search(sweep.depths),
                    "flops_budget": tune.grid_search(sweep.flops),
                    "seed": tune.grid_search(sweep.seeds),
                },
                tune_config=tune.TuneConfig(max_concurrent_trials=concurrent, reuse_actors=False),
                run_config=tune.RunConfig(
                    name=f"{sweep.name}-tune",
                    storage_path=sweep.ray_storage,
                    failure_config=tune.FailureConfig(max_failures=sweep.max_trial_retries),
                    callbacks=[callback],
                    verbose=0,
                ),
            )
        started = time.time()
        results = tuner.fit()
        for result in results:
            if result.metrics and result.metrics.get("trial_key"):
                key = result.metrics["trial_key"]
                row = {
                    k: v for k, v in result.metrics.items() if k in RESULT_COLUMNS + EXTRA_COLUMNS
                }
                rows[key] = {**rows.get(key, {}), **row}
        table_path = write_results(list(rows.values()), sweep_dir)
        wall = time.time() - started
    finally:
        if started_here:
            ray.shutdown()
    statuses = {}
    for row in rows.values():
        statuses[row.get("status")] = statuses.get(row.get("status"), 0) + 1
    print(
        f"sweep done in {wall:.0f}s: {statuses}; results: {table_path} (+ results.csv)", flush=True
    )
    outputs: dict[str, Any] = {
        "results": str(table_path),
        "rows": list(rows.values()),
        "wall_s": wall,
    }
    if sweep.analyze:
        outputs.update(analyze(sweep_dir))
    return outputs


def analyze(sweep_dir: Path, n_bootstrap: int = 200) -> dict[str, Any]:
    """Scaling-law fits (printed, and saved as fits.json) and plots from the sweep's results.

    A sweep too small to fit (one budget, too few healthy points) still finishes: the reason
    is printed and the rest of what can be drawn is drawn.
    """
    import warnings

    from nanogpt import plotting
    from nanogpt.scaling_laws import fit_isoflop, fit_parametric, load_results
    from nanogpt.scaling_laws.cli import format_isoflop, format_parametric
    from nanogpt.scaling_laws.results import ScalingLawError

    out: dict[str, Any] = {}
    try:
        data, message = load_results(sweep_dir)
    except ScalingLawError as e:
        print(f"analysis skipped: {e}", flush=True)
        return {"analysis_error": str(e)}
    print(f"analysis of {sweep_dir / 'results.parquet'}: {message}", flush=True)
    fits: dict[str, Any] = {"message": message}
    for name, fit_fn, fmt in (
        ("approach2", lambda: fit_isoflop(data, n_bootstrap=n_bootstrap), format_isoflop),
        ("approach3", lambda: fit_parametric(data, n_bootstrap=n_bootstrap), format_parametric),
    ):
        try:
            fit = fit_fn()
        except ScalingLawError as e:
            print(f"{name}: not fitted: {e}", flush=True)
            fits[name] = {"error": str(e)}
            continue
        print(fmt(fit), flush=True)
        fits[name] = fit.to_dict()
    fits_path = sweep_dir / "fits.json"
    tmp = fits_path.with_name("fits.json.partial")
    tmp.write_text(dump_json(fits))
    os.replace(tmp, fits_path)
    out["fits"] = str(fits_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            written = plotting.make_all_plots(
                sweep_dir, sweep_dir / "plots", n_bootstrap=n_bootstrap
            )
        except ScalingLawError as e:
            written = []
            print(f"plots skipped: {e}", flush=True)
    for w in caught:
        print(f"plots: {w.message}", flush=True)
    out["plots"] = [str(p) for p in written]
    print(f"fits: {fits_path}; plots: {', '.join(out['plots']) or 'none'}", flush=True)
    return out


def clean_sweep(sweep: SweepConfig) -> None:
    """Remove a sweep's directory and Ray experiment (for --fresh)."""
    shutil.rmtree(sweep.sweep_dir, ignore_errors=True)
    if "://" not in sweep.ray_storage:
        for child in Path(sweep.ray_storage).glob(f"{sweep.name}-*"):
            shutil.rmtree(child, ignore_errors=True)


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)
