"""The sweep's command line and its ends: which data a sweep trains on when none is named, what
its analysis writes from a results table, and the exit status when a trial fails (real Ray)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nanogpt.data import write_tokens
from nanogpt.scaling_laws import fit_all, load_results, synthetic_results
from nanogpt.sweep import analyze
from nanogpt.sweep.cli import main as sweep_main
from nanogpt.sweep.cli import sweep_from_args
from nanogpt.sweep.runner import sweep_dataset


def _prepared(directory: Path, tokenizer: str, train_tokens: int, val_tokens: int) -> Path:
    """A prepared dataset as the prepare scripts leave it: shards, then meta.json."""
    directory.mkdir(parents=True)
    vocab = 259 if tokenizer == "bytes" else 50259
    rng = np.random.default_rng(0)
    name = directory.name
    write_tokens(directory / f"{name}_train_000000.bin", rng.integers(0, 256, train_tokens))
    write_tokens(directory / f"{name}_val_000000.bin", rng.integers(0, 256, val_tokens))
    meta = {"tokenizer": tokenizer, "vocab_size": vocab}
    (directory / "meta.json").write_text(json.dumps(meta))
    return directory


# --- the default data -----------------------------------------------------------------------


def test_no_grid_means_the_embedded_sweep_on_shakespeare_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOGPT_DATA_DIR", str(tmp_path))
    sweep, _ = sweep_from_args([])
    assert sweep.name == "embedded" and sweep.train.data == "shakespeare_bytes"
    dataset = sweep_dataset(sweep)
    assert Path(dataset.path) == (tmp_path / "shakespeare_bytes").resolve()
    assert (dataset.tokenizer, dataset.vocab_size) == ("bytes", 259)


def test_a_grid_without_data_trains_on_fineweb_edu(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOGPT_DATA_DIR", str(tmp_path))
    sweep, _ = sweep_from_args(["--depths", "6..8", "--flops", "1e18"])
    dataset = sweep_dataset(sweep)
    assert Path(dataset.path) == (tmp_path / "fineweb_edu").resolve()
    # Not prepared yet: priced as GPT-2 BPE, with the command that prepares it
    assert dataset.train_tokens is None and dataset.tokenizer == "gpt2"
    assert dataset.prepare_command == "python -m nanogpt.data.prepare fineweb_edu"
    # Once prepared, the same sweep finds it and counts its tokens
    _prepared(tmp_path / "fineweb_edu", "gpt2", 5000, 1000)
    dataset = sweep_dataset(sweep)
    assert dataset.train_tokens == 5000 and dataset.vocab_size == 50259


def test_data_given_wins_over_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOGPT_DATA_DIR", str(tmp_path))
    mine = _prepared(tmp_path / "elsewhere" / "mine", "bytes", 3000, 500)
    sweep, _ = sweep_from_args(["--depths", "1", "--flops", "1e9", "--data", str(mine)])
    dataset = sweep_dataset(sweep)
    assert Path(dataset.path) == mine.resolve() and dataset.tokenizer == "bytes"
    assert dataset.train_tokens == 3000


# --- the analysis at the end ------------------------------------------------------------------


@pytest.mark.slow  # 15 s on a shared 2-core CPU (2026-12-03)
def test_analyze_fits_the_results_table_once_and_draws_from_that_fit(tmp_path, capsys):
    """analyze() on a sweep directory: fits.json with the numbers fit_all gives for the same
    table and options, figures drawn, the report printed; nothing about the table is lost."""
    table = synthetic_results(seed=3)
    table.to_parquet(tmp_path / "results.parquet")
    out = analyze(tmp_path, n_bootstrap=20)
    fits = json.loads(Path(out["fits"]).read_text())
    data, message = load_results(tmp_path)
    expected = fit_all(data, n_bootstrap=20, seed=0, source=str(tmp_path), message=message)
    ours = fits["approach2"]["params_law"]["exponent"]["value"]
    theirs = expected["approach2"]["params_law"]["exponent"]["value"]
    assert ours == pytest.approx(theirs, rel=1e-9)
    # The synthetic law's a = beta / (alpha + beta) is near 0.5; the fit lands near it.
    assert 0.4 < ours < 0.6
    assert fits["table"]["rows"] == int((table["status"] == "ok").sum())  # diverged left out
    plots = [Path(p) for p in out["plots"]]
    assert {p.stem for p in plots} >= {"isoflop", "optimal_scaling"}
    assert all(p.is_file() and p.stat().st_size > 0 for p in plots)
    assert "Approach 2" in capsys.readouterr().out


def test_analyze_of_a_table_with_no_healthy_run_says_why_and_does_not_raise(tmp_path):
    table = synthetic_results(seed=0).assign(status="failed")
    table.to_parquet(tmp_path / "results.parquet")
    out = analyze(tmp_path, n_bootstrap=0)
    assert "analysis_error" in out and not (tmp_path / "fits.json").exists()


# --- a failed trial, for real -------------------------------------------------------------------


@pytest.mark.ray
@pytest.mark.slow  # a local Ray cluster and two attempts at the trial
def test_a_failed_trial_makes_the_sweep_command_exit_1(tmp_path, monkeypatch):
    """A dataset whose validation split is shorter than one evaluation batch passes the plan
    (which prices the training split) and then fails inside the trial. The sweep still ends,
    writes the failed row, and its command line exits 1."""
    data = _prepared(tmp_path / "data" / "tiny_bytes", "bytes", 20_000, 10)
    storage = tmp_path / "out"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    argv = ["--depths", "1", "--flops", "2e7", "--data", str(data), "--storage", str(storage),
            "--name", "fails", "--no-analyze", "--aspect-ratio", "8", "--head-dim", "8",
            "--seq-len", "32", "--total-batch-size", "128", "--device-batch-size", "4",
            "--eval-every", "2", "--eval-tokens", "256", "--cpus-per-trial", "1"]  # fmt: skip
    assert sweep_main(argv) == 1
    table = pd.read_csv(storage / "fails" / "results.csv")
    assert list(table["status"]) == ["failed"]
    assert not math.isnan(table["steps"].iloc[0]) and table["steps"].iloc[0] == 0


# --- --eval ---------------------------------------------------------------------------------------


def test_eval_flags_make_the_sweeps_evaluation_and_default_to_none(tmp_path, monkeypatch):
    from nanogpt.sweep.trial_eval import TrialEval

    monkeypatch.setenv("NANOGPT_DATA_DIR", str(tmp_path))
    grid = ["--depths", "1", "--flops", "1e8"]
    sweep, _ = sweep_from_args(grid)
    assert sweep.evaluation == TrialEval() and not sweep.evaluation.enabled
    bundle = str(tmp_path / "bundle")
    sweep, _ = sweep_from_args([*grid, "--eval", "core", "--eval-bundle", bundle,
                                "--eval-max-per-task", "3", "--eval-baselines", "v1"])  # fmt: skip
    assert sweep.evaluation == TrialEval("core", bundle, max_per_task=3, baselines="v1")
    for bad in (["--eval", "mmlu"], ["--eval", "core", "--eval-max-per-task", "-1"]):
        with pytest.raises(SystemExit):
            sweep_from_args([*grid, *bad])


def test_eval_with_a_missing_bundle_exits_2_with_the_fix_before_ray(tmp_path, capsys):
    import ray

    data = _prepared(tmp_path / "tiny_bytes", "bytes", 200_000, 20_000)
    argv = ["--depths", "1", "--flops", "1e8", "--data", str(data), "--seq-len", "32",
            "--total-batch-size", "128", "--device-batch-size", "4", "--storage",
            str(tmp_path / "out"), "--eval", "core", "--eval-bundle", str(tmp_path / "none")]  # fmt: skip
    assert sweep_main(argv) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "python -m nanogpt.evals --download" in err
    assert "--eval-bundle DIR" in err
    assert not ray.is_initialized() and not (tmp_path / "out").exists()
