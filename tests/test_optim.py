"""MuonAdamW: Newton-Schulz, the AdamW path against torch, clipping, ZeRO-2 parity, resume.

The multi-rank tests start 2 and 3 gloo processes on this CPU; each rank runs the sharded
optimizer on its own random gradients, and the parent runs the 1-rank optimizer on their average.
Everything there is fp32 (Newton-Schulz too) so that the comparison can be tight.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from nanogpt.optim import MuonAdamW, newton_schulz


@pytest.fixture(autouse=True)
def _one_thread():
    # These tensors are small: with two OpenMP threads on a busy 2-core machine, the threads wait
    # on each other and a 1-second test takes 15. One thread is fast whatever the load.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------ Newton-Schulz


def _matrix_with_spectrum(singular_values: torch.Tensor, rows: int, cols: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(rows, rows, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, cols, generator=g, dtype=torch.float64))
    k = singular_values.numel()
    m = u[:, :k] @ torch.diag(singular_values.double()) @ v[:, :k].T
    return m.float(), (u[:, :k] @ v[:, :k].T).float()


@pytest.mark.parametrize("shape", [(32, 128), (128, 32), (3, 48, 96)])
def test_newton_schulz_singular_values_near_one(shape):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    out = newton_schulz(g, 5, dtype=torch.float32)
    assert out.shape == g.shape and out.dtype == g.dtype
    s = torch.linalg.svdvals(out)
    # Polar Express after 5 steps maps every singular value in [1e-3, 1] (relative to the
    # Frobenius norm) into about [0.84, 1.12] (arXiv:2505.16932); random Gaussian matrices of
    # aspect 1:4 have no tiny singular values, so all of them land there.
    assert s.min() > 0.8 and s.max() < 1.15, (s.min(), s.max())


def test_newton_schulz_bf16_and_quintic():
    g = torch.randn(64, 256, generator=torch.Generator().manual_seed(1))
    s = torch.linalg.svdvals(newton_schulz(g, 5).float())  # default: bf16
    assert s.min() > 0.75 and s.max() < 1.2
    # Keller Jordan's quintic converges less: its singular values plateau in about [0.68, 1.2].
    s = torch.linalg.svdvals(newton_schulz(g, 5, dtype=torch.float32, coefficients="quintic"))
    assert s.min() > 0.6 and s.max() < 1.25


def test_newton_schulz_converges_to_polar_factor():
    # Spectrum spread over three decades; with more steps the iteration reaches U V^T itself.
    spectrum = torch.logspace(0, -2, 24)
    m, polar = _matrix_with_spectrum(spectrum, 24, 40, seed=2)
    out = newton_schulz(m, 8, dtype=torch.float32)
    torch.testing.assert_close(out, polar, atol=2e-3, rtol=0)
    out_t = newton_schulz(m.T.contiguous(), 8, dtype=torch.float32)  # tall: transposed inside
    torch.testing.assert_close(out_t, polar.T, atol=2e-3, rtol=0)


def test_newton_schulz_batched_equals_one_by_one_and_zero_stays_zero():
    g = torch.randn(4, 16, 24, generator=torch.Generator().manual_seed(3))
    g[2] = 0.0
    batched = newton_schulz(g, 5, dtype=torch.float32)
    for i in range(4):
        torch.testing.assert_close(batched[i], newton_schulz(g[i], 5, dtype=torch.float32))
    assert torch.isfinite(batched).all() and batched[2].abs().max() == 0


@pytest.mark.parametrize("shape", [(32, 128), (128, 32), (3, 48, 96), (2, 96, 48)])
def test_newton_schulz_fold_linear_is_the_same_polynomial(shape):
    """fold_linear (X <- (aI + bA + cA^2) X, no copy of X per step) computes what the plain
    iteration computes: equal in fp32, and in bf16 as close to the fp32 result as the plain
    bf16 iteration is (within 2x of its error), with singular values in the same band."""
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(4))
    exact = newton_schulz(g, 5, dtype=torch.float32)
    folded = newton_schulz(g, 5, dtype=torch.float32, fold_linear=True)
    assert folded.shape == g.shape and folded.is_contiguous()
    torch.testing.assert_close(folded, exact, rtol=1e-5, atol=1e-5)

    plain16 = newton_schulz(g, 5).float()
    fold16 = newton_schulz(g, 5, fold_linear=True, result_dtype=torch.float32)
    assert fold16.dtype == torch.float32 and fold16.is_contiguous()

    def error(x):
        return ((x - exact).norm() / exact.norm()).item()

    assert error(fold16) < 2 * error(plain16) + 1e-3, (error(fold16), error(plain16))
    s = torch.linalg.svdvals(fold16)
    assert s.min() > 0.75 and s.max() < 1.2, (s.min(), s.max())


def test_newton_schulz_fold_linear_zero_steps_and_zero_matrix():
    g = torch.randn(2, 24, 8, generator=torch.Generator().manual_seed(5))
    g[1] = 0.0
    plain = newton_schulz(g, 0, dtype=torch.float32)
    torch.testing.assert_close(newton_schulz(g, 0, dtype=torch.float32, fold_linear=True), plain)
    out = newton_schulz(g, 5, dtype=torch.float32, fold_linear=True)
    assert torch.isfinite(out).all() and out[1].abs().max() == 0


def _muon_run(fast: bool, ns_dtype: torch.dtype | None, steps: int = 3) -> list[torch.Tensor]:
    torch.manual_seed(0)
    shapes = [(32, 16), (32, 16), (32, 16), (16, 48), (48, 16)]  # one stack, a wide, a tall
    params = [nn.Parameter(torch.randn(s)) for s in shapes]
    opt = MuonAdamW(
        [{"kind": "muon", "params": params, "lr": 0.02, "weight_decay": 0.1}],
        max_grad_norm=1.0,
        ns_dtype=ns_dtype,
        fast_muon=fast,
    )
    for i in range(steps):
        gen = torch.Generator().manual_seed(10 + i)
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()
    return [p.detach().clone() for p in params]


def test_fast_muon_step_equals_the_plain_one():
    """fast_muon (folded Newton-Schulz, result in the parameters' dtype, one foreach update)
    gives the plain step's parameters: to fp32 rounding with ns_dtype fp32, and with bf16
    Newton-Schulz within bf16 rounding of the update (lr 0.02 x ~2% of the direction)."""
    for a, b in zip(_muon_run(False, torch.float32), _muon_run(True, torch.float32), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    start = _muon_run(False, torch.float32, steps=0)
    for a, b, p0 in zip(
        _muon_run(False, torch.bfloat16), _muon_run(True, torch.bfloat16), start, strict=True
    ):
        moved = (a - p0).norm()
        assert (b - a).norm() < 0.05 * moved, ((b - a).norm(), moved)


def _adamw_update_run(update, steps: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """A (300, 300) parameter stepped by ``update`` (adamw_update, eager or compiled) through a
    flat view, as AdamWBucket does, and by torch.optim.AdamW's single-tensor path."""
    torch.manual_seed(0)
    ours = nn.Parameter(torch.randn(300, 300))
    ref = nn.Parameter(ours.detach().clone())
    lr, wd, beta1, beta2, eps = 1e-2, 0.1, 0.9, 0.95, 1e-8
    torch_opt = torch.optim.AdamW(
        [ref], lr=lr, weight_decay=wd, betas=(beta1, beta2), eps=eps, foreach=False
    )
    exp_avg, exp_avg_sq = torch.zeros(ours.numel()), torch.zeros(ours.numel())
    scalars = [torch.zeros(()) for _ in range(3)]
    clip = torch.tensor(0.5)
    for step in range(1, steps + 1):
        g = torch.randn(300, 300, generator=torch.Generator().manual_seed(step))
        ref.grad = g * clip
        torch_opt.step()
        scalars[0].fill_(1.0 - lr * wd)
        scalars[1].fill_(lr / (1.0 - beta1**step))
        scalars[2].fill_((1.0 - beta2**step) ** 0.5)
        with torch.no_grad():
            values = ours.view(-1)[: ours.numel()]  # a view of the parameter, as in a bucket
            update(values, g.view(-1), exp_avg, exp_avg_sq, clip, *scalars, beta1, beta2, eps)
    return ours.detach(), ref.detach()


def test_adamw_update_is_torch_adamw():
    """compile_adamw's function, eager and traced (aot_eager: functionalised, as Inductor sees
    it, in-place updates of a view of the parameter included), is torch.optim.AdamW's step."""
    from nanogpt.optim.adamw import adamw_update, compiled_adamw_update

    ours, ref = _adamw_update_run(adamw_update)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-7)
    ours, ref = _adamw_update_run(compiled_adamw_update("aot_eager"))
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-7)


@pytest.mark.slow  # torch.compile (Inductor) on a CPU
def test_compiled_adamw_step_equals_the_unfused_one():
    def run(compiled: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        params = [nn.Parameter(torch.randn(300, 300)), nn.Parameter(torch.randn(70000))]
        params += [nn.Parameter(torch.randn(10))]  # small: a packed bucket (a copy, not a view)
        opt = MuonAdamW(
            [dict(kind="adamw", params=params, lr=1e-2, weight_decay=0.1)],
            fused_adamw=False,
            compile_adamw=compiled,
        )
        for i in range(3):
            gen = torch.Generator().manual_seed(i)
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen)
            opt.step()
        return [p.detach().clone() for p in params]

    for a, b in zip(run(False), run(True), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ one rank


@pytest.mark.parametrize("fused", [True, False])
def test_adamw_groups_match_torch_adamw(fused):
    torch.manual_seed(0)
    shapes = [(300, 300), (70000,), (10,), ()]  # one big (its own bucket), small ones packed
    ours = [nn.Parameter(torch.randn(s)) for s in shapes]
    ref = [nn.Parameter(p.detach().clone()) for p in ours]
    hp = dict(lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8)
    opt = MuonAdamW([dict(kind="adamw", params=ours, **hp)], max_grad_norm=None, fused_adamw=fused)
    torch_opt = torch.optim.AdamW(ref, **(dict(fused=True) if fused else dict(foreach=False)), **hp)
    for _ in range(5):
        for p, r in zip(ours, ref, strict=True):
            g = torch.randn_like(p)
            p.grad, r.grad = g.clone(), g.clone()
        opt.step()
        torch_opt.step()
    for p, r in zip(ours, ref, strict=True):
        torch.testing.assert_close(p, r, atol=1e-6, rtol=1e-6)


def test_grad_norm_and_clipping_match_torch():
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(8, 8)), nn.Parameter(torch.randn(8))]
    grads = [torch.randn(8, 8) * 10, torch.randn(8) * 10]
    expected = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))

    def run(max_norm, scale, fused):
        ps = [nn.Parameter(p.detach().clone()) for p in params]
        opt = MuonAdamW(
            [
                dict(kind="muon", params=ps[:1], lr=0.02),
                dict(kind="adamw", params=ps[1:], lr=0.01, weight_decay=0.0),
            ],
            max_grad_norm=max_norm,
            ns_dtype=torch.float32,
            fused_adamw=fused,
        )
        for p, g in zip(ps, grads, strict=True):
            p.grad = g * scale
        return opt.step(), ps

    for fused in (True, False):
        norm, clipped = run(1.0, 1.0, fused)
        assert norm.ndim == 0 and norm.dtype == torch.float32
        torch.testing.assert_close(norm, expected)
        # Clipping to norm 1 is the same as handing in gradients pre-scaled to norm 1.
        _, prescaled = run(None, 1.0 / expected.item(), fused)
        for a, b in zip(clipped, prescaled, strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_initial_lr_and_defaults():
    w = nn.Parameter(torch.randn(4, 4))
    b = nn.Parameter(torch.randn(4))
    opt = MuonAdamW([dict(kind="muon", params=[w], lr=0.05), dict(kind="adamw", params=[b])])
    muon, adamw = opt.param_groups
    assert muon["initial_lr"] == 0.05 and muon["momentum"] == 0.95 and muon["nesterov"]
    assert muon["ns_steps"] == 5 and adamw["betas"] == (0.9, 0.95) and "eps" in adamw
    assert opt.world_size == 1
    with pytest.raises(ValueError, match="2-D"):
        MuonAdamW([dict(kind="muon", params=[b])])
    with pytest.raises(ValueError, match="kind"):
        MuonAdamW([dict(params=[b])])


# ------------------------------------------------------------------------------ several ranks

STEPS_BEFORE_SAVE = 3
STEPS_AFTER_SAVE = 2


def _make_params(device: torch.device | str = "cpu") -> list[nn.Parameter]:
    """A stand-in for the GPT's parameters, with stack sizes that 2 and 3 ranks do not divide."""
    g = torch.Generator().manual_seed(0)
    shapes = (
        [(16, 16)] * 5  # "attention" matrices of group 0
        + [(32, 16)] * 2  # "c_fc"
        + [(16, 32)]  # "c_proj"
        + [(16, 16)]  # a second Muon group with the same shape but another lr
        + [(4100, 16)]  # embedding: its own bucket; 65,600 elements, 3 does not divide
        + [(4100, 16)]  # lm_head
        + [(16,), (16,), ()]  # gains and a scalar, packed into one bucket
    )
    return [nn.Parameter((torch.randn(s, generator=g) * 0.1).to(device)) for s in shapes]


def _make_optimizer(params: list[nn.Parameter], fast_muon: bool = False) -> MuonAdamW:
    groups = [
        dict(kind="muon", params=params[0:8], lr=0.02, weight_decay=0.01),
        dict(kind="muon", params=params[8:9], lr=0.03, weight_decay=0.0, nesterov=False),
        dict(kind="adamw", params=params[9:10], lr=0.2, weight_decay=0.0, betas=(0.8, 0.95)),
        dict(kind="adamw", params=params[10:11], lr=0.004, weight_decay=0.01),
        dict(kind="adamw", params=params[11:], lr=0.05, weight_decay=0.0, eps=1e-10),
    ]
    # Clipping at 1.0: the averaged random gradients' norms (~0.2 and ~2) straddle it.
    return MuonAdamW(groups, max_grad_norm=1.0, ns_dtype=torch.float32, fast_muon=fast_muon)


def _rank_grads(step: int, rank: int, params: list[nn.Parameter]) -> list[torch.Tensor]:
    # Multiples of 2^-17 of modest size: the sum over ranks is exact in fp32 whatever order gloo
    # adds in, so the ranks average to exactly the gradient the 1-rank reference gets. (Otherwise
    # AdamW's g / (|g| + eps) turns last-bit differences of near-zero gradients into visible ones.)
    g = torch.Generator().manual_seed(1000 * step + rank)
    scale = 2.0**-7 if step % 2 else 2.0**-10
    return [
        (torch.round(torch.randn(p.shape, generator=g) * 128) / 128 * scale).to(p.device)
        for p in params
    ]


def _set_grads(params, grads) -> None:
    for p, grad in zip(params, grads, strict=True):
        p.grad = grad.clone()


def _worker(
    rank: int, world: int, store: str, out_dir: str, backend: str = "gloo", fast_muon: bool = False
) -> None:
    torch.set_num_threads(1)
    device = torch.device("cpu")
    if backend == "nccl":
        device = torch.device("cuda", rank)
        torch.cuda.set_device(device)
        # fp32 matmuls, not TF32, so that the GPU ranks compare tightly with the CPU reference.
        torch.backends.cuda.matmul.allow_tf32 = False
    torch_dist.init_process_group(
        backend, init_method=f"file://{store}", rank=rank, world_size=world
    )
    try:
        params = _make_params(device)
        opt = _make_optimizer(params, fast_muon)
        norms = []
        for step in range(STEPS_BEFORE_SAVE):
            _set_grads(params, _rank_grads(step, rank, params))
            norms.append(opt.step())
            opt.zero_grad(set_to_none=True)
        saved_state = opt.state_dict()
        saved_params = [p.detach().clone() for p in params]
        for step in range(STEPS_BEFORE_SAVE, STEPS_BEFORE_SAVE + STEPS_AFTER_SAVE):
            _set_grads(params, _rank_grads(step, rank, params))
            norms.append(opt.step())
            opt.zero_grad(set_to_none=True)

        # Resume: fresh parameters and optimizer, state loaded through a file like a checkpoint.
        path = Path(out_dir) / f"optim_rank{rank}.pt"
        torch.save(saved_state, path)
        resumed = [nn.Parameter(p.clone()) for p in saved_params]
        resumed_opt = _make_optimizer(resumed, fast_muon)
        resumed_opt.load_state_dict(torch.load(path, weights_only=True))
        for step in range(STEPS_BEFORE_SAVE, STEPS_BEFORE_SAVE + STEPS_AFTER_SAVE):
            _set_grads(resumed, _rank_grads(step, rank, resumed))
            resumed_opt.step()
        torch.save(
            {
                "params": [p.detach().cpu() for p in params],
                "resumed": [p.detach().cpu() for p in resumed],
                "norms": torch.stack(norms).cpu(),
                "state_bytes": opt.state_bytes(),
            },
            Path(out_dir) / f"rank{rank}.pt",
        )
        torch_dist.barrier()  # every rank done before any tears down
    finally:
        torch_dist.destroy_process_group()
    # The rank's results are on disk. Leave without the interpreter's C++ teardown: about one
    # exit in 25 aborted there ("terminate called without an active exception", no Python frame
    # left, after all work and the group's destruction), failing a run that had succeeded.
    os._exit(0)


def _store(tmp_path: Path) -> str:
    # A file store, not a TCP one: rank 0 hosting a TCPStore aborted now and then at teardown
    # ("terminate called without an active exception", about 1 run in 20 here).
    return str(tmp_path / "process_group_store")


@pytest.mark.slow  # spawns 2 and 3 processes
@pytest.mark.parametrize("world", [2, 3])
def test_sharded_equals_single_rank_and_resumes_exactly(world, tmp_path):
    mp.spawn(_worker, args=(world, _store(tmp_path), str(tmp_path)), nprocs=world, join=True)
    # A few ulps of slack: torch's fused AdamW kernel vectorises with FMA but finishes each
    # buffer's tail with scalar code, so where a shard boundary falls moves which elements round
    # which way (seen: 70 of 65,600 elements off by up to 1.3e-6 at lr 0.2).
    _check_against_single_rank(world, tmp_path, atol=5e-6)


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_sharded_on_nccl_equals_single_rank(tmp_path):
    # The same check over NCCL (GPU kernels, reduce-scatter / all-gather of NCCL) against the CPU
    # reference; looser, since GPU and CPU matmuls round differently.
    mp.spawn(_worker, args=(2, _store(tmp_path), str(tmp_path), "nccl"), nprocs=2, join=True)
    _check_against_single_rank(2, tmp_path, atol=1e-5)


@pytest.mark.slow  # spawns 2 processes
def test_sharded_fast_muon_equals_single_rank(tmp_path):
    """fast_muon on 2 ranks (each updates its block of the stack, then the all-gather) equals
    the 1-rank plain optimizer: the option changes how Newton-Schulz runs, not what it gives."""
    args = (2, _store(tmp_path), str(tmp_path), "gloo", True)
    mp.spawn(_worker, args=args, nprocs=2, join=True)
    _check_against_single_rank(2, tmp_path, atol=5e-6)


def _check_against_single_rank(world: int, tmp_path: Path, atol: float) -> None:
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]

    # The 1-rank optimizer, fed the average of the ranks' gradients; one thread, as the workers
    # use, so that CPU kernels split their sums the same way (the conftest fixture restores it).
    torch.set_num_threads(1)
    params = _make_params()
    opt = _make_optimizer(params)
    norms = []
    for step in range(STEPS_BEFORE_SAVE + STEPS_AFTER_SAVE):
        per_rank = [_rank_grads(step, r, params) for r in range(world)]
        _set_grads(params, [sum(gs) / world for gs in zip(*per_rank, strict=True)])
        norms.append(opt.step())
    norms = torch.stack(norms)
    assert (norms > 1.0).any() and (norms < 1.0).any()  # clipping was exercised both ways

    for r, res in enumerate(results):
        torch.testing.assert_close(res["norms"], norms, atol=atol, rtol=1e-5)
        for i, (got, want) in enumerate(zip(res["params"], params, strict=True)):
            torch.testing.assert_close(
                got,
                want.detach(),
                atol=atol,
                rtol=1e-5,
                msg=lambda m, r=r, i=i: f"rank {r} p{i}: {m}",
            )
            # Every rank holds the same model after the all-gather...
            assert torch.equal(got, results[0]["params"][i])
            # ...and a run resumed from the saved shards continues bit for bit.
            assert torch.equal(res["resumed"][i], got), f"rank {r}: resumed param {i} differs"

    # ZeRO-2: each rank holds about 1/world of the state, and together exactly all of it.
    total = opt.state_bytes()
    per_rank = [res["state_bytes"] for res in results]
    assert sum(per_rank) == total
    assert max(per_rank) <= total / world * 1.05, (per_rank, total)


def test_load_state_dict_refuses_another_layout():
    params = _make_params()
    opt = _make_optimizer(params)
    state = opt.state_dict()
    state["world_size"] = 2
    with pytest.raises(ValueError, match="same world size"):
        opt.load_state_dict(state)
    other = MuonAdamW([dict(kind="adamw", params=params)])
    with pytest.raises(ValueError, match="param groups"):
        other.load_state_dict(opt.state_dict())


# ------------------------------------------------------------------------------ does it learn


class _ResidualMLP(nn.Module):
    """Input projection, residual blocks of square matrices, output head: a GPT in miniature."""

    def __init__(self, d_in: int = 32, width: int = 128, classes: int = 10, depth: int = 3):
        super().__init__()
        self.inp = nn.Linear(d_in, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width, bias=False) for _ in range(depth))
        self.out = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        for layer in self.hidden:
            x = x + layer(F.relu(x))
        return self.out(F.relu(x))


def _teacher_task(seed: int, n: int = 4096, d_in: int = 32, classes: int = 10):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g)
    w1, w2 = torch.randn(d_in, 64, generator=g), torch.randn(64, classes, generator=g)
    return x, (torch.tanh(x @ w1) @ w2).argmax(-1)


def _train(groups_for, seed: int, steps: int = 100) -> float:
    """Final full-data loss after `steps` of batch 128; the seed draws the task, the network's
    initialisation and the batch order."""
    torch.manual_seed(seed)
    x, y = _teacher_task(seed)
    net = _ResidualMLP()
    opt = MuonAdamW(groups_for(net), max_grad_norm=1.0)
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=g)
        F.cross_entropy(net(x[idx]), y[idx]).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    with torch.no_grad():
        return F.cross_entropy(net(x), y).item()


@pytest.mark.slow  # 9 short trainings: about a minute on a busy 2-core CPU
def test_muon_beats_adamw_in_the_same_steps():
    """On every one of three seeds (task, initialisation, batch order), Muon at its textbook lr
    ends below AdamW at the better of its two best lrs, by at least 10%.

    Measured over seeds 0-4 (2026-12-03): Muon / best AdamW = 0.75, 0.79, 0.79, 0.79, 0.77, and
    AdamW's lr 3e-2 never won (so it is not swept here): the 10% margin holds with room on each.
    """

    def adamw_only(lr):
        return lambda net: [dict(kind="adamw", params=list(net.parameters()), lr=lr)]

    def muon_adamw(net):
        matrices = [layer.weight for layer in net.hidden]
        rest = [p for p in net.parameters() if all(p is not m for m in matrices)]
        return [
            dict(kind="muon", params=matrices, lr=0.02),
            dict(kind="adamw", params=rest, lr=3e-3),
        ]

    ratios = []
    for seed in (0, 1, 2):
        best_adamw = min(_train(adamw_only(lr), seed) for lr in (3e-3, 1e-2))
        ratios.append(_train(muon_adamw, seed) / best_adamw)
    assert max(ratios) < 0.9, ratios


@pytest.mark.slow  # torch.compile on a CPU
@pytest.mark.parametrize("fast", [False, True])
def test_compiled_muon_update_equals_the_eager_one(fast):
    """compile_muon (torch.compile of Muon's per-bucket maths) changes speed, not results; with
    fast_muon too (the folded iteration traced and compiled)."""

    def run(compiled: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(32, 16)) for _ in range(3)]
        params.append(torch.nn.Parameter(torch.randn(16, 48)))
        opt = MuonAdamW(
            [{"kind": "muon", "params": params, "lr": 0.02}],
            compile_muon=compiled,
            fast_muon=fast,
            ns_dtype=torch.float32,  # bf16 rounding would differ between fused and eager kernels
        )
        for i in range(3):
            gen = torch.Generator().manual_seed(i)
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen)
            opt.step()
        return [p.detach().clone() for p in params]

    for a, b in zip(run(False), run(True), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
