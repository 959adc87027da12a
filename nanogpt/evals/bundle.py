"""Reading an evaluation bundle in the Mosaic ICL format, and fetching the public one.

A bundle is a directory (DCLM's and nanochat's ``eval_bundle/``)::

    core.yaml             icl_tasks: label, dataset_uri, num_fewshot, icl_task_type, delimiters
    gauntlet.yaml         optional: the same for the Gauntlet (else the built-in v0.3 task list)
    eval_meta_data.csv    per task: "Eval Task", "Random baseline" (percent), category, ...
    eval_data/<...>.jsonl one JSON object per line, fields by task type

Nothing is downloaded unless asked: :func:`download_bundle` fetches the zip nanochat uses
(``scripts/base_eval.py``'s ``EVAL_BUNDLE_URL``) and unpacks it atomically.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

# The public bundle nanochat downloads (karpathy/nanochat, scripts/base_eval.py).
EVAL_BUNDLE_URL = "https://karpathy-public.s3.us-west-2.amazonaws.com/eval_bundle.zip"
BUNDLE_ENV = "NANOGPT_EVAL_BUNDLE"
TASK_TYPES = ("multiple_choice", "schema", "language_modeling", "generation_task_with_answers")


class BundleError(RuntimeError):
    """A bundle file is missing or malformed; the message names the file and the fix."""


@dataclass(frozen=True)
class TaskSpec:
    """One ``icl_tasks`` entry. Defaults are those of llm-foundry's ICL datasets."""

    label: str
    task_type: str
    dataset_uri: str  # relative to the bundle's eval_data/
    num_fewshot: int
    continuation_delimiter: str = " "
    example_delimiter: str = "\n"
    prelimiter: str = ""  # before every context (the yaml's question_prelimiter)
    prompt_string: str = ""  # once, before the few-shot examples
    has_categories: bool = False
    cot_delimiter: str = ""
    early_stopping_criteria: tuple[str, ...] = ()
    do_normalization: bool = True

    def __post_init__(self) -> None:
        if self.task_type not in TASK_TYPES:
            raise BundleError(
                f"task {self.label!r}: icl_task_type {self.task_type!r} is not one of "
                f"{', '.join(TASK_TYPES)}"
            )
        if self.num_fewshot < 0:
            raise BundleError(f"task {self.label!r}: num_fewshot must be >= 0")


@dataclass
class Bundle:
    """A bundle directory: its task lists, its baselines and where its data lives."""

    root: Path
    baselines: dict[str, float] = field(default_factory=dict)  # label -> fraction (0..1)

    @property
    def data_dir(self) -> Path:
        return self.root / "eval_data"

    def tasks(self, yaml_name: str) -> list[TaskSpec]:
        return read_task_yaml(self.root / yaml_name)

    def load_items(self, task: TaskSpec) -> list[dict[str, Any]]:
        return read_jsonl(self.data_dir / task.dataset_uri, task)


def _one_shot_count(label: str, value: Any) -> int:
    # llm-foundry takes a list of shot counts per task; a bundle evaluates one.
    if isinstance(value, list):
        if len(value) != 1:
            raise BundleError(
                f"task {label!r}: num_fewshot {value} lists several shot counts; split it into "
                "one task per shot count"
            )
        value = value[0]
    if not isinstance(value, int):
        raise BundleError(f"task {label!r}: num_fewshot must be an integer, got {value!r}")
    return value


def task_from_yaml(entry: dict[str, Any], where: str = "") -> TaskSpec:
    missing = [
        k for k in ("label", "dataset_uri", "icl_task_type", "num_fewshot") if k not in entry
    ]
    if missing:
        raise BundleError(f"{where}: an icl_tasks entry lacks {', '.join(missing)}: {entry}")
    label = str(entry["label"])
    return TaskSpec(
        label=label,
        task_type=str(entry["icl_task_type"]),
        dataset_uri=str(entry["dataset_uri"]),
        num_fewshot=_one_shot_count(label, entry["num_fewshot"]),
        continuation_delimiter=str(entry.get("continuation_delimiter", " ")),
        example_delimiter=str(entry.get("example_delimiter", "\n")),
        prelimiter=str(entry.get("question_prelimiter", entry.get("prelimiter", ""))),
        prompt_string=str(entry.get("prompt_string", "")),
        has_categories=bool(entry.get("has_categories", False)),
        cot_delimiter=str(entry.get("cot_delimiter", "")),
        early_stopping_criteria=tuple(entry.get("early_stopping_criteria") or ()),
        do_normalization=bool(entry.get("do_normalization", True)),
    )


def read_task_yaml(path: Path) -> list[TaskSpec]:
    """The ``icl_tasks`` of a core.yaml / gauntlet yaml."""
    import yaml

    if not path.is_file():
        raise BundleError(f"{path} is missing; pass --bundle DIR of an eval bundle or --download")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise BundleError(f"{path} is not valid YAML: {e}") from e
    entries = doc.get("icl_tasks") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise BundleError(f"{path} has no icl_tasks list")
    tasks = [task_from_yaml(e, str(path)) for e in entries]
    labels = [t.label for t in tasks]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise BundleError(f"{path}: task labels repeat: {', '.join(dupes)}")
    return tasks


def read_baselines(path: Path) -> dict[str, float]:
    """``Eval Task`` -> random baseline as a fraction (the CSV holds percent)."""
    if not path.is_file():
        raise BundleError(f"{path} is missing; a bundle carries eval_meta_data.csv")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or ())
        if not {"Eval Task", "Random baseline"} <= cols:
            raise BundleError(f"{path} needs the columns 'Eval Task' and 'Random baseline'")
        out: dict[str, float] = {}
        for line, row in enumerate(reader, start=2):
            try:
                out[row["Eval Task"].strip()] = float(row["Random baseline"]) / 100.0
            except (TypeError, ValueError) as e:
                raise BundleError(
                    f"{path}:{line}: random baseline {row['Random baseline']!r}"
                ) from e
    return out


_REQUIRED_FIELDS = {
    "multiple_choice": ("query", "choices", "gold"),
    "schema": ("context_options", "continuation", "gold"),
    "language_modeling": ("context", "continuation"),
    "generation_task_with_answers": ("context", "answer"),
}


def read_jsonl(path: Path, task: TaskSpec) -> list[dict[str, Any]]:
    """A task's items, checked for the fields its type needs."""
    if not path.is_file():
        raise BundleError(
            f"task {task.label!r}: {path} is missing; the bundle's eval_data/ does not hold "
            f"{task.dataset_uri}"
        )
    need = _REQUIRED_FIELDS[task.task_type]
    items: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as e:
                raise BundleError(f"{path}:{line_no}: not JSON ({e.msg})") from e
            lacking = [k for k in need if k not in item]
            if lacking:
                raise BundleError(
                    f"{path}:{line_no}: a {task.task_type} item needs {', '.join(lacking)}"
                )
            if task.has_categories and "category" not in item:
                raise BundleError(
                    f"{path}:{line_no}: has_categories is set but 'category' is absent"
                )
            if "gold" in need:
                options = item[
                    "choices" if task.task_type == "multiple_choice" else "context_options"
                ]
                if not isinstance(item["gold"], int) or not 0 <= item["gold"] < len(options):
                    raise BundleError(
                        f"{path}:{line_no}: gold {item['gold']!r} is not an option index"
                    )
            items.append(item)
    if not items:
        raise BundleError(f"{path} holds no items")
    return items


def open_bundle(root: str | Path) -> Bundle:
    root = Path(root)
    if not root.is_dir():
        raise BundleError(
            f"eval bundle {root} does not exist; pass --bundle DIR, set ${BUNDLE_ENV}, or run "
            "with --download on a machine with internet"
        )
    if (root / "eval_bundle").is_dir() and not (root / "eval_data").is_dir():
        root = root / "eval_bundle"  # the zip's top folder
    if not (root / "eval_data").is_dir():
        raise BundleError(f"{root} has no eval_data/ folder; is it an eval bundle?")
    csv_path = root / "eval_meta_data.csv"
    baselines = read_baselines(csv_path) if csv_path.is_file() else {}
    return Bundle(root, baselines)


def default_bundle_dir() -> Path:
    env = os.environ.get(BUNDLE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "nanogpt" / "eval_bundle"


def _safe_extract(archive: zipfile.ZipFile, dest: Path) -> None:
    dest_resolved = dest.resolve()
    for member in archive.infolist():
        target = (dest / member.filename).resolve()
        if dest_resolved not in target.parents and target != dest_resolved:
            raise BundleError(f"the archive's entry {member.filename!r} points outside the bundle")
    archive.extractall(dest)


def download_bundle(
    dest: str | Path | None = None, url: str = EVAL_BUNDLE_URL, timeout_s: float = 120.0
) -> Path:
    """Fetch and unpack the bundle into ``dest`` (atomically: complete or not there at all).

    An existing bundle at ``dest`` is kept and returned. The zip holds one ``eval_bundle/``
    folder; its contents become ``dest``.
    """
    dest = Path(dest) if dest is not None else default_bundle_dir()
    if (dest / "eval_data").is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".eval_bundle.", dir=dest.parent) as tmp:
        zip_path = Path(tmp) / "eval_bundle.zip"
        try:
            with (
                urllib.request.urlopen(url, timeout=timeout_s) as response,
                zip_path.open("wb") as f,
            ):
                shutil.copyfileobj(response, f)
        except (urllib.error.URLError, OSError) as e:
            raise BundleError(
                f"could not download {url}: {e}. Without internet, fetch the zip elsewhere, "
                "unpack it, and pass --bundle DIR"
            ) from e
        unpacked = Path(tmp) / "unpacked"
        try:
            with zipfile.ZipFile(zip_path) as archive:
                _safe_extract(archive, unpacked)
        except zipfile.BadZipFile as e:
            raise BundleError(f"{url} did not give a zip file ({e})") from e
        top = unpacked / "eval_bundle" if (unpacked / "eval_bundle").is_dir() else unpacked
        if not (top / "eval_data").is_dir():
            raise BundleError(f"{url} unpacked without an eval_data/ folder; not an eval bundle")
        try:
            os.replace(top, dest)
        except OSError as e:
            if (dest / "eval_data").is_dir():  # another process finished first
                return dest
            raise BundleError(f"could not move the bundle into {dest}: {e}") from e
    return dest


# Eval Gauntlet v0.3's 31 tasks as llm-foundry's scripts/eval/yamls/tasks_v0.3.yaml defines them
# (shots from eval_gauntlet_v0.3.yaml; files under llm-foundry's eval/local_data/, the layout
# the bundle's eval_data/ shares). A bundle's gauntlet.yaml, when present, takes precedence.
def _g(label: str, path: str, shots: int, kind: str, **kw: Any) -> TaskSpec:
    return TaskSpec(label, kind, path, shots, **kw)


_ANSWER = "\nAnswer: "
_MC, _LM, _SCHEMA, _GEN = TASK_TYPES[0], TASK_TYPES[2], TASK_TYPES[1], TASK_TYPES[3]
_MATH_STOPS = ("\n\n", "Question:")
GAUNTLET_V03_TASKS: tuple[TaskSpec, ...] = (
    _g("jeopardy", "world_knowledge/jeopardy_all.jsonl", 3, _LM,
       continuation_delimiter=_ANSWER, has_categories=True),
    _g("bigbench_qa_wikidata", "world_knowledge/bigbench_qa_wikidata.jsonl", 3, _LM),
    _g("arc_easy", "world_knowledge/arc_easy.jsonl", 3, _MC, continuation_delimiter=_ANSWER),
    _g("arc_challenge", "world_knowledge/arc_challenge.jsonl", 3, _MC,
       continuation_delimiter=_ANSWER),
    _g("mmlu", "world_knowledge/mmlu.jsonl", 5, _MC, continuation_delimiter=_ANSWER,
       has_categories=True),
    _g("triviaqa_sm_sub", "world_knowledge/triviaqa_sm_sub.jsonl", 3, _GEN),
    _g("copa", "commonsense_reasoning/copa.jsonl", 0, _MC),
    _g("siqa", "commonsense_reasoning/siqa.jsonl", 3, _MC),
    _g("commonsense_qa", "commonsense_reasoning/commonsense_qa.jsonl", 0, _MC),
    _g("piqa", "commonsense_reasoning/piqa.jsonl", 0, _MC, continuation_delimiter=_ANSWER),
    _g("openbook_qa", "commonsense_reasoning/openbook_qa.jsonl", 10, _MC),
    _g("bigbench_strange_stories", "commonsense_reasoning/bigbench_strange_stories.jsonl", 0, _MC),
    _g("bigbench_strategy_qa", "commonsense_reasoning/bigbench_strategy_qa.jsonl", 0, _MC),
    _g("lambada_openai", "language_understanding/lambada_openai.jsonl", 0, _LM),
    _g("hellaswag", "language_understanding/hellaswag.jsonl", 0, _MC),
    _g("winograd", "language_understanding/winograd_wsc.jsonl", 3, _SCHEMA),
    _g("winogrande", "language_understanding/winogrande.jsonl", 5, _SCHEMA),
    _g("bigbench_elementary_math_qa",
       "symbolic_problem_solving/bigbench_elementary_math_qa.jsonl", 1, _MC),
    _g("bigbench_dyck_languages", "symbolic_problem_solving/bigbench_dyck_languages.jsonl", 5, _LM),
    _g("bigbench_operators", "symbolic_problem_solving/bigbench_operators.jsonl", 3, _LM),
    _g("simple_arithmetic_withspaces",
       "symbolic_problem_solving/simple_arithmetic_withspaces.jsonl", 5, _LM),
    _g("simple_arithmetic_nospaces",
       "symbolic_problem_solving/simple_arithmetic_nospaces.jsonl", 5, _LM),
    _g("gsm8k", "symbolic_problem_solving/gsm8k_prepended_8shot.jsonl", 0, _GEN,
       cot_delimiter="The answer is ", continuation_delimiter="\n\nA:",
       early_stopping_criteria=_MATH_STOPS, do_normalization=False),
    _g("svamp", "symbolic_problem_solving/svamp.jsonl", 5, _GEN, cot_delimiter="The answer is ",
       continuation_delimiter="\n\nA:", prelimiter="Question: ",
       early_stopping_criteria=_MATH_STOPS, do_normalization=False),
    _g("agi_eval_lsat_ar", "symbolic_problem_solving/agi_eval_lsat_ar.jsonl", 5, _MC),
    _g("squad", "reading_comprehension/squad.jsonl", 3, _LM),
    _g("boolq", "reading_comprehension/boolq.jsonl", 0, _MC, continuation_delimiter=_ANSWER),
    _g("coqa", "reading_comprehension/coqa.jsonl", 0, _LM),
    _g("agi_eval_lsat_rc", "reading_comprehension/agi_eval_lsat_rc.jsonl", 5, _MC),
    _g("agi_eval_lsat_lr", "reading_comprehension/agi_eval_lsat_lr.jsonl", 5, _MC),
    _g("agi_eval_sat_en", "reading_comprehension/agi_eval_sat_en.jsonl", 5, _MC),
)  # fmt: skip


def gauntlet_tasks(bundle: Bundle) -> list[TaskSpec]:
    """The bundle's gauntlet.yaml if it has one, else the built-in v0.3 list."""
    path = bundle.root / "gauntlet.yaml"
    return read_task_yaml(path) if path.is_file() else list(GAUNTLET_V03_TASKS)


def with_shots(task: TaskSpec, num_fewshot: int) -> TaskSpec:
    return replace(task, num_fewshot=num_fewshot)
