"""The loss kernel alone on a GPU, under several launches: which block and warps are fastest.

    PYTHONPATH=. python3 benchmarks/loss_kernel.py                       # 32,768 rows, GPT-2 vocab
    PYTHONPATH=. python3 benchmarks/loss_kernel.py --launches 2048:8,2048:16 --repeat 50

Runs ``nanogpt.triton_loss.softcap_ce_rows_`` over one batch's bf16 logits (rows × the padded
vocabulary, in place, as training does: each run takes the last run's gradient as its logits,
which costs the same) and prints a table: the launch (columns per block, warps; one program per
row), the mean time of ``--repeat`` runs back to back, the bandwidth the kernel gets if it moved
the logits three times (read, read again, write) and if the second read came from L2 (read,
write), and the time against the first launch of the list, measured in the same run. (A
persistent grid of a few programs per SM looping over rows, commit 10df4a1, measured 17-113%
slower: docs/benchmarks.md.) The figures of 2026-12-04 are medians of single runs, as the
script timed them then.
"""

from __future__ import annotations

import argparse
import sys

import torch

# The default launch (2,048 columns, 8 warps) first: the baseline.
DEFAULT_LAUNCHES = "2048:8,512:4,1024:8,2048:4,2048:16,4096:8,4096:16"


def parse_launches(text: str) -> list[tuple[int, int]]:
    """ "BLOCK:WARPS,..." into (block, warps) pairs, with a clear error (the kernel's own rule:
    ``nanogpt.triton_loss.check_launch``)."""
    from nanogpt.triton_loss import check_launch

    launches = []
    for item in text.split(","):
        try:
            b, w = (int(x) for x in item.strip().split(":"))
        except ValueError:
            raise SystemExit(f"--launches: {item!r} is not block:warps") from None
        try:
            check_launch(b, w)
        except ValueError as error:
            raise SystemExit(f"--launches: {item!r}: {error}") from None
        launches.append((b, w))
    return launches


def time_launch(
    logits: torch.Tensor,
    targets: torch.Tensor,
    vocab: int,
    launch: tuple[int, int],
    repeat: int,
) -> float:
    """Mean ms of ``repeat`` runs of the kernel back to back, between two CUDA events (after two
    untimed runs: the compile and a warm-up)."""
    from nanogpt import triton_loss

    block, warps = launch

    def run() -> None:
        triton_loss.softcap_ce_rows_(
            logits, targets, vocab, 15.0, 1e-4, block=block, num_warps=warps
        )

    run()
    run()
    events = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
    events[0].record()
    for _ in range(repeat):
        run()
    events[1].record()
    events[1].synchronize()
    return events[0].elapsed_time(events[1]) / repeat


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=32768)
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--padded", type=int, default=50304)
    p.add_argument("--launches", default=DEFAULT_LAUNCHES, help="BLOCK:WARPS,...")
    p.add_argument("--repeat", type=int, default=20)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("loss_kernel: needs a CUDA GPU", file=sys.stderr)
        return 2
    launches = parse_launches(args.launches)
    device = torch.device("cuda")
    gen = torch.Generator(device=device).manual_seed(0)
    logits = (torch.randn(args.rows, args.padded, device=device, generator=gen) * 3).bfloat16()
    targets = torch.randint(0, args.vocab, (args.rows,), device=device, generator=gen)
    gbytes = logits.numel() * logits.element_size() / 1e9
    name = torch.cuda.get_device_name()
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    print(
        f"# loss_kernel: {name} ({sms} SMs), torch {torch.__version__}, {args.rows} x "
        f"{args.padded} bf16 logits ({gbytes:.2f} GB), mean of {args.repeat}"
    )
    print("| block | warps | ms | GB/s as 3 passes | GB/s as 2 | vs first |")
    print("|---|---|---|---|---|---|")
    first = None
    for launch in launches:
        ms = time_launch(logits, targets, args.vocab, launch, args.repeat)
        first = first or ms
        print(
            f"| {launch[0]} | {launch[1]} | {ms:.3f} | "
            f"{3 * gbytes / ms * 1e3:,.0f} | {2 * gbytes / ms * 1e3:,.0f} | {ms / first:.3f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
