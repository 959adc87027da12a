"""Evaluation: CORE and the Eval Gauntlet for base models, ChatCORE and IFEval for chat models.

One entry, :func:`evaluate`, used by ``python -m nanogpt.evals``, the training loop
(:mod:`nanogpt.evals.training`) and the sweep. Every suite returns the same shape::

    {"suite": str, "tasks": {name: {"accuracy": float, "centered": float, "n": int}},
     "score": float, "notes": [str, ...], ...}

The base-model suites read a Mosaic ICL bundle (:mod:`nanogpt.evals.bundle`) and score it with
the batched in-context evaluator (:mod:`nanogpt.evals.icl`); the aggregates are in
:mod:`nanogpt.evals.aggregate`. The chat suites live in ``nanogpt.evals.chatcore`` and
``nanogpt.evals.ifeval``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from nanogpt.evals import aggregate, icl
from nanogpt.evals.bundle import Bundle, BundleError, TaskSpec, gauntlet_tasks, open_bundle

SUITES = ("core", "gauntlet", "chatcore", "ifeval", "all")
BASE_SUITES = ("core", "gauntlet")


def _check_tasks(
    tasks: list[TaskSpec], needed: list[str], bundle: Bundle, what: str
) -> list[TaskSpec]:
    """The needed tasks, in order; every one listed and its data present, before any compute."""
    by_label = {t.label: t for t in tasks}
    aggregate._require(needed, by_label, f"{what} (in {bundle.root})")
    chosen = [by_label[name] for name in needed]
    absent = [t.dataset_uri for t in chosen if not (bundle.data_dir / t.dataset_uri).is_file()]
    if absent:
        raise BundleError(
            f"{bundle.data_dir} lacks {len(absent)} of {what}'s files: {', '.join(absent)}"
        )
    return chosen


def run_icl_suite(
    model: torch.nn.Module,
    tokenizer: Any,
    suite: str,
    bundle: Bundle,
    *,
    limit: int | None = None,
    device: torch.device | str = "cpu",
    baselines: str = "dclm-v2",
    batch_tokens: int | None = None,
    distributed: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """CORE or the Gauntlet on ``bundle``; ``limit`` items per task (a fixed seeded subsample)."""
    notes: list[str] = []
    if suite == "core":
        tasks = _check_tasks(bundle.tasks("core.yaml"), list(aggregate.CORE_TASKS), bundle, "CORE")
        for t in tasks:
            kind, shots = aggregate.CORE_TASKS[t.label]
            if (t.task_type, t.num_fewshot) != (kind, shots):
                notes.append(
                    f"{t.label}: the bundle runs {t.task_type} {t.num_fewshot}-shot, DCLM's CORE "
                    f"{kind} {shots}-shot"
                )
    elif suite == "gauntlet":
        names = list(aggregate.GAUNTLET_BASELINES)
        tasks = _check_tasks(gauntlet_tasks(bundle), names, bundle, "the Eval Gauntlet v0.3")
    else:
        raise ValueError(f"suite {suite!r} is not an in-context suite ({', '.join(BASE_SUITES)})")
    if limit is not None:
        notes.append(f"subsample: at most {limit} items per task (seeded, the same every run)")

    results: dict[str, icl.TaskResult] = {}
    for task in tasks:
        start = time.perf_counter()
        items = bundle.load_items(task)
        result = icl.evaluate_task(
            model, tokenizer, task, items, device=device,
            indices=icl.subsample(len(items), limit), batch_tokens=batch_tokens,
            distributed=distributed,
        )  # fmt: skip
        results[task.label] = result
        if log is not None:
            log(
                f"{task.label:<34} {task.task_type:<28} {task.num_fewshot:>2}-shot "
                f"n={result.n:<6} acc={result.accuracy:.4f} ({time.perf_counter() - start:.1f}s)"
            )
    accuracies = {name: r.accuracy for name, r in results.items()}
    out: dict[str, Any] = {"suite": suite, "notes": notes}
    if suite == "core":
        agg = aggregate.core_score(accuracies, baselines, bundle.baselines)
        notes.insert(0, agg["note"])
        out["baselines"] = baselines
    else:
        agg = aggregate.gauntlet_score(accuracies)
        out["categories"] = agg["categories"]
        notes.insert(0, "Eval Gauntlet v0.3 (llm-foundry eval_gauntlet_v0.3.yaml), equal weights")
    out["score"] = agg["score"]
    out["tasks"] = {
        name: {
            "accuracy": r.accuracy,
            "centered": agg["centered"][name],
            "n": r.n,
            **({"categories": r.categories} if r.categories else {}),
        }
        for name, r in results.items()
    }
    return out


def chat_suite(name: str) -> Callable[..., dict[str, Any]]:
    try:
        if name == "chatcore":
            from nanogpt.evals.chatcore import run_chatcore as fn
        else:
            from nanogpt.evals.ifeval import run_ifeval as fn
    except ImportError as e:
        raise RuntimeError(
            f"suite {name!r} needs nanogpt.evals.{name}, which is not importable here ({e})"
        ) from e
    return fn


def evaluate(
    model: torch.nn.Module,
    tokenizer: Any,
    suite: str,
    bundle_dir: str | Path | None,
    *,
    meta: dict | None = None,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    device: torch.device | str = "cpu",
    baselines: str = "dclm-v2",
    batch_tokens: int | None = None,
    distributed: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run one suite (or ``all``) and return its result dict (``all``: ``{"suites": {...}}``).

    ``bundle_dir`` is the Mosaic ICL bundle for core and gauntlet; ``data_dir`` the folder of
    the chat suites' JSONL files (default: the bundle directory).
    """
    if suite not in SUITES:
        raise ValueError(f"suite {suite!r} is not one of {', '.join(SUITES)}")
    meta = meta or {}

    def run_one(name: str) -> dict[str, Any]:
        if name in BASE_SUITES:
            if bundle_dir is None:
                raise BundleError(
                    "core and gauntlet need an eval bundle: pass --bundle or --download"
                )
            return run_icl_suite(
                model, tokenizer, name, open_bundle(bundle_dir), limit=limit, device=device,
                baselines=baselines, batch_tokens=batch_tokens, distributed=distributed, log=log,
            )  # fmt: skip
        if data_dir is None and bundle_dir is None:
            raise ValueError(f"suite {name!r} needs --data-dir (or --bundle) with its JSONL files")
        folder = Path(data_dir if data_dir is not None else bundle_dir)  # type: ignore[arg-type]
        return chat_suite(name)(model, tokenizer, meta, folder, limit=limit, device=device)

    if suite != "all":
        return run_one(suite)
    from nanogpt.engine import is_chat_model

    names = ["core", "gauntlet"] + (["chatcore", "ifeval"] if is_chat_model(meta) else [])
    notes = [] if "chatcore" in names else ["chat suites skipped: not a mid-trained model"]
    return {"suite": "all", "suites": {name: run_one(name) for name in names}, "notes": notes}


__all__ = ["SUITES", "evaluate", "run_icl_suite"]
