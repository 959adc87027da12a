"""Approach 2 of Hoffmann et al. 2022 (https://arxiv.org/abs/2203.15556): isoFLOP profiles.

For each compute budget, fit a parabola of final loss against log10 N and take its vertex as
the compute-optimal model size N*(C); the tokens and loss there follow. Straight lines through
(log C, log N*) and (log C, log D*) give N* = k C^a and D* = k' C^b. Intervals come from a
bootstrap that resamples runs with replacement within each budget.

Only interior minima (vertex inside the range of model sizes the budget ran) enter the power
laws: a vertex outside it is the parabola's shape extrapolated, not a minimum the runs found
(on a tiny CPU sweep where the smallest model wins every budget, such vertices land at N = 1e-14).
With fewer than two interior minima the laws are not fitted, and `IsoFlopFit.law_error` says why.
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
MIN_BUDGETS_FOR_LAW = 2  # a straight line in log-log needs two interior minima
# Where a budget's vertex lies relative to the model sizes its parabola was fitted to.
POSITION_TEXT = {
    "inside": "inside the sizes run",
    "below": "below the sizes run",
    "above": "above the sizes run",
}


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
    # "inside" the range of fitted model sizes, or "below"/"above" it: an extrapolated vertex,
    # which the power laws leave out.
    position: str
    # Parabola L = c2 (x - x0)^2 + c1 (x - x0) + c0 with x = log10 N, as (c2, c1, c0), and x0.
    parabola: tuple[float, float, float]
    x0: float
    log10_params_range: tuple[float, float]  # sizes the parabola was fitted over
    parabola_samples: np.ndarray | None = field(default=None, repr=False)  # bootstrap (c2, c1, c0)

    @property
    def interior(self) -> bool:
        """N* lies inside the range of fitted model sizes: a minimum the runs bracket."""
        return self.position == "inside"

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
            "position": self.position,
        }


@dataclass
class IsoFlopFit:
    """Approach 2: per-budget minima and the power laws through the interior ones.

    The laws are None when fewer than two budgets have an interior minimum; `law_error` then
    says why, and `predict` raises it.
    """

    minima: list[BudgetMinimum]  # every budget whose parabola opens upward, interior or not
    params_law: PowerLaw | None  # N* = k C^a
    tokens_law: PowerLaw | None  # D* = k' C^b
    loss_law: PowerLaw | None  # L* = k'' C^c, a plain power law (no irreducible term): a guide
    flops_convention: str
    window_decades: float | None
    n_bootstrap: int  # resamples asked for
    n_bootstrap_used: int  # resamples in the laws' intervals (every law budget's N* interior)
    notes: list[str]
    # Budgets with no parabola (too few sizes) or no minimum (it opens downward), and why.
    left_out: dict[float, str] = field(default_factory=dict)
    law_error: str | None = None  # why the power laws were not fitted; None when they were

    @property
    def law_minima(self) -> list[BudgetMinimum]:
        """The interior minima: the points the power laws go through."""
        return [m for m in self.minima if m.interior]

    def predict(self, budget: float) -> dict:
        """Compute-optimal N, D and loss at `budget` FLOPs (in this fit's convention)."""
        if self.law_error is not None:
            raise InsufficientDataError(f"Approach 2 cannot predict: {self.law_error}")
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
            "left_out": [{"budget": b, "reason": why} for b, why in self.left_out.items()],
            "law_budgets": [m.budget for m in self.law_minima],
            "params_law": None if self.params_law is None else self.params_law.to_dict(),
            "tokens_law": None if self.tokens_law is None else self.tokens_law.to_dict(),
            "loss_law": None if self.loss_law is None else self.loss_law.to_dict(),
            "error": self.law_error,
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
    parabola opens downward; `left_out` and `notes` say which. At least two budgets must have
    three or more sizes. The power laws go through the interior minima only; with fewer than
    two of them the laws are None and `law_error` says why, rather than fitting a line through
    extrapolated vertices.
    """
    # A nearly flat bootstrap parabola puts its vertex at an absurd size (10**400 overflows)
    # or a negative loss; those replicates become inf or NaN and land in the interval's tails.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _fit_isoflop(data, window_decades, n_bootstrap, seed)


def _position(log_n: float, x: np.ndarray) -> str:
    if log_n < x.min():
        return "below"
    if log_n > x.max():
        return "above"
    return "inside"


def _law_error(n_budgets: int, minima: list[BudgetMinimum], left_out: dict[float, str]) -> str:
    """Why the power laws were not fitted, and what to run instead."""
    reasons = [POSITION_TEXT[m.position] for m in minima if not m.interior]
    reasons += list(left_out.values())
    counts = "; ".join(f"{reasons.count(r)} {r}" for r in dict.fromkeys(reasons))
    n_interior = sum(m.interior for m in minima)
    positions = {m.position for m in minima if not m.interior}
    if positions == {"below"} and not left_out:
        advice = (
            "every budget's best run is its smallest model: raise the budgets or add smaller models"
        )
    elif positions == {"above"} and not left_out:
        advice = (
            "every budget's best run is its largest model: add larger models or lower the budgets"
        )
    else:
        advice = "add smaller and larger models around each budget's best run"
    return (
        f"power laws not fitted: {n_interior} of {n_budgets} budgets have a minimum inside the "
        f"model sizes they ran ({counts}), and a power law needs {MIN_BUDGETS_FOR_LAW}. "
        f"The sizes do not bracket the compute-optimal size; {advice} "
        "(docs/README_SCALING_LAWS.md, 'When the minimum is not inside the grid')"
    )


def _fit_isoflop(
    data: str | os.PathLike | pd.DataFrame,
    window_decades: float | None,
    n_bootstrap: int,
    seed: int,
) -> IsoFlopFit:
    df = ensure_loaded(data)
    notes: list[str] = []
    left_out: dict[float, str] = {}
    where = f" within {window_decades} decades of each budget's best run" if window_decades else ""
    budgets = []  # budgets whose parabola has a minimum
    n_parabolas = 0
    too_few = []
    for budget, rows in df.groupby("budget", sort=True):
        x = np.log10(rows["N"].to_numpy())
        if window_decades is not None:
            keep = np.abs(x - x[np.argmin(rows["L"].to_numpy())]) <= window_decades
            rows, x = rows[keep], x[keep]
        if len(np.unique(x)) < MIN_POINTS_PER_BUDGET:
            too_few.append(f"C={budget:.3g}: {len(np.unique(x))}")
            left_out[float(budget)] = f"fewer than {MIN_POINTS_PER_BUDGET} model sizes{where}"
            continue
        n_parabolas += 1
        loss = rows["L"].to_numpy()
        x0 = float(x.mean())
        coeffs = np.linalg.lstsq(_design(x - x0), loss, rcond=None)[0]
        if not np.isfinite(_vertex(coeffs)[0]):
            left_out[float(budget)] = "no minimum: the parabola opens downward"
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
    if n_parabolas < 2:
        counts = ", ".join(
            f"C={b:.3g}: {n}" for b, n in df.groupby("budget")["N"].nunique().items()
        )
        raise InsufficientDataError(
            f"Approach 2 needs at least 2 budgets with {MIN_POINTS_PER_BUDGET} or more model "
            f"sizes{where}; found {n_parabolas} (model sizes per budget: {counts})"
            + (f"; {'; '.join(notes)}" if notes else "")
        )

    # Per budget, the minimum of the full-data parabola (log10 N*, log10 D*, log10 C*, L*) and
    # of every bootstrap resample's (rows of the same; NaN where a resample opens downward).
    rng = np.random.default_rng(seed)
    points, boots, minima = [], [], []
    for b in budgets:
        boot_coeffs = _bootstrap_parabolas(b.x - b.x0, b.loss, n_bootstrap, rng)
        point, boot = b.minimum(b.coeffs), b.minimum(boot_coeffs)
        log_n, log_d, log_c, loss = point
        position = _position(log_n, b.x)
        if position != "inside":
            notes.append(
                f"C={b.budget:.3g}: the parabola's vertex N*={10**log_n:.3g} lies "
                f"{POSITION_TEXT[position]} ({10 ** b.x.min():.3g} to {10 ** b.x.max():.3g}): "
                "extrapolated, not a minimum the runs found; left out of the power laws"
            )
        points.append(point)
        boots.append(boot)
        minima.append(
            BudgetMinimum(
                budget=b.budget,
                flops=float(10**log_c),
                n_points=len(b.x),
                # Each budget's interval comes from its own resamples that have a minimum.
                params=Estimate.from_samples(10**log_n, 10 ** boot[:, 0]),
                tokens=Estimate.from_samples(10**log_d, 10 ** boot[:, 1]),
                loss=Estimate.from_samples(loss, boot[:, 3]),
                position=position,
                parabola=tuple(float(c) for c in b.coeffs),
                x0=b.x0,
                log10_params_range=(float(b.x.min()), float(b.x.max())),
                parabola_samples=boot_coeffs,
            )
        )

    law = [j for j, m in enumerate(minima) if m.interior]
    n_budgets = df["budget"].nunique()
    fit = IsoFlopFit(
        minima=minima,
        params_law=None,
        tokens_law=None,
        loss_law=None,
        flops_convention=df.attrs.get("flops_convention", "table"),
        window_decades=window_decades,
        n_bootstrap=n_bootstrap,
        n_bootstrap_used=0,
        notes=notes,
        left_out=left_out,
    )
    if len(law) < MIN_BUDGETS_FOR_LAW:
        fit.law_error = _law_error(n_budgets, minima, left_out)
        return fit

    # The laws' intervals use the resamples in which every law budget's minimum is interior
    # too: the same rule as for the point estimate. The rest are counted, budget by budget.
    point = np.stack([points[j] for j in law], axis=-1)  # (4, budgets)
    inside = np.stack(
        [
            np.isfinite(boots[j]).all(axis=1)
            & (boots[j][:, 0] >= budgets[j].x.min())
            & (boots[j][:, 0] <= budgets[j].x.max())
            for j in law
        ],
        axis=1,
    )  # (resamples, budgets)
    ok = inside.all(axis=1)
    if (~ok).any():
        which = "; ".join(
            f"C={budgets[j].budget:.3g}: {(~inside[:, k]).sum()}"
            for k, j in enumerate(law)
            if (~inside[:, k]).any()
        )
        notes.append(
            f"{(~ok).sum()} of {n_bootstrap} bootstrap resamples put a budget's minimum outside "
            f"its sizes or had none ({which}) and were left out of the power laws' intervals"
        )
    boot = np.stack([boots[j][ok] for j in law], axis=-1) if ok.sum() >= 2 else None

    def power_law(row: int, log: bool = False) -> PowerLaw:
        """Power law of minimum quantity `row` against log10 C* across the law budgets."""
        y = np.log10(point[row]) if log else point[row]
        if boot is None:
            return _power_law(point[2], y, None)
        boot_y = np.log10(boot[:, row]) if log else boot[:, row]
        return _power_law(point[2], y, _fit_line(boot[:, 2], boot_y))

    fit.params_law, fit.tokens_law, fit.loss_law = power_law(0), power_law(1), power_law(3, True)
    fit.n_bootstrap_used = 0 if boot is None else len(boot)
    return fit
