"""nanoGPT's ``bench.py`` and this project's ``train_throughput.py`` side by side, in one call.

    python benchmarks/vs_nanogpt.py --ref .nanogpt_ref --depths 6,8,10,12,14 --out bench_out

For every DEPTH the same shape (n_layer = DEPTH, n_embd = 64 · DEPTH, 64-wide heads) and the
same tokens per step (``--batch-size`` × 1024, bf16 autocast, torch.compile, the whole step
with the optimizer): nanoGPT first ("before"), then the project, then nanoGPT again ("after"),
so that a machine that drifts during the call shows up as a difference between the two nanoGPT
columns. The ratio is the project's tokens/s over the mean of nanoGPT's two.

nanoGPT's files are not part of this repository (benchmarks/README.md says how to get them).
Its ``bench.py`` builds a fixed 12-layer model; the copy this script runs (in a temporary
folder, the original is left as it is) takes ``n_layer``, ``n_head`` and ``n_embd`` through
nanoGPT's own configurator like its other settings. Everything else is nanoGPT's: its timing
(10 burn-in steps, then 20 timed ones with a ``loss.item()`` after each), its fused AdamW.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NANOGPT_FILES = ("bench.py", "model.py", "configurator.py")
_SHAPE_LINE = "n_layer = 12, n_head = 12, n_embd = 768,"
_CONFIGURATOR_LINE = "exec(open('configurator.py').read())"
_TIME_RE = re.compile(r"time per iteration: ([0-9.]+)ms")


def patch_bench(source: str) -> str:
    """nanoGPT's bench.py with the model shape made configurable (n_layer, n_head, n_embd)."""
    if _SHAPE_LINE not in source or _CONFIGURATOR_LINE not in source:
        raise ValueError(
            "this bench.py does not look like nanoGPT's (no fixed 12-layer shape line or no "
            "configurator call); fetch bench.py from github.com/karpathy/nanoGPT"
        )
    source = source.replace(
        _CONFIGURATOR_LINE, "n_layer = 12\nn_head = 12\nn_embd = 768\n" + _CONFIGURATOR_LINE, 1
    )
    return source.replace(_SHAPE_LINE, "n_layer = n_layer, n_head = n_head, n_embd = n_embd,", 1)


def parse_bench_ms(output: str) -> float:
    """The step time nanoGPT's bench.py prints for its timed stage."""
    found = _TIME_RE.findall(output)
    if not found:
        raise ValueError("no 'time per iteration: ...ms' line in nanoGPT's output")
    return float(found[-1])


def shape(depth: int) -> dict[str, int]:
    from nanogpt import scaling

    s = scaling.shape_for_depth(depth)
    return {"n_layer": s.n_layer, "n_head": s.n_head, "n_embd": s.n_embd}


def prepare_nanogpt(ref: Path, work: Path) -> Path:
    missing = [f for f in NANOGPT_FILES if not (ref / f).is_file()]
    if missing:
        raise SystemExit(
            f"{ref}: missing nanoGPT's {', '.join(missing)}; benchmarks/README.md says how to "
            "fetch them (never commit them)"
        )
    for name in ("model.py", "configurator.py"):
        shutil.copy(ref / name, work / name)
    (work / "bench.py").write_text(patch_bench((ref / "bench.py").read_text()))
    return work


def run_nanogpt(work: Path, depth: int, batch_size: int, log: Path, timeout_s: float) -> float:
    s = shape(depth)
    cmd = [sys.executable, "bench.py", f"--batch_size={batch_size}", "--real_data=False"]
    cmd += [f"--{k}={v}" for k, v in s.items()]
    with open(log, "w") as f:
        f.write("$ " + shlex.join(cmd) + "\n")
        f.flush()
        subprocess.run(
            cmd, cwd=work, stdout=f, stderr=subprocess.STDOUT, timeout=timeout_s, check=True
        )
    return parse_bench_ms(log.read_text())


def ratio_table(nanogpt: dict, rows: list[dict], tokens_per_step: int) -> str:
    """Markdown: per project row, nanoGPT before / after, both tokens/s and the ratio."""
    lines = [
        "| DEPTH | shape | nanoGPT before / after ms | nanoGPT tokens/s | project row | project ms "
        "| project tokens/s | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d = r["depth"]
        runs = [ms for ms in (nanogpt.get(("before", d)), nanogpt.get(("after", d))) if ms]
        s = shape(d)
        name = f"{r['loss_path']}/{r['variant']}"
        if not runs:
            ref_cols, ratio = "- | -", "-"
        else:
            ref_tok = tokens_per_step / (sum(runs) / len(runs) / 1000)
            ref_cols = " / ".join(f"{ms:.2f}" for ms in runs) + f" | {ref_tok:,.0f}"
            ratio = f"**{r['tokens_per_s'] / ref_tok:.3f}×**"
        lines.append(
            f"| {d} | {s['n_layer']}×{s['n_embd']} | {ref_cols} | {name} | {r['step_ms']:.1f} "
            f"| {r['tokens_per_s']:,.0f} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ref", default=".nanogpt_ref", help="folder with nanoGPT's three files")
    p.add_argument("--depths", default="6,8,10,12,14")
    p.add_argument("--batch-size", type=int, default=32, help="sequences of 1024 tokens per step")
    p.add_argument("--out", default="bench_out", help="logs, rows JSON and the table go here")
    p.add_argument("--phases", default="before,project,after", help="which runs, in this order")
    p.add_argument("--project-args", default="", help="extra arguments for train_throughput.py")
    p.add_argument("--timeout", type=float, default=400, help="seconds per nanoGPT/project run")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    depths = [int(d) for d in args.depths.split(",")]
    phases = [x.strip() for x in args.phases.split(",")]
    tokens_per_step = args.batch_size * 1024
    nanogpt: dict = {}
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = prepare_nanogpt(Path(args.ref), Path(tmp)) if set(phases) - {"project"} else None
        for phase in phases:
            t0 = time.time()
            if phase == "project":
                cmd = [sys.executable, str(ROOT / "benchmarks" / "train_throughput.py")]
                cmd += ["--depths", args.depths, "--batch-size", str(args.batch_size)]
                cmd += ["--seq-len", "1024", "--json", str(out / "project.json")]
                cmd += shlex.split(args.project_args)
                env = {
                    **os.environ,
                    "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                }
                with open(out / "project.log", "w") as f:
                    f.write("$ " + shlex.join(cmd) + "\n")
                    f.flush()
                    try:
                        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                                       timeout=args.timeout * len(depths), check=True)  # fmt: skip
                    except (subprocess.SubprocessError, OSError) as e:
                        print(f"project run failed: {e} (see {out / 'project.log'})", flush=True)
                if (out / "project.json").exists():
                    rows = json.loads((out / "project.json").read_text())["rows"]
            else:
                for d in depths:
                    log = out / f"nanogpt_{phase}_d{d}.log"
                    try:
                        ms = run_nanogpt(work, d, args.batch_size, log, args.timeout)
                    except (subprocess.SubprocessError, ValueError, OSError) as e:
                        print(f"nanoGPT {phase} DEPTH {d} failed: {e} (see {log})", flush=True)
                        continue
                    nanogpt[(phase, d)] = ms
                    print(f"nanoGPT {phase} DEPTH {d}: {ms:.2f} ms", flush=True)
            print(f"phase {phase}: {time.time() - t0:.0f} s", flush=True)
    table = ratio_table(nanogpt, rows, tokens_per_step)
    (out / "vs_nanogpt.md").write_text(table + "\n")
    saved = {"nanogpt_ms": {f"{k[0]}_d{k[1]}": v for k, v in nanogpt.items()}, "rows": rows}
    (out / "vs_nanogpt.json").write_text(json.dumps(saved, indent=2))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
