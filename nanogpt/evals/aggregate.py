"""CORE (DCLM) and the Mosaic Eval Gauntlet v0.3 from per-task accuracies.

Every task's accuracy is centred on its random baseline b: (acc - b) / (1 - b), so chance is 0
and a perfect score 1 (below chance is negative). A task the aggregate needs but the results
lack is an error, never a silently smaller average (llm-foundry's gauntlet callback drops the
category with a warning; DCLM writes "N/A").

Sources (resources/eval_bundle/EVAL_GAUNTLET.md lists every task):
- CORE: DCLM's ``eval/additional_aggregation.json`` (``low_variance_datasets``, 22 tasks) and
  ``eval/eval_meta_data.csv`` (baselines, percent); DCLM's commit 6204236 (2025-09-05) fixed
  three baselines that the bundle nanochat downloads still carries in their old form.
- Gauntlet: llm-foundry's ``scripts/eval/yamls/eval_gauntlet_v0.3.yaml``: 31 benchmarks in 5
  categories, equal weights, the score the mean of the category means (``core_average``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class MissingTaskError(KeyError):
    """An aggregate lacks one of its tasks."""

    def __str__(self) -> str:
        return str(self.args[0])


# label -> (task type, shots), in DCLM's order.
CORE_TASKS: dict[str, tuple[str, int]] = {
    "hellaswag_zeroshot": ("multiple_choice", 0),
    "jeopardy": ("language_modeling", 10),
    "bigbench_qa_wikidata": ("language_modeling", 10),
    "arc_easy": ("multiple_choice", 10),
    "arc_challenge": ("multiple_choice", 10),
    "copa": ("multiple_choice", 0),
    "commonsense_qa": ("multiple_choice", 10),
    "piqa": ("multiple_choice", 10),
    "openbook_qa": ("multiple_choice", 0),
    "lambada_openai": ("language_modeling", 0),
    "hellaswag": ("multiple_choice", 10),
    "winograd": ("schema", 0),
    "winogrande": ("schema", 0),
    "bigbench_dyck_languages": ("language_modeling", 10),
    "agi_eval_lsat_ar": ("multiple_choice", 3),
    "bigbench_cs_algorithms": ("language_modeling", 10),
    "bigbench_operators": ("language_modeling", 10),
    "bigbench_repeat_copy_logic": ("language_modeling", 10),
    "squad": ("language_modeling", 10),
    "coqa": ("language_modeling", 0),
    "boolq": ("multiple_choice", 10),
    "bigbench_language_identification": ("multiple_choice", 10),
}

# Random baselines in percent, DCLM eval/eval_meta_data.csv after the fix ("v2").
CORE_BASELINES_DCLM_V2: dict[str, float] = {
    "hellaswag_zeroshot": 25, "jeopardy": 0, "bigbench_qa_wikidata": 0, "arc_easy": 25,
    "arc_challenge": 25, "copa": 50, "commonsense_qa": 40.3, "piqa": 50, "openbook_qa": 25,
    "lambada_openai": 0, "hellaswag": 25, "winograd": 50, "winogrande": 50,
    "bigbench_dyck_languages": 0, "agi_eval_lsat_ar": 25, "bigbench_cs_algorithms": 0,
    "bigbench_operators": 0, "bigbench_repeat_copy_logic": 0, "squad": 0, "coqa": 0,
    "boolq": 62, "bigbench_language_identification": 25,
}  # fmt: skip
# Before the fix (DCLM eval/eval_meta_data_v1.csv, and the CSV in nanochat's bundle): the
# published nanochat and DCLM-v1 CORE numbers used these.
CORE_BASELINES_V1: dict[str, float] = {
    **CORE_BASELINES_DCLM_V2,
    "commonsense_qa": 20,
    "bigbench_language_identification": 9.1,
    "agi_eval_lsat_ar": 20,
}
BASELINE_SETS = {"dclm-v2": CORE_BASELINES_DCLM_V2, "v1": CORE_BASELINES_V1}
BASELINE_NOTES = {
    "dclm-v2": "baselines: DCLM's fixed eval_meta_data.csv (v2: commonsense_qa 40.3, "
    "bigbench_language_identification 25, agi_eval_lsat_ar 25)",
    "v1": "baselines: the pre-fix v1 values nanochat's bundle carries (commonsense_qa 20, "
    "bigbench_language_identification 9.1, agi_eval_lsat_ar 20); comparable with published "
    "nanochat CORE numbers",
    "bundle": "baselines: as the bundle's eval_meta_data.csv gives them",
}

# Eval Gauntlet v0.3: category -> [(benchmark, shots, random baseline as a fraction)].
GAUNTLET_V03: dict[str, list[tuple[str, int, float]]] = {
    "world_knowledge": [
        ("jeopardy", 3, 0.0), ("bigbench_qa_wikidata", 3, 0.0), ("arc_easy", 3, 0.25),
        ("arc_challenge", 3, 0.25), ("mmlu", 5, 0.25), ("triviaqa_sm_sub", 3, 0.0),
    ],
    "commonsense_reasoning": [
        ("copa", 0, 0.5), ("siqa", 3, 0.5), ("commonsense_qa", 0, 0.25), ("piqa", 0, 0.5),
        ("openbook_qa", 10, 0.25), ("bigbench_strange_stories", 0, 0.5),
        ("bigbench_strategy_qa", 0, 0.5),
    ],
    "language_understanding": [
        ("lambada_openai", 0, 0.0), ("hellaswag", 0, 0.25), ("winograd", 3, 0.5),
        ("winogrande", 5, 0.5),
    ],
    "symbolic_problem_solving": [
        ("bigbench_elementary_math_qa", 1, 0.25), ("bigbench_dyck_languages", 5, 0.0),
        ("bigbench_operators", 3, 0.0), ("simple_arithmetic_withspaces", 5, 0.0),
        ("simple_arithmetic_nospaces", 5, 0.0), ("gsm8k", 0, 0.0), ("svamp", 5, 0.0),
        ("agi_eval_lsat_ar", 5, 0.25),
    ],
    "reading_comprehension": [
        ("squad", 3, 0.0), ("boolq", 0, 0.5), ("coqa", 0, 0.0), ("agi_eval_lsat_rc", 5, 0.25),
        ("agi_eval_lsat_lr", 5, 0.25), ("agi_eval_sat_en", 5, 0.25),
    ],
}  # fmt: skip
GAUNTLET_BASELINES = {name: b for rows in GAUNTLET_V03.values() for name, _, b in rows}


def centered(accuracy: float, baseline: float) -> float:
    """(acc - b) / (1 - b), with b a fraction."""
    if not 0.0 <= baseline < 1.0:
        raise ValueError(f"a random baseline must be in [0, 1), got {baseline}")
    return (accuracy - baseline) / (1.0 - baseline)


def _require(needed: list[str], accuracies: Mapping[str, Any], what: str) -> None:
    missing = [t for t in needed if t not in accuracies]
    if missing:
        raise MissingTaskError(
            f"{what} needs {len(needed)} tasks and {len(missing)} are missing: "
            f"{', '.join(missing)}; evaluate them (a smaller average is not {what})"
        )


def core_baselines(which: str, bundle_baselines: Mapping[str, float] | None = None) -> dict:
    """CORE's baselines as fractions: ``dclm-v2`` (default), ``v1``, or ``bundle`` (its CSV)."""
    if which == "bundle":
        if not bundle_baselines:
            raise ValueError("--baselines bundle: the bundle has no eval_meta_data.csv")
        _require(list(CORE_TASKS), bundle_baselines, "the bundle's eval_meta_data.csv for CORE")
        return {t: float(bundle_baselines[t]) for t in CORE_TASKS}
    if which not in BASELINE_SETS:
        raise ValueError(f"baselines {which!r}: use dclm-v2, v1 or bundle")
    return {t: v / 100.0 for t, v in BASELINE_SETS[which].items()}


def core_score(
    accuracies: Mapping[str, float], baselines: str = "dclm-v2",
    bundle_baselines: Mapping[str, float] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """CORE: the mean of the 22 centred accuracies, and each of them."""
    _require(list(CORE_TASKS), accuracies, "CORE")
    base = core_baselines(baselines, bundle_baselines)
    per_task = {t: centered(float(accuracies[t]), base[t]) for t in CORE_TASKS}
    return {
        "score": sum(per_task.values()) / len(per_task),
        "centered": per_task,
        "baselines": baselines,
        "note": BASELINE_NOTES[baselines],
    }


def gauntlet_score(accuracies: Mapping[str, float]) -> dict[str, Any]:
    """Gauntlet v0.3: centred per task, equal-weight mean per category, mean of categories.

    mmlu and jeopardy arrive already averaged over their subcategories (the evaluator does it
    for tasks with ``has_categories``), as llm-foundry averages per-subcategory metrics first.
    """
    _require(list(GAUNTLET_BASELINES), accuracies, "the Eval Gauntlet v0.3")
    per_task = {t: centered(float(accuracies[t]), b) for t, b in GAUNTLET_BASELINES.items()}
    categories = {
        cat: sum(per_task[name] for name, _, _ in rows) / len(rows)
        for cat, rows in GAUNTLET_V03.items()
    }
    return {
        "score": sum(categories.values()) / len(categories),
        "categories": categories,
        "centered": per_task,
    }
