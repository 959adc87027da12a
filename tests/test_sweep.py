"""The sweep: grid parsing and dry runs (fast), and real local-Ray runs (few and small)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from nanogpt.config import TrainConfig
from nanogpt.sweep import (
    RESULT_COLUMNS,
    SweepConfig,
    dry_run,
    grid,
    parse_depths,
    parse_flops,
    run_sweep,
    trial_key,
)

REPO = Path(__file__).resolve().parents[1]


def test_depth_ranges_and_lists():
    assert parse_depths("6..14") == list(range(6, 15))
    assert parse_depths("6..14:2") == [6, 8, 10, 12, 14]
    assert parse_depths("12,6,8") == [6, 8, 12]
    for bad in ("6..x", "0..3", "", "a,b"):
        with pytest.raises(ValueError, match="--depths"):
            parse_depths(bad)


def test_flop_ranges_are_log_spaced_with_both_ends():
    assert parse_flops("1e18..6e18", 3) == pytest.approx([1e18, 2.449e18, 6e18], rel=1e-3)
    assert parse_flops("1e18..1e20", 5) == pytest.approx([1e18, 3.162e18, 1e19, 3.162e19, 1e20])
    assert parse_flops("3e18,1e18") == [1e18, 3e18]
    with pytest.raises(ValueError, match="--flops"):
        parse_flops("1e18..-1")


def test_grid_and_dry_run_show_the_shapes_and_the_cost():
    sweep = SweepConfig(depths=[6, 12], flops=[1e18], train=TrainConfig())
    rows = grid(sweep)
    assert [r["trial_key"] for r in rows] == [trial_key(6, 1e18, 0), trial_key(12, 1e18, 0)]
    d12 = rows[1]
    assert (d12["n_layer"], d12["n_embd"], d12["steps"]) == (12, 768, 2231)
    text = dry_run(sweep)
    assert "| d12_c1e18_s0 | 12 | 768 | 124 M | 1e+18 | 2,231 | 1.17 G | 9.47 |" in text
    assert "H200-hours" in text


def test_trials_started_ahead_default_to_two_per_gpu_and_none_on_cpus():
    from nanogpt.sweep.runner import _capacity, _prefetch

    sweep = SweepConfig(depths=[2], flops=[1e15], trials_per_gpu=3)
    assert _capacity(sweep, {"GPU": 2, "CPU": 32}, True) == 6
    assert _prefetch(sweep, {"GPU": 2, "CPU": 32}, True) == 4
    assert _prefetch(sweep, {"CPU": 2}, False) == 0
    sweep.prefetch_trials = 4
    assert _prefetch(sweep, {"CPU": 2}, False) == 4
    sweep.prefetch_trials = -1
    with pytest.raises(ValueError, match="--prefetch-trials"):
        _prefetch(sweep, {"CPU": 2}, False)


def test_each_gpu_fits_its_training_trials_and_its_part_of_those_started_ahead():
    from nanogpt.sweep.runner import _gpu_shares

    one = SweepConfig(depths=[2], flops=[1e15])
    assert _gpu_shares(one, {"GPU": 1}, 0) == 1
    assert _gpu_shares(one, {"GPU": 1}, 2) == 3
    packed = SweepConfig(depths=[2], flops=[1e15], trials_per_gpu=3)
    assert _gpu_shares(packed, {"GPU": 2}, 2) == 4  # one ahead per GPU
    assert _gpu_shares(packed, {"GPU": 2}, 3) == 5  # an odd one out: rounded up
    wide = SweepConfig(depths=[2], flops=[1e15], gpus_per_trial=2)
    assert _gpu_shares(wide, {"GPU": 4}, 2) == 2  # two 2-GPU trials ahead: one share per GPU


def test_the_progress_table_shows_a_trial_waiting_with_its_workers_up(tmp_path):
    import json

    from nanogpt.sweep.runner import _make_callback

    sweep = SweepConfig(depths=[6], flops=[1e18], storage=str(tmp_path), train=TrainConfig())
    key = trial_key(6, 1e18, 0)
    run_dir = sweep.sweep_dir / "runs" / key
    run_dir.mkdir(parents=True)
    callback = _make_callback(sweep, {})
    callback.state[key] = "starting"
    (run_dir / ".standby").write_text("waiting\n")
    callback._poll_run_dirs()
    assert callback.state[key] == "standby"
    (run_dir / ".standby").unlink()
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 3, "train_loss": 9.0}) + "\n")
    callback._poll_run_dirs()
    assert callback.state[key] == "running" and callback.latest[key]["step"] == 3


def test_progress_moves_with_each_logged_step_between_evaluations(tmp_path):
    """The driver reads the newest logged step of a running trial from its metrics.jsonl."""
    import json

    from nanogpt.sweep.results import progress_table, tail_metrics

    sweep = SweepConfig(depths=[6], flops=[1e18], storage=str(tmp_path), train=TrainConfig())
    key = trial_key(6, 1e18, 0)
    run_dir = sweep.sweep_dir / "runs" / key
    assert tail_metrics(run_dir) is None  # not started yet
    run_dir.mkdir(parents=True)
    lines = [{"step": s, "train_loss": 5.0 - s / 100, "tokens_per_s": 1e6} for s in (10, 20)]
    text = "\n".join(json.dumps(x) for x in lines) + "\n" + '{"step": 30, "train_lo'  # mid-write
    (run_dir / "metrics.jsonl").write_text(text)
    record = tail_metrics(run_dir)
    assert record["step"] == 20 and record["train_loss"] == pytest.approx(4.8)
    assert tail_metrics(run_dir, max_bytes=90)["step"] == 20  # a window that starts mid-line
    table = progress_table(sweep, {key: record}, {key: "running"}, {})
    row = next(line for line in table.splitlines() if line.startswith(key))
    planned = grid(sweep)[0]["steps"]
    assert f"20/{planned}" in row and "4.800" in row and "1,000,000" in row
    assert row.endswith("running")
    eta = (planned - 20) * sweep.train.total_batch_size / 1e6
    assert f"{eta:.0f}s" in row
    starting = progress_table(sweep, {}, {key: "starting"}, {})
    assert next(x for x in starting.splitlines() if x.startswith(key)).endswith("starting")


def test_the_command_line_dry_run_with_no_arguments_is_the_embedded_grid():
    out = subprocess.run(
        [sys.executable, "sweeps/isoflop.py", "--dry-run"], cwd=REPO, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "embedded default" in out.stdout and "sweep 'embedded'" in out.stdout


def tiny_train(tmp_path: Path, corpus: Path) -> TrainConfig:
    return TrainConfig(
        seq_len=32,
        total_batch_size=128,
        device_batch_size=4,
        warmup_steps=2,
        lr_adamw=3e-3,
        eval_every=1000,
        eval_tokens=256,
        save_every=4,
        log_every=4,
        data=str(corpus),
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from nanogpt.data import ensure_shakespeare

    return ensure_shakespeare(tmp_path_factory.mktemp("data") / "shakespeare")


@pytest.mark.ray
@pytest.mark.slow
def test_a_grid_with_a_diverging_and_a_crashing_trial(tmp_path, corpus):
    """2 x 2 grid: one trial gets a NaN (ends early as diverged, not retried); one trial's
    worker is killed mid-run (Ray Train restarts it and it resumes from its checkpoint). One
    trial more than fits is started ahead (the standby path: the slot board, a trial waiting
    for resources past Train's default start timeout's reach, slots released on every end)."""
    budgets = [4e10, 8e10]
    diverging, crashing = trial_key(1, 8e10, 0), trial_key(2, 8e10, 0)
    sweep = SweepConfig(
        depths=[1, 2],
        flops=budgets,
        name="grid",
        storage=str(tmp_path / "store"),
        train=tiny_train(tmp_path, corpus),
        analyze=False,
        prefetch_trials=1,
        trial_overrides={
            diverging: {"debug_nan_at_step": 5},
            crashing: {"debug_crash_at_step": 8},
        },
    )
    out = run_sweep(sweep)
    table = pd.read_parquet(sweep.sweep_dir / "results.parquet")
    assert set(RESULT_COLUMNS) <= set(table.columns)
    assert len(table) == 4
    rows = {r["trial_key"]: r for r in table.to_dict("records")}
    assert rows[diverging]["status"] == "diverged"
    assert rows[diverging]["steps"] < rows[diverging]["steps_planned"]
    for key, row in rows.items():
        if key != diverging:
            assert row["status"] == "ok", row
            assert row["steps"] == row["steps_planned"] > 0
            assert row["final_val_loss"] > 0 and row["tokens"] > 0
    run_dir = sweep.sweep_dir / "runs" / crashing
    assert (run_dir / ".crashed_at_8").exists(), "the worker was never killed"
    assert "resume: continuing from" in (run_dir / "train.log").read_text()
    # the diverged trial ran once: one start line in its log
    diverged_log = (sweep.sweep_dir / "runs" / diverging / "train.log").read_text()
    assert diverged_log.count("nanogpt train:") == 1
    assert out["rows"] and Path(out["results"]).is_file()
    assert out["prefetch"] == 1 and all(r["slot_wait_s"] >= 0 for r in rows.values())
    assert all(0 <= r["trial_imports_s"] < r["trial_wall_s"] for r in rows.values())


@pytest.mark.ray
@pytest.mark.slow
def test_a_killed_driver_resumes_without_repeating_finished_trials(tmp_path, corpus):
    storage = tmp_path / "store"
    cmd = [
        sys.executable, "sweeps/isoflop.py", "--depths", "1,2", "--flops", "6e10",
        "--name", "resumable", "--storage", str(storage), "--max-concurrent", "1",
        "--no-analyze", "--data", str(corpus), "--seq-len", "32", "--total-batch-size", "128",
        "--device-batch-size", "4", "--warmup-steps", "2", "--eval-every", "1000",
        "--eval-tokens", "256", "--save-every", "4", "--log-every", "4",
    ]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "disabled"}
    results = storage / "resumable" / "results.csv"
    driver = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not (results.exists() and len(pd.read_csv(results)) >= 1):
            assert driver.poll() is None, "the sweep ended before it could be interrupted"
            time.sleep(0.5)
        assert results.exists(), "no trial finished in time"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started
        driver.wait()
    first = pd.read_csv(results)
    assert len(first) == 1
    done_key = first["trial_key"][0]
    done_metrics = (storage / "resumable" / "runs" / done_key / "metrics.jsonl").read_text()

    finish = subprocess.run(
        [*cmd, "--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert finish.returncode == 0, finish.stdout[-3000:] + finish.stderr[-3000:]
    table = pd.read_csv(results)
    assert sorted(table["trial_key"]) == sorted([trial_key(1, 6e10, 0), trial_key(2, 6e10, 0)])
    assert (table["status"] == "ok").all()
    assert (table["steps"] == table["steps_planned"]).all()
    # the finished trial was not run again: its metrics are exactly as they were
    again = (storage / "resumable" / "runs" / done_key / "metrics.jsonl").read_text()
    assert again == done_metrics
