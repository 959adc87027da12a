import pytest

from nanogpt import scaling
from nanogpt.config import ModelConfig, gpt2
from nanogpt.model import GPT
from nanogpt.tokenizer import BYTE_N_VOCAB, N_VOCAB


def test_depth_12_is_exactly_gpt2():
    shape = scaling.shape_for_depth(12)
    cfg = gpt2()
    assert (shape.n_layer, shape.n_embd, shape.n_head) == (cfg.n_layer, cfg.n_embd, cfg.n_head)
    assert (shape.n_layer, shape.n_embd, shape.n_head) == (12, 768, 12)


@pytest.mark.parametrize("depth", range(1, 21))
def test_every_depth_has_64_wide_heads_and_a_valid_config(depth):
    shape = scaling.shape_for_depth(depth)
    assert shape.head_dim == 64 and shape.n_embd == 64 * depth
    cfg = ModelConfig.from_depth(depth)
    assert cfg.shape == shape


def test_parameter_counts_grow_with_depth():
    counts = [
        scaling.param_counts(scaling.shape_for_depth(d))["params_scaling"] for d in range(1, 21)
    ]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)


def _group_of(name: str) -> str:
    """Which part of the model a parameter belongs to, from where it sits in the module tree."""
    if name == "transformer.wte.weight":
        return "embedding"
    if name == "lm_head.weight":
        return "lm_head"
    parts = name.split(".")
    if parts[:2] == ["transformer", "h"] and parts[3] in ("attn", "mlp"):
        return "attention" if parts[3] == "attn" else "mlp"
    raise AssertionError(f"parameter {name} is in no group the formula counts")


SHAPES = [  # (depth, aspect_ratio, head_dim): GPT-2's ratio and the CPU sweep's smaller ones
    (1, 64, 64),
    (2, 64, 64),
    (3, 16, 16),
    (5, 16, 16),
    (4, 32, 16),
    (2, 24, 8),
]


@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("vocab", [N_VOCAB, BYTE_N_VOCAB], ids=["gpt2", "bytes"])
@pytest.mark.parametrize("depth,aspect_ratio,head_dim", SHAPES)
def test_param_counts_match_a_real_model_group_by_group(depth, aspect_ratio, head_dim, vocab, tie):
    """The formula against the numel of a built GPT's parameters, by where each one sits."""
    cfg = ModelConfig.from_depth(
        depth,
        aspect_ratio=aspect_ratio,
        head_dim=head_dim,
        vocab_size=vocab,
        sequence_len=16,
        tie_embeddings=tie,
    )
    model = GPT(cfg)
    measured = dict.fromkeys(("embedding", "attention", "mlp", "lm_head"), 0)
    for name, p in model.named_parameters():  # a tied head is listed once, as the embedding
        measured[_group_of(name)] += p.numel()
    formula = scaling.param_groups(cfg.shape)
    head = model.lm_head.weight.numel()
    assert measured == {**formula, "lm_head": 0 if tie else formula["lm_head"]}
    assert head == formula["lm_head"]  # the head's matmul is there tied or not

    counts = scaling.param_counts(cfg.shape)
    blocks = measured["attention"] + measured["mlp"]
    assert counts == {
        "params_total": sum(p.numel() for p in model.parameters()),
        "params_nonembedding": blocks,
        "params_scaling": blocks + head,
        "params_embedding": model.transformer.wte.weight.numel(),
    }
    assert model.param_counts() == counts  # the model's own counter agrees
    assert model.flops_per_token() == scaling.flops_per_token(cfg.shape)


def test_budget_to_steps_never_exceeds_the_budget():
    shape = scaling.shape_for_depth(12)
    steps, tokens = scaling.budget_to_steps(1e18, shape, 524_288)
    assert steps == 2231 and tokens == steps * 524_288
    assert tokens * scaling.flops_per_token(shape) <= 1e18
    assert (tokens + 524_288) * scaling.flops_per_token(shape) > 1e18


@pytest.mark.parametrize("depth", [0, -3, 2.5, True])
def test_bad_depth_names_the_value(depth):
    with pytest.raises(ValueError, match="DEPTH"):
        scaling.shape_for_depth(depth)


def test_a_budget_too_small_for_one_step_names_the_budget():
    with pytest.raises(ValueError, match="budget of 1e\\+12 is too small"):
        scaling.budget_to_steps(1e12, scaling.shape_for_depth(12), 524_288)


def test_learning_rate_and_weight_decay_scaling():
    assert scaling.lr_width_multiplier(768) == 1.0
    assert scaling.lr_width_multiplier(4 * 768) == pytest.approx(0.5)
    # lr * weight decay (the decay per step) is unchanged by the width scaling
    m = scaling.lr_width_multiplier(1536)
    assert 6e-4 * m * scaling.weight_decay_for_lr(0.1, m) == pytest.approx(6e-4 * 0.1)


def test_depth_table_command_prints_every_depth(capsys):
    scaling.main(["--depths", "2..20"])
    out = capsys.readouterr().out
    assert out.count("\n") == 2 + 19
    assert "| 12 | 12 | 768 | 12 | 162.2 M | 84.9 M | 123.6 M | 854.7 M | 2,231 |" in out


def test_the_width_multiple_is_a_setting_and_depth_stays_the_one_dial():
    shape = scaling.shape_for_depth(3, seq_len=128, vocab_size=259, aspect_ratio=8, head_dim=8)
    assert (shape.n_layer, shape.n_embd, shape.n_head) == (3, 24, 3)
    counts = scaling.param_counts(shape)
    assert counts["params_nonembedding"] == 12 * 3 * 24 * 24
    assert counts["params_scaling"] == 12 * 3 * 24 * 24 + 320 * 24  # 259 ids padded to 320
    with pytest.raises(ValueError, match="not a multiple of head_dim 64"):
        scaling.shape_for_depth(3, aspect_ratio=16)
