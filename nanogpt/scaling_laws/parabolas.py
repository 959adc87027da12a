"""The numerical pieces of the isoFLOP fit (Approach 2): least-squares parabolas in log N, each
fitted in a window around its own vertex, their vertices, straight lines in log-log, and the
piecewise-linear interpolation of D and C along a budget's runs. Plain numpy, vectorised over
bootstrap resamples (rows).
"""

from __future__ import annotations

import math

import numpy as np

MIN_WINDOW_SIZES = 5  # the fewest sizes a window holds (see isoflop.DEFAULT_WINDOW_LN)
WINDOW_ITERATIONS = 4  # re-centre the window on the vertex this many times
LN10 = math.log(10.0)


def design_matrix(x: np.ndarray) -> np.ndarray:
    """Columns x², x, 1 of a parabola's least squares."""
    return np.stack([x**2, x, np.ones_like(x)], axis=-1)


def vertex(coeffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertex (x, L) of parabolas given as rows (c2, c1, c0); NaN where it opens downward."""
    c2, c1, c0 = coeffs[..., 0], coeffs[..., 1], coeffs[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(c2 > 0, -c1 / (2 * c2), np.nan)
        loss = np.where(c2 > 0, c0 - c1**2 / (4 * c2), np.nan)
    return x, loss


def weighted_parabolas(x: np.ndarray, losses: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Least-squares parabolas (c2, c1, c0) in x, one per row of losses and 0/1 weights."""
    design = design_matrix(x)  # (n, 3)
    gram = np.einsum("rn,ni,nj->rij", weights, design, design)
    moment = np.einsum("rn,ni,rn->ri", weights, design, losses)
    # A window of fewer than three distinct sizes leaves the system singular: no parabola.
    singular = np.linalg.cond(gram) > 1e12
    gram[singular] = np.eye(3)
    coeffs = np.linalg.solve(gram, moment[..., None])[..., 0]
    coeffs[singular] = np.nan
    return coeffs


def windowed_parabolas(
    x: np.ndarray, losses: np.ndarray, window: float | None, min_sizes: int = MIN_WINDOW_SIZES
) -> tuple[np.ndarray, np.ndarray]:
    """Parabolas of loss in x = log10 N (centred), each fitted to the runs near its own vertex.

    `losses` is (resamples, runs). The window starts at each row's lowest-loss run and is moved
    to the vertex WINDOW_ITERATIONS times; it holds the runs within `window` (ln N) of its
    centre, and at least the `min_sizes` sizes nearest it. Returns the coefficients
    (resamples, 3) and the 0/1 weights of the runs used (resamples, runs).
    """
    losses = np.atleast_2d(losses)
    if window is None:
        weights = np.ones_like(losses)
        return weighted_parabolas(x, losses, weights), weights
    sizes = np.unique(x)
    k = min(min_sizes, len(sizes)) - 1
    half_width = window / LN10
    centre = x[np.argmin(losses, axis=1)]
    for iteration in range(WINDOW_ITERATIONS + 1):
        # The window's radius: `window`, or the distance to the k-th nearest size if larger.
        nearest = np.sort(np.abs(sizes[None, :] - centre[:, None]), axis=1)[:, k]
        radius = np.maximum(half_width, nearest) * (1 + 1e-9)
        weights = (np.abs(x[None, :] - centre[:, None]) <= radius[:, None]).astype(float)
        coeffs = weighted_parabolas(x, losses, weights)
        if iteration == WINDOW_ITERATIONS:
            break
        top, _ = vertex(coeffs)
        # A parabola with no minimum, or one beyond the sizes, moves the window to the end.
        moved = np.clip(top, sizes[0], sizes[-1])
        centre = np.where(np.isfinite(moved), moved, centre)
    return coeffs, weights


def interpolator(x: np.ndarray, y: np.ndarray):
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


def fit_line(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Least-squares (intercept, slope) of y on x, row by row for 2-D input; 0/1 `weights`
    choose the points of each row (a row with fewer than two gives NaN)."""
    if weights is None:
        weights = np.ones_like(x)
    x = np.where(weights > 0, x, 0.0)
    y = np.where(weights > 0, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        count = weights.sum(-1, keepdims=True)
        x_mean = (weights * x).sum(-1, keepdims=True) / count
        y_mean = (weights * y).sum(-1, keepdims=True) / count
        slope = (weights * (x - x_mean) * (y - y_mean)).sum(-1) / (weights * (x - x_mean) ** 2).sum(
            -1
        )
    return np.stack([y_mean[..., 0] - slope * x_mean[..., 0], slope], axis=-1)
