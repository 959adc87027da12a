"""The output head and cross-entropy fused, chunk by chunk, so full logits never exist.

A GPT-2 step at batch 32 × 1024 has 32,768 rows of 50,304 logits: 6.6 GB in fp32, written,
soft-capped, log-softmaxed and read back several times, forward and backward. Here the head's
matmul, the soft-cap, the log-sum-exp and the gradient with respect to the logits are done for
``chunk_rows`` rows at a time; the gradients for the hidden states and the head's weight are
finished in the same pass, so backward only scales them. Peak memory for the loss drops from a
few full-size tensors to a few chunk-size ones, and on a CPU (where every fresh 400 MB tensor
costs page faults) it is several times faster.

The same idea is Liger-Kernel's fused linear cross-entropy (Hsu et al. 2024, arXiv:2410.10989);
this is a plain-PyTorch version of it. On a GPU with Triton the per-chunk elementwise work
(soft-cap, log-sum-exp, softmax, one-hot, z-loss, tanh derivative) is one kernel that turns the
bf16 logits into their gradient in place (nanogpt/triton_loss.py), and chunks are 32,768 rows.
``tests/test_loss.py`` checks loss and gradients of both kernels against the unfused path.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from nanogpt import triton_loss


def _mm_dtype(device: torch.device) -> torch.dtype:
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return torch.float32


def _chunk_logits(
    h: torch.Tensor, w: torch.Tensor, softcap: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """fp32 logits for a chunk of rows, soft-capped; also tanh's output for the backward."""
    logits = (h @ w.t()).float()
    if softcap > 0:
        t = torch.tanh(logits / softcap)
        return t * softcap, t
    return logits, None


def _chunk_loss_and_grads(
    hc: torch.Tensor, w: torch.Tensor, tc: torch.Tensor, softcap: float, z_loss: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For one chunk of rows: summed loss, d(sum)/d(hc) and d(sum)/d(w) (ignored rows: 0)."""
    valid = tc != -1
    safe_t = tc.clamp(min=0)
    logits, t = _chunk_logits(hc, w, softcap)  # (n, V) fp32
    lse = torch.logsumexp(logits, dim=-1)
    row_loss = lse - logits.gather(1, safe_t[:, None]).squeeze(1)
    # d(row_loss)/d(logits) = softmax - onehot; the z-loss adds 2·z·lse·softmax. In place, so
    # a chunk needs one logits-sized buffer (torch.compile turns these into one fused pass).
    grad = logits.sub_(lse[:, None]).exp_()
    if z_loss > 0:
        row_loss = row_loss + z_loss * lse.square()
        grad.mul_((1.0 + 2.0 * z_loss * lse)[:, None])
    grad.scatter_add_(1, safe_t[:, None], torch.full_like(lse, -1.0)[:, None])
    grad.mul_(valid[:, None])
    if t is not None:
        grad.mul_(1.0 - t.square())  # through softcap·tanh(x/softcap)
    grad = grad.to(w.dtype)
    return (row_loss * valid).sum(), grad @ w, (grad.t() @ hc).float()


_compiled_chunk = None


def _chunk_fn(device: torch.device):
    """On a GPU the chunk's elementwise work is fused by torch.compile (one pass, not eight)."""
    global _compiled_chunk
    if device.type != "cuda":
        return _chunk_loss_and_grads
    if _compiled_chunk is None:
        _compiled_chunk = torch.compile(_chunk_loss_and_grads, dynamic=False)
    return _compiled_chunk


class _FusedHeadLoss(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        h: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        vocab_size: int,
        softcap: float,
        z_loss: float,
        chunk_rows: int,
        mm_dtype: torch.dtype,
        kernel: str,
        hw_tanh: bool | None,
    ) -> torch.Tensor:
        if kernel == "torch":
            chunks, options = _torch_chunks, {}
        else:  # "triton" or "triton-fp8": one Triton loop
            chunks, options = _triton_chunks, {"hw_tanh": hw_tanh, "fp8": kernel == "triton-fp8"}
        grad_h, grad_w, loss_sum = chunks(
            h, weight, targets, vocab_size, softcap, z_loss, chunk_rows, mm_dtype, **options
        )
        denom = (targets != -1).sum().clamp(min=1).to(torch.float32)
        ctx.save_for_backward(grad_h, grad_w, denom)
        ctx.weight_shape = weight.shape
        ctx.weight_dtype = weight.dtype
        return loss_sum / denom

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        grad_h, grad_w, denom = ctx.saved_tensors
        scale = grad_out / denom
        gh = grad_h * scale.to(grad_h.dtype)
        if grad_w.shape == ctx.weight_shape and grad_w.dtype == ctx.weight_dtype:
            gw = grad_w * scale  # the Triton path: already the whole padded head, one pass
        else:
            gw = torch.zeros(ctx.weight_shape, dtype=ctx.weight_dtype, device=grad_w.device)
            gw[: grad_w.shape[0]] = (grad_w * scale).to(ctx.weight_dtype)
        return gh, gw, None, None, None, None, None, None, None, None


# (summed loss of the chunk, d(sum)/d(h) of its rows, the weight's gradient so far)
ChunkStep = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _chunk_loop(
    h: torch.Tensor,
    targets: torch.Tensor,
    chunk_rows: int,
    mm_dtype: torch.dtype,
    step: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], ChunkStep],
    grad_w: torch.Tensor | None,
    grad_w_shape: tuple[int, ...] = (),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What every chunk loop shares: ``chunk_rows`` rows of ``h`` at a time (in ``mm_dtype``)
    through ``step(rows, their targets, grad_w so far)``; the loss summed, d(sum)/d(h) written
    back row by row. A loop that starts ``grad_w`` at None gets zeros of ``grad_w_shape`` when
    there are no rows at all."""
    grad_h = torch.empty(h.shape, dtype=h.dtype, device=h.device)
    loss_sum = torch.zeros((), dtype=torch.float32, device=h.device)
    for start in range(0, h.shape[0], chunk_rows):
        end = min(start + chunk_rows, h.shape[0])
        part_loss, part_grad_h, grad_w = step(h[start:end].to(mm_dtype), targets[start:end], grad_w)
        loss_sum += part_loss
        grad_h[start:end] = part_grad_h.to(h.dtype)
    if grad_w is None:  # no rows at all
        grad_w = torch.zeros(grad_w_shape, dtype=torch.float32, device=h.device)
    return grad_h, grad_w, loss_sum


def _torch_chunks(
    h: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    vocab_size: int,
    softcap: float,
    z_loss: float,
    chunk_rows: int,
    mm_dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The chunk loop in PyTorch: summed loss, d(sum)/d(h), d(sum)/d(weight[:vocab_size])."""
    w = weight[:vocab_size].to(mm_dtype)
    chunk = _chunk_fn(h.device)

    def step(hc: torch.Tensor, tc: torch.Tensor, grad_w: torch.Tensor) -> ChunkStep:
        part_loss, part_grad_h, part_grad_w = chunk(hc, w, tc, softcap, z_loss)
        return part_loss, part_grad_h, grad_w.add_(part_grad_w)

    grad_w = torch.zeros((vocab_size, weight.shape[1]), dtype=torch.float32, device=h.device)
    return _chunk_loop(h, targets, chunk_rows, mm_dtype, step, grad_w)


def _triton_chunks(
    h: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    vocab_size: int,
    softcap: float,
    z_loss: float,
    chunk_rows: int,
    mm_dtype: torch.dtype,
    hw_tanh: bool | None = None,
    fp8: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The chunk loop with the Triton kernel: summed loss, d(sum)/d(h), d(sum)/d(weight).

    The matmuls use the whole padded head (50,304 rows: aligned shapes for the tensor cores);
    the kernel gives the padding columns gradient 0, so they stay out of everything. ``fp8``:
    the logits and d(loss)/dh GEMMs in FP8 (``_fp8_gemms``); d(loss)/dw is bf16 either way.
    """
    logits_of, grad_h_of = (_fp8_gemms if fp8 else _bf16_gemms)(weight, mm_dtype)

    def step(hc: torch.Tensor, tc: torch.Tensor, grad_w: torch.Tensor | None) -> ChunkStep:
        logits = logits_of(hc)  # (rows, V_padded), becomes the gradient in place
        g8 = torch.empty(logits.shape, dtype=torch.float8_e5m2, device=h.device) if fp8 else None
        part_loss = triton_loss.softcap_ce_rows_(
            logits, tc, vocab_size, softcap, z_loss, grad_fp8=g8, hw_tanh=hw_tanh
        ).sum()
        part_grad_h = grad_h_of(logits if g8 is None else g8)
        return part_loss, part_grad_h, _accumulate_f32(grad_w, logits.t(), hc)

    return _chunk_loop(h, targets, chunk_rows, mm_dtype, step, None, tuple(weight.shape))


Gemm = Callable[[torch.Tensor], torch.Tensor]


def _bf16_gemms(weight: torch.Tensor, mm_dtype: torch.dtype) -> tuple[Gemm, Gemm]:
    """logits = h · Wᵀ and d(loss)/dh = G · W in ``mm_dtype``."""
    w = weight.to(mm_dtype)
    return (lambda hc: hc @ w.t()), (lambda g: g @ w)


_E4M3_MAX = 448.0  # largest finite float8 e4m3fn


def _to_e4m3(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x as float8 e4m3 with one fp32 scale for the whole tensor (x ≈ x8 · scale).

    The scale maps the largest |x| to e4m3's largest value: the per-tensor "current" scaling of
    FP8 training recipes (Micikevicius et al. 2022, arXiv:2209.05433). It stays on the device.
    """
    amax = x.detach().abs().amax().float()
    scale = (amax / _E4M3_MAX).clamp(min=torch.finfo(torch.float32).tiny)
    return (x.float() / scale).to(torch.float8_e4m3fn), scale


def _fp8_gemms(weight: torch.Tensor, mm_dtype: torch.dtype) -> tuple[Gemm, Gemm]:
    """Two of the head's three GEMMs in FP8 (``fp8_head``), results in ``mm_dtype``.

    logits = h8 · w8ᵀ (e4m3 × e4m3, per-tensor scales) and d(loss)/dh = g8 · w8 (the gradient
    in e5m2, scaled by 2^15, written by the loss kernel beside the bf16 one) run on the FP8
    tensor cores, about twice the bf16 rate; d(loss)/dw = gᵀ · h stays in bf16 with fp32
    accumulation, so the weight's gradient sees no FP8 rounding. torch._scaled_mm wants its
    second operand column-major: w8ᵀ is a view of w8, and w8 for the gradient GEMM is one
    transposed copy per step (V × C bytes).
    """
    w8, w_scale = _to_e4m3(weight)  # (V_padded, C)
    w8_t = w8.t().contiguous()  # (C, V_padded): .t() of it is w8 column-major
    g_scale = torch.tensor(1.0 / triton_loss.FP8_GRAD_SCALE, device=weight.device)

    def logits_of(hc: torch.Tensor) -> torch.Tensor:
        h8, h_scale = _to_e4m3(hc)
        return torch._scaled_mm(h8, w8.t(), scale_a=h_scale, scale_b=w_scale, out_dtype=mm_dtype)

    def grad_h_of(g8: torch.Tensor) -> torch.Tensor:
        return torch._scaled_mm(g8, w8_t.t(), scale_a=g_scale, scale_b=w_scale, out_dtype=mm_dtype)

    return logits_of, grad_h_of


_MM_OUT_DTYPE: dict[str, bool] = {}  # device type -> whether torch.mm/addmm take out_dtype there


def _accumulate_f32(acc: torch.Tensor | None, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """acc + a @ b in fp32 (acc None: a @ b), for low-precision a and b.

    On a GPU cuBLAS accumulates into the fp32 result itself (``out_dtype``, torch >= 2.8):
    no low-precision product is written, upcast and added (three passes over a head-sized
    tensor per chunk, ~0.7 ms a step at DEPTH 12). Elsewhere, or where the torch lacks it, the
    product is rounded to a's dtype and added in fp32, as before; the two differ by that
    rounding only.
    """
    kind = a.device.type
    if a.dtype != torch.float32 and _MM_OUT_DTYPE.get(kind, kind == "cuda"):
        try:
            if acc is None:
                return torch.mm(a, b, out_dtype=torch.float32)
            return torch.addmm(acc, a, b, out_dtype=torch.float32)
        except (RuntimeError, TypeError, NotImplementedError):
            _MM_OUT_DTYPE[kind] = False
    product = (a @ b).float()
    return product if acc is None else acc.add_(product)


@torch.compiler.disable
def fused_head_loss(
    h: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    vocab_size: int,
    softcap: float = 0.0,
    z_loss: float = 0.0,
    chunk_rows: int | None = None,
    kernel: str | None = None,
    hw_tanh: bool | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of ``h @ weight[:vocab_size].T`` against ``targets`` (-1 = ignore).

    h: (N, C) final hidden states; weight: (V_padded, C) head weight; targets: (N,).
    kernel: "triton" (nanogpt/triton_loss.py; the default on a GPU with Triton), "torch", or
    "triton-fp8" (the Triton kernel with the logits and d(loss)/dh GEMMs in FP8: ``fp8_head``).
    hw_tanh: the Triton kernel's tanh as one GPU instruction (``triton_loss.softcap_ce_rows_``);
    None = on with CUDA.
    """
    if kernel is None:
        use_triton = h.device.type == "cuda" and triton_loss.available(h.device)
        kernel = "triton" if use_triton else "torch"
    if kernel not in ("triton", "torch", "triton-fp8"):
        raise ValueError(f"kernel must be 'triton', 'torch' or 'triton-fp8', not {kernel!r}")
    if chunk_rows is None:
        # Triton: 32,768 rows of bf16 logits (3.3 GB at GPT-2's vocabulary; a whole batch of
        # 32 x 1024): tall GEMMs and one pass accumulating the head's fp32 gradient, 0.7-2.1%
        # faster a step than 8,192 rows on an H200 for 2.2-2.3 GiB more (docs/benchmarks.md).
        # torch: chunks of ~64 M fp32 logits on a GPU; small ones on a CPU stay in cache.
        if kernel != "torch":
            chunk_rows = 32768
        else:
            chunk_rows = 1024 if h.device.type == "cuda" else 128
    return _FusedHeadLoss.apply(
        h,
        weight,
        targets,
        vocab_size,
        softcap,
        z_loss,
        chunk_rows,
        _mm_dtype(h.device),
        kernel,
        hw_tanh,
    )


@torch.no_grad()
def chunked_token_losses(
    h: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    vocab_size: int,
    softcap: float = 0.0,
    z_loss: float = 0.0,
    chunk_rows: int = 1024,
) -> torch.Tensor:
    """Per-row loss (N,) without gradients, for evaluation; ignored rows get 0."""
    w = weight[:vocab_size].to(_mm_dtype(h.device))
    out = torch.empty(h.shape[0], dtype=torch.float32, device=h.device)
    for start in range(0, h.shape[0], chunk_rows):
        end = min(start + chunk_rows, h.shape[0])
        logits, _ = _chunk_logits(h[start:end].to(w.dtype), w, softcap)
        tc = targets[start:end]
        lse = torch.logsumexp(logits, dim=-1)
        row = lse - logits.gather(1, tc.clamp(min=0)[:, None]).squeeze(1)
        if z_loss > 0:
            row = row + z_loss * lse.square()
        out[start:end] = row * (tc != -1)
    return out
