"""The benchmark scripts run end to end on a CPU at tiny shapes and report sane numbers."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
