"""The in-context evaluator: golden renderings per task type, few-shot sampling, cropping, an
oracle scoring 1 and an anti-oracle 0, a random guesser near chance, batched scores equal to
one-at-a-time scores on a real tiny GPT, the bundle reader and downloader, and the CLI end to
end on a checkpoint and a bundle the tests write (Mosaic ICL schema)."""

from __future__ import annotations

import json
import random
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from nanogpt import atomic
from nanogpt import checkpoint as ckpt
from nanogpt.config import ModelConfig
from nanogpt.evals import aggregate, evaluate, icl, scoring
from nanogpt.evals.bundle import (
    BundleError,
    TaskSpec,
    download_bundle,
    open_bundle,
    read_jsonl,
    read_task_yaml,
)
from nanogpt.model import GPT
from nanogpt.tokenizer import get_tokenizer

BYTES = get_tokenizer("bytes")
PAD = BYTES.eot_id


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models on a shared CPU run far faster on one thread (conftest restores the count).
    torch.set_num_threads(1)


# --- fixtures -----------------------------------------------------------------------------------


def mc_items(n: int, n_choices: int = 4, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "query": f"Question {i}: pick one.",
            "choices": [f"opt{i}x{c}" for c in range(n_choices)],
            "gold": rng.randrange(n_choices),
        }
        for i in range(n)
    ]


def schema_items(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "context_options": [f"The cat{i} was", f"The dog{i} was"],
            "continuation": f"asleep at {i}.",
            "gold": rng.randrange(2),
        }
        for i in range(n)
    ]


def lm_items(n: int) -> list[dict]:
    return [{"context": f"Count item {i}:", "continuation": f"ans{i}"} for i in range(n)]


def gen_items(n: int) -> list[dict]:
    return [
        {"context": f"What is the code {i}?", "answer": f"Code-{i}", "aliases": [f"c{i}"]}
        for i in range(n)
    ]


MAKERS = {
    "multiple_choice": mc_items,
    "schema": schema_items,
    "language_modeling": lm_items,
    "generation_task_with_answers": gen_items,
}


def gold_tails(task_type: str, items: list[dict]) -> dict[str, int]:
    """Text each correct row ends with -> how many final tokens (bytes) the continuation has."""
    tails = {}
    for it in items:
        if task_type == "multiple_choice":
            tail = " " + it["choices"][it["gold"]]
            tails[tail] = len(tail)
        elif task_type == "schema":
            cont = " " + it["continuation"]
            tails[it["context_options"][it["gold"]] + cont] = len(cont)
        else:
            tail = " " + it["continuation"]
            tails[tail] = len(tail)
    return tails


class OracleModel(torch.nn.Module):
    """Logits that know the answers: on a row ending with a gold tail, the continuation's
    tokens get logit +20 (sign=+1, the oracle) or -20 (sign=-1, the anti-oracle); every other
    position is uniform. Reads byte-tokenizer rows, right-padded with ``<|endoftext|>``."""

    def __init__(self, tails: dict[str, int], sign: float = 1.0, seq_len: int = 512) -> None:
        super().__init__()
        self.config = ModelConfig(
            n_layer=1, n_head=1, n_embd=8, vocab_size=259, sequence_len=seq_len
        )
        self.tails, self.sign = tails, sign

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        logits = torch.zeros(B, T, self.config.vocab_size)
        for b in range(B):
            ids = idx[b].tolist()
            while ids and ids[-1] == PAD:
                ids.pop()
            text = bytes(i for i in ids if i < 256).decode()
            for tail, n in self.tails.items():
                if text.endswith(tail):
                    L = len(ids)
                    for t in range(L - n - 1, L - 1):
                        logits[b, t, ids[t + 1]] = 20.0 * self.sign
        return logits


class RandomGuesser(torch.nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.config = ModelConfig(n_layer=1, n_head=1, n_embd=8, vocab_size=259, sequence_len=512)
        self.gen = torch.Generator().manual_seed(seed)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.randn(*idx.shape, self.config.vocab_size, generator=self.gen)


def tiny_gpt(seed: int = 0, seq: int = 128) -> GPT:
    torch.manual_seed(seed)
    model = GPT(ModelConfig(n_layer=2, n_head=2, n_embd=64, vocab_size=259, sequence_len=seq))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


def spec(task_type: str, shots: int = 0, label: str = "t", **kw) -> TaskSpec:
    return TaskSpec(label, task_type, f"{label}.jsonl", shots, **kw)


# --- rendering ----------------------------------------------------------------------------------


def test_golden_multiple_choice_rendering():
    task = spec("multiple_choice", 1, continuation_delimiter="\nAnswer: ")
    items = [
        {"query": " Capital of France? ", "choices": ["Paris", "Rome"], "gold": 0},
        {"query": "2 + 2 =", "choices": ["4", "5"], "gold": 0},
    ]
    r = icl.render(task, items, 1)
    assert r.preamble == "Capital of France?\nAnswer: Paris"
    assert r.contexts == ("\n2 + 2 =\nAnswer:", "\n2 + 2 =\nAnswer:")
    assert r.continuations == (" 4", " 5") and r.gold == 0
    zero = icl.render(spec("multiple_choice", 0, continuation_delimiter="\nAnswer: "), items, 0)
    assert zero.preamble == "" and zero.contexts[0] == "Capital of France?\nAnswer:"


def test_golden_schema_rendering():
    task = spec("schema", 1)
    items = [
        {"context_options": ["Anna gave Bo", "Bo gave Anna"], "continuation": "a gift.", "gold": 1},
        {
            "context_options": ["The cup fell", "The cup rose"],
            "continuation": "and broke.",
            "gold": 0,
        },
    ]
    r = icl.render(task, items, 0)
    assert r.preamble == "The cup fell and broke."
    assert r.contexts == ("\nAnna gave Bo", "\nBo gave Anna")
    assert r.continuations == (" a gift.", " a gift.") and r.gold == 1


def test_golden_language_modeling_rendering():
    task = spec("language_modeling", 1, continuation_delimiter="\nAnswer: ", prompt_string="Quiz")
    items = [
        {"context": "Largest planet?", "continuation": "Jupiter"},
        {"context": "Red planet? ", "continuation": " Mars"},
    ]
    r = icl.render(task, items, 1)
    assert r.preamble == "Quiz\nLargest planet?\nAnswer: Jupiter"
    assert r.contexts == ("\nRed planet?\nAnswer:",)
    assert r.continuations == (" Mars",)


def test_golden_generation_rendering():
    task = spec(
        "generation_task_with_answers", 1, continuation_delimiter="\nA:", prelimiter="Q: ",
        cot_delimiter=" #### ",
    )  # fmt: skip
    items = [
        {"context": "1+1?", "answer": "2", "chain_of_thought": "One and one.", "aliases": ["two"]},
        {"context": "2+2?", "answer": "4", "aliases": ["four", "4"]},
    ]
    r = icl.render(task, items, 1)
    assert r.preamble == "Q: 1+1?\nA:One and one. #### 2"
    assert r.contexts == ("\nQ: 2+2?\nA:",)
    assert r.continuations == ("4", "four")  # answer first, aliases after, duplicates gone


def test_tokens_are_bos_preamble_context_continuation_encoded_separately():
    task = spec("multiple_choice", 1)
    items = mc_items(2, n_choices=2)
    prepared = icl.prepare(task, items, BYTES, 512)
    r = icl.render(task, items, 0)
    ctx, cont = prepared[0].rows[1]
    assert ctx == [PAD, *r.preamble.encode(), *r.contexts[1].encode()]
    assert cont == list(r.continuations[1].encode())


# --- few-shot sampling and cropping --------------------------------------------------------------


def test_fewshot_is_deterministic_excludes_the_item_and_varies_between_items():
    pool = list(range(50))
    a = icl.fewshot_indices(7, pool, 5)
    assert a == icl.fewshot_indices(7, pool, 5) and len(set(a)) == 5 and 7 not in a
    assert a != icl.fewshot_indices(8, pool, 5)


def test_fewshot_larger_than_the_pool_uses_the_whole_pool():
    assert sorted(icl.fewshot_indices(1, range(3), 10)) == [0, 2]
    assert icl.fewshot_indices(0, [0], 10) == []
    items = mc_items(3)
    task = spec("multiple_choice", 25)
    for idx in range(3):
        r = icl.render(task, items, idx)
        assert r.preamble.count("Question") == 2  # both others, not 25 and no crash
    result = icl.evaluate_task(
        OracleModel(gold_tails("multiple_choice", items)), BYTES, task, items
    )
    assert result.accuracy == 1.0


def test_fewshot_examples_come_from_the_items_category():
    items = [{"query": f"q{i}", "choices": ["a", "b"], "gold": 0, "category": f"c{i % 2}"}
             for i in range(10)]  # fmt: skip
    task = spec("multiple_choice", 3, has_categories=True)
    prepared = icl.prepare(task, items, BYTES, 512)
    for p in prepared:
        text = bytes(t for t in p.rows[0][0] if t < 256).decode()
        shown = [int(w[1:]) for w in text.split() if w.startswith("q")]
        assert all(i % 2 == p.index % 2 for i in shown)


def test_long_rows_are_cropped_from_the_left():
    assert icl.crop_left(list(range(10)), [100, 101], 6, "x") == [6, 7, 8, 9]
    assert icl.crop_left([1, 2], [3], 6, "x") == [1, 2]
    with pytest.raises(ValueError, match="continuation is 6 tokens"):
        icl.crop_left([1], [0] * 6, 6, "x")
    task = spec("multiple_choice", 5)
    items = mc_items(20)
    for p in icl.prepare(task, items, BYTES, 64):
        for ctx, cont in p.rows:
            assert len(ctx) + len(cont) <= 64 and bytes(ctx[-9:]) == b"pick one."


# --- oracle, anti-oracle, random guesser ---------------------------------------------------------


@pytest.mark.parametrize("task_type", ["multiple_choice", "schema", "language_modeling"])
@pytest.mark.parametrize("shots", [0, 3])
def test_an_oracle_scores_1_and_an_anti_oracle_0(task_type, shots):
    items = MAKERS[task_type](40)
    task = spec(task_type, shots)
    tails = gold_tails(task_type, items)
    assert icl.evaluate_task(OracleModel(tails), BYTES, task, items).accuracy == 1.0
    anti = icl.evaluate_task(OracleModel(tails, sign=-1.0), BYTES, task, items)
    assert anti.accuracy == 0.0


def test_generation_oracle_anti_oracle_and_answer_rules():
    items = gen_items(12)
    task = spec("generation_task_with_answers", 2, early_stopping_criteria=("\n",))
    by_prompt = {}
    for p in icl.prepare(task, items, BYTES, 512):
        by_prompt[tuple(p.prompt)] = items[p.index]

    def oracle(prompts, max_new):
        # The gold answer, then a stop string and junk the scorer must cut off.
        return [list(f" {by_prompt[tuple(p)]['answer']}.\nnoise".encode()) for p in prompts]

    def anti(prompts, max_new):
        return [list(b" wrong") for _ in prompts]

    stub = OracleModel({})  # only its context length is read
    assert icl.evaluate_task(stub, BYTES, task, items, generate=oracle).accuracy == 1.0
    assert icl.evaluate_task(stub, BYTES, task, items, generate=anti).accuracy == 0.0


def test_generation_answer_normalisation_and_chain_of_thought():
    plain = spec("generation_task_with_answers")
    assert icl.generation_correct(plain, " The Eiffel_Tower!", ["eiffel tower"])
    assert icl.generation_correct(plain, "c7 and more", ["Code-7", "c7"])
    assert not icl.generation_correct(plain, "Paris", ["Rome"])
    cot = spec(
        "generation_task_with_answers", cot_delimiter="The answer is ",
        early_stopping_criteria=("\n\n", "Question:"), do_normalization=False,
    )  # fmt: skip
    assert icl.generation_correct(cot, " 3 + 4 = 7. The answer is 7\n\nQuestion: 9", ["7"])
    assert not icl.generation_correct(cot, " The answer is 8\n\nThe answer is 7", ["7"])


def test_a_random_guesser_centres_near_zero():
    items = mc_items(1500, n_choices=4, seed=3)
    result = icl.evaluate_task(RandomGuesser(), BYTES, spec("multiple_choice"), items)
    assert abs(aggregate.centered(result.accuracy, 0.25)) < 0.06


def test_ties_go_to_the_first_choice():
    items = [{"query": "q", "choices": ["a", "b"], "gold": 1}] * 3
    uniform = OracleModel({})  # every row the same loss
    assert icl.evaluate_task(uniform, BYTES, spec("multiple_choice"), items).accuracy == 0.0


# --- batching ------------------------------------------------------------------------------------


def _mixed_rows(seed: int = 0):
    items = mc_items(12, seed=seed)
    prepared = icl.prepare(spec("multiple_choice", 2), items, BYTES, 128)
    prepared += icl.prepare(spec("schema", 1), schema_items(8), BYTES, 128)
    prepared += icl.prepare(spec("language_modeling", 3), lm_items(8), BYTES, 128)
    rows, groups = [], []
    for k, p in enumerate(prepared):
        rows += p.rows
        groups += [k] * len(p.rows)
    return rows, groups


def test_batched_scores_equal_one_at_a_time_on_a_real_gpt():
    model = tiny_gpt()
    rows, groups = _mixed_rows()
    kw = dict(vocab_size=259, pad_id=PAD, device=torch.device("cpu"))
    batched = icl.score_rows(model, rows, groups, batch_tokens=2048, **kw)
    per_item = icl.score_rows(model, rows, groups, batch_tokens=None, **kw)
    alone = icl.score_rows(model, rows, list(range(len(rows))), batch_tokens=None, **kw)
    full = icl.score_rows(model, rows, groups, batch_tokens=None, full_head=True, **kw)
    assert len(scoring._batches([len(a) + len(b) for a, b in rows], groups, 2048)) < len(rows) // 4
    for other in (per_item, alone, full):
        torch.testing.assert_close(batched[0], other[0], atol=1e-5, rtol=1e-5)
        assert torch.equal(batched[1], other[1])
    # and the reference: the model's own cross-entropy on one unpadded row
    ctx, cont = rows[5]
    ids = torch.tensor([ctx + cont])
    logits = model(ids)[0, len(ctx) - 1 : -1]
    ref = torch.nn.functional.cross_entropy(logits, ids[0, len(ctx) :]).item()
    assert abs(batched[0][5].item() - ref) < 1e-5


def test_task_accuracy_is_the_same_batched_and_per_item_on_a_real_gpt():
    model = tiny_gpt(seed=1)
    for task, items in [
        (spec("multiple_choice", 2), mc_items(30)),
        (spec("schema", 1), schema_items(20)),
        (spec("language_modeling", 1), lm_items(20)),
    ]:
        a = icl.evaluate_task(model, BYTES, task, items, batch_tokens=4096)
        b = icl.evaluate_task(model, BYTES, task, items, per_item=True)
        assert (a.accuracy, a.n) == (b.accuracy, b.n)


def ragged_mc_items(n: int, seed: int = 0) -> list[dict]:
    """Choices of different lengths (1 to ~10 tokens), so continuation slots are padded."""
    rng = random.Random(seed)
    words = ["yes", "no", "maybe so", "the cat sat", "a longer answer than the others here"]
    return [
        {
            "query": f"Q{i}: " + " ".join(rng.choice(words) for _ in range(rng.randrange(1, 6))),
            "choices": rng.sample(words, rng.randrange(2, 5)),
            "gold": 0,
        }
        for i in range(n)
    ]


def _plain_and_shared(model, tokenizer, task, items, max_len, batch_tokens):
    prepared = [p for p in icl.prepare(task, items, tokenizer, max_len) if icl._shares_context(p)]
    assert len(prepared) >= len(items) // 2
    rows = [r for p in prepared for r in p.rows]
    groups = [k for k, p in enumerate(prepared) for _ in p.rows]
    vocab = min(model.config.vocab_size, tokenizer.n_vocab)
    kw = dict(vocab_size=vocab, device=torch.device("cpu"), pad_id=tokenizer.eot_id)
    plain = icl.score_rows(model, rows, groups, batch_tokens=2048, **kw)
    shared = icl.score_shared(model, [p.rows for p in prepared], batch_tokens=batch_tokens, **kw)
    return prepared, plain, shared


@pytest.mark.parametrize("batch_tokens", [200, 4096])
@pytest.mark.parametrize("shots", [0, 3])
def test_prefix_shared_scores_equal_the_plain_batched_path(shots, batch_tokens):
    # fp32 on CPU: per-choice mean losses allclose, greedy matches and the picks identical.
    model = tiny_gpt(seed=3, seq=256)
    task = spec("multiple_choice", shots)
    for items in (mc_items(16), ragged_mc_items(16)):
        prepared, plain, shared = _plain_and_shared(model, BYTES, task, items, 256, batch_tokens)
        torch.testing.assert_close(torch.cat(shared[0]), plain[0], atol=1e-5, rtol=1e-5)
        assert torch.equal(torch.cat(shared[1]), plain[1])
        start = 0
        for p, losses in zip(prepared, shared[0]):
            end = start + len(p.rows)
            assert int(torch.argmin(losses)) == int(torch.argmin(plain[0][start:end]))
            start = end


def test_prefix_shared_path_with_gpt2_bpe_and_one_token_choices():
    # GPT-2 BPE makes " yes" / " no" one token: only the context's last position scores them.
    tok = get_tokenizer("gpt2")
    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layer=2, n_head=2, n_embd=32, vocab_size=tok.n_vocab,
                            sequence_len=128)).eval()  # fmt: skip
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    one_token = [{"query": f"Is {i} even?", "choices": ["yes", "no"], "gold": i % 2}
                 for i in range(6)]  # fmt: skip
    for items in (one_token, ragged_mc_items(10, seed=1)):
        _, plain, shared = _plain_and_shared(
            model, tok, spec("multiple_choice", 2), items, 128, 512
        )
        torch.testing.assert_close(torch.cat(shared[0]), plain[0], atol=1e-5, rtol=1e-5)
        assert torch.equal(torch.cat(shared[1]), plain[1])


def test_share_prefix_gives_the_plain_outcomes_and_falls_back_where_it_cannot(monkeypatch):
    calls = []
    real = icl.score_shared
    monkeypatch.setattr(icl, "score_shared", lambda m, items, **kw: calls.append(len(items))
                        or real(m, items, **kw))  # fmt: skip
    # seq 80: long contexts are cropped by each choice's own length, so some items' rows no
    # longer share a context; those go through the plain path.
    for seq, task, items in [
        (256, spec("multiple_choice", 0), ragged_mc_items(24)),
        (80, spec("multiple_choice", 0), ragged_mc_items(24)),
        (256, spec("schema", 1), schema_items(12)),
        (256, spec("language_modeling", 1), lm_items(12)),
    ]:
        model = tiny_gpt(seed=4, seq=seq)
        calls.clear()
        prepared = icl.prepare(task, items, BYTES, seq)
        n_share = sum(icl._shares_context(p) for p in prepared)
        outcomes = {
            share: icl._item_outcomes(
                task, prepared, model, BYTES, torch.device("cpu"), 1024, None, share_prefix=share
            )  # fmt: skip
            for share in (True, False)
        }
        assert outcomes[True] == outcomes[False]
        assert sum(calls) == n_share
        if task.task_type == "multiple_choice":
            assert 0 < n_share <= len(items) and (seq == 256) == (n_share == len(items))
        else:
            assert n_share == 0  # schema's contexts differ; language modelling has one row
    a = icl.evaluate_task(model, BYTES, spec("multiple_choice", 2), mc_items(20), share_prefix=True)
    b = icl.evaluate_task(
        model, BYTES, spec("multiple_choice", 2), mc_items(20), share_prefix=False
    )
    assert (a.accuracy, a.n) == (b.accuracy, b.n)


def test_padded_vocabulary_ids_never_win():
    class PadLover(OracleModel):
        def forward(self, idx):
            logits = super().forward(idx)
            return torch.cat([logits, torch.full((*idx.shape, 5), 99.0)], dim=-1)  # padded ids

    items = lm_items(10)
    model = PadLover(gold_tails("language_modeling", items))
    assert icl.evaluate_task(model, BYTES, spec("language_modeling"), items).accuracy == 1.0


def test_generation_on_a_real_gpt_runs_through_the_engine():
    items = gen_items(6)
    result = icl.evaluate_task(tiny_gpt(), BYTES, spec("generation_task_with_answers", 1), items)
    assert result.n == 6 and 0.0 <= result.accuracy <= 1.0


def test_categories_are_averaged_first():
    items = [{"query": f"q{i}", "choices": [f"a{i}", f"b{i}"], "gold": 1, "category": c}
             for i, c in enumerate(["x"] * 9 + ["y"])]  # fmt: skip
    tails = {" b0": 3, " b9": 3}  # right on one item of x's nine and on y's only one
    task = spec("multiple_choice", has_categories=True)
    r = icl.evaluate_task(OracleModel(tails), BYTES, task, items)
    assert r.categories == {"x": pytest.approx(1 / 9), "y": 1.0}
    assert r.accuracy == pytest.approx((1 / 9 + 1.0) / 2) and r.correct == 2


def test_subsample_is_seeded_sorted_and_capped():
    assert icl.subsample(5, None) == [0, 1, 2, 3, 4] and icl.subsample(5, 10) == list(range(5))
    s = icl.subsample(100, 10)
    assert s == icl.subsample(100, 10) and len(s) == 10 and s == sorted(s)


# --- the bundle ----------------------------------------------------------------------------------


def write_bundle(
    root: Path,
    tasks: dict[str, tuple[str, int]],
    n_items: int = 8,
    uris: dict[str, str] | None = None,
    write_yaml: bool = True,
) -> Path:
    """A bundle in the Mosaic schema: core.yaml, eval_meta_data.csv, eval_data/<cat>/<task>.jsonl."""
    entries, csv_lines = (
        [],
        ["Eval Task,Task Category,Task Type,#shots,#datapoints,Random baseline"],
    )
    for label, (kind, shots) in tasks.items():
        uri = (uris or {}).get(label, f"fixture/{label}.jsonl")
        path = root / "eval_data" / uri
        path.parent.mkdir(parents=True, exist_ok=True)
        items = MAKERS[kind](n_items)
        for i, it in enumerate(items):
            it["category"] = f"sub{i % 2}"
        path.write_text("".join(json.dumps(it) + "\n" for it in items))
        entry = {"label": label, "dataset_uri": uri, "num_fewshot": [shots], "icl_task_type": kind}
        if kind == "multiple_choice":
            entry["continuation_delimiter"] = "\nAnswer: "
        entries.append(entry)
        base = aggregate.CORE_BASELINES_V1.get(label, 0)
        csv_lines.append(f"{label},fixture,{kind},{shots},{n_items},{base}")
    if write_yaml:
        (root / "core.yaml").write_text(yaml.safe_dump({"icl_tasks": entries}))
    (root / "eval_meta_data.csv").write_text("\n".join(csv_lines) + "\n")
    return root


def test_bundle_reader_and_its_errors(tmp_path):
    root = write_bundle(
        tmp_path / "b", {"copa": ("multiple_choice", 0), "squad": ("language_modeling", 2)}
    )
    bundle = open_bundle(root)
    tasks = bundle.tasks("core.yaml")
    assert [t.label for t in tasks] == ["copa", "squad"]
    assert tasks[0].continuation_delimiter == "\nAnswer: " and tasks[1].num_fewshot == 2
    assert bundle.baselines["copa"] == 0.5 and len(bundle.load_items(tasks[0])) == 8
    with pytest.raises(BundleError, match="does not exist"):
        open_bundle(tmp_path / "nowhere")
    with pytest.raises(BundleError, match="'cloze' is not one of"):
        spec("cloze")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"icl_tasks": [{"label": "x", "dataset_uri": "x", "num_fewshot": [0, 5],
                                                   "icl_task_type": "multiple_choice"}]}))  # fmt: skip
    with pytest.raises(BundleError, match="several shot counts"):
        read_task_yaml(bad)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"query": "q", "choices": ["a"], "gold": 3}\n')
    with pytest.raises(BundleError, match="broken.jsonl:1: gold 3"):
        read_jsonl(broken, spec("multiple_choice"))
    broken.write_text('{"context": "q"}\n')
    with pytest.raises(BundleError, match="needs continuation"):
        read_jsonl(broken, spec("language_modeling"))


def test_download_unpacks_atomically_and_rejects_a_bad_archive(tmp_path):
    src = write_bundle(tmp_path / "src" / "eval_bundle", {"copa": ("multiple_choice", 0)})
    archive = tmp_path / "eval_bundle.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in src.rglob("*"):
            z.write(f, f.relative_to(src.parent))
    dest = tmp_path / "cache" / "eval_bundle"
    assert download_bundle(dest, url=archive.as_uri()) == dest
    assert (dest / "core.yaml").is_file() and (
        dest / "eval_data" / "fixture" / "copa.jsonl"
    ).is_file()
    assert [p.name for p in dest.parent.iterdir()] == ["eval_bundle"]  # no temporary left
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../../escaped.txt", "x")
    with pytest.raises(BundleError, match="outside the bundle"):
        download_bundle(tmp_path / "other", url=evil.as_uri())
    assert not (tmp_path / "other").exists()
    with pytest.raises(BundleError, match="could not download"):
        download_bundle(tmp_path / "third", url=(tmp_path / "absent.zip").as_uri())


def test_core_suite_refuses_a_bundle_missing_a_task(tmp_path):
    tasks = dict(aggregate.CORE_TASKS)
    tasks.pop("coqa")
    root = write_bundle(tmp_path / "b", tasks, n_items=3)
    with pytest.raises(aggregate.MissingTaskError, match="coqa"):
        evaluate(tiny_gpt(), BYTES, "core", root)


def test_cli_evaluates_core_on_a_checkpoint_and_writes_json(tmp_path, capsys):
    import dataclasses

    from nanogpt.evals.cli import main

    model = tiny_gpt(seq=256)
    cfg = dataclasses.asdict(model.config)
    run = tmp_path / "run"
    step = run / "step_000001"
    step.mkdir(parents=True)
    torch.save(model.state_dict(), step / ckpt.MODEL_FILE)
    atomic.write_json(step / ckpt.META_FILE, {"model_config": cfg, "tokenizer": "bytes", "step": 1})
    root = write_bundle(tmp_path / "bundle", aggregate.CORE_TASKS, n_items=4)
    out = tmp_path / "res" / "core.json"
    code = main(["--checkpoint", str(run), "--suite", "core", "--bundle", str(root), "--device",
                 "cpu", "--json", str(out), "--limit", "3"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "| **core** |" in printed and "DCLM's fixed" in printed
    result = json.loads(out.read_text())
    assert result["suite"] == "core" and set(result["tasks"]) == set(aggregate.CORE_TASKS)
    assert all(t["n"] == 3 for t in result["tasks"].values())
    assert result["baselines"] == "dclm-v2" and result["step"] == 1
    mean = sum(t["centered"] for t in result["tasks"].values()) / 22
    assert result["score"] == pytest.approx(mean)
    code = main(["--checkpoint", str(run), "--suite", "core", "--bundle", str(tmp_path / "none")])
    assert code == 1 and "does not exist" in capsys.readouterr().err
    assert main(["--checkpoint", str(run), "--limit", "0"]) == 2


def test_gauntlet_suite_runs_the_built_in_v03_tasks_on_a_real_gpt(tmp_path):
    from nanogpt.evals.bundle import GAUNTLET_V03_TASKS

    tasks = {t.label: (t.task_type, t.num_fewshot) for t in GAUNTLET_V03_TASKS}
    uris = {t.label: t.dataset_uri for t in GAUNTLET_V03_TASKS}
    root = write_bundle(tmp_path / "b", tasks, n_items=3, uris=uris, write_yaml=False)
    out = evaluate(tiny_gpt(seq=512), BYTES, "gauntlet", root)
    assert len(out["tasks"]) == 31 and len(out["categories"]) == 5
    assert out["score"] == pytest.approx(sum(out["categories"].values()) / 5)
    assert set(out["tasks"]["mmlu"]["categories"]) == {"sub0", "sub1"}
    (root / "eval_data" / uris["svamp"]).unlink()
    with pytest.raises(BundleError, match="symbolic_problem_solving/svamp.jsonl"):
        evaluate(tiny_gpt(seq=512), BYTES, "gauntlet", root)


def test_training_hook_returns_flat_metrics_and_restores_train_mode(tmp_path):
    from nanogpt.evals.training import TrainingEvals

    root = write_bundle(tmp_path / "b", aggregate.CORE_TASKS, n_items=5)
    evals = TrainingEvals(root, "core", max_per_task=2)
    model = tiny_gpt(seq=256).train()
    metrics = evals(model, BYTES, "cpu")
    assert model.training
    assert set(metrics) == {"core", "eval/core_s"} | {f"eval/{t}" for t in aggregate.CORE_TASKS}
    centred = [metrics[f"eval/{t}"] for t in aggregate.CORE_TASKS]
    assert metrics["core"] == pytest.approx(sum(centred) / 22)
    assert evals(model, BYTES, "cpu")["core"] == metrics["core"]  # the same subsample each call
    with pytest.raises(ValueError, match="training-time suite"):
        TrainingEvals(root, "ifeval")


def test_training_hook_runs_chatcore_through_its_module(tmp_path, monkeypatch):
    import sys
    import types

    from nanogpt.evals.training import TrainingEvals

    def run_chatcore(model, tokenizer, meta, data_dir, *, limit, device):
        assert (data_dir, limit, meta) == (tmp_path, 7, {"step": 9}) and not model.training
        tasks = {"gsm8k": {"accuracy": 0.1, "centered": 0.1, "n": 7}}
        return {"suite": "chatcore", "tasks": tasks, "score": 0.1, "notes": []}

    from nanogpt.evals.chatcore import task_file

    fake = types.ModuleType("nanogpt.evals.chatcore")
    fake.run_chatcore = run_chatcore  # type: ignore[attr-defined]
    fake.TASKS, fake.task_file = ("gsm8k",), task_file  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nanogpt.evals.chatcore", fake)
    with pytest.raises(FileNotFoundError, match="gsm8k.jsonl is missing"):  # checked up front
        TrainingEvals(tmp_path, "chatcore", max_per_task=7)
    (tmp_path / "gsm8k.jsonl").write_text("{}\n")
    model = tiny_gpt().train()
    metrics = TrainingEvals(tmp_path, "chatcore", max_per_task=7)(model, BYTES, "cpu", {"step": 9})
    assert metrics["chatcore"] == 0.1 and metrics["eval/gsm8k"] == 0.1 and model.training


def test_chat_suites_are_called_lazily_or_named_when_absent(tmp_path, monkeypatch):
    import sys
    import types

    calls = {}

    def run_chatcore(model, tokenizer, meta, data_dir, *, limit, device):
        calls["args"] = (meta, data_dir, limit, device)
        return {"suite": "chatcore", "tasks": {}, "score": 0.5, "notes": []}

    fake = types.ModuleType("nanogpt.evals.chatcore")
    fake.run_chatcore = run_chatcore  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nanogpt.evals.chatcore", fake)
    out = evaluate(None, BYTES, "chatcore", None, meta={"step": 3}, data_dir=tmp_path, limit=4)  # type: ignore[arg-type]
    assert out["score"] == 0.5 and calls["args"] == ({"step": 3}, tmp_path, 4, "cpu")
    monkeypatch.setitem(sys.modules, "nanogpt.evals.ifeval", None)  # an import that fails
    with pytest.raises(RuntimeError, match="needs nanogpt.evals.ifeval"):
        evaluate(None, BYTES, "ifeval", None, data_dir=tmp_path)  # type: ignore[arg-type]


def _rank_worker(rank: int, world: int, store: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=world
    )
    try:
        items = mc_items(11)  # not a multiple of the world size
        result = icl.evaluate_task(tiny_gpt(seed=2), BYTES, spec("multiple_choice", 2), items)
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps([result.accuracy, result.n]))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_items_strided_over_two_ranks_give_the_single_process_result(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_rank_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    alone = icl.evaluate_task(tiny_gpt(seed=2), BYTES, spec("multiple_choice", 2), mc_items(11))
    for rank in range(2):
        accuracy, n = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert (accuracy, n) == (alone.accuracy, alone.n) == (accuracy, 11)


class _RankZeroSuite:
    """A stand-in for a rank-0 suite (ChatCORE): only rank 0 may run it."""

    suite, distributed = "chatcore", False

    def __call__(self, model, tokenizer, device, meta):
        assert torch.distributed.get_rank() == 0, "a rank-0 suite ran on another rank"
        return {"chatcore": 0.125 + meta["step"], "eval/gsm8k": 0.5}


def _schedule_worker(rank: int, world: int, store: str, out_dir: str) -> None:
    from nanogpt.evals.training import TrainingEvals, run_due

    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=world
    )
    try:
        core = TrainingEvals(Path(out_dir) / "bundle", "core", max_per_task=3, distributed=True)
        schedule = [(2, core), (3, _RankZeroSuite())]
        got = {
            step: run_due(schedule, step, step == 4, tiny_gpt(seed=2, seq=256), BYTES, {"step": step})
            for step in (1, 2, 3, 4)
        }  # fmt: skip
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(got))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_the_training_schedule_gives_every_rank_the_same_scores(tmp_path):
    import torch.multiprocessing as mp

    from nanogpt.evals.training import TrainingEvals

    write_bundle(tmp_path / "bundle", aggregate.CORE_TASKS, n_items=5)
    mp.spawn(_schedule_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]  # CORE strided and all-reduced, ChatCORE broadcast from rank 0
    got = ranks[0]
    assert got["1"] == {} and set(got["2"]) == set(got["4"]) - {"chatcore", "eval/gsm8k"}
    assert got["3"]["chatcore"] == 3.125 and "core" not in got["3"]
    alone = TrainingEvals(tmp_path / "bundle", "core", max_per_task=3)
    assert got["4"]["core"] == pytest.approx(alone(tiny_gpt(seed=2, seq=256), BYTES, "cpu")["core"])


@pytest.mark.slow  # 3-10 s on an idle 2-core CPU (2026-12-03): out of make test-fast
def test_the_benchmark_runs_on_a_cpu_and_both_modes_agree(tmp_path, capsys):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "evals.py"
    module_spec = importlib.util.spec_from_file_location("bench_evals", path)
    bench = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(bench)  # type: ignore[union-attr]
    out = tmp_path / "rows.json"
    args = ["--device", "cpu", "--depth", "1", "--items", "4", "--seq-len", "64", "--threads",
            "1", "--batch-tokens", "1024", "--json", str(out)]  # fmt: skip
    assert bench.main(args) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["task_type"] for r in rows] == ["multiple_choice", "schema", "language_modeling"]
    assert all(r["agreement"] == 1.0 and r["batched_items_per_s"] > 0 for r in rows)
    assert all(r["agreement_plain"] == 1.0 and r["batched_plain_items_per_s"] > 0 for r in rows)
    assert "| speed-up |" in capsys.readouterr().out
