"""The driver, top to bottom: grid -> trials (Ray Tune, one Ray Train job each) -> rows (one file
per trial) -> table (their merge) -> fits -> plots. Ray is imported inside the functions only.

``run_sweep`` plans the grid against its dataset and refuses what cannot run (data not prepared,
a budget too small for one step, trials that would repeat their data) before Ray starts. Tune
then runs every trial that has no finished row yet: that is also how ``--resume`` works, with
no Tune experiment state to restore (a trial resumes its own training from its checkpoint).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from nanogpt.sweep.grid import (
    Dataset,
    SweepConfig,
    check_plan,
    describe_dataset,
    plan,
    trial_key,
)
from nanogpt.sweep.ray_trial import TrialSettings, gpu_share, trial_function
from nanogpt.sweep.results import (
    collect_rows,
    progress_table,
    tail_metrics,
    trial_row,
    write_row,
    write_table,
)
from nanogpt.sweep.trial_eval import plan_trial_eval, resolve_bundle

FINISHED = ("ok", "diverged")  # a trial with a row of this status is not run again


# --- the driver's view of running trials -------------------------------------------------------


class SweepWatch:
    """What the driver knows of each trial: its state, its newest logged step, and its row.

    It rewrites the results table whenever a new row file appears, so the table is complete
    whatever Tune reports; and it notices a trial whose run has finished (its row is written)
    but that Tune has not completed ``grace_s`` later. That should not happen (a trial reports
    to Tune once, when it returns), but if Ray ever hangs there, the driver says so and, once
    every trial has its row, ends the sweep instead of waiting (``all_done_but_stuck``).
    """

    def __init__(
        self,
        sweep: SweepConfig,
        specs: list[dict[str, Any]],
        grace_s: float,
        clock=time.monotonic,
        say=print,
    ) -> None:
        self.sweep, self.specs, self.grace_s, self.clock, self.say = (
            sweep,
            specs,
            grace_s,
            clock,
            say,
        )
        self.keys = [s["trial_key"] for s in specs]
        self.state: dict[str, str] = {}
        self.latest: dict[str, dict[str, Any]] = {}
        self.rows = collect_rows(sweep.sweep_dir, self.keys)
        self.row_seen_at: dict[str, float] = {}
        self.warned: set[str] = set()
        self.tune_done: set[str] = set()

    def poll(self) -> bool:
        """Read new progress and new rows; rewrite the table if a row appeared. True if it did."""
        runs = self.sweep.sweep_dir / "runs"
        new_row = False
        for key in self.keys:
            if self.state.get(key) in ("starting", "running"):
                record = tail_metrics(runs / key)
                if record is not None:
                    self.latest[key] = record
                    self.state[key] = "running"
        fresh = collect_rows(self.sweep.sweep_dir, self.keys)
        now = self.clock()
        for key, row in fresh.items():
            if self.rows.get(key) != row:
                new_row = True
            if key not in self.tune_done:
                self.row_seen_at.setdefault(key, now)
        self.rows = fresh
        if new_row:
            self.write_table()
        return new_row

    def stuck(self) -> list[str]:
        """Trials with a row that Tune has not completed within the grace period (warned once)."""
        now = self.clock()
        late = [
            k
            for k, seen in self.row_seen_at.items()
            if k not in self.tune_done and now - seen > self.grace_s
        ]
        for key in late:
            if key not in self.warned:
                self.warned.add(key)
                self.say(
                    f"warning: trial {key} finished its run {now - self.row_seen_at[key]:.0f} s ago "
                    "(its row is written and in the results table) but Ray Tune has not "
                    "completed it; once every trial has its row the sweep ends without it",
                    flush=True,
                )
        return late

    def all_done_but_stuck(self) -> bool:
        """Every trial has its row, and those Tune has not completed are past the grace period."""
        if any(k not in self.rows for k in self.keys):
            return False
        waiting = [k for k in self.keys if k not in self.tune_done]
        return bool(waiting) and set(waiting) <= set(self.stuck())

    def completed(self, key: str) -> None:
        self.tune_done.add(key)
        self.row_seen_at.pop(key, None)
        self.poll()
        self.state[key] = self.rows.get(key, {}).get("status", "ok")

    def failed(self, key: str, error: str, trial_id: str) -> None:
        """Tune gave up on a trial (after its retries): a row saying so, unless it has one."""
        self.tune_done.add(key)
        self.row_seen_at.pop(key, None)
        if key not in collect_rows(self.sweep.sweep_dir, [key]):
            spec = next(s for s in self.specs if s["trial_key"] == key)
            row = trial_row(spec, {"status": "failed", "trial_id": trial_id, "error": error[-500:]})
            write_row(self.sweep.sweep_dir / "runs" / key, row)
        self.poll()
        self.state[key] = "failed"

    def write_table(self) -> Path:
        return write_table(
            [self.rows[k] for k in self.keys if k in self.rows], self.sweep.sweep_dir
        )

    def table(self) -> str:
        return progress_table(
            self.specs, self.sweep.train.total_batch_size, self.latest, self.state, self.rows
        )


def _point_key(trial) -> str:
    p = trial.config["point"]
    return trial_key(int(p["depth"]), float(p["flops_budget"]), int(p["seed"]))


def _tune_hooks(watch: SweepWatch):
    """Tune's callback (progress, rows, the table) and a stopper for the last-defence end.

    Tune pickles both into its experiment state; the driver's watch stays out of the pickle
    (``__getstate__``), since the sweep never restores Tune's state (``--resume`` reruns the
    trials without a finished row instead).
    """
    from ray.tune import Callback
    from ray.tune.stopper import Stopper

    class _HoldsWatch:
        def __init__(self, watch: SweepWatch | None) -> None:
            self.watch = watch

        def __getstate__(self) -> dict:
            return {}

        def __setstate__(self, state: dict) -> None:
            self.watch = None

    class SweepProgress(_HoldsWatch, Callback):
        last_print = 0.0
        period_s = 2.0 if sys.stdout.isatty() else 15.0

        def on_trial_start(self, iteration, trials, trial, **info):
            if self.watch is not None:  # Ray Train's start-up, then "running"
                self.watch.state[_point_key(trial)] = "starting"

        def on_step_end(self, iteration, trials, **info):
            now = time.time()
            if self.watch is not None and now - self.last_print >= self.period_s:
                self.last_print = now
                self.watch.poll()
                self.watch.stuck()
                print(self.watch.table(), flush=True)

        def on_trial_complete(self, iteration, trials, trial, **info):
            if self.watch is not None:
                self.watch.completed(_point_key(trial))
                print(self.watch.table(), flush=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            if self.watch is not None:
                where = getattr(trial, "path", None)
                error = f"the trial raised on every try; its traceback: {where}/error.txt"
                self.watch.failed(_point_key(trial), error, trial.trial_id)
                print(self.watch.table(), flush=True)

    class EndWhenEveryRowIsIn(_HoldsWatch, Stopper):
        def __call__(self, trial_id, result):
            return False

        def stop_all(self):
            return self.watch is not None and self.watch.all_done_but_stuck()

    return SweepProgress(watch), EndWhenEveryRowIsIn(watch)


# --- run a sweep ------------------------------------------------------------------------------------


def sweep_dataset(sweep: SweepConfig) -> Dataset:
    """The dataset a sweep trains on: --data, or FineWeb-Edu (the embedded grid sets its own)."""
    return describe_dataset(sweep.train.data or "fineweb_edu")


def _capacity(sweep: SweepConfig, resources: dict[str, float], use_gpu: bool) -> int:
    """Trials that fit on the cluster at once (Tune's max_concurrent_trials)."""
    if use_gpu:
        fits = int(resources.get("GPU", 0) * sweep.trials_per_gpu // sweep.gpus_per_trial)
    else:
        fits = int(resources.get("CPU", 1) // sweep.cpus_per_trial)
    fits = max(1, fits)
    return min(fits, sweep.max_concurrent) if sweep.max_concurrent > 0 else fits


def _remaining(sweep: SweepConfig, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trials still to run: all of them, or with --resume those without a finished row."""
    rows = collect_rows(sweep.sweep_dir, [s["trial_key"] for s in specs])
    if rows and not sweep.resume:
        raise FileExistsError(
            f"{sweep.sweep_dir} already holds {len(rows)} trial rows of a sweep named "
            f"{sweep.name!r}; pass --resume to continue it, --fresh to start it again, or --name "
            "to start another"
        )
    todo = []
    for spec in specs:
        row = rows.get(spec["trial_key"])
        if row is not None and row.get("status") in FINISHED:
            continue
        if row is not None:  # failed or stopped: it runs again, resuming from its checkpoint
            (sweep.sweep_dir / "runs" / spec["trial_key"] / "row.json").unlink()
        todo.append(spec)
    return todo


def run_sweep(sweep: SweepConfig) -> dict[str, Any]:
    """Run (or resume) the sweep; returns the results rows and where things were written."""
    dataset = sweep_dataset(sweep)
    specs = plan(sweep, dataset)
    check_plan(sweep, dataset, specs)  # before Ray: a grid that cannot run stops here
    if sweep.evaluation.enabled:  # so does a missing or incomplete eval bundle
        eval_plan = plan_trial_eval(sweep.evaluation, dataset.tokenizer, sweep.train.seq_len)
        print(
            f"evaluation: {sweep.evaluation.title} on each trial's final model, "
            f"{eval_plan.total_items:,} items ({len(eval_plan.items)} tasks) from "
            f"{eval_plan.bundle}, baselines {sweep.evaluation.baselines}",
            flush=True,
        )
    todo = _remaining(sweep, specs)

    import ray

    print(
        f"sweep {sweep.name!r}: {len(specs)} trials on {dataset.path} ({dataset.tokenizer}, "
        f"{dataset.train_tokens:,} training tokens)"
        + (f"; {len(specs) - len(todo)} already finished" if len(todo) < len(specs) else ""),
        flush=True,
    )
    started_here = not ray.is_initialized()
    init_started = time.time()
    if started_here:
        ray.init(
            address=ray_address(sweep.address),
            runtime_env={"env_vars": _worker_env(sweep)},
            log_to_driver=False,
            configure_logging=True,
            logging_level="WARNING",
        )
    ray_init_s = time.time() - init_started
    watch = SweepWatch(sweep, specs, sweep.stuck_grace_s)
    wall, concurrent = 0.0, 0
    tune_reports: dict[str, int] = {}
    try:
        resources = ray.cluster_resources()
        use_gpu = resources.get("GPU", 0) > 0
        concurrent = _capacity(sweep, resources, use_gpu)
        print(
            f"{len(todo)} to run, up to {concurrent} at a time "
            f"({'GPU' if use_gpu else 'CPU'}: {resources.get('GPU', 0):g} GPUs, "
            f"{resources.get('CPU', 0):g} CPUs"
            + (f", {sweep.trials_per_gpu} trials per GPU" if use_gpu else "")
            + ")",
            flush=True,
        )
        settings = _trial_settings(sweep, dataset, use_gpu)
        started = time.time()
        if todo:
            tune_reports = _run_tune(sweep, todo, settings, watch, concurrent)
        wall = time.time() - started
    finally:
        shutdown_started = time.time()
        if started_here:
            ray.shutdown()
        ray_shutdown_s = time.time() - shutdown_started
    outputs = _finish(watch, wall)
    outputs.update(
        concurrent=concurrent,
        tune_reports=tune_reports,
        ray_init_s=ray_init_s,
        ray_shutdown_s=ray_shutdown_s,
    )
    if sweep.analyze:
        outputs.update(analyze(sweep.sweep_dir))
    return outputs


def ray_address(address: str | None) -> str | None:
    """What the sweep passes to ``ray.init``: ``address`` when given (``--address``), else
    ``RAY_ADDRESS`` when set (None lets Ray read it), else ``"local"``: a new Ray here.

    Not None in the last case: given None, Ray 2.60 also looks in its temp folder's
    ``ray_current_cluster`` for the last cluster that ``ray start`` (or Ray's test ``Cluster``)
    started, and when that cluster died without ``ray stop`` the driver waits on its dead GCS
    for good ("Failed to connect to GCS at address ..." every few seconds). ``"local"`` starts
    a new instance whatever that file says. tests/test_sweep.py keeps a test of it.
    """
    if address:
        return address
    return None if os.environ.get("RAY_ADDRESS") else "local"


def _worker_env(sweep: SweepConfig) -> dict[str, str]:
    """Environment variables of every Ray worker of the sweep."""
    return {
        # How often Train's controller polls its workers: it notices a finished worker within
        # this (Ray's default is 2 s); polling every 0.25 s cost each controller ~8% of a core.
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": os.environ.get(
            "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "1.0"
        ),
        "WANDB_MODE": os.environ.get("WANDB_MODE", sweep.train.wandb),
        # Set before Ray starts the worker processes (the only time it has an effect): what a
        # library prints in a worker reaches its log as it happens. train() flushes its own.
        "PYTHONUNBUFFERED": "1",
    }


def _trial_settings(sweep: SweepConfig, dataset: Dataset, use_gpu: bool) -> TrialSettings:
    """The one frozen object every trial gets besides its swept values."""
    import dataclasses

    evaluation = sweep.evaluation
    if evaluation.enabled:  # every worker reads the same directory
        evaluation = dataclasses.replace(evaluation, bundle=resolve_bundle(evaluation.bundle))
    return TrialSettings(
        sweep_name=sweep.name,
        train=dataclasses.replace(sweep.train, data=dataset.path),
        vocab_size=dataset.vocab_size,
        train_tokens=dataset.train_tokens or 0,
        runs_dir=str(sweep.sweep_dir / "runs"),
        ray_storage=sweep.ray_storage,
        use_gpu=use_gpu,
        gpus_per_trial=sweep.gpus_per_trial,
        gpu_per_worker=gpu_share(sweep.trials_per_gpu),
        cpus_per_trial=sweep.cpus_per_trial,
        max_worker_restarts=sweep.max_worker_restarts,
        in_process=not use_gpu and sweep.trial_runner == "auto",
        trial_overrides=dict(sweep.trial_overrides),
        report_hook=sweep.report_hook,
        evaluation=evaluation,
    )


def _run_tune(
    sweep: SweepConfig,
    todo: list[dict[str, Any]],
    settings: TrialSettings,
    watch: SweepWatch,
    concurrent: int,
) -> dict[str, int]:
    """Tune over the trials still to run; returns how many results Tune recorded per trial
    (one each, the returned row, by design)."""
    from ray import tune

    progress, stopper = _tune_hooks(watch)
    # An in-process trial holds its CPUs itself. Otherwise the trial function holds no CPU or
    # GPU: the TorchTrainer's workers hold the real resources, and max_concurrent_trials keeps
    # Tune from starting more than fit (Tune refuses an empty request, so it asks for a little
    # memory instead).
    request = (
        {"CPU": sweep.cpus_per_trial} if settings.in_process else {"CPU": 0, "memory": 64 * 2**20}
    )
    trainable = tune.with_resources(
        tune.with_parameters(trial_function, settings=settings), request
    )
    # Largest budgets first: Tune starts trials in this order, so the longest runs do not end
    # up alone at the end of the sweep while the other slots sit idle.
    points = [
        {"depth": s["depth"], "flops_budget": s["flops_budget"], "seed": s["seed"]}
        for s in sorted(todo, key=lambda s: -s["flops_budget"])
    ]
    tuner = tune.Tuner(
        trainable,
        param_space={"point": tune.grid_search(points)},
        # reuse_actors stays at Ray's default (off for function trials): a fresh trial process
        # per trial costs ~4 s, under 1% of a GPU trial (docs/README_SWEEPS.md).
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrent),
        run_config=tune.RunConfig(
            name=f"{sweep.name}-tune-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=sweep.ray_storage,
            failure_config=tune.FailureConfig(max_failures=sweep.max_trial_retries),
            callbacks=[progress],
            stop=stopper,
            verbose=0,
        ),
    )
    tune_reports = {}
    for result in tuner.fit():
        key = result.metrics.get("trial_key") if result.metrics else None
        if key is not None and result.metrics_dataframe is not None:
            tune_reports[key] = len(result.metrics_dataframe)
    return tune_reports


def _finish(watch: SweepWatch, wall: float) -> dict[str, Any]:
    """Collect the last rows, write the table, say how the trials ended."""
    watch.poll()
    for key in watch.keys:
        if key not in watch.rows:  # Tune never ran or reported it (e.g. the driver was stopped)
            print(f"warning: trial {key} has no row; run the sweep again with --resume", flush=True)
    table_path = watch.write_table()
    rows = list(watch.rows.values())
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row.get("status")] = statuses.get(row.get("status"), 0) + 1
    print(
        f"sweep done in {wall:.0f}s: {statuses}; results: {table_path} (+ results.csv)", flush=True
    )
    return {"results": str(table_path), "rows": rows, "wall_s": wall}


def analyze(sweep_dir: Path, n_bootstrap: int = 1000) -> dict[str, Any]:
    """Scaling-law fits (printed, and saved as fits.json) and plots from the sweep's results.

    One call into nanogpt.scaling_laws.report.analyze_results: it fits once, writes fits.json, draws
    the plots from that fits object and prints the report, with the same defaults as
    `python -m nanogpt.scaling_laws`, so both give the same numbers. A sweep too small to fit
    (one budget, too few healthy points) still finishes: the reason is printed and the rest of
    what can be drawn is drawn.
    """
    from nanogpt.scaling_laws.report import analyze_results

    out = analyze_results(Path(sweep_dir), Path(sweep_dir), n_bootstrap=n_bootstrap)
    out.pop("fits_object", None)
    return out


def clean_sweep(sweep: SweepConfig) -> None:
    """Remove a sweep's directory and its Ray experiments (for --fresh)."""
    shutil.rmtree(sweep.sweep_dir, ignore_errors=True)
    if "://" not in sweep.ray_storage:
        for child in Path(sweep.ray_storage).glob(f"{sweep.name}-*"):
            shutil.rmtree(child, ignore_errors=True)


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)
