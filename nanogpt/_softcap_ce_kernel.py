"""The Triton kernel behind ``nanogpt.triton_loss`` (imported only through it: importing this
module compiles nothing, but it needs Triton, and Triton decides at import whether it
interprets). One program per row; the maths is in nanogpt/triton_loss.py's docstring.
"""

import triton
import triton.language as tl


@triton.jit
def _tanh(u):
    # 1 - 2 / (e^{2u} + 1): saturates to ±1 without overflow trouble, runs in the interpreter
    # (which has no libdevice), and the non-IEEE division (a reciprocal and a multiply, ~2 ulp)
    # keeps the kernel near memory speed.
    return 1.0 - tl.fdiv(2.0, tl.exp(2.0 * u) + 1.0, ieee_rounding=False)


@triton.jit
def softcap_ce_kernel(
    logits_ptr,
    targets_ptr,
    loss_ptr,
    row_stride,
    n_valid,
    n_total,
    softcap,
    z_loss,
    HAS_CAP: tl.constexpr,
    SHIFT_BY_CAP: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    base = logits_ptr + row * row_stride
    target = tl.load(targets_ptr + row).to(tl.int32)
    offsets = tl.arange(0, BLOCK)

    # Pass 1: log-sum-exp of the capped logits. With a cap of at most 40 every value lies in
    # [-cap, cap], so exp(s - cap) cannot overflow or underflow fp32: no running max needed.
    # Otherwise a running (max, sum) per lane, whose max starts finite because
    # exp(-inf - -inf) would be NaN for a lane that never sees a column.
    if SHIFT_BY_CAP:
        acc = tl.full([BLOCK], 0.0, tl.float32)
        for start in range(0, n_valid, BLOCK):
            cols = start + offsets
            mask = cols < n_valid
            z = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
            s = softcap * _tanh(z / softcap)
            acc += tl.where(mask, tl.exp(s - softcap), 0.0)
        lse = softcap + tl.log(tl.sum(acc, axis=0))
    else:
        m = tl.full([BLOCK], -1.0e30, tl.float32)
        acc = tl.full([BLOCK], 0.0, tl.float32)
        for start in range(0, n_valid, BLOCK):
            cols = start + offsets
            mask = cols < n_valid
            z = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
            if HAS_CAP:
                z = softcap * _tanh(z / softcap)
            z = tl.where(mask, z, float("-inf"))
            m_new = tl.maximum(m, z)
            acc = acc * tl.exp(m - m_new) + tl.exp(z - m_new)
            m = m_new
        m_row = tl.max(m, axis=0)
        lse = m_row + tl.log(tl.sum(acc * tl.exp(m - m_row), axis=0))

    valid = target >= 0
    safe_target = tl.maximum(target, 0)
    z_t = tl.load(base + safe_target).to(tl.float32)
    if HAS_CAP:
        z_t = softcap * _tanh(z_t / softcap)
    loss = lse - z_t + z_loss * lse * lse
    tl.store(loss_ptr + row, tl.where(valid, loss, 0.0))

    # Pass 2: the gradient, written over the logits it came from.
    coef = 1.0 + 2.0 * z_loss * lse
    for start in range(0, n_total, BLOCK):
        cols = start + offsets
        in_row = cols < n_total
        mask = cols < n_valid
        z = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_CAP:
            t = _tanh(z / softcap)
            g = tl.exp(softcap * t - lse) * coef - tl.where(cols == target, 1.0, 0.0)
            g = g * (1.0 - t * t)
        else:
            g = tl.exp(z - lse) * coef - tl.where(cols == target, 1.0, 0.0)
        g = tl.where(mask & valid, g, 0.0)
        tl.store(base + cols, g.to(logits_ptr.dtype.element_ty), mask=in_row)
