"""What watches a training run: its metrics log (metrics.jsonl, and wandb when asked), its
throughput, and whether it has diverged. ``nanogpt.train`` owns one of each per run."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from nanogpt.config import TrainConfig


class MetricsLog:
    """metrics.jsonl and optional wandb, rank 0 only."""

    def __init__(self, run_dir: Path, cfg: TrainConfig, is_main: bool) -> None:
        self.is_main = is_main
        self.path = run_dir / "metrics.jsonl"
        self.wandb = None
        if is_main and cfg.wandb != "disabled":
            import wandb

            self.wandb = wandb.init(
                project=cfg.wandb_project,
                group=cfg.wandb_group,
                name=run_dir.name,
                mode=cfg.wandb,
                dir=str(run_dir),
                config=dataclasses.asdict(cfg),
                reinit=True,
            )

    def log(self, metrics: dict[str, Any]) -> None:
        if not self.is_main:
            return
        clean = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in metrics.items()
        }
        with self.path.open("a") as f:
            f.write(json.dumps(clean) + "\n")
        if self.wandb is not None:
            self.wandb.log(
                {k: v for k, v in clean.items() if isinstance(v, int | float)}, step=metrics["step"]
            )

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


class Divergence:
    """Decides when a run has diverged: a loss that is not finite, or (after warmup) a smoothed
    loss more than ``blowup_factor`` times the best smoothed loss so far. The smoothing is an
    exponential moving average with weight 0.1 on the newest logged loss."""

    def __init__(
        self, blowup_factor: float, warmup: int, ema: float | None = None, best: float | None = None
    ) -> None:
        self.blowup_factor, self.warmup = blowup_factor, warmup
        self.ema, self.best = ema, best  # checkpoints keep both, so a resumed run goes on alike

    def update(self, step: int, loss: float) -> str | None:
        """Take the loss logged at ``step``; return why the run diverged, or None."""
        if not math.isfinite(loss):
            return f"loss is {loss}"
        self.ema = loss if self.ema is None else 0.9 * self.ema + 0.1 * loss
        best = self.best
        self.best = self.ema if best is None else min(best, self.ema)
        if step > self.warmup and best is not None and self.ema > self.blowup_factor * best:
            return (
                f"smoothed loss {self.ema:.3f} is more than {self.blowup_factor}x its best "
                f"({best:.3f})"
            )
        return None


class Throughput:
    """Tokens per second over each logging window and over the whole run. The first window
    (compilation, allocation) and the time spent evaluating and saving are left out."""

    def __init__(self) -> None:
        self.start = self.window_start = time.perf_counter()
        self.window_tokens, self.timed_tokens, self.timed_s = 0, 0, 0.0

    def add(self, tokens: int) -> None:
        self.window_tokens += tokens

    def lap(self, counted: bool) -> tuple[float, float]:
        """Close the window: (its tokens per second, seconds since the start)."""
        now = time.perf_counter()
        window_s = now - self.window_start
        tokens_per_s = self.window_tokens / window_s if window_s > 0 else 0.0
        if counted:
            self.timed_s += window_s
            self.timed_tokens += self.window_tokens
        self.window_start, self.window_tokens = now, 0
        return tokens_per_s, now - self.start

    @contextlib.contextmanager
    def paused(self, device: torch.device) -> Iterator[None]:
        """Leave what runs inside (an evaluation, a checkpoint) out of the window's time."""
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the steps queued before it belong to the window
        began = time.perf_counter()
        yield
        self.window_start += time.perf_counter() - began

    @property
    def tokens_per_s(self) -> float:
        return self.timed_tokens / self.timed_s if self.timed_s > 0 else 0.0


def last_logged(path: Path, steps: int) -> dict[str, Any] | None:
    """The last training row (one with a train_loss) at or before ``steps`` in a metrics.jsonl,
    or None when there is none; a torn last line (a killed run) is skipped."""
    last = None
    with contextlib.suppress(OSError), path.open() as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and row.get("train_loss") is not None:
                if row.get("step", steps + 1) <= steps:
                    last = row
    return last


def read_summary(path: Path) -> dict[str, Any] | None:
    """A run's summary.json, or None when it is missing or unreadable."""
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None
