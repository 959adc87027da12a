"""The depth × FLOP-budget sweep: ``python sweeps/isoflop.py --depths 6..14 --flops 1e18..6e18``.

With no arguments it runs the embedded default: a small grid on the Shakespeare corpus that
finishes on a 2-core CPU in a few minutes and leaves the results table, the scaling-law fits and
the plots in ``sweeps_out/embedded/``. ``--dry-run`` prints the grid and what it would cost.
docs/README_SWEEPS.md has the whole story (one node, a cluster, packing, resume, costs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nanogpt.config import TrainConfig, add_dataclass_arguments  # noqa: E402
from nanogpt.sweep import (  # noqa: E402
    SweepConfig,
    clean_sweep,
    dry_run,
    parse_depths,
    parse_flops,
    run_sweep,
)

# The embedded default: small enough for a 2-core CPU, big enough for three isoFLOP curves.
EMBEDDED = dict(
    depths="1..4",
    flops="2e11..8e11",
    num_flops=3,
    name="embedded",
    train=dict(
        seq_len=64,
        total_batch_size=512,
        device_batch_size=8,
        warmup_steps=5,
        lr_adamw=3e-3,
        eval_every=1000,
        eval_tokens=4096,
        save_every=25,
        log_every=5,
    ),
)
# Training fields the sweep sets per trial (or owns), so they are not flags here.
SWEPT_OR_OWNED = frozenset(
    {"depth", "target_flops", "num_iterations", "seed", "resume", "run_name", "out_dir",
     "checkpoint", "stop_at_step", "debug_nan_at_step", "mode"}
)  # fmt: skip
# The seed's sweep (make run-scaling-law): DEPTH 6..14 at 1e18..6e18 FLOPs on FineWeb-Edu.
SEED = dict(depths="6..14", flops="1e18..6e18", num_flops=3, name="isoflop")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python sweeps/isoflop.py",
        description="Sweep DEPTH x FLOP budget with Ray Tune (each trial a Ray Train job), then "
        "fit scaling laws and draw the plots. No arguments: the embedded CPU demo.",
    )
    g = p.add_argument_group("the grid")
    g.add_argument("--depths", help="6..14, 6..14:2 or 6,8,12 (default: the embedded 1..4)")
    g.add_argument("--flops", help="1e18..6e18 (log-spaced, see --num-flops) or 1e18,3e18")
    g.add_argument("--num-flops", type=int, default=3, help="points in a FLOP range (default 3)")
    g.add_argument("--seeds", default="0", help="comma-separated seeds; one trial per seed")
    r = p.add_argument_group("where and how it runs")
    r.add_argument("--name", help="sweep name: its directory under --storage")
    r.add_argument("--storage", default="sweeps_out", help="a directory (or a URI Ray understands)")
    r.add_argument("--address", help="an existing Ray cluster (e.g. auto); default: start one here")
    r.add_argument("--gpus-per-trial", type=int, default=1, help="GPUs (= workers) per trial")
    r.add_argument("--trials-per-gpu", type=int, default=1, help="pack this many trials per GPU")
    r.add_argument("--cpus-per-trial", type=int, default=1, help="CPUs per trial without GPUs")
    r.add_argument("--max-concurrent", type=int, default=0, help="0: as many as resources allow")
    r.add_argument(
        "--prefetch-trials",
        type=int,
        help="trials Ray starts ahead of a free slot, to hide their start-up (default: two per "
        "GPU; 0 without GPUs)",
    )
    r.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    r.add_argument(
        "--fresh", action="store_true", help="delete an earlier sweep of this name first"
    )
    r.add_argument(
        "--dry-run", action="store_true", help="print the grid and its cost, run nothing"
    )
    r.add_argument("--throughput", help="JSON {depth: tokens/s} to use in the dry run's estimate")
    r.add_argument("--no-analyze", action="store_true", help="skip the fits and plots at the end")
    t = p.add_argument_group("training (every flag of python -m nanogpt.train)")
    add_dataclass_arguments(t, TrainConfig, exclude=SWEPT_OR_OWNED)
    return p


def sweep_from_args(argv: list[str] | None = None) -> tuple[SweepConfig, argparse.Namespace]:
    parser = build_parser()
    args = parser.parse_args(argv)
    embedded = args.depths is None and args.flops is None
    preset = EMBEDDED if embedded else SEED
    train_values = dict(preset.get("train", {}))
    for f in dataclasses.fields(TrainConfig):
        if hasattr(args, f.name):
            train_values[f.name] = getattr(args, f.name)
    try:
        train_cfg = TrainConfig(**train_values)
        sweep = SweepConfig(
            depths=parse_depths(args.depths or preset["depths"]),
            flops=parse_flops(args.flops or preset["flops"], args.num_flops),
            seeds=[int(s) for s in args.seeds.split(",")],
            name=args.name or preset["name"],
            storage=args.storage,
            address=args.address,
            gpus_per_trial=args.gpus_per_trial,
            trials_per_gpu=args.trials_per_gpu,
            cpus_per_trial=args.cpus_per_trial,
            max_concurrent=args.max_concurrent,
            prefetch_trials=args.prefetch_trials,
            resume=args.resume,
            analyze=not args.no_analyze,
            train=train_cfg,
        )
    except ValueError as e:
        parser.error(str(e))
    if embedded:
        print("no --depths/--flops given: running the embedded default sweep (CPU-sized, on "
              "the Shakespeare corpus)", flush=True)  # fmt: skip
    return sweep, args


def main(argv: list[str] | None = None) -> int:
    sweep, args = sweep_from_args(argv)
    if args.dry_run:
        throughput = None
        if args.throughput:
            throughput = {
                int(k): float(v) for k, v in json.loads(Path(args.throughput).read_text()).items()
            }
        print(dry_run(sweep, throughput))
        return 0
    if args.fresh:
        clean_sweep(sweep)
    try:
        outputs = run_sweep(sweep)
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    bad = [r for r in outputs["rows"] if r.get("status") == "failed"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
