import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from nanogpt.config import ModelConfig, gpt2
from nanogpt.model import GPT, model_summary


def tiny(**overrides) -> ModelConfig:
    base = dict(n_layer=2, n_head=2, n_embd=64, sequence_len=32)
    base.update(overrides)
    return ModelConfig(**base)


def randomised(cfg: ModelConfig, seed: int = 0) -> GPT:
    """A model whose every weight is non-zero (the real init zeroes the residual projections)."""
    torch.manual_seed(seed)
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model.eval()


def test_causality_changing_token_t_changes_no_earlier_logit():
    model = randomised(tiny())
    idx = torch.randint(0, 50259, (2, 24))
    base = model(idx)
    for t in (0, 7, 23):
        changed = idx.clone()
        changed[:, t] = (changed[:, t] + 1234) % 50259
        out = model(changed)
        assert torch.equal(out[:, :t], base[:, :t]), f"a logit before position {t} changed"
        assert not torch.allclose(out[:, t:], base[:, t:]), "changing a token changed nothing"


def test_gpt2_preset_shape_and_parameter_counts():
    cfg = gpt2()
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.sequence_len) == (12, 12, 768, 1024)
    assert cfg.padded_vocab_size == 50304 and cfg.padded_vocab_size % 64 == 0
    model = GPT(cfg)
    counts = model.param_counts()
    assert counts["params_nonembedding"] == 12 * 12 * 768**2 == 84_934_656
    assert counts["params_embedding"] == 50304 * 768
    assert counts["params_total"] == 162_201_600
    assert counts["params_scaling"] == 123_568_128
    assert counts["params_total"] == sum(p.numel() for p in model.parameters())
    assert model_summary(cfg) | counts == model_summary(cfg)


def test_tied_embeddings_count_once():
    model = GPT(tiny(tie_embeddings=True))
    assert model.lm_head.weight is model.transformer.wte.weight
    assert model.param_counts()["params_total"] == sum(p.numel() for p in model.parameters())
    assert model_summary(model.config)["params_total"] == model.param_counts()["params_total"]


@pytest.mark.parametrize(
    "depth,seq_len",
    [
        (2, 128),
        pytest.param(4, 256, marks=pytest.mark.slow),  # 13 s on a shared 2-core CPU (2026-12-03)
        pytest.param(6, 64, marks=pytest.mark.slow),  # 12 s
    ],
)
def test_flops_per_token_matches_torch_flop_counter(depth, seq_len):
    # The math SDPA backend runs attention as plain matmuls, which the counter sees; it counts
    # matmuls only (norms, softmax, rotary, loss are left out, and so is our formula).
    model = GPT(ModelConfig.from_depth(depth, sequence_len=seq_len))
    idx = torch.randint(0, 50259, (1, seq_len))
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        model(idx, idx).backward()
    measured = counter.get_total_flops() / seq_len
    assert measured == pytest.approx(model.flops_per_token(), rel=0.03)


def test_initial_loss_is_near_uniform():
    torch.manual_seed(0)
    model = GPT(tiny())
    idx = torch.randint(0, 50259, (4, 32))
    loss = model(idx, idx).item()
    assert abs(loss - torch.log(torch.tensor(50259.0)).item()) < 0.05


def test_padded_ids_are_never_produced():
    model = randomised(tiny())
    logits = model(torch.randint(0, 50259, (1, 8)))
    assert logits.shape[-1] == 50259  # the padded rows are cut off
    with torch.no_grad():
        model.lm_head.weight[50259:] = 100.0  # make padded rows dominate if they were visible
    assert model(torch.randint(0, 50259, (1, 8))).argmax(-1).max() < 50259


def test_masked_targets_are_ignored():
    model = randomised(tiny())
    idx = torch.randint(0, 50259, (2, 16))
    targets = idx.clone()
    targets[:, :8] = -1
    per_token = model(idx, idx, loss_reduction="none")
    assert model(idx, targets).item() == pytest.approx(per_token[:, 8:].mean().item(), rel=1e-5)


def test_softcap_bounds_logits_and_z_loss_adds_to_the_loss():
    model = randomised(tiny(logit_softcap=5.0))
    idx = torch.randint(0, 50259, (1, 16))
    assert model(idx).abs().max() <= 5.0
    plain = randomised(tiny(logit_softcap=0.0))(idx, idx)
    with_z = randomised(tiny(logit_softcap=0.0, z_loss=1e-2))(idx, idx)
    assert with_z > plain


@pytest.mark.slow  # 57 s on a shared 2-core CPU (2026-12-03)
def test_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    model = GPT(tiny())
    idx = torch.randint(0, 100, (4, 32))  # a tiny vocabulary slice: easy to fit
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = model(idx, idx).item()
    for _ in range(20):
        opt.zero_grad()
        model(idx, idx).backward()
        opt.step()
    assert model(idx, idx).item() < first - 1.0


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(n_embd=100, n_head=3), "n_embd=100 is not divisible by n_head=3"),
        (dict(n_layer=0), "n_layer must be a positive"),
        (dict(n_embd=96, n_head=32), "must be even"),
        (dict(logit_softcap=-1.0), "logit_softcap"),
    ],
)
def test_bad_model_configs_name_the_value(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny(**overrides)


def test_too_long_sequence_is_an_error():
    model = GPT(tiny())
    with pytest.raises(ValueError, match="longer than the model's context"):
        model(torch.zeros(1, 33, dtype=torch.long))


def test_fused_qkv_is_the_three_projections_in_one_gemm():
    """One (3C, C) GEMM gives the logits and the gradients of the three separate projections;
    the parameters (and so Muon's per-matrix updates and checkpoints) are the same three."""
    fused = randomised(tiny(fused_qkv=True))
    plain = GPT(tiny(fused_qkv=False))
    plain.load_state_dict(fused.state_dict())
    assert list(fused.state_dict()) == list(plain.state_dict())
    assert [p.shape for p in fused.parameter_kinds()["matrix"]] == [
        p.shape for p in plain.parameter_kinds()["matrix"]
    ]
    idx = torch.randint(0, 50259, (2, 24))
    torch.testing.assert_close(fused(idx), plain.eval()(idx), rtol=1e-5, atol=1e-5)
    fused.fused_loss = plain.fused_loss = False
    a, b = fused(idx, idx.roll(-1, 1)), plain(idx, idx.roll(-1, 1))
    a.backward()
    b.backward()
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    for (name, p), (_, q) in zip(fused.named_parameters(), plain.named_parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=name)
