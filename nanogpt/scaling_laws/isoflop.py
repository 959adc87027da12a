"""Approach 2 of Hoffmann et al. 2022 (https://arxiv.org/abs/2203.15556): isoFLOP profiles.

For each compute budget, fit a parabola of final loss against log N near the budget's minimum
and take its vertex as the compute-optimal model size N*(C); the tokens and compute there follow
by interpolation. Straight lines through (log C*, log N*) and (log C*, log D*) give N* = k C^a
and D* = k' C^b.

The window. Along an isoFLOP curve the Chinchilla law is L = E + P e^(-alpha x) + Q e^(beta x)
with x = ln N: a parabola only near its minimum. A parabola through every run of a wide grid is
pulled by the far sizes, and when the grid sits off-centre by different amounts at different
budgets (a fixed set of sizes does this) the pull differs between budgets and biases the
exponent (Czech et al. 2026, https://arxiv.org/abs/2603.22339: grid width, uncentred grids and
alpha != beta). So each parabola is fitted only to the runs within `window` (in ln N) of its own
vertex, found by iterating from the budget's best run, and to at least MIN_WINDOW_SIZES sizes:
a window centred on the minimum makes the remaining pull the same at every budget, where it
moves the coefficient of the law and not its exponent (docs/README_SCALING_LAWS.md).

Only interior minima (vertex inside the range of model sizes the budget ran) enter the power
laws: a vertex outside it is the parabola's shape extrapolated, not a minimum the runs found.
With fewer than two interior minima the laws are not fitted, and `IsoFlopFit.law_error` says why.

Intervals: a parametric bootstrap. The noise of log L is estimated from the residuals of the
windowed parabolas (pooled over budgets), every resample adds noise of that size to each run's
loss (with the noise level itself drawn from its chi-square uncertainty, which gives Student-t
tails when there are few residual degrees of freedom), and reruns the whole procedure: window,
vertex, interior test and power laws. Resampling runs within a budget instead (the old default)
drops sizes from a grid of 5 to 9 runs, moves the window and gave lopsided intervals that missed
the truth; resamples are never dropped, and those in which fewer than two budgets have an
interior minimum are counted as failed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from nanogpt.scaling_laws.parabolas import (
    fit_line,
    interpolator,
    vertex,
    windowed_parabolas,
)
from nanogpt.scaling_laws.results import (
    Estimate,
    InsufficientDataError,
    decode_array,
    encode_array,
    ensure_loaded,
)

MIN_POINTS_PER_BUDGET = 3  # a parabola has three coefficients
MIN_BUDGETS_FOR_LAW = 2  # a straight line in log-log needs two interior minima
# The default half-width of each parabola's window, in ln N (a factor e^1.5 = 4.5 either side
# of the vertex, 0.65 decades), and the fewest sizes a window holds. Chosen by the bias
# measurement of benchmarks/scaling_fits.py (docs/benchmarks.md: within 0.01 of the true
# exponent on every grid measured): over +-1.5 in ln N the Chinchilla isoFLOP curve stays within
# a few per cent of its parabola, and five sizes leave two residual degrees of freedom per
# budget for the noise estimate.
DEFAULT_WINDOW_LN = 1.5
# Where a budget's vertex lies relative to the model sizes its budget ran.
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
            value, 10.0 ** (self.samples[:, 0] + self.samples[:, 1] * np.log10(flops)), True
        )

    def band(self, flops: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Pointwise 95% band of the law over `flops`, or None without a bootstrap."""
        if self.samples is None or len(self.samples) < 2:
            return None
        log_y = self.samples[:, :1] + self.samples[:, 1:] * np.log10(flops)[None, :]
        low, high = np.nanpercentile(log_y, [2.5, 97.5], axis=0)
        return 10.0**low, 10.0**high

    def to_dict(self, samples: bool = False) -> dict:
        out = {"coefficient": self.coefficient.to_dict(), "exponent": self.exponent.to_dict()}
        if samples and self.samples is not None:
            out["samples"] = encode_array(self.samples)
        return out

    @classmethod
    def from_dict(cls, d: dict | None) -> PowerLaw | None:
        if d is None:
            return None
        samples = d.get("samples")
        return cls(
            Estimate.from_dict(d["coefficient"]),
            Estimate.from_dict(d["exponent"]),
            None if samples is None else decode_array(samples, 2),
        )


@dataclass
class BudgetMinimum:
    """The fitted isoFLOP curve of one budget and its lowest point."""

    budget: float  # the group's FLOP budget (the value runs were grouped by)
    flops: float  # compute at the minimum under the fit's FLOP convention
    n_points: int  # runs the parabola was fitted to (those in the window)
    params: Estimate  # N*
    tokens: Estimate  # D*
    loss: Estimate  # L at N*
    # "inside" the range of model sizes the budget ran, or "below"/"above" it: an extrapolated
    # vertex, which the power laws leave out.
    position: str
    # Parabola L = c2 (x - x0)^2 + c1 (x - x0) + c0 with x = log10 N, as (c2, c1, c0), and x0.
    parabola: tuple[float, float, float]
    x0: float
    log10_params_range: tuple[float, float]  # sizes the parabola was fitted to (the window)
    log10_params_run: tuple[float, float] = (math.nan, math.nan)  # every size the budget ran
    # Resamples in which this budget's minimum was not inside its sizes (or had none).
    n_bootstrap_outside: int = 0
    parabola_samples: np.ndarray | None = field(default=None, repr=False)  # bootstrap (c2, c1, c0)

    @property
    def interior(self) -> bool:
        """N* lies inside the range of model sizes run: a minimum the runs bracket."""
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

    def to_dict(self, samples: bool = False) -> dict:
        out = {
            "budget": self.budget,
            "flops": self.flops,
            "n_points": self.n_points,
            "params": self.params.to_dict(),
            "tokens": self.tokens.to_dict(),
            "loss": self.loss.to_dict(),
            "interior": self.interior,
            "position": self.position,
            "parabola": list(self.parabola),
            "x0": self.x0,
            "log10_params_range": list(self.log10_params_range),
            "log10_params_run": list(self.log10_params_run),
            "n_bootstrap_outside": self.n_bootstrap_outside,
        }
        if samples and self.parabola_samples is not None:
            out["parabola_samples"] = encode_array(self.parabola_samples)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> BudgetMinimum:
        samples = d.get("parabola_samples")
        return cls(
            budget=d["budget"],
            flops=d["flops"],
            n_points=d["n_points"],
            params=Estimate.from_dict(d["params"]),
            tokens=Estimate.from_dict(d["tokens"]),
            loss=Estimate.from_dict(d["loss"]),
            position=d["position"],
            parabola=tuple(d["parabola"]),
            x0=d["x0"],
            log10_params_range=tuple(d["log10_params_range"]),
            log10_params_run=tuple(d["log10_params_run"]),
            n_bootstrap_outside=d.get("n_bootstrap_outside", 0),
            parabola_samples=None if samples is None else decode_array(samples, 3),
        )


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
    window: float | None  # half-width of each parabola's window in ln N; None: every run
    n_bootstrap: int  # resamples drawn (none dropped)
    n_bootstrap_failed: int  # resamples with fewer than two interior minima: no power law
    notes: list[str]
    # Budgets with no parabola (too few sizes) or no minimum (it opens downward), and why.
    left_out: dict[float, str] = field(default_factory=dict)
    law_error: str | None = None  # why the power laws were not fitted; None when they were
    noise_sigma: float = math.nan  # estimated noise of log L (the bootstrap's), and its dof
    noise_dof: int = 0

    @property
    def law_minima(self) -> list[BudgetMinimum]:
        """The interior minima: the points the power laws go through."""
        return [m for m in self.minima if m.interior]

    @property
    def n_bootstrap_used(self) -> int:
        """Resamples that gave a power law (all but the failed ones)."""
        return self.n_bootstrap - self.n_bootstrap_failed

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

    def to_dict(self, samples: bool = False) -> dict:
        """JSON-ready; with `samples`, also the bootstrap replicates the figures' bands need."""

        def law(p: PowerLaw | None) -> dict | None:
            return None if p is None else p.to_dict(samples)

        return {
            "approach": 2,
            "flops_convention": self.flops_convention,
            "window_ln": self.window,
            "n_bootstrap": self.n_bootstrap,
            "n_bootstrap_failed": self.n_bootstrap_failed,
            "noise_sigma": None if not math.isfinite(self.noise_sigma) else self.noise_sigma,
            "noise_dof": self.noise_dof,
            "minima": [m.to_dict(samples) for m in self.minima],
            "left_out": [{"budget": b, "reason": why} for b, why in self.left_out.items()],
            "law_budgets": [m.budget for m in self.law_minima],
            "params_law": law(self.params_law),
            "tokens_law": law(self.tokens_law),
            "loss_law": law(self.loss_law),
            "error": self.law_error,
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, d: dict) -> IsoFlopFit:
        """The fit as to_dict(samples=True) wrote it (what the figures draw from fits.json)."""
        return cls(
            minima=[BudgetMinimum.from_dict(m) for m in d["minima"]],
            params_law=PowerLaw.from_dict(d["params_law"]),
            tokens_law=PowerLaw.from_dict(d["tokens_law"]),
            loss_law=PowerLaw.from_dict(d["loss_law"]),
            flops_convention=d["flops_convention"],
            window=d["window_ln"],
            n_bootstrap=d["n_bootstrap"],
            n_bootstrap_failed=d["n_bootstrap_failed"],
            notes=list(d["notes"]),
            left_out={item["budget"]: item["reason"] for item in d["left_out"]},
            law_error=d["error"],
            noise_sigma=math.nan if d.get("noise_sigma") is None else d["noise_sigma"],
            noise_dof=d.get("noise_dof", 0),
        )


def _power_law(log_c: np.ndarray, log_y: np.ndarray, samples: np.ndarray | None) -> PowerLaw:
    intercept, slope = fit_line(log_c, log_y)
    return PowerLaw(
        Estimate.from_samples(
            10.0**intercept, None if samples is None else 10.0 ** samples[:, 0], positive=True
        ),
        Estimate.from_samples(slope, None if samples is None else samples[:, 1]),
        samples,
    )


class _Budget(NamedTuple):
    """One budget's runs as fitted: sizes x = log10 N, losses, centring x0, parabola, the runs
    in its window, and interpolators of log10 D and log10 C in x."""

    budget: float
    x: np.ndarray
    loss: np.ndarray
    x0: float
    coeffs: np.ndarray
    used: np.ndarray
    d_at: Callable[[np.ndarray], np.ndarray]
    c_at: Callable[[np.ndarray], np.ndarray]

    def minimum(self, coeffs: np.ndarray) -> np.ndarray:
        """(log10 N*, log10 D*, log10 C*, L*) of parabolas given as (..., 3) coefficients."""
        vertex_x, vertex_loss = vertex(coeffs)
        log_n = vertex_x + self.x0
        return np.stack([log_n, self.d_at(log_n), self.c_at(log_n), vertex_loss], axis=-1)

    def inside(self, log_n: np.ndarray) -> np.ndarray:
        return np.isfinite(log_n) & (log_n >= self.x.min()) & (log_n <= self.x.max())


def fit_isoflop(
    data: str | os.PathLike | pd.DataFrame,
    *,
    window: float | None = DEFAULT_WINDOW_LN,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> IsoFlopFit:
    """Approach 2 on the healthy runs of a results table (see load_results).

    `window` is the half-width, in ln N, of the runs each parabola is fitted to around its
    vertex (at least MIN_WINDOW_SIZES sizes); None fits every run of a budget, as Hoffmann et
    al. did. Budgets with fewer than three sizes are left out, as are budgets whose parabola
    opens downward; `left_out` and `notes` say which. At least two budgets must have three or
    more sizes. The power laws go through the interior minima only; with fewer than two of them
    the laws are None and `law_error` says why, rather than fitting a line through extrapolated
    vertices.
    """
    if window is not None and not window > 0:
        raise InsufficientDataError(
            f"window={window!r}: the window is a positive half-width in ln N (e.g. 1.5), or "
            "None for every run"
        )
    # A nearly flat resample's parabola puts its vertex at an absurd size (10**400 overflows)
    # or a negative loss; those replicates become inf or NaN and land in the interval's tails.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _fit_isoflop(data, window, n_bootstrap, seed)


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


def _prepare_budgets(
    df: pd.DataFrame, window: float | None, notes: list[str], left_out: dict[float, str]
) -> list[_Budget]:
    """Fit each budget's windowed parabola; budgets without one go to `left_out`."""
    budgets = []
    n_parabolas = 0
    too_few = []
    for budget, rows in df.groupby("budget", sort=True):
        x = np.log10(rows["N"].to_numpy())
        if len(np.unique(x)) < MIN_POINTS_PER_BUDGET:
            too_few.append(f"C={budget:.3g}: {len(np.unique(x))}")
            left_out[float(budget)] = f"fewer than {MIN_POINTS_PER_BUDGET} model sizes"
            continue
        n_parabolas += 1
        loss = rows["L"].to_numpy()
        x0 = float(x.mean())
        coeffs, used = windowed_parabolas(x - x0, loss[None, :], window)
        coeffs, used = coeffs[0], used[0] > 0
        if not np.isfinite(vertex(coeffs)[0]):
            left_out[float(budget)] = "no minimum: the parabola opens downward"
            notes.append(
                f"left out C={budget:.3g}: its loss does not curve upward around a minimum "
                "(the runs do not bracket the optimum; add smaller and larger models)"
            )
            continue
        # Inside a budget D and C are smooth, noise-free functions of N: interpolate them.
        d_at = interpolator(x, np.log10(rows["D"].to_numpy()))
        c_at = interpolator(x, np.log10(rows["C"].to_numpy()))
        budgets.append(_Budget(float(budget), x, loss, x0, coeffs, used, d_at, c_at))
    if too_few:
        notes.insert(
            0,
            f"left out {len(too_few)} budget(s) with fewer than {MIN_POINTS_PER_BUDGET} model "
            f"sizes ({'; '.join(too_few)})",
        )
    if n_parabolas < 2:
        counts = ", ".join(
            f"C={b:.3g}: {n}" for b, n in df.groupby("budget")["N"].nunique().items()
        )
        raise InsufficientDataError(
            f"Approach 2 needs at least 2 budgets with {MIN_POINTS_PER_BUDGET} or more model "
            f"sizes; found {n_parabolas} (model sizes per budget: {counts})"
            + (f"; {'; '.join(notes)}" if notes else "")
        )
    return budgets


def _noise(budgets: list[_Budget]) -> tuple[float, int]:
    """The noise of log L: root mean square of the windowed parabolas' residuals, pooled over
    budgets, with its degrees of freedom (runs in windows minus three per parabola)."""
    squares, dof = 0.0, 0
    for b in budgets:
        fitted = np.polyval(b.coeffs, b.x[b.used] - b.x0)
        with np.errstate(invalid="ignore", divide="ignore"):
            residual = np.log(b.loss[b.used]) - np.log(fitted)
        squares += float(np.nansum(residual**2))
        dof += int(b.used.sum()) - 3
    if dof <= 0:
        return math.nan, 0
    return math.sqrt(squares / dof), dof


def _fit_isoflop(
    data: str | os.PathLike | pd.DataFrame,
    window: float | None,
    n_bootstrap: int,
    seed: int,
) -> IsoFlopFit:
    df = ensure_loaded(data)
    notes: list[str] = []
    left_out: dict[float, str] = {}
    budgets = _prepare_budgets(df, window, notes, left_out)
    sigma, dof = _noise(budgets)
    if n_bootstrap > 0 and dof == 0:
        notes.append(
            "no intervals: every window holds exactly three sizes, so nothing is left to "
            "estimate the noise from; run more sizes per budget"
        )
        n_bootstrap = 0

    rng = np.random.default_rng(seed)
    # Each resample's noise level, drawn from its chi-square uncertainty, shared by all budgets.
    sigmas = sigma * np.sqrt(dof / rng.chisquare(dof, n_bootstrap)) if n_bootstrap else None
    points, boots, minima = [], [], []
    for b in budgets:
        if n_bootstrap:
            noisy = b.loss[None, :] * np.exp(
                sigmas[:, None] * rng.standard_normal((n_bootstrap, len(b.x)))
            )
            boot_coeffs, _ = windowed_parabolas(b.x - b.x0, noisy, window)
        else:
            boot_coeffs = np.empty((0, 3))
        point, boot = b.minimum(b.coeffs), b.minimum(boot_coeffs)
        points.append(point)
        boots.append(boot)
        minima.append(_budget_minimum(b, point, boot, boot_coeffs, n_bootstrap, notes))

    law = [j for j, m in enumerate(minima) if m.interior]
    n_budgets = df["budget"].nunique()
    fit = IsoFlopFit(
        minima=minima,
        params_law=None,
        tokens_law=None,
        loss_law=None,
        flops_convention=df.attrs.get("flops_convention", "table"),
        window=window,
        n_bootstrap=n_bootstrap,
        n_bootstrap_failed=0,
        notes=notes,
        left_out=left_out,
        noise_sigma=sigma,
        noise_dof=dof,
    )
    if len(law) < MIN_BUDGETS_FOR_LAW:
        fit.law_error = _law_error(n_budgets, minima, left_out)
        return fit

    point = np.stack([points[j] for j in law], axis=-1)  # (4, law budgets)
    boot = _bootstrap_law_inputs(fit, budgets, boots) if n_bootstrap else None

    def power_law(row: int, log: bool = False) -> PowerLaw:
        """Power law of minimum quantity `row` against log10 C* across the law budgets."""
        y = np.log10(point[row]) if log else point[row]
        if boot is None:
            return _power_law(point[2], y, None)
        boot_all, weights, failed = boot
        boot_y = np.log10(boot_all[:, row]) if log else boot_all[:, row]
        lines = fit_line(boot_all[:, 2], boot_y, weights)
        # A failed resample's answer is unknown: put it in the tails, alternately low and
        # high, so that failures widen the interval rather than vanish from it.
        tails = np.where(np.arange(len(lines)) % 2 == 0, -np.inf, np.inf)
        lines[failed] = tails[failed, None]
        return _power_law(point[2], y, lines)

    fit.params_law, fit.tokens_law, fit.loss_law = power_law(0), power_law(1), power_law(3, True)
    return fit


def _budget_minimum(
    b: _Budget,
    point: np.ndarray,
    boot: np.ndarray,
    boot_coeffs: np.ndarray,
    n_bootstrap: int,
    notes: list[str],
) -> BudgetMinimum:
    """One budget's minimum with its bootstrap intervals; a note when it is not interior."""
    log_n, log_d, log_c, loss = point
    position = _position(log_n, b.x)
    outside = ~b.inside(boot[:, 0])
    if position != "inside":
        notes.append(
            f"C={b.budget:.3g}: the parabola's vertex N*={10**log_n:.3g} lies "
            f"{POSITION_TEXT[position]} ({10 ** b.x.min():.3g} to {10 ** b.x.max():.3g}): "
            "extrapolated, not a minimum the runs found; left out of the power laws"
        )
    window_x = b.x[b.used]
    return BudgetMinimum(
        budget=b.budget,
        flops=float(10**log_c),
        n_points=int(b.used.sum()),
        # Replicates with no minimum (NaN) are counted in n_bootstrap_outside.
        params=Estimate.from_samples(
            10**log_n, 10 ** boot[:, 0] if n_bootstrap else None, positive=True
        ),
        tokens=Estimate.from_samples(
            10**log_d, 10 ** boot[:, 1] if n_bootstrap else None, positive=True
        ),
        loss=Estimate.from_samples(loss, boot[:, 3] if n_bootstrap else None),
        position=position,
        parabola=tuple(float(c) for c in b.coeffs),
        x0=b.x0,
        log10_params_range=(float(window_x.min()), float(window_x.max())),
        log10_params_run=(float(b.x.min()), float(b.x.max())),
        n_bootstrap_outside=int(outside.sum()),
        parabola_samples=boot_coeffs if n_bootstrap else None,
    )


def _bootstrap_law_inputs(
    fit: IsoFlopFit, budgets: list[_Budget], boots: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every resample's minima (resamples, 4, budgets), which of them are interior (the weights
    of its power laws) and which resamples have too few for a law; notes on both.

    Every resample reruns the estimator: its power laws go through the budgets whose minimum
    is interior in that resample (every budget with a parabola takes part).
    """
    minima, notes, n_bootstrap = fit.minima, fit.notes, fit.n_bootstrap
    boot_all = np.stack(boots, axis=-1)  # (resamples, 4, budgets)
    inside = np.stack([b.inside(boots[j][:, 0]) for j, b in enumerate(budgets)], axis=1)
    failed = inside.sum(axis=1) < MIN_BUDGETS_FOR_LAW
    fit.n_bootstrap_failed = int(failed.sum())
    moved = [
        f"C={budgets[j].budget:.3g}: {minima[j].n_bootstrap_outside}"
        for j in range(len(budgets))
        if minima[j].n_bootstrap_outside
    ]
    if moved:
        notes.append(
            f"bootstrap: in some resamples a budget's minimum fell outside its sizes and that "
            f"resample's power laws went without it ({'; '.join(moved)} of {n_bootstrap})"
        )
    if failed.any():
        notes.append(
            f"{fit.n_bootstrap_failed} of {n_bootstrap} bootstrap resamples had fewer than "
            f"{MIN_BUDGETS_FOR_LAW} interior minima and gave no power law; they count "
            "against the intervals (half on each side), never dropped"
        )
    return boot_all, inside.astype(float), failed
