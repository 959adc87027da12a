"""The fused, chunked head + loss equals the plain one: loss, per-token losses and gradients."""

import pytest
import torch

from nanogpt.config import ModelConfig
from nanogpt.model import GPT


def pair(**overrides):
    cfg = ModelConfig(n_layer=2, n_head=2, n_embd=64, sequence_len=32, **overrides)
    torch.manual_seed(0)
    fused = GPT(cfg)
    with torch.no_grad():
        for p in fused.parameters():
            p.normal_(0.0, 0.1)
    plain = GPT(cfg)
    plain.load_state_dict(fused.state_dict())
    plain.fused_loss = False
    return fused, plain


@pytest.mark.parametrize(
    "overrides",
    [dict(), dict(logit_softcap=0.0), dict(z_loss=1e-3), dict(tie_embeddings=True)],
)
def test_fused_loss_and_gradients_match_the_plain_path(overrides):
    fused, plain = pair(**overrides)
    idx = torch.randint(0, 50259, (3, 32))
    targets = idx.roll(-1, dims=1)
    targets[0, :5] = -1  # some ignored positions
    losses = []
    for model in (fused, plain):
        loss = model(idx, targets)
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    for (name, a), (_, b) in zip(fused.named_parameters(), plain.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_per_token_losses_match_without_gradients():
    fused, plain = pair()
    idx = torch.randint(0, 50259, (2, 32))
    with torch.no_grad():
        a = fused(idx, idx, loss_reduction="none")
        b = plain(idx, idx, loss_reduction="none")
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            fused(idx, idx, loss_reduction="sum"), plain(idx, idx, loss_reduction="sum")
        )


def test_training_with_the_fused_loss_follows_the_plain_one():
    fused, plain = pair()
    idx = torch.randint(0, 200, (4, 32))
    trajectories = []
    for model in (fused, plain):
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        losses = []
        for _ in range(5):
            opt.zero_grad()
            loss = model(idx, idx.roll(-1, dims=1))
            loss.backward()
            opt.step()
            losses.append(loss.item())
        trajectories.append(losses)
    assert trajectories[0] == pytest.approx(trajectories[1], rel=1e-4)
