"""A/B of the speed leads: the whole training step under each option, against the baseline
measured in the same run.

    PYTHONPATH=. python benchmarks/speed_leads.py                      # DEPTH 6 and 12, all leads
    PYTHONPATH=. python benchmarks/speed_leads.py --depths 12 --leads base,fast-muon
    PYTHONPATH=. python benchmarks/speed_leads.py --device cpu --depths 1 --seq-len 32 \\
        --batch-size 2 --steps 2 --warmup 1                            # a smoke test

A step is what benchmarks/train_throughput.py times: forward and backward in bf16 autocast over
``--batch-size`` x ``--seq-len`` random tokens (torch.compile on CUDA), then MuonAdamW's step.
Per DEPTH the model is built and compiled once; each lead gets a fresh optimizer (and fresh
weights) on it, so the leads differ only in what they change. The baseline runs first and last
and the ratio is against the mean of the two (their difference is the run's drift: a lead
within it is noise). Compilation and ``--warmup`` steps are excluded; the ``--steps`` timed
steps run back to back with one synchronisation at the end, ``--repeats`` times, and the best
repeat counts (the least disturbed). A lead that fails prints its error as its row, and the
others still run. Leads (see LEADS): options of ``MuonAdamW`` and ``ModelConfig`` that default
to off.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import traceback
from datetime import date

import torch

try:
    from nanogpt import atomic, dist
    from nanogpt.config import TrainConfig
    from nanogpt.model import GPT
    from nanogpt.train import build_optimizer
except ModuleNotFoundError as error:  # not installed, and not run from the checkout root
    if error.name != "nanogpt":
        raise
    raise SystemExit(
        "benchmarks/speed_leads.py imports the nanogpt package: run it from the checkout's root "
        "with PYTHONPATH=. (or install the package)"
    ) from None

# Each lead: MuonAdamW attributes set after build_optimizer, and under "model" ModelConfig
# fields set on the model's config (the compiled forward retraces for them). "base" is the plain
# optimizer step (build_optimizer without options), the CUDA default until the optimizer leads
# were measured and turned on (nanogpt.optim.build.FAST_OPTIONS, its "all-optimizer" row).
# Every lead runs the loss in chunks of 8,192 rows unless it says otherwise: the default until
# 2026-12-04, when one chunk of 32,768 rows (the "loss-chunk-32k" lead) became it.
BASE_MODEL = {"loss_chunk_rows": 8192}
LEADS: dict[str, tuple[dict, str]] = {
    "base": ({}, "the plain step (no optimizer options)"),
    "fast-muon": (
        {"fast_muon": True},
        "Newton-Schulz without copies of X, fp32 result, one foreach update",
    ),
    "compiled-adamw": (
        {"compile_adamw": True},
        "AdamW's update as one Inductor kernel per bucket",
    ),
    "loss-chunk-16k": (
        {"model": {"loss_chunk_rows": 16384}},
        "fused loss in chunks of 16,384 rows (default 8,192)",
    ),
    "loss-chunk-32k": (
        {"model": {"loss_chunk_rows": 32768}},
        "fused loss in one chunk of 32,768 rows",
    ),
    "all-optimizer": (
        {"fast_muon": True, "compile_muon": True, "compile_adamw": True},
        "fast-muon + compiled-muon + compiled-adamw",
    ),
    "all": (
        {
            "fast_muon": True,
            "compile_muon": True,
            "compile_adamw": True,
            "model": {"loss_chunk_rows": 32768},
        },
        "every lead (loss in one 32,768-row chunk)",
    ),
    "fast+compiled-muon": ({"fast_muon": True, "compile_muon": True}, "fast-muon + compiled-muon"),
    "compiled-muon": ({"compile_muon": True}, "torch.compile of Muon's per-bucket maths"),
}
# Cheap and most informative first (about 5 minutes for DEPTH 6 and 12 on one H200, most of
# it compilation); fast+compiled-muon and compiled-muon on request (--leads).
DEFAULT_LEADS = "base,fast-muon,compiled-adamw,loss-chunk-16k,loss-chunk-32k,all-optimizer,all"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depths", default="6,12", help="comma-separated DEPTHs")
    p.add_argument(
        "--leads", default=DEFAULT_LEADS, help=f"comma-separated, from: {', '.join(LEADS)}"
    )
    p.add_argument("--batch-size", type=int, default=32, help="sequences per step")
    p.add_argument("--seq-len", type=int, default=1024, help="tokens per sequence")
    p.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    p.add_argument("--repeats", type=int, default=2, help="timed repeats per lead (best counts)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compile, caches)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--no-compile", action="store_true", help="run the model eagerly")
    p.add_argument(
        "--optimizer-profile",
        type=int,
        default=3,
        help="profile N optimizer steps alone per lead (CUDA only; 0: off)",
    )
    p.add_argument(
        "--optimizer-top", type=int, default=0, help="with it, print each lead's top K kernels"
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="skip the leads (not the closing baseline) that would start after this many seconds",
    )
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    leads = [name.strip() for name in args.leads.split(",") if name.strip()]
    unknown = [name for name in leads if name not in LEADS]
    if unknown:
        p.error(f"unknown --leads {unknown}; choose from {', '.join(LEADS)}")
    if leads[:1] != ["base"]:
        leads.insert(0, "base")
    if leads[-1] != "base" or len(leads) == 1:
        leads.append("base")  # the baseline again at the end: the run's drift
    args.lead_list = leads
    try:
        args.depth_list = [int(d) for d in args.depths.split(",")]
    except ValueError:
        p.error(f"--depths {args.depths!r}: comma-separated integers, e.g. 6,12")
    return args


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_lead(
    model: GPT, forward, cfg: TrainConfig, lead: str, args: argparse.Namespace, device
) -> dict:
    """Fresh weights and a fresh optimizer with the lead's options; the best repeat's step."""
    options = dict(LEADS[lead][0])
    model_options = {**BASE_MODEL, **options.pop("model", {})}
    for name in model_options:
        if not hasattr(model.config, name):
            raise AttributeError(f"ModelConfig has no field {name!r} in this checkout")
    saved = {name: getattr(model.config, name) for name in model_options}
    try:
        for name, value in model_options.items():
            setattr(model.config, name, value)
        return _time_lead(model, forward, cfg, options, args, device)
    finally:
        for name, value in saved.items():
            setattr(model.config, name, value)


def _time_lead(
    model: GPT, forward, cfg: TrainConfig, options: dict, args: argparse.Namespace, device
) -> dict:
    torch.manual_seed(0)
    model.init_weights()
    optimizer = build_optimizer(model, cfg)
    for name, value in options.items():
        if not hasattr(optimizer, name):
            raise AttributeError(f"MuonAdamW has no option {name!r} in this checkout")
        setattr(optimizer, name, value)
    gen = torch.Generator().manual_seed(1)
    vocab = model.config.vocab_size
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
    best = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync(device)
        best = min(best, (time.perf_counter() - t0) / args.steps)
    finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    row = {"step_ms": 1000 * best, "warmup_s": warmup_s, "weights_finite": finite}
    if args.optimizer_profile > 0 and device.type == "cuda":
        with dist.autocast(device):
            loss = forward(x, y)
        loss.backward()  # gradients for the optimizer to read; its steps leave them in place
        row.update(optimizer_kernels(optimizer, args.optimizer_profile, args.optimizer_top))
        optimizer.zero_grad(set_to_none=True)
    return row


def optimizer_kernels(optimizer, n: int, top: int = 0) -> dict:
    """The optimizer step alone under torch.profiler: GPU kernel time per step (all kernels, and
    those that are not matmuls), the profiler's CPU-side ranges left out. The whole-step
    difference of a lead worth ~1% is inside the run-to-run noise; this is not."""
    from torch.profiler import ProfilerActivity, profile

    optimizer.step()  # compiled leads: compile outside the profile
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            optimizer.step()
        torch.cuda.synchronize()
    total = matmul = 0.0
    kernels = []
    for evt in prof.key_averages():
        if not str(evt.device_type).endswith("CUDA") or evt.key.startswith(("Optimizer.", "Prof")):
            continue
        t = (getattr(evt, "self_device_time_total", None) or evt.self_cuda_time_total) / 1000 / n
        total += t
        kernels.append((t, evt.count // n, evt.key))
        if any(k in evt.key.lower() for k in ("gemm", "nvjet", "cutlass", "xmma", "sm90")):
            matmul += t
    for t, calls, name in sorted(kernels, reverse=True)[:top]:
        print(f"    optimizer kernel: {t:.3f} ms, {calls} calls: {name[:100]}")
    return {"optimizer_gpu_ms": total, "optimizer_non_matmul_ms": total - matmul}


def measure_depth(
    depth: int, args: argparse.Namespace, device: torch.device, start: float
) -> list[dict]:
    torch._dynamo.reset()
    cfg = TrainConfig(depth=depth, seq_len=args.seq_len, device_batch_size=args.batch_size)
    torch.manual_seed(0)
    model = GPT(cfg.model_config()).to(device)
    forward = model
    if device.type == "cuda" and not args.no_compile:
        forward = torch.compile(model)
    tokens = args.batch_size * args.seq_len
    rows = []
    for index, lead in enumerate(args.lead_list):
        row = {"depth": depth, "lead": lead, "what": LEADS[lead][1]}
        closing = index == len(args.lead_list) - 1
        if args.budget_s is not None and not closing:
            if time.perf_counter() - start > args.budget_s:
                row["error"] = f"skipped: past the {args.budget_s:.0f} s budget"
                rows.append(row)
                print("measured: " + format_row(row), flush=True)
                continue
        try:
            row.update(time_lead(model, forward, cfg, lead, args, device))
            row["tokens_per_s"] = tokens / (row["step_ms"] / 1000)
        except Exception as error:  # one lead's failure must not cost the others' rows
            row["error"] = f"{type(error).__name__}: {error}".splitlines()[0][:200]
            traceback.print_exc()
        rows.append(row)
        print("measured: " + format_row(row), flush=True)
    base = [r["step_ms"] for r in rows if r["lead"] == "base" and "step_ms" in r]
    base_ms = sum(base) / len(base) if base else None
    for r in rows:
        r["base_ms"] = base_ms
        r["drift"] = (max(base) - min(base)) / base_ms if base_ms else None
        if base_ms and "step_ms" in r:
            r["speedup"] = base_ms / r["step_ms"]
    if device.type == "cuda":
        del model, forward
        torch.cuda.empty_cache()
    return rows


def format_row(r: dict) -> str:
    if "error" in r:
        return f"| {r['depth']} | {r['lead']} | failed | - | - | - | {r['error']} |"
    speedup = f"{r['speedup']:.3f}x" if r.get("speedup") else "-"
    opt = "-"
    if "optimizer_gpu_ms" in r:
        opt = f"{r['optimizer_gpu_ms']:.2f} ({r['optimizer_non_matmul_ms']:.2f})"
    return (
        f"| {r['depth']} | {r['lead']} | {r['step_ms']:.2f} | {r['tokens_per_s']:,.0f} "
        f"| {speedup} | {opt} "
        f"| {r['what']}{'' if r['weights_finite'] else ' (weights not finite!)'} |"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    # The compiled Muon maths makes one graph per (bucket shape, options): room for all leads.
    for name in ("cache_size_limit", "recompile_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(64, getattr(torch._dynamo.config, name)))
    start = time.perf_counter()
    rows = []
    for depth in args.depth_list:
        rows += measure_depth(depth, args, device, start)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"\n# speed_leads: {name}, torch {torch.__version__}, {date.today()}, batch "
        f"{args.batch_size} x {args.seq_len}, compile={device.type == 'cuda' and not args.no_compile}, "
        f"best of {args.repeats} x {args.steps} timed steps after {args.warmup} warm-up "
        f"(excluded), {time.perf_counter() - start:.0f} s in all"
    )
    print(
        "| DEPTH | lead | step ms | tokens/s | speedup vs base (same run) "
        "| optimizer GPU ms (non-matmul) | what |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(format_row(r))
    for depth in args.depth_list:
        drift = next((r["drift"] for r in rows if r["depth"] == depth and r.get("drift")), None)
        if drift is not None:
            print(
                f"DEPTH {depth}: the two baseline runs differ by {100 * drift:.1f}% (noise floor)"
            )
    if args.json:
        atomic.write_json(args.json, {"device": name, "torch": torch.__version__, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
