"""benchmarks/generate.py runs end to end on a CPU at tiny settings, beside transformers."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("generate", ROOT / "benchmarks" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # ~35 s on 2 shared cores (transformers import, two models)
def test_generate_benchmark_smoke_on_cpu(tmp_path, capsys):
    pytest.importorskip("transformers")
    bench = load_benchmark()
    out = tmp_path / "rows.json"
    assert bench.main(["--tiny", "--device", "cpu", "--repeats", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["implementation"], r["batch"]) for r in rows] == [
        ("nanogpt engine", 1), ("nanogpt engine", 4),
        ("transformers GPT-2", 1), ("transformers GPT-2", 4),
    ]  # fmt: skip
    for r in rows:
        assert r["decode_tokens_per_s"] > 0 and r["prefill_ms"] > 0 and r["params"] > 0
    printed = capsys.readouterr().out
    assert "| implementation | params | batch | decode tokens/s |" in printed
    assert "decode at batch 4: the engine is" in printed


def test_generate_benchmark_rejects_bad_flags():
    bench = load_benchmark()
    with pytest.raises(SystemExit):
        bench.parse_args(["--batches", "1,x"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--new-tokens", "1"])
