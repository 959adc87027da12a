"""Answers for the judge-scored chat benchmarks, written in each one's own input format.

**Nothing here scores them.** MT-Bench, AlpacaEval and FLASK grade answers with a judge model
(GPT-4 or another strong LLM) that this project neither has nor calls. These functions only
generate the model's answers (greedy, chat-rendered for a mid-trained checkpoint) and write
them where the benchmark's own tooling expects them; run that tooling, with its judge, to get
a score.

| benchmark | questions in | answers out | then |
|---|---|---|---|
| MT-Bench (Zheng et al. 2023, arXiv:2306.05685) | FastChat's ``question.jsonl``: ``question_id``, ``category``, ``turns`` (two user turns) | JSONL: ``question_id``, ``answer_id``, ``model_id``, ``choices: [{"index": 0, "turns": [a1, a2]}]``, ``tstamp`` | FastChat ``llm_judge/gen_judgment.py`` with the file in ``data/mt_bench/model_answer/<model_id>.jsonl`` |
| AlpacaEval (Li et al. 2023) | ``alpaca_eval.json``: a list of ``instruction`` (+ ``dataset``) | JSON list: ``instruction``, ``output``, ``generator``, ``dataset`` | ``alpaca_eval --model_outputs FILE`` |
| FLASK (Ye et al. 2023, arXiv:2307.10928) | ``flask_evaluation.jsonl``: ``question_id``, ``text`` | JSONL: ``question_id``, ``text`` (the answer) | FLASK's ``gpt_review/gpt4_eval.py`` |

MT-Bench's second turn is asked after the model's own first answer, as FastChat does.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from nanogpt.engine import Engine, is_chat_model
from nanogpt.evals.chatcore import generate_replies, subsample

BENCHMARKS = ("mt_bench", "alpaca_eval", "flask")
NOT_SCORED = (
    "answers exported only: {name} is scored by a judge model, which nothing here runs; "
    "score {path} with the benchmark's own tooling"
)


def _read_questions(path: Path) -> list[dict]:
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        rows = json.loads(text)
        if not isinstance(rows, list):
            raise ValueError(f"{path}: expected a JSON list of questions")
        return rows
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _atomic_write(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _render(tokenizer, messages: list[dict], chat: bool) -> list[int]:
    if chat:
        return tokenizer.render_for_completion(messages)
    # a base model: the turns as plain text, a blank line between them
    text = "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)
    return tokenizer.encode_document(text + "\n\nAssistant:")


def _field(row: dict, name: str, path: Path, i: int):
    if name not in row:
        raise ValueError(f"{path}: question {i} has no {name!r} field (fields: {sorted(row)})")
    return row[name]


def export_answers(
    model,
    tokenizer,
    meta: dict,
    benchmark: str,
    questions_path: Path,
    out_path: Path,
    *,
    model_id: str = "nanogpt",
    limit: int | None = None,
    max_new_tokens: int = 1024,
    batch_size: int = 16,
) -> dict:
    """Generate and write the answers; returns ``{"benchmark", "path", "n", "notes"}``.

    The notes always say that nothing was scored.
    """
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose from {', '.join(BENCHMARKS)}")
    questions_path, out_path = Path(questions_path), Path(out_path)
    questions = subsample(_read_questions(questions_path), limit)
    if not questions:
        raise ValueError(f"{questions_path} holds no questions")
    chat = is_chat_model(meta)
    engine = Engine(model.eval(), tokenizer)

    def answer(conversations: Sequence[list[dict]]) -> list[str]:
        prompts = [_render(tokenizer, c, chat) for c in conversations]
        return [
            r.strip()
            for r in generate_replies(engine, prompts, max_new_tokens, batch_size=batch_size)
        ]

    if benchmark == "mt_bench":
        turns = [_field(q, "turns", questions_path, i) for i, q in enumerate(questions)]
        histories = [[] for _ in questions]
        answers: list[list[str]] = [[] for _ in questions]
        for t in range(max(len(ts) for ts in turns)):
            asking = [i for i, ts in enumerate(turns) if t < len(ts)]
            for i in asking:
                histories[i].append({"role": "user", "content": turns[i][t]})
            for i, reply in zip(asking, answer([histories[i] for i in asking])):
                histories[i].append({"role": "assistant", "content": reply})
                answers[i].append(reply)
        rows = [
            {
                "question_id": q["question_id"],
                "answer_id": uuid.uuid4().hex,
                "model_id": model_id,
                "choices": [{"index": 0, "turns": a}],
                "tstamp": time.time(),
            }
            for q, a in zip(questions, answers)
        ]
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    elif benchmark == "alpaca_eval":
        instructions = [
            _field(q, "instruction", questions_path, i) for i, q in enumerate(questions)
        ]
        outputs = answer([[{"role": "user", "content": x}] for x in instructions])
        rows = [
            {
                "instruction": x,
                "output": o,
                "generator": model_id,
                "dataset": q.get("dataset", ""),
            }
            for x, o, q in zip(instructions, outputs, questions)
        ]
        text = json.dumps(rows, ensure_ascii=False, indent=2) + "\n"
    else:  # flask
        texts = [_field(q, "text", questions_path, i) for i, q in enumerate(questions)]
        outputs = answer([[{"role": "user", "content": x}] for x in texts])
        rows = [{"question_id": q["question_id"], "text": o} for q, o in zip(questions, outputs)]
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    _atomic_write(out_path, text)
    notes = [NOT_SCORED.format(name=benchmark, path=out_path)]
    if not chat:
        notes.append("a base (not mid-trained) model: the turns were rendered as plain text")
    return {"benchmark": benchmark, "path": str(out_path), "n": len(rows), "notes": notes}
