"""In-context evaluation speed: batched across examples against one example per forward pass.

    python benchmarks/evals.py                                   # GPU: DEPTH 12, GPT-2 BPE
    python benchmarks/evals.py --device cpu --depth 2 --items 16 --seq-len 256   # a CPU check

For each task type, the same synthetic items (word salad of CORE-like lengths, GPT-2 BPE, a
randomly initialised model: speed does not depend on what the model knows) are scored by
``nanogpt.evals.icl._item_outcomes`` four ways: batched with the shared prefix (the default:
a multiple-choice item's context runs once, its choices against the context's keys and
values), batched plain (every choice's row on its own; rows of many items packed up to
--batch-tokens), one item per forward pass with logits at every position (its choices
stacked, the way nanochat's ``core_eval.py`` runs), and one item per pass with the head only at
the scored positions, to separate the gains. Schema and language-modelling items have no
shared context (schema's options differ in the context, language modelling has one row), so
their two batched columns run the same code. The speed-up is nanochat's way over the default.
Every mode must agree with nanochat's way on every item's outcome up to bf16 near-ties, which
the table reports. Untimed warm-up passes run first (the batched modes over all the items, so
the allocator has grown to a full batch); the scoring columns exclude tokenizing, which the
last column times on its own (it is the same in every mode). Prints a markdown table for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import random
import time
from pathlib import Path
from typing import Any

import torch

from nanogpt import dist
from nanogpt.config import ModelConfig
from nanogpt.evals import icl
from nanogpt.evals.bundle import TaskSpec
from nanogpt.model import GPT
from nanogpt.tokenizer import get_tokenizer

WORDS = (
    "the of and a to in is was he for it with as his on be at by had are but from or have an "
    "they which one you were her all she there would their we him been has when who will more "
    "no if out so said what up its about into than them can only other new some could time "
    "these two may then do first any my now such like our over man me even most made after "
    "also did many before must through back years where much your way well down should because"
).split()

# Shapes after CORE's heavier tasks: hellaswag (10-shot), winogrande (0-shot), squad-like LM.
TASK_SHAPES: dict[str, dict[str, int]] = {
    "multiple_choice": {"shots": 10, "query": 45, "choice": 12, "n_choices": 4},
    "schema": {"shots": 0, "query": 20, "choice": 6, "n_choices": 2},
    "language_modeling": {"shots": 10, "query": 60, "choice": 3, "n_choices": 1},
}


def _salad(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def make_items(task_type: str, n: int, seed: int = 0) -> list[dict[str, Any]]:
    shape, rng = TASK_SHAPES[task_type], random.Random(seed)
    items = []
    for _ in range(n):
        if task_type == "multiple_choice":
            choices = [_salad(rng, shape["choice"]) for _ in range(shape["n_choices"])]
            items.append({"query": _salad(rng, shape["query"]), "choices": choices, "gold": 0})
        elif task_type == "schema":
            options = [_salad(rng, shape["query"]) for _ in range(shape["n_choices"])]
            items.append(
                {
                    "context_options": options,
                    "continuation": _salad(rng, shape["choice"]),
                    "gold": 1,
                }
            )
        else:
            items.append(
                {
                    "context": _salad(rng, shape["query"]),
                    "continuation": _salad(rng, shape["choice"]),
                }
            )
    return items


def _timed(fn, device: torch.device) -> tuple[Any, float]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - start


def outcomes(
    model, tokenizer, task, items, device, batch_tokens, full_head=False, share_prefix=True
) -> tuple[list[bool], float]:
    """Per-item outcomes and the wall time of scoring them (tokenizing not included)."""
    prepared = icl.prepare(task, items, tokenizer, model.config.sequence_len)

    def run():
        return icl._item_outcomes(
            task, prepared, model, tokenizer, device, batch_tokens, None, full_head, share_prefix
        )

    return _timed(run, device)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--depth", type=int, default=12)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--items", type=int, default=500, help="items per task type")
    p.add_argument("--batch-tokens", type=int, default=32768, help="padded tokens per forward")
    p.add_argument(
        "--types", default=",".join(TASK_SHAPES), help="comma-separated task types to time"
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = dist.pick_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    tokenizer = get_tokenizer("gpt2")
    torch.manual_seed(0)
    cfg = ModelConfig.from_depth(args.depth, sequence_len=args.seq_len)
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02)  # non-degenerate logits, so picks are not all ties
    model = model.to(device).eval()
    types = [t for t in args.types.split(",") if t]
    unknown = [t for t in types if t not in TASK_SHAPES]
    if unknown:
        raise SystemExit(f"--types: unknown {unknown}; choose from {', '.join(TASK_SHAPES)}")

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"# evals benchmark {datetime.date.today()} | torch {torch.__version__} | {device} "
        f"{gpu} | DEPTH {args.depth} (n_embd {cfg.n_embd}) | seq {args.seq_len} | "
        f"batch_tokens {args.batch_tokens} | {args.items} items per type"
    )
    rows = []
    for task_type in types:
        shape = TASK_SHAPES[task_type]
        task = TaskSpec(task_type, task_type, "-", shape["shots"])
        items = make_items(task_type, args.items)
        warm = items[: min(8, len(items))]
        bt = args.batch_tokens
        for share in (True, False):
            outcomes(model, tokenizer, task, items, device, bt, share_prefix=share)  # warm-up
        for full in (True, False):
            outcomes(model, tokenizer, task, warm, device, None, full)  # warm-up
        shared, shared_s = outcomes(model, tokenizer, task, items, device, bt)
        plain, plain_s = outcomes(model, tokenizer, task, items, device, bt, share_prefix=False)
        single, single_s = outcomes(model, tokenizer, task, items, device, None, True)
        _, lean_s = outcomes(model, tokenizer, task, items, device, None, False)
        start = time.perf_counter()
        icl.prepare(task, items, tokenizer, args.seq_len)
        prepare_s = time.perf_counter() - start
        rows.append(
            {
                "task_type": task_type,
                "shots": shape["shots"],
                "items": len(items),
                "rows_per_item": shape["n_choices"],
                "batched_items_per_s": len(items) / shared_s,
                "batched_plain_items_per_s": len(items) / plain_s,
                "per_item_items_per_s": len(items) / single_s,
                "per_item_scored_head_items_per_s": len(items) / lean_s,
                "speedup": single_s / shared_s,
                "speedup_plain": single_s / plain_s,
                "prepare_items_per_s": len(items) / prepare_s,
                "agreement": sum(a == b for a, b in zip(shared, single)) / len(items),
                "agreement_plain": sum(a == b for a, b in zip(plain, single)) / len(items),
            }
        )
    print(
        "\n| task type | shots | items | rows/item | batched, shared prefix items/s | batched, "
        "plain items/s | one per forward, full logits (nanochat's way) items/s | speed-up | "
        "speed-up, plain | one per forward, head at scored positions items/s | same outcome "
        "(shared / plain) | tokenizing items/s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['task_type']} | {r['shots']} | {r['items']} | {r['rows_per_item']} | "
            f"{r['batched_items_per_s']:.1f} | {r['batched_plain_items_per_s']:.1f} | "
            f"{r['per_item_items_per_s']:.1f} | {r['speedup']:.1f}x | "
            f"{r['speedup_plain']:.1f}x | {r['per_item_scored_head_items_per_s']:.1f} | "
            f"{r['agreement']:.1%} / {r['agreement_plain']:.1%} | "
            f"{r['prepare_items_per_s']:.0f} |"
        )
    if args.json is not None:
        args.json.write_text(
            json.dumps({"args": vars(args) | {"json": None}, "rows": rows}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
