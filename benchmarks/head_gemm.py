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
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("head_gemm.py times cuBLAS on a CUDA GPU; there is none here")
    pads = [int(v) for v in args.pads.split(",")]
    print(f"# head_gemm: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"{args.rows} rows, median of {args.repeats}")  # fmt: skip
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
