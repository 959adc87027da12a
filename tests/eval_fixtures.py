"""A small CORE bundle in the Mosaic ICL schema, written by the tests that need one (the sweep's
``--eval core``): core.yaml with DCLM's 22 tasks at their types and shots, eval_meta_data.csv
with the v1 baselines, and eval_data/<task>.jsonl of short items (short enough for a 32-token
context with the byte tokenizer)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from nanogpt.evals import aggregate


def _items(kind: str, n: int) -> list[dict]:
    if kind == "multiple_choice":
        return [{"query": f"q{i}?", "choices": [f"a{i}", f"b{i}"], "gold": i % 2} for i in range(n)]
    if kind == "schema":
        return [
            {"context_options": [f"x{i}", f"y{i}"], "continuation": f"z{i}.", "gold": i % 2}
            for i in range(n)
        ]
    return [{"context": f"c{i}:", "continuation": f"v{i}"} for i in range(n)]


def write_core_bundle(root: Path, n_items: int = 6, leave_out: tuple[str, ...] = ()) -> Path:
    """The bundle at ``root`` (created); ``leave_out`` tasks are absent from core.yaml."""
    entries = []
    csv_lines = ["Eval Task,Task Category,Task Type,#shots,#datapoints,Random baseline"]
    for label, (kind, shots) in aggregate.CORE_TASKS.items():
        if label in leave_out:
            continue
        uri = f"fixture/{label}.jsonl"
        path = root / "eval_data" / uri
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(it) + "\n" for it in _items(kind, n_items)))
        entries.append(
            {"label": label, "dataset_uri": uri, "num_fewshot": [min(shots, 1)],
             "icl_task_type": kind}
        )  # fmt: skip
        csv_lines.append(
            f"{label},fixture,{kind},{shots},{n_items},{aggregate.CORE_BASELINES_V1[label]}"
        )
    (root / "core.yaml").write_text(yaml.safe_dump({"icl_tasks": entries}))
    (root / "eval_meta_data.csv").write_text("\n".join(csv_lines) + "\n")
    return root
