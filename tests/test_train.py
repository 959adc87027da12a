"""The training loop on CPU: learning, exact resume, two ranks, divergence, bad input."""

import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from nanogpt import checkpoint as ckpt
from nanogpt import dist
from nanogpt.config import EVAL_TOKENS_CPU, EVAL_TOKENS_GPU, TrainConfig, parse_train_config
from nanogpt.data import ensure_shakespeare
from nanogpt.monitor import Divergence
from nanogpt.train import BatchSizeError, _print_config, _set_up, _validate, lr_multiplier, train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return ensure_shakespeare(tmp_path_factory.mktemp("data") / "shakespeare")


def tiny_cfg(corpus: Path, out_dir: Path, **overrides) -> TrainConfig:
    base = dict(
        depth=1,
        seq_len=64,
        device_batch_size=4,
        total_batch_size=512,
        num_iterations=12,
        warmup_steps=2,
        lr_adamw=3e-3,
        eval_every=6,
        eval_tokens=1024,
        save_every=0,
        data=str(corpus),
        out_dir=str(out_dir),
        run_name="run",
        device="cpu",
        seed=7,
    )
    base.update(overrides)
    return TrainConfig(**base)


def losses(run_dir: Path) -> dict[int, float]:
    """step -> train loss from metrics.jsonl (the last line written for each step)."""
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        out[row["step"]] = row["train_loss"]
    return out


@pytest.mark.slow  # 77 s on a shared 2-core CPU (2026-12-03)
def test_a_tiny_run_lowers_the_loss_and_writes_its_outputs(corpus, tmp_path):
    reports = []
    summary = train(
        tiny_cfg(corpus, tmp_path, num_iterations=40, eval_every=20),
        report=lambda m, c: reports.append((m, c)),
    )
    assert summary["status"] == "ok" and summary["steps"] == 40
    trajectory = losses(tmp_path / "run")
    assert trajectory[40] < trajectory[1] - 2.0
    assert summary["final_val_loss"] < 9.0 and summary["val_bpb"] > 0
    needed = {"step", "tokens", "flops", "train_loss", "val_loss", "val_bpb", "lr", "grad_norm"}
    needed |= {"tokens_per_s", "mfu", "elapsed_s", "status"}
    assert needed <= set(reports[0][0])
    assert reports[-1][0]["status"] == "ok"
    # the final checkpoint is complete and reported
    final = Path(summary["checkpoint"])
    assert final.name == "step_000040" and (final / "meta.json").is_file()
    assert any(c == str(final) for _, c in reports)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "ok"


@pytest.mark.slow  # 56 s on a shared 2-core CPU (2026-12-03)
def test_interrupted_and_resumed_equals_uninterrupted(corpus, tmp_path):
    whole = train(tiny_cfg(corpus, tmp_path / "a"))
    first = train(tiny_cfg(corpus, tmp_path / "b", stop_at_step=5))
    assert first["status"] == "stopped" and first["steps"] == 5
    second = train(tiny_cfg(corpus, tmp_path / "b", resume="auto"))
    assert second["status"] == "ok" and second["steps"] == 12
    uninterrupted, resumed = losses(tmp_path / "a" / "run"), losses(tmp_path / "b" / "run")
    assert [resumed[s] for s in range(1, 13)] == [uninterrupted[s] for s in range(1, 13)]
    assert second["final_val_loss"] == whole["final_val_loss"]


@pytest.mark.slow  # 8 s on a shared 2-core CPU (2026-12-03)
def test_a_nan_ends_the_run_as_diverged(corpus, tmp_path):
    reports = []
    summary = train(
        tiny_cfg(corpus, tmp_path, debug_nan_at_step=3), report=lambda m, c: reports.append(m)
    )
    assert summary["status"] == "diverged" and summary["steps"] == 4
    assert reports[-1]["status"] == "diverged"
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["status"] == "diverged"


def test_divergence_is_a_non_finite_loss_or_a_smoothed_blow_up_after_warmup():
    check = Divergence(blowup_factor=1.5, warmup=3)
    assert [check.update(step, 10.0) for step in (1, 2)] == [None, None]
    assert check.update(3, 100.0) is None  # a spike during warmup is let through
    assert check.ema == pytest.approx(19.0) and check.best == 10.0
    calm = Divergence(blowup_factor=1.5, warmup=3)
    for step, loss in enumerate([10.0, 9.0, 8.0, 7.0, 7.5, 6.5], start=1):
        assert calm.update(step, loss) is None  # a falling, noisy loss never trips it
    reason = None
    for step in range(7, 30):
        reason = reason or calm.update(step, 30.0)
    assert reason is not None and "more than 1.5x its best" in reason
    assert "loss is nan" in Divergence(1.5, 0).update(1, float("nan"))
    assert "loss is inf" in Divergence(1.5, 0, ema=5.0, best=5.0).update(9, float("inf"))


@pytest.mark.slow  # 9 s on a shared 2-core CPU (2026-12-03)
def test_a_blown_up_loss_ends_the_run_as_diverged(corpus, tmp_path):
    summary = train(tiny_cfg(corpus, tmp_path, lr_adamw=50.0, lr_muon=50.0, num_iterations=30))
    assert summary["status"] == "diverged" and summary["steps"] < 30


@pytest.mark.slow  # two torchrun launches
def test_two_ranks_follow_one_rank_at_the_same_global_batch(corpus, tmp_path):
    args = [
        "--depth", "1", "--seq-len", "64", "--device-batch-size", "4", "--total-batch-size", "512",
        "--num-iterations", "6", "--warmup-steps", "2", "--eval-every", "6", "--eval-tokens",
        "1024", "--save-every", "0", "--data", str(corpus), "--device", "cpu", "--seed", "7",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    one = [sys.executable, "-m", "nanogpt.train", *args, "--out-dir", str(tmp_path / "one")]
    two = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "nanogpt.train", *args, "--out-dir", str(tmp_path / "two"),
    ]  # fmt: skip
    for cmd in (one, two):
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    a, b = losses(tmp_path / "one" / "d1-pretraining"), losses(tmp_path / "two" / "d1-pretraining")
    assert list(a) == list(b)
    assert [b[s] for s in b] == pytest.approx([a[s] for s in a], rel=1e-4)


@pytest.mark.slow  # 3-10 s on an idle 2-core CPU (2026-12-03): out of make test-fast
def test_a_run_keeps_only_its_latest_checkpoints(corpus, tmp_path):
    cfg = tiny_cfg(corpus, tmp_path, num_iterations=6, save_every=2, keep_checkpoints=2)
    summary = train(cfg)
    names = sorted(p.name for p in (tmp_path / "run").glob("step_*"))
    assert names == ["step_000004", "step_000006"]
    assert summary["checkpoint"] == str(tmp_path / "run" / "step_000006")


@pytest.mark.slow  # 3-10 s on an idle 2-core CPU (2026-12-03): out of make test-fast
def test_resuming_a_finished_run_loses_nothing(corpus, tmp_path):
    """A run resumed after its last step (a sweep trial retried after it finished) trains
    nothing and reports the run's own losses: summary.json is kept as written, and rebuilt
    from the final checkpoint and metrics.jsonl when it is missing. (It used to report and
    write NaN losses over the good summary.)"""
    cfg = tiny_cfg(corpus, tmp_path, num_iterations=6, save_every=3)
    first = train(cfg)
    written = (tmp_path / "run" / "summary.json").read_text()
    again = train(replace(cfg, resume="auto"))
    assert again == first and (tmp_path / "run" / "summary.json").read_text() == written
    (tmp_path / "run" / "summary.json").unlink()
    rebuilt = train(replace(cfg, resume="auto"))
    for key in ("status", "steps", "tokens", "final_train_loss", "checkpoint"):
        assert rebuilt[key] == first[key], key
    assert rebuilt["final_val_loss"] == pytest.approx(first["final_val_loss"], rel=1e-6)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 6


def test_evaluation_fits_the_device_and_says_what_it_does(corpus, tmp_path, capsys):
    assert TrainConfig().eval_tokens_on("cpu") == EVAL_TOKENS_CPU < EVAL_TOKENS_GPU
    assert TrainConfig().eval_tokens_on("cuda") == EVAL_TOKENS_GPU
    assert TrainConfig(eval_tokens=EVAL_TOKENS_GPU).eval_tokens_on("cpu") == EVAL_TOKENS_GPU
    cfg = tiny_cfg(corpus, tmp_path, eval_tokens=0)  # 65,536 tokens = 256 batches of 4 x 64
    run = _set_up(cfg, dist.init("cpu"))
    assert run.eval_tokens == EVAL_TOKENS_CPU and len(run.val_batches) == 256
    _print_config(run)
    out = capsys.readouterr().out
    assert "eval_tokens=65,536 per evaluation (256 batches per rank; the CPU default" in out
    run.val_batches = run.val_batches[:4]  # four batches are enough to see the progress lines
    val = _validate(run, 1, every_s=0.0)
    out = capsys.readouterr().out
    assert "evaluating 1,024 validation tokens" in out
    assert "eval: 1/4 batches (25%)" in out and "eval: 3/4 batches (75%)" in out
    assert f"val loss {val['val_loss']:.4f}" in out


def test_model_options_are_flags_and_reach_the_model(corpus, tmp_path):
    cfg = parse_train_config(["--rope-base", "5e5", "--fused-loss", "false", "--z-loss", "1e-4"])
    model_cfg = cfg.model_config(259)
    assert (model_cfg.rope_base, model_cfg.fused_loss, model_cfg.z_loss) == (5e5, False, 1e-4)
    assert parse_train_config(["--loss-kernel", "torch"]).model_config().loss_kernel == "torch"
    summary = train(tiny_cfg(corpus, tmp_path, num_iterations=1, rope_base=500.0))
    meta = ckpt.read_meta(summary["checkpoint"])
    assert meta["model_config"]["rope_base"] == 500.0 and meta["config"]["rope_base"] == 500.0


def test_resuming_into_another_shape_is_a_clear_error(corpus, tmp_path):
    train(tiny_cfg(corpus, tmp_path, num_iterations=2))
    with pytest.raises(ckpt.CheckpointError, match="n_layer: checkpoint 1, this run 2"):
        train(tiny_cfg(corpus, tmp_path, depth=2, resume="auto"))


def test_byte_level_data_builds_a_byte_level_model_and_checkpoints_say_so(tmp_path):
    corpus_bytes = ensure_shakespeare(tmp_path / "shakespeare_bytes", tokenizer="bytes")
    summary = train(
        tiny_cfg(
            corpus_bytes, tmp_path, aspect_ratio=16, head_dim=16, num_iterations=4, eval_every=4
        )
    )
    assert summary["status"] == "ok" and summary["tokenizer"] == "bytes"
    meta = ckpt.read_meta(summary["checkpoint"])
    assert meta["tokenizer"] == "bytes" and meta["model_config"]["vocab_size"] == 259
    assert meta["model_config"]["n_embd"] == 16  # aspect ratio 16 x DEPTH 1
    # bits per byte: one byte per token, so bpb is the loss in bits
    assert summary["val_bpb"] == pytest.approx(summary["final_val_loss"] / math.log(2), rel=1e-6)
    assert 0 < summary["epochs"] < 0.01


@pytest.mark.slow  # 13 s on a shared 2-core CPU (2026-12-03)
def test_a_checkpoint_used_with_data_of_another_tokenizer_is_a_named_error(corpus, tmp_path):
    corpus_bytes = ensure_shakespeare(tmp_path / "shakespeare_bytes", tokenizer="bytes")
    gpt2_run = train(tiny_cfg(corpus, tmp_path, num_iterations=2))
    with pytest.raises(ckpt.TokenizerMismatchError, match="'gpt2' tokens.*'bytes' tokens"):
        train(
            tiny_cfg(
                corpus_bytes, tmp_path, mode="mid-training", checkpoint=gpt2_run["checkpoint"],
                run_name="mid", num_iterations=2,
            )
        )  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "nanogpt.train", "--data", str(corpus_bytes), "--depth", "1",
         "--seq-len", "64", "--device-batch-size", "4", "--total-batch-size", "512",
         "--num-iterations", "2", "--out-dir", str(tmp_path), "--run-name", "run",
         "--resume", "auto"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 2 and "trained on 'gpt2' tokens" in out.stderr, out.stderr[-2000:]


@pytest.mark.slow  # 17 s on a shared 2-core CPU (2026-12-03)
def test_mid_training_starts_from_a_checkpoint(corpus, tmp_path):
    pre = train(tiny_cfg(corpus, tmp_path, num_iterations=4))
    mid = train(
        tiny_cfg(
            corpus, tmp_path, mode="mid-training", checkpoint=pre["checkpoint"],
            run_name="mid", num_iterations=2,
        )
    )  # fmt: skip
    assert mid["status"] == "ok"
    first_mid_loss = losses(tmp_path / "mid")[1]
    assert first_mid_loss < losses(tmp_path / "run")[1]  # it did not start from scratch


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["--total-batch-size", "1000", "--device-batch-size", "4", "--seq-len", "64"],
            "not a multiple",
        ),
    ],
)
def test_impossible_batch_sizes_name_the_numbers(corpus, tmp_path, argv, message):
    cfg = replace(parse_train_config(argv), data=str(corpus), out_dir=str(tmp_path), device="cpu")
    with pytest.raises(BatchSizeError, match="--total-batch-size 1,000 tokens is not a multiple"):
        train(cfg)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--mode", "fine-tuning"], "--mode 'fine-tuning' is not one of"),
        (["--depth", "0"], "--depth must be at least 1, got 0"),
        (["--depth", "twelve"], "argument --depth: expected int, got 'twelve'"),
        (["--learning-rate", "1"], "unrecognized arguments: --learning-rate"),
        (["--wandb", "maybe"], "--wandb 'maybe' is not one of"),
        (["--compile", "perhaps"], "expected true or false"),
        (["--mode", "mid-training"], "--mode mid-training starts from a pretrained model"),
        (["--loss-kernel", "cuda"], "--loss-kernel 'cuda' is not one of torch, triton"),
        (["--rope-base", "-1"], "--rope-base must be > 0"),
        (["--eval-tokens", "-5"], "--eval-tokens must be >= 0"),
    ],
)
def test_bad_flags_are_errors_that_name_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse_train_config(argv)
    assert message in capsys.readouterr().err


def test_help_lists_every_flag_with_its_comment(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_train_config(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--target-flops FLOAT" in out and "training FLOP budget" in out
    assert "(capped at 10% of the run)" in out
    flat = " ".join(out.split())  # argparse wraps lines at the terminal's width
    assert "model options" in flat and "--rope-base FLOAT" in flat and "--loss-kernel STR" in flat
    # the device defaults of --eval-tokens, as the code has them
    assert f"{EVAL_TOKENS_GPU:,} on GPU" in flat and f"{EVAL_TOKENS_CPU:,} on CPU" in flat


def test_every_config_field_has_its_help_comment():
    import dataclasses

    from nanogpt.config import ModelConfig, field_comments

    for cls in (TrainConfig, ModelConfig):
        comments = field_comments(cls)
        missing = [f.name for f in dataclasses.fields(cls) if not comments.get(f.name)]
        assert not missing, f"{cls.__name__} fields without a one-line comment: {missing}"


def test_presets_then_flags_take_precedence():
    cfg = parse_train_config(["--preset", "tiny", "--depth", "3"])
    assert cfg.depth == 3 and cfg.seq_len == 128  # flag beats preset, preset beats default
    assert parse_train_config([]).depth == 12


def test_schedule_warms_up_then_decays_to_the_floor():
    values = [lr_multiplier(s, 100, 10, 0.1) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert values[10] == pytest.approx(1.0) and values[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))


@pytest.mark.slow  # 11 s on a shared 2-core CPU (2026-12-03)
def test_wandb_offline_writes_a_local_run(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    summary = train(tiny_cfg(corpus, tmp_path, num_iterations=2, wandb="offline"))
    assert summary["status"] == "ok"
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert runs, "wandb offline left no run directory"


# --- CORE / ChatCORE during training (--core-evals, --chatcore-evals) -------------------------


@pytest.fixture(scope="module")
def core_bundle(tmp_path_factory) -> Path:
    from test_evals_icl import write_bundle

    from nanogpt.evals.aggregate import CORE_TASKS

    return write_bundle(tmp_path_factory.mktemp("bundle"), CORE_TASKS, n_items=4)


def metric_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_core_evals_put_core_rows_in_the_metrics_at_their_steps(corpus, core_bundle, tmp_path):
    from nanogpt.evals.aggregate import CORE_TASKS
    from nanogpt.evals.training import TrainingEvals
    from nanogpt.tokenizer import get_tokenizer

    reports = []
    cfg = tiny_cfg(
        corpus, tmp_path, num_iterations=3, eval_every=3, core_evals=2,
        eval_bundle=str(core_bundle), eval_max_per_task=1,
    )  # fmt: skip
    summary = train(cfg, report=lambda m, c: reports.append(m))
    rows = metric_rows(tmp_path / "run")
    # every 2 steps and at the end; validation at the end, in the same row
    assert [r["step"] for r in rows if "core" in r] == [2, 3]
    assert [r["step"] for r in rows if "val_loss" in r] == [3]
    final = next(r for r in rows if r["step"] == 3 and "core" in r)
    assert "val_loss" in final and "train_loss" in final
    centred = [final[f"eval/{t}"] for t in CORE_TASKS]
    assert final["core"] == pytest.approx(sum(centred) / len(CORE_TASKS))
    assert summary["core"] == final["core"] and reports[-1]["core"] == final["core"]
    assert [m["step"] for m in reports if "core" in m][:2] == [2, 3]
    # the score is the final checkpoint's, on the same item per task, as the hook gives it
    from nanogpt.engine import load_model

    model, tok, _ = load_model(summary["checkpoint"], "cpu")
    again = TrainingEvals(core_bundle, "core", max_per_task=1)(model, get_tokenizer("gpt2"), "cpu")
    assert again["core"] == pytest.approx(final["core"]) and tok.name == "gpt2"


def test_evals_are_off_by_default(corpus, tmp_path):
    assert TrainConfig().core_evals == 0 and TrainConfig().chatcore_evals == 0
    summary = train(tiny_cfg(corpus, tmp_path, num_iterations=2, eval_every=2))
    assert "core" not in summary
    assert not any("core" in r or "chatcore" in r for r in metric_rows(tmp_path / "run"))


def test_a_missing_bundle_or_task_fails_before_training(corpus, core_bundle, tmp_path, capsys):
    from nanogpt.evals.bundle import BundleError
    from nanogpt.train import main

    cfg = tiny_cfg(corpus, tmp_path, core_evals=2, eval_bundle=str(tmp_path / "nowhere"))
    with pytest.raises(BundleError, match=r"--core-evals 2: eval bundle .*nowhere does not exist"):
        train(cfg)
    assert not (tmp_path / "run").exists()  # nothing was trained or written
    partial = shutil.copytree(core_bundle, tmp_path / "partial")
    (partial / "eval_data" / "fixture" / "coqa.jsonl").unlink()
    with pytest.raises(BundleError, match="coqa"):
        train(replace(cfg, eval_bundle=str(partial)))
    args = ["--data", str(corpus), "--device", "cpu", "--out-dir", str(tmp_path), "--depth", "1"]
    assert main([*args, "--core-evals", "5", "--eval-bundle", str(tmp_path / "nowhere")]) == 2
    assert "error: --core-evals 5: eval bundle" in capsys.readouterr().err
    # ChatCORE names the file it lacks
    with pytest.raises(FileNotFoundError, match=r"arc_easy\.jsonl is missing.*--chatcore-data"):
        train(tiny_cfg(corpus, tmp_path, chatcore_evals=2, chatcore_data=str(tmp_path)))
    assert not (tmp_path / "run").exists()


def test_chatcore_evals_run_the_chat_suite_at_their_steps(corpus, tmp_path, monkeypatch):
    import types

    from nanogpt.evals.chatcore import task_file

    calls = []

    def run_chatcore(model, tokenizer, meta, data_dir, *, limit, device):
        calls.append((meta["step"], meta["config"]["mode"], limit, model.training))
        tasks = {"gsm8k": {"accuracy": 0.25, "centered": 0.25, "n": limit}}
        return {"suite": "chatcore", "tasks": tasks, "score": 0.25, "notes": []}

    fake = types.ModuleType("nanogpt.evals.chatcore")
    fake.run_chatcore, fake.TASKS, fake.task_file = run_chatcore, ("gsm8k",), task_file
    monkeypatch.setitem(sys.modules, "nanogpt.evals.chatcore", fake)
    (tmp_path / "chat").mkdir()
    (tmp_path / "chat" / "gsm8k.jsonl").write_text("{}\n")
    cfg = tiny_cfg(
        corpus, tmp_path, num_iterations=5, eval_every=5, chatcore_evals=2,
        chatcore_data=str(tmp_path / "chat"), eval_max_per_task=3,
    )  # fmt: skip
    summary = train(cfg)
    assert calls == [(2, "pretraining", 3, False), (4, "pretraining", 3, False),
                     (5, "pretraining", 3, False)]  # fmt: skip
    rows = [r for r in metric_rows(tmp_path / "run") if "chatcore" in r]
    assert [(r["step"], r["chatcore"], r["eval/gsm8k"]) for r in rows] == [
        (2, 0.25, 0.25), (4, 0.25, 0.25), (5, 0.25, 0.25)
    ]  # fmt: skip
    assert summary["chatcore"] == 0.25 and "core" not in summary


def test_eval_scores_reach_wandb_with_the_other_metrics(tmp_path):
    from nanogpt.monitor import MetricsLog

    class Recorder:  # stands in for the wandb run object: what MetricsLog.log hands it
        def __init__(self):
            self.calls = []

        def log(self, values, step):
            self.calls.append((step, values))

    logger = MetricsLog(tmp_path, TrainConfig(), is_main=True)
    logger.wandb = Recorder()
    logger.log({"step": 4, "train_loss": 3.5, "core": 0.125, "eval/copa": 0.25, "status": "ok"})
    assert logger.wandb.calls == [(4, {"step": 4, "train_loss": 3.5, "core": 0.125,
                                       "eval/copa": 0.25})]  # fmt: skip
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["core"] == 0.125


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--core-evals", "-1"], "--core-evals must be >= 0"),
        (["--eval-max-per-task", "-3"], "--eval-max-per-task must be >= 0"),
    ],
)
def test_bad_eval_flags_name_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse_train_config(argv)
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_core_evals_on_two_ranks_score_the_final_weights(corpus, core_bundle, tmp_path):
    from nanogpt.engine import load_model
    from nanogpt.evals.training import TrainingEvals

    args = [
        "--depth", "1", "--seq-len", "64", "--device-batch-size", "4", "--total-batch-size", "512",
        "--num-iterations", "4", "--warmup-steps", "2", "--eval-every", "4", "--eval-tokens",
        "1024", "--save-every", "0", "--data", str(corpus), "--device", "cpu", "--seed", "7",
        "--core-evals", "2", "--eval-bundle", str(core_bundle), "--eval-max-per-task", "3",
        "--out-dir", str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "nanogpt.train", *args,
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "core every 2 steps and at the end, 3 items per task (22 tasks), rank-strided" in (
        done.stdout
    )
    rows = metric_rows(tmp_path / "d1-pretraining")
    assert [r["step"] for r in rows if "core" in r] == [2, 4]
    # items strided over the ranks and all-reduced = one process scoring them all
    model, tok, _ = load_model(tmp_path / "d1-pretraining", "cpu")
    single = TrainingEvals(core_bundle, "core", max_per_task=3)(model, tok, "cpu")
    assert rows[-1]["core"] == pytest.approx(single["core"])


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_ddp_train_passes_the_eval_variables_as_flags():
    import shlex

    # Under `make test` the outer make's variables would make this one print its directory.
    plain_env = {
        k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")
    }

    out = subprocess.run(
        ["make", "--no-print-directory", "-n", "ddp-train", "VAL_EVALS=50", "CORE_EVALS=500",
         "CHATCORE_EVALS=100", "EVAL_BUNDLE=/data/bundle", "CHATCORE_DATA=/data/chat"],
        cwd=REPO, capture_output=True, text=True, check=True, env=plain_env,
    ).stdout  # fmt: skip
    words = shlex.split(out.replace("\\\n", " "))
    cfg = parse_train_config(words[words.index("nanogpt.train") + 1 :])
    assert (cfg.eval_every, cfg.core_evals, cfg.chatcore_evals) == (50, 500, 100)
    assert (cfg.eval_bundle, cfg.chatcore_data) == ("/data/bundle", "/data/chat")
    default = shlex.split(
        subprocess.run(
            ["make", "--no-print-directory", "-n", "ddp-train"],
            cwd=REPO,
            capture_output=True,
            text=True,
            env=plain_env,
        ).stdout.replace("\\\n", " ")
    )
    cfg = parse_train_config(default[default.index("nanogpt.train") + 1 :])
    assert (cfg.core_evals, cfg.chatcore_evals, cfg.eval_bundle) == (0, 0, None)
