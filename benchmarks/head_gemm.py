"""The head's three GEMMs at other paddings of the vocabulary: do other tile shapes pay?

    python benchmarks/head_gemm.py                         # widths 384..896, one GPU
    python benchmarks/head_gemm.py --widths 768 --rows 32768 --pads 50304,50432,50688

The training loss (nanogpt/loss.py, Triton path) runs, per chunk of rows, three GEMMs over the
padded head: logits = h · Wᵀ (bf16), d(loss)/dh = G · W (bf16) and d(loss)/dW = Gᵀ · h (fp32
out). The padding (``nanogpt.scaling.padded_vocab``: 50,257 → 50,304, a multiple of 64) adds
columns that take probability 0 and gradient 0, so another padding computes the same loss and
gradients and changes only the cost (and the head's shape in checkpoints). For each model
width and padding this times the three GEMMs (CUDA events, median of ``--repeats``) and prints
the sum and its ratio to the current padding's: below 1 means the padding pays.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

VOCAB = 50257


def time_ms(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def head_gemms(rows: int, width: int, vocab: int, repeats: int) -> dict[str, float]:
    """ms of each of the three head GEMMs for one chunk of ``rows`` rows."""
    gen = torch.Generator(device="cuda").manual_seed(0)
    h = torch.randn(rows, width, device="cuda", generator=gen).bfloat16()
    w = torch.randn(vocab, width, device="cuda", generator=gen).bfloat16()
    g = torch.randn(rows, vocab, device="cuda", generator=gen).bfloat16()
    return {
        "logits": time_ms(lambda: h @ w.t(), repeats),
        "dh": time_ms(lambda: g @ w, repeats),
        "dW": time_ms(lambda: torch.mm(g.t(), h, out_dtype=torch.float32), repeats),
    }


def layout_gemms(rows: int, width: int, vocab: int, repeats: int) -> dict[str, float]:
    """ms of each head GEMM in other operand layouts (the same products, other cuBLAS kernels),
    with cuBLAS and with cuBLASLt as torch's BLAS back end."""
    gen = torch.Generator(device="cuda").manual_seed(0)
    h = torch.randn(rows, width, device="cuda", generator=gen).bfloat16()
    w = torch.randn(vocab, width, device="cuda", generator=gen).bfloat16()
    wt = w.t().contiguous()  # (C, V): one transposed copy of the head a step (V x C x 2 bytes)
    g = torch.randn(rows, vocab, device="cuda", generator=gen).bfloat16()
    f32 = torch.float32
    cases = {
        "logits h·Wᵀ": lambda: h @ w.t(),
        "logits h·(Wᵀ copy)": lambda: h @ wt,
        "dh G·W": lambda: g @ w,
        "dh G·(Wᵀ copy)ᵀ": lambda: g @ wt.t(),
        "dW Gᵀ·h": lambda: torch.mm(g.t(), h, out_dtype=f32),
        "dWᵀ hᵀ·G": lambda: torch.mm(h.t(), g, out_dtype=f32),
        "copy Wᵀ": lambda: w.t().contiguous(),
    }
    out = {}
    previous = torch.backends.cuda.preferred_blas_library()
    try:
        for library in ("cublas", "cublaslt"):
            torch.backends.cuda.preferred_blas_library(library)
            for name, fn in cases.items():
                if library == "cublas" or not name.startswith("copy"):
                    out[f"{name} [{library}]"] = time_ms(fn, repeats)
    finally:
        torch.backends.cuda.preferred_blas_library(previous)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--widths", default="384,512,640,768,896", help="model widths (64 · DEPTH)")
    p.add_argument("--rows", type=int, default=32768, help="rows per chunk (the default chunk)")
    p.add_argument(
        "--pads",
        default="50304,50257,50432,50688,51200",
        help="padded vocabulary sizes; the first is the baseline (the current padding)",
    )
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument(
        "--layouts",
        action="store_true",
        help="instead: each GEMM in other operand layouts and BLAS back ends, at the first pad",
    )
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("head_gemm.py times cuBLAS on a CUDA GPU; there is none here")
    pads = [int(v) for v in args.pads.split(",")]
    print(f"# head_gemm: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"{args.rows} rows, median of {args.repeats}")  # fmt: skip
    if args.layouts:
        widths = [int(c) for c in args.widths.split(",")]
        rows = {w: layout_gemms(args.rows, w, pads[0], args.repeats) for w in widths}
        print(f"| GEMM (vocab {pads[0]:,}) | " + " | ".join(f"{w} ms" for w in widths) + " |")
        print("|---|" + "---|" * len(widths))
        for name in rows[widths[0]]:
            print(f"| {name} | " + " | ".join(f"{rows[w][name]:.3f}" for w in widths) + " |")
        return 0
    print("| width | padded vocab | logits ms | dh ms | dW ms | sum ms | vs current |")
    print("|---|---|---|---|---|---|---|")
    for width in (int(c) for c in args.widths.split(",")):
        base = None
        for vocab in pads:
            t = head_gemms(args.rows, width, vocab, args.repeats)
            total = sum(t.values())
            base = total if base is None else base
            print(
                f"| {width} | {vocab:,} | {t['logits']:.3f} | {t['dh']:.3f} | {t['dW']:.3f} "
                f"| {total:.3f} | {total / base:.3f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
