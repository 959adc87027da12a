"""The sweep: grid parsing, plans, checks and dry runs, the driver's watch over trials (fast);
and real local-Ray runs (few and small, marked slow)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from eval_fixtures import write_core_bundle

from nanogpt import scaling
from nanogpt.config import TrainConfig
from nanogpt.sweep import (
    MEASURED_H200_MFU,
    RESULT_COLUMNS,
    Dataset,
    SweepConfig,
    SweepWatch,
    check_plan,
    dry_run,
    parse_depths,
    parse_flops,
    parse_grid,
    plan,
    run_sweep,
    trial_key,
    trial_row,
    write_row,
)
from nanogpt.sweep.trial_eval import (
    EVAL_FILE,
    TrialEval,
    evaluate_or_note,
    evaluate_trial,
    plan_trial_eval,
)

REPO = Path(__file__).resolve().parents[1]


class KillOnceAt:
    """A sweep report hook (SweepConfig.report_hook) that kills one trial's rank-0 worker the
    first time it reports step ``step`` or later: the fault the tolerance tests recover from.
    A marker file in the run directory makes it fire once, across the worker's restart."""

    def __init__(self, trial: str, step: int) -> None:
        self.trial, self.step = trial, step

    def __call__(self, metrics: dict, run_dir: Path, rank: int) -> None:
        if run_dir.name != self.trial or rank != 0 or metrics.get("step", 0) < self.step:
            return
        marker = run_dir / f".crashed_at_{self.step}"
        if not marker.exists():
            marker.write_text("killed once on purpose to test recovery\n")
            os.kill(os.getpid(), signal.SIGKILL)


def _ship_this_module_by_value() -> None:
    """Ray's workers cannot import this test module: pickle its hook class by value."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


GPT2_DATA = Dataset(
    "/data/fineweb_edu", "gpt2", 50259, 10**10, "python -m nanogpt.data.prepare fineweb_edu"
)


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


def test_a_grid_need_not_be_a_rectangle():
    assert parse_grid("3e11:3..5;1e11:1,2") == {1e11: [1, 2], 3e11: [3, 4, 5]}
    sweep = SweepConfig(depths_by_budget=parse_grid("1e11:1..2;3e11:2..3"))
    assert sweep.points == [(1, 1e11, 0), (2, 1e11, 0), (2, 3e11, 0), (3, 3e11, 0)]
    with pytest.raises(ValueError, match="--grid"):
        parse_grid("1e11=1..3")
    with pytest.raises(ValueError, match="no trials"):
        SweepConfig(depths=[], flops=[1e18])


def test_plan_and_dry_run_show_shapes_data_epochs_and_cost():
    sweep = SweepConfig(depths=[6, 12], flops=[1e18], train=TrainConfig())
    rows = plan(sweep, GPT2_DATA)
    assert [r["trial_key"] for r in rows] == [trial_key(6, 1e18, 0), trial_key(12, 1e18, 0)]
    d12 = rows[1]
    assert (d12["n_layer"], d12["n_embd"], d12["steps_planned"]) == (12, 768, 2231)
    assert d12["epochs_planned"] == pytest.approx(d12["tokens_planned"] / 10**10)
    text = dry_run(sweep, GPT2_DATA)
    assert "| d12_c1e18_s0 | 12 | 768 | 124 M | 1e+18 | 2,231 | 1.17 G | 9.47 | 0.117 |" in text
    assert "data: /data/fineweb_edu (gpt2 tokens, vocabulary 50,259); 10,000,000,000" in text
    assert "H200-hours" in text


def test_the_dry_run_prices_a_trial_at_the_measured_h200_mfu():
    """The MFU table is docs/benchmarks.md's same-call tokens/s (DEPTH 6-14) times FLOPs per
    token over the H200's peak, and the dry run's time for a trial is its FLOPs over that MFU
    times the peak."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md").read_text()
    section = doc[doc.index("### Same-call table, 2026-12-04") :].split("\n\n")
    table = next(part for part in section if part.startswith("| DEPTH |"))
    # | DEPTH | shape | nanoGPT ms | nanoGPT tokens/s | project ms | project tokens/s | ...
    measured = {
        int(cells[0]): int(cells[5].replace(",", ""))
        for cells in (
            [c.strip() for c in line.strip("|").split("|")]
            for line in table.splitlines()
            if re.match(r"\| \d+ \|", line)
        )
    }
    assert sorted(measured) == [6, 8, 10, 12, 14] and measured[12] == 504_317
    peak = scaling.PEAK_BF16_FLOPS["H200"]
    for depth, tokens_per_s in measured.items():
        flops_per_token = scaling.flops_per_token(scaling.shape_for_depth(depth))
        assert MEASURED_H200_MFU[depth] == round(tokens_per_s * flops_per_token / peak, 3)

    sweep = SweepConfig(depths=[10], flops=[1e18], train=TrainConfig())
    row = plan(sweep, GPT2_DATA)[0]
    line = next(x for x in dry_run(sweep, GPT2_DATA).splitlines() if x.startswith("| d10_"))
    hours = float(line.strip(" |").rsplit("|", 1)[1])
    flops = row["tokens_planned"] * row["flops_per_token"]
    assert hours == pytest.approx(flops / (MEASURED_H200_MFU[10] * peak) / 3600, rel=5e-3)


def test_the_dry_run_says_whether_each_budget_is_bracketed_and_suggests_depths():
    # Chinchilla's ~20 tokens per parameter puts 1e18 FLOPs near DEPTH 10 at 64 x DEPTH.
    sweep = SweepConfig(depths_by_budget={1e18: [6, 8, 12, 14], 1e20: [6, 8]})
    lines = [x for x in dry_run(sweep, GPT2_DATA).splitlines() if x.startswith("bracket:")]
    assert "budget 1e+18" in lines[0] and "brackets it" in lines[0]
    assert "NOT bracket" in lines[1] and "all smaller" in lines[1] and "try depths" in lines[1]
    suggested = parse_depths(lines[1].rsplit("try depths ", 1)[1])
    bracketed = SweepConfig(depths_by_budget={1e20: suggested})
    text = dry_run(bracketed, GPT2_DATA)
    assert "brackets it" in next(x for x in text.splitlines() if x.startswith("bracket:"))


def test_a_grid_that_cannot_run_is_refused_before_anything_starts():
    missing = Dataset(
        "/nowhere/fineweb_edu", "gpt2", 50259, None, "python -m nanogpt.data.prepare fineweb_edu"
    )
    sweep = SweepConfig(depths=[6], flops=[1e18])
    with pytest.raises(FileNotFoundError, match="python -m nanogpt.data.prepare fineweb_edu"):
        check_plan(sweep, missing, plan(sweep, missing))
    small = Dataset(
        "/data/shakespeare", "gpt2", 50259, 1_419_253, "python -m nanogpt.data.prepare shakespeare"
    )
    with pytest.raises(ValueError, match="repeat their data.*--allow-repeat"):
        check_plan(sweep, small, plan(sweep, small))
    sweep.allow_repeat = True
    check_plan(sweep, small, plan(sweep, small))
    tiny = SweepConfig(depths=[12], flops=[1e9])
    with pytest.raises(ValueError, match="too small for one step"):
        check_plan(tiny, GPT2_DATA, plan(tiny, GPT2_DATA))


def test_the_seed_sweep_without_prepared_fineweb_stops_at_once_with_the_command(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("NANOGPT_DATA_DIR", str(tmp_path / "data"))  # nothing prepared here
    import ray

    sweep = SweepConfig(depths=[6, 8], flops=[1e18], storage=str(tmp_path / "out"))
    with pytest.raises(FileNotFoundError, match=r"python -m nanogpt.data.prepare fineweb_edu"):
        run_sweep(sweep)
    assert not ray.is_initialized()  # refused before Ray started


def _row(spec, **outcome):
    return trial_row(spec, {"status": "ok", "steps": spec["steps_planned"], **outcome})


def test_the_table_is_the_merge_of_the_row_files(tmp_path):
    sweep = SweepConfig(depths=[1, 2], flops=[1e10], storage=str(tmp_path), train=TrainConfig())
    specs = plan(sweep, GPT2_DATA)
    watch = SweepWatch(sweep, specs, grace_s=60)
    assert not watch.poll()
    write_row(sweep.sweep_dir / "runs" / specs[0]["trial_key"], _row(specs[0], final_val_loss=3.0))
    assert watch.poll()  # a new row file: the table is rewritten
    table = pd.read_parquet(sweep.sweep_dir / "results.parquet")
    assert list(table["trial_key"]) == [specs[0]["trial_key"]]
    assert set(RESULT_COLUMNS) <= set(table.columns)
    assert not watch.poll()  # nothing new: nothing rewritten
    watch.failed(specs[1]["trial_key"], "RayTaskError: boom", "t2")
    table = pd.read_csv(sweep.sweep_dir / "results.csv")
    assert sorted(table["status"]) == ["failed", "ok"]
    assert "boom" in table.set_index("trial_key").loc[specs[1]["trial_key"], "error"]


def test_a_trial_that_finished_its_run_but_not_in_tune_is_reported_and_does_not_hold_the_end(
    tmp_path,
):
    """The last defence against a hang inside Ray: the row is in the table, the driver says so
    after the grace period, and once every trial has its row the sweep may end."""
    now = [0.0]
    said = []
    sweep = SweepConfig(depths=[1, 2], flops=[1e10], storage=str(tmp_path), train=TrainConfig())
    specs = plan(sweep, GPT2_DATA)
    a, b = (s["trial_key"] for s in specs)
    watch = SweepWatch(sweep, specs, 30, clock=lambda: now[0], say=lambda t, **k: said.append(t))
    write_row(sweep.sweep_dir / "runs" / a, _row(specs[0]))
    watch.poll()
    watch.completed(a)  # Tune completed a: never stuck
    write_row(sweep.sweep_dir / "runs" / b, _row(specs[1]))
    watch.poll()
    now[0] = 29.0
    assert watch.stuck() == [] and not watch.all_done_but_stuck()
    now[0] = 31.0
    assert watch.stuck() == [b] and watch.all_done_but_stuck()
    assert len(said) == 1 and b in said[0] and "has not completed it" in said[0]
    watch.stuck()
    assert len(said) == 1  # said once
    table = pd.read_csv(sweep.sweep_dir / "results.csv")
    assert sorted(table["trial_key"]) == sorted([a, b])


def test_the_sweep_does_not_end_early_while_a_trial_has_no_row(tmp_path):
    now = [0.0]
    sweep = SweepConfig(depths=[1, 2], flops=[1e10], storage=str(tmp_path), train=TrainConfig())
    specs = plan(sweep, GPT2_DATA)
    watch = SweepWatch(sweep, specs, 30, clock=lambda: now[0], say=lambda t, **k: None)
    write_row(sweep.sweep_dir / "runs" / specs[0]["trial_key"], _row(specs[0]))
    watch.poll()
    now[0] = 1000.0
    assert watch.stuck() == [specs[0]["trial_key"]]
    assert not watch.all_done_but_stuck()  # the other trial is still running: keep waiting


def test_progress_moves_with_each_logged_step(tmp_path):
    """The driver reads the newest logged step of a running trial from its metrics.jsonl."""
    from nanogpt.sweep.results import progress_table, tail_metrics

    sweep = SweepConfig(depths=[6], flops=[1e18], storage=str(tmp_path), train=TrainConfig())
    specs = plan(sweep, GPT2_DATA)
    key = specs[0]["trial_key"]
    run_dir = sweep.sweep_dir / "runs" / key
    assert tail_metrics(run_dir) is None  # not started yet
    run_dir.mkdir(parents=True)
    lines = [{"step": s, "train_loss": 5.0 - s / 100, "tokens_per_s": 1e6} for s in (10, 20)]
    text = "\n".join(json.dumps(x) for x in lines) + "\n" + '{"step": 30, "train_lo'  # mid-write
    (run_dir / "metrics.jsonl").write_text(text)
    watch = SweepWatch(sweep, specs, 60)
    watch.state[key] = "starting"
    watch.poll()
    assert watch.state[key] == "running" and watch.latest[key]["step"] == 20
    assert tail_metrics(run_dir, max_bytes=90)["step"] == 20  # a window that starts mid-line
    row = next(line for line in watch.table().splitlines() if line.startswith(key))
    planned = specs[0]["steps_planned"]
    assert f"20/{planned}" in row and "4.800" in row and "1,000,000" in row
    assert row.endswith("running")
    eta = (planned - 20) * sweep.train.total_batch_size / 1e6
    assert f"{eta:.0f}s" in row
    starting = progress_table(specs, 1, {}, {key: "starting"}, {})
    assert next(x for x in starting.splitlines() if x.startswith(key)).endswith("starting")


@pytest.mark.slow  # 10 s on a shared 2-core CPU (2026-12-03)
def test_the_command_line_dry_runs(tmp_path):
    env = {**os.environ, "NANOGPT_DATA_DIR": str(tmp_path / "data")}
    run = dict(cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    out = subprocess.run([sys.executable, "sweeps/isoflop.py", "--dry-run"], **run)
    assert out.returncode == 0, out.stderr
    assert "embedded default" in out.stdout and "sweep 'embedded'" in out.stdout
    assert "(bytes tokens, vocabulary 259)" in out.stdout  # prepared on the spot, offline
    seed = subprocess.run(
        [sys.executable, "sweeps/isoflop.py", "--depths", "6..14", "--flops", "1e18..6e18",
         "--dry-run"], **run,
    )  # fmt: skip
    assert seed.returncode == 0, seed.stderr
    assert "NOT PREPARED: run `python -m nanogpt.data.prepare fineweb_edu` first" in seed.stdout
    assert seed.stdout.count("bracket: budget") == 3 and "| epochs |" in seed.stdout
    wrong = subprocess.run([sys.executable, "sweeps/isoflop.py", "--depths", "6"], **run)
    assert wrong.returncode == 2 and "--depths and --flops go together" in wrong.stderr
    # The package's own form, from another directory, is the same command (PYTHONPATH stands
    # for an install here, so the test needs none).
    elsewhere = {**run, "cwd": tmp_path, "env": {**env, "PYTHONPATH": str(REPO)}}
    module = [sys.executable, "-m", "nanogpt.sweep", "--depths", "6..14", "--flops", "1e18..6e18"]
    same = subprocess.run([*module, "--dry-run"], **elsewhere)
    assert same.returncode == 0, same.stderr
    assert same.stdout == seed.stdout


# --- real Ray ---------------------------------------------------------------------------------------


def tiny_train(corpus: Path) -> TrainConfig:
    return TrainConfig(
        aspect_ratio=8,
        head_dim=8,
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

    return ensure_shakespeare(tmp_path_factory.mktemp("data") / "shakespeare_bytes", "bytes")


@pytest.mark.ray
@pytest.mark.slow
def test_many_tiny_trials_never_hang_and_each_reports_to_tune_once(tmp_path, corpus):
    """Regression: in Ray 2.60 a Tune trial that forwarded Train's results through
    TuneReportCallback and also returned a value could deadlock at its end (seen as one trial
    in twelve of the embedded demo). Many short trials, each evaluating and reporting often,
    through the real trial function as TorchTrainers (the path that hung; CPU trials now train
    in their Tune trial process by default): the sweep ends within its time limit, and Tune recorded
    exactly one result per trial (the returned row), so nothing can race it."""
    script = """
import json, sys
from nanogpt.config import TrainConfig
from nanogpt.sweep import SweepConfig, run_sweep
train = TrainConfig(**json.loads(sys.argv[1]))
sweep = SweepConfig(depths=[1, 2], flops=[1e8, 1.5e8, 2e8, 2.5e8], name="many",
                    storage=sys.argv[2], train=train, analyze=False, cpus_per_trial=0.5,
                    trial_runner="ray-train")
out = run_sweep(sweep)
print("REPORTS", json.dumps(out["tune_reports"]))
"""
    import dataclasses

    train = dataclasses.replace(tiny_train(corpus), eval_every=2, save_every=2, log_every=1)
    out = subprocess.run(
        [sys.executable, "-c", script, json.dumps(dataclasses.asdict(train)), str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    reports = json.loads(out.stdout.split("REPORTS", 1)[1])
    assert len(reports) == 8 and set(reports.values()) == {1}, reports
    table = pd.read_csv(tmp_path / "many" / "results.csv")
    assert len(table) == 8 and (table["status"] == "ok").all()


@pytest.mark.ray
@pytest.mark.slow
def test_a_grid_with_a_diverging_and_a_crashing_trial(tmp_path, corpus):
    """2 x 2 grid: one trial gets a NaN (ends early as diverged, not retried); one trial's
    worker is killed mid-run (Ray Train restarts it and it resumes from its checkpoint). The
    trials run as TorchTrainers (``trial_runner="ray-train"``), the path GPU trials take."""
    budgets = [1.5e8, 3e8]  # DEPTH 1: 51 and 102 steps; DEPTH 2: 15 and 30
    diverging, crashing = trial_key(1, 3e8, 0), trial_key(2, 3e8, 0)
    sweep = SweepConfig(
        depths=[1, 2],
        flops=budgets,
        name="grid",
        storage=str(tmp_path / "store"),
        train=tiny_train(corpus),
        analyze=False,
        trial_runner="ray-train",
        trial_overrides={diverging: {"debug_nan_at_step": 5}},
        report_hook=KillOnceAt(crashing, 8),
    )
    _ship_this_module_by_value()
    out = run_sweep(sweep)
    table = pd.read_parquet(sweep.sweep_dir / "results.parquet")
    assert set(RESULT_COLUMNS) <= set(table.columns)
    assert len(table) == 4
    rows = {r["trial_key"]: r for r in table.to_dict("records")}
    assert rows[diverging]["status"] == "diverged"
    assert rows[diverging]["steps"] < rows[diverging]["steps_planned"]
    for key, row in rows.items():
        assert row["tokenizer"] == "bytes" and row["dataset"] == str(corpus.resolve())
        if key != diverging:
            assert row["status"] == "ok", row
            assert row["steps"] == row["steps_planned"] > 0
            assert row["final_val_loss"] > 0 and row["tokens"] > 0
            assert 0 < row["epochs"] < 1
    run_dir = sweep.sweep_dir / "runs" / crashing
    assert (run_dir / ".crashed_at_8").exists(), "the worker was never killed"
    assert "resume: continuing from" in (run_dir / "train.log").read_text()
    # the diverged trial ran once: one start line in its log
    diverged_log = (sweep.sweep_dir / "runs" / diverging / "train.log").read_text()
    assert diverged_log.count("nanogpt train:") == 1
    assert out["rows"] and Path(out["results"]).is_file()
    assert all(0 <= r["trial_imports_s"] < r["trial_wall_s"] for r in rows.values())


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.xfail(
    reason="on a fresh clone (2026-12-02) the driver ended before its first row appeared; "
    "cause not yet found (see the closing note of that session)",
    strict=False,
)
def test_a_killed_driver_resumes_without_repeating_finished_trials(tmp_path, corpus):
    storage = tmp_path / "store"
    cmd = [
        sys.executable, "sweeps/isoflop.py", "--depths", "1,2", "--flops", "2e8",
        "--name", "resumable", "--storage", str(storage), "--max-concurrent", "1",
        "--no-analyze", "--data", str(corpus), "--aspect-ratio", "8", "--head-dim", "8",
        "--seq-len", "32", "--total-batch-size", "128", "--device-batch-size", "4",
        "--warmup-steps", "2", "--eval-every", "1000", "--eval-tokens", "256",
        "--save-every", "4", "--log-every", "4",
    ]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "disabled"}
    runs = storage / "resumable" / "runs"
    log = tmp_path / "driver.log"  # kept, so that a failure says what the driver printed
    with log.open("w") as out:
        driver = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )  # fmt: skip
    try:
        deadline = time.time() + 600
        while time.time() < deadline and not list(runs.glob("*/row.json")):
            if driver.poll() is not None and not list(runs.glob("*/row.json")):
                pytest.fail(
                    f"the sweep ended (exit {driver.returncode}) before it could be interrupted; "
                    f"its output ends:\n{log.read_text()[-4000:]}"
                )
            time.sleep(0.5)
        assert list(runs.glob("*/row.json")), "no trial finished in time"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started
        driver.wait()
    finished = [p.parent.name for p in runs.glob("*/row.json")]
    assert len(finished) == 1
    done_key = finished[0]
    done_metrics = (runs / done_key / "metrics.jsonl").read_text()

    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "pass --resume" in again.stderr  # no silent restart
    finish = subprocess.run(
        [*cmd, "--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert finish.returncode == 0, finish.stdout[-3000:] + finish.stderr[-3000:]
    assert "1 already finished" in finish.stdout
    table = pd.read_csv(storage / "resumable" / "results.csv")
    assert sorted(table["trial_key"]) == sorted([trial_key(1, 2e8, 0), trial_key(2, 2e8, 0)])
    assert (table["status"] == "ok").all()
    assert (table["steps"] == table["steps_planned"]).all()
    # the finished trial was not run again: its metrics are exactly as they were
    assert (runs / done_key / "metrics.jsonl").read_text() == done_metrics


@pytest.mark.ray
@pytest.mark.slow
def test_a_sweep_on_an_existing_two_node_cluster_uses_both_nodes(tmp_path, corpus):
    """--address: the sweep joins a running cluster (here Ray's own two-node test cluster on
    this machine, one CPU per node) and Ray places the two trials one per node."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        sweep = SweepConfig(
            depths=[1, 2],
            flops=[2e8],
            name="two-nodes",
            storage=str(tmp_path / "store"),
            address=cluster.address,
            train=tiny_train(corpus),
            analyze=False,
        )
        out = run_sweep(sweep)
    finally:
        cluster.shutdown()
    table = pd.read_csv(sweep.sweep_dir / "results.csv")
    assert len(table) == 2 and (table["status"] == "ok").all()
    assert table["node_id"].nunique() == 2, table["node_id"]
    assert out["concurrent"] == 2


def test_ray_address_starts_a_local_ray_unless_one_is_named(monkeypatch):
    from nanogpt.sweep.runner import ray_address

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_address(None) == "local"
    assert ray_address("auto") == "auto"
    assert ray_address("10.0.0.1:6379") == "10.0.0.1:6379"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.2:6379")
    assert ray_address(None) is None  # Ray reads RAY_ADDRESS itself


@pytest.mark.ray
@pytest.mark.slow  # its own process and Ray: ~8 s on a 2-core CPU (2026-12-04)
def test_a_dead_clusters_address_file_does_not_stall_the_sweeps_ray(monkeypatch):
    """Ray 2.60's ray.init() without an address joins the cluster named in its temp folder's
    ray_current_cluster (written by `ray start`), and waits for good when that cluster died
    without `ray stop`: `make demo` hung so on 2026-12-04 after a killed test run. The
    sweep's ray.init starts a Ray of its own whatever the file says. (The timeout only guards
    against that hang; a local Ray starts in seconds.)"""
    import shutil
    import tempfile

    from nanogpt.sweep.runner import ray_address

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    tmp = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))  # short: Ray's socket paths
    (tmp / "ray").mkdir()
    (tmp / "ray" / "ray_current_cluster").write_text("127.0.0.1:1\n")  # nothing listens there
    code = (
        "import ray\n"
        f"ray.init(address={ray_address(None)!r}, log_to_driver=False)\n"
        "print('CPUS', ray.cluster_resources().get('CPU'))\n"
        "ray.shutdown()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = str(tmp)
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert out.returncode == 0 and "CPUS" in out.stdout, out.stderr[-2000:]


def test_a_trial_gets_its_config_from_the_frozen_settings():
    import dataclasses

    from nanogpt.sweep import TrialSettings

    settings = TrialSettings(
        sweep_name="s", train=TrainConfig(data="/d"), vocab_size=259, train_tokens=10**6,
        runs_dir="/runs", ray_storage="/ray", use_gpu=False, gpus_per_trial=1,
        gpu_per_worker=1.0, cpus_per_trial=0.5, max_worker_restarts=2,
        trial_overrides={"d02_c1e10_s0": {"debug_nan_at_step": 3}},
    )  # fmt: skip
    cfg = settings.trial_config(2, 1e10, 0)
    assert (cfg.depth, cfg.target_flops, cfg.seed, cfg.num_iterations) == (2, 1e10, 0, 0)
    assert (cfg.run_name, cfg.out_dir, cfg.resume, cfg.wandb_group) == (
        "d02_c1e10_s0",
        "/runs",
        "auto",
        "s",
    )
    assert cfg.debug_nan_at_step == 3
    assert settings.trial_config(3, 1e10, 0).debug_nan_at_step == -1
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.sweep_name = "other"  # type: ignore[misc]


def test_tunes_hooks_pickle_without_the_drivers_watch(tmp_path):
    """Tune saves its callbacks and stopper in its experiment state (cloudpickle); the watch
    (which holds print, a clock and the table) stays with the driver."""
    from ray import cloudpickle

    from nanogpt.sweep.runner import _tune_hooks

    sweep = SweepConfig(depths=[1], flops=[1e10], storage=str(tmp_path), train=TrainConfig())
    watch = SweepWatch(sweep, plan(sweep, GPT2_DATA), 60, say=print)
    progress, stopper = _tune_hooks(watch)
    assert progress.watch is watch and stopper.watch is watch
    restored = cloudpickle.loads(cloudpickle.dumps(stopper))
    assert restored.watch is None and restored.stop_all() is False
    assert cloudpickle.loads(cloudpickle.dumps(progress)).watch is None


def test_concurrency_follows_the_resources_ray_reports():
    from nanogpt.sweep.runner import _capacity

    assert _capacity(SweepConfig(depths=[2], flops=[1e15]), {"GPU": 8, "CPU": 64}, True) == 8
    packed = SweepConfig(depths=[2], flops=[1e15], trials_per_gpu=3)
    assert _capacity(packed, {"GPU": 2, "CPU": 32}, True) == 6
    wide = SweepConfig(depths=[2], flops=[1e15], gpus_per_trial=2)
    assert _capacity(wide, {"GPU": 4}, True) == 2
    halves = SweepConfig(depths=[2], flops=[1e15], cpus_per_trial=0.5)
    assert _capacity(halves, {"CPU": 2}, False) == 4
    capped = SweepConfig(depths=[2], flops=[1e15], max_concurrent=1)
    assert _capacity(capped, {"CPU": 2}, False) == 1
    from nanogpt.sweep.ray_trial import gpu_share

    assert gpu_share(3) == 0.3333 and 3 * gpu_share(3) <= 1 and gpu_share(1) == 1.0


# --- --eval core: each trial's final model on CORE ---------------------------------------------------

BYTES_DATA = Dataset("/data/corpus_bytes", "bytes", 259, 10**9, "python data/x/prepare.py")


@pytest.fixture(scope="module")
def core_bundle(tmp_path_factory) -> Path:
    return write_core_bundle(tmp_path_factory.mktemp("bundle") / "eval_bundle", n_items=6)


def test_eval_dry_run_states_the_suite_its_bundle_and_its_cost(core_bundle, tmp_path):
    from nanogpt.evals import aggregate, icl
    from nanogpt.evals.bundle import open_bundle
    from nanogpt.tokenizer import get_tokenizer

    evaluation = TrialEval("core", str(core_bundle), max_per_task=4)
    sweep = SweepConfig(depths=[2, 4], flops=[1e12], train=TrainConfig(seq_len=64),
                        evaluation=evaluation)  # fmt: skip
    text = dry_run(sweep, BYTES_DATA)
    assert (
        "evaluation: CORE on each trial's final model, at most 4 items per task (seeded), "
        f"baselines dclm-v2; bundle {core_bundle}"
    ) in text
    assert "evaluation cost: 22 tasks, 88 items" in text and "training FLOPs" in text
    # The plan's tokens: every sampled item's rows at the sweep's context, counted here again.
    bundle, tok = open_bundle(core_bundle), get_tokenizer("bytes")
    expected = 0
    for task in bundle.tasks("core.yaml"):
        items = bundle.load_items(task)
        for p in icl.prepare(task, items, tok, 64, icl.subsample(len(items), 4)):
            expected += sum(len(c) + len(k) for c, k in p.rows)
    eval_plan = plan_trial_eval(evaluation, "bytes", 64)
    assert eval_plan.total_tokens == expected and set(eval_plan.items) == set(aggregate.CORE_TASKS)
    missing = SweepConfig(depths=[2], flops=[1e12], train=TrainConfig(seq_len=64),
                          evaluation=TrialEval("core", str(tmp_path / "none")))  # fmt: skip
    line = next(x for x in dry_run(missing, BYTES_DATA).splitlines() if "would stop" in x)
    assert "does not exist" in line and "python -m nanogpt.evals --download" in line
    none = SweepConfig(depths=[2], flops=[1e12], train=TrainConfig(seq_len=64))
    assert "evaluation: none" in dry_run(none, BYTES_DATA)


def test_eval_without_its_bundle_stops_the_sweep_before_any_trial(tmp_path, corpus):
    import ray
    from eval_fixtures import write_core_bundle

    from nanogpt.evals.bundle import BundleError

    def sweep(bundle: Path) -> SweepConfig:
        return SweepConfig(depths=[1], flops=[1.5e8], storage=str(tmp_path / "out"),
                           train=tiny_train(corpus), evaluation=TrialEval("core", str(bundle)))  # fmt: skip

    with pytest.raises(
        BundleError, match=r"does not exist.*\n.*python -m nanogpt.evals --download"
    ):
        run_sweep(sweep(tmp_path / "nowhere"))
    partial = write_core_bundle(tmp_path / "partial", n_items=3, leave_out=("squad",))
    with pytest.raises(
        BundleError,
        match=r"(?s)partial \(core.yaml\): CORE needs 22 tasks.*missing: squad.*--eval-bundle DIR",
    ):
        run_sweep(sweep(partial))
    assert not ray.is_initialized() and not (tmp_path / "out").exists()


def test_eval_of_a_finished_run_scores_its_final_checkpoint_like_the_evals_cli(
    tmp_path, corpus, core_bundle
):
    """What a trial does after train(): the final checkpoint on CORE, the row's columns, the
    whole result in eval.json; the same score as nanogpt.evals.evaluate on that checkpoint."""
    import dataclasses

    import torch

    from nanogpt.engine import load_model
    from nanogpt.evals import evaluate
    from nanogpt.train import train

    torch.set_num_threads(1)
    cfg = dataclasses.replace(tiny_train(corpus), depth=1, num_iterations=4, device="cpu",
                              out_dir=str(tmp_path), run_name="d01")  # fmt: skip
    summary = train(cfg)
    run_dir = tmp_path / "d01"
    evaluation = TrialEval("core", str(core_bundle), max_per_task=3, baselines="v1")
    columns = evaluate_trial(summary, run_dir, evaluation, "cpu")
    assert set(columns) == {"core", "eval_baselines", "eval_max_per_task", "eval_s"}
    assert (columns["eval_baselines"], columns["eval_max_per_task"]) == ("v1", 3)
    model, tokenizer, meta = load_model(summary["checkpoint"], "cpu")
    reference = evaluate(model, tokenizer, "core", core_bundle, limit=3, baselines="v1",
                         distributed=False)  # fmt: skip
    assert columns["core"] == pytest.approx(reference["score"], abs=1e-12)
    saved = json.loads((run_dir / EVAL_FILE).read_text())
    assert saved["score"] == columns["core"] and saved["step"] == 4
    assert len(saved["tasks"]) == 22 and all(t["n"] == 3 for t in saved["tasks"].values())
    # A retried trial that had nothing left to train returns no checkpoint: the newest is it.
    again = evaluate_trial({**summary, "checkpoint": None}, run_dir, evaluation, "cpu")
    assert again["core"] == columns["core"]
    assert evaluate_trial({**summary, "status": "diverged"}, run_dir, evaluation, "cpu") == {}
    assert evaluate_trial(summary, run_dir, TrialEval(), "cpu") == {}
    # A failure after training keeps the trial (and its losses): the row says what went wrong.
    gone = TrialEval("core", str(tmp_path / "removed"))
    noted = evaluate_or_note(summary, run_dir, gone, "cpu")
    assert set(noted) == {"error"} and "BundleError" in noted["error"]
    assert f"python -m nanogpt.evals --checkpoint {run_dir} --suite core" in noted["error"]


@pytest.mark.ray
@pytest.mark.slow
def test_eval_core_sweep_end_to_end_gives_a_core_column_and_the_downstream_figure(
    tmp_path, corpus, core_bundle
):
    """Two tiny trials on a local Ray cluster with --eval core: each row has its CORE score
    (made in the trial) and the analysis draws CORE against compute."""
    sweep = SweepConfig(
        depths=[1, 2], flops=[1.5e8], name="core", storage=str(tmp_path / "store"),
        train=tiny_train(corpus), cpus_per_trial=0.5,
        evaluation=TrialEval("core", str(core_bundle), max_per_task=2),
    )  # fmt: skip
    out = run_sweep(sweep)
    table = pd.read_csv(sweep.sweep_dir / "results.csv")
    assert len(table) == 2 and (table["status"] == "ok").all()
    assert table["core"].notna().all() and (table["core"] <= 1).all()
    assert set(table["eval_baselines"]) == {"dclm-v2"} and set(table["eval_max_per_task"]) == {2}
    for key in table["trial_key"]:
        saved = json.loads((sweep.sweep_dir / "runs" / key / EVAL_FILE).read_text())
        assert saved["score"] == pytest.approx(table.set_index("trial_key").loc[key, "core"])
    assert (sweep.sweep_dir / "plots" / "core_vs_compute.png").is_file()
    assert [r["budget"] for r in out["downstream"]["per_budget"]] == [1.5e8]


def test_eval_gauntlet_checks_its_own_tasks_files(core_bundle):
    """--eval gauntlet reads the Gauntlet's 31 tasks (the bundle's gauntlet.yaml, else the v0.3
    list): a CORE-only bundle lacks their files, and the error names the first."""
    from nanogpt.evals.bundle import BundleError

    with pytest.raises(
        BundleError, match=r"(?s)world_knowledge/jeopardy_all.jsonl.*--eval gauntlet"
    ):
        plan_trial_eval(TrialEval("gauntlet", str(core_bundle)), "bytes", 64)
