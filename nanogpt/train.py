"""Training: ``train(cfg, report=None) -> summary``, and ``python -m nanogpt.train``.

One code path for one process (CPU or one GPU), ``torchrun --nproc_per_node=N`` (gloo on CPU,
NCCL on GPU) and a Ray Train worker: the process group is created only if none exists, the
model is never wrapped in DDP (the optimizer reduce-scatters gradients itself), and
``report(metrics, checkpoint_dir)`` is called on every rank at each evaluation and each
checkpoint, with the same values on every rank.

Read it from ``_run`` down: ``_set_up`` builds a :class:`Run` (model, optimizer, data, plan),
then each step is ``train_step`` (the hot loop: forward, backward, optimizer), ``_log_step``
(the one host sync), a :class:`Divergence` check, and ``_evaluate_and_save``; ``_summary``
is the run's results row.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nanogpt import atomic, dist, faults, scaling
from nanogpt import checkpoint as ckpt
from nanogpt.config import ModelConfig, TrainConfig, parse_train_config
from nanogpt.data import TokenFileError
from nanogpt.data.sources import count_train_tokens, data_tokenizer, make_loader, run_data
from nanogpt.evals import training as downstream
from nanogpt.evals.bundle import BundleError
from nanogpt.model import GPT
from nanogpt.monitor import Divergence, MetricsLog, Throughput, last_logged, read_summary
from nanogpt.optim import MuonAdamW
from nanogpt.optim.build import build_optimizer, optimizer_options
from nanogpt.validation import evaluate, token_byte_lengths

Report = Callable[[dict[str, Any], "str | None"], None]


def peak_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak (nanogpt.scaling.PEAK_BF16_FLOPS); None on a CPU."""
    if device.type != "cuda":
        return None
    return scaling.peak_flops(torch.cuda.get_device_name(device))


class BatchSizeError(ValueError):
    pass


def gradient_accumulation(cfg: TrainConfig, world_size: int) -> int:
    """Micro-steps per optimizer step; impossible combinations name every number involved."""
    per_micro = cfg.device_batch_size * cfg.seq_len * world_size
    if cfg.total_batch_size % per_micro:
        raise BatchSizeError(
            f"--total-batch-size {cfg.total_batch_size:,} tokens is not a multiple of "
            f"--device-batch-size {cfg.device_batch_size} x --seq-len {cfg.seq_len} x "
            f"{world_size} rank(s) = {per_micro:,} tokens per micro-step; pick a total that is "
            f"(e.g. {max(1, round(cfg.total_batch_size / per_micro)) * per_micro:,})"
        )
    return cfg.total_batch_size // per_micro


def plan_steps(cfg: TrainConfig, shape: scaling.ModelShape, train_tokens: int | None) -> int:
    """Steps from --num-iterations, else --target-flops, else --tokens-per-param."""
    if cfg.num_iterations > 0:
        return cfg.num_iterations
    if cfg.target_flops > 0:
        steps, _ = scaling.budget_to_steps(cfg.target_flops, shape, cfg.total_batch_size)
        return steps
    if cfg.mode == "mid-training" and train_tokens is not None:
        return max(1, train_tokens // cfg.total_batch_size)  # one pass over the mixture
    n = scaling.param_counts(shape)["params_scaling"]
    return max(1, math.ceil(cfg.tokens_per_param * n / cfg.total_batch_size))


def lr_multiplier(step: int, steps: int, warmup: int, min_ratio: float) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay to ``min_ratio`` at the end."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def effective_warmup(cfg: TrainConfig, steps: int) -> int:
    return max(1, min(cfg.warmup_steps, steps // 10)) if cfg.warmup_steps > 0 else 0


def _say(info: dist.DistInfo, text: str) -> None:
    """Print on rank 0, flushed at once: a Ray worker's or torchrun's stdout is a pipe or a
    file, where unflushed lines would sit in a buffer until the run ends."""
    if info.is_main:
        print(text, flush=True)


StepFn = Callable[["Run", int], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Run:
    """What set-up builds and the loop reads: the plan, the parts, where training starts."""

    cfg: TrainConfig
    info: dist.DistInfo
    model_cfg: ModelConfig
    tokenizer: str
    data_source: str | Path
    data_note: str
    run_dir: Path
    train_tokens_available: int | None
    steps: int
    warmup: int
    grad_accum: int
    flops_per_token: int
    counts: dict[str, int]
    model: GPT
    forward: Callable[..., torch.Tensor]  # the model, compiled if asked
    optimizer: MuonAdamW
    train_loader: Any
    val_batches: list[tuple[torch.Tensor, torch.Tensor]]
    token_bytes: torch.Tensor
    divergence: Divergence
    step_fn: StepFn  # train_step, or a fault-injecting wrapper of it (nanogpt.faults)
    start_step: int = 0
    peak_flops: float | None = None
    evals: downstream.Schedule = field(default_factory=list)  # --core-evals, --chatcore-evals
    eval_scores: dict[str, float] = field(default_factory=dict)  # the latest of them

    @property
    def eval_tokens(self) -> int:
        return (
            len(self.val_batches)
            * self.cfg.device_batch_size
            * self.cfg.seq_len
            * (self.info.world_size)
        )


# --- set-up -------------------------------------------------------------------------------------


def _set_up(cfg: TrainConfig, info: dist.DistInfo) -> Run:
    """Data, plan, model, optimizer, loaders and validation batches; then resume if asked."""
    device = info.device
    grad_accum = gradient_accumulation(cfg, info.world_size)
    # The bundle and task files are read now, so a missing one fails before any training.
    evals = downstream.schedule_from_config(cfg, info.world_size)
    data_source, data_note = run_data(cfg.data, cfg.mode)
    tokenizer, vocab_size = data_tokenizer(data_source)
    model_cfg = cfg.model_config(vocab_size)
    shape = model_cfg.shape
    train_tokens_available = count_train_tokens(data_source)
    steps = plan_steps(cfg, shape, train_tokens_available)

    torch.manual_seed(cfg.seed)
    model = GPT(model_cfg).to(device)
    if cfg.checkpoint:
        ckpt.load_model(cfg.checkpoint, model, dataclasses.asdict(model_cfg), tokenizer)
    optimizer = build_optimizer(model, cfg, **optimizer_options(cfg, device))
    loader_args = dict(
        vocab_size=vocab_size, batch_size=cfg.device_batch_size, seq_len=cfg.seq_len,
        rank=info.rank, world_size=info.world_size, seed=cfg.seed, loss_mask=cfg.loss_mask,
        device=device,
    )  # fmt: skip
    train_loader = make_loader(data_source, "train", **loader_args)
    per_micro_step = cfg.device_batch_size * cfg.seq_len * info.world_size
    val_per_rank = max(1, cfg.eval_tokens_on(device.type) // per_micro_step)
    val_loader = make_loader(data_source, "val", **loader_args)
    val_batches = [next(val_loader) for _ in range(val_per_rank)]
    warmup = effective_warmup(cfg, steps)
    step_fn: StepFn = train_step
    if cfg.debug_nan_at_step >= 0:
        step_fn = faults.nan_loss_at(train_step, cfg.debug_nan_at_step)
    run = Run(
        cfg=cfg,
        info=info,
        model_cfg=model_cfg,
        tokenizer=tokenizer,
        data_source=data_source,
        data_note=data_note,
        run_dir=Path(cfg.out_dir) / (cfg.run_name or f"d{cfg.depth}-{cfg.mode}"),
        train_tokens_available=train_tokens_available,
        steps=steps,
        warmup=warmup,
        grad_accum=grad_accum,
        flops_per_token=scaling.flops_per_token(shape),
        counts=scaling.param_counts(shape),
        model=model,
        forward=model,
        optimizer=optimizer,
        train_loader=train_loader,
        val_batches=val_batches,
        token_bytes=token_byte_lengths(device, tokenizer),
        divergence=Divergence(cfg.blowup_factor, warmup),
        step_fn=step_fn,
        evals=evals,
    )
    if cfg.resume:
        _resume(run)
    if info.is_main:
        run.run_dir.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    run.peak_flops = peak_flops(device)
    return run


def _resume(run: Run) -> None:
    """Weights, optimizer shard, RNG, data position and divergence state of the checkpoint."""
    cfg = run.cfg
    found = ckpt.find_latest(run.run_dir) if cfg.resume == "auto" else Path(cfg.resume or "")
    if found is None:
        _say(run.info, f"resume: no checkpoint in {run.run_dir} yet; starting from step 0")
        return
    meta = ckpt.load_model(found, run.model, dataclasses.asdict(run.model_cfg), run.tokenizer)
    ckpt.load_rank_state(found, run.optimizer)
    run.train_loader.load_state_dict(meta["loader"])
    run.start_step = int(meta["step"])
    run.divergence.ema, run.divergence.best = meta.get("ema_loss"), meta.get("best_ema")
    _say(run.info, f"resume: continuing from {found} (step {run.start_step})")


def _print_config(run: Run) -> None:
    """Every field of the config, then every number derived from it."""
    cfg, info, shape, counts = run.cfg, run.info, run.model_cfg.shape, run.counts
    tokens = run.steps * cfg.total_batch_size
    lr_groups = {g["name"]: g["initial_lr"] for g in run.optimizer.param_groups}
    eval_note = f"{len(run.val_batches)} batches per rank"
    if cfg.eval_tokens == 0:
        eval_note += f"; the {info.device.type.upper()} default, --eval-tokens sets it"
    lines = [f"nanogpt train: {run.run_dir}", f"  {run.data_note}"]
    lines += [f"  {f.name} = {getattr(cfg, f.name)!r}" for f in dataclasses.fields(cfg)]
    lines += [
        f"  derived: n_layer={shape.n_layer} n_embd={shape.n_embd} n_head={shape.n_head} "
        f"tokenizer={run.tokenizer} vocab={run.model_cfg.vocab_size} "
        f"(padded {run.model_cfg.padded_vocab_size})",
        f"  derived: params_total={counts['params_total']:,} "
        f"params_scaling={counts['params_scaling']:,} flops_per_token={run.flops_per_token:,}",
        f"  derived: world_size={info.world_size} device={info.device} "
        f"grad_accum={run.grad_accum} steps={run.steps:,} warmup={run.warmup} tokens={tokens:,} "
        f"flops={tokens * run.flops_per_token:.3e} "
        f"tokens_per_param={tokens / counts['params_scaling']:.3g}",
        f"  derived: eval_tokens={run.eval_tokens:,} per evaluation ({eval_note})",
        *downstream.describe(run.evals),
        "  derived: peak lr " + ", ".join(f"{k}={v:.3g}" for k, v in lr_groups.items()),
    ]
    _say(info, "\n".join(lines))


# --- one step -----------------------------------------------------------------------------------


def set_lr(run: Run, step: int) -> float:
    """Every group's rate for this step (warmup, then cosine decay); returns the multiplier."""
    lr_mult = lr_multiplier(step, run.steps, run.warmup, run.cfg.lr_min_ratio)
    for group in run.optimizer.param_groups:
        group["lr"] = group["initial_lr"] * lr_mult
    return lr_mult


def train_step(run: Run, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step over ``grad_accum`` micro-batches: the summed micro-batch losses (on
    the device: no host sync here) and the global gradient norm."""
    device = run.info.device
    loss_sum = torch.zeros((), device=device)
    for _ in range(run.grad_accum):
        x, y = next(run.train_loader)
        with dist.autocast(device):
            loss = run.forward(x, y)
        (loss / run.grad_accum).backward()
        loss_sum += loss.detach()
    grad_norm = run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    return loss_sum, grad_norm


# --- logging ------------------------------------------------------------------------------------


def _log_step(
    run: Run, clock: Throughput, done: int, loss_sum: torch.Tensor, grad_norm: Any, lr_mult: float
) -> dict[str, Any]:
    """The metrics of step ``done`` (the one host sync of a logged step)."""
    cfg, info, device = run.cfg, run.info, run.info.device
    loss_t = dist.all_reduce_sum(loss_sum / run.grad_accum) / info.world_size
    train_loss = float(loss_t.item())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    # The first step pays for warm-up; it is timed only when it is the whole run.
    counted = done - 1 > run.start_step or done == run.steps
    tokens_per_s, elapsed_s = clock.lap(counted)
    peak = run.peak_flops
    mfu = run.flops_per_token * tokens_per_s / (peak * info.world_size) if peak else None
    return {
        "step": done,
        "steps_planned": run.steps,
        "tokens": done * cfg.total_batch_size,
        "flops": done * cfg.total_batch_size * run.flops_per_token,
        "train_loss": train_loss,
        "lr": run.optimizer.param_groups[-1]["lr"],  # an AdamW group's actual rate
        "lr_multiplier": lr_mult,
        "grad_norm": float(grad_norm),
        "tokens_per_s": tokens_per_s,
        "mfu": mfu,
        "elapsed_s": elapsed_s,
        "status": "running",
    }


def _print_step(run: Run, last: dict[str, Any]) -> None:
    mfu = last["mfu"]
    _say(
        run.info,
        f"step {last['step']:>6}/{run.steps} | loss {last['train_loss']:.4f} | "
        f"lr x{last['lr_multiplier']:.3f} | grad {last['grad_norm']:.3f} | "
        f"{last['tokens_per_s']:,.0f} tok/s"
        + (f" | mfu {100 * mfu:.1f}%" if mfu is not None else "")
        + f" | {last['elapsed_s']:.1f}s",
    )


# --- evaluate and save --------------------------------------------------------------------------


def _validate(run: Run, done: int, every_s: float = 10.0) -> dict[str, float]:
    """Validation loss and bits per byte, saying what it does and, when slow, how far it got."""
    info, total = run.info, len(run.val_batches)
    _say(info, f"step {done:>6}/{run.steps} | evaluating {run.eval_tokens:,} validation tokens")
    started = last_said = time.perf_counter()

    def progress(n: int) -> None:
        nonlocal last_said
        now = time.perf_counter()
        if now - last_said >= every_s and n < total:
            last_said = now
            _say(info, f"  eval: {n}/{total} batches ({n / total:.0%}), {now - started:.0f}s")

    val = evaluate(run.forward, run.val_batches, run.token_bytes, info.device, progress)
    _say(
        info,
        f"step {done:>6}/{run.steps} | val loss {val['val_loss']:.4f} | "
        f"val bpb {val['val_bpb']:.4f} | {time.perf_counter() - started:.1f}s",
    )
    return val


def _downstream_evals(run: Run, done: int, final: bool) -> dict[str, float]:
    """CORE / ChatCORE due now, on the uncompiled model (no recompiles for new shapes)."""
    meta = {"config": dataclasses.asdict(run.cfg), "step": done}
    say = lambda text: _say(run.info, text)  # noqa: E731
    scores = downstream.run_due(run.evals, done, final, run.model, run.tokenizer, meta, say)
    run.eval_scores.update(scores)
    return scores


def _checkpoint_meta(run: Run, done: int) -> dict[str, Any]:
    cfg = run.cfg
    return {
        "config": dataclasses.asdict(cfg),
        "model_config": dataclasses.asdict(run.model_cfg),
        "tokenizer": run.tokenizer,
        "tokens": done * cfg.total_batch_size,
        "flops": done * cfg.total_batch_size * run.flops_per_token,
        "loader": run.train_loader.state_dict(),
        "ema_loss": run.divergence.ema,
        "best_ema": run.divergence.best,
        "steps_planned": run.steps,
    }


def _evaluate_and_save(
    run: Run,
    logger: MetricsLog,
    report: Report | None,
    clock: Throughput,
    done: int,
    last: dict[str, Any],
    val: dict[str, float],
    end_now: bool,
) -> tuple[dict[str, float], Path | None]:
    """Evaluate and checkpoint when due (always at the end), then report; returns the latest
    validation metrics and the checkpoint written, if any."""
    cfg = run.cfg
    do_eval = done % cfg.eval_every == 0 or end_now
    do_save = (cfg.save_every > 0 and done % cfg.save_every == 0) or end_now
    do_downstream = bool(run.evals) and downstream.is_due(run.evals, done, end_now)
    if not (do_eval or do_save or do_downstream):
        return val, None
    saved, scores = None, {}
    with clock.paused(run.info.device):
        if do_eval:
            val = _validate(run, done)
        if do_downstream:
            scores = _downstream_evals(run, done, end_now)
        if do_eval or scores:
            logger.log({**last, **(val if do_eval else {}), **scores, "step": done})
        if do_save:
            meta = _checkpoint_meta(run, done)
            saved = ckpt.save(
                run.run_dir, done, run.model, run.optimizer, meta, keep=cfg.keep_checkpoints
            )
    if report is not None:
        report({**last, **val, **scores, "status": "running"}, str(saved) if saved else None)
    return val, saved


# --- the run ------------------------------------------------------------------------------------


def _summary(
    run: Run,
    status: str,
    last: dict[str, Any],
    val_metrics: dict[str, float],
    wall_s: float,
    setup_s: float,
    tokens_per_s: float,
    final_ckpt: Path | None,
) -> dict[str, Any]:
    """The run's results row (also summary.json)."""
    cfg, info, shape, device = run.cfg, run.info, run.model_cfg.shape, run.info.device
    flops_per_token, steps = run.flops_per_token, run.steps
    train_tokens_available, peak = run.train_tokens_available, run.peak_flops
    summary = {
        **scaling.shape_columns(shape),  # n_layer, n_embd, n_head, params_*, flops_per_token
        "depth": cfg.depth,
        "status": status,
        "steps": last.get("step", run.start_step),
        "steps_planned": steps,
        "tokens": last.get("tokens", 0),
        "flops": last.get("flops", 0),
        "final_train_loss": last.get("train_loss", float("nan")),
        "final_val_loss": val_metrics["val_loss"],
        "val_bpb": val_metrics["val_bpb"],
        "wall_s": wall_s,
        "setup_s": setup_s,  # model, data, validation batches: before the first step
        "tokens_per_s": tokens_per_s,
        "mfu": None,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "tokenizer": run.tokenizer,
        "dataset": str(run.data_source),
        "epochs": (last.get("tokens", 0) / train_tokens_available)
        if train_tokens_available
        else None,
        "world_size": info.world_size,
        "run_dir": str(run.run_dir),
        "checkpoint": str(final_ckpt) if final_ckpt else None,
    }
    if peak and summary["tokens_per_s"]:
        summary["mfu"] = flops_per_token * summary["tokens_per_s"] / (peak * info.world_size)
    summary.update({k: v for k, v in run.eval_scores.items() if k in ("core", "chatcore")})
    return summary


def _write_summary(summary: dict[str, Any], run_dir: Path) -> None:
    atomic.write_json(run_dir / "summary.json", summary, sort_keys=True, default=str)


def _finished(run: Run, report: Report | None) -> dict[str, Any]:
    """A run resumed at its last step (a trial retried after it finished, a second `--resume
    auto`) has nothing to train: its final checkpoint is validated again (the same weights and
    batches give the same loss), the last training row comes from metrics.jsonl, and a
    summary.json that already says the run is done is kept as it is, never overwritten."""
    _say(run.info, f"resume: the run already ran its {run.steps} steps; nothing left to train")
    val = _validate(run, run.steps)
    tokens = run.steps * run.cfg.total_batch_size
    fallback = {"step": run.steps, "tokens": tokens, "flops": tokens * run.flops_per_token}
    last = last_logged(run.run_dir / "metrics.jsonl", run.steps) or fallback
    final = ckpt.find_latest(run.run_dir)
    summary = _summary(run, "ok", last, val, 0.0, 0.0, 0.0, final)
    previous = read_summary(run.run_dir / "summary.json")
    if previous and previous.get("status") == "ok" and previous.get("steps") == run.steps:
        summary = previous
    elif run.info.is_main:
        _write_summary(summary, run.run_dir)
    if report is not None:
        report({**last, **val, "status": "ok"}, None)
    return summary


def _run(cfg: TrainConfig, info: dist.DistInfo, report: Report | None) -> dict[str, Any]:
    entered = time.perf_counter()
    run = _set_up(cfg, info)
    _print_config(run)
    if run.start_step >= run.steps:
        return _finished(run, report)
    if cfg.compile:
        run.forward = torch.compile(run.model)
    logger = MetricsLog(run.run_dir, cfg, info.is_main)
    run.model.train()
    status, last, final_ckpt = "ok", {}, None
    val: dict[str, float] = {"val_loss": float("nan"), "val_bpb": float("nan")}
    clock = Throughput()
    try:
        for step in range(run.start_step, run.steps):
            lr_mult = set_lr(run, step)
            loss_sum, grad_norm = run.step_fn(run, step)
            done = step + 1
            clock.add(cfg.total_batch_size)
            is_last = done == run.steps
            stop_now = cfg.stop_at_step > 0 and done >= cfg.stop_at_step and not is_last

            if done % cfg.log_every == 0 or is_last or stop_now:
                last = _log_step(run, clock, done, loss_sum, grad_norm, lr_mult)
                if reason := run.divergence.update(done, last["train_loss"]):
                    status = last["status"] = "diverged"
                    _say(info, f"step {done}: {reason}; stopping: diverged")
                    logger.log({**last, **val})
                    if report is not None:
                        report({**last, **val}, None)
                    break
                _print_step(run, last)
                logger.log(last)

            end_now = is_last or stop_now
            val, saved = _evaluate_and_save(run, logger, report, clock, done, last, val, end_now)
            final_ckpt = saved or final_ckpt
            if stop_now:
                status = "stopped"
                _say(
                    info,
                    f"stopped at step {done} as asked (--stop-at-step); resume with --resume auto",
                )
                break
    finally:
        logger.close()

    wall_s = time.perf_counter() - clock.start
    setup_s = clock.start - entered
    summary = _summary(run, status, last, val, wall_s, setup_s, clock.tokens_per_s, final_ckpt)
    if report is not None and status != "diverged":
        report({**last, **val, **run.eval_scores, "status": status}, None)
    if info.is_main:
        _write_summary(summary, run.run_dir)
        _say(
            info,
            f"done: status={status} steps={summary['steps']}/{run.steps} "
            f"val_loss={summary['final_val_loss']:.4f} val_bpb={summary['val_bpb']:.4f} "
            f"wall={wall_s:.1f}s tokens/s={summary['tokens_per_s']:,.0f}",
        )
    return summary


def train(cfg: TrainConfig, report: Report | None = None) -> dict[str, Any]:
    """Run training as configured; returns the summary (status ok / diverged / stopped)."""
    info = dist.init(cfg.device)
    try:
        if cfg.mode != "all":
            return _run(cfg, info, report)
        base = cfg.run_name or f"d{cfg.depth}"
        pre = _run(
            dataclasses.replace(cfg, mode="pretraining", run_name=f"{base}-pretraining"),
            info,
            report,
        )
        if pre["status"] != "ok":
            return pre
        _say(info, f"pretraining done; mid-training from {pre['checkpoint']}")
        mid_cfg = dataclasses.replace(
            cfg,
            mode="mid-training",
            run_name=f"{base}-mid-training",
            checkpoint=pre["checkpoint"],
            num_iterations=cfg.mid_iterations,
            target_flops=0.0,
            data=None,
        )
        return _run(mid_cfg, info, report)
    finally:
        dist.teardown(info)


USER_ERRORS = (BatchSizeError, FileNotFoundError, ckpt.CheckpointError, TokenFileError, BundleError)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_train_config(argv)
    try:
        summary = train(cfg)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if summary["status"] in ("ok", "stopped") else 1


if __name__ == "__main__":
    sys.exit(main())
