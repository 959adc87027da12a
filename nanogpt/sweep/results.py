"""The results table: each trial's row file (written atomically in its run directory), the table
as the merge of those files (parquet + csv, atomically), and the live progress table printed
while trials run. The columns and the one function that builds a row live in
``nanogpt.results_row`` (below the sweep, so the synthetic tables use them too).

The row files are the truth: the table is rebuilt from them, so it is complete whatever Ray
reports, and a trial that finished its run is in the table even if Tune never completes it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from nanogpt import atomic
from nanogpt.results_row import EXTRA_COLUMNS, RESULT_COLUMNS, trial_row

__all__ = [
    "EXTRA_COLUMNS",
    "RESULT_COLUMNS",
    "ROW_FILE",
    "collect_rows",
    "progress_table",
    "read_results",
    "read_row",
    "tail_metrics",
    "trial_row",
    "write_row",
    "write_table",
]

ROW_FILE = "row.json"


def write_row(run_dir: Path, row: dict[str, Any]) -> Path:
    """The row file of one trial, written to a temporary name and renamed."""
    run_dir.mkdir(parents=True, exist_ok=True)
    return atomic.write_json(run_dir / ROW_FILE, row, sort_keys=True, default=str)


def read_row(run_dir: Path) -> dict[str, Any] | None:
    """A trial's row, or None while it has none (or its file cannot be read)."""
    try:
        return json.loads((run_dir / ROW_FILE).read_text())
    except (OSError, ValueError):
        return None


# --- the table ----------------------------------------------------------------------------------------


def collect_rows(sweep_dir: Path, keys: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Every trial row under ``sweep_dir/runs`` (only ``keys`` if given), by trial key."""
    runs = sweep_dir / "runs"
    dirs = [runs / k for k in keys] if keys is not None else sorted(runs.glob("*"))
    rows = {}
    for run_dir in dirs:
        row = read_row(run_dir)
        if row is not None:
            rows[run_dir.name] = row
    return rows


def write_table(rows: list[dict[str, Any]], sweep_dir: Path) -> Path:
    """results.parquet and results.csv, each written to a temporary name and renamed."""
    import pandas as pd

    columns = RESULT_COLUMNS + EXTRA_COLUMNS
    frame = pd.DataFrame(rows)
    for column in columns:
        if column not in frame:
            frame[column] = None
    frame = frame[columns]
    if len(frame):
        frame = frame.sort_values(["flops_budget", "depth", "seed"], kind="stable")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    parquet, csv = sweep_dir / "results.parquet", sweep_dir / "results.csv"
    with atomic.atomic_path(parquet) as tmp:
        frame.to_parquet(tmp, index=False)
    with atomic.atomic_path(csv) as tmp:
        frame.to_csv(tmp, index=False)
    return parquet


def read_results(sweep_dir: Path) -> list[dict[str, Any]]:
    import pandas as pd

    path = sweep_dir / "results.parquet"
    if not path.is_file():
        return []
    frame = pd.read_parquet(path)
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


# --- progress while trials run --------------------------------------------------------------------


def tail_metrics(run_dir: Path, max_bytes: int = 16384) -> dict[str, Any] | None:
    """The newest training-step record of a run's ``metrics.jsonl`` (None if there is none yet).

    Reads only the end of the file, so the driver can poll every running trial cheaply; this is
    how the progress table follows trials, which report nothing to Tune until they end. Needs
    the run directory to be visible to the driver (one node, or shared storage).
    """
    path = Path(run_dir) / "metrics.jsonl"
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a partial first line of the window, or one being written
        if isinstance(record, dict) and "step" in record and "train_loss" in record:
            return record
    return None


def progress_table(
    specs: list[dict[str, Any]],
    tokens_per_step: int,
    latest: dict[str, dict[str, Any]],
    state: dict[str, str],
    rows: dict[str, dict[str, Any]],
) -> str:
    lines = [f"{'trial':<22} {'depth':>5} {'budget':>8} {'step':>13} {'loss':>7} "
             f"{'tok/s':>10} {'ETA':>7}  status"]  # fmt: skip
    for spec in specs:
        key = spec["trial_key"]
        m = latest.get(key, {})
        done = rows.get(key)
        status = done.get("status", "ok") if done else state.get(key, "pending")
        step = (done or m).get("step") or (done or {}).get("steps") or 0
        planned = spec["steps_planned"]
        loss = (done or {}).get("final_train_loss") or m.get("train_loss")
        tok_s = (done or m).get("tokens_per_s") or 0.0
        eta = ""
        if not done and tok_s and step:
            eta = f"{(planned - step) * tokens_per_step / tok_s:.0f}s"
        lines.append(
            f"{key:<22} {spec['depth']:>5} {spec['flops_budget']:>8.2g} "
            f"{f'{step}/{planned}':>13} {f'{loss:.3f}' if loss else '':>7} "
            f"{f'{tok_s:,.0f}' if tok_s else '':>10} {eta:>7}  {status}"
        )
    finished = sum(1 for s in specs if s["trial_key"] in rows)
    lines.append(f"{finished}/{len(specs)} trials finished")
    return "\n".join(lines)
