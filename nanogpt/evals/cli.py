"""``python -m nanogpt.evals``: evaluate a checkpoint, print a table, write JSON.

    python -m nanogpt.evals --checkpoint runs/d12/step_005000 --suite core --bundle eval_bundle
    python -m nanogpt.evals --checkpoint runs/d12 --suite gauntlet --download --json out.json
    torchrun --nproc_per_node=8 -m nanogpt.evals --checkpoint runs/d12 --suite core

A run directory means its newest checkpoint. With torchrun, items are split over the ranks and
rank 0 prints and writes.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path
from typing import Any

from nanogpt import atomic
from nanogpt.evals import SUITES, evaluate
from nanogpt.evals.bundle import EVAL_BUNDLE_URL, BundleError, default_bundle_dir, download_bundle


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nanogpt.evals", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="a step_NNNNNN directory or a run directory")
    p.add_argument("--suite", choices=SUITES, default="core", help="what to evaluate")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--bundle", type=Path, default=None,
        help=f"eval bundle directory (default: ${'NANOGPT_EVAL_BUNDLE'} or {default_bundle_dir()})",
    )  # fmt: skip
    where.add_argument(
        "--download", action="store_true",
        help=f"fetch the public bundle ({EVAL_BUNDLE_URL}) into the default directory first",
    )  # fmt: skip
    p.add_argument("--data-dir", type=Path, default=None, help="JSONL folder of the chat suites")
    p.add_argument("--limit", type=int, default=None, help="at most N items per task (subsample)")
    p.add_argument("--json", type=Path, default=None, help="write the results here (atomically)")
    p.add_argument(
        "--baselines", choices=("dclm-v2", "v1", "bundle"), default="dclm-v2",
        help="CORE's random baselines: DCLM's fixed ones, the pre-fix v1, or the bundle's CSV",
    )  # fmt: skip
    p.add_argument(
        "--batch-tokens",
        type=int,
        default=None,
        help="padded tokens per forward pass (default: 32768 on a GPU, 4096 on a CPU)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    return p


def format_table(result: dict[str, Any]) -> str:
    """A markdown table of one suite's tasks, its categories and its score."""
    lines = [
        f"## {result['suite']}",
        "",
        "| task | n | accuracy | centred |",
        "|---|---:|---:|---:|",
    ]
    for name, r in result["tasks"].items():
        lines.append(f"| {name} | {r['n']} | {r['accuracy']:.4f} | {r['centered']:.4f} |")
    for cat, score in result.get("categories", {}).items():
        lines.append(f"| *{cat}* |  |  | {score:.4f} |")
    lines.append(f"| **{result['suite']}** |  |  | **{result['score']:.4f}** |")
    lines += [f"- {n}" for n in result.get("notes", [])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for flag, value in (("--limit", args.limit), ("--batch-tokens", args.batch_tokens)):
        if value is not None and value < 1:
            print(f"error: {flag} must be >= 1, got {value}", file=sys.stderr)
            return 2
    from nanogpt import dist
    from nanogpt.engine import load_model

    info = dist.init(args.device)
    try:
        bundle_dir = args.bundle
        if args.download:
            if info.is_main:
                print(f"downloading {EVAL_BUNDLE_URL} ...", flush=True)
                download_bundle(default_bundle_dir())
            dist.barrier()
            bundle_dir = default_bundle_dir()
        elif bundle_dir is None:
            bundle_dir = default_bundle_dir()
        model, tokenizer, meta = load_model(args.checkpoint, info.device)
        start = time.perf_counter()
        log = print if info.is_main else None
        result = evaluate(
            model, tokenizer, args.suite, bundle_dir, meta=meta, data_dir=args.data_dir,
            limit=args.limit, device=info.device, baselines=args.baselines, log=log,
            batch_tokens=args.batch_tokens,
        )  # fmt: skip
        if not info.is_main:
            return 0
        suites = result["suites"] if args.suite == "all" else {args.suite: result}
        for r in suites.values():
            print("\n" + format_table(r))
        for note in result.get("notes", []) if args.suite == "all" else []:
            print(f"- {note}")
        result["checkpoint"] = meta.get("path", str(args.checkpoint))
        result["step"] = meta.get("step")
        result["elapsed_s"] = round(time.perf_counter() - start, 2)
        result["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_json(args.json, result, default=str)
            print(f"\nwrote {args.json}")
        return 0
    except (BundleError, KeyError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        dist.teardown(info)
