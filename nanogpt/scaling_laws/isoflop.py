"""Approach 2 of Hoffmann et al. 2022 (https://arxiv.org/abs/2203.15556): isoFLOP profiles.

For each compute budget, fit a parabola of final loss against log10 N and take its vertex as
the compute-optimal model size N*(C); the tokens and loss there follow. Straight lines through
(log C, log N*) and (log C, log D*) give N* = k C^a and D* = k' C^b. Intervals come from a
bootstrap that resamples runs with replacement within each budget.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from nanogpt.scaling_laws.results import (
    Estimate,
    InsufficientDataError,
    ensure_loaded,
)

MIN_POINTS_PER_BUDGET = 3  # a parabola has three coefficients


@dataclass
class PowerLaw:
    """y = coefficient * C ** exponent, fitted by least squares on log10 y against log10 C."""

    coefficient: Estimate
    exponent: Estimate
    # Bootstrap replicates as rows of (log10 coefficient, exponent); None without a bootstrap.
    samples: np.ndarray | None = field(default=None, repr=False)

    def __call__(self, flops: float | np.ndarray) -> np.ndarray:
        return self.coefficient.value * np.asarray(flops, dtype=float) ** self.exponent.value

    def predict(self, flops: float) -> Estimate:
        """The law at one budget, with the bootstrap spread of the prediction."""
        value = float(self(flops))
        if self.samples is None:
            return Estimate(value)
        return Estimate.from_samples(
            value, 10.0 ** (self.samples[:, 0] + self.samples[:, 1] * np.log10(flops))
        )

    def band(self, flops: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Pointwise 95% band of the law over `flops`, or None without a bootstrap."""
        if self.samples is None or len(self.samples) < 2:
            return None
        log_y = self.samples[:, :1] + self.samples[:, 1:] * np.log10(flops)[None, :]
        low, high = np.nanpercentile(log_y, [2.5, 97.5], axis=0)
        return 10.0**low, 10.0**high

    def to_dict(self) -> dict:
        return {"coefficient": self.coefficient.to_dict(), "exponent": self.exponent.to_dict()}


@dataclass
class BudgetMinimum:
    """The fitted isoFLOP curve of one budget and its lowest point."""

    budget: float  # the group's FLOP budget (the value runs were grouped by)
    flops: float  # compute at the minimum under the fit's FLOP convention
    n_points: int  # runs the parabola was fitted to
    params: Estimate  # N*
    tokens: Estimate  # D*
    loss: Estimate  # L at N*
    interior: bool  # N* lies inside the range of fitted model sizes (not extrapolated)
    # Parabola L = c2 (x - x0)^2 + c1 (x - x0) + c0 with x = log10 N, as (c2, c1, c0), and x0.
    parabola: tuple[float, float, float]
    x0: float
    log10_params_range: tuple[float, float]  # sizes the parabola was fitted over
    parabola_samples: np.ndarray | None = field(default=None, repr=False)  # bootstrap (c2, c1, c0)

    def curve(self, params: np.ndarray) -> np.ndarray:
        """The fitted parabola's loss at the given model sizes."""
        return np.polyval(self.parabola, np.log10(params) - self.x0)

    def curve_band(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Pointwise 95% band of the parabola, or None without a bootstrap."""
        if self.parabola_samples is None or len(self.parabola_samples) < 2:
            return None
        x = np.log10(params) - self.x0
        c = self.parabola_samples
        values = c[:, :1] * x[None, :] ** 2 + c[:, 1:2] * x[None, :] + c[:, 2:3]
        low, high = np.nanpercentile(values, [2.5, 97.5], axis=0)
        return low, high

    def to_dict(self) -> dict:
        return {
            "budget": self.budget,
            "flops": self.flops,
            "n_points": self.n_points,
            "params": self.params.to_dict(),
            "tokens": self.tokens.to_dict(),
            "loss": self.loss.to_dict(),
            "interior": self.interior,
        }


@dataclass
class IsoFlopFit:
    """Approach 2: per-budget minima and the power laws through them."""

    minima: list[BudgetMinimum]
    params_law: PowerLaw  # N* = k C^a
    tokens_law: PowerLaw  # D* = k' C^b
    loss_law: PowerLaw  # L* = k'' C^c, a plain power law (no irreducible term): a rough guide
    flops_convention: str
    window_decades: float | None
    n_bootstrap: int  # resamples asked for
    n_bootstrap_used: int  # resamples in which every budget had a minimum
    notes: list[str]

    def predict(self, budget: float) -> dict:
        """Compute-optimal N, D and loss at `budget` FLOPs (in this fit's convention)."""
        return {
            "approach": 2,
            "budget": float(budget),
            "flops_convention": self.flops_convention,
            "params": self.params_law.predict(budget).to_dict(),
            "tokens": self.tokens_law.predict(budget).to_dict(),
            "loss": self.loss_law.predict(budget).to_dict(),
        }

    def to_dict(self) -> dict:
        return {
            "approach": 2,
            "flops_convention": self.flops_convention,
            "window_decades": self.window_decades,
            "n_bootstrap": self.n_bootstrap,
            "n_bootstrap_used": self.n_bootstrap_used,
            "minima": [m.to_dict() for m in self.minima],
            "params_law": self.params_law.to_dict(),
            "tokens_law": self.tokens_law.to_dict(),
            "loss_law": self.loss_law.to_dict(),
            "notes": self.notes,
        }


def _design(x: np.ndarray) -> np.ndarray:
    return np.stack([x**2, x, np.ones_like(x)], axis=-1)


def _vertex(coeffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertex (x, L) of parabolas given as rows (c2, c1, c0); NaN where it opens downward."""
    c2, c1, c0 = coeffs[..., 0], coeffs[..., 1], coeffs[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(c2 > 0, -c1 / (2 * c2), np.nan)
        loss = np.where(c2 > 0, c0 - c1**2 / (4 * c2), np.nan)
    return x, loss


def _bootstrap_parabolas(
    x: np.ndarray, loss: np.ndarray, n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Parabola coefficients fitted to `n_resamples` resamples (with replacement) of the points.

    Resamples with fewer than three distinct model sizes cannot fix a parabola; they are drawn
    again, so with only three runs in a budget every resample is the original set and the
    interval collapses: a budget needs five or more runs for a meaningful interval.
    """
    n = len(x)
    if n_resamples <= 0:
        return np.empty((0, 3))
    indices = np.empty((0, n), dtype=np.int64)
    while len(indices) < n_resamples:
        draw = rng.integers(0, n, size=(2 * n_resamples, n))
        distinct = np.array([len(np.unique(x[row])) for row in draw])
        indices = np.concatenate([indices, draw[distinct >= MIN_POINTS_PER_BUDGET]])
    indices = indices[:n_resamples]
    design = _design(x)[indices]  # (B, n, 3)
    gram = np.einsum("bni,bnj->bij", design, design)
    moment = np.einsum("bni,bn->bi", design, loss[indices])
    return np.linalg.solve(gram, moment[..., None])[..., 0]


def _interpolator(x: np.ndarray, y: np.ndarray):
    """Piecewise-linear y(x) through the points (averaged where x repeats), extended linearly
    beyond them by the end segments.

    Within one budget, log D and log C are smooth, noise-free functions of log N, so this is
    exact at the runs; a polynomial would swing wildly where a bootstrap vertex lands outside.
    """
    xs, inverse = np.unique(x, return_inverse=True)
    ys = np.bincount(inverse, weights=y) / np.bincount(inverse)

    def at(x_new: np.ndarray) -> np.ndarray:
        x_new = np.asarray(x_new, dtype=float)
        out = np.interp(x_new, xs, ys)
        low_slope = (ys[1] - ys[0]) / (xs[1] - xs[0])
        high_slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
        out = np.where(x_new < xs[0], ys[0] + low_slope * (x_new - xs[0]), out)
        return np.where(x_new > xs[-1], ys[-1] + high_slope * (x_new - xs[-1]), out)

    return at


def _fit_line(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares (intercept, slope) of y on x, row by row for 2-D input."""
    x_mean = x.mean(axis=-1, keepdims=True)
    y_mean = y.mean(axis=-1, keepdims=True)
    slope = ((x - x_mean) * (y - y_mean)).sum(-1) / ((x - x_mean) ** 2).sum(-1)
    return np.stack([y_mean[..., 0] - slope * x_mean[..., 0], slope], axis=-1)


def _power_law(log_c: np.ndarray, log_y: np.ndarray, samples: np.ndarray | None) -> PowerLaw:
    intercept, slope = _fit_line(log_c, log_y)
    return PowerLaw(
        Estimate.from_samples(10.0**intercept, None if samples is None else 10.0 ** samples[:, 0]),
        Estimate.from_samples(slope, None if samples is None else samples[:, 1]),
        samples,
    )


class _Budget(NamedTuple):
    """One budget's runs as fitted: sizes x = log10 N, losses, centring x0, parabola, and
    interpolators of log10 D and log10 C in x."""

    budget: float
    x: np.ndarray
    loss: np.ndarray
    x0: float
    coeffs: np.ndarray
    d_at: Callable[[np.ndarray], np.ndarray]
    c_at: Callable[[np.ndarray], np.ndarray]

    def minimum(self, coeffs: np.ndarray) -> np.ndarray:
        """(log10 N*, log10 D*, log10 C*, L*) of parabolas given as (..., 3) coefficients."""
        vertex_x, vertex_loss = _vertex(coeffs)
        log_n = vertex_x + self.x0
        return np.stack([log_n, self.d_at(log_n), self.c_at(log_n), vertex_loss], axis=-1)


def fit_isoflop(
    data: str | os.PathLike | pd.DataFrame,
    *,
    window_decades: float | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> IsoFlopFit:
    """Approach 2 on the healthy runs of a results table (see load_results).

    Budgets with fewer than three runs (or, with `window_decades`, fewer than three within that
    many decades of N around the budget's lowest-loss run) are left out, as are budgets whose
    parabola opens downward; `notes` says which. At least two budgets must remain.
    """
    # A nearly flat bootstrap parabola puts its vertex at an absurd size (10**400 overflows)
    # or a negative loss; those replicates become inf or NaN and land in the interval's tails.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _fit_isoflop(data, window_decades, n_bootstrap, seed)


def _fit_isoflop(
    data: str | os.PathLike | pd.DataFrame,
    window_decades: float | None,
    n_bootstrap: int,
    seed: int,
) -> IsoFlopFit:
    df = ensure_loaded(data)
    notes: list[str] = []
    where = f" within {window_decades} decades of each budget's best run" if window_decades else ""
    budgets = []
    too_few = []
    for budget, rows in df.groupby("budget", sort=True):
        x = np.log10(rows["N"].to_numpy())
        if window_decades is not None:
            keep = np.abs(x - x[np.argmin(rows["L"].to_numpy())]) <= window_decades
            rows, x = rows[keep], x[keep]
        if len(np.unique(x)) < MIN_POINTS_PER_BUDGET:
            too_few.append(f"C={budget:.3g}: {len(np.unique(x))}")
            continue
        loss = rows["L"].to_numpy()
        x0 = float(x.mean())
        coeffs = np.linalg.lstsq(_design(x - x0), loss, rcond=None)[0]
        if not np.isfinite(_vertex(coeffs)[0]):
            notes.append(
                f"left out C={budget:.3g}: its loss does not curve upward around a minimum "
                "(the runs do not bracket the optimum; add smaller and larger models)"
            )
            continue
        # Inside a budget D and C are smooth, noise-free functions of N: interpolate them.
        d_at = _interpolator(x, np.log10(rows["D"].to_numpy()))
        c_at = _interpolator(x, np.log10(rows["C"].to_numpy()))
        budgets.append(_Budget(float(budget), x, loss, x0, coeffs, d_at, c_at))
    if too_few:
        notes.insert(
            0,
            f"left out {len(too_few)} budget(s) with fewer than {MIN_POINTS_PER_BUDGET} model "
            f"sizes{where} ({'; '.join(too_few)})",
        )
    if len(budgets) < 2:
        counts = ", ".join(
            f"C={b:.3g}: {n}" for b, n in df.groupby("budget")["N"].nunique().items()
        )
        raise InsufficientDataError(
            f"Approach 2 needs at least 2 budgets with {MIN_POINTS_PER_BUDGET} or more model "
            f"sizes{where} and a minimum; found {len(budgets)} (model sizes per budget: "
            f"{counts})" + (f"; {'; '.join(notes)}" if notes else "")
        )

    # Minima of the full-data parabolas (rows: log10 N*, log10 D*, log10 C*, L*; a column per
    # budget) and of every bootstrap resample's (same rows, a leading resample axis).
    rng = np.random.default_rng(seed)
    point = np.stack([b.minimum(b.coeffs) for b in budgets], axis=-1)
    boot_coeffs = [_bootstrap_parabolas(b.x - b.x0, b.loss, n_bootstrap, rng) for b in budgets]
    boot = np.stack([b.minimum(c) for b, c in zip(budgets, boot_coeffs)], axis=-1)
    ok = np.isfinite(boot).all(axis=(1, 2))
    if (~ok).any():
        notes.append(
            f"{(~ok).sum()} of {n_bootstrap} bootstrap resamples had a budget whose parabola "
            "opens downward and were left out"
        )
    boot = boot[ok] if ok.sum() >= 2 else None

    minima = []
    for j, b in enumerate(budgets):
        log_n, log_d, log_c, loss = point[:, j]
        interior = bool(b.x.min() <= log_n <= b.x.max())
        if not interior:
            notes.append(
                f"C={b.budget:.3g}: the minimum N*={10**log_n:.3g} lies outside the fitted "
                f"sizes [{10 ** b.x.min():.3g}, {10 ** b.x.max():.3g}] (extrapolated)"
            )
        minima.append(
            BudgetMinimum(
                budget=b.budget,
                flops=float(10**log_c),
                n_points=len(b.x),
                params=Estimate.from_samples(
                    10**log_n, None if boot is None else 10 ** boot[:, 0, j]
                ),
                tokens=Estimate.from_samples(
                    10**log_d, None if boot is None else 10 ** boot[:, 1, j]
                ),
                loss=Estimate.from_samples(loss, None if boot is None else boot[:, 3, j]),
                interior=interior,
                parabola=tuple(float(c) for c in b.coeffs),
                x0=b.x0,
                log10_params_range=(float(b.x.min()), float(b.x.max())),
                parabola_samples=None if boot is None else boot_coeffs[j][ok],
            )
        )

    def law(row: int, log: bool = False) -> PowerLaw:
        """Power law of minimum quantity `row` against log10 C* across budgets."""
        y = np.log10(point[row]) if log else point[row]
        if boot is None:
            return _power_law(point[2], y, None)
        boot_y = np.log10(boot[:, row]) if log else boot[:, row]
        return _power_law(point[2], y, _fit_line(boot[:, 2], boot_y))

    return IsoFlopFit(
        minima=minima,
        params_law=law(0),
        tokens_law=law(1),
        loss_law=law(3, log=True),
        flops_convention=df.attrs.get("flops_convention", "table"),
        window_decades=window_decades,
        n_bootstrap=n_bootstrap,
        n_bootstrap_used=0 if boot is None else len(boot),
        notes=notes,
    )
