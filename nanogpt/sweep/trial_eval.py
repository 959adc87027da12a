"""The sweep's downstream evaluation: ``--eval core`` scores each trial's final model on CORE.

After a trial trains, its rank-0 worker (on the trial's own GPU, or its CPU) loads the final
checkpoint and runs ``nanogpt.evals.evaluate`` on the suite, with a fixed seeded subsample of at
most ``--eval-max-per-task`` items per task (the same items for every trial, so trials compare
on equal terms). The score becomes the row's ``core`` (or ``gauntlet``) column, with the
baselines it was centred on (``eval_baselines``) and the subsample (``eval_max_per_task``); the
whole result, per task, is written to the run directory as ``eval.json``.

Before any trial starts, :func:`plan_trial_eval` opens the bundle, checks that every task of the
suite and its data are there, and tokenizes a sample of items at the sweep's context to price
the evaluation; a missing bundle stops the sweep there, with the fix. The dry run prints the same
plan. Nothing here imports Ray, and torch only inside the functions.
"""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nanogpt import atomic

EVAL_SUITES = ("none", "core", "gauntlet")
EVAL_FILE = "eval.json"
DEFAULT_MAX_PER_TASK = 200  # the training loop's default subsample too
# Items per task tokenized to estimate the evaluation's cost (the plan's mean tokens per item).
COST_SAMPLE = 64


@dataclass(frozen=True)
class TrialEval:
    """What each trial is evaluated on after it trains (``suite="none"``: nothing)."""

    suite: str = "none"  # none, core or gauntlet
    bundle: str | None = None  # the Mosaic ICL bundle directory (absolute)
    max_per_task: int = DEFAULT_MAX_PER_TASK  # a fixed seeded subsample per task; 0 = every item
    baselines: str = "dclm-v2"  # CORE's random baselines: dclm-v2, v1 or bundle
    batch_tokens: int | None = None  # padded tokens per forward pass (None: by device)

    def __post_init__(self) -> None:
        if self.suite not in EVAL_SUITES:
            raise ValueError(f"--eval must be one of {', '.join(EVAL_SUITES)}, got {self.suite!r}")
        if self.max_per_task < 0:
            raise ValueError(f"--eval-max-per-task must be >= 0, got {self.max_per_task}")
        if self.baselines not in ("dclm-v2", "v1", "bundle"):
            raise ValueError(f"--eval-baselines: use dclm-v2, v1 or bundle, not {self.baselines!r}")

    @property
    def enabled(self) -> bool:
        return self.suite != "none"

    @property
    def limit(self) -> int | None:
        return self.max_per_task or None

    @property
    def title(self) -> str:
        return {"core": "CORE", "gauntlet": "the Eval Gauntlet v0.3"}.get(self.suite, self.suite)


def resolve_bundle(bundle: str | Path | None) -> str:
    """``--eval-bundle``, or ``$NANOGPT_EVAL_BUNDLE``, or the download cache; absolute."""
    from nanogpt.evals.bundle import default_bundle_dir

    return str(Path(bundle if bundle is not None else default_bundle_dir()).expanduser().resolve())


@dataclass
class EvalPlan:
    """The suite's tasks as the sweep will run them: items per task and their estimated tokens."""

    evaluation: TrialEval
    bundle: str
    items: dict[str, int] = field(default_factory=dict)  # task -> items evaluated per trial
    tokens: dict[str, float] = field(default_factory=dict)  # task -> est. tokens per trial

    @property
    def total_items(self) -> int:
        return sum(self.items.values())

    @property
    def total_tokens(self) -> float:
        return sum(self.tokens.values())


def _fix(evaluation: TrialEval) -> str:
    return (
        f"the sweep evaluates every trial on {evaluation.title} (--eval {evaluation.suite}); get "
        "the bundle with `python -m nanogpt.evals --download` on a machine with internet (it "
        "unpacks into $NANOGPT_EVAL_BUNDLE or ~/.cache/nanogpt/eval_bundle), or pass "
        "--eval-bundle DIR, or run without --eval"
    )


def plan_trial_eval(evaluation: TrialEval, tokenizer_name: str, seq_len: int) -> EvalPlan:
    """Check the bundle for the suite and estimate the evaluation's tokens per trial.

    Raises ``BundleError`` (what is missing, and the fix) when the bundle, a task or a task's file
    is missing or malformed, or an item cannot be scored at ``seq_len``: before any trial runs.
    """
    from nanogpt.evals import aggregate, icl
    from nanogpt.evals.bundle import BundleError, gauntlet_tasks, open_bundle
    from nanogpt.tokenizer import get_tokenizer

    bundle_dir = resolve_bundle(evaluation.bundle)
    out = EvalPlan(evaluation, bundle_dir)
    try:
        bundle = open_bundle(bundle_dir)
        if evaluation.suite == "core":
            listed, needed = bundle.tasks("core.yaml"), list(aggregate.CORE_TASKS)
        else:
            listed, needed = gauntlet_tasks(bundle), list(aggregate.GAUNTLET_BASELINES)
        by_label = {t.label: t for t in listed}
        try:
            aggregate._require(needed, by_label, evaluation.title)
        except aggregate.MissingTaskError as e:
            where = "core.yaml" if evaluation.suite == "core" else "gauntlet.yaml / the v0.3 list"
            raise BundleError(f"{bundle.root} ({where}): {e}") from e
        if evaluation.suite == "core":  # --eval-baselines bundle needs the bundle's CSV
            aggregate.core_baselines(evaluation.baselines, bundle.baselines)
        tokenizer = get_tokenizer(tokenizer_name)
        for name in needed:
            task = by_label[name]
            items = bundle.load_items(task)
            chosen = icl.subsample(len(items), evaluation.limit)
            sample = chosen[:: max(1, len(chosen) // COST_SAMPLE)][:COST_SAMPLE]
            prepared = icl.prepare(task, items, tokenizer, seq_len, sample)
            per_item = [
                sum(len(c) + len(k) for c, k in p.rows)
                if p.prompt is None
                else len(p.prompt) + p.max_new_tokens
                for p in prepared
            ]
            out.items[name] = len(chosen)
            out.tokens[name] = len(chosen) * sum(per_item) / max(1, len(per_item))
    except (BundleError, aggregate.MissingTaskError, ValueError) as e:
        raise BundleError(f"{e}\n{_fix(evaluation)}") from e
    return out


# --- inside the trial ----------------------------------------------------------------------------


def final_checkpoint(summary: dict[str, Any], run_dir: Path) -> Path:
    """The checkpoint of the run's last step (a retried trial's ``train()`` that had nothing
    left to train saves none: its run directory's newest is the final one)."""
    from nanogpt import checkpoint as ckpt

    path = summary.get("checkpoint") or ckpt.find_latest(run_dir)
    if path is None:
        raise RuntimeError(f"{run_dir} has no checkpoint to evaluate; the run saved none")
    return Path(path)


def evaluate_trial(
    summary: dict[str, Any], run_dir: Path, evaluation: TrialEval, device: str
) -> dict[str, Any]:
    """Evaluate a finished run's final model; returns the row's columns (``core`` or
    ``gauntlet``, ``eval_baselines``, ``eval_max_per_task``, ``eval_s``) and writes the whole
    result to ``run_dir/eval.json`` atomically. A run that did not end ``ok`` is not evaluated."""
    if not evaluation.enabled or summary.get("status") != "ok":
        return {}
    import torch

    from nanogpt.engine import load_model
    from nanogpt.evals import evaluate

    start = time.perf_counter()
    path = final_checkpoint(summary, run_dir)
    model, tokenizer, meta = load_model(str(path), device)
    lines: list[str] = []
    with torch.no_grad():
        result = evaluate(
            model, tokenizer, evaluation.suite, resolve_bundle(evaluation.bundle), meta=meta,
            limit=evaluation.limit, device=device, baselines=evaluation.baselines,
            batch_tokens=evaluation.batch_tokens, distributed=False, log=lines.append,
        )  # fmt: skip
    elapsed = time.perf_counter() - start
    del model
    result.update(checkpoint=str(path), step=meta.get("step"), elapsed_s=round(elapsed, 2))
    atomic.write_json(run_dir / EVAL_FILE, result, indent=1, default=str)
    print(f"evaluation ({evaluation.suite}, {elapsed:.1f}s):", *lines, sep="\n  ", flush=True)
    print(f"{evaluation.suite} = {result['score']:.4f}", flush=True)
    return {
        evaluation.suite: float(result["score"]),
        "eval_baselines": result.get("baselines") if evaluation.suite == "core" else "v0.3",
        "eval_max_per_task": evaluation.max_per_task,
        "eval_s": elapsed,
    }


def evaluate_or_note(
    summary: dict[str, Any], run_dir: Path, evaluation: TrialEval, device: str
) -> dict[str, Any]:
    """:func:`evaluate_trial`, but a failure (the bundle checked before the sweep makes one
    rare: a GPU out of memory, a bundle removed mid-sweep) does not fail the trial: its training
    is done and kept, the row's ``error`` says what went wrong and how to evaluate it later, and
    its ``core`` stays empty. Failing the trial instead would retrain nothing but lose the row's
    final losses (a retried run that has nothing left to train reports none)."""
    try:
        return evaluate_trial(summary, run_dir, evaluation, device)
    except Exception as e:  # noqa: BLE001 - the trained run must keep its row
        traceback.print_exc(file=sys.stdout)
        return {
            "error": f"evaluation failed ({type(e).__name__}: {str(e)[:300]}); the run trained: "
            f"python -m nanogpt.evals --checkpoint {run_dir} --suite {evaluation.suite}"
        }
