"""The benchmark scripts run end to end on a CPU at tiny shapes and report sane numbers."""

import importlib.util
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # 57 s on a shared 2-core CPU (2026-12-03)
def test_train_throughput_rows_on_cpu(tmp_path, capsys):
    bench = load("train_throughput")
    out = tmp_path / "rows.json"
    args = ["--device", "cpu", "--preset", "d1,d2", "--seq-len", "32", "--batch-size", "2",
            "--steps", "2", "--warmup", "1", "--loss", "fused,plain", "--json", str(out)]  # fmt: skip
    assert bench.main(args) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["depth"], r["loss_path"]) for r in rows] == [
        (1, "fused"), (1, "plain"), (2, "fused"), (2, "plain")
    ]  # fmt: skip
    for r in rows:
        assert r["tokens_per_s"] > 0 and r["step_ms"] > 0
        shares = r["forward_share"] + r["backward_share"] + r["optimizer_share"]
        assert shares == pytest.approx(1.0)
        assert r["optimizer_state_mib"] > 0
    table = capsys.readouterr().out
    assert "| DEPTH | loss | variant |" in table and table.count("measured: |") == 4


def test_train_throughput_rejects_bad_flags():
    bench = load("train_throughput")
    with pytest.raises(SystemExit):
        bench.parse_args(["--preset", "d6", "--depths", "6"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--preset", "huge"])
    with pytest.raises(SystemExit):
        bench.main(["--device", "cpu", "--variants", "warp-speed"])


def test_speed_leads_rows_and_ratios_on_cpu(tmp_path, capsys):
    bench = load("speed_leads")
    out = tmp_path / "leads.json"
    args = ["--device", "cpu", "--depths", "1", "--seq-len", "16", "--batch-size", "1",
            "--steps", "1", "--repeats", "1", "--warmup", "1", "--leads", "fast-muon,loss-chunk-16k",
            "--json", str(out)]  # fmt: skip
    assert bench.main(args) == 0
    rows = json.loads(out.read_text())["rows"]
    # The baseline first and last.
    assert [r["lead"] for r in rows] == ["base", "fast-muon", "loss-chunk-16k", "base"]
    base_ms = (rows[0]["step_ms"] + rows[3]["step_ms"]) / 2
    for r in rows:
        assert "error" not in r and r["weights_finite"]
        assert r["speedup"] == pytest.approx(base_ms / r["step_ms"])
    table = capsys.readouterr().out
    assert "| DEPTH | lead | step ms | tokens/s | speedup vs base (same run) |" in table
    with pytest.raises(SystemExit):
        bench.parse_args(["--leads", "warp-speed"])


def test_slot_timeline_charges_only_the_gaps_while_trials_wait():
    bench = load("sweep_overhead")

    def row(start, startup, work, teardown):
        return {"trial_started_at": start, "ray_startup_s": startup,
                "trial_wall_s": startup + work + teardown, "ray_teardown_s": teardown}  # fmt: skip

    # One slot, two trials back to back: 0-10 s starting, 10-100 working, 100-105 teardown;
    # then the second one 105-115 starting, 115-205 working, teardown to 210; the sweep ends at
    # 215. Lost: 10 + 5 + 10 = 25 slot-seconds, plus the 10 s end after the last trial's work.
    rows = [row(0.0, 10.0, 90.0, 5.0), row(105.0, 10.0, 90.0, 5.0)]
    t = bench.slot_timeline(rows, slots=1, start=0.0, end=215.0)
    assert t["lost_slot_s"] == pytest.approx(25.0)
    assert t["end_s"] == pytest.approx(10.0)
    assert t["ray_share"] == pytest.approx(35.0 / 215.0)
    # Two slots, one trial: the second slot has nothing to run, so it is not charged.
    t = bench.slot_timeline(rows[:1], slots=2, start=0.0, end=100.0)
    assert t["lost_slot_s"] == pytest.approx(10.0)
    assert t["ray_share"] == pytest.approx(5.0 / 100.0)
    # A trial whose Ray start-up overlaps the other's work costs nothing while that one works.
    rows = [row(0.0, 10.0, 90.0, 0.0), row(5.0, 100.0, 90.0, 0.0)]
    t = bench.slot_timeline(rows, slots=1, start=0.0, end=195.0)
    assert t["lost_slot_s"] == pytest.approx(15.0)  # 0-10 and the 100-105 hand-over


def test_sweep_phases_split_the_start_and_the_launch_gaps():
    bench = load("sweep_overhead")
    # Sweep starts at 0, ray.init takes 4 s. Trial A's function runs at 6 (2 s of imports, so
    # it starts its TorchTrainer at 8, its worker at 18, done at 50); trial B is launched at 53
    # (3 s after A completed) with 1 s of imports.
    rows = [
        {"trial_started_at": 8.0, "trial_imports_s": 2.0, "ray_startup_s": 10.0,
         "trial_wall_s": 42.0},
        {"trial_started_at": 54.0, "trial_imports_s": 1.0, "ray_startup_s": 5.0,
         "trial_wall_s": 30.0},
    ]  # fmt: skip
    p = bench.sweep_phases(rows, start=0.0, ray_init_s=4.0)
    assert p["ray.init"] == 4.0
    assert p["tune to first trial"] == pytest.approx(2.0)
    assert p["first work"] == pytest.approx(18.0)
    assert p["tune launch"] == pytest.approx(3.0)
    assert p["trial imports"] == pytest.approx(2.0)
    assert bench.sweep_phases([], start=0.0, ray_init_s=1.0) == {}


def test_vs_nanogpt_makes_benchs_shape_configurable_and_computes_the_ratio(tmp_path):
    bench = load("vs_nanogpt")
    # The two lines of nanoGPT's bench.py the patch relies on, in a stand-in script that runs
    # nanoGPT's configurator protocol: globals, then exec of the configurator, then the model.
    stand_in = (
        "batch_size = 12\n"
        "exec(open('configurator.py').read()) # overrides\n"
        "shape = dict(\n    n_layer = 12, n_head = 12, n_embd = 768,\n)\n"
        "print(f'time per iteration: {shape[\"n_layer\"] + batch_size}.5000ms, MFU: 1.00%')\n"
    )
    patched = bench.patch_bench(stand_in)
    (tmp_path / "bench.py").write_text(patched)
    (tmp_path / "configurator.py").write_text(
        "import sys\nfor arg in sys.argv[1:]:\n    k, v = arg[2:].split('=')\n"
        "    assert k in globals(), k\n    globals()[k] = int(v)\n"
    )
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "bench.py", "--batch_size=32", "--n_layer=6", "--n_head=6", "--n_embd=384"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert bench.parse_bench_ms(out) == 38.5  # 6 layers + batch 32: both overrides arrived
    with pytest.raises(ValueError, match="nanoGPT"):
        bench.patch_bench("print('some other script')")
    with pytest.raises(ValueError, match="time per iteration"):
        bench.parse_bench_ms("no timing here")

    rows = [{"depth": 6, "loss_path": "fused", "variant": "base", "step_ms": 20.0,
             "tokens_per_s": 32768 / 0.020}]  # fmt: skip
    table = bench.ratio_table({("before", 6): 21.0, ("after", 6): 23.0}, rows, 32768)
    assert "| 6 | 6×384 | 21.00 / 23.00 |" in table
    assert "**1.100×**" in table  # 22 ms mean against 20 ms
    assert bench.shape(12) == {"n_layer": 12, "n_head": 12, "n_embd": 768}


def test_loss_kernel_sass_finds_loops_and_counts_their_instructions():
    sass_tool = load("loss_kernel_sass")
    sass = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;
.L_x_1:
        /*0010*/                   LDG.E.128 R4, desc[UR4][R2.64] ;
        /*0020*/                   MUFU.EX2 R5, R5 ;
        /*0030*/                   MUFU.RCP R6, R6 ;
        /*0040*/               @P0 BRA `(.L_x_1) ;
        /*0050*/                   BRA `(.L_x_2) ;
.L_x_2:
        /*0060*/                   EXIT ;
"""
    assert sass_tool.loops(sass) == [("L_x_1", 4, 2)]  # the forward branch is no loop


def test_loss_kernel_benchmark_parses_launches_and_needs_a_gpu(capsys):
    tool = load("loss_kernel")
    assert tool.parse_launches("2048:8, 512:4") == [(2048, 8), (512, 4)]
    for bad in ("2048", "3000:8", "2048:3", "a:b"):
        with pytest.raises(SystemExit, match="--launches"):
            tool.parse_launches(bad)
    import torch

    if not torch.cuda.is_available():
        assert tool.main(["--launches", "2048:8"]) == 2
        assert "needs a CUDA GPU" in capsys.readouterr().err


def test_benchmarks_run_from_the_checkout_root_without_path_edits():
    """`python -m benchmarks.NAME` from the root imports this checkout's nanogpt, no sys.path
    surgery in the script (tests/test_structure.py checks that there is none)."""
    import subprocess
    import sys

    code = (
        "import runpy, sys; sys.argv = ['x', '--help']\n"
        "try:\n    runpy.run_module('benchmarks.scaling_fits', run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "import nanogpt; print(nanogpt.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == str(ROOT / "nanogpt" / "__init__.py")


@pytest.mark.parametrize("name", ["optimizer", "scaling_fits", "tokenizer_speed"])
def test_a_benchmark_without_nanogpt_on_the_path_says_how_to_run_it(tmp_path, name):
    """`python benchmarks/NAME.py` where nanogpt is not importable: one clear line (the shared
    benchmarks/needs_nanogpt.py), not a traceback. -S skips the site directory's .pth files, so
    an editable install is out of sight while the other packages stay importable."""
    import subprocess
    import sys
    import sysconfig

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = sysconfig.get_paths()["purelib"]
    out = subprocess.run(
        [sys.executable, "-S", str(ROOT / "benchmarks" / f"{name}.py"), "--help"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stderr.strip() == (
        f"benchmarks/{name}.py imports the nanogpt package: install it (`make environment`, or "
        f"`pip install .`), or run it from the checkout's root as `python -m benchmarks.{name}`"
    )
