"""The Triton kernel behind ``nanogpt.triton_loss`` (imported only through it: importing this
module compiles nothing, but it needs Triton, and Triton decides at import whether it
interprets). One program per row; the maths is in nanogpt/triton_loss.py's docstring.

Version 4 of the kernel. Its history, on an H200 at batch 32 × 1024 (GPT-2's vocabulary), with
the instructions per logit read off its sm_90 machine code (``benchmarks/loss_kernel_sass.py``):

* version 2 (4.7 ms a step): 74 instructions per logit over the two passes, 6 of them on the
  special-function unit (MUFU: exp2, reciprocal): bound by issue (74 / 128 lanes ≈ 0.58
  cycles per logit per SM), not by MUFU (6 / 16 ≈ 0.38) or memory;
* version 3 (3.1 ms): 36 instructions, MUFU still 6, so bound by MUFU. Whole blocks run
  without masks (only the last partial block and the padding have them); the one-hot term is
  one store at the target column after the row is written (a barrier orders the two stores),
  not a compare-and-select on every column; tanh, the softmax's exp and 1 − tanh² came from one
  r = 1 / (exp(2z / cap) + 1) per logit, an exp2 and a reciprocal;
* version 4 (2.4 ms, in one 32,768-row chunk; a step 0.5 ms shorter than with v3's maths at
  DEPTH 6 and 12, docs/benchmarks.md): on a GPU tanh(z / cap) is one MUFU instruction (PTX
  ``tanh.approx.f32``, relative error about 2^-11, a quarter of the rounding of the bf16 logit
  it is applied to), and the rest follows from t = tanh(z / cap) in base 2 with constants from
  the host:

      s = cap · t,   exp(s − cap) = 2^(k·t − k),   exp(s − lse) = 2^(k·t − lse·log2(e)),
      d s / d z = 1 − t²,   k = cap · log2(e)

  MUFU per logit 6 → 4 (tanh and exp2 in each pass). Under Triton's interpreter (the CPU tests)
  there is no PTX: t comes from the exact r form of version 3, t = 1 − 2r, through the same code.
"""

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _tanh(z, inv_cap, k_tanh, HW_TANH: tl.constexpr):
    # tanh(z / cap). On a GPU one MUFU instruction; ±1 (never NaN) for a huge |z|.
    if HW_TANH:
        return tl.inline_asm_elementwise(
            "tanh.approx.f32 $0, $1;",
            "=r,r",
            [z * inv_cap],
            dtype=tl.float32,
            is_pure=True,
            pack=1,
        )
    else:
        # 1 - 2r, r = 1 / (exp(2z/cap) + 1) with exp(2z/cap) = 2^(z · k_tanh): a huge z gives
        # r = 0, a very negative one r = 1, no overflow trouble. The non-IEEE division is a
        # reciprocal and a multiply (~2 ulp).
        return 1.0 - 2.0 * tl.fdiv(1.0, tl.math.exp2(z * k_tanh) + 1.0, ieee_rounding=False)


@triton.jit
def softcap_ce_kernel(
    logits_ptr,
    targets_ptr,
    loss_ptr,
    row_stride,
    n_valid,
    n_total,
    softcap,
    inv_cap,
    k_tanh,
    k_exp,
    z_loss,
    g8_ptr,
    HAS_CAP: tl.constexpr,
    SHIFT_BY_CAP: tl.constexpr,
    WRITE_F8: tl.constexpr,
    HW_TANH: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # softcap: the cap (1.0 when there is none); inv_cap = 1/cap; k_tanh = 2·log2(e)/cap;
    # k_exp = cap·log2(e). HW_TANH: tanh as PTX's tanh.approx.f32 (CUDA only).
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
            acc += tl.math.exp2(k_exp * _tanh(z, inv_cap, k_tanh, HW_TANH) - k_exp)
        for start in range(n_full, n_valid, BLOCK):
            cols = start + offsets
            mask = cols < n_valid
            z = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
            t = _tanh(z, inv_cap, k_tanh, HW_TANH)
            acc += tl.where(mask, tl.math.exp2(k_exp * t - k_exp), 0.0)
        lse = softcap + tl.log(tl.sum(acc, axis=0))
    else:
        m = tl.full([BLOCK], -1.0e30, tl.float32)
        acc = tl.full([BLOCK], 0.0, tl.float32)
        for start in range(0, n_valid, BLOCK):
            cols = start + offsets
            mask = cols < n_valid
            z = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
            if HAS_CAP:
                z = softcap * _tanh(z, inv_cap, k_tanh, HW_TANH)
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
        t_t = _tanh(z_t_raw, inv_cap, k_tanh, HW_TANH)
        z_t = softcap * t_t
    loss = lse - z_t + z_loss * lse * lse
    tl.store(loss_ptr + row, tl.where(valid, loss, 0.0))

    # Pass 2: the gradient, written over the logits it came from.
    coef = 1.0 + 2.0 * z_loss * lse
    if HAS_CAP:
        # softmax · coef, times tanh' = 1 − t²; an ignored row (coef 0) gets 0 everywhere. The
        # one-hot term is not subtracted here, column by column, but once, at the target, below.
        shift = -lse * LOG2E
        row_coef = tl.where(valid, coef, 0.0)
        for start in range(0, n_full, BLOCK):
            z = tl.load(base + start + offsets).to(tl.float32)
            t = _tanh(z, inv_cap, k_tanh, HW_TANH)
            g = tl.math.exp2(k_exp * t + shift) * row_coef * (1.0 - t * t)
            tl.store(base + start + offsets, g.to(logits_ptr.dtype.element_ty))
            if WRITE_F8:
                tl.store(g8_ptr + row * n_total + start + offsets, (g * 32768.0).to(tl.float8e5))
        for start in range(n_full, n_total, BLOCK):
            cols = start + offsets
            in_row = cols < n_total
            mask = cols < n_valid
            z = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
            t = _tanh(z, inv_cap, k_tanh, HW_TANH)
            g = tl.math.exp2(k_exp * t + shift) * row_coef * (1.0 - t * t)
            g = tl.where(mask, g, 0.0)
            tl.store(base + cols, g.to(logits_ptr.dtype.element_ty), mask=in_row)
            if WRITE_F8:
                tl.store(g8_ptr + row * n_total + cols, (g * 32768.0).to(tl.float8e5), mask=in_row)
        # The target's column: (softmax · coef − 1) · tanh'. Every thread's store of that column
        # above must land first: a barrier, then one store.
        tl.debug_barrier()
        g_t = (tl.math.exp2(k_exp * t_t + shift) * coef - 1.0) * (1.0 - t_t * t_t)
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
