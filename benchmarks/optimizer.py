"""How long MuonAdamW's step takes, its share of a training step, and its state memory per rank.

    python benchmarks/optimizer.py                          # one GPU (or the CPU if none)
    torchrun --nproc_per_node=2 benchmarks/optimizer.py     # ZeRO-2 over two GPUs
    python benchmarks/optimizer.py --depth 2 --device cpu   # a quick check without a GPU

The parameter set is the GPT's at --depth (DEPTH=12: 12 layers of 4 x (768, 768), (3072, 768)
and (768, 3072) Muon matrices; embedding and lm_head (50304, 768) under AdamW), built from
nanogpt.model when it is importable, else from the same shapes directly. The optimizer step is
timed alone (random gradients, CUDA events, warm-up excluded); then whole training steps
(forward + backward in bf16 autocast + optimizer step; torch.compile on CUDA unless
--no-compile; compilation and warm-up excluded) give the optimizer's share. Rank 0 prints a table
to stdout; --json PATH also writes the numbers. Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

try:
    from nanogpt import atomic, dist, scaling
    from nanogpt.optim import MuonAdamW, newton_schulz
    from nanogpt.tokenizer import N_VOCAB
except ModuleNotFoundError as error:  # a script, with nanogpt neither installed nor on the path
    if error.name != "nanogpt":
        raise
    from needs_nanogpt import missing_nanogpt  # benchmarks/needs_nanogpt.py, beside this file

    raise missing_nanogpt(__file__) from None

PADDED_VOCAB = scaling.padded_vocab(N_VOCAB)  # GPT-2's ids + the chat tokens, padded: 50,304


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depth", type=int, default=12, help="model DEPTH (12 = GPT-2 124M)")
    p.add_argument("--steps", type=int, default=20, help="timed steps of each kind")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compile, caches)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--batch-size", type=int, default=None, help="sequences per rank and step")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per sequence")
    p.add_argument(
        "--grad-accum", type=int, default=1, help="micro-batches per optimizer step in a train step"
    )
    p.add_argument("--no-compile", action="store_true", help="train step without torch.compile")
    p.add_argument("--no-train-step", action="store_true", help="time the optimizer alone")
    p.add_argument(
        "--profile", action="store_true", help="print torch.profiler's top kernels of a step"
    )
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------ the parameters


def build_model(depth: int, seq_len: int, device: torch.device) -> torch.nn.Module | None:
    """nanogpt.model.GPT at this depth, or None if the model module is not there (yet)."""
    try:
        from nanogpt.config import ModelConfig
        from nanogpt.model import GPT
    except ImportError as err:
        print(f"[benchmark] nanogpt.model not importable ({err}); using stand-in shapes")
        return None
    cfg = ModelConfig.from_depth(depth, sequence_len=seq_len)
    return GPT(cfg).to(device)


def standin_kinds(depth: int, device: torch.device) -> dict[str, list[torch.nn.Parameter]]:
    """The GPT's parameter shapes without the GPT: width 64 * depth, as nanogpt.scaling has it."""
    c = 64 * depth
    matrices = []
    for _ in range(depth):
        matrices += [(c, c)] * 4 + [(4 * c, c), (c, 4 * c)]

    def param(shape):
        return torch.nn.Parameter(torch.randn(shape, device=device) * 0.02)

    return {
        "matrix": [param(s) for s in matrices],
        "vector": [],
        "embedding": [param((PADDED_VOCAB, c))],
        "lm_head": [param((PADDED_VOCAB, c))],
    }


def build_groups(kinds: dict[str, list[torch.nn.Parameter]]) -> list[dict[str, Any]]:
    # The training loop's grouping (nanogpt.train.build_optimizer); the rates do not change
    # the cost of a step, so plain defaults will do.
    groups: list[dict[str, Any]] = [
        dict(kind="muon", params=kinds["matrix"], lr=0.02, weight_decay=0.1)
    ]
    for name in ("embedding", "lm_head", "vector"):
        if kinds[name]:
            groups.append(dict(kind="adamw", params=kinds[name], lr=6e-4, weight_decay=0.0))
    return groups


# ------------------------------------------------------------------------------ timing


def time_ms(fn: Callable[[], Any], steps: int, warmup: int, device: torch.device) -> list[float]:
    """Wall time of each of `steps` calls, after `warmup` untimed ones; CUDA events on a GPU."""
    for _ in range(warmup):
        fn()
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(steps)
        ]
        for start, end in events:
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize(device)
        times = [start.elapsed_time(end) for start, end in events]
    else:
        for _ in range(steps):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    dist.barrier()
    return times


def summarise(times: list[float]) -> dict[str, float]:
    return {
        "median_ms": statistics.median(times),
        "mean_ms": statistics.fmean(times),
        "min_ms": min(times),
        "max_ms": max(times),
    }


def reduce_over_ranks(value: float, device: torch.device, op: str) -> float:
    if not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    return float((dist.all_reduce_max if op == "max" else dist.all_reduce_sum)(t).item())


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    info = dist.init(args.device)
    device = info.device
    on_gpu = device.type == "cuda"
    batch_size = args.batch_size or (32 if on_gpu else 2)
    seq_len = args.seq_len or (1024 if on_gpu else 128)
    torch.manual_seed(0)

    model = build_model(args.depth, seq_len, device)
    kinds = model.parameter_kinds() if model is not None else standin_kinds(args.depth, device)
    optimizer = MuonAdamW(build_groups(kinds), max_grad_norm=1.0)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    muon_params = sum(p.numel() for p in kinds["matrix"])
    adamw_params = sum(p.numel() for p in params) - muon_params

    # 1. The optimizer step alone, on random gradients (kept across steps: step() never frees
    #    them, and clipping only rescales them).
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opt_times = time_ms(optimizer.step, args.steps, args.warmup, device)
    if args.profile and info.is_main:
        print_profile(optimizer.step, device)

    # Newton-Schulz alone, over every Muon matrix (what one rank would do without sharding).
    stacks: dict[tuple[int, ...], list[torch.Tensor]] = {}
    for p in kinds["matrix"]:
        stacks.setdefault(tuple(p.shape), []).append(p.grad)
    batches = [torch.stack(gs) for gs in stacks.values()]
    ns_times = time_ms(
        lambda: [newton_schulz(b, 5) for b in batches], args.steps, args.warmup, device
    )
    optimizer.zero_grad(set_to_none=True)

    # 2. Whole training steps of the GPT.
    train_times: list[float] = []
    peak_memory = None
    if model is not None and not args.no_train_step:
        vocab = model.config.vocab_size
        gen = torch.Generator(device=device).manual_seed(1234 + info.rank)
        tokens = torch.randint(0, vocab, (batch_size, seq_len + 1), device=device, generator=gen)
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        forward = model if (args.no_compile or not on_gpu) else torch.compile(model)

        def train_step() -> None:
            for _ in range(args.grad_accum):
                with dist.autocast(device):
                    loss = forward(inputs, targets)
                loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        if on_gpu:
            torch.cuda.reset_peak_memory_stats(device)
        train_times = time_ms(train_step, args.steps, args.warmup, device)
        if on_gpu:
            peak_memory = torch.cuda.max_memory_allocated(device)

    state_bytes = optimizer.state_bytes()
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name(device) if on_gpu else platform.processor() or "cpu",
        "world_size": info.world_size,
        "torch": torch.__version__,
        "depth": args.depth,
        "model": "nanogpt.model.GPT" if model is not None else "stand-in shapes",
        "params_muon": muon_params,
        "params_adamw": adamw_params,
        "batch_size": batch_size,
        "grad_accum": args.grad_accum,
        "seq_len": seq_len,
        "compiled": bool(on_gpu and not args.no_compile),
        "opt_step": summarise(opt_times),
        "newton_schulz_all_matrices": summarise(ns_times),
        "state_bytes_this_rank": state_bytes,
        "state_bytes_max_rank": int(reduce_over_ranks(state_bytes, device, "max")),
        "state_bytes_all_ranks": int(reduce_over_ranks(state_bytes, device, "sum")),
    }
    if train_times:
        results["train_step"] = summarise(train_times)
        results["opt_share_of_train_step"] = (
            results["opt_step"]["median_ms"] / results["train_step"]["median_ms"]
        )
        results["tokens_per_s_per_rank"] = (
            batch_size * seq_len / (results["train_step"]["median_ms"] / 1e3)
        )
    if peak_memory is not None:
        results["peak_memory_bytes_train"] = int(reduce_over_ranks(peak_memory, device, "max"))

    if info.is_main:
        print_table(results)
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_json(args.json, results)
    dist.teardown(info)
    return results


def print_profile(fn: Callable[[], Any], device: torch.device, steps: int = 3) -> None:
    """Where an optimizer step's time goes, by operator (for finding the next thing to fuse)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        for _ in range(steps):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"profile of {steps} optimizer steps:")
    print(prof.key_averages().table(sort_by=sort_by, row_limit=18, max_name_column_width=48))


def print_table(r: dict[str, Any]) -> None:
    mib = 2**20
    rows = [
        ("device", f"{r['device']} x {r['world_size']}"),
        ("torch", r["torch"]),
        ("date", r["date"]),
        ("model", f"DEPTH={r['depth']} ({r['model']})"),
        (
            "params (Muon / AdamW)",
            f"{r['params_muon'] / 1e6:.1f} M / {r['params_adamw'] / 1e6:.1f} M",
        ),
        ("optimizer step (median, ms)", f"{r['opt_step']['median_ms']:.2f}"),
        (
            "optimizer step (min-max, ms)",
            f"{r['opt_step']['min_ms']:.2f}-{r['opt_step']['max_ms']:.2f}",
        ),
        (
            "Newton-Schulz, all matrices, 1 rank (ms)",
            f"{r['newton_schulz_all_matrices']['median_ms']:.2f}",
        ),
    ]
    if "train_step" in r:
        rows += [
            (
                "train step (median, ms)",
                f"{r['train_step']['median_ms']:.2f}  ({r['grad_accum']} x {r['batch_size']} x "
                f"{r['seq_len']} tokens"
                f"{', compiled' if r['compiled'] else ''})",
            ),
            ("optimizer share of train step", f"{100 * r['opt_share_of_train_step']:.1f} %"),
            ("tokens/s per rank", f"{r['tokens_per_s_per_rank']:,.0f}"),
        ]
    rows += [
        ("optimizer state per rank (max, MiB)", f"{r['state_bytes_max_rank'] / mib:.1f}"),
        ("optimizer state, all ranks (MiB)", f"{r['state_bytes_all_ranks'] / mib:.1f}"),
    ]
    if "peak_memory_bytes_train" in r:
        rows.append(
            ("peak GPU memory, train step (MiB)", f"{r['peak_memory_bytes_train'] / mib:,.0f}")
        )
    width = max(len(k) for k, _ in rows)
    print(f"| {'metric'.ljust(width)} | value |")
    print(f"| {'-' * width} | --- |")
    for key, value in rows:
        print(f"| {key.ljust(width)} | {value} |")


if __name__ == "__main__":
    main()
