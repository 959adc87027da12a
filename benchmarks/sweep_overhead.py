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

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

try:
    from nanogpt.config import TrainConfig
    from nanogpt.sweep import SweepConfig, parse_depths, parse_flops, run_sweep
except ModuleNotFoundError as error:  # a script, with nanogpt neither installed nor on the path
    if error.name != "nanogpt":
        raise
    from needs_nanogpt import missing_nanogpt  # benchmarks/needs_nanogpt.py, beside this file

    raise missing_nanogpt(__file__) from None


class GpuSampler:
    """nvidia-smi utilisation samples of the visible GPUs in a background thread (none without
    a GPU)."""

    def __init__(self, period_ms: int = 250) -> None:
        self.samples: list[float] = []
        self.proc = None
        if shutil.which("nvidia-smi"):
            cmd = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                   f"-lms={period_ms}"]  # fmt: skip
            if os.environ.get("CUDA_VISIBLE_DEVICES"):
                cmd += ["-i", os.environ["CUDA_VISIBLE_DEVICES"]]
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.samples.append(float(line.strip()))
            except ValueError:
                pass

    def stop(self) -> tuple[float, float] | None:
        """(fraction of samples with the GPU busy, mean utilisation %), over all visible GPUs."""
        if self.proc is None or not self.samples:
            return None
        self.proc.terminate()
        busy = sum(1 for s in self.samples if s > 0) / len(self.samples)
        return busy, sum(self.samples) / len(self.samples)


def _trial_times(rows: list[dict]) -> list[dict[str, float]]:
    """Each timed trial's moments (Unix seconds) from its row: the trial function entered, its
    TorchTrainer started, its worker function ran and returned, the trial completed."""
    times = []
    for r in rows:
        if r.get("trial_started_at") is None or r.get("trial_wall_s") is None:
            continue
        t0 = r["trial_started_at"]
        times.append({
            "entered": t0 - (r.get("trial_imports_s") or 0.0),
            "work_in": t0 + (r.get("ray_startup_s") or 0.0),
            "work_out": t0 + r["trial_wall_s"] - (r.get("ray_teardown_s") or 0.0),
            "done": t0 + r["trial_wall_s"],
        })  # fmt: skip
    return times


def _median(values: list[float]) -> float | None:
    return sorted(values)[len(values) // 2] if values else None


def slot_timeline(rows: list[dict], slots: int, start: float, end: float) -> dict[str, float]:
    """Where the sweep's slot-time went, from each trial's times in the results table.

    A trial is in a slot's work from the moment its worker function runs
    (``trial_started_at + ray_startup_s``) until it returns
    (``trial_started_at + trial_wall_s - ray_teardown_s``);
    that span includes train()'s own set-up (data, model, compile), which is not Ray's. While
    ``r`` trials are still unfinished, ``min(slots, r)`` slots could be working: the slot-time
    they are not is what Ray's start-up and teardown cost. The end of the sweep after the last
    trial's work (Tune, ray.shutdown) is Ray's too. A slot idle because no trial is left to
    run is not counted.
    """
    spans = [(t["work_in"], t["work_out"]) for t in _trial_times(rows)]
    if not spans:
        return {"lost_slot_s": float("nan"), "end_s": float("nan"), "ray_share": float("nan")}
    last_out = max(out for _, out in spans)
    events = sorted({start, last_out, *(t for span in spans for t in span)})
    lost = 0.0
    for a, b in zip(events, events[1:]):
        if b <= start or a >= last_out:
            continue
        mid = (a + b) / 2
        remaining = sum(1 for _, out in spans if out > mid)
        busy = sum(1 for t_in, out in spans if t_in <= mid < out)
        lost += max(0, min(slots, remaining) - busy) * (b - a)
    end_s = max(0.0, end - last_out)
    return {
        "lost_slot_s": lost,
        "end_s": end_s,
        "ray_share": (lost / slots + end_s) / max(end - start, 1e-9),
    }


def sweep_phases(rows: list[dict], start: float, ray_init_s: float) -> dict[str, float | None]:
    """Where a sweep's own time goes, from the results table's per-trial times.

    ``tune to first trial``: after ``ray.init``, until the first trial function runs (Tune's
    set-up, the trial's process); ``first work``: the sweep's start until the first worker function
    runs; ``tune launch``: median gap between a trial completing and the next trial function
    running (trials Tune started later than the first wave); ``trial imports``: median time the
    trial function spends importing Ray Train and torch before it starts the TorchTrainer.
    """
    times = _trial_times(rows)
    if not times:
        return {}
    done = [t["done"] for t in times]
    gaps = []
    for t in times:
        before = [d for d in done if d <= t["entered"]]
        if before:
            gaps.append(t["entered"] - max(before))
    return {
        "ray.init": ray_init_s,
        "tune to first trial": min(t["entered"] for t in times) - start - ray_init_s,
        "first work": min(t["work_in"] for t in times) - start,
        "tune launch": _median(gaps),
        "trial imports": _median([r.get("trial_imports_s") or 0.0 for r in rows]),
    }


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
    return f"{_median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depths", default="2,4,6")
    p.add_argument("--flops", default="2.5e14..1e15")
    p.add_argument("--num-flops", type=int, default=3, help="points in a FLOP range")
    p.add_argument("--packing", default="1,3", help="trials per GPU, one sweep each")
    p.add_argument("--data", default="shakespeare", help="dataset name or directory")
    p.add_argument("--total-batch-size", type=int, default=65536)
    p.add_argument("--device-batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--compile", action="store_true", help="torch.compile each trial's model")
    p.add_argument("--storage", default=None, help="default: a temporary directory")
    p.add_argument("--label", default="", help="prefix of the sweeps' names")
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
        data=args.data,
    )
    header = ("| trials per GPU | trials | sweep wall s | sum of training s "
              "| Ray start-up per trial s | train set-up per trial s | Ray teardown per trial s "
              "| Ray share of sweep wall | sweep start + end s | GPU busy (mean util) "
              "| tokens/s (whole sweep) | statuses |")  # fmt: skip
    table = []
    for packing in (int(x) for x in args.packing.split(",")):
        sweep = SweepConfig(
            depths=parse_depths(args.depths),
            flops=parse_flops(args.flops, args.num_flops),
            name=f"{args.label}packing{packing}",
            storage=storage,
            trials_per_gpu=packing,
            cpus_per_trial=1,
            allow_repeat=True,  # a measure of Ray's cost, not of the data
            analyze=False,
            train=train,
        )
        sampler = GpuSampler()
        started = time.time()
        out = run_sweep(sweep)
        ended = time.time()
        gpu = sampler.stop()
        rows = out["rows"]
        slots = out["concurrent"]
        timeline = slot_timeline(rows, slots, started, ended)
        train_s = sum(r.get("wall_s") or 0 for r in rows)
        tokens = sum(r.get("tokens") or 0 for r in rows)
        starts = [r["trial_started_at"] for r in rows if r.get("trial_started_at")]
        fixed = (min(starts) - started) + timeline["end_s"] if starts else None
        startup = [r.get("ray_startup_s") or 0.0 for r in rows]
        setup = [r.get("setup_s") or 0.0 for r in rows]
        teardown = [r.get("ray_teardown_s") or 0.0 for r in rows]
        gpu_text = f"{100 * gpu[0]:.0f}% ({gpu[1]:.0f}%)" if gpu else "-"
        statuses = ", ".join(sorted({str(r.get("status")) for r in rows}))
        line = (
            f"| {packing} | {len(rows)} | {ended - started:.0f} "
            f"| {train_s:.0f} | {_spread(startup)} | {_spread(setup)} | {_spread(teardown)} "
            f"| {100 * timeline['ray_share']:.1f}% "
            f"| {'-' if fixed is None else f'{fixed:.0f}'} | {gpu_text} "
            f"| {tokens / (ended - started):,.0f} | {statuses} |"
        )
        table.append(line)
        print(header, line, sep="\n", flush=True)  # each row as soon as it is measured
        own = sweep_phases(rows, started, out.get("ray_init_s", 0.0))
        own["end after the last work"] = timeline["end_s"]
        own["ray.shutdown"] = out.get("ray_shutdown_s")
        print(
            "Per sweep (s): "
            + ", ".join(f"{k} {'-' if v is None else f'{v:.1f}'}" for k, v in own.items()),
            flush=True,
        )
        phases = ray_start_phases(rows, sweep.name)
        if any(phases.values()):
            print(f"Ray start-up by phase, packing {packing} (s, median (min-max)):")
            for name, values in phases.items():
                print(f"  {name:32s} {_spread(values)}", flush=True)
    print("\n" + header)
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(table))
    print(
        "\nRay share of sweep wall: slot-time lost to Ray while trials were waiting to run "
        "(start-up, teardown, the gaps between trials) divided by the number of slots, plus "
        "the sweep's end after the last trial's work, over the sweep's wall time "
        "(slot_timeline). Per-trial columns are median (min-max)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
