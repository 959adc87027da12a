"""Approach 3 of Hoffmann et al. 2022 (https://arxiv.org/abs/2203.15556): L(N, D) = E + A/N^alpha
+ B/D^beta fitted to every healthy run.

The fit follows the paper's recipe as Besiroglu et al. 2024 (https://arxiv.org/abs/2404.10102)
carried it out in full: a Huber loss (delta = 1e-3) on log L, summed over runs, with the law
written as log L = LSE(a - alpha log N, b - beta log D, e) (A = e^a, B = e^b, E = e^e), minimised
by L-BFGS from the best points of a grid of initialisations, with tolerances tight enough that
the optimiser does not stop early. Hoffmann's printed fit (E = 1.69, A = 406.4, B = 410.7,
alpha = 0.34, beta = 0.28) is not a minimum of that objective on their own data: Besiroglu et al.
traced it to an optimiser that stopped too soon.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from nanogpt.scaling_laws.results import (
    Estimate,
    InsufficientDataError,
    decode_array,
    encode_array,
    ensure_loaded,
)

HUBER_DELTA = 1e-3  # Hoffmann et al. 2022, section 3.3
# Hoffmann et al. 2022, appendix D.2: the grid of initialisations, in (a, b, e, alpha, beta).
HOFFMANN_GRID = np.array(
    list(
        itertools.product(
            np.arange(0.0, 30.0, 5.0),  # a = log A
            np.arange(0.0, 30.0, 5.0),  # b = log B
            np.arange(-1.0, 1.5, 0.5),  # e = log E
            np.arange(0.0, 2.5, 0.5),  # alpha
            np.arange(0.0, 2.5, 0.5),  # beta
        )
    )
)
PARAMETER_NAMES = ("E", "A", "B", "alpha", "beta")
# Tight enough that L-BFGS runs to the minimum rather than stopping on a flat stretch: scipy's
# defaults (ftol ~2e-9, maxiter 15000 but maxls 20) are what Besiroglu et al. found too loose.
LBFGS_OPTIONS = {"ftol": 1e-15, "gtol": 1e-12, "maxiter": 20_000, "maxfun": 100_000, "maxls": 50}
# Below these, a parameter sits at its lower bound of 0 and the law has lost a term: E under
# 0.1% of the smallest loss, an exponent under 0.01, a term under 0.1% of the loss at every run.
NEGLIGIBLE_SHARE = 1e-3
NEGLIGIBLE_EXPONENT = 1e-2


def _objective(
    theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_loss: np.ndarray, delta: float
) -> tuple[float, np.ndarray]:
    """Summed Huber loss of log L and its gradient in theta = (a, b, e, alpha, beta): the
    batched objective (below) for one problem with every run weighted 1."""
    weights = np.ones((1, len(log_loss)))
    value, grad = _batch_objective(theta[None, :], log_n, log_d, log_loss, weights, delta)
    return float(value[0]), grad[0]


def _grid_objective(
    grid: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_loss: np.ndarray, delta: float
) -> np.ndarray:
    """The summed Huber loss at every row of the grid, vectorised over (grid row, point)."""
    a, b, e, alpha, beta = (grid[:, i : i + 1] for i in range(5))
    t0, t1 = a - alpha * log_n, b - beta * log_d
    top = np.maximum(np.maximum(t0, t1), e)
    log_pred = top + np.log(np.exp(t0 - top) + np.exp(t1 - top) + np.exp(e - top))
    residual = np.abs(log_pred - log_loss)
    return np.where(residual <= delta, 0.5 * residual**2, delta * (residual - 0.5 * delta)).sum(1)


def _batch_objective(
    theta: np.ndarray,
    log_n: np.ndarray,
    log_d: np.ndarray,
    log_loss: np.ndarray,
    weights: np.ndarray,
    delta: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted summed Huber loss of log L and its gradient for many problems at once: rows of
    theta (R, 5) = (a, b, e, alpha, beta), each with its own weights of the runs (R, n) (a
    bootstrap resample is the runs weighted by how often it drew them). log L = LSE(t0, t1, e)
    is written out: scipy's logsumexp costs more than the maths at a few hundred points."""
    a, b, e, alpha, beta = (theta[:, i : i + 1] for i in range(5))
    t0 = a - alpha * log_n
    t1 = b - beta * log_d
    top = np.maximum(np.maximum(t0, t1), e)
    w0, w1, w2 = np.exp(t0 - top), np.exp(t1 - top), np.exp(e - top)
    total = w0 + w1 + w2
    residual = top + np.log(total) - log_loss
    abs_residual = np.abs(residual)
    huber = np.where(abs_residual <= delta, 0.5 * residual**2, delta * (abs_residual - 0.5 * delta))
    value = (weights * huber).sum(1)
    slope = weights * np.clip(residual, -delta, delta) / total
    g0, g1, g2 = slope * w0, slope * w1, slope * w2
    grad = np.stack([g0.sum(1), g1.sum(1), g2.sum(1), -(g0 @ log_n), -(g1 @ log_d)], axis=1)
    return value, grad


# The batched optimiser's memory, iteration cap and stopping rule. A row stops when an
# iteration lowers its objective by less than BATCH_FTOL of itself, or when no step along its
# direction lowers it at all (the kinks of a Huber loss with a small delta end L-BFGS this way).
BATCH_MEMORY = 10
BATCH_MAX_ITERATIONS = 3000
BATCH_FTOL = 1e-13
BATCH_MAX_HALVINGS = 40


def _lbfgs_direction(
    g: np.ndarray, idx: np.ndarray, iteration: int, history: tuple, gamma: np.ndarray
) -> np.ndarray:
    """L-BFGS's search direction for rows ``idx`` (gradients ``g``): the two-loop recursion over
    the stored (s, y, rho) pairs, newest first; empty slots have rho 0 and drop out."""
    s_hist, y_hist, rho_hist = history
    q = g.copy()
    alphas = []
    for k in range(BATCH_MEMORY):
        slot = (iteration - 1 - k) % BATCH_MEMORY
        a_k = rho_hist[slot, idx] * np.einsum("ri,ri->r", s_hist[slot, idx], q)
        q -= a_k[:, None] * y_hist[slot, idx]
        alphas.append((slot, a_k))
    r = gamma[idx, None] * q
    for slot, a_k in reversed(alphas):
        b_k = rho_hist[slot, idx] * np.einsum("ri,ri->r", y_hist[slot, idx], r)
        r += (a_k - b_k)[:, None] * s_hist[slot, idx]
    return -r


def _minimise_batch(
    theta0: np.ndarray, args: tuple, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """L-BFGS (two-loop recursion, backtracking Armijo line search) on many weighted problems
    at once, all started at theta0: one array operation per step for all of them, where
    scipy's minimize costs Python overhead per problem and per step (a 1000-resample
    bootstrap went from 44 s to a few seconds; docs/benchmarks.md).

    Returns the end points (R, 5), their objectives (R,) and whether each converged (R,).
    """
    log_n, log_d, log_loss, delta = args
    rows = weights.shape[0]
    theta = np.repeat(theta0[None, :].astype(float), rows, axis=0)
    value, grad = _batch_objective(theta, log_n, log_d, log_loss, weights, delta)
    s_hist = np.zeros((BATCH_MEMORY, rows, 5))
    y_hist = np.zeros((BATCH_MEMORY, rows, 5))
    rho_hist = np.zeros((BATCH_MEMORY, rows))
    gamma = np.full(rows, 1e-2) / np.maximum(np.abs(grad).max(1), 1e-300)
    active = np.ones(rows, dtype=bool)
    converged = np.zeros(rows, dtype=bool)
    for iteration in range(BATCH_MAX_ITERATIONS):
        if not active.any():
            break
        idx = np.flatnonzero(active)
        g = grad[idx]
        direction = _lbfgs_direction(g, idx, iteration, (s_hist, y_hist, rho_hist), gamma)
        slope = np.einsum("ri,ri->r", g, direction)
        # Not a descent direction (stale curvature pairs): fall back to steepest descent.
        bad = ~(slope < 0)
        direction[bad] = -gamma[idx][bad, None] * g[bad]
        slope[bad] = np.einsum("ri,ri->r", g[bad], direction[bad])
        step = np.ones(len(idx))
        new_value = np.full(len(idx), np.inf)
        new_theta = theta[idx].copy()
        new_grad = g.copy()
        pending = np.ones(len(idx), dtype=bool)
        for _ in range(BATCH_MAX_HALVINGS):
            p = np.flatnonzero(pending)
            trial = theta[idx[p]] + step[p, None] * direction[p]
            v, gr = _batch_objective(trial, log_n, log_d, log_loss, weights[idx[p]], delta)
            ok = v <= value[idx[p]] + 1e-4 * step[p] * slope[p]
            accepted = p[ok]
            new_value[accepted], new_theta[accepted], new_grad[accepted] = v[ok], trial[ok], gr[ok]
            pending[accepted] = False
            step[p[~ok]] *= 0.5
            if not pending.any():
                break
        moved = ~pending
        # Rows whose line search found no lower point have stopped where they are.
        stuck = idx[pending]
        active[stuck] = False
        converged[stuck] = True
        m_idx = idx[moved]
        s = new_theta[moved] - theta[m_idx]
        y = new_grad[moved] - grad[m_idx]
        sy = np.einsum("ri,ri->r", s, y)
        slot = iteration % BATCH_MEMORY
        good = sy > 1e-300
        rho_hist[slot, idx] = 0.0
        rho_hist[slot, m_idx[good]] = 1.0 / sy[good]
        s_hist[slot, m_idx], y_hist[slot, m_idx] = s, y
        yy = np.einsum("ri,ri->r", y, y)
        gamma[m_idx[good]] = sy[good] / yy[good]
        decrease = value[m_idx] - new_value[moved]
        theta[m_idx], value[m_idx], grad[m_idx] = (
            new_theta[moved],
            new_value[moved],
            new_grad[moved],
        )
        done = decrease <= BATCH_FTOL * np.abs(new_value[moved])
        active[m_idx[done]] = False
        converged[m_idx[done]] = True
    return theta, value, converged & np.isfinite(theta).all(1)


def _tails(rows: int) -> np.ndarray:
    """-inf, +inf, -inf, ...: where a resample with no answer goes, half to each tail."""
    return np.where(np.arange(rows) % 2 == 0, -np.inf, np.inf)


def minimise_scipy(theta0: np.ndarray, args: tuple) -> tuple[np.ndarray, float, str]:
    """One fit with scipy's L-BFGS-B from ``theta0`` (see ``to_theta``) on ``args`` = (log N,
    log D, log L, Huber delta): (theta, objective, scipy's message). The full-data fit's starts
    use it; the benchmarks time it against the batched refits."""
    result = minimize(
        _objective, theta0, args=args, jac=True, method="L-BFGS-B", options=LBFGS_OPTIONS
    )
    return result.x, float(result.fun), str(result.message)


def to_theta(params: dict[str, float]) -> np.ndarray:
    """{E, A, B, alpha, beta} -> the vector the optimiser works on: (log A, log B, log E, alpha,
    beta)."""
    return np.array(
        [
            math.log(params["A"]),
            math.log(params["B"]),
            math.log(params["E"]),
            params["alpha"],
            params["beta"],
        ]
    )


def _natural(theta: np.ndarray) -> np.ndarray:
    """Rows of (a, b, e, alpha, beta) as rows of (E, A, B, alpha, beta)."""
    theta = np.atleast_2d(theta)
    with np.errstate(over="ignore"):  # a runaway bootstrap refit gives inf, kept in the tails
        return np.stack(
            [
                np.exp(theta[:, 2]),
                np.exp(theta[:, 0]),
                np.exp(theta[:, 1]),
                theta[:, 3],
                theta[:, 4],
            ],
            axis=1,
        )


def _optimum(natural: np.ndarray, flops: float | np.ndarray) -> tuple[np.ndarray, ...]:
    """Compute-optimal N, D and loss with C = 6 N D, for rows of (E, A, B, alpha, beta).

    Setting dL/dN = 0 along D = C / (6N) gives N* = G (C/6)^(beta/(alpha+beta)) with
    G = (alpha A / (beta B))^(1/(alpha+beta)) (Hoffmann et al. 2022, appendix D.3).
    """
    e, a, b, alpha, beta = (natural[:, i : i + 1] for i in range(5))
    c = np.atleast_1d(np.asarray(flops, dtype=float))[None, :] / 6.0
    with np.errstate(all="ignore"):
        g = (alpha * a / (beta * b)) ** (1.0 / (alpha + beta))
        n_opt = g * c ** (beta / (alpha + beta))
        d_opt = c / n_opt
        loss = e + a / n_opt**alpha + b / d_opt**beta
    return n_opt, d_opt, loss


@dataclass
class ParametricFit:
    """Approach 3: L(N, D) = E + A/N^alpha + B/D^beta with bootstrap intervals."""

    E: Estimate
    A: Estimate
    B: Estimate
    alpha: Estimate
    beta: Estimate
    a: Estimate  # N* grows as C^a, a = beta / (alpha + beta)
    b: Estimate  # D* grows as C^b, b = alpha / (alpha + beta)
    objective: float  # summed Huber loss at the optimum
    n_points: int
    optimizer_message: str
    n_bootstrap: int
    samples: np.ndarray | None = field(default=None, repr=False)  # rows of (E, A, B, alpha, beta)
    n_bootstrap_failed: int = 0  # resamples whose refit did not converge (in the tails)
    # Why the fit should not be trusted (a parameter at a bound, a term that vanished, an
    # optimiser that did not converge); empty for a healthy fit.
    notes: list[str] = field(default_factory=list)

    @property
    def degenerate(self) -> bool:
        """The fit ended at a bound or is otherwise degenerate: see `notes`."""
        return bool(self.notes)

    @property
    def values(self) -> np.ndarray:
        """(E, A, B, alpha, beta) as one row."""
        return np.array([[getattr(self, name).value for name in PARAMETER_NAMES]])

    def loss(self, params: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """The fitted law at the given model sizes and token counts."""
        e, a, b, alpha, beta = self.values[0]
        return e + a / np.asarray(params, float) ** alpha + b / np.asarray(tokens, float) ** beta

    def optimal(self, flops: float | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Compute-optimal (N, D, loss) at each budget, taking C = 6 N D."""
        n_opt, d_opt, loss = _optimum(self.values, flops)
        return n_opt[0], d_opt[0], loss[0]

    def optimal_band(self, flops: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
        """Pointwise 95% bands of the compute-optimal N, D and loss, or None without a bootstrap."""
        if self.samples is None or len(self.samples) < 2:
            return None
        bands = {}
        for name, values in zip(("params", "tokens", "loss"), _optimum(self.samples, flops)):
            low, high = np.nanpercentile(values, [2.5, 97.5], axis=0)
            bands[name] = (low, high)
        return bands

    def predict(self, budget: float) -> dict:
        """Compute-optimal N, D and loss at `budget` FLOPs (C = 6 N D), with intervals."""
        point = [float(v[0]) for v in self.optimal(budget)]
        boot = _optimum(self.samples, budget) if self.samples is not None else (None,) * 3
        out = {"approach": 3, "budget": float(budget), "flops_convention": "6N"}
        for name, value, samples in zip(("params", "tokens", "loss"), point, boot):
            column = None if samples is None else samples[:, 0]
            out[name] = Estimate.from_samples(value, column, positive=True).to_dict()
        return out

    def to_dict(self, samples: bool = False) -> dict:
        """JSON-ready; with `samples`, also the bootstrap replicates the figures' bands need."""
        out: dict = {"approach": 3, "flops_convention": "6N"}
        for name in (*PARAMETER_NAMES, "a", "b"):
            out[name] = getattr(self, name).to_dict()
        out.update(
            objective=self.objective,
            n_points=self.n_points,
            optimizer_message=self.optimizer_message,
            n_bootstrap=self.n_bootstrap,
            n_bootstrap_failed=self.n_bootstrap_failed,
            degenerate=self.degenerate,
            notes=self.notes,
        )
        if samples and self.samples is not None:
            out["samples"] = encode_array(self.samples)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> ParametricFit:
        """The fit as to_dict(samples=True) wrote it (what the figures draw from fits.json)."""
        samples = d.get("samples")
        return cls(
            **{name: Estimate.from_dict(d[name]) for name in (*PARAMETER_NAMES, "a", "b")},
            objective=d["objective"],
            n_points=d["n_points"],
            optimizer_message=d["optimizer_message"],
            n_bootstrap=d["n_bootstrap"],
            samples=None if samples is None else decode_array(samples, 5),
            n_bootstrap_failed=d.get("n_bootstrap_failed", 0),
            notes=list(d["notes"]),
        )


def _diagnose(
    natural: np.ndarray,
    samples: np.ndarray | None,
    log_n: np.ndarray,
    log_d: np.ndarray,
    log_loss: np.ndarray,
    message: str,
) -> list[str]:
    """Notes on a fit that ended at a bound of its parameter space or is otherwise degenerate.

    The parameters are free in the optimiser but have natural lower bounds (E, A, B >= 0 and
    exponents >= 0 for a loss that falls with N and D). A fit that runs to one of them has
    dropped a term of the law; its intervals then describe a flat valley, not uncertainty.
    """
    e, a, b, alpha, beta = natural
    loss = np.exp(log_loss)
    model_term, data_term = a * np.exp(-alpha * log_n), b * np.exp(-beta * log_d)
    predicted = e + model_term + data_term
    notes = []
    at_bound = set()
    if e < NEGLIGIBLE_SHARE * loss.min():
        at_bound.add("E")
        notes.append(
            f"E = {e:.3g} ran to its lower bound 0 (the smallest loss is {loss.min():.4g}): the "
            "fit found no irreducible loss, so E is not determined by these runs and the law's "
            "extrapolation to larger budgets is not to be trusted"
        )
    for name, value, what in (("alpha", alpha, "N"), ("beta", beta, "D")):
        if value < NEGLIGIBLE_EXPONENT:
            at_bound.add(name)
            notes.append(
                f"{name} = {value:.3g} is at or below its lower bound 0: over these runs the "
                f"loss does not fall with {what}, which the law assumes"
            )
    for names, term, label in (
        (("A", "alpha"), model_term, "A/N^alpha"),
        (("B", "beta"), data_term, "B/D^beta"),
    ):
        if np.max(term / predicted) < NEGLIGIBLE_SHARE:
            at_bound.update(names)
            notes.append(
                f"the term {label} is under {NEGLIGIBLE_SHARE:.1%} of the fitted loss at every "
                f"run: {' and '.join(names)} are not determined by these runs"
            )
    if samples is not None and len(samples) >= 2:
        diverged = []
        for i, name in enumerate(PARAMETER_NAMES):
            with np.errstate(over="ignore", invalid="ignore"):  # replicates near 1e200 or inf
                spread = np.std(samples[:, i], ddof=1)
            if not np.isfinite(spread):
                diverged.append(name)
            elif name not in at_bound and spread <= 1e-6 * abs(natural[i]):
                notes.append(
                    f"{name} did not move in any bootstrap resample (SE {spread:.2g}): the "
                    "objective is flat in it, and its interval means nothing"
                )
        if diverged:
            notes.append(
                f"some bootstrap resamples ran {', '.join(diverged)} off towards infinity "
                "(SE inf): the runs barely constrain the law"
            )
    if "CONVERGENCE" not in message.upper():
        notes.append(f"L-BFGS did not report convergence ({message})")
    return notes


def _check_enough(df: pd.DataFrame) -> None:
    """Approach 3 needs twice as many runs as parameters, at two budgets or more."""
    n_points = len(df)
    if n_points < 2 * len(PARAMETER_NAMES):
        raise InsufficientDataError(
            f"Approach 3 fits {len(PARAMETER_NAMES)} parameters and needs at least "
            f"{2 * len(PARAMETER_NAMES)} healthy runs; got {n_points}"
        )
    if df["budget"].nunique() < 2:
        raise InsufficientDataError(
            f"Approach 3 needs runs at two or more compute budgets; all {n_points} runs share "
            f"C={df['budget'].iloc[0]:.3g}, so D is fixed by N and the N and D terms of the law "
            "cannot be told apart"
        )


def _bootstrap(
    theta: np.ndarray, args: tuple, n_points: int, n_bootstrap: int, seed: int
) -> tuple[np.ndarray | None, np.ndarray | None, int]:
    """Refit every resample: (natural parameters per resample, which ran off to infinity, how
    many did not converge); (None, None, 0) without resamples."""
    if n_bootstrap <= 0:
        return None, None, 0
    # A resample is the runs weighted by how often it drew each; all are refitted at once,
    # from the full-data optimum (the resample's optimum is close to it).
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n_points, (n_bootstrap, n_points))
    counts = np.zeros((n_bootstrap, n_points))
    np.add.at(counts, (np.arange(n_bootstrap)[:, None], picks), 1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        rows, _, converged = _minimise_batch(theta, args, counts)
        samples = _natural(rows)
    # A refit the optimiser did not finish is counted and kept at its last point; one that
    # ran off to infinity is put in the tails (alternately low and high), so that it widens
    # the intervals instead of vanishing from them.
    n_failed = int((~converged).sum())
    lost = ~np.isfinite(samples).all(axis=1)
    samples[lost] = _tails(n_bootstrap)[lost, None]
    return samples, lost, n_failed


def fit_parametric(
    data: str | os.PathLike | pd.DataFrame,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    init: dict[str, float] | None = None,
    n_starts: int = 5,
    delta: float = HUBER_DELTA,
) -> ParametricFit:
    """Approach 3 on the healthy runs of a results table (see load_results).

    The objective is evaluated on Hoffmann's grid of initialisations, and L-BFGS runs from the
    `n_starts` best grid points; the lowest end point wins. With `init` (a dict with E, A, B,
    alpha and beta), L-BFGS runs from there alone, which shows where a given start leads. Each
    bootstrap resample (runs drawn with replacement) is refitted from the full-data optimum.
    """
    df = ensure_loaded(data)
    n_points = len(df)
    _check_enough(df)
    log_n = np.log(df["N"].to_numpy(float))
    log_d = np.log(df["D"].to_numpy(float))
    log_loss = np.log(df["L"].to_numpy(float))
    args = (log_n, log_d, log_loss, delta)

    if init is not None:
        starts = to_theta(init)[None, :]
    else:
        scores = _grid_objective(HOFFMANN_GRID, *args)
        starts = HOFFMANN_GRID[np.argsort(scores)[:n_starts]]
    best = min((minimise_scipy(start, args) for start in starts), key=lambda result: result[1])
    theta, objective, message = best

    samples, lost, n_failed = _bootstrap(theta, args, n_points, n_bootstrap, seed)
    natural = _natural(theta)[0]
    estimates = {
        # A and B are scale factors: their intervals are moved by factors (Estimate).
        name: Estimate.from_samples(
            natural[i], None if samples is None else samples[:, i], positive=name in ("A", "B")
        )
        for i, name in enumerate(PARAMETER_NAMES)
    }
    alpha, beta = natural[3], natural[4]
    share = {"a": None, "b": None}
    if samples is not None:
        with np.errstate(invalid="ignore"):
            share["a"] = samples[:, 4] / (samples[:, 3] + samples[:, 4])
            share["b"] = samples[:, 3] / (samples[:, 3] + samples[:, 4])
        for column in share.values():
            column[lost] = _tails(n_bootstrap)[lost]
    return ParametricFit(
        **estimates,
        a=Estimate.from_samples(beta / (alpha + beta), share["a"]),
        b=Estimate.from_samples(alpha / (alpha + beta), share["b"]),
        objective=objective,
        n_points=n_points,
        optimizer_message=message,
        n_bootstrap=n_bootstrap,
        samples=samples,
        n_bootstrap_failed=n_failed,
        # Refits that did not converge say how sure the intervals are, not that the fit itself
        # is degenerate: they are counted in n_bootstrap_failed, kept at their last point, and
        # the analysis flags them above its MAX_FAILED_SHARE.
        notes=_diagnose(natural, samples, log_n, log_d, log_loss, message),
    )
