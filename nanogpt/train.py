"""Training: ``train(cfg, report=None) -> summary``, and ``python -m nanogpt.train``.

One code path for one process (CPU or one GPU), ``torchrun --nproc_per_node=N`` (gloo on CPU,
NCCL on GPU) and a Ray Train worker: the process group is created only if none exists, the
model is never wrapped in DDP (the optimizer reduce-scatters gradients itself), and
``report(metrics, checkpoint_dir)`` is called on every rank at each evaluation and each
checkpoint, with the same values on every rank.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as torch_dist

from nanogpt import atomic, dist, scaling
from nanogpt import checkpoint as ckpt
from nanogpt import data as data_mod
from nanogpt.config import TrainConfig, parse_train_config
from nanogpt.model import GPT
from nanogpt.optim import MuonAdamW
from nanogpt.tokenizer import get_tokenizer

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


def build_optimizer(model: GPT, cfg: TrainConfig) -> MuonAdamW:
    kinds = model.parameter_kinds()
    width_mult = scaling.lr_width_multiplier(model.config.n_embd)
    adam_lr = cfg.lr_adamw * width_mult
    adam_wd = scaling.weight_decay_for_lr(cfg.weight_decay, width_mult)
    betas = (cfg.adam_beta1, cfg.adam_beta2)
    groups: list[dict[str, Any]] = [
        dict(
            kind="muon",
            name="matrix",
            params=kinds["matrix"],
            lr=cfg.lr_muon,
            # Same decay per step (lr x wd) as the AdamW groups at width 768: the averaging
            # timescale 1/(lr x wd) is what should match (Wang & Aitchison, arXiv:2405.13698).
            weight_decay=scaling.weight_decay_for_lr(cfg.weight_decay, cfg.lr_muon / cfg.lr_adamw),
            momentum=cfg.muon_momentum,
        )
    ]
    for name, wd in (("embedding", adam_wd), ("lm_head", adam_wd), ("vector", 0.0)):
        if kinds[name]:
            groups.append(
                dict(
                    kind="adamw",
                    name=name,
                    params=kinds[name],
                    lr=adam_lr,
                    weight_decay=wd,
                    betas=betas,
                    eps=1e-8,
                )
            )
    return MuonAdamW(groups, max_grad_norm=cfg.grad_clip if cfg.grad_clip > 0 else None)


def token_byte_lengths(device: torch.device, tokenizer: str = "gpt2") -> torch.Tensor:
    """UTF-8 bytes per token id; special tokens count 0 and are left out of bits per byte."""
    return torch.tensor(get_tokenizer(tokenizer).token_bytes(), dtype=torch.int64, device=device)


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)
    return t


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    token_bytes: torch.Tensor,
    device: torch.device,
) -> dict[str, float]:
    """Validation loss (nats per token) and bits per byte over a fixed set of batches."""
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # nats, tokens, nats w/ bytes, bytes
    for x, y in batches:
        with dist.autocast(device):
            loss = model(x, y, loss_reduction="none").double()  # (B, T)
        valid = y != -1
        nbytes = token_bytes[y.clamp(min=0)] * valid
        counted = nbytes > 0
        sums += torch.stack(
            [
                (loss * valid).sum(),
                valid.sum().double(),
                (loss * counted).sum(),
                nbytes.sum().double(),
            ]
        )
    _all_reduce_sum(sums)
    model.train()
    nats, tokens, nats_b, nbytes = sums.tolist()
    return {
        "val_loss": nats / max(tokens, 1.0),
        "val_bpb": nats_b / (math.log(2) * nbytes) if nbytes else float("nan"),
    }


def _resolve_data(cfg: TrainConfig) -> tuple[str | Path, str]:
    """The data for this mode, and a sentence saying where it came from."""
    if cfg.data:
        return cfg.data, f"data: {cfg.data}"
    if cfg.mode == "mid-training":
        try:
            return data_mod.resolve_data_dir("task_mixture"), "data: the task mixture"
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"mid-training needs the task mixture: {e}; or pass --data DIR"
            ) from None
    try:
        fineweb = data_mod.resolve_data_dir("fineweb_edu")
        if (fineweb / "meta.json").is_file():
            return fineweb, "data: FineWeb-Edu (prepared)"
    except FileNotFoundError:
        pass
    return (
        data_mod.ensure_shakespeare(),
        "data: FineWeb-Edu is not prepared (python data/fineweb_edu/prepare.py), so this run "
        "uses the embedded Shakespeare corpus",
    )


def _sources(source: str | Path) -> list[Path]:
    text = str(source)
    if ("," in text or ":" in text) and not Path(text).exists():
        return [data_mod.resolve_data_dir(n) for n, _ in data_mod.parse_mixture(text)]
    return [data_mod.resolve_data_dir(text)]


def data_tokenizer(source: str | Path) -> tuple[str, int]:
    """(tokenizer, vocabulary size) of the data, from its meta.json; a mixture must agree."""
    found = {path: data_mod.dataset_tokenizer(path) for path in _sources(source)}
    if len(set(found.values())) > 1:
        listed = "; ".join(f"{p}: {t}" for p, (t, _) in found.items())
        raise data_mod.TokenFileError(
            f"the datasets of {source} were made with different tokenizers ({listed}); "
            "prepare them all with the same --tokenizer"
        )
    return next(iter(found.values()))


def _make_loader(
    source: str | Path,
    split: str,
    cfg: TrainConfig,
    info: dist.DistInfo,
    vocab_size: int,
) -> Any:
    kwargs = dict(
        vocab_size=vocab_size,
        split=split,
        batch_size=cfg.device_batch_size,
        seq_len=cfg.seq_len,
        rank=info.rank,
        world_size=info.world_size,
        seed=cfg.seed,
        loss_mask=cfg.loss_mask,
        device=info.device,
    )
    text = str(source)
    if ("," in text or ":" in text) and not Path(text).exists():
        sources = [(data_mod.resolve_data_dir(n), w) for n, w in data_mod.parse_mixture(text)]
        return data_mod.MultiplexLoader(sources, **kwargs)
    return data_mod.DataLoader(data_mod.resolve_data_dir(text), **kwargs)


def _count_train_tokens(source: str | Path) -> int | None:
    text = str(source)
    if ("," in text or ":" in text) and not Path(text).exists():
        return None  # a mixture has no single "one pass"
    return data_mod.count_tokens(data_mod.resolve_data_dir(text), "train")


class _Logger:
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


def _say(info: dist.DistInfo, text: str) -> None:
    if info.is_main:
        print(text, flush=True)


def _run(cfg: TrainConfig, info: dist.DistInfo, report: Report | None) -> dict[str, Any]:
    entered = time.perf_counter()
    device = info.device
    data_source, data_note = _resolve_data(cfg)
    tokenizer, vocab_size = data_tokenizer(data_source)
    model_cfg = cfg.model_config(vocab_size)
    shape = model_cfg.shape
    run_name = cfg.run_name or f"d{cfg.depth}-{cfg.mode}"
    run_dir = Path(cfg.out_dir) / run_name
    grad_accum = gradient_accumulation(cfg, info.world_size)

    train_tokens_available = _count_train_tokens(data_source)
    steps = plan_steps(cfg, shape, train_tokens_available)
    warmup = effective_warmup(cfg, steps)
    flops_per_token = scaling.flops_per_token(shape)
    counts = scaling.param_counts(shape)

    torch.manual_seed(cfg.seed)
    model = GPT(model_cfg).to(device)
    if cfg.checkpoint:
        ckpt.load_model(cfg.checkpoint, model, dataclasses.asdict(model_cfg), tokenizer)
    optimizer = build_optimizer(model, cfg)
    train_loader = _make_loader(data_source, "train", cfg, info, vocab_size)
    val_per_rank = max(
        1, cfg.eval_tokens // (cfg.device_batch_size * cfg.seq_len * info.world_size)
    )
    val_loader = _make_loader(data_source, "val", cfg, info, vocab_size)
    val_batches = [next(val_loader) for _ in range(val_per_rank)]
    token_bytes = token_byte_lengths(device, tokenizer)

    start_step, ema_loss, best_ema = 0, None, None
    if cfg.resume:
        found = ckpt.find_latest(run_dir) if cfg.resume == "auto" else Path(cfg.resume)
        if found is None:
            _say(info, f"resume: no checkpoint in {run_dir} yet; starting from step 0")
        else:
            meta = ckpt.load_model(found, model, dataclasses.asdict(model_cfg), tokenizer)
            ckpt.load_rank_state(found, optimizer)
            train_loader.load_state_dict(meta["loader"])
            start_step = int(meta["step"])
            ema_loss, best_ema = meta.get("ema_loss"), meta.get("best_ema")
            _say(info, f"resume: continuing from {found} (step {start_step})")
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    dist.barrier()

    peak = peak_flops(device)
    lr_groups = {g["name"]: g["initial_lr"] for g in optimizer.param_groups}
    if info.is_main:
        print(f"nanogpt train: {run_dir}")
        print(f"  {data_note}")
        for field in dataclasses.fields(cfg):
            print(f"  {field.name} = {getattr(cfg, field.name)!r}")
        print(
            f"  derived: n_layer={shape.n_layer} n_embd={shape.n_embd} n_head={shape.n_head} "
            f"tokenizer={tokenizer} vocab={model_cfg.vocab_size} "
            f"(padded {model_cfg.padded_vocab_size})\n"
            f"  derived: params_total={counts['params_total']:,} "
            f"params_scaling={counts['params_scaling']:,} flops_per_token={flops_per_token:,}\n"
            f"  derived: world_size={info.world_size} device={device} grad_accum={grad_accum} "
            f"steps={steps:,} warmup={warmup} tokens={steps * cfg.total_batch_size:,} "
            f"flops={steps * cfg.total_batch_size * flops_per_token:.3e} "
            f"tokens_per_param={steps * cfg.total_batch_size / counts['params_scaling']:.3g}\n"
            f"  derived: peak lr " + ", ".join(f"{k}={v:.3g}" for k, v in lr_groups.items()),
            flush=True,
        )

    forward = torch.compile(model) if cfg.compile else model
    logger = _Logger(run_dir, cfg, info.is_main)
    model.train()
    status = "ok"
    last: dict[str, Any] = {}
    val_metrics: dict[str, float] = {"val_loss": float("nan"), "val_bpb": float("nan")}
    t_start = time.perf_counter()
    train_time, timed_tokens = 0.0, 0
    window_start, window_tokens = time.perf_counter(), 0
    final_ckpt: Path | None = None
    step = start_step
    try:
        for step in range(start_step, steps):
            lr_mult = lr_multiplier(step, steps, warmup, cfg.lr_min_ratio)
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * lr_mult
            loss_sum = torch.zeros((), device=device)
            for _ in range(grad_accum):
                x, y = next(train_loader)
                with dist.autocast(device):
                    loss = forward(x, y)
                if step == cfg.debug_nan_at_step:
                    loss = loss * float("nan")  # poisons the weights too, like a real blow-up
                (loss / grad_accum).backward()
                loss_sum += loss.detach()
            grad_norm = optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            window_tokens += cfg.total_batch_size
            is_last = done == steps
            stop_now = cfg.stop_at_step > 0 and done >= cfg.stop_at_step and not is_last

            if done % cfg.log_every == 0 or is_last or stop_now:
                loss_t = _all_reduce_sum(loss_sum / grad_accum) / info.world_size
                train_loss = float(loss_t.item())  # the one host sync per logged step
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                now = time.perf_counter()
                window_s = now - window_start
                tokens_per_s = window_tokens / window_s if window_s > 0 else 0.0
                if step > start_step or done == steps:  # the first step pays for warm-up
                    train_time += window_s
                    timed_tokens += window_tokens
                window_start, window_tokens = now, 0
                mfu = flops_per_token * tokens_per_s / (peak * info.world_size) if peak else None
                last = {
                    "step": done,
                    "steps_planned": steps,
                    "tokens": done * cfg.total_batch_size,
                    "flops": done * cfg.total_batch_size * flops_per_token,
                    "train_loss": train_loss,
                    "lr": optimizer.param_groups[-1]["lr"],  # an AdamW group's actual rate
                    "lr_multiplier": lr_mult,
                    "grad_norm": float(grad_norm),
                    "tokens_per_s": tokens_per_s,
                    "mfu": mfu,
                    "elapsed_s": now - t_start,
                    "status": "running",
                }
                if not math.isfinite(train_loss):
                    status = "diverged"
                    _say(info, f"step {done}: loss is {train_loss}; stopping: diverged")
                else:
                    ema_loss = train_loss if ema_loss is None else 0.9 * ema_loss + 0.1 * train_loss
                    if (
                        done > warmup
                        and best_ema is not None
                        and ema_loss > cfg.blowup_factor * best_ema
                    ):
                        status = "diverged"
                        _say(
                            info,
                            f"step {done}: smoothed loss {ema_loss:.3f} is more than "
                            f"{cfg.blowup_factor}x its best ({best_ema:.3f}); stopping: diverged",
                        )
                    best_ema = ema_loss if best_ema is None else min(best_ema, ema_loss)
                if status == "diverged":
                    last["status"] = "diverged"
                    logger.log({**last, **val_metrics})
                    if report is not None:
                        report({**last, **val_metrics}, None)
                    break
                _say(
                    info,
                    f"step {done:>6}/{steps} | loss {train_loss:.4f} | lr x{lr_mult:.3f} | "
                    f"grad {last['grad_norm']:.3f} | {tokens_per_s:,.0f} tok/s"
                    + (f" | mfu {100 * mfu:.1f}%" if mfu is not None else "")
                    + f" | {now - t_start:.1f}s",
                )
                logger.log(last)

            do_eval = done % cfg.eval_every == 0 or is_last or stop_now
            do_save = (cfg.save_every > 0 and done % cfg.save_every == 0) or is_last or stop_now
            if do_eval:
                val_metrics = evaluate(forward, val_batches, token_bytes, device)
                _say(
                    info,
                    f"step {done:>6}/{steps} | val loss {val_metrics['val_loss']:.4f} | "
                    f"val bpb {val_metrics['val_bpb']:.4f}",
                )
                logger.log({**last, **val_metrics, "step": done})
            saved_dir = None
            if do_save:
                meta = {
                    "config": dataclasses.asdict(cfg),
                    "model_config": dataclasses.asdict(model_cfg),
                    "tokenizer": tokenizer,
                    "tokens": done * cfg.total_batch_size,
                    "flops": done * cfg.total_batch_size * flops_per_token,
                    "loader": train_loader.state_dict(),
                    "ema_loss": ema_loss,
                    "best_ema": best_ema,
                    "steps_planned": steps,
                }
                final_ckpt = ckpt.save(
                    run_dir, done, model, optimizer, meta, keep=cfg.keep_checkpoints
                )
                saved_dir = str(final_ckpt)
            if (do_eval or do_save) and report is not None:
                report({**last, **val_metrics, "status": "running"}, saved_dir)
            if stop_now:
                status = "stopped"
                _say(
                    info,
                    f"stopped at step {done} as asked (--stop-at-step); resume with --resume auto",
                )
                break
    finally:
        logger.close()

    wall_s = time.perf_counter() - t_start
    summary = {
        **scaling.shape_columns(shape),  # n_layer, n_embd, n_head, params_*, flops_per_token
        "depth": cfg.depth,
        "status": status,
        "steps": last.get("step", start_step),
        "steps_planned": steps,
        "tokens": last.get("tokens", 0),
        "flops": last.get("flops", 0),
        "final_train_loss": last.get("train_loss", float("nan")),
        "final_val_loss": val_metrics["val_loss"],
        "val_bpb": val_metrics["val_bpb"],
        "wall_s": wall_s,
        "setup_s": t_start - entered,  # model, data, validation batches: before the first step
        "tokens_per_s": timed_tokens / train_time if train_time > 0 else 0.0,
        "mfu": None,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "tokenizer": tokenizer,
        "dataset": str(data_source),
        "epochs": (last.get("tokens", 0) / train_tokens_available)
        if train_tokens_available
        else None,
        "world_size": info.world_size,
        "run_dir": str(run_dir),
        "checkpoint": str(final_ckpt) if final_ckpt else None,
    }
    if peak and summary["tokens_per_s"]:
        summary["mfu"] = flops_per_token * summary["tokens_per_s"] / (peak * info.world_size)
    if report is not None and status != "diverged":
        report({**last, **val_metrics, "status": status}, None)
    if info.is_main:
        atomic.write_json(run_dir / "summary.json", summary, sort_keys=True, default=str)
        print(
            f"done: status={status} steps={summary['steps']}/{steps} "
            f"val_loss={summary['final_val_loss']:.4f} val_bpb={summary['val_bpb']:.4f} "
            f"wall={wall_s:.1f}s tokens/s={summary['tokens_per_s']:,.0f}",
            flush=True,
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


def main(argv: list[str] | None = None) -> int:
    cfg = parse_train_config(argv)
    try:
        summary = train(cfg)
    except (BatchSizeError, FileNotFoundError, ckpt.CheckpointError, data_mod.TokenFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if summary["status"] in ("ok", "stopped") else 1


if __name__ == "__main__":
    sys.exit(main())
