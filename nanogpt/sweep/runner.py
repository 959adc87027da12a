"""The driver: run (or resume) a sweep with Ray Tune, keep the results table current as trials
finish, then fit the scaling laws and draw the plots (``analyze``); ``clean_sweep`` for
--fresh. Ray is imported inside the functions only.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from nanogpt.sweep.grid import SweepConfig, grid, trial_key
from nanogpt.sweep.ray_trial import trial_function
from nanogpt.sweep.results import (
    EXTRA_COLUMNS,
    RESULT_COLUMNS,
    failed_row,
    progress_table,
    read_results,
    tail_metrics,
    write_results,
)
from nanogpt.sweep.slots import release_slot, start_board

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
            self.state[self._key(trial)] = "starting"  # Ray Train's start-up, then "running"
            self._print(trials)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            key = self._key(trial)
            if "step" in result:
                self.latest[key] = dict(result)
                self.state[key] = "running"
            self._print(trials)

        def on_step_end(self, iteration, trials, **info):
            self._print(trials)  # throttled; moves the table between Tune results

        def _poll_run_dirs(self) -> None:
            """Newer progress from the running trials' metrics.jsonl (every logged step)."""
            for key, state in self.state.items():
                if state not in ("starting", "standby", "running"):
                    continue
                if (sweep.sweep_dir / "runs" / key / ".standby").exists():
                    self.state[key] = "standby"  # started ahead: up, waiting for a GPU slot
                    continue
                record = tail_metrics(sweep.sweep_dir / "runs" / key)
                if record is None:
                    continue
                if record.get("step", 0) > self.latest.get(key, {}).get("step", 0):
                    self.latest[key] = record
                self.state[key] = "running"

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
            # A trial whose process died could not give its GPU slot back; a retry asks again.
            release_slot(sweep.name, key)
            self._print(trials, force=True)

        def _print(self, trials, force: bool = False) -> None:
            now = time.time()
            if not force and now - self.last_print < (2.0 if self.tty else 15.0):
                return
            self.last_print = now
            self._poll_run_dirs()
            print(progress_table(sweep, self.latest, self.state, rows), flush=True)

    return SweepProgress()


def _capacity(sweep: SweepConfig, resources: dict[str, float], use_gpu: bool) -> int:
    if use_gpu:
        return max(1, int(resources.get("GPU", 0) * sweep.trials_per_gpu // sweep.gpus_per_trial))
    return max(1, int(resources.get("CPU", 1) // sweep.cpus_per_trial))


def _prefetch(sweep: SweepConfig, resources: dict[str, float], use_gpu: bool) -> int:
    """Trials to run ahead of a free slot (see SweepConfig.prefetch_trials)."""
    if sweep.prefetch_trials is not None:
        if sweep.prefetch_trials < 0:
            raise ValueError(f"--prefetch-trials {sweep.prefetch_trials}: must be >= 0")
        return sweep.prefetch_trials
    return 2 * max(1, int(resources.get("GPU", 0)) // sweep.gpus_per_trial) if use_gpu else 0


def _gpu_shares(sweep: SweepConfig, resources: dict[str, float], ahead: int) -> int:
    """Trials that fit on one GPU at once: the K that train (--trials-per-gpu) plus this GPU's
    part of the trials started ahead, which wait on the slot board with their workers up."""
    gpus = max(1, int(resources.get("GPU", 0)))
    return sweep.trials_per_gpu + math.ceil(ahead * sweep.gpus_per_trial / gpus)


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
            p for p in (str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")) if p
        ),
    }
    started_here = not ray.is_initialized()
    init_started = time.time()
    if started_here:
        ray.init(
            address=sweep.address,
            runtime_env={"env_vars": env_vars},
            log_to_driver=False,
            configure_logging=True,
            logging_level="WARNING",
        )
    ray_init_s = time.time() - init_started
    try:
        resources = ray.cluster_resources()
        use_gpu = resources.get("GPU", 0) > 0
        capacity = _capacity(sweep, resources, use_gpu)
        ahead = _prefetch(sweep, resources, use_gpu)
        concurrent = min(sweep.max_concurrent or capacity + ahead, capacity + ahead)
        dashboard = ray.get_runtime_context().dashboard_url if hasattr(
            ray.get_runtime_context(), "dashboard_url") else None  # fmt: skip
        print(
            f"sweep {sweep.name!r} in {sweep_dir}: {len(grid(sweep))} trials, up to "
            f"{min(concurrent, capacity)} training at a time"
            + (f" and {concurrent - capacity} starting ahead" if concurrent > capacity else "")
            + f" ({'GPU' if use_gpu else 'CPU'}: {resources.get('GPU', 0):g} GPUs, "
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
            "cpus_per_trial": sweep.cpus_per_trial,
            "max_worker_restarts": sweep.max_worker_restarts,
            "trial_overrides": sweep.trial_overrides,
            # Trials started ahead wait with their workers up, on a board of GPU slots (on CPUs
            # there are no GPU slots: Ray holds a trial back until a CPU is free)
            "standby": sweep.name if concurrent > capacity else None,
            # Each GPU fits its K training trials and its share of those started ahead
            "gpu_shares": _gpu_shares(sweep, resources, concurrent - capacity) if use_gpu else None,
        }
        if settings["standby"]:
            board = start_board(sweep.name, sweep.trials_per_gpu)  # noqa: F841 (lives with us)
        # The trial function holds no CPU or GPU: the TorchTrainer's workers hold the real
        # resources, and max_concurrent_trials keeps Tune from queueing more than fit. Tune
        # refuses an empty request, so it asks for a little memory instead; even 0.01 CPU
        # would leave N trials of N CPUs one CPU short, and the last trial's worker would wait
        # for another trial to finish (or for Train's 60 s start timeout, then a retry).
        trainable = tune.with_resources(
            tune.with_parameters(trial_function, sweep_settings=settings),
            {"CPU": 0, "memory": 64 * 2**20},
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
                # Reusing the trial processes: the next trial starts ~0.1 s after one completes
                # instead of after a new process has started and imported Ray Train and torch
                # (3.7 s on the 2-core CPU, ~10 s on an H200 host).
                tune_config=tune.TuneConfig(max_concurrent_trials=concurrent, reuse_actors=True),
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
        shutdown_started = time.time()
        if started_here:
            ray.shutdown()
        ray_shutdown_s = time.time() - shutdown_started
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
        "slots": capacity,
        "prefetch": concurrent - capacity,
        "ray_init_s": ray_init_s,
        "ray_shutdown_s": ray_shutdown_s,
    }
    if sweep.analyze:
        outputs.update(analyze(sweep_dir))
    return outputs


def analyze(sweep_dir: Path, n_bootstrap: int = 1000) -> dict[str, Any]:
    """Scaling-law fits (printed, and saved as fits.json) and plots from the sweep's results.

    One call into nanogpt.scaling_laws.analyze_results: it fits once, writes fits.json, draws
    the plots from that fits object and prints the report, with the same defaults as
    `python -m nanogpt.scaling_laws`, so both give the same numbers. A sweep too small to fit
    (one budget, too few healthy points) still finishes: the reason is printed and the rest of
    what can be drawn is drawn.
    """
    from nanogpt.scaling_laws import analyze_results

    out = analyze_results(Path(sweep_dir), Path(sweep_dir), n_bootstrap=n_bootstrap)
    out.pop("fits_object", None)
    return out


def clean_sweep(sweep: SweepConfig) -> None:
    """Remove a sweep's directory and Ray experiment (for --fresh)."""
    shutil.rmtree(sweep.sweep_dir, ignore_errors=True)
    if "://" not in sweep.ray_storage:
        for child in Path(sweep.ray_storage).glob(f"{sweep.name}-*"):
            shutil.rmtree(child, ignore_errors=True)


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)
