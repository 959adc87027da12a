"""nanogpt.results_row: the one row builder, used by the sweep's plan and the synthetic tables."""

from __future__ import annotations

import json
import math

import pytest

from nanogpt import scaling
from nanogpt.config import TrainConfig
from nanogpt.results_row import EXTRA_COLUMNS, RESULT_COLUMNS, planned_row, trial_row
from nanogpt.scaling_laws import synthetic_results
from nanogpt.sweep.grid import trial_spec
from nanogpt.tokenizer import BYTE_N_VOCAB, N_VOCAB


@pytest.mark.parametrize("depth,budget", [(2, 1e12), (6, 1e18), (12, 3e18)])
def test_the_plan_spends_the_budget_in_whole_steps_never_over(depth, budget):
    shape = scaling.shape_for_depth(depth, seq_len=1024, vocab_size=N_VOCAB)
    plan = planned_row(depth, budget, 0, shape, tokens_per_step=524_288, train_tokens=10**10)
    per_step = plan["flops_per_token"] * 524_288
    assert plan["steps_planned"] * per_step <= budget < (plan["steps_planned"] + 1) * per_step
    assert plan["tokens_planned"] == plan["steps_planned"] * 524_288
    assert plan["epochs_planned"] == plan["tokens_planned"] / 10**10
    assert plan["tokens_per_param"] == plan["tokens_planned"] / plan["params_scaling"]
    assert {k: plan[k] for k in scaling.shape_columns(shape)} == scaling.shape_columns(shape)


def test_the_grid_plans_with_the_same_function():
    train = TrainConfig(seq_len=128, total_batch_size=4096, aspect_ratio=16, head_dim=16)
    spec = trial_spec(3, 1e12, 1, train, BYTE_N_VOCAB, 10**6)
    shape = scaling.shape_for_depth(3, 128, BYTE_N_VOCAB, 16, 16)
    assert spec == {"trial_key": "d03_c1e12_s1", **planned_row(3, 1e12, 1, shape, 4096, 10**6)}


def test_a_row_keeps_the_table_columns_the_outcome_wins_and_is_strict_json():
    spec = planned_row(2, 1e12, 0, scaling.shape_for_depth(2), 4096)
    outcome = {
        "status": "diverged",
        "steps": 3,
        "final_val_loss": math.nan,
        "final_train_loss": math.inf,
        "n_layer": 2,
        "world_size": 1,  # in train()'s summary, not a table column
        "trial_id": "t1",
    }
    row = trial_row(spec, outcome)
    assert set(row) <= set(RESULT_COLUMNS + EXTRA_COLUMNS)
    assert "world_size" not in row and "tokens_per_param" not in row
    assert row["steps"] == 3 and row["steps_planned"] == spec["steps_planned"]
    assert row["final_val_loss"] is None and row["final_train_loss"] is None
    assert row["params_scaling"] == spec["params_scaling"] and row["trial_id"] == "t1"
    json.dumps(row, allow_nan=False)  # a row file is strict JSON


def test_a_failed_trial_has_zero_steps_and_a_running_one_none():
    spec = planned_row(2, 1e12, 0, scaling.shape_for_depth(2), 4096)
    assert trial_row(spec, {"status": "failed", "error": "boom"})["steps"] == 0
    assert trial_row(spec, {"status": "ok"})["steps"] is None


def test_a_synthetic_table_is_built_by_the_same_function_and_counts_the_head():
    table = synthetic_results(n_diverged=0)
    assert set(table.columns) <= set(RESULT_COLUMNS + EXTRA_COLUMNS)
    for row in table.to_dict("records"):
        shape = scaling.shape_for_depth(row["depth"], 1024, N_VOCAB)
        expected = {k: v for k, v in scaling.shape_columns(shape).items() if k in RESULT_COLUMNS}
        assert {k: row[k] for k in expected} == expected
        head = scaling.param_groups(shape)["lm_head"]
        assert row["params_scaling"] == row["params_nonembedding"] + head


def test_a_row_has_core_when_the_sweep_evaluated_and_the_table_a_core_column_either_way(tmp_path):
    """--eval core: the row keeps the score, its baselines and subsample; without it the row
    has no score, and the merged table still has the (empty) core column."""
    import pandas as pd

    from nanogpt.sweep.results import write_table

    spec = {
        "trial_key": "d02_c1e12_s0",
        **planned_row(2, 1e12, 0, scaling.shape_for_depth(2), 4096),
    }
    scored = trial_row(spec, {"status": "ok", "core": 0.125, "eval_baselines": "dclm-v2",
                              "eval_max_per_task": 200, "eval_s": 3.5, "tasks": {"copa": {}}})  # fmt: skip
    plain = trial_row({**spec, "trial_key": "d03_c1e12_s0", "depth": 3}, {"status": "ok"})
    assert (scored["core"], scored["eval_baselines"], scored["eval_max_per_task"]) == (
        0.125, "dclm-v2", 200,
    )  # fmt: skip
    assert "tasks" not in scored  # the per-task result lives in the run's eval.json
    assert not {"core", "gauntlet", "eval_baselines"} & set(plain)
    assert "core" in RESULT_COLUMNS and {"gauntlet", "eval_baselines"} <= set(EXTRA_COLUMNS)
    write_table([plain], tmp_path / "a")
    assert pd.read_parquet(tmp_path / "a" / "results.parquet")["core"].isna().all()
    write_table([scored, plain], tmp_path / "b")
    table = pd.read_csv(tmp_path / "b" / "results.csv").set_index("trial_key")
    assert table.loc["d02_c1e12_s0", "core"] == 0.125 and math.isnan(
        table.loc["d03_c1e12_s0", "core"]
    )
    assert table.loc["d02_c1e12_s0", "eval_baselines"] == "dclm-v2"
