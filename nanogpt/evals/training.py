"""Evaluation inside the training loop: CORE, the Gauntlet or ChatCORE on rank 0 every N steps.

The trainer builds one :class:`TrainingEvals` at start-up (it reads the bundle and the task
files once) and calls it on rank 0 at its evaluation steps; the returned flat dict goes into
``metrics.jsonl`` and wandb with the other metrics (names as DESIGN's metrics list fixes them:
``core``, ``gauntlet`` and ``eval/<task>``)::

    evals = TrainingEvals(bundle_dir, suite="core", max_per_task=200) if cfg.core_evals else None
    ...
    if evals is not None and step % cfg.core_every == 0:
        if dist_info.is_main:
            metrics.update(evals(model, tokenizer, device))   # rank 0 alone: no collectives
        dist.barrier()                                       # the other ranks wait

``TrainingEvals(data_dir, suite="chatcore", max_per_task=100)`` does the same for a
mid-training run through ``nanogpt.evals.chatcore.run_chatcore`` (its ``limit`` is the
per-task subsample), with the chat suites' JSONL folder in place of the bundle.

The other ranks must not enter it: it never communicates (``distributed=False``), so it cannot
hang when only rank 0 calls it. The model is put in eval mode and given back in the mode it
came in. Pass the uncompiled model (``torch.compile`` would recompile for every new shape).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from nanogpt.evals import BASE_SUITES, aggregate, chat_suite, icl
from nanogpt.evals.bundle import Bundle, TaskSpec, gauntlet_tasks, open_bundle

TRAINING_SUITES = (*BASE_SUITES, "chatcore")


class TrainingEvals:
    """The tasks of one suite with a fixed per-task subsample, loaded once."""

    def __init__(
        self,
        bundle_dir: str | Path,
        suite: str = "core",
        max_per_task: int | None = 200,
        baselines: str = "dclm-v2",
        batch_tokens: int | None = None,
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
            self.data_dir = Path(bundle_dir)
            self._run_chatcore = chat_suite("chatcore")  # fail at start-up, not at step N
            return
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
                    batch_tokens=self.batch_tokens, distributed=False,
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
