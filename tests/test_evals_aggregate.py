"""CORE and Gauntlet v0.3 aggregation: the task lists as DCLM and llm-foundry define them, the
centring formula, the baseline sets, and loud errors for missing tasks."""

from __future__ import annotations

import pytest

from nanogpt.evals import aggregate
from nanogpt.evals.bundle import GAUNTLET_V03_TASKS


def test_core_is_dclms_22_low_variance_tasks_without_mmlu():
    assert len(aggregate.CORE_TASKS) == 22
    assert not any(name.startswith("mmlu") for name in aggregate.CORE_TASKS)
    kinds = [kind for kind, _ in aggregate.CORE_TASKS.values()]
    assert (kinds.count("multiple_choice"), kinds.count("schema")) == (11, 2)
    assert kinds.count("language_modeling") == 9
    assert set(aggregate.CORE_BASELINES_DCLM_V2) == set(aggregate.CORE_TASKS)


def test_the_baseline_sets_differ_only_where_dclm_fixed_them():
    v1, v2 = aggregate.CORE_BASELINES_V1, aggregate.CORE_BASELINES_DCLM_V2
    changed = {t: (v1[t], v2[t]) for t in v2 if v1[t] != v2[t]}
    assert changed == {
        "agi_eval_lsat_ar": (20, 25),
        "bigbench_language_identification": (9.1, 25),
        "commonsense_qa": (20, 40.3),
    }


def test_centring_formula():
    assert aggregate.centered(0.25, 0.25) == 0.0
    assert aggregate.centered(1.0, 0.62) == pytest.approx(1.0)
    assert aggregate.centered(0.0, 0.5) == -1.0
    assert aggregate.centered(0.7, 0.4) == pytest.approx((0.7 - 0.4) / 0.6)
    with pytest.raises(ValueError):
        aggregate.centered(0.5, 1.0)


def test_core_score_is_the_mean_of_centred_accuracies():
    acc = {t: 0.5 for t in aggregate.CORE_TASKS}
    out = aggregate.core_score(acc)
    expected = [(0.5 - b / 100) / (1 - b / 100) for b in aggregate.CORE_BASELINES_DCLM_V2.values()]
    assert out["score"] == pytest.approx(sum(expected) / 22)
    assert out["baselines"] == "dclm-v2" and "fixed" in out["note"]
    assert aggregate.core_score({t: 1.0 for t in acc})["score"] == pytest.approx(1.0)
    at_chance = {t: b / 100 for t, b in aggregate.CORE_BASELINES_DCLM_V2.items()}
    assert aggregate.core_score(at_chance)["score"] == pytest.approx(0.0)
    # The old baselines give a higher score for the same accuracies on the three fixed tasks.
    old = aggregate.core_score(acc, "v1")
    assert old["score"] > out["score"] and "v1" in old["note"]
    diff = sum(
        (0.5 - aggregate.CORE_BASELINES_V1[t] / 100) / (1 - aggregate.CORE_BASELINES_V1[t] / 100)
        - (0.5 - aggregate.CORE_BASELINES_DCLM_V2[t] / 100)
        / (1 - aggregate.CORE_BASELINES_DCLM_V2[t] / 100)
        for t in ("commonsense_qa", "bigbench_language_identification", "agi_eval_lsat_ar")
    )
    assert old["score"] - out["score"] == pytest.approx(diff / 22)


def test_core_with_the_bundles_own_baselines():
    acc = {t: 0.5 for t in aggregate.CORE_TASKS}
    csv = {t: b / 100 for t, b in aggregate.CORE_BASELINES_V1.items()}
    assert aggregate.core_score(acc, "bundle", csv)["score"] == pytest.approx(
        aggregate.core_score(acc, "v1")["score"]
    )
    del csv["copa"]
    with pytest.raises(aggregate.MissingTaskError, match="copa"):
        aggregate.core_score(acc, "bundle", csv)
    with pytest.raises(ValueError, match="use dclm-v2"):
        aggregate.core_score(acc, "v3")


def test_a_missing_core_task_is_an_error_naming_it():
    acc = {t: 0.5 for t in aggregate.CORE_TASKS if t != "squad"}
    with pytest.raises(aggregate.MissingTaskError, match="1 are missing: squad"):
        aggregate.core_score(acc)


def test_gauntlet_v03_is_31_benchmarks_in_5_categories():
    sizes = {cat: len(rows) for cat, rows in aggregate.GAUNTLET_V03.items()}
    assert sizes == {
        "world_knowledge": 6,
        "commonsense_reasoning": 7,
        "language_understanding": 4,
        "symbolic_problem_solving": 8,
        "reading_comprehension": 6,
    }
    assert len(aggregate.GAUNTLET_BASELINES) == 31
    # The built-in task list runs each benchmark with the gauntlet's shot count.
    shots = {name: s for rows in aggregate.GAUNTLET_V03.values() for name, s, _ in rows}
    assert {t.label: t.num_fewshot for t in GAUNTLET_V03_TASKS} == shots
    categorised = {t.label for t in GAUNTLET_V03_TASKS if t.has_categories}
    assert categorised == {"mmlu", "jeopardy"}


def test_gauntlet_score_averages_categories_equally():
    acc = {t: b for t, b in aggregate.GAUNTLET_BASELINES.items()}  # chance everywhere
    acc["copa"] = 1.0  # one of 7 commonsense tasks perfect
    acc["gsm8k"] = 0.5  # one of 8 symbolic tasks at 0.5 (baseline 0)
    out = aggregate.gauntlet_score(acc)
    assert out["categories"]["commonsense_reasoning"] == pytest.approx(1 / 7)
    assert out["categories"]["symbolic_problem_solving"] == pytest.approx(0.5 / 8)
    assert out["categories"]["world_knowledge"] == pytest.approx(0.0)
    assert out["score"] == pytest.approx((1 / 7 + 0.5 / 8) / 5)
    assert aggregate.gauntlet_score({t: 1.0 for t in acc})["score"] == pytest.approx(1.0)


def test_a_missing_gauntlet_task_is_an_error_not_a_smaller_category():
    acc = {t: 0.5 for t in aggregate.GAUNTLET_BASELINES}
    del acc["mmlu"], acc["svamp"]
    with pytest.raises(aggregate.MissingTaskError, match="2 are missing: mmlu, svamp"):
        aggregate.gauntlet_score(acc)
