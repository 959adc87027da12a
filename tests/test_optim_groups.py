"""build_optimizer: which parameters Muon gets and which AdamW gets, and each group's learning
rate and weight decay against the rules of docs/README_DEPTH_PARAMETERIZATION.md, written out
here independently of nanogpt.scaling:

- Muon (the block matrices): lr_muon at every width;
- AdamW (embedding, head, vectors): lr_adamw x (n_embd / 768) ** -0.5;
- weight decay: lr x wd, the decay per step, is lr_adamw x weight_decay for every decayed group
  (the vectors are not decayed).
"""

from __future__ import annotations

import pytest
import torch

from nanogpt.config import ModelConfig, TrainConfig
from nanogpt.model import GPT
from nanogpt.train import build_optimizer


def _model(depth: int, tie: bool = False) -> GPT:
    torch.manual_seed(0)
    cfg = ModelConfig.from_depth(depth, sequence_len=32, vocab_size=259)
    if tie:
        cfg = ModelConfig(**{**cfg.__dict__, "tie_embeddings": True})
    return GPT(cfg)


def _groups(opt) -> dict[str, dict]:
    return {g["name"]: g for g in opt.param_groups}


@pytest.mark.parametrize("depth", [1, 3])
def test_every_parameter_is_in_exactly_one_group_of_the_right_kind(depth):
    model = _model(depth)
    opt = build_optimizer(model, TrainConfig())
    seen = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in model.parameters())  # all, and none twice
    groups = _groups(opt)
    blocks = dict(model.transformer.h.named_parameters())
    matrices = {id(p) for p in blocks.values() if p.ndim == 2}
    assert matrices, "a block with no matrices"
    muon = [g for g in opt.param_groups if g["kind"] == "muon"]
    assert [g["name"] for g in muon] == ["matrix"]
    assert {id(p) for p in muon[0]["params"]} == matrices
    assert all(p.ndim == 2 for p in muon[0]["params"])
    # AdamW: the embedding, the untied head, and every vector and scalar of the blocks
    assert [p is model.transformer.wte.weight for p in groups["embedding"]["params"]] == [True]
    assert [p is model.lm_head.weight for p in groups["lm_head"]["params"]] == [True]
    vectors = {id(p) for p in blocks.values() if p.ndim != 2}
    if vectors:
        assert {id(p) for p in groups["vector"]["params"]} == vectors
    for name in ("embedding", "lm_head"):
        assert groups[name]["kind"] == "adamw"


def test_a_tied_head_is_not_a_group_of_its_own():
    model = _model(2, tie=True)
    names = [g["name"] for g in build_optimizer(model, TrainConfig()).param_groups]
    assert "lm_head" not in names and names.count("embedding") == 1


@pytest.mark.parametrize("depth", [1, 2, 4, 12])
def test_learning_rates_and_weight_decay_follow_the_documented_rules(depth):
    cfg = TrainConfig(lr_adamw=6e-4, lr_muon=0.02, weight_decay=0.1)
    model = _model(depth) if depth <= 4 else None
    if model is None:  # DEPTH 12 is too big to build here often: the rule needs only the width
        model = GPT(ModelConfig(n_layer=1, n_head=12, n_embd=768, vocab_size=259, sequence_len=8))
    width = model.config.n_embd
    groups = _groups(build_optimizer(model, cfg))
    adamw_lr = 6e-4 * (width / 768) ** -0.5
    assert groups["matrix"]["lr"] == pytest.approx(0.02)  # Muon: no width multiplier
    for name in ("embedding", "lm_head", "vector"):
        if name in groups:
            assert groups[name]["lr"] == pytest.approx(adamw_lr), name
    for name in ("matrix", "embedding", "lm_head"):
        g = groups[name]
        assert g["lr"] * g["weight_decay"] == pytest.approx(6e-4 * 0.1), name
    if "vector" in groups:
        assert groups["vector"]["weight_decay"] == 0.0
    if width == 768:
        assert groups["embedding"]["lr"] == pytest.approx(6e-4)  # the reference width
    # The schedule multiplies initial_lr: it starts as the peak rate of each group.
    assert all(g["initial_lr"] == g["lr"] for g in groups.values())


def test_betas_momentum_and_clipping_come_from_the_config():
    cfg = TrainConfig(adam_beta1=0.8, adam_beta2=0.99, muon_momentum=0.9, grad_clip=0.5)
    opt = build_optimizer(_model(1), cfg)
    groups = _groups(opt)
    assert groups["matrix"]["momentum"] == 0.9
    assert groups["embedding"]["betas"] == (0.8, 0.99)
    assert opt.max_grad_norm == 0.5
    assert build_optimizer(_model(1), TrainConfig(grad_clip=0.0)).max_grad_norm is None


def test_the_fast_optimizer_is_on_with_cuda_only_unless_asked():
    """TrainConfig.fast_optimizer: None turns MuonAdamW's speed options on for CUDA devices and
    leaves CPU runs (the embedded demo) as they were; True and False say so on any device; and
    the options reach the optimizer."""
    from nanogpt.optim.build import FAST_OPTIONS, optimizer_options

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert optimizer_options(TrainConfig(), cpu) == {}
    assert optimizer_options(TrainConfig(), cuda) == FAST_OPTIONS
    assert optimizer_options(TrainConfig(fast_optimizer=True), cpu) == FAST_OPTIONS
    assert optimizer_options(TrainConfig(fast_optimizer=False), cuda) == {}
    opt = build_optimizer(_model(1), TrainConfig(), fast_muon=True, compile_adamw=True)
    assert opt.fast_muon and opt.compile_adamw and not opt.compile_muon
