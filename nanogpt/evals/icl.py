"""The in-context evaluator for the Mosaic ICL task types, batched across examples.

Four task types (llm-foundry's ``llmfoundry/eval/datasets/in_context_learning_evaluation.py``
defines the format; resources/eval_bundle/EVAL_GAUNTLET.md says where this code departs from
it and why):

* ``multiple_choice``: one context, N continuations (the choices); the pick is the choice with
  the lowest mean loss over its tokens.
* ``schema``: N contexts (the options), one continuation; the pick is the option under which the
  continuation has the lowest mean loss (partial scoring, Trinh & Le 2018, arXiv:1806.02847).
* ``language_modeling``: right only if greedy decoding reproduces every continuation token.
* ``generation_task_with_answers``: greedy generation, cut at the stop strings (and after the
  chain-of-thought delimiter), right if it starts with one of the answers after normalisation.

Rendering. Item strings are stripped. A few-shot example reads
``{prelimiter}{context}{continuation_delimiter}{answer}``; examples are joined by
``example_delimiter`` after ``prompt_string``; the item's context is the same without the
answer, preceded by ``example_delimiter`` when examples come before it, then right-stripped; a
continuation starts with one space. Few-shot examples are drawn per item from a
``random.Random`` seeded by the item's index, from the other items of the file (of its category
when the task has categories), never more than that pool holds. Token ids are
``<|endoftext|>`` (the document separator the models trained with), then the few-shot text,
the context and the continuation, each encoded on its own, so the continuation's tokens are
known exactly; a row longer than the model's context loses tokens from the left.

Speed. A multiple-choice item's choices share one context: by default it runs once per item,
batched across items, and then all the item's continuations run in one row against its keys
and values, each with its rotary positions restarting at the context's end and attending to
the context and to itself only (:func:`score_shared`), so the math is that of a row per choice
while a 10-shot, 4-way item costs about a quarter of the tokens. Rows of everything else
(schema options, language-modelling items, and choices whose contexts were cropped
differently) are sorted by length and packed into batches up to a token budget,
right-padded (causal attention keeps padding out of the real positions), and the output
head runs only at the continuation positions (:func:`score_rows`); ``share_prefix=False``
scores multiple-choice rows that way too (the plain path). Results stay on the device until
the last batch, so the host never waits on the GPU between batches. nanochat's
``nanochat/core_eval.py`` runs one item per forward pass with full logits; ``per_item=True``
(and ``full_head=True`` in :func:`score_rows`) do the same, for the benchmark and the tests
that batching changes nothing. With several ranks, items are strided over ranks and the
per-item results all-reduced.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from nanogpt import dist
from nanogpt.evals.bundle import TaskSpec
from nanogpt.evals.scoring import can_share_prefix, score_rows, score_shared

FEWSHOT_SEED = 1234
# Generation tasks with a chain-of-thought delimiter need room to reason before the answer.
COT_EXTRA_TOKENS = 128

GenerateFn = Callable[[list[list[int]], int], list[list[int]]]


# --- rendering ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """One item as text: the few-shot preamble, then one (context, continuation) per row.

    For generation tasks ``continuations`` holds the accepted answers and there is one context.
    """

    preamble: str
    contexts: tuple[str, ...]
    continuations: tuple[str, ...]
    gold: int


def _stripped(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v.strip() if isinstance(v, str) else v for k, v in item.items()}


def _space(text: str) -> str:
    return text if text.startswith(" ") else " " + text


def _generation_answer(task: TaskSpec, item: dict[str, Any]) -> str:
    if item.get("chain_of_thought"):
        return f"{item['chain_of_thought']}{task.cot_delimiter}{item['answer']}"
    return str(item["answer"])


def _example_text(task: TaskSpec, item: dict[str, Any]) -> str:
    """A few-shot example with its answer, no leading delimiter."""
    d = task.continuation_delimiter
    kind = task.task_type
    if kind == "multiple_choice":
        body, answer = item["query"], item["choices"][item["gold"]]
    elif kind == "schema":
        body, answer = item["context_options"][item["gold"]], item["continuation"]
    elif kind == "language_modeling":
        body, answer = item["context"], item["continuation"]
    else:
        body, answer = item["context"], _generation_answer(task, item)
    return f"{task.prelimiter}{body}{d}{answer}"


def fewshot_indices(
    idx: int, pool: Sequence[int], num_fewshot: int, seed: int = FEWSHOT_SEED
) -> list[int]:
    """``num_fewshot`` indices from ``pool`` other than ``idx``, fixed per item, capped at the pool.

    nanochat samples ``num_fewshot`` from the others without a cap and crashes on small files.
    """
    others = [i for i in pool if i != idx]
    k = min(num_fewshot, len(others))
    if k == 0:
        return []
    return random.Random(seed * 1_000_003 + idx).sample(others, k)


def render(
    task: TaskSpec,
    items: Sequence[dict[str, Any]],
    idx: int,
    pool: Sequence[int] | None = None,
    seed: int = FEWSHOT_SEED,
) -> Rendered:
    """Item ``idx`` of ``items`` rendered as text with its few-shot examples."""
    item = _stripped(items[idx])
    pool = range(len(items)) if pool is None else pool
    preamble = task.prompt_string
    for j in fewshot_indices(idx, pool, task.num_fewshot, seed):
        if preamble:
            preamble += task.example_delimiter
        preamble += _example_text(task, _stripped(items[j]))
    lead = (task.example_delimiter if preamble else "") + task.prelimiter
    d = task.continuation_delimiter
    kind = task.task_type
    if kind == "multiple_choice":
        context = f"{lead}{item['query']}{d}".rstrip()
        choices = tuple(_space(str(c)) for c in item["choices"])
        return Rendered(preamble, (context,) * len(choices), choices, int(item["gold"]))
    if kind == "schema":
        contexts = tuple(f"{lead}{c}{d}".rstrip() for c in item["context_options"])
        cont = _space(item["continuation"])
        return Rendered(preamble, contexts, (cont,) * len(contexts), int(item["gold"]))
    context = f"{lead}{item['context']}{d}".rstrip()
    if kind == "language_modeling":
        return Rendered(preamble, (context,), (_space(item["continuation"]),), 0)
    answers = [str(item["answer"]), *[str(a) for a in item.get("aliases", [])]]
    return Rendered(preamble, (context,), tuple(dict.fromkeys(answers)), 0)


# --- tokens -------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """One item as tokens: rows of (context, continuation) ids, or a generation prompt."""

    index: int  # the item's line in its file
    gold: int
    category: str | None
    rows: list[tuple[list[int], list[int]]] = field(default_factory=list)
    prompt: list[int] | None = None
    answers: tuple[str, ...] = ()
    max_new_tokens: int = 0


def crop_left(context: list[int], continuation: list[int], max_len: int, where: str) -> list[int]:
    """The context's last tokens, so that context + continuation fits ``max_len``."""
    if len(continuation) >= max_len:
        raise ValueError(
            f"{where}: the continuation is {len(continuation)} tokens, not shorter than the "
            f"model's context ({max_len}); it cannot be scored"
        )
    over = len(context) + len(continuation) - max_len
    return context[over:] if over > 0 else context


def prepare(
    task: TaskSpec,
    items: Sequence[dict[str, Any]],
    tokenizer: Any,
    max_len: int,
    indices: Sequence[int] | None = None,
    seed: int = FEWSHOT_SEED,
) -> list[Prepared]:
    """Tokenized items (``indices`` of them, default all); few-shot pools are always whole files."""
    by_category: dict[str, list[int]] = {}
    if task.has_categories:
        for i, it in enumerate(items):
            by_category.setdefault(str(it["category"]), []).append(i)
    bos = [tokenizer.eot_id]
    out = []
    for idx in range(len(items)) if indices is None else indices:
        category = str(items[idx]["category"]) if task.has_categories else None
        pool = by_category[category] if category is not None else None
        r = render(task, items, idx, pool, seed)
        head = bos + tokenizer.encode(r.preamble) if r.preamble else bos
        where = f"task {task.label!r}, item {idx}"
        prep = Prepared(idx, r.gold, category)
        if task.task_type == "generation_task_with_answers":
            answer_len = max(len(tokenizer.encode(_space(a))) for a in r.continuations)
            if items[idx].get("chain_of_thought"):
                full = _generation_answer(task, _stripped(items[idx]))
                answer_len = max(answer_len, len(tokenizer.encode(_space(full))))
            new = answer_len + (COT_EXTRA_TOKENS if task.cot_delimiter else 0)
            prep.max_new_tokens = min(new, max_len // 2)
            prompt = head + tokenizer.encode(r.contexts[0])
            prep.prompt = prompt[max(0, len(prompt) - (max_len - prep.max_new_tokens)) :]
            prep.answers = r.continuations
        else:
            encoded: dict[str, list[int]] = {}  # a multiple-choice item shares one context
            for ctx, cont in zip(r.contexts, r.continuations):
                for text in (ctx, cont):
                    if text not in encoded:
                        encoded[text] = tokenizer.encode(text)
                ctx_ids = crop_left(head + encoded[ctx], encoded[cont], max_len, where)
                prep.rows.append((ctx_ids, encoded[cont]))
        out.append(prep)
    return out


def normalize_answer(text: str) -> str:
    """Lower case, underscores and punctuation to spaces, articles dropped, spaces collapsed
    (the SQuAD / TriviaQA normalisation llm-foundry's generation metric uses)."""
    text = text.replace("_", " ").lower()
    punct = set(string.punctuation) | set("‘’´`")
    text = "".join(" " if ch in punct else ch for ch in text)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def generation_correct(task: TaskSpec, output: str, answers: Sequence[str]) -> bool:
    """llm-foundry's rule: cut at the first stop string, keep what follows the last
    chain-of-thought delimiter, normalise (or strip), then match an answer as a prefix."""
    for stop in task.early_stopping_criteria:
        output = output.split(stop)[0]
    if task.cot_delimiter:
        output = output.split(task.cot_delimiter)[-1]
    if task.do_normalization:
        output, labels = normalize_answer(output), {normalize_answer(a) for a in answers}
    else:
        output, labels = output.strip(), {a.strip() for a in answers}
    return any(output.startswith(label) for label in labels)


def greedy_generate(model: torch.nn.Module, tokenizer: Any, batch_size: int = 32) -> GenerateFn:
    """Greedy batched generation through nanogpt.engine (KV cache, left padding)."""
    from nanogpt.engine import Engine
    from nanogpt.sampling import SamplingParams

    engine = Engine(model, tokenizer)
    greedy = SamplingParams(temperature=0.0, top_k=None)

    def generate(prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        out: list[list[int]] = []
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            out += engine.generate_batch(chunk, max_new_tokens, greedy, [tokenizer.eot_id])
        return out

    return generate


@dataclass
class TaskResult:
    label: str
    accuracy: float  # the mean over categories when the task has them
    n: int
    correct: int
    categories: dict[str, float] = field(default_factory=dict)


def _generation_outcomes(
    task: TaskSpec, prepared: Sequence[Prepared], tokenizer: Any, generate: GenerateFn
) -> list[bool]:
    """Greedy generations, grouped by token budget and sorted by prompt length, then scored."""
    by_budget: dict[int, list[int]] = {}
    for k, p in enumerate(prepared):
        by_budget.setdefault(p.max_new_tokens, []).append(k)
    result: dict[int, bool] = {}
    for budget, ks in by_budget.items():
        ks = sorted(ks, key=lambda k: len(prepared[k].prompt or []))
        outputs = generate([prepared[k].prompt or [] for k in ks], budget)
        for k, ids in zip(ks, outputs):
            text = tokenizer.decode([t for t in ids if t != tokenizer.eot_id])
            result[k] = generation_correct(task, text, prepared[k].answers)
    return [result[k] for k in range(len(prepared))]


def _shares_context(p: Prepared) -> bool:
    """Whether all of an item's rows have one context (multiple choice, unless cropping to the
    model's length cut the choices' contexts differently): then it is computed once."""
    return len(p.rows) > 1 and all(ctx == p.rows[0][0] for ctx, _ in p.rows)


def _item_outcomes(
    task: TaskSpec,
    prepared: Sequence[Prepared],
    model: torch.nn.Module,
    tokenizer: Any,
    device: torch.device,
    batch_tokens: int | None,
    generate: GenerateFn | None,
    full_head: bool = False,
    share_prefix: bool = True,
) -> list[bool]:
    """Whether each prepared item is right.

    ``share_prefix`` (batched only, nanogpt GPTs only): items whose rows share one context run
    it once (:func:`score_shared`); the rest, and everything with ``share_prefix=False``, go
    through :func:`score_rows` row by row.
    """
    if task.task_type == "generation_task_with_answers":
        generate = generate or greedy_generate(model, tokenizer)
        return _generation_outcomes(task, prepared, tokenizer, generate)
    vocab = min(model.config.vocab_size, tokenizer.n_vocab)
    shared = (
        [k for k, p in enumerate(prepared) if _shares_context(p)]
        if share_prefix and batch_tokens is not None and not full_head and can_share_prefix(model)
        else []
    )
    losses: dict[int, torch.Tensor] = {}
    matches: dict[int, torch.Tensor] = {}
    if shared:
        s_loss, s_match = score_shared(
            model, [prepared[k].rows for k in shared], vocab_size=vocab, device=device,
            batch_tokens=batch_tokens, pad_id=tokenizer.eot_id,
        )  # fmt: skip
        losses.update(zip(shared, s_loss))
        matches.update(zip(shared, s_match))
    plain = [k for k in range(len(prepared)) if k not in losses]
    if plain:
        rows, groups = [], []
        for k in plain:
            rows += prepared[k].rows
            groups += [k] * len(prepared[k].rows)
        mean_loss, all_match = score_rows(
            model, rows, groups, vocab_size=vocab, pad_id=tokenizer.eot_id, device=device,
            batch_tokens=batch_tokens, full_head=full_head,
        )  # fmt: skip
        start = 0
        for k in plain:
            end = start + len(prepared[k].rows)
            losses[k], matches[k] = mean_loss[start:end], all_match[start:end]
            start = end
    outcomes = []
    for k, p in enumerate(prepared):
        if task.task_type == "language_modeling":
            outcomes.append(bool(matches[k][0]))
        else:
            # argmin takes the first of equal losses, as llm-foundry's metric does.
            outcomes.append(int(torch.argmin(losses[k])) == p.gold)
    return outcomes


def default_batch_tokens(device: torch.device) -> int:
    """Padded tokens per forward pass: 32 rows of 1024 on a GPU, 4096 on a CPU."""
    return 32768 if device.type == "cuda" else 4096


def evaluate_task(
    model: torch.nn.Module,
    tokenizer: Any,
    task: TaskSpec,
    items: Sequence[dict[str, Any]],
    *,
    device: torch.device | str = "cpu",
    indices: Sequence[int] | None = None,
    batch_tokens: int | None = None,
    per_item: bool = False,
    generate: GenerateFn | None = None,
    distributed: bool = True,
    seed: int = FEWSHOT_SEED,
    share_prefix: bool = True,
) -> TaskResult:
    """Accuracy of ``model`` on ``task`` over ``indices`` of ``items`` (default all).

    ``batch_tokens``: padded tokens per forward pass (default by device, see
    :func:`default_batch_tokens`); ``per_item``: one item per pass instead (nanochat's way);
    ``share_prefix``: a multiple-choice item's context runs once for all its choices (see
    :func:`score_shared`; False scores every choice's row on its own, the plain path). With
    ``distributed`` and a process group, each rank takes every world-size-th item and the
    results are all-reduced, so every rank returns the same numbers; the training loop, which
    evaluates on rank 0 alone, passes ``distributed=False``.
    """
    device = torch.device(device)
    indices = list(range(len(items))) if indices is None else list(indices)
    if not indices:
        raise ValueError(f"task {task.label!r}: no items to evaluate")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    mine = indices[rank::world]
    max_len = model.config.sequence_len
    prepared = prepare(task, items, tokenizer, max_len, mine, seed)
    tokens = None if per_item else (batch_tokens or default_batch_tokens(device))
    outcomes = _item_outcomes(
        task, prepared, model, tokenizer, device, tokens, generate, share_prefix=share_prefix
    )
    flags = torch.zeros(len(indices), dtype=torch.float32)
    flags[rank::world] = torch.tensor(outcomes, dtype=torch.float32)
    if distributed and world > 1:
        flags = flags.to(device)
        dist.all_reduce_sum(flags)
        flags = flags.cpu()
    hits = flags.bool().tolist()
    if not task.has_categories:
        return TaskResult(task.label, sum(hits) / len(hits), len(hits), sum(hits))
    per_cat: dict[str, list[bool]] = {}
    for idx, hit in zip(indices, hits):
        per_cat.setdefault(str(items[idx]["category"]), []).append(hit)
    cats = {c: sum(v) / len(v) for c, v in sorted(per_cat.items())}
    # Categories weigh equally, as llm-foundry's gauntlet averages per-category metrics.
    return TaskResult(task.label, sum(cats.values()) / len(cats), len(hits), sum(hits), cats)


def subsample(n_items: int, limit: int | None, seed: int = 1337) -> list[int]:
    """The first ``limit`` of a seeded shuffle of ``range(n_items)``: the same items every call."""
    order = list(range(n_items))
    if limit is None or limit >= n_items:
        return order
    random.Random(seed).shuffle(order)
    return sorted(order[:limit])
