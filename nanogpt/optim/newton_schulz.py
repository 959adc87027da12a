"""Muon's maths: the Newton-Schulz iteration that orthogonalises an update (with its coefficient
tables), the factor that scales the update by the matrix's shape, and the update direction of a
stack of gradients (momentum, Nesterov, Newton-Schulz), eager or compiled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

# Newton-Schulz coefficients (a, b, c) of the odd quintic p(x) = a x + b x^3 + c x^5, one triple
# per iteration. Polar Express (Amsel, Persson, Musco, Gower 2025, Algorithm 1,
# https://arxiv.org/abs/2505.16932): each triple is the minimax-optimal quintic for the
# singular-value interval left by the previous ones, so after 5 steps every singular value in
# [1e-3, 1] lands near 1, while Keller Jordan's fixed quintic plateaus with singular values
# spread over roughly [0.7, 1.2]. Same cost per step, a better polar factor, and it trained
# GPT-2 to a lower loss in the paper's Figure 1. The first triples are divided by a 1.01 safety
# factor (a / 1.01, b / 1.01^3, c / 1.01^5) so that bf16 rounding cannot push a singular value
# past the region where the polynomials stay bounded; the last one is the classical degree-5
# Newton-Schulz polynomial (15x - 10x^3 + 3x^5) / 8, used for any steps past the listed ones.
_POLAR_EXPRESS_RAW = (
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
    (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
    (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
)
POLAR_EXPRESS_COEFFICIENTS: tuple[tuple[float, float, float], ...] = tuple(
    (a / 1.01, b / 1.01**3, c / 1.01**5) for a, b, c in _POLAR_EXPRESS_RAW
) + ((1.875, -1.25, 0.375),)
# Keller Jordan's quintic, the same triple every step
# (https://kellerjordan.github.io/posts/muon/, "Newton-Schulz iteration"); kept for comparison.
QUINTIC_COEFFICIENTS: tuple[tuple[float, float, float], ...] = ((3.4445, -4.7750, 2.0315),)

COEFFICIENT_SETS = {"polar_express": POLAR_EXPRESS_COEFFICIENTS, "quintic": QUINTIC_COEFFICIENTS}


def newton_schulz(
    matrix: torch.Tensor,
    steps: int = 5,
    *,
    dtype: torch.dtype | None = torch.bfloat16,
    coefficients: str = "polar_express",
    fold_linear: bool = False,
    result_dtype: torch.dtype | None = None,
    fp32_gemm: bool = False,
) -> torch.Tensor:
    """Approximate the polar factor U V^T of `matrix` = U S V^T (its nearest semi-orthogonal matrix).

    `matrix` is (..., m, n); leading dimensions are a batch, orthogonalised independently in one
    batched matmul per product. Computes in `dtype` (bf16 by default: the iteration is
    self-correcting, and bf16 tensor-core matmuls are what make it cheap; None keeps the input
    dtype) and returns `result_dtype` (None: the input's dtype). Singular values come out near
    1, not exactly 1.

    fold_linear: each step computes X <- (a I + b A + c A^2) X, one plain product, instead of
    a X + (b A + c A^2) X, a product that adds into a copy of X: torch's out-of-place
    ``baddbmm`` first copies its input into the result, one copy of every matrix per step
    (30 device copies per optimizer step at DEPTH 12). The same polynomial; the a on the
    diagonal is rounded with the (small, m x m) polynomial instead of being applied in the
    GEMM's fp32 epilogue. The last product is also written in the input's orientation (X^T P^T
    for a tall matrix), so the result is contiguous like the parameters it updates.
    fp32_gemm: with fold_linear, the last product writes `result_dtype` (fp32) straight from
    the GEMM's accumulator (``torch.bmm(out_dtype=)``, CUDA, torch >= 2.8) instead of rounding
    to `dtype` and casting; the caller checks that this torch has it.
    """
    if matrix.ndim < 2:
        raise ValueError(
            f"newton_schulz needs a matrix (..., m, n); got shape {tuple(matrix.shape)}"
        )
    if coefficients not in COEFFICIENT_SETS:
        raise ValueError(
            f"unknown Newton-Schulz coefficients {coefficients!r}; use one of {sorted(COEFFICIENT_SETS)}"
        )
    table = COEFFICIENT_SETS[coefficients]
    out_dtype = matrix.dtype
    x = matrix if dtype is None else matrix.to(dtype)
    # Iterate on the wide orientation (rows <= cols): X X^T is then the smaller Gram matrix.
    transposed = x.size(-2) > x.size(-1)
    if transposed:
        x = x.mT
    batch_shape = x.shape[:-2]
    x = x.reshape(-1, x.size(-2), x.size(-1))
    # The Frobenius norm bounds the spectral norm, so every singular value starts in [0, 1], where
    # the polynomials converge. The norm accumulates in fp32 (a bf16 sum of squares of a large
    # matrix loses digits); 1.01 and 1e-7 follow the paper's Algorithm 1 (zero stays zero).
    norm = torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True, dtype=torch.float32)
    x = x / (norm * 1.01 + 1e-7).to(x.dtype)
    if fold_linear:
        return _folded_iterations(
            x, steps, table, batch_shape, transposed, result_dtype or out_dtype, fp32_gemm
        )
    for i in range(steps):
        a, b, c = table[min(i, len(table) - 1)]
        gram = torch.bmm(x, x.mT)  # A = X X^T, (batch, m, m)
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # b A + c A^2
        x = torch.baddbmm(x, poly, x, beta=a, alpha=1.0)  # a X + (b A + c A^2) X
    x = x.reshape(*batch_shape, x.size(-2), x.size(-1))
    if transposed:
        x = x.mT
    return x.to(result_dtype or out_dtype)


def _folded_iterations(
    x: torch.Tensor,
    steps: int,
    table: tuple[tuple[float, float, float], ...],
    batch_shape: torch.Size,
    transposed: bool,
    result_dtype: torch.dtype,
    fp32_gemm: bool,
) -> torch.Tensor:
    """``newton_schulz``'s loop with fold_linear: X <- P X, P = a I + b A + c A^2 (A = X X^T).

    x: (batch, m, n), m <= n, already scaled. No step copies X; the last product is written in
    the caller's orientation (tall matrices: X^T P^T, the transpose of P X) and dtype.
    """
    out_gemm = fp32_gemm and x.dtype != result_dtype
    for i in range(steps):
        a, b, c = table[min(i, len(table) - 1)]
        gram = torch.bmm(x, x.mT)  # A = X X^T, (batch, m, m)
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # b A + c A^2 (copies A: m x m)
        poly.diagonal(dim1=-2, dim2=-1).add_(a)  # + a I
        last = i == steps - 1
        left, right = (x.mT, poly.mT) if last and transposed else (poly, x)
        if last and out_gemm:
            x = torch.bmm(left, right, out_dtype=result_dtype)
        else:
            x = torch.bmm(left, right)
    if steps == 0 and transposed:
        x = x.mT
    return x.reshape(*batch_shape, x.size(-2), x.size(-1)).to(result_dtype)


def muon_update_scale(shape: Sequence[int], rule: str = "shape") -> float:
    """The factor a Muon update (singular values ~1) of a weight of `shape` = (out, in) is scaled by.

    "shape": sqrt(max(1, out/in)), Keller Jordan's rule (https://kellerjordan.github.io/posts/muon/,
      as in modded-nanogpt and nanochat): makes the update's size in the RMS->RMS operator norm
      the same for every shape, so one Muon lr (~0.02) suits all matrices of the model.
    "adamw_rms": 0.2 * sqrt(max(out, in)), Moonlight's rule (Liu et al. 2025, "Muon is Scalable
      for LLM Training", https://arxiv.org/abs/2502.16982, eq. 4): gives the update the RMS (~0.2)
      of an AdamW update, so Muon can share AdamW's lr and weight decay.
    """
    out_features, in_features = int(shape[0]), int(shape[1])
    if rule == "shape":
        return math.sqrt(max(1.0, out_features / in_features))
    if rule == "adamw_rms":
        return 0.2 * math.sqrt(max(out_features, in_features))
    raise ValueError(f"unknown Muon update_scale {rule!r}; use 'shape' or 'adamw_rms'")


def muon_direction(
    grad: torch.Tensor,
    momentum_buffer: torch.Tensor,
    clip: torch.Tensor | None,
    beta: float,
    nesterov: bool,
    ns_dtype: torch.dtype | None,
    ns_steps: int,
    coefficients: str,
    fast: bool = False,
    fp32_gemm: bool = False,
) -> torch.Tensor:
    """Muon's update direction for a stack of same-shape gradients (overwrites ``grad`` and
    advances ``momentum_buffer``): clip, momentum, Nesterov, then Newton-Schulz in ``ns_dtype``.

    Returns the direction in ``ns_dtype``; with ``fast`` (``MuonAdamW(fast_muon=True)``) in the
    momentum's dtype (the parameters'), from ``newton_schulz(fold_linear=True)``, so that the
    update is one same-dtype pass over the parameters (``fp32_gemm``: see ``newton_schulz``).
    """
    if clip is not None:
        grad.mul_(clip)
    # Momentum as an exponential moving average (Polar Express paper, sec. 1.1); Nesterov looks
    # one step further along it. The EMA's scale does not matter: the orthogonalisation
    # normalises it away.
    momentum_buffer.lerp_(grad, 1.0 - beta)
    direction = grad.lerp_(momentum_buffer, beta) if nesterov else momentum_buffer
    if ns_dtype is not None:
        direction = direction.to(ns_dtype)
    if fast:
        return newton_schulz(
            direction,
            ns_steps,
            dtype=None,
            coefficients=coefficients,
            fold_linear=True,
            result_dtype=momentum_buffer.dtype,
            fp32_gemm=fp32_gemm,
        )
    return newton_schulz(direction, ns_steps, dtype=None, coefficients=coefficients)


_BMM_OUT_DTYPE: dict[str, bool] = {}  # device type -> whether torch.bmm takes out_dtype there


def bmm_out_dtype_available(device: torch.device) -> bool:
    """Whether ``torch.bmm(bf16, bf16, out_dtype=torch.float32)`` runs on ``device`` (CUDA with
    torch >= 2.8; not on CPUs). Probed once per device type, eagerly, with tiny tensors."""
    kind = device.type
    if kind not in _BMM_OUT_DTYPE:
        try:
            probe = torch.ones((1, 2, 2), dtype=torch.bfloat16, device=device)
            _BMM_OUT_DTYPE[kind] = torch.bmm(probe, probe, out_dtype=torch.float32).dtype == (
                torch.float32
            )
        except (RuntimeError, TypeError, NotImplementedError):
            _BMM_OUT_DTYPE[kind] = False
    return _BMM_OUT_DTYPE[kind]


_compiled_direction = None


def compiled_muon_direction():
    """``muon_direction`` under torch.compile (built once per process)."""
    global _compiled_direction
    if _compiled_direction is None:
        # One graph per bucket shape (three at any DEPTH); the cache limit leaves room for a
        # few models in one process (benchmarks, tests).
        _compiled_direction = torch.compile(muon_direction, dynamic=False)
    return _compiled_direction
