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

Modules: ``grid`` (the trials and the dry run), ``ray_trial`` (one trial: the Tune trial function
and the Ray Train worker function), ``results`` (the results table), ``runner`` (``run_sweep``,
``analyze``, ``clean_sweep``). Importing this package does not import Ray.
"""

from __future__ import annotations

from nanogpt.sweep.grid import (
    H200_PEAK_BF16,
    MEASURED_H200_MFU,
    SweepConfig,
    dry_run,
    estimated_mfu,
    grid,
    human,
    parse_depths,
    parse_flops,
    trial_key,
)
from nanogpt.sweep.ray_trial import train_worker, trial_function
from nanogpt.sweep.results import (
    EXTRA_COLUMNS,
    RESULT_COLUMNS,
    failed_row,
    progress_table,
    read_results,
    write_results,
)
from nanogpt.sweep.runner import analyze, clean_sweep, dump_json, run_sweep

__all__ = [
    "EXTRA_COLUMNS",
    "H200_PEAK_BF16",
    "MEASURED_H200_MFU",
    "RESULT_COLUMNS",
    "SweepConfig",
    "analyze",
    "clean_sweep",
    "dry_run",
    "dump_json",
    "estimated_mfu",
    "failed_row",
    "grid",
    "human",
    "parse_depths",
    "parse_flops",
    "progress_table",
    "read_results",
    "run_sweep",
    "train_worker",
    "trial_function",
    "trial_key",
    "write_results",
]
