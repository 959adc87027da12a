"""Soft-capped cross-entropy and its gradient in one Triton kernel, over logits in place.

``nanogpt/loss.py`` computes the head's logits a chunk of rows at a time and needs, per row, the
loss and d(loss)/d(logits). In plain PyTorch (even compiled) that is several passes over an fp32
copy of the logits: soft-cap, log-sum-exp, softmax, the one-hot, the z-loss term, the tanh
derivative, the cast back to bf16. On an H200 at batch 32 × 1024 those passes cost ~10 ms of a
73 ms step (docs/benchmarks.md, "Where the time goes"). Here one program per row reads the bf16
logits twice (the second read mostly from L2) and overwrites them with the bf16 gradient:

    pass 1   s = cap · tanh(z / cap);  lse = log Σ exp(s)     (fp32; shifted by cap, or online max)
    pass 2   g = (exp(s − lse) · (1 + 2·zl·lse) − onehot(target)) · (1 − (s / cap)²)

(the kernel writes exp and 1 − tanh² through t = tanh(z / cap), in base 2, and on a GPU takes
tanh itself from one hardware instruction, to spend few special-function operations:
nanogpt/_softcap_ce_kernel.py).

and stores the row's loss ``lse − s[target] + zl · lse²`` (0 for ignored rows, target = -1).
Columns at or past ``vocab_size`` (the padding of the head) get probability 0 and gradient 0.
The maths is that of ``nanogpt.loss._chunk_loss_and_grads``; ``tests/test_loss.py`` checks the
two against each other (on a CPU through Triton's interpreter, ``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os

import torch

HAS_TRITON = importlib.util.find_spec("triton") is not None  # checked once, at import
_LOG2E = math.log2(math.e)


def available(device: torch.device) -> bool:
    """Whether the kernel runs for tensors on ``device``: a CUDA GPU with Triton installed, or
    the CPU under Triton's interpreter (``TRITON_INTERPRET=1`` set before Triton is imported;
    the tests do this)."""
    if device.type == "cuda":
        return HAS_TRITON
    return HAS_TRITON and device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"


@functools.cache
def _kernel():
    """The jitted kernel (nanogpt/_softcap_ce_kernel.py)."""
    from nanogpt._softcap_ce_kernel import softcap_ce_kernel

    return softcap_ce_kernel


# The FP8 head's gradient operand is 2^15 · d(row loss)/d(logits) in float8 e5m2: every entry
# of the gradient lies in [-1, 1] (softmax minus one-hot, times tanh' <= 1; the z-loss factor
# 1 + 2·z·lse stays near 1), so 2^15 keeps the softmax's ~1/V entries out of e5m2's subnormals
# and the largest ones under its 57,344 limit. A power of two: scaling is exact.
FP8_GRAD_SCALE = 2.0**15


def check_launch(block: int, num_warps: int) -> None:
    """A ValueError unless the kernel can be launched with ``block`` columns (a power of two,
    at least 16) and ``num_warps`` warps (one that Triton takes)."""
    if block < 16 or block & (block - 1):
        raise ValueError(f"block must be a power of two >= 16, got {block}")
    if num_warps not in (1, 2, 4, 8, 16, 32):
        raise ValueError(f"num_warps must be 1, 2, 4, 8, 16 or 32, got {num_warps}")


def softcap_ce_rows_(
    logits: torch.Tensor,
    targets: torch.Tensor,
    vocab_size: int,
    softcap: float,
    z_loss: float,
    grad_fp8: torch.Tensor | None = None,
    hw_tanh: bool | None = None,
    block: int | None = None,
    num_warps: int | None = None,
) -> torch.Tensor:
    """Per-row loss (fp32, 0 where target is -1); ``logits`` (N, V) becomes d(row loss)/d(logits).

    ``logits`` may be wider than ``vocab_size`` (a padded head): the extra columns take no
    probability and get gradient 0. On a CPU tensor the kernel runs in Triton's interpreter.
    ``grad_fp8`` (N, V) float8_e5m2, contiguous: also receives FP8_GRAD_SCALE · the gradient
    (written by the kernel on a GPU; on a CPU by torch afterwards, the interpreter has no FP8).
    ``hw_tanh``: tanh(z / cap) as PTX's ``tanh.approx.f32`` (relative error ~2^-11, below the
    bf16 logits' own rounding) instead of an exp2 and a reciprocal; None = on a GPU. The
    interpreter has no PTX: on a CPU the exact form runs whatever this says.
    ``block`` (columns at a time, a power of two: it sets the order of each row's sum) and
    ``num_warps``: the launch (None = 2,048 and 8 on a GPU, within 2% of the best launch that
    ``benchmarks/loss_kernel.py`` measured; 256 and 1 in the interpreter).
    """
    if logits.ndim != 2 or logits.stride(1) != 1:
        raise ValueError("logits must be a 2-D tensor with contiguous rows")
    n_rows, n_total = logits.shape
    if not 0 < vocab_size <= n_total:
        raise ValueError(f"vocab_size {vocab_size} must be in 1..{n_total}")
    if not available(logits.device):
        raise RuntimeError(
            f"the Triton loss kernel cannot run on {logits.device}: it needs a CUDA GPU with "
            "Triton, or TRITON_INTERPRET=1 (set before Triton is imported) on a CPU"
        )
    if grad_fp8 is not None and (
        grad_fp8.shape != logits.shape
        or grad_fp8.dtype != torch.float8_e5m2
        or not grad_fp8.is_contiguous()
    ):
        raise ValueError("grad_fp8 must be a contiguous float8_e5m2 tensor of the logits' shape")
    loss = torch.empty(n_rows, dtype=torch.float32, device=logits.device)
    if n_rows == 0:
        return loss
    on_gpu = logits.device.type == "cuda"
    write_f8 = grad_fp8 is not None and on_gpu
    kernel = _kernel()
    cap = float(softcap) if softcap > 0 else 1.0
    hw_tanh = on_gpu if hw_tanh is None else bool(hw_tanh) and on_gpu
    if block is None:
        block = 2048 if on_gpu else 256
    if num_warps is None:
        num_warps = 8 if on_gpu else 1
    check_launch(block, num_warps)
    kernel[(n_rows,)](
        logits,
        targets.contiguous(),
        loss,
        logits.stride(0),
        vocab_size,
        n_total,
        cap,
        1.0 / cap,
        2.0 * _LOG2E / cap,  # exp(2z / cap) = 2^(z · this)
        cap * _LOG2E,  # exp(s - cap) = 2^(this · (t - 1)), t = tanh(z / cap)
        float(z_loss),
        grad_fp8 if write_f8 else logits,
        HAS_CAP=softcap > 0,
        SHIFT_BY_CAP=0 < softcap <= 40,
        WRITE_F8=write_f8,
        HW_TANH=hw_tanh,
        BLOCK=block,
        num_warps=num_warps,
    )
    if grad_fp8 is not None and not write_f8:
        grad_fp8.copy_((logits.float() * FP8_GRAD_SCALE).to(torch.float8_e5m2))
    return loss
