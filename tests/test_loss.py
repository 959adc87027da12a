"""The fused, chunked head + loss equals the plain one: loss, per-token losses and gradients."""

from dataclasses import replace

import pytest
import torch

from nanogpt.config import ModelConfig
from nanogpt.model import GPT


def pair(loss_kernel=None, **overrides):
    """Two models with the same weights: one on the default (fused) loss path with
    ``loss_kernel``, one on the plain full-logits path (``fused_loss=False``)."""
    cfg = ModelConfig(n_layer=2, n_head=2, n_embd=64, sequence_len=32, **overrides)
    torch.manual_seed(0)
    fused = GPT(replace(cfg, loss_kernel=loss_kernel))
    with torch.no_grad():
        for p in fused.parameters():
            p.normal_(0.0, 0.1)
    plain = GPT(replace(cfg, fused_loss=False))
    plain.load_state_dict(fused.state_dict())
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


def five_adamw_steps(model: GPT, idx: torch.Tensor) -> list[float]:
    """The losses of five AdamW steps on next-token targets of ``idx``."""
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = model(idx, idx.roll(-1, dims=1))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.slow  # 20 s on a shared 2-core CPU (2026-12-03)
def test_training_with_the_fused_loss_follows_the_plain_one():
    fused, plain = pair()
    idx = torch.randint(0, 200, (4, 32))
    assert five_adamw_steps(fused, idx) == pytest.approx(five_adamw_steps(plain, idx), rel=1e-4)


# --- the Triton kernel (nanogpt/triton_loss.py): on a CPU through Triton's interpreter ----------


def _triton_or_skip(device: str) -> None:
    from nanogpt import triton_loss

    if not triton_loss.available(torch.device(device)):
        pytest.skip(f"Triton cannot run on {device} here")


@pytest.mark.parametrize(
    "softcap,z_loss,vocab,padded",
    [(15.0, 0.0, 300, 320), (0.0, 1e-3, 300, 300), (15.0, 1e-4, 50, 64), (60.0, 0.0, 129, 129)],
)
def test_triton_kernel_rows_equal_the_torch_chunk(softcap, z_loss, vocab, padded):
    from nanogpt.loss import _chunk_loss_and_grads
    from nanogpt.triton_loss import softcap_ce_rows_

    _triton_or_skip("cpu")
    torch.manual_seed(0)
    h, w = torch.randn(7, 16), torch.randn(padded, 16)
    targets = torch.randint(0, vocab, (7,))
    targets[2] = -1
    logits = h @ w.t()
    rows = softcap_ce_rows_(logits, targets, vocab, softcap, z_loss)  # logits -> gradient
    ref_loss, ref_grad_h, ref_grad_w = _chunk_loss_and_grads(h, w[:vocab], targets, softcap, z_loss)
    assert rows[2] == 0.0  # the ignored row
    torch.testing.assert_close(rows.sum(), ref_loss, rtol=1e-5, atol=1e-5)
    assert torch.all(logits[:, vocab:] == 0)  # padding columns: no gradient
    assert torch.all(logits[2] == 0)
    torch.testing.assert_close(logits[:, :vocab] @ w[:vocab], ref_grad_h, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits[:, :vocab].t() @ h, ref_grad_w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("overrides", [dict(), dict(z_loss=1e-3), dict(tie_embeddings=True)])
def test_model_loss_and_gradients_with_the_triton_kernel_match_the_plain_path(overrides):
    """The optimised path (Triton kernel, big chunks, padded head) computes the same thing."""
    _triton_or_skip("cpu")
    # vocab 1000, padded to 1024: the interpreter is slow
    fused, plain = pair(loss_kernel="triton", vocab_size=1000, **overrides)
    idx = torch.randint(0, 1000, (2, 32))
    targets = idx.roll(-1, dims=1)
    targets[1, :3] = -1
    a = fused(idx, targets)
    a.backward()
    b = plain(idx, targets)
    b.backward()
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for (name, p), (_, q) in zip(fused.named_parameters(), plain.named_parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("loss_chunk_rows", [16, 100, 128])  # uneven, a few, one chunk
def test_model_loss_chunk_rows_changes_nothing_computed(loss_chunk_rows):
    """ModelConfig.loss_chunk_rows (a speed option: taller chunks on a GPU) gives the default
    chunking's loss and gradients; and a chunk size below 1 is refused, naming the flag."""
    default, _ = pair()
    chunked, _ = pair(loss_chunk_rows=loss_chunk_rows)
    idx = torch.randint(0, 200, (4, 32), generator=torch.Generator().manual_seed(3))
    targets = idx.roll(-1, dims=1)
    losses = []
    for model in (default, chunked):
        loss = model(idx, targets)
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-6, atol=1e-6)
    named = zip(default.named_parameters(), chunked.named_parameters(), strict=True)
    for (name, p), (_, q) in named:
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-7, msg=name)
    with pytest.raises(ValueError, match="--loss-chunk-rows"):
        ModelConfig(n_layer=2, n_head=2, n_embd=64, loss_chunk_rows=0)


@pytest.mark.slow  # 13 s on a shared 2-core CPU (2026-12-03)
def test_triton_chunk_loop_does_not_depend_on_the_chunk_size():
    from nanogpt.loss import fused_head_loss

    _triton_or_skip("cpu")
    torch.manual_seed(0)
    targets = torch.randint(0, 300, (100,))
    targets[:7] = -1
    results = []
    for chunk_rows in (100, 40, 7):  # one chunk, uneven chunks, many chunks
        h = torch.randn(100, 16, generator=torch.Generator().manual_seed(1), requires_grad=True)
        w = torch.randn(320, 16, generator=torch.Generator().manual_seed(2), requires_grad=True)
        loss = fused_head_loss(h, w, targets, 300, 15.0, 1e-4, chunk_rows, kernel="triton")
        loss.backward()
        results.append((loss.detach(), h.grad, w.grad))
    for other in results[1:]:
        for x, y in zip(results[0], other, strict=True):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
def test_triton_path_matches_plain_on_gpu_in_bf16():
    """On a GPU the auto path is the Triton one; in bf16 autocast it follows the plain path."""
    from nanogpt import dist

    _triton_or_skip("cuda")
    fused, plain = pair()
    fused, plain = fused.cuda(), plain.cuda()
    idx = torch.randint(0, 50259, (4, 32), device="cuda")
    targets = idx.roll(-1, dims=1)
    out = []
    for model in (fused, plain):
        with dist.autocast(torch.device("cuda")):
            loss = model(idx, targets)
        loss.backward()
        out.append(loss.detach())
    torch.testing.assert_close(out[0], out[1], rtol=2e-3, atol=2e-3)
    for (name, p), (_, q) in zip(fused.named_parameters(), plain.named_parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=5e-2, atol=5e-4, msg=name)


@pytest.mark.slow  # 55 s on a shared 2-core CPU (2026-12-03)
def test_training_on_the_optimised_path_follows_the_plain_one():
    """Five AdamW steps through the GPU path's loss (Triton kernel, chunked, padded head) give
    the losses of the plain path: the speed work changes nothing that is computed."""
    _triton_or_skip("cpu")
    fast, plain = pair(loss_kernel="triton", vocab_size=1000)
    idx = torch.randint(0, 1000, (4, 32))
    fast_losses = five_adamw_steps(fast, idx)
    assert fast_losses[-1] < fast_losses[0]  # it trains
    assert fast_losses == pytest.approx(five_adamw_steps(plain, idx), rel=1e-4)


def test_hardware_tanh_is_asked_for_on_a_cpu_and_the_exact_form_runs():
    """The interpreter has no PTX: hw_tanh=True on a CPU computes what hw_tanh=False does."""
    from nanogpt.triton_loss import softcap_ce_rows_

    _triton_or_skip("cpu")
    torch.manual_seed(0)
    logits = 8.0 * torch.randn(6, 320)
    targets = torch.randint(0, 300, (6,))
    out = []
    for hw_tanh in (True, False, None):
        grads = logits.clone()
        out.append((softcap_ce_rows_(grads, targets, 300, 15.0, 1e-4, hw_tanh=hw_tanh), grads))
    for rows, grads in out[1:]:
        assert torch.equal(rows, out[0][0]) and torch.equal(grads, out[0][1])


def test_kernel_block_orders_the_sum_only():
    """Another block and warps (the launch benchmarks/loss_kernel.py tries) give the same loss
    and gradient up to the order of each row's sum."""
    from nanogpt.triton_loss import softcap_ce_rows_

    _triton_or_skip("cpu")
    torch.manual_seed(0)
    logits = 8.0 * torch.randn(5, 320)
    targets = torch.randint(0, 300, (5,))
    targets[1] = -1
    out = []
    for launch in ({}, {"block": 64, "num_warps": 2}):
        grads = logits.clone()
        out.append((softcap_ce_rows_(grads, targets, 300, 15.0, 1e-4, **launch), grads))
    torch.testing.assert_close(out[0][0], out[1][0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out[0][1], out[1][1], rtol=1e-5, atol=1e-8)
    assert torch.equal(out[1][1][1], torch.zeros(320))  # the ignored row
    for bad in ({"block": 100}, {"block": 8}, {"num_warps": 3}):
        with pytest.raises(ValueError, match="block|num_warps"):
            softcap_ce_rows_(logits.clone(), targets, 300, 15.0, 1e-4, **bad)


@pytest.mark.gpu
@pytest.mark.parametrize("softcap", [15.0, 60.0])
def test_hardware_tanh_on_gpu_follows_the_exact_kernel(softcap):
    """On a GPU the default kernel takes tanh from one instruction (tanh.approx.f32): per row
    the loss and the bf16 gradient follow the exact form to well within bf16's rounding of the
    logits, over GPT-2's padded vocabulary, huge logits included."""
    from nanogpt.loss import _chunk_loss_and_grads
    from nanogpt.triton_loss import softcap_ce_rows_

    _triton_or_skip("cuda")
    torch.manual_seed(0)
    h = torch.randn(64, 64, device="cuda")
    h[:4] *= 40.0  # rows far past the cap
    w = torch.randn(50304, 64, device="cuda") / 2.0
    targets = torch.randint(0, 50257, (64,), device="cuda")
    targets[5] = -1
    logits = (h @ w.t()).bfloat16()
    ref_loss, ref_grad_h, _ = _chunk_loss_and_grads(
        h, w[:50257], targets, softcap, 1e-4
    )  # fp32 reference (from fp32 logits)
    rows = {}
    for hw_tanh in (True, False):
        grads = logits.clone()
        rows[hw_tanh] = (
            softcap_ce_rows_(grads, targets, 50257, softcap, 1e-4, hw_tanh=hw_tanh),
            grads,
        )
    (fast, fast_g), (exact, exact_g) = rows[True], rows[False]
    assert torch.isfinite(fast).all() and torch.isfinite(fast_g.float()).all()
    torch.testing.assert_close(fast, exact, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(fast_g.float(), exact_g.float(), rtol=2e-2, atol=1e-5)
    # both against the fp32 reference, to the bf16 rounding of the logits
    torch.testing.assert_close(fast.sum(), ref_loss, rtol=2e-3, atol=1e-2)
    cosine = torch.nn.functional.cosine_similarity(
        (fast_g[:, :50257].float() @ w[:50257]).flatten(), ref_grad_h.flatten(), dim=0
    )
    assert cosine > 0.999


@pytest.mark.parametrize("softcap", [15.0, 60.0])
def test_triton_kernel_saturates_cleanly_on_huge_logits(softcap):
    """Logits far past the cap (tanh = ±1, exp overflowing to inf inside the kernel's tanh) give
    the reference loss and gradient, with no NaN."""
    from nanogpt.loss import _chunk_loss_and_grads
    from nanogpt.triton_loss import softcap_ce_rows_

    _triton_or_skip("cpu")
    torch.manual_seed(3)
    h, w = 40.0 * torch.randn(5, 16), torch.randn(64, 16)
    targets = torch.randint(0, 64, (5,))
    logits = h @ w.t()  # |logits| up to a few hundred
    rows = softcap_ce_rows_(logits, targets, 64, softcap, 0.0)
    ref_loss, ref_grad_h, _ = _chunk_loss_and_grads(h, w, targets, softcap, 0.0)
    assert torch.isfinite(rows).all() and torch.isfinite(logits).all()
    torch.testing.assert_close(rows.sum(), ref_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits @ w, ref_grad_h, rtol=1e-4, atol=1e-4)


def test_fp8_head_follows_the_bf16_head_to_fp8_precision():
    """The FP8 path (e4m3 logits GEMM, e5m2 gradient GEMM, per-tensor scales) computes the same
    loss and gradients as the exact path up to FP8 rounding: here on a CPU (torch's
    _scaled_mm there, the kernel in Triton's interpreter); the model allows it on GPUs only."""
    from nanogpt.loss import fused_head_loss

    _triton_or_skip("cpu")
    torch.manual_seed(0)
    targets = torch.randint(0, 300, (64,))
    targets[:3] = -1
    out = {}
    for kernel in ("triton", "triton-fp8"):
        h = torch.randn(64, 32, generator=torch.Generator().manual_seed(1), requires_grad=True)
        w = (
            0.3 * torch.randn(320, 32, generator=torch.Generator().manual_seed(2))
        ).requires_grad_()
        loss = fused_head_loss(h, w, targets, 300, 15.0, 0.0, 32, kernel=kernel)
        loss.backward()
        out[kernel] = (loss.detach(), h.grad, w.grad)
    exact, fp8 = out["triton"], out["triton-fp8"]
    assert fp8[0] == pytest.approx(exact[0].item(), rel=5e-3)
    for a, b in zip(exact[1:], fp8[1:], strict=True):
        cosine = torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)
        assert cosine > 0.995
        assert torch.isfinite(b).all()


def test_fp8_head_is_refused_off_the_gpu():
    fast, _ = pair(fp8_head=True)
    idx = torch.randint(0, 50259, (1, 8))
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        fast(idx, idx.roll(-1, 1))
    with torch.no_grad():  # evaluation is not the training loss: it runs exactly, in bf16/fp32
        assert torch.isfinite(fast(idx, idx.roll(-1, 1)))


@pytest.mark.gpu
def test_fp8_head_on_gpu_follows_the_bf16_head():
    """On a GPU with FP8 tensor cores: the model's FP8 head gives the bf16 head's loss and
    gradients to FP8 precision."""
    from nanogpt import dist

    _triton_or_skip("cuda")
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("needs FP8 tensor cores (compute capability 8.9+)")
    bf16, _ = pair()
    fp8 = GPT(ModelConfig(n_layer=2, n_head=2, n_embd=64, sequence_len=32, fp8_head=True))
    fp8.load_state_dict(bf16.state_dict())
    fp8, bf16 = fp8.cuda(), bf16.cuda()
    idx = torch.randint(0, 50259, (4, 32), device="cuda")
    out = []
    for model in (fp8, bf16):
        with dist.autocast(torch.device("cuda")):
            loss = model(idx, idx.roll(-1, dims=1))
        loss.backward()
        out.append(loss.detach())
    assert out[0].item() == pytest.approx(out[1].item(), rel=1e-2)
    for (name, p), (_, q) in zip(fp8.named_parameters(), bf16.named_parameters(), strict=True):
        cosine = torch.nn.functional.cosine_similarity(p.grad.flatten(), q.grad.flatten(), dim=0)
        assert cosine > 0.98, name
