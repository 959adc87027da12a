"""``python -m nanogpt.evals``: evaluate a checkpoint, print a table, write JSON.

    python -m nanogpt.evals --checkpoint runs/d12/step_005000 --suite core --bundle eval_bundle
    python -m nanogpt.evals --checkpoint runs/d12 --suite gauntlet --download --json out.json
    torchrun --nproc_per_node=8 -m nanogpt.evals --checkpoint runs/d12 --suite core
    python -m nanogpt.evals --checkpoint runs/d12 --lm-eval hellaswag,arc_easy --limit 500
    python -m nanogpt.evals --checkpoint runs/d12 --lm-eval my_task --lm-eval-include tasks/

A run directory means its newest checkpoint. With torchrun, items are split over the ranks and
rank 0 prints and writes. ``--lm-eval`` runs lm-evaluation-harness tasks through the adapter
(:mod:`nanogpt.evals.lm_eval_adapter`) in place of a suite, on one process.
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
    what = p.add_mutually_exclusive_group()
    # default None, not "core": argparse lets an explicit value equal to the default past the
    # mutual exclusion, and --suite core --lm-eval X must be an error
    what.add_argument("--suite", choices=SUITES, default=None, help="what to evaluate (core)")
    what.add_argument(
        "--lm-eval", metavar="TASKS", default=None,
        help="comma-separated lm-evaluation-harness tasks, run in place of --suite "
        "(needs the [lmeval] extra)",
    )  # fmt: skip
    p.add_argument(
        "--lm-eval-include", metavar="DIR", type=Path, default=None,
        help="a folder of task YAMLs of your own for --lm-eval (the built-in tasks are indexed "
        "too only when a task asked for is not found there)",
    )  # fmt: skip
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


def format_lm_eval_table(result: dict[str, Any]) -> str:
    """A markdown table of the harness's metrics per task (its standard errors beside them)."""
    lines = ["## lm-eval", "", "| task | n | metric | value | stderr |", "|---|---:|---|---:|---:|"]
    for task, metrics in result["tasks"].items():
        n = result.get("n_samples", {}).get(task, {}).get("effective", "")
        for key, value in metrics.items():
            if key == "alias" or "_stderr," in key or not isinstance(value, int | float):
                continue
            name, _, flt = key.partition(",")
            err = metrics.get(f"{name}_stderr,{flt}")
            err_text = f"{err:.4f}" if isinstance(err, int | float) else ""
            shown = name if flt in ("", "none") else f"{name} ({flt})"
            lines.append(f"| {task} | {n} | {shown} | {value:.4f} | {err_text} |")
    lines += [f"- {n}" for n in result.get("notes", [])]
    return "\n".join(lines)


def _harness_needs_defaults(tasks: list[str], include: Path | None) -> bool:
    """Whether the harness must index its built-in tasks (a minute): not when every task asked
    for is one of the YAMLs in ``include``."""
    if include is None:
        return True
    from lm_eval.tasks import TaskManager

    own = TaskManager(include_path=str(include), include_defaults=False)
    return not set(tasks) <= set(own.all_tasks)


def run_lm_eval(
    model: Any, tokenizer: Any, meta: dict, tasks: list[str], *, limit: int | None,
    include: Path | None,
) -> dict[str, Any]:  # fmt: skip
    """lm-evaluation-harness ``tasks`` on a model in memory, as this command's JSON shape."""
    from importlib.metadata import version

    from nanogpt.evals.lm_eval_adapter import evaluate_tasks

    if include is not None and not include.is_dir():
        raise ValueError(f"--lm-eval-include {include} is not a directory")
    out = evaluate_tasks(
        model, tokenizer, meta, tasks, limit=limit,
        include_path=str(include) if include is not None else None,
        include_defaults=_harness_needs_defaults(tasks, include), full=True,
    )  # fmt: skip
    notes = [
        f"lm-evaluation-harness {version('lm_eval')} through the nanogpt adapter, "
        f"chat template {'on' if out['chat_template'] else 'off'}, no bootstrap (stderr N/A)"
    ]
    if limit is not None:
        notes.append(f"--limit {limit}: the first {limit} documents of each task (the harness's)")
    return {
        "suite": "lm-eval",
        "tasks": out["results"],
        "n_samples": out["n-samples"],
        "versions": out["versions"],
        "higher_is_better": out["higher_is_better"],
        "notes": notes,
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.suite = args.suite or "core"
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
        if args.lm_eval is not None and info.world_size > 1:
            raise ValueError("--lm-eval runs on one process: start it without torchrun")
        model, tokenizer, meta = load_model(args.checkpoint, info.device)
        start = time.perf_counter()
        log = print if info.is_main else None
        if args.lm_eval is not None:
            tasks = [t.strip() for t in args.lm_eval.split(",") if t.strip()]
            if not tasks:
                raise ValueError("--lm-eval needs at least one task name")
            result = run_lm_eval(
                model, tokenizer, meta, tasks, limit=args.limit, include=args.lm_eval_include
            )
            print("\n" + format_lm_eval_table(result))
        else:
            result = evaluate(
                model, tokenizer, args.suite, bundle_dir, meta=meta, data_dir=args.data_dir,
                limit=args.limit, device=info.device, baselines=args.baselines, log=log,
                batch_tokens=args.batch_tokens,
            )  # fmt: skip
        if not info.is_main:
            return 0
        if args.lm_eval is None:
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
    except (BundleError, KeyError, ValueError, RuntimeError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        dist.teardown(info)
