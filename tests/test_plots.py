"""nanogpt.plotting and plots/*.py: the figures are drawn from a results table, written as PNG and
PDF atomically, and leave matplotlib's global state alone."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import matplotlib
import pytest

from nanogpt.plotting import (
    FIGURES,
    make_all_plots,
    plot_isoflop,
    plot_optimal_scaling,
    plot_training_time,
    save_figure,
)
from nanogpt.scaling_laws import (
    NoHealthyRunsError,
    ScalingLawError,
    fit_isoflop,
    fit_parametric,
    load_results,
    synthetic_results,
)

PLOTS_DIR = Path(__file__).resolve().parents[1] / "plots"
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF"}


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    """A sweep's output directory whose results were drawn from a known law (params 4e5..2e8,
    budgets 1e16..1e18, two diverged runs)."""
    directory = tmp_path_factory.mktemp("sweep")
    table = synthetic_results(seed=0)
    table.to_parquet(directory / "results.parquet")
    table.to_csv(directory / "results.csv", index=False)
    return directory


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"plots_{name}", PLOTS_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _assert_images(paths: list[Path], formats=("png", "pdf")) -> None:
    for path in paths:
        assert path.suffix[1:] in formats
        data = path.read_bytes()
        assert data.startswith(MAGIC[path.suffix[1:]]), path
        assert len(data) > 10_000, path  # a drawn figure, not an empty canvas
    leftovers = [p for p in paths[0].parent.iterdir() if p.name.startswith(".")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


@pytest.mark.slow  # 20 s on a shared 2-core CPU (2026-12-03)
def test_make_all_plots_writes_every_figure_as_png_and_pdf(sweep_dir, tmp_path):
    rc_before = dict(matplotlib.rcParams)
    backend_before = matplotlib.get_backend()
    paths = make_all_plots(sweep_dir, tmp_path / "figures", n_bootstrap=30, budget=1e19)
    assert sorted(p.name for p in paths) == sorted(
        f"{f}.{x}" for f in FIGURES for x in ("png", "pdf")
    )
    _assert_images(paths)
    # Figures are built without pyplot: global settings and the backend are untouched.
    assert matplotlib.get_backend() == backend_before
    assert dict(matplotlib.rcParams) == rc_before


# isoflop and optimal_scaling: 12 and 16 s on a shared 2-core CPU (2026-12-03)
SLOW_FIGURES = {"isoflop", "optimal_scaling"}


@pytest.mark.parametrize(
    "name",
    [pytest.param(f, marks=pytest.mark.slow) if f in SLOW_FIGURES else f for f in FIGURES],
)
def test_plot_scripts_write_next_to_the_results(sweep_dir, name, capsys):
    script = _load_script(name)
    argv = [str(sweep_dir / "results.csv"), "--format", "png", "--bootstrap", "20"]
    assert script.main(argv) == 0
    out = sweep_dir / "plots" / f"{name}.png"
    assert out.is_file()
    assert str(out) in capsys.readouterr().out
    _assert_images([out], formats=("png",))


def test_plot_script_reports_unusable_data(tmp_path, capsys):
    synthetic_results().assign(status="diverged").to_csv(tmp_path / "results.csv", index=False)
    assert _load_script("isoflop").main([str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "no healthy runs" in capsys.readouterr().out


def test_figures_the_data_cannot_support_are_skipped_with_a_warning(tmp_path):
    table = synthetic_results(budgets=(1e17,), depths_per_budget=9)
    with pytest.warns(UserWarning, match="isoFLOP figures skipped: .*at least 2 budgets"):
        paths = make_all_plots(table, tmp_path, formats=("png",), n_bootstrap=0)
    assert [p.name for p in paths] == ["training_time.png"]
    with pytest.raises(NoHealthyRunsError):
        make_all_plots(table.assign(status="failed"), tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="unknown figure"):
            make_all_plots(table, tmp_path, figures=("heatmap",))


def test_figures_have_labelled_log_axes_and_one_colour_per_budget():
    data, _ = load_results(synthetic_results(seed=0))
    iso = fit_isoflop(data, n_bootstrap=30)
    par = fit_parametric(data, n_bootstrap=10)

    ax = plot_isoflop(data, iso).axes[0]
    assert ax.get_xscale() == "log" and "Parameters" in ax.get_xlabel()
    assert "nats/token" in ax.get_ylabel()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sum("FLOPs" in t for t in legend) == data["budget"].nunique()
    assert "minimum N* (95% CI)" in legend

    fig = plot_optimal_scaling(iso, par, budget=1e20)
    for ax in fig.axes:
        assert ax.get_xscale() == ax.get_yscale() == "log"
        assert "FLOPs" in ax.get_xlabel()
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert any(t.startswith("Approach 2") for t in labels)
        assert any(t.startswith("Approach 3") for t in labels)
        assert any("prediction" in t for t in labels)
    assert "(parameters)" in fig.axes[0].get_ylabel() and "(tokens)" in fig.axes[1].get_ylabel()

    ax = plot_training_time(data).axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert ax.get_ylabel().startswith("Wall-clock time per run (")


def test_many_budgets_get_a_colour_bar_instead_of_a_long_legend():
    budgets = tuple(1e16 * 10 ** (k / 4) for k in range(10))
    data, _ = load_results(synthetic_results(budgets=budgets, seed=0))
    fig = plot_training_time(data)
    assert len(fig.axes) == 2  # the plot and its colour bar
    assert fig.axes[1].get_ylabel() == "Budget C (FLOPs)"


def test_training_time_needs_wall_time():
    data, _ = load_results(synthetic_results().drop(columns=["wall_s"]))
    with pytest.raises(ScalingLawError, match="no wall_s"):
        plot_training_time(data)


def test_save_figure_replaces_files_atomically(tmp_path):
    data, _ = load_results(synthetic_results())
    fig = plot_training_time(data)
    first = save_figure(fig, tmp_path, "time", formats=("png",))
    second = save_figure(fig, tmp_path, "time", formats=("png", "pdf"))
    assert first[0] == second[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["time.pdf", "time.png"]


# --- the downstream figure (a sweep run with --eval core) ------------------------------------------


def _with_core(table):
    """A made-up CORE that falls with the loss, recorded as the sweep's rows record it."""
    return table.assign(
        core=0.6 - 0.15 * table["final_val_loss"], eval_baselines="dclm-v2", eval_max_per_task=200
    )


def test_the_downstream_figure_plots_every_run_and_each_budgets_lowest_loss_run(tmp_path):
    import numpy as np

    from nanogpt.plotting import downstream_points, plot_downstream

    data, _ = load_results(_with_core(synthetic_results(seed=0)))
    fig = plot_downstream(data)
    ax = fig.axes[0]
    everything = np.asarray(ax.collections[0].get_offsets())
    expected = data.sort_values(["budget", "N"])
    np.testing.assert_allclose(everything[:, 0], expected["C"])
    np.testing.assert_allclose(everything[:, 1], expected["core"])
    best_line = next(line for line in ax.lines if line.get_label().startswith("each budget"))
    lowest = data.loc[data.groupby("budget")["L"].idxmin()].sort_values("budget")
    np.testing.assert_allclose(best_line.get_xdata(), lowest["C"])
    np.testing.assert_allclose(best_line.get_ydata(), lowest["core"])
    assert len(lowest) == data["budget"].nunique() == 5
    points = downstream_points(data)
    assert list(points["best"]["N"]) == list(lowest["N"])
    assert ax.get_xscale() == "log" and "CORE" in ax.get_ylabel()
    title = ax.get_title(loc="left")
    assert "dclm-v2" in title and "items/task 200" in title
    paths = save_figure(fig, tmp_path, "core_vs_compute", ("png",))
    _assert_images(paths, formats=("png",))


def test_the_downstream_figure_is_drawn_only_from_a_table_with_scores(tmp_path):
    table = synthetic_results(budgets=(1e17,), depths_per_budget=9)  # no isoFLOP fit: cheap
    with pytest.warns(UserWarning, match="isoFLOP figures skipped"):
        plain = make_all_plots(table, tmp_path / "plain", formats=("png",), n_bootstrap=0)
    assert [p.name for p in plain] == ["training_time.png"]  # nothing new without scores
    with pytest.warns(UserWarning, match="isoFLOP figures skipped"):
        scored = make_all_plots(
            _with_core(table), tmp_path / "core", formats=("png",), n_bootstrap=0
        )
    assert [p.name for p in scored] == ["training_time.png", "core_vs_compute.png"]
    _assert_images(scored[1:], formats=("png",))
    with pytest.warns(UserWarning, match="downstream figure skipped: .*--eval core"):
        assert make_all_plots(table, tmp_path, figures=("downstream",), formats=("png",)) == []


def test_the_downstream_script_draws_from_a_results_table(tmp_path, capsys):
    _with_core(synthetic_results(seed=0)).to_csv(tmp_path / "results.csv", index=False)
    assert _load_script("downstream").main([str(tmp_path), "--format", "png"]) == 0
    out = tmp_path / "plots" / "core_vs_compute.png"
    assert str(out) in capsys.readouterr().out
    _assert_images([out], formats=("png",))
