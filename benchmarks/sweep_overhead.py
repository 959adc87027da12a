"""What Ray costs a sweep, and what packing trials onto one GPU buys.

    python benchmarks/sweep_overhead.py                    # DEPTH 2,4,6 x 3 budgets, twice
    python benchmarks/sweep_overhead.py --packing 1,3      # one trial per GPU, then 3 per GPU

Runs the same small real sweep (Ray Tune + one Ray Train TorchTrainer per trial, Shakespeare
corpus) once per packing level and prints: wall time, the sum of the trials' training time,
Ray's start-up and teardown per trial (trial wall time minus its training time), the GPU's busy
fraction (nvidia-smi utilisation sampled every 250 ms) and the sweep's aggregate tokens/s.
Each trial's time is split with the results table's columns: ``ray_startup_s`` (the trial
function starting the TorchTrainer until the worker function runs), ``setup_s`` (inside
``train()`` before the first step), ``wall_s`` (training) and ``ray_teardown_s``.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == _HERE:
    sys.path[0] = os.path.dirname(_HERE)

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from nanogpt.config import TrainConfig  # noqa: E402
from nanogpt.sweep import SweepConfig, parse_depths, parse_flops, run_sweep  # noqa: E402


class GpuSampler:
    """nvidia-smi utilisation samples in a background thread (empty without a GPU)."""

    def __init__(self, period_ms: int = 250) -> None:
        self.samples: list[float] = []
        self.proc = None
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                 f"-lms={period_ms}", "-i", os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.samples.append(float(line.strip()))
            except ValueError:
                pass

    def stop(self) -> float | None:
        if self.proc is None:
            return None
        self.proc.terminate()
        return sum(1 for s in self.samples if s > 0) / max(1, len(self.samples))


# Ray Train's controller logs how long each part of a worker group's start took.
_PHASES = {
    "placement group": re.compile(r"Placement group ready in ([0-9.]+)s"),
    "worker processes": re.compile(r"worker actors created in ([0-9.]+)s"),
    "train context (process group)": re.compile(
        r"Train context initialized on workers in ([0-9.]+)s"
    ),
    "worker group total": re.compile(r"Worker group startup completed in ([0-9.]+)s total"),
}


def ray_start_phases(rows: list[dict], sweep_name: str) -> dict[str, list[float]]:
    """Per-phase seconds of each trial's Ray start-up, from this Ray session's controller logs.

    "controller up" is the trial function's start until the controller's first log line (the
    controller actor's process starting and importing Ray Train).
    """
    logs = Path(tempfile.gettempdir()) / "ray" / "session_latest" / "logs" / "train"
    started = {f"{sweep_name}-{r['trial_key']}": r.get("trial_started_at") for r in rows}
    phases: dict[str, list[float]] = {"controller up": []}
    for path in sorted(logs.glob("ray-train-sys-controller-*.log")):
        first_ts, run = None, None
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            run = run or record.get("run_name")
            if first_ts is None and record.get("timestamp_ns"):
                first_ts = record["timestamp_ns"] / 1e9
            for name, pattern in _PHASES.items():
                match = pattern.search(record.get("message", ""))
                if match and run in started:
                    phases.setdefault(name, []).append(float(match.group(1)))
        if run in started and started[run] and first_ts:
            phases["controller up"].append(first_ts - started[run])
    return phases


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    median = ordered[len(ordered) // 2]
    return f"{median:.1f} ({ordered[0]:.1f}-{ordered[-1]:.1f})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depths", default="2,4,6")
    p.add_argument("--flops", default="2.5e14..1e15")
    p.add_argument("--packing", default="1,3", help="trials per GPU, one sweep each")
    p.add_argument("--total-batch-size", type=int, default=65536)
    p.add_argument("--device-batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--compile", action="store_true", help="torch.compile each trial's model")
    p.add_argument("--storage", default=None, help="default: a temporary directory")
    args = p.parse_args(argv)
    storage = args.storage or tempfile.mkdtemp(prefix="sweep_overhead_")
    train = TrainConfig(
        seq_len=args.seq_len,
        total_batch_size=args.total_batch_size,
        device_batch_size=args.device_batch_size,
        warmup_steps=10,
        eval_every=100000,
        eval_tokens=65536,
        save_every=0,
        log_every=10,
        lr_adamw=3e-3,
        compile=args.compile,
    )
    table = []
    for packing in (int(x) for x in args.packing.split(",")):
        sweep = SweepConfig(
            depths=parse_depths(args.depths),
            flops=parse_flops(args.flops, 3),
            name=f"packing{packing}",
            storage=storage,
            trials_per_gpu=packing,
            cpus_per_trial=1,
            analyze=False,
            train=train,
        )
        sampler = GpuSampler()
        started = time.time()
        out = run_sweep(sweep)
        wall = time.time() - started
        busy = sampler.stop()
        rows = out["rows"]
        train_s = sum(r.get("wall_s") or 0 for r in rows)
        tokens = sum(r.get("tokens") or 0 for r in rows)
        starts = [r["trial_started_at"] for r in rows if r.get("trial_started_at")]
        ends = [r["trial_started_at"] + r["trial_wall_s"] for r in rows
                if r.get("trial_started_at") and r.get("trial_wall_s")]  # fmt: skip
        fixed = (min(starts) - started) + (started + wall - max(ends)) if starts else None
        table.append((packing, rows, wall, train_s, busy, tokens / wall, fixed))
        phases = ray_start_phases(rows, sweep.name)
        if any(phases.values()):
            print(f"\nRay start-up by phase, packing {packing} (seconds, median (min-max)):")
            for name, values in phases.items():
                print(f"  {name:32s} {_spread(values)}")
    print("| trials per GPU | trials | sweep wall s | sum of training s | Ray start-up per trial s "
          "| train set-up per trial s | Ray teardown per trial s | Ray share of trial time "
          "| sweep start + end s | GPU busy | tokens/s (whole sweep) | statuses |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for packing, rows, wall, train_s, busy, tok_s, fixed in table:
        busy_text = f"{100 * busy:.0f}%" if busy is not None else "-"
        startup = [r.get("ray_startup_s") or 0.0 for r in rows]
        setup = [r.get("setup_s") or 0.0 for r in rows]
        teardown = [r.get("ray_teardown_s") or 0.0 for r in rows]
        trial_wall = sum(r.get("trial_wall_s") or 0.0 for r in rows) or 1.0
        ray_share = (sum(startup) + sum(teardown)) / trial_wall
        statuses = ", ".join(sorted({str(r.get("status")) for r in rows}))
        print(f"| {packing} | {len(rows)} | {wall:.0f} | {train_s:.0f} | {_spread(startup)} "
              f"| {_spread(setup)} | {_spread(teardown)} | {100 * ray_share:.1f}% "
              f"| {'-' if fixed is None else f'{fixed:.0f}'} | {busy_text} "
              f"| {tok_s:,.0f} | {statuses} |")  # fmt: skip
    print(
        "\nRay share of trial time = (Ray start-up + teardown) / trial wall time, summed over "
        "trials; per-trial columns are median (min-max)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
