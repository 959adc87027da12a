"""Training throughput: tokens/s, MFU, peak memory, and where a step's time goes.

    python benchmarks/train_throughput.py                        # DEPTH 12, one GPU
    torchrun --nproc_per_node=2 benchmarks/train_throughput.py   # two GPUs (ZeRO-2 optimizer)
    python benchmarks/train_throughput.py --depths 6,8,10,14     # other sizes of a sweep
    python benchmarks/train_throughput.py --loss fused,plain     # compare head/loss paths
    python benchmarks/train_throughput.py --device cpu --depths 2 --seq-len 128 --batch-size 4

A step is the whole thing the training loop does: forward and backward in bf16 autocast over
``--batch-size`` sequences of ``--seq-len`` random tokens per GPU, then MuonAdamW's step
(gradient reduce-scatter, clipping, Muon and AdamW, all-gather). Timing is honest in the
modded-nanogpt sense: compilation and ``--warmup`` steps are excluded and said so; the timed
steps run back to back with one synchronisation at the end. A second, separately timed set of
steps synchronises between phases to split the step into forward, backward and optimizer.
MFU = model FLOPs (nanogpt.scaling's 6N + attention) / (time × 989 TFLOP/s per GPU).
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == _HERE:
    sys.path[0] = os.path.dirname(_HERE)  # import nanogpt from the checkout

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from datetime import date  # noqa: E402

import torch  # noqa: E402

from nanogpt import dist  # noqa: E402
from nanogpt.config import TrainConfig  # noqa: E402
from nanogpt.model import GPT  # noqa: E402
from nanogpt.train import build_optimizer, peak_flops  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depths", default="12", help="comma-separated DEPTHs (12 = GPT-2 small)")
    p.add_argument("--batch-size", type=int, default=32, help="sequences per GPU per step")
    p.add_argument("--seq-len", type=int, default=1024, help="tokens per sequence")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compile, caches)")
    p.add_argument("--loss", default="fused", help="head+loss path(s): fused, plain or fused,plain")
    p.add_argument(
        "--compile", default="default", help="default, max-autotune-no-cudagraphs or none"
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    return p.parse_args(argv)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(depth: int, loss_path: str, args: argparse.Namespace, info: dist.DistInfo) -> dict:
    device = info.device
    cfg = TrainConfig(depth=depth, seq_len=args.seq_len, device_batch_size=args.batch_size)
    torch.manual_seed(0)
    model = GPT(cfg.model_config()).to(device)
    model.fused_loss = loss_path == "fused"
    optimizer = build_optimizer(model, cfg)
    forward = model
    if args.compile != "none" and device.type == "cuda":
        mode = None if args.compile == "default" else args.compile
        forward = torch.compile(model, mode=mode)
    vocab = model.config.vocab_size
    gen = torch.Generator(device="cpu").manual_seed(info.rank)
    x = torch.randint(0, vocab, (args.batch_size, args.seq_len), generator=gen).to(device)
    y = torch.randint(0, vocab, (args.batch_size, args.seq_len), generator=gen).to(device)

    def step() -> None:
        with dist.autocast(device):
            loss = forward(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    t0 = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync(device)
    warmup_s = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync(device)
    step_s = (time.perf_counter() - t0) / args.steps

    split = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    for _ in range(max(3, args.steps // 4)):
        sync(device)
        a = time.perf_counter()
        with dist.autocast(device):
            loss = forward(x, y)
        sync(device)
        b = time.perf_counter()
        loss.backward()
        sync(device)
        c = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        d = time.perf_counter()
        split["forward"] += b - a
        split["backward"] += c - b
        split["optimizer"] += d - c
    total = sum(split.values())
    tokens_per_step = args.batch_size * args.seq_len * info.world_size
    tokens_per_s = tokens_per_step / step_s
    peak = peak_flops(device)
    flops_per_token = model.flops_per_token(args.seq_len)
    row = {
        "depth": depth,
        "loss_path": loss_path,
        "world_size": info.world_size,
        "params_scaling": model.param_counts()["params_scaling"],
        "step_ms": 1000 * step_s,
        "tokens_per_s": tokens_per_s,
        "tokens_per_s_per_gpu": tokens_per_s / info.world_size,
        "mfu": flops_per_token * tokens_per_s / (peak * info.world_size) if peak else None,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30
        if device.type == "cuda"
        else None,
        "optimizer_state_mib": optimizer.state_bytes() / 2**20,
        "forward_share": split["forward"] / total,
        "backward_share": split["backward"] / total,
        "optimizer_share": split["optimizer"] / total,
        "warmup_s": warmup_s,
    }
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = dist.init(args.device)
    try:
        rows = [
            measure(int(depth), loss_path.strip(), args, info)
            for depth in args.depths.split(",")
            for loss_path in args.loss.split(",")
        ]
    finally:
        dist.teardown(info)
    if not info.is_main:
        return 0
    device_name = (
        torch.cuda.get_device_name(info.device)
        if info.device.type == "cuda"
        else platform.processor()
    )
    print(
        f"# train_throughput: {info.world_size} x {device_name}, torch {torch.__version__}, "
        f"{date.today()}, batch {args.batch_size} x {args.seq_len} per GPU, compile={args.compile}, "
        f"{args.steps} timed steps after {args.warmup} warm-up (excluded)"
    )
    print(
        "| DEPTH | loss | GPUs | step ms | tokens/s | tokens/s/GPU | MFU | peak mem GiB "
        "| opt state MiB/GPU | fwd / bwd / opt |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
        mem = f"{r['peak_memory_gib']:.1f}" if r["peak_memory_gib"] is not None else "-"
        print(
            f"| {r['depth']} | {r['loss_path']} | {r['world_size']} | {r['step_ms']:.1f} "
            f"| {r['tokens_per_s']:,.0f} | {r['tokens_per_s_per_gpu']:,.0f} | {mfu} | {mem} "
            f"| {r['optimizer_state_mib']:.0f} | {100 * r['forward_share']:.0f}% / "
            f"{100 * r['backward_share']:.0f}% / {100 * r['optimizer_share']:.0f}% |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"device": device_name, "torch": torch.__version__, "rows": rows}, f, indent=2
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
