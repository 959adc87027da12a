"""The Ray glue: a depth x FLOP-budget grid run by Ray Tune, each trial one Ray Train job.

Read top to bottom it is: grid -> trials -> rows -> table -> fits -> plots.

* ``grid``: the sweep's settings (``SweepConfig``), its dataset, every trial's plan (shape,
  steps, tokens, epochs), the checks that refuse a grid that cannot run, and the dry run.
* ``ray_trial``: one trial. Tune passes it its swept values and one frozen ``TrialSettings``;
  it fits a ``TorchTrainer`` whose workers call ``nanogpt.train.train(cfg, report)`` (the
  optimizer syncs gradients itself: no DDP, no ``prepare_model``), writes the trial's row file
  and returns the row, its one report to Tune.
* ``results``: the row builder, the row files, the table (their merge) and the progress table.
* ``trial_eval``: ``--eval core``: the bundle checked (and the evaluation priced) before any
  trial, and each trial's final model scored on the trial's device (the row's ``core``).
* ``runner``: ``run_sweep`` (plan, check, Tune, table, analysis), ``analyze``, ``clean_sweep``.

Scheduling is Ray's: each trial's workers ask for a GPU (or a fraction of one, to pack small
trials) and Tune runs as many trials as the cluster holds. Only diverging runs end early, inside
the worker (every rank sees the same all-reduced loss); a diverged trial returns normally with
status ``diverged`` and is not retried. Faults: Train's ``FailureConfig`` restarts a dead worker
group, which resumes from the trial's last checkpoint; Tune's ``FailureConfig`` retries a failed
trial the same way; a killed driver continues with ``--resume``, which runs every trial without
a finished row. Importing this package does not import Ray.
"""

from __future__ import annotations

from nanogpt.sweep.grid import (
    MAX_EPOCHS,
    MEASURED_H200_MFU,
    Dataset,
    SweepConfig,
    bracket_check,
    check_plan,
    describe_dataset,
    dry_run,
    estimated_mfu,
    human,
    parse_depths,
    parse_flops,
    parse_grid,
    plan,
    trial_key,
    trial_spec,
)
from nanogpt.sweep.ray_trial import TrialSettings, train_worker, trial_function
from nanogpt.sweep.results import (
    EXTRA_COLUMNS,
    RESULT_COLUMNS,
    collect_rows,
    progress_table,
    read_results,
    trial_row,
    write_row,
    write_table,
)
from nanogpt.sweep.runner import SweepWatch, analyze, clean_sweep, dump_json, run_sweep

__all__ = [
    "EXTRA_COLUMNS",
    "MAX_EPOCHS",
    "MEASURED_H200_MFU",
    "RESULT_COLUMNS",
    "Dataset",
    "SweepConfig",
    "SweepWatch",
    "TrialSettings",
    "analyze",
    "bracket_check",
    "check_plan",
    "clean_sweep",
    "collect_rows",
    "describe_dataset",
    "dry_run",
    "dump_json",
    "estimated_mfu",
    "human",
    "parse_depths",
    "parse_flops",
    "parse_grid",
    "plan",
    "progress_table",
    "read_results",
    "run_sweep",
    "train_worker",
    "trial_function",
    "trial_key",
    "trial_row",
    "trial_spec",
    "write_row",
    "write_table",
]
