"""Does the FP8 head (or the fast optimizer) train like the default? Same model, same tokens,
same steps, the default step against the variant.

    python benchmarks/fp8_parity.py --depth 6 --steps 2000 --data data/shakespeare
    python benchmarks/fp8_parity.py --depth 6 --steps 2000 --data synthetic   # no dataset needed
    python benchmarks/fp8_parity.py --variant fast-optimizer   # fast_muon + compiled Muon/AdamW
    python benchmarks/fp8_parity.py --variant exact-tanh       # the loss kernel's tanh, exact

Two runs from the same initial weights over the same batches (``--batch-size`` × ``--seq-len``
tokens per step, read in order from the data's train split): bf16 (the default head) and
``fp8_head=True``. Both use the training step of ``benchmarks/train_throughput.py`` (bf16
autocast, torch.compile, MuonAdamW with the project's learning rates, held constant after a
short warm-up). The check of the speed issue: the final loss (mean of the last 50 steps) of the
FP8 run within 0.5% of the bf16 run's. Prints one table row per run and the verdict; CUDA only
(the FP8 head runs nowhere else).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np
import torch

from nanogpt import dist
from nanogpt.config import TrainConfig
from nanogpt.model import GPT
from nanogpt.train import build_optimizer

TOLERANCE = 0.005  # the bar: final losses within 0.5%


def synthetic_tokens(n: int, vocab: int = 4096, seed: int = 0) -> np.ndarray:
    """A learnable stream: each token follows from the previous two through a fixed random
    table, with 10% of tokens random (so the loss has a floor well above 0 and a model of any
    size has something to learn)."""
    rng = np.random.default_rng(seed)
    table = rng.integers(0, vocab, size=(vocab, 7))
    out = np.empty(n, dtype=np.int64)
    out[:2] = rng.integers(0, vocab, 2)
    noise = rng.random(n) < 0.1
    random_ids = rng.integers(0, vocab, n)
    for i in range(2, n):
        out[i] = random_ids[i] if noise[i] else table[out[i - 1], out[i - 2] % 7]
    return out


def load_tokens(data: str, needed: int) -> np.ndarray:
    if data == "synthetic":  # 4 M tokens (a few seconds of Python), reread as needed
        tokens = synthetic_tokens(min(needed, 2**22))
        return np.tile(tokens, -(-needed // tokens.size))[:needed]
    from nanogpt.data.datasets import list_shards
    from nanogpt.data.format import read_tokens

    shards = list_shards(data, "train")
    parts, total = [], 0
    for shard in shards:
        parts.append(np.asarray(read_tokens(shard), dtype=np.int64))
        total += parts[-1].size
        if total >= needed:
            break
    tokens = np.concatenate(parts)
    if tokens.size < needed:  # a small corpus (Shakespeare: 1.4 M train tokens) is reread
        tokens = np.tile(tokens, -(-needed // tokens.size))
    return tokens[:needed]


# The variants: (model fields, MuonAdamW options, the row's name).
VARIANTS = {
    "fp8-head": ({"fp8_head": True}, {}, "fp8"),
    "fast-optimizer": (
        {},
        {"fast_muon": True, "compile_muon": True, "compile_adamw": True},
        "fast optimizer",
    ),
    # The default loss kernel's hardware tanh (tanh.approx.f32) against the exact form.
    "exact-tanh": ({"loss_hw_tanh": False}, {}, "exact tanh"),
}


def run(
    variant: str | None, args: argparse.Namespace, tokens: np.ndarray, device: torch.device
) -> dict:
    model_fields, optimizer_options, name = VARIANTS[variant] if variant else ({}, {}, "bf16")
    cfg = TrainConfig(depth=args.depth, seq_len=args.seq_len, device_batch_size=args.batch_size)
    torch.manual_seed(0)
    model = GPT(dataclasses.replace(cfg.model_config(), **model_fields)).to(device)
    optimizer = build_optimizer(model, cfg, **optimizer_options)
    forward = torch.compile(model)
    per_step = args.batch_size * args.seq_len
    losses = []
    t0 = time.perf_counter()
    for step in range(args.steps):
        window = torch.from_numpy(tokens[step * per_step : (step + 1) * per_step + 1])
        x = window[:-1].view(args.batch_size, args.seq_len).to(device)
        y = window[1:].view(args.batch_size, args.seq_len).to(device)
        warm = min(1.0, (step + 1) / args.warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * warm
        with dist.autocast(device):
            loss = forward(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    final = torch.stack(losses[-50:]).mean().item()
    return {
        "head": name,
        "final_loss": final,
        "first_loss": losses[0].item(),
        "wall_s": time.perf_counter() - t0,
        "finite": bool(torch.isfinite(torch.stack(losses)).all()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--warmup-steps", type=int, default=50)
    p.add_argument("--data", default="synthetic", help="token-file directory, or synthetic")
    p.add_argument("--variant", choices=sorted(VARIANTS), default="fp8-head")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("fp8_parity.py needs a CUDA GPU: the FP8 head runs nowhere else")
    device = torch.device("cuda")
    tokens = load_tokens(args.data, args.steps * args.batch_size * args.seq_len + 1)
    rows = [run(None, args, tokens, device), run(args.variant, args, tokens, device)]
    print(f"# fp8_parity: DEPTH {args.depth}, {args.steps} steps of {args.batch_size} x "
          f"{args.seq_len} tokens, data {args.data}, {torch.cuda.get_device_name(device)}, "
          f"torch {torch.__version__}")  # fmt: skip
    print("| run | first loss | final loss (mean of last 50) | wall s |\n|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['head']} | {r['first_loss']:.4f} | {r['final_loss']:.4f} | {r['wall_s']:.0f} |"
        )
    gap = rows[1]["final_loss"] / rows[0]["final_loss"] - 1.0
    ok = abs(gap) <= TOLERANCE and all(r["finite"] for r in rows)
    print(
        f"{rows[1]['head']} final loss vs bf16: {100 * gap:+.2f}% ({'within' if ok else 'outside'} ±0.5%)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
