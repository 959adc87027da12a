"""Scaling-law fits and figures on sweeps whose runs do not bracket the compute-optimal size.

The fixture tests/data/cpu_sweep_smallest_wins.csv is a real sweep (3 budgets from 4e11 to
1.6e12 FLOPs, depths 1-4, on a CPU; sweeps_out/embedded/results.csv with the path columns
dropped): at every budget the loss rises with N, so no parabola has its minimum inside the sizes
run, and Approach 3 runs E to its lower bound.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nanogpt.plotting import make_all_plots, plot_isoflop, plot_optimal_scaling
from nanogpt.scaling_laws import (
    InsufficientDataError,
    fit_isoflop,
    fit_parametric,
    load_results,
    synthetic_results,
)
from nanogpt.scaling_laws.cli import main as cli_main

SMALLEST_WINS_CSV = Path(__file__).resolve().parent / "data" / "cpu_sweep_smallest_wins.csv"


@pytest.fixture(scope="module")
def smallest_wins() -> pd.DataFrame:
    return load_results(SMALLEST_WINS_CSV)[0]


def _parabola_table(best_params: dict[float, float], sizes: dict[float, np.ndarray], noise=0.0):
    """Losses on exact parabolas in log10 N (plus optional noise), one per budget, with the
    minimum at best_params[budget] and runs at sizes[budget]."""
    rng = np.random.default_rng(0)
    rows = []
    for budget, best in best_params.items():
        for n in sizes[budget]:
            loss = 3.0 + 0.2 * (np.log10(n / best)) ** 2 - 0.1 * np.log10(budget / 1e17)
            rows.append(
                {
                    "params_scaling": n,
                    "tokens": budget / (6 * n),
                    "flops_budget": budget,
                    "final_val_loss": loss + noise * rng.standard_normal(),
                    "status": "ok",
                }
            )
    return pd.DataFrame(rows)


def _exponents(report) -> list:
    """Every value under an "exponent" key anywhere in a JSON report."""
    if isinstance(report, dict):
        found = [v for k, v in report.items() if k == "exponent"]
        return found + [x for v in report.values() for x in _exponents(v)]
    if isinstance(report, list):
        return [x for v in report for x in _exponents(v)]
    return []


# --- every budget's smallest model wins ---------------------------------------------------------


def test_no_power_law_through_minima_the_runs_do_not_bracket(smallest_wins):
    fit = fit_isoflop(smallest_wins, n_bootstrap=200)
    assert [m.position for m in fit.minima] == ["below"] * 3
    assert not any(m.interior for m in fit.minima) and fit.law_minima == []
    assert fit.params_law is fit.tokens_law is fit.loss_law is None
    assert fit.n_bootstrap_failed == 0  # no law, so no resample's law to fail
    assert "0 of 3 budgets have a minimum inside" in fit.law_error
    assert "smallest model" in fit.law_error  # and says what to do
    with pytest.raises(InsufficientDataError, match="power laws not fitted"):
        fit.predict(1e13)
    report = json.loads(json.dumps(fit.to_dict()))  # JSON-ready
    assert report["params_law"] is None and report["error"] == fit.law_error
    assert _exponents(report) == [] and report["law_budgets"] == []


@pytest.mark.slow  # 14 s on a shared 2-core CPU (2026-12-03)
def test_cli_says_the_minima_are_not_interior(tmp_path, capsys):
    code = cli_main([str(SMALLEST_WINS_CSV), "--bootstrap", "30", "--budget", "1e13"])
    captured = capsys.readouterr()
    # Approach 2 has no answer, so the exit status is 1; the tables are still printed.
    assert code == 1
    assert "NO: below the sizes run" in captured.out
    assert "power laws not fitted: 0 of 3 budgets" in captured.out
    assert "Approach 2 at C = 1e+13 FLOPs: no prediction" in captured.out
    # The table gives the side where N* lies, not the extrapolated vertex (N* = 1.86e-14).
    row = next(line for line in captured.out.splitlines() if line.startswith("  1.6e+12"))
    assert "< 3.27e+06" in row and "e-14" not in row
    assert "error (Approach 2): power laws not fitted" in captured.err
    # Approach 3 is fitted, and flagged: E ran to its lower bound.
    assert "DEGENERATE FIT" in captured.out and "E = " in captured.out

    code = cli_main([str(SMALLEST_WINS_CSV), "--json", "--bootstrap", "30", "--budget", "1e13"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert report["approach2"]["params_law"] is None
    assert "power laws not fitted" in report["approach2"]["error"]
    assert _exponents(report) == []
    assert report["approach3"]["degenerate"] is True
    assert any("lower bound" in note for note in report["approach3"]["notes"])
    approach2_prediction = next(p for p in report["predictions"] if p["approach"] == 2)
    assert "not fitted" in approach2_prediction["error"]


@pytest.mark.slow  # 14 s on a shared 2-core CPU (2026-12-03)
def test_figures_keep_to_the_data(smallest_wins, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # every figure is drawn
        paths = make_all_plots(SMALLEST_WINS_CSV, tmp_path, formats=("png",), n_bootstrap=50)
    assert sorted(p.name for p in paths) == [
        "isoflop.png",
        "optimal_scaling.png",
        "training_time.png",
    ]

    fit = fit_isoflop(smallest_wins, n_bootstrap=50)
    ax = plot_isoflop(smallest_wins, fit).axes[0]
    loss, params = smallest_wins["L"], smallest_wins["N"]
    span = loss.max() - loss.min()
    y_low, y_high = ax.get_ylim()
    assert loss.min() - 0.2 * span < y_low < loss.min()
    assert loss.max() < y_high < loss.max() + 0.2 * span
    x_low, x_high = ax.get_xlim()
    assert params.min() / 2 < x_low < params.min() and params.max() < x_high < params.max() * 2
    # No star (the extrapolated vertices sit at N = 1e-14 and L = -1.2): every marker drawn
    # lies inside the axes, and every curve spans little more than the sizes run.
    for line in ax.get_lines():
        x, y = (np.asarray(v, float) for v in line.get_data())
        assert line.get_marker() != "*"
        assert ((x >= x_low) & (x <= x_high)).all()
        if line.get_marker() not in ("None", "", None):
            assert ((y >= y_low) & (y <= y_high)).all()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sum("no interior minimum" in t for t in legend) == 3
    assert "no power law" in ax.get_title(loc="left")

    parametric = fit_parametric(smallest_wins, n_bootstrap=20)
    assert parametric.degenerate
    fig = plot_optimal_scaling(fit, parametric, budget=1e13)
    for ax in fig.axes:
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert any(t.startswith("Approach 2: no power law") for t in labels)
        assert not any("prediction" in t for t in labels)  # nothing to predict with
        assert any("degenerate" in t for t in labels)
        assert not ax.containers  # no error bars: there is no interior minimum to show
        low, high = ax.get_ylim()
        assert 0 < low < high and math.log10(high / low) < 3  # the lines, not a blown-up band


def test_budgets_whose_parabola_opens_downward_are_drawn_not_fitted(tmp_path):
    """Loss rising with N and flattening: every parabola opens downward. The fit still returns
    (no law), and the figures are drawn."""
    rows = []
    for budget in (1e17, 1e18):
        for n in np.logspace(6, 8, 5):
            loss = 4.0 - 0.1 * np.log10(budget / 1e17) + 0.3 * np.sqrt(np.log10(n) - 5.9)
            rows.append(
                {
                    "params_scaling": n,
                    "tokens": budget / (6 * n),
                    "flops_budget": budget,
                    "final_val_loss": loss,
                }
            )
    table = pd.DataFrame(rows)
    fit = fit_isoflop(table, n_bootstrap=20)
    assert fit.minima == [] and fit.params_law is None
    assert set(fit.left_out.values()) == {"no minimum: the parabola opens downward"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        paths = make_all_plots(
            table,
            tmp_path,
            figures=("isoflop", "optimal_scaling"),
            n_bootstrap=10,
            formats=("png",),
        )
    assert len(paths) == 2
    legend = [
        t.get_text()
        for t in plot_isoflop(load_results(table)[0], fit).axes[0].get_legend().get_texts()
    ]
    assert sum(t.endswith(": no minimum") for t in legend) == 2


# --- two interior minima and one extrapolated ---------------------------------------------------


@pytest.fixture(scope="module")
def two_interior_one_above() -> pd.DataFrame:
    """Budgets 1e17 and 1e18 bracket their minima (1e7, 3e7); 1e19's runs stop a decade below
    its minimum (1e9), so its vertex lies above the sizes run."""
    best = {1e17: 1e7, 1e18: 3e7, 1e19: 1e9}
    sizes = {1e17: 1e7 * np.logspace(-1, 1, 7), 1e18: 3e7 * np.logspace(-1, 1, 7)}
    sizes[1e19] = np.logspace(7, 8, 5)
    return _parabola_table(best, sizes)


def test_power_law_goes_through_the_interior_minima_only(two_interior_one_above):
    fit = fit_isoflop(two_interior_one_above, n_bootstrap=0)
    assert [m.position for m in fit.minima] == ["inside", "inside", "above"]
    assert [m.budget for m in fit.law_minima] == [1e17, 1e18]
    assert fit.law_error is None
    # Through (1e17, 1e7) and (1e18, 3e7) exactly: the 1e19 vertex (1e9) would pull a up.
    assert fit.params_law.exponent.value == pytest.approx(math.log10(3), rel=1e-9)
    assert fit.params_law(1e17) == pytest.approx(1e7, rel=1e-9)
    assert any(
        "C=1e+19" in note and "above the sizes run" in note and "left out of the power laws" in note
        for note in fit.notes
    )
    assert fit.to_dict()["law_budgets"] == [1e17, 1e18]


def test_cli_and_figures_say_which_budget_was_left_out(two_interior_one_above, tmp_path, capsys):
    path = tmp_path / "results.csv"
    two_interior_one_above.to_csv(path, index=False)
    assert cli_main([str(path), "--approach", "2", "--bootstrap", "20"]) == 0
    out = capsys.readouterr().out
    assert "power laws through the 2 of 3 budgets with an interior minimum" in out
    assert "NO: above the sizes run" in out and "> 1e+08" in out

    data = load_results(two_interior_one_above)[0]
    fit = fit_isoflop(data, n_bootstrap=0)
    ax = plot_isoflop(data, fit).axes[0]
    assert "from the 2 of 3 budgets with an interior minimum" in ax.get_title(loc="left")
    stars = [line for line in ax.get_lines() if line.get_marker() == "*"]
    assert len(stars) == 2
    fig = plot_optimal_scaling(fit)
    assert all(len(ax.containers) == 2 for ax in fig.axes)  # the two interior minima


def test_bootstrap_keeps_resamples_whose_minimum_is_extrapolated():
    """A budget whose minimum sits near the end of its sizes: noisy resamples push it outside.
    Such a resample's power laws go without that budget, as the point estimate would; the
    resample is kept, and the notes count, per budget, how often it happened."""
    best = {1e17: 1e7, 1e18: 3e7, 1e19: 9e7}
    sizes = {b: n * np.logspace(-1, 1, 7) for b, n in best.items()}
    sizes[1e19] = 9e7 * np.logspace(-1.2, 0.05, 6)  # minimum just inside the largest size
    table = _parabola_table(best, sizes, noise=0.01)
    fit = fit_isoflop(table, n_bootstrap=300, seed=0)
    assert fit.law_error is None and len(fit.law_minima) == 3
    edge = next(m for m in fit.minima if m.budget == 1e19)
    assert 0 < edge.n_bootstrap_outside < fit.n_bootstrap
    assert fit.n_bootstrap_failed == 0  # the other two budgets always give a line
    assert len(fit.params_law.samples) == fit.n_bootstrap == 300  # none dropped
    note = next(n for n in fit.notes if n.startswith("bootstrap: in some resamples"))
    assert f"C=1e+19: {edge.n_bootstrap_outside}" in note
    assert fit.params_law.exponent.contains(math.log10(3))


# --- Approach 3: a fit at a bound is flagged ----------------------------------------------------


@pytest.mark.slow  # 17 s on a shared 2-core CPU (2026-12-03)
def test_parametric_flags_a_parameter_at_its_bound(smallest_wins):
    fit = fit_parametric(smallest_wins, n_bootstrap=20)
    assert fit.E.value < 1e-6  # the method is unchanged: E does run to 0 on these runs
    assert fit.degenerate
    assert any(note.startswith("E = ") and "lower bound" in note for note in fit.notes)
    assert fit.to_dict()["notes"] == fit.notes


def test_parametric_raises_no_flag_on_a_healthy_fit():
    fit = fit_parametric(synthetic_results(seed=2), n_bootstrap=20)
    assert fit.notes == [] and not fit.degenerate
