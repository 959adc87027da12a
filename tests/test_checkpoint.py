"""Checkpoints: the latest k kept, crashed saves ignored, old checkpoints still load."""

import dataclasses
import json

import pytest
import torch

from nanogpt import checkpoint as ckpt
from nanogpt.config import ModelConfig, ModelOptions
from nanogpt.engine import load_model
from nanogpt.model import GPT


def tiny_model() -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(n_layer=1, n_head=2, n_embd=16, vocab_size=259, sequence_len=16))


def save(run_dir, step: int, model: GPT, keep: int):
    meta = {"model_config": dataclasses.asdict(model.config), "tokenizer": "bytes"}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return ckpt.save(run_dir, step, model, opt, meta, keep=keep)


def steps_on_disk(run_dir) -> list[str]:
    return sorted(p.name for p in run_dir.iterdir())


def test_only_the_latest_k_checkpoints_are_kept(tmp_path):
    model = tiny_model()
    for step in (100, 200, 300, 400, 500):
        save(tmp_path, step, model, keep=2)
    assert steps_on_disk(tmp_path) == ["step_000400", "step_000500"]
    assert ckpt.find_latest(tmp_path).name == "step_000500"
    # the order is by step number, not by name or time: step 1000 is newer than step 500
    save(tmp_path, 1000, model, keep=2)
    assert steps_on_disk(tmp_path) == ["step_000500", "step_001000"]


def test_keep_zero_keeps_every_checkpoint(tmp_path):
    model = tiny_model()
    for step in (1, 2, 3, 4):
        save(tmp_path, step, model, keep=0)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [
        "step_000001",
        "step_000002",
        "step_000003",
        "step_000004",
    ]


def test_a_crashed_save_is_neither_latest_nor_counted_and_is_cleaned_up(tmp_path):
    model = tiny_model()
    save(tmp_path, 1, model, keep=2)
    save(tmp_path, 2, model, keep=2)
    crashed = tmp_path / "step_000003.tmp"  # what a crash mid-save leaves
    crashed.mkdir()
    (crashed / "model.pt").write_bytes(b"half a file")
    no_meta = tmp_path / "step_000004"  # a directory that never got its meta.json
    no_meta.mkdir()
    assert ckpt.find_latest(tmp_path).name == "step_000002"
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_000001", "step_000002"]
    save(tmp_path, 3, model, keep=2)  # the same step again: the leftover is replaced
    assert not crashed.exists()
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_000002", "step_000003"]


def test_a_checkpoint_older_than_the_model_options_loads_with_their_defaults(tmp_path):
    model = tiny_model()
    path = save(tmp_path, 7, model, keep=1)
    meta = json.loads((path / "meta.json").read_text())
    for name in ("rope_base", "fused_loss", "loss_kernel"):  # fields added after it was written
        del meta["model_config"][name]
    (path / "meta.json").write_text(json.dumps(meta))
    loaded, _, _ = load_model(str(path))
    defaults = ModelOptions()
    assert loaded.config.rope_base == defaults.rope_base
    assert loaded.config.fused_loss is None and loaded.config.loss_kernel is None
    idx = torch.randint(0, 259, (1, 8))
    torch.testing.assert_close(loaded(idx), model(idx))


def test_model_options_are_recorded_in_the_checkpoint(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(
        n_layer=1, n_head=2, n_embd=16, vocab_size=259, sequence_len=16, rope_base=500.0
    )
    model = GPT(dataclasses.replace(cfg, fused_loss=False))
    loaded, _, _ = load_model(str(save(tmp_path, 1, model, keep=1)))
    assert loaded.config.rope_base == 500.0 and loaded.config.fused_loss is False
    torch.testing.assert_close(loaded.rope_cos, model.rope_cos)
    assert not torch.allclose(loaded.rope_cos, tiny_model().rope_cos)  # base 10,000's differ


def test_bad_model_options_are_errors_that_name_the_option():
    with pytest.raises(ValueError, match="--loss-kernel 'cuda' is not one of torch, triton"):
        ModelConfig(loss_kernel="cuda")
    with pytest.raises(ValueError, match="--rope-base must be > 0"):
        ModelConfig(rope_base=0.0)
