"""Training throughput: tokens/s, MFU, peak memory, and where a step's time goes.

    python benchmarks/train_throughput.py                        # DEPTH 12, one GPU
    torchrun --nproc_per_node=2 benchmarks/train_throughput.py   # two GPUs (ZeRO-2 optimizer)
    python benchmarks/train_throughput.py --preset d6,d8,d10,d14 # other sizes of a sweep
    python benchmarks/train_throughput.py --loss fused,plain     # compare head/loss paths
    python benchmarks/train_throughput.py --device cpu --depths 2 --seq-len 128 --batch-size 4
    python benchmarks/train_throughput.py --loss plain --variants base,cudnn,cdt --profile 3
    python benchmarks/train_throughput.py --preset d6,gpt2 --fp8-head   # + the FP8 head's rows

A step is the whole thing the training loop does: forward and backward in bf16 autocast over
``--batch-size`` sequences of ``--seq-len`` random tokens per GPU, then MuonAdamW's step
(gradient reduce-scatter, clipping, Muon and AdamW, all-gather). Timing is honest in the
modded-nanogpt sense: compilation and ``--warmup`` steps are excluded and said so; the timed
steps run back to back with one synchronisation at the end. A second, separately timed set of
steps synchronises between phases to split the step into forward, backward and optimizer.
MFU = model FLOPs (nanogpt.scaling's 6N + attention) / (time × 989 TFLOP/s per GPU).

``--variants`` measures the same step under other settings that compute the same thing: the
attention kernel SDPA is allowed to pick (flash, cuDNN, memory-efficient) and Inductor options
(coordinate-descent tuning, max-autotune GEMMs); see VARIANTS. ``--profile N`` runs N steps of
each variant under torch.profiler and prints where the GPU time goes: kernel classes (matmul,
attention, Triton-fused elementwise, optimizer, communication) and the top kernels.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import platform
import sys
import time
from datetime import date

import torch

try:
    from nanogpt import atomic, dist
    from nanogpt.config import TRAIN_PRESETS, TrainConfig
    from nanogpt.model import GPT
    from nanogpt.optim.build import optimizer_options
    from nanogpt.train import build_optimizer, peak_flops
except ModuleNotFoundError as error:  # a script, with nanogpt neither installed nor on the path
    if error.name != "nanogpt":
        raise
    from needs_nanogpt import missing_nanogpt  # benchmarks/needs_nanogpt.py, beside this file

    raise missing_nanogpt(__file__) from None

# Settings that change how the step runs, never what it computes. "attention" restricts SDPA to
# one backend (picked when the compiled graph is traced); "inductor" sets torch._inductor.config.
VARIANTS: dict[str, dict] = {
    "base": {},
    "flash": {"attention": "flash"},
    "cudnn": {"attention": "cudnn"},
    "efficient": {"attention": "efficient"},
    "cdt": {"inductor": {"coordinate_descent_tuning": True}},
    "cudnn+cdt": {"attention": "cudnn", "inductor": {"coordinate_descent_tuning": True}},
    "autotune": {"compile": "max-autotune-no-cudagraphs"},
    "cudnn+autotune": {"attention": "cudnn", "compile": "max-autotune-no-cudagraphs"},
    # Inductor's persistent TMA GEMM templates (Hopper) among the autotuned choices: measured
    # 2026-12-04 without them, every Triton template lost to cuBLAS (docs/benchmarks.md).
    "autotune-tma": {
        "compile": "max-autotune-no-cudagraphs",
        "inductor": {"triton.enable_persistent_tma_matmul": True},
    },
    "compiled-muon": {"compile_muon": True},
    # MuonAdamW options (off by default; benchmarks/speed_leads.py measures them against base).
    "fast-muon": {"optimizer": {"fast_muon": True}},
    "compiled-adamw": {"optimizer": {"compile_adamw": True}},
    # Model options (nanogpt.config.ModelConfig fields) that change how, not what, it computes;
    # fp8-head changes the head's rounding (its own row, never a default).
    "unfused-qkv": {"model": {"fused_qkv": False}},
    "fp8-head": {"model": {"fp8_head": True}},
    "loss-chunk-32k": {"model": {"loss_chunk_rows": 32768}},  # the default since 2026-12-04
    "loss-chunk-8k": {"model": {"loss_chunk_rows": 8192}},  # the default until then
    # The loss kernel's tanh from an exp2 and a reciprocal (kernel v3's cost) instead of the
    # one hardware instruction that CUDA runs get by default (ModelConfig.loss_hw_tanh).
    "exact-tanh": {"model": {"loss_hw_tanh": False}},
    # torch's other BLAS back end for every CUDA matmul (its default is cuBLAS).
    "cublaslt": {"blas": "cublaslt"},
    # A measurement, not a training path: the whole step (forward, backward, optimizer) captured
    # once in one CUDA graph and replayed, with the learning rates of the capture. How much of
    # the step is the CPU launching kernels: the most that graphing the step could save.
    "graphed": {"cuda_graph": True},
    # The optimizer step without the speed options that CUDA runs get by default
    # (nanogpt.optim.build.FAST_OPTIONS): the default before 2026-12-03.
    "plain-optimizer": {
        "compile_muon": False,
        "optimizer": {"fast_muon": False, "compile_adamw": False},
    },
    # Every lead of benchmarks/speed_leads.py at once (its "all" row); on CUDA the same step as
    # "base" since 2026-12-04 (the fast optimizer and the 32,768-row chunk are both defaults).
    "all-leads": {
        "compile_muon": True,
        "optimizer": {"fast_muon": True, "compile_adamw": True},
        "model": {"loss_chunk_rows": 32768},
    },
}


def attention_context(name: str | None) -> contextlib.AbstractContextManager:
    if not name:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
    }[name]
    return sdpa_kernel([backend])


def inductor_options(options: dict) -> contextlib.AbstractContextManager:
    """torch._inductor.config set to ``options`` inside, restored after; dotted names such as
    "triton.enable_persistent_tma_matmul" reach the nested settings."""
    import torch._inductor.config as inductor_config

    return inductor_config.patch(options) if options else contextlib.nullcontext()


@contextlib.contextmanager
def blas_library(name: str | None):
    """torch's BLAS back end for CUDA matmuls ("cublas", "cublaslt") inside, restored after."""
    if not name:
        yield
        return
    previous = torch.backends.cuda.preferred_blas_library()
    torch.backends.cuda.preferred_blas_library(name)
    try:
        yield
    finally:
        torch.backends.cuda.preferred_blas_library(previous)


def kernel_class(name: str) -> str:
    n = name.lower()
    if "nccl" in n:
        return "communication"
    if any(k in n for k in ("flash", "fmha", "cudnn", "attention", "sdpa")):
        return "attention"
    if any(k in n for k in ("gemm", "nvjet", "cutlass", "xmma", "sm90", "matmul", "ampere")):
        return "matmul"
    if any(k in n for k in ("adam", "foreach", "multi_tensor", "lerp")):
        return "optimizer (eager)"
    if n.startswith("triton"):
        return "triton (fused by inductor)"
    return "other (copies, reductions, eager elementwise)"


def profile_steps(step, n: int, device: torch.device, top: int) -> dict:
    """Run ``step`` n times under torch.profiler; print kernel classes and the top kernels."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(n):
            step()
        sync(device)
    kernels = []
    for evt in prof.key_averages():
        if device.type == "cuda" and str(evt.device_type).endswith("CUDA"):
            t = getattr(evt, "self_device_time_total", None) or evt.self_cuda_time_total
            kernels.append((evt.key, t / 1000 / n, evt.count // n))
    total = sum(t for _, t, _ in kernels) or 1.0
    classes: dict[str, float] = {}
    for name, t, _ in kernels:
        classes[kernel_class(name)] = classes.get(kernel_class(name), 0.0) + t
    print(f"\nGPU time per step by kernel class ({total:.1f} ms of kernels per step):")
    print("| class | ms per step | share |\n|---|---|---|")
    for name, t in sorted(classes.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {t:.2f} | {100 * t / total:.1f}% |")
    print(f"\nTop {top} kernels:\n| kernel | class | calls per step | ms per step | share |")
    print("|---|---|---|---|---|")
    for name, t, calls in sorted(kernels, key=lambda k: -k[1])[:top]:
        short = name if len(name) <= 90 else name[:87] + "..."
        print(f"| `{short}` | {kernel_class(name)} | {calls} | {t:.2f} | {100 * t / total:.1f}% |")
    return {"kernel_ms_per_step": total, "classes": classes}


def format_row(r: dict) -> str:
    mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
    mem = f"{r['peak_memory_gib']:.1f}" if r["peak_memory_gib"] is not None else "-"
    return (
        f"| {r['depth']} | {r['loss_path']} | {r['variant']} | {r['world_size']} "
        f"| {r['step_ms']:.1f} | {r['tokens_per_s']:,.0f} | {r['tokens_per_s_per_gpu']:,.0f} "
        f"| {mfu} | {mem} | {r['optimizer_state_mib']:.0f} | {100 * r['forward_share']:.0f}% / "
        f"{100 * r['backward_share']:.0f}% / {100 * r['optimizer_share']:.0f}% |"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depths", default=None, help="comma-separated DEPTHs (default 12)")
    p.add_argument(
        "--preset",
        default=None,
        help="instead of --depths: training presets (gpt2 = DEPTH 12) or dN names, e.g. "
        "d6,d8,d10,d14 for the other depths of a sweep",
    )
    p.add_argument("--batch-size", type=int, default=32, help="sequences per GPU per step")
    p.add_argument("--seq-len", type=int, default=1024, help="tokens per sequence")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compile, caches)")
    p.add_argument("--loss", default="fused", help="head+loss path(s): fused, plain or fused,plain")
    p.add_argument(
        "--compile", default="default", help="default, max-autotune-no-cudagraphs or none"
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument(
        "--variants", default="base", help=f"comma-separated, from: {', '.join(VARIANTS)}"
    )
    p.add_argument(
        "--fp8-head",
        action="store_true",
        help="also measure every row with the FP8 head (the fp8-head variant; CUDA sm89+ only)",
    )
    p.add_argument("--profile", type=int, default=0, help="profile N steps of each variant")
    p.add_argument("--top", type=int, default=25, help="kernels listed per profile")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    if args.preset and args.depths:
        p.error("give --preset or --depths, not both")
    if args.preset:
        depths = []
        for name in args.preset.split(","):
            name = name.strip()
            if name in TRAIN_PRESETS:
                depths.append(int(TRAIN_PRESETS[name]()["depth"]))
            elif name[:1] == "d" and name[1:].isdigit():
                depths.append(int(name[1:]))
            else:
                p.error(f"--preset {name!r}: use one of {sorted(TRAIN_PRESETS)} or dN (e.g. d8)")
        args.depths = ",".join(str(d) for d in depths)
    args.depths = args.depths or "12"
    if args.fp8_head and "fp8-head" not in args.variants.split(","):
        args.variants += ",fp8-head"
    return args


def graphed(step, device: torch.device):
    """``step`` captured once in a CUDA graph, after three warm-up calls on a side stream (as
    torch.cuda.graph asks); returns the graph's replay. Numbers the step reads on the host (the
    learning rates, AdamW's bias corrections) are frozen at their values of the capture."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(3):
            step()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    depth: int, loss_path: str, variant: str, args: argparse.Namespace, info: dist.DistInfo
) -> dict:
    settings = VARIANTS[variant]
    torch._dynamo.reset()  # each variant traces and compiles afresh under its own settings
    attention = settings.get("attention") if info.device.type == "cuda" else None  # CUDA kernels
    blas = settings.get("blas") if info.device.type == "cuda" else None
    with (
        attention_context(attention),
        inductor_options(settings.get("inductor", {})),
        blas_library(blas),
    ):
        return _measure(depth, loss_path, variant, settings, args, info)


def _measure(
    depth: int,
    loss_path: str,
    variant: str,
    settings: dict,
    args: argparse.Namespace,
    info: dist.DistInfo,
) -> dict:
    device = info.device
    cfg = TrainConfig(
        depth=depth,
        seq_len=args.seq_len,
        device_batch_size=args.batch_size,
        fused_loss=loss_path == "fused",
    )
    torch.manual_seed(0)
    model = GPT(dataclasses.replace(cfg.model_config(), **settings.get("model", {}))).to(device)
    optimizer = build_optimizer(model, cfg, **optimizer_options(cfg, device))  # as training
    if "compile_muon" in settings:
        optimizer.compile_muon = bool(settings["compile_muon"])
    for name, value in settings.get("optimizer", {}).items():
        setattr(optimizer, name, value)
    forward = model
    compile_mode = settings.get("compile", args.compile)
    if compile_mode != "none" and device.type == "cuda":
        mode = None if compile_mode == "default" else compile_mode
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
    if settings.get("cuda_graph") and device.type == "cuda":
        step = graphed(step, device)
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
    profiled = {}
    if args.profile > 0 and info.is_main:
        print(f"\n## profile: DEPTH {depth}, loss {loss_path}, variant {variant}")
        profiled = profile_steps(step, args.profile, device, args.top)
        print(f"\n## profile of the optimizer step alone: variant {variant}")
        with dist.autocast(device):
            loss = forward(x, y)
        loss.backward()  # gradients for the optimizer to read; step() leaves them in place
        profile_steps(optimizer.step, args.profile, device, args.top // 2)
        optimizer.zero_grad(set_to_none=True)
    tokens_per_step = args.batch_size * args.seq_len * info.world_size
    tokens_per_s = tokens_per_step / step_s
    peak = peak_flops(device)
    flops_per_token = model.flops_per_token(args.seq_len)
    row = {
        "depth": depth,
        "loss_path": loss_path,
        "variant": variant,
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
        **profiled,
    }
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    unknown = [v for v in args.variants.split(",") if v.strip() not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown --variants {unknown}; choose from {', '.join(VARIANTS)}")
    info = dist.init(args.device)
    try:
        rows = []
        for depth in args.depths.split(","):
            for loss_path in args.loss.split(","):
                for variant in args.variants.split(","):
                    rows.append(measure(int(depth), loss_path.strip(), variant.strip(), args, info))
                    if info.is_main:  # as it goes: a run cut short still leaves its rows
                        print("measured: " + format_row(rows[-1]), flush=True)
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
        "| DEPTH | loss | variant | GPUs | step ms | tokens/s | tokens/s/GPU | MFU | peak mem GiB "
        "| opt state MiB/GPU | fwd / bwd / opt |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(format_row(r))
    if args.json:
        atomic.write_json(
            args.json, {"device": device_name, "torch": torch.__version__, "rows": rows}
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
