"""The depth × FLOP-budget sweep: ``nanogpt-sweep --depths 6..14 --flops 1e18..6e18``.

Also ``python -m nanogpt.sweep`` and ``python sweeps/isoflop.py`` (the seed's path), the same command.

With no grid given it runs the embedded default: byte-level models on the Shakespeare plays,
each budget with its own depths around its optimum, small enough for a 2-core CPU (about
nine minutes on an idle machine) and big enough to show a scaling law: interior isoFLOP minima, Approach 2 and 3
fits that agree. It leaves the results table, ``fits.json`` and the plots in ``sweeps_out/embedded/``.
Any other grid trains on ``--data`` (default FineWeb-Edu, which must be prepared first).
``--dry-run`` prints the grid, its data and epochs, whether each budget's depths bracket its
optimum, and what it would cost. docs/README_SWEEPS.md has the whole story.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from nanogpt.config import TrainConfig, add_dataclass_arguments
from nanogpt.data.paths import data_root_help
from nanogpt.sweep import (
    SweepConfig,
    clean_sweep,
    dry_run,
    parse_depths,
    parse_flops,
    parse_grid,
    run_sweep,
)
from nanogpt.sweep.grid import TRIAL_RUNNERS
from nanogpt.sweep.runner import sweep_dataset
from nanogpt.sweep.trial_eval import DEFAULT_MAX_PER_TASK, EVAL_SUITES, TrialEval

# The embedded default: byte-level Shakespeare (259-token vocabulary, so the embedding and head
# are a small part of each model), width 8 x DEPTH with 8-wide heads, 12 x 128 tokens per step.
# Each budget gets four to six depths around its optimum, chosen from measured runs on a 2-core
# CPU (docs/README_SWEEPS.md, "The embedded default"); every trial runs >= 50 steps and sees at
# most ~1 epoch of the 4.6 M training bytes. The two largest models of the two larger budgets
# are there for Approach 3: without them its bootstrap leaves E, A and B unconstrained.
EMBEDDED = dict(
    grid="5e10:1..4;1.5e11:1..6;4.5e11:2..7",
    name="embedded",
    # Two trials per CPU: one trial's start-up (new process, imports, data) overlaps another's
    # training (docs/benchmarks.md)
    cpus_per_trial=0.5,
    train=dict(
        data="shakespeare_bytes",
        aspect_ratio=8,
        head_dim=8,
        seq_len=128,
        total_batch_size=1536,
        device_batch_size=12,
        warmup_steps=10,
        lr_adamw=3e-3,
        eval_every=100000,
        eval_tokens=131072,
        save_every=500,
        log_every=10,
    ),
)
# Training fields the sweep sets per trial (or owns), so they are not flags here.
SWEPT_OR_OWNED = frozenset(
    {"depth", "target_flops", "num_iterations", "seed", "resume", "run_name", "out_dir",
     "checkpoint", "stop_at_step", "debug_nan_at_step", "mode",
     # the sweep's --eval-bundle and --eval-max-per-task (given to training's evals too)
     "eval_bundle", "eval_max_per_task"}
)  # fmt: skip
# The seed's sweep (make run-scaling-law): DEPTH 6..14 at 1e18..6e18 FLOPs on FineWeb-Edu.
SEED = dict(name="isoflop", train=dict(data="fineweb_edu"))


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    """--eval and its options: the suite each trial's final model is scored on."""
    e = p.add_argument_group("evaluating each trial's final model (nanogpt.evals)")
    e.add_argument(
        "--eval",
        choices=EVAL_SUITES,
        default="none",
        help="after a trial trains, score its final model on this suite on the trial's device: "
        "the results table's core (or gauntlet) column, and CORE against compute in the "
        "analysis (default none)",
    )
    e.add_argument(
        "--eval-bundle",
        help="the Mosaic ICL eval bundle directory (default $NANOGPT_EVAL_BUNDLE or "
        "~/.cache/nanogpt/eval_bundle; get it with python -m nanogpt.evals --download)",
    )
    e.add_argument(
        "--eval-max-per-task",
        type=int,
        default=DEFAULT_MAX_PER_TASK,
        help=f"items per task, a seeded subsample, the same for every trial; 0 = every item "
        f"(default {DEFAULT_MAX_PER_TASK})",
    )
    e.add_argument(
        "--eval-baselines",
        choices=("dclm-v2", "v1", "bundle"),
        default="dclm-v2",
        help="CORE's random baselines: DCLM's fixed ones, the pre-fix v1 (to compare with "
        "published numbers), or the bundle's CSV (default dclm-v2)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nanogpt-sweep",
        description="Sweep DEPTH x FLOP budget with Ray Tune (each trial a Ray Train job), then "
        "fit scaling laws and draw the plots. No grid given: the embedded CPU demo.",
        epilog=data_root_help(),
    )
    g = p.add_argument_group("the grid")
    g.add_argument("--depths", help="6..14, 6..14:2 or 6,8,12 (every depth at every budget)")
    g.add_argument("--flops", help="1e18..6e18 (log-spaced, see --num-flops) or 1e18,3e18")
    g.add_argument("--num-flops", type=int, default=3, help="points in a FLOP range (default 3)")
    g.add_argument(
        "--grid",
        help="each budget with its own depths, e.g. '1e18:6..10;3e18:8..12' (instead of "
        "--depths/--flops)",
    )
    g.add_argument("--seeds", default="0", help="comma-separated seeds; one trial per seed")
    r = p.add_argument_group("where and how it runs")
    r.add_argument("--name", help="sweep name: its directory under --storage")
    r.add_argument("--storage", default="sweeps_out", help="a directory (or a URI Ray understands)")
    r.add_argument(
        "--address",
        help="an existing Ray cluster (e.g. auto); default: RAY_ADDRESS if set, else a new Ray here",
    )
    r.add_argument("--gpus-per-trial", type=int, default=1, help="GPUs (= workers) per trial")
    r.add_argument(
        "--trials-per-gpu",
        type=int,
        default=1,
        help="pack this many trials onto one GPU (each worker asks Ray for 1/K of a GPU)",
    )
    r.add_argument(
        "--cpus-per-trial",
        type=float,
        help="CPUs per trial without GPUs; 0.5 runs two trials per CPU (default 1; the embedded "
        "demo 0.5)",
    )
    r.add_argument(
        "--trial-runner",
        choices=TRIAL_RUNNERS,
        default="auto",
        help="auto: a CPU trial trains inside its Tune trial process, a GPU trial in a "
        "TorchTrainer over its GPUs; ray-train: a TorchTrainer always (default auto)",
    )
    r.add_argument("--max-concurrent", type=int, default=0, help="0: as many as resources allow")
    r.add_argument(
        "--allow-repeat",
        action="store_true",
        help="run trials that would see their training data more than 1.2 times",
    )
    r.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    r.add_argument(
        "--fresh", action="store_true", help="delete an earlier sweep of this name first"
    )
    r.add_argument(
        "--dry-run", action="store_true", help="print the grid, its data and cost, run nothing"
    )
    r.add_argument("--throughput", help="JSON {depth: tokens/s} to use in the dry run's estimate")
    r.add_argument(
        "--optimal-tokens-per-param",
        type=float,
        default=20.0,
        help="the dry run's bracket check: compute-optimal tokens per parameter (Chinchilla ~20)",
    )
    r.add_argument("--no-analyze", action="store_true", help="skip the fits and plots at the end")
    add_eval_arguments(p)
    t = p.add_argument_group("training (every flag of python -m nanogpt.train)")
    add_dataclass_arguments(t, TrainConfig, exclude=SWEPT_OR_OWNED)
    return p


def sweep_from_args(argv: list[str] | None = None) -> tuple[SweepConfig, argparse.Namespace]:
    parser = build_parser()
    args = parser.parse_args(argv)
    embedded = args.depths is None and args.flops is None and args.grid is None
    if (args.depths is None) != (args.flops is None):
        parser.error("--depths and --flops go together (or give --grid)")
    if args.grid and args.depths:
        parser.error("give either --grid or --depths/--flops, not both")
    preset = EMBEDDED if embedded else SEED
    train_values = dict(preset.get("train", {}))
    for f in dataclasses.fields(TrainConfig):
        if hasattr(args, f.name):
            train_values[f.name] = getattr(args, f.name)
    # Training's own evaluations (where TrainConfig has them) read the same bundle and subsample
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    if "eval_bundle" in fields and args.eval_bundle is not None:
        train_values["eval_bundle"] = args.eval_bundle
    if "eval_max_per_task" in fields:
        train_values["eval_max_per_task"] = args.eval_max_per_task
    try:
        evaluation = TrialEval(
            suite=args.eval,
            bundle=args.eval_bundle,
            max_per_task=args.eval_max_per_task,
            baselines=args.eval_baselines,
        )
        train_cfg = TrainConfig(**train_values)
        grid_text = args.grid or (EMBEDDED["grid"] if embedded else None)
        sweep = SweepConfig(
            depths=parse_depths(args.depths) if args.depths else [],
            flops=parse_flops(args.flops, args.num_flops) if args.flops else [],
            depths_by_budget=parse_grid(grid_text) if grid_text else None,
            seeds=[int(s) for s in args.seeds.split(",")],
            name=args.name or preset["name"],
            storage=args.storage,
            address=args.address,
            gpus_per_trial=args.gpus_per_trial,
            trials_per_gpu=args.trials_per_gpu,
            cpus_per_trial=args.cpus_per_trial or preset.get("cpus_per_trial", 1.0),
            trial_runner=args.trial_runner,
            max_concurrent=args.max_concurrent,
            allow_repeat=args.allow_repeat,
            resume=args.resume,
            analyze=not args.no_analyze,
            train=train_cfg,
            evaluation=evaluation,
        )
    except ValueError as e:
        parser.error(str(e))
    if embedded:
        print("no grid given: running the embedded default sweep (CPU-sized, byte-level "
              "Shakespeare)", flush=True)  # fmt: skip
    return sweep, args


def main(argv: list[str] | None = None) -> int:
    sweep, args = sweep_from_args(argv)
    embedded = sweep.train.data == EMBEDDED["train"]["data"]
    if embedded:
        from nanogpt.data import ensure_shakespeare

        ensure_shakespeare(tokenizer="bytes")  # the embedded corpus, offline, ~1 s
    if args.dry_run:
        throughput = None
        if args.throughput:
            throughput = {
                int(k): float(v) for k, v in json.loads(Path(args.throughput).read_text()).items()
            }
        print(dry_run(sweep, sweep_dataset(sweep), throughput, args.optimal_tokens_per_param))
        return 0
    from nanogpt.evals.bundle import BundleError

    if args.fresh:
        clean_sweep(sweep)
    try:
        outputs = run_sweep(sweep)
    except (FileExistsError, FileNotFoundError, ValueError, BundleError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    bad = [r for r in outputs["rows"] if r.get("status") == "failed"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
