"""nanogpt.scaling_laws: fits recover a known law, reproduce the Chinchilla replication, and fail
with clear errors on data that cannot be fitted."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nanogpt.scaling_laws import (
    InsufficientDataError,
    NoHealthyRunsError,
    ScalingLawError,
    fit_isoflop,
    fit_parametric,
    load_results,
    predict,
    synthetic_results,
)
from nanogpt.scaling_laws.cli import main as cli_main
from nanogpt.scaling_laws.parametric import _objective, to_theta
from nanogpt.scaling_laws.synthetic import BESIROGLU_LAW

CHINCHILLA_CSV = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "chinchilla_svg_extracted.csv"
)
# Besiroglu et al. 2024 (https://arxiv.org/abs/2404.10102), their fit of the 240 points of
# Hoffmann et al. 2022 (https://arxiv.org/abs/2203.15556), fig. 4: (estimate, standard error).
PUBLISHED = {
    "E": (1.8172, 0.026),
    "A": (482.01, 124.5),
    "B": (2085.43, 1293.0),
    "alpha": (0.3478, 0.015),
    "beta": (0.3658, 0.021),
    "a": (0.513, 0.020),
}
HOFFMANN_PRINTED = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}

ALPHA, BETA = BESIROGLU_LAW["alpha"], BESIROGLU_LAW["beta"]
A_TRUE, B_TRUE = BETA / (ALPHA + BETA), ALPHA / (ALPHA + BETA)


@pytest.fixture(scope="module")
def exact_6n_table() -> pd.DataFrame:
    """Runs drawn from BESIROGLU_LAW with C = 6 N D exactly (no attention term) and 0.3% noise."""
    return synthetic_results(seq_len=0, seed=1)


@pytest.fixture(scope="module")
def chinchilla() -> pd.DataFrame:
    if not CHINCHILLA_CSV.is_file():
        pytest.skip(f"{CHINCHILLA_CSV} is absent (the shared test data of ../shared/data)")
    raw = pd.read_csv(CHINCHILLA_CSV)
    # As Besiroglu et al.: leave out the 5 highest-loss points, fit the other 240.
    raw = raw.sort_values("loss").iloc[:-5]
    df, _ = load_results(
        raw, params_col="Model Size", tokens_col=None, flops_col="Training FLOP", loss_col="loss"
    )
    return df


# --- loading ------------------------------------------------------------------------------------


def test_load_keeps_only_healthy_runs_and_says_how_many_were_left_out():
    table = synthetic_results(n_diverged=3)
    table.loc[0, "status"] = "failed"
    df, message = load_results(table)
    assert len(df) == len(table) - 4
    assert set(df["status"]) == {"ok"}
    assert "3 diverged" in message and "1 failed" in message
    assert f"kept {len(df)} of {len(table)}" in message
    for column in ("N", "D", "C", "L", "budget"):
        assert np.isfinite(df[column]).all()


def test_load_reads_a_sweep_directory_parquet_and_csv(tmp_path):
    table = synthetic_results()
    table.to_csv(tmp_path / "results.csv", index=False)
    from_dir, _ = load_results(tmp_path)  # only the CSV is there
    table.to_parquet(tmp_path / "results.parquet")
    from_parquet, _ = load_results(tmp_path / "results.parquet")
    assert len(from_dir) == len(from_parquet) == (table["status"] == "ok").sum()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScalingLawError, match="no results.parquet or results.csv"):
        load_results(tmp_path / "empty")
    with pytest.raises(ScalingLawError, match="no such file"):
        load_results(tmp_path / "nowhere.parquet")


def test_load_with_other_column_names_and_derived_tokens():
    table = synthetic_results(seq_len=0, n_diverged=0).rename(
        columns={"params_scaling": "n", "flops_budget": "c", "final_val_loss": "loss"}
    )
    table = table.drop(columns=["tokens", "status"])
    df, message = load_results(
        table, params_col="n", tokens_col=None, flops_col="c", loss_col="loss"
    )
    assert "D derived as C / (6 N)" in message
    np.testing.assert_allclose(df["D"], df["c"] / (6 * df["n"]))


def test_missing_column_is_named():
    with pytest.raises(ScalingLawError, match="no column 'params_oops'"):
        load_results(synthetic_results(), params_col="params_oops")


def test_flop_conventions():
    table = synthetic_results(seq_len=1024)
    table_c = load_results(table, flops_convention="table")[0]
    six_n = load_results(table, flops_convention="6N")[0]
    actual = load_results(table, flops_convention="actual")[0]
    np.testing.assert_allclose(table_c["C"], table_c["flops_budget"])
    np.testing.assert_allclose(six_n["C"], 6 * six_n["N"] * six_n["D"])
    np.testing.assert_allclose(actual["C"], actual["flops_per_token"] * actual["tokens"])
    # Whole steps: a run never does more than its budget. 6N leaves out attention: less still.
    assert (actual["C"] <= actual["budget"] * (1 + 1e-12)).all()
    assert (six_n["C"] < actual["C"]).all()
    # The groups are the budgets whatever the convention.
    assert sorted(six_n["budget"].unique()) == sorted(table["flops_budget"].unique())


def test_budgets_scattered_by_digitisation_are_grouped():
    table = synthetic_results(n_diverged=0)
    jitter = np.exp(np.random.default_rng(0).uniform(-0.03, 0.03, len(table)))
    table["flops_budget"] = table["flops_budget"] * jitter
    df, _ = load_results(table)
    assert df["budget"].nunique() == 5


# --- Approach 2 ---------------------------------------------------------------------------------


def test_isoflop_vertex_of_exact_parabolas():
    """Noise-free losses on parabolas in log10 N: the fit finds the vertices exactly."""
    rows = []
    for budget, best in ((1e17, 1e7), (1e18, 3e7), (1e19, 9e7)):
        for n in best * np.logspace(-1, 1, 7):
            loss = 3.0 + 0.2 * (np.log10(n) - np.log10(best)) ** 2 - 0.1 * np.log10(budget / 1e17)
            rows.append(
                {
                    "params_scaling": n,
                    "tokens": budget / (6 * n),
                    "flops_budget": budget,
                    "final_val_loss": loss,
                    "status": "ok",
                }
            )
    fit = fit_isoflop(pd.DataFrame(rows), n_bootstrap=0)
    found = [m.params.value for m in fit.minima]
    np.testing.assert_allclose(found, [1e7, 3e7, 9e7], rtol=1e-9)
    np.testing.assert_allclose(
        [m.tokens.value for m in fit.minima], [1e17 / 6e7, 1e18 / 18e7, 1e19 / 54e7], rtol=1e-9
    )
    assert fit.params_law.exponent.value == pytest.approx(math.log10(9) / 2, rel=1e-9)
    assert all(m.interior for m in fit.minima)


def test_isoflop_recovers_the_exponents_within_its_intervals(exact_6n_table):
    fit = fit_isoflop(exact_6n_table, n_bootstrap=300, seed=0)
    a, b = fit.params_law.exponent, fit.tokens_law.exponent
    assert a.contains(A_TRUE), (a, A_TRUE)
    assert b.contains(B_TRUE), (b, B_TRUE)
    assert abs(a.value - A_TRUE) < 0.03 and abs(b.value - B_TRUE) < 0.03
    # With C = 6ND (up to whole steps), N* D* = C/6 at every minimum, so a + b = 1.
    assert a.value + b.value == pytest.approx(1.0, abs=1e-4)
    assert a.se > 0 and a.low < a.value < a.high
    # Each budget's N* lies within 15% of the law's optimum (the parabola is an approximation).
    g = (ALPHA * BESIROGLU_LAW["A"] / (BETA * BESIROGLU_LAW["B"])) ** (1 / (ALPHA + BETA))
    for m in fit.minima:
        assert m.params.value == pytest.approx(g * (m.budget / 6) ** A_TRUE, rel=0.15)
        assert m.params.low <= m.params.value <= m.params.high


def test_isoflop_bootstrap_is_seeded(exact_6n_table):
    one = fit_isoflop(exact_6n_table, n_bootstrap=50, seed=3).to_dict()
    two = fit_isoflop(exact_6n_table, n_bootstrap=50, seed=3).to_dict()
    other = fit_isoflop(exact_6n_table, n_bootstrap=50, seed=4).to_dict()
    assert one == two
    assert one["params_law"]["exponent"] != other["params_law"]["exponent"]


def test_isoflop_window_keeps_runs_near_each_minimum(exact_6n_table):
    narrow = fit_isoflop(exact_6n_table, window=0.5, n_bootstrap=0)
    full = fit_isoflop(exact_6n_table, window=None, n_bootstrap=0)
    assert sum(m.n_points for m in narrow.minima) < sum(m.n_points for m in full.minima)
    # However narrow, a window holds at least five sizes (when the budget ran them).
    assert all(m.n_points == 5 for m in narrow.minima)
    with pytest.raises(InsufficientDataError, match="positive half-width in ln N"):
        fit_isoflop(exact_6n_table, window=0.0, n_bootstrap=0)


def test_isoflop_leaves_out_a_budget_without_a_minimum(exact_6n_table):
    table = exact_6n_table.copy()
    extra = table[table["flops_budget"] == 1e18].copy()
    extra["flops_budget"] = 1e19
    extra["final_val_loss"] = 5.0 - 0.1 * np.log10(extra["params_scaling"])  # falls, no minimum
    extra["final_val_loss"] -= 0.01 * (np.log10(extra["params_scaling"]) - 7.5) ** 2  # concave
    fit = fit_isoflop(pd.concat([table, extra]), n_bootstrap=0)
    assert 1e19 not in [m.budget for m in fit.minima]
    assert any("C=1e+19" in note and "curve upward" in note for note in fit.notes)


# --- Approach 3 ---------------------------------------------------------------------------------


def test_parametric_recovers_the_law_within_its_intervals():
    table = synthetic_results(seed=2)  # with the attention term: Approach 3 does not care
    fit = fit_parametric(table, n_bootstrap=60, seed=0)
    for name in ("E", "A", "B", "alpha", "beta"):
        estimate = getattr(fit, name)
        assert estimate.contains(BESIROGLU_LAW[name]), (name, estimate, BESIROGLU_LAW[name])
    assert fit.a.contains(A_TRUE) and fit.b.contains(B_TRUE)
    assert fit.a.value == pytest.approx(fit.beta.value / (fit.alpha.value + fit.beta.value))
    assert "CONVERGENCE" in fit.optimizer_message


def test_chinchilla_replication_matches_besiroglu_within_their_standard_errors(chinchilla):
    assert len(chinchilla) == 240
    fit = fit_parametric(chinchilla, n_bootstrap=0)
    for name, (value, se) in PUBLISHED.items():
        assert abs(getattr(fit, name).value - value) < se, (name, getattr(fit, name).value, value)


def test_a_fit_started_at_hoffmanns_printed_values_does_not_stay_there(chinchilla):
    args = (
        np.log(chinchilla["N"].to_numpy()),
        np.log(chinchilla["D"].to_numpy()),
        np.log(chinchilla["L"].to_numpy()),
        1e-3,
    )
    at_hoffmann = _objective(to_theta(HOFFMANN_PRINTED), *args)[0]
    fit = fit_parametric(chinchilla, n_bootstrap=0, init=HOFFMANN_PRINTED)
    assert fit.objective < 0.9 * at_hoffmann
    # It leaves Hoffmann's point by many of Besiroglu's standard errors...
    assert abs(fit.beta.value - HOFFMANN_PRINTED["beta"]) > 3 * PUBLISHED["beta"][1]
    assert abs(fit.E.value - HOFFMANN_PRINTED["E"]) > 3 * PUBLISHED["E"][1]
    # ... and ends at the replication's optimum.
    for name, (value, se) in PUBLISHED.items():
        assert abs(getattr(fit, name).value - value) < se, name


# --- errors -------------------------------------------------------------------------------------


def test_a_single_budget_is_a_clear_error_for_both_approaches():
    table = synthetic_results(budgets=(1e17,), depths_per_budget=12, n_diverged=0)
    with pytest.raises(InsufficientDataError, match="at least 2 budgets.*C=1e\\+17: 12"):
        fit_isoflop(table, n_bootstrap=0)
    with pytest.raises(InsufficientDataError, match="two or more compute budgets"):
        fit_parametric(table, n_bootstrap=0)


def test_too_few_points_is_a_clear_error():
    table = synthetic_results(depths_per_budget=2, n_diverged=0)
    with pytest.raises(InsufficientDataError, match="fewer than 3 model sizes"):
        fit_isoflop(table, n_bootstrap=0)
    with pytest.raises(InsufficientDataError, match="needs at least 10 healthy runs; got 4"):
        fit_parametric(table.iloc[:4], n_bootstrap=0)


def test_nothing_but_diverged_runs_is_a_clear_error():
    table = synthetic_results().assign(status="diverged", final_val_loss=np.nan)
    with pytest.raises(NoHealthyRunsError, match=f"all {len(table)} rows.*{len(table)} diverged"):
        load_results(table)
    with pytest.raises(NoHealthyRunsError):
        fit_isoflop(table)
    assert issubclass(NoHealthyRunsError, ValueError)


# --- predictions and the command line -----------------------------------------------------------


def test_predictions_have_ordered_intervals_and_agree_with_the_fits(exact_6n_table):
    iso = fit_isoflop(exact_6n_table, n_bootstrap=100)
    par = fit_parametric(exact_6n_table, n_bootstrap=20)
    for fit in (iso, par):
        prediction = predict(fit, 1e21)
        for quantity in ("params", "tokens", "loss"):
            p = prediction[quantity]
            assert p["ci_low"] <= p["value"] <= p["ci_high"], (fit, quantity, p)
    # At a fitted budget, Approach 2's law passes near that budget's minimum.
    at_1e17 = predict(iso, 1e17)["params"]["value"]
    minimum = next(m for m in iso.minima if m.budget == 1e17).params.value
    assert at_1e17 == pytest.approx(minimum, rel=0.15)
    # Approach 3's prediction is the minimum of its law along C = 6ND.
    n, d, loss = (predict(par, 1e21)[k]["value"] for k in ("params", "tokens", "loss"))
    assert 6 * n * d == pytest.approx(1e21)
    sizes = n * np.array([0.8, 0.9, 1.1, 1.25])
    assert (par.loss(sizes, 1e21 / (6 * sizes)) > loss).all()
    with pytest.raises(ScalingLawError):
        predict(par, -1.0)


def test_cli_prints_tables_and_json(tmp_path, capsys):
    synthetic_results().to_parquet(tmp_path / "results.parquet")
    code = cli_main([str(tmp_path), "--bootstrap", "10", "--budget", "1e21"])
    text = capsys.readouterr().out
    assert code == 0
    assert "Approach 2" in text and "Approach 3" in text and "N* = k * C^a" in text
    assert "at C = 1e+21 FLOPs" in text and "left out 2 diverged" in text

    code = cli_main(
        [str(tmp_path), "--approach", "2", "--json", "--bootstrap", "20", "--budget", "1e21"]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["approach2"]["params_law"]["exponent"]["ci_low"] is not None
    assert "approach3" not in report
    assert report["predictions"][0]["budget"] == 1e21


def test_cli_errors_are_for_people(tmp_path, capsys):
    table = synthetic_results().assign(status="diverged")
    table.to_csv(tmp_path / "results.csv", index=False)
    assert cli_main([str(tmp_path / "results.csv")]) == 2
    assert "no healthy runs" in capsys.readouterr().err
    one = synthetic_results(budgets=(1e17,), depths_per_budget=12)
    one.to_csv(tmp_path / "one.csv", index=False)
    assert cli_main([str(tmp_path / "one.csv"), "--bootstrap", "0"]) == 1
    assert "at least 2 budgets" in capsys.readouterr().err


def test_the_report_has_a_core_table_when_the_table_has_scores(tmp_path, capsys):
    """analyze_results: a table with a core column gets the CORE section and the figure; the
    same table without it prints and draws exactly what it did before."""
    from nanogpt.scaling_laws.report import analyze_results, downstream_summary, format_downstream

    # Two budgets of three sizes each: too few for the fits (cheap), enough for the CORE table.
    table = synthetic_results(budgets=(1e17, 1e18), depths_per_budget=3, n_diverged=0)
    scored = table.assign(core=0.6 - 0.15 * table["final_val_loss"], eval_baselines="v1",
                          eval_max_per_task=0)  # fmt: skip
    plain = analyze_results(table, tmp_path / "plain", n_bootstrap=0, formats=("png",))
    plain_text = capsys.readouterr().out
    out = analyze_results(scored, tmp_path / "core", n_bootstrap=0, formats=("png",))
    text = capsys.readouterr().out
    assert "downstream" not in plain and "CORE" not in plain_text
    section = "\n" + format_downstream(out["downstream"]) + "\n"
    assert section in text  # the report, the CORE table, then the same lines as before
    rest = text.replace(section, "").replace(f", {out['plots'][-1]}", "")
    assert rest == plain_text.replace(str(tmp_path / "plain"), str(tmp_path / "core"))
    assert (
        "CORE of the final models (6 runs; centred, 0 = chance; baselines v1; every item)" in text
    )
    assert [Path(p).name for p in out["plots"]] == [
        *(Path(p).name for p in plain["plots"]),
        "core_vs_compute.png",
    ]
    summary = out["downstream"]
    data, _ = load_results(scored)
    for row, (budget, runs) in zip(summary["per_budget"], data.groupby("budget")):
        lowest = runs.loc[runs["L"].idxmin()]
        assert (row["budget"], row["params"]) == (budget, lowest["N"])
        assert row["score"] == pytest.approx(lowest["core"])
        assert row["best_score"] == pytest.approx(runs["core"].max())
    assert summary == downstream_summary(data)
    assert f"{summary['per_budget'][1]['score']:.4f}" in format_downstream(summary)
    # The command line prints the same table, and puts it in its JSON.
    scored.to_csv(tmp_path / "results.csv", index=False)
    cli_main([str(tmp_path / "results.csv"), "--bootstrap", "0"])
    assert format_downstream(summary) in capsys.readouterr().out
    cli_main([str(tmp_path / "results.csv"), "--bootstrap", "0", "--json"])
    assert json.loads(capsys.readouterr().out)["downstream"] == json.loads(json.dumps(summary))
