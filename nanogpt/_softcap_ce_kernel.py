"""The Triton kernel behind ``nanogpt.triton_loss`` (imported only through it: importing this
module compiles nothing, but it needs Triton, and Triton decides at import whether it
interprets). One program per row; the maths is in nanogpt/triton_loss.py's docstring.

Version 3 of the kernel. On an H200 version 2 took 4.7 ms a step at batch 32 × 1024 (GPT-2's
vocabulary). Its SASS (``benchmarks/loss_kernel_sass.py``) spends 74 instructions per logit
over the two passes, 6 of them on the special-function unit (MUFU: exp2, reciprocal): the
kernel is bound by instruction issue (74 / 128 lanes ≈ 0.58 cycles per logit per SM), not by
MUFU (6 / 16 ≈ 0.38) or memory. Version 3 issues 36 per logit (MUFU still 6):

* whole blocks run without masks, only the last partial block and the padding have them;
* the one-hot term is not a compare-and-select on every column but one store at the target
  column after the row is written (a barrier orders the two stores);
* tanh, the softmax's exp and 1 − tanh² all come from one number per logit,
  r = 1 / (exp(2z / cap) + 1):

      tanh(z / cap) = 1 − 2r,   s = cap − 2·cap·r,   1 − tanh² = 4r(1 − r),
      exp(s − cap) = 2^(−2·cap·log2(e) · r),   exp(s − lse) = 2^((cap − lse)·log2(e) − 2·cap·log2(e) · r)

  with the constants computed once on the host and flush-to-zero exp2 (no denormal fix-ups).

Now MUFU bounds it (≈ 0.38 cycles per logit, about 2.3 ms at that batch). The function
computed is the same to fp32 rounding (4r(1 − r) is, if anything, more accurate than
1 − tanh² near saturation).
"""

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _tanh_r(z, k_tanh):
    # r = 1 / (exp(2z/cap) + 1) with exp(2z/cap) = 2^(z · k_tanh). A huge z gives r = 0
    # (tanh = 1), a very negative one r = 1 (tanh = -1): no overflow trouble. The non-IEEE
    # division is a reciprocal and a multiply (~2 ulp).
    return tl.fdiv(1.0, tl.math.exp2(z * k_tanh) + 1.0, ieee_rounding=False)


@triton.jit
def softcap_ce_kernel(
    logits_ptr,
    targets_ptr,
    loss_ptr,
    row_stride,
    n_valid,
    n_total,
    softcap,
    k_tanh,
    m2,
    z_loss,
    g8_ptr,
    HAS_CAP: tl.constexpr,
    SHIFT_BY_CAP: tl.constexpr,
    WRITE_F8: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # softcap: the cap (1.0 when there is none); k_tanh = 2·log2(e)/cap; m2 = -2·cap·log2(e).
    # WRITE_F8: also store 2^15 · gradient as float8 e5m2 into g8_ptr (rows × n_total, dense),
    # the operand of the FP8 head's gradient GEMM (nanogpt/loss.py, fp8 path).
    row = tl.program_id(0).to(tl.int64)
    base = logits_ptr + row * row_stride
    target = tl.load(targets_ptr + row).to(tl.int32)
    offsets = tl.arange(0, BLOCK)

    # Pass 1: log-sum-exp of the capped logits. With a cap of at most 40 every value lies in
    # [-cap, cap], so exp(s - cap) cannot overflow or underflow fp32: no running max needed.
    # Otherwise a running (max, sum) per lane, whose max starts finite because
    # exp(-inf - -inf) would be NaN for a lane that never sees a column.
    # Whole blocks need no masks; the last, partial block and the padding columns get them.
    n_full = (n_valid // BLOCK) * BLOCK
    if SHIFT_BY_CAP:
        acc = tl.full([BLOCK], 0.0, tl.float32)
        for start in range(0, n_full, BLOCK):
            z = tl.load(base + start + offsets).to(tl.float32)
            acc += tl.math.exp2(m2 * _tanh_r(z, k_tanh))
        for start in range(n_full, n_valid, BLOCK):
            cols = start + offsets
            mask = cols < n_valid
            z = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
            acc += tl.where(mask, tl.math.exp2(m2 * _tanh_r(z, k_tanh)), 0.0)
        lse = softcap + tl.log(tl.sum(acc, axis=0))
    else:
        m = tl.full([BLOCK], -1.0e30, tl.float32)
        acc = tl.full([BLOCK], 0.0, tl.float32)
        for start in range(0, n_valid, BLOCK):
            cols = start + offsets
            mask = cols < n_valid
            z = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
            if HAS_CAP:
                z = softcap + m2 / LOG2E * _tanh_r(z, k_tanh)
            z = tl.where(mask, z, float("-inf"))
            m_new = tl.maximum(m, z)
            acc = acc * tl.exp(m - m_new) + tl.exp(z - m_new)
            m = m_new
        m_row = tl.max(m, axis=0)
        lse = m_row + tl.log(tl.sum(acc * tl.exp(m - m_row), axis=0))

    valid = target >= 0
    safe_target = tl.maximum(target, 0)
    z_t_raw = tl.load(base + safe_target).to(tl.float32)
    z_t = z_t_raw
    if HAS_CAP:
        z_t = softcap + m2 / LOG2E * _tanh_r(z_t_raw, k_tanh)
    loss = lse - z_t + z_loss * lse * lse
    tl.store(loss_ptr + row, tl.where(valid, loss, 0.0))

    # Pass 2: the gradient, written over the logits it came from.
    coef = 1.0 + 2.0 * z_loss * lse
    shift = (softcap - lse) * LOG2E
    if HAS_CAP:
        # softmax · coef, times tanh'; an ignored row (coef 0) gets 0 everywhere. The one-hot
        # term is not subtracted here, column by column, but once, at the target, below.
        row_coef = tl.where(valid, coef, 0.0)
        for start in range(0, n_full, BLOCK):
            z = tl.load(base + start + offsets).to(tl.float32)
            r = _tanh_r(z, k_tanh)
            g = tl.math.exp2(shift + m2 * r) * row_coef * (4.0 * r * (1.0 - r))
            tl.store(base + start + offsets, g.to(logits_ptr.dtype.element_ty))
            if WRITE_F8:
                tl.store(g8_ptr + row * n_total + start + offsets, (g * 32768.0).to(tl.float8e5))
        for start in range(n_full, n_total, BLOCK):
            cols = start + offsets
            in_row = cols < n_total
            mask = cols < n_valid
            z = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
            r = _tanh_r(z, k_tanh)
            g = tl.math.exp2(shift + m2 * r) * row_coef * (4.0 * r * (1.0 - r))
            g = tl.where(mask, g, 0.0)
            tl.store(base + cols, g.to(logits_ptr.dtype.element_ty), mask=in_row)
            if WRITE_F8:
                tl.store(g8_ptr + row * n_total + cols, (g * 32768.0).to(tl.float8e5), mask=in_row)
        # The target's column: (softmax · coef − 1) · tanh'. Every thread's store of that column
        # above must land first: a barrier, then one store.
        tl.debug_barrier()
        r_t = _tanh_r(z_t_raw, k_tanh)
        g_t = (tl.math.exp2(shift + m2 * r_t) * coef - 1.0) * (4.0 * r_t * (1.0 - r_t))
        tl.store(base + safe_target, g_t.to(logits_ptr.dtype.element_ty), mask=valid)
        if WRITE_F8:
            g8_t = (g_t * 32768.0).to(tl.float8e5)
            tl.store(g8_ptr + row * n_total + safe_target, g8_t, mask=valid)
    else:
        for start in range(0, n_total, BLOCK):
            cols = start + offsets
            in_row = cols < n_total
            mask = cols < n_valid
            z = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
            g = tl.exp(z - lse) * coef - tl.where(cols == target, 1.0, 0.0)
            g = tl.where(mask & valid, g, 0.0)
            tl.store(base + cols, g.to(logits_ptr.dtype.element_ty), mask=in_row)
            if WRITE_F8:
                g8 = (g * 32768.0).to(tl.float8e5)
                tl.store(g8_ptr + row * n_total + cols, g8, mask=in_row)
