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
    argv = ["--tiny", "--device", "cpu", "--repeats", "1", "--prefill-ab", "--json", str(out)]
    assert bench.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["measure"], r["implementation"], r["batch"]) for r in rows] == [
        ("prefill", "nanogpt engine", 1), ("prefill", "nanogpt engine, old prefill", 1),
        ("prefill", "nanogpt model forward alone", 1), ("prefill", "transformers GPT-2", 1),
        ("decode", "nanogpt engine", 1), ("decode", "nanogpt engine", 4),
        ("decode", "transformers GPT-2", 1), ("decode", "transformers GPT-2", 4),
    ]  # fmt: skip
    for r in rows:
        assert r["params"] > 0 and r["first_call_s"] > 0
        assert (r["prefill_ms"] if r["measure"] == "prefill" else r["decode_tokens_per_s"]) > 0
    printed = capsys.readouterr().out
    assert "| implementation | params | prefill 64 tokens (ms) |" in printed
    assert "| implementation | params | batch | decode tokens/s |" in printed
    assert "decode at batch 4: nanogpt engine is" in printed
    assert "prefill of 64 tokens: nanogpt engine, old prefill is" in printed
    assert "measured decode: nanogpt engine, batch 4: " in printed  # each row as it is made


def test_generate_benchmark_help_names_the_variants(capsys):
    bench = load_benchmark()
    with pytest.raises(SystemExit):
        bench.parse_args(["--help"])
    printed = capsys.readouterr().out
    for flag in ("--compile", "--prefill-ab", "--no-graphs", "--hf-cache"):
        assert flag in printed
    assert "t(N) − t(1)" in printed  # the method is in --help, not only in the source


def test_generate_benchmark_rejects_bad_flags():
    bench = load_benchmark()
    with pytest.raises(SystemExit):
        bench.parse_args(["--batches", "1,x"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--new-tokens", "1"])
