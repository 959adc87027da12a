"""The engine: cached decoding equals recomputing the full forward pass, batched rows equal
each row alone, stop tokens, UTF-8 streaming, checkpoint loading."""

import dataclasses

import pytest
import torch

from nanogpt import checkpoint as ckpt
from nanogpt.config import ModelConfig
from nanogpt.engine import Engine, KVCache, TextStream, is_chat_model, left_pad, load_model
from nanogpt.model import GPT
from nanogpt.sampling import SamplingParams
from nanogpt.tokenizer import get_tokenizer

GREEDY = SamplingParams(temperature=0.0, top_k=None)


def tiny_model(vocab: int = 259, seed: int = 0, seq: int = 64) -> GPT:
    torch.manual_seed(seed)
    model = GPT(ModelConfig(n_layer=2, n_head=2, n_embd=64, vocab_size=vocab, sequence_len=seq))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)  # every weight non-zero, logits far from uniform
    return model.eval()


def test_cache_chunks_give_the_same_logits_as_a_full_forward():
    model = tiny_model()
    idx = torch.randint(0, 259, (2, 20))
    full = model(idx)
    cache = KVCache(2, 2, 2, 32, max_len=32, device="cpu")
    parts = [model(idx[:, :9], kv_cache=cache), model(idx[:, 9:14], kv_cache=cache)]
    parts += [model(idx[:, t : t + 1], kv_cache=cache) for t in range(14, 20)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("length", [1, 5, 17, 40])
def test_greedy_with_the_cache_equals_recomputing_every_step(length):
    engine = Engine(tiny_model(), get_tokenizer("bytes"))
    prompt = torch.randint(0, 256, (length,), generator=torch.Generator().manual_seed(length))
    cached = engine.generate_batch([prompt.tolist()], 20, GREEDY, stop_tokens=[])
    full = engine.generate_batch([prompt.tolist()], 20, GREEDY, stop_tokens=[], use_cache=False)
    assert cached == full
    assert len(cached[0]) == 20


def test_cached_logits_are_close_to_the_full_forward_at_every_step():
    model = tiny_model()
    engine = Engine(model, get_tokenizer("bytes"))
    prompt = list(b"To be, or not")
    tokens = engine.generate_batch([prompt], 12, GREEDY, stop_tokens=[])[0]
    seq = torch.tensor([prompt + tokens])
    reference = model(seq)[0, len(prompt) - 1 : -1, :259]
    steps = engine._cached_steps(seq[:, : len(prompt)], torch.zeros(1, dtype=torch.long), 40)
    logits = [next(steps)]
    logits += [steps.send(torch.tensor([t])) for t in tokens[:-1]]
    torch.testing.assert_close(torch.cat(logits), reference, atol=1e-4, rtol=1e-4)


def test_batched_rows_of_different_lengths_equal_each_row_alone():
    engine = Engine(tiny_model(seed=3), get_tokenizer("bytes"))
    prompts = [list(b"a"), list(b"hello there"), list(b"The quick brown fox jumps"), [7, 8]]
    together = engine.generate_batch(prompts, 15, GREEDY, stop_tokens=[])
    alone = [engine.generate_batch([p], 15, GREEDY, stop_tokens=[])[0] for p in prompts]
    assert together == alone
    assert len({tuple(r) for r in together}) > 1, "rows should differ"


def test_prefill_logits_equal_the_full_forward_last_position():
    """Same-length rows take causal flash attention over the prompt; rows of different lengths
    a prompt-sized padding mask; both equal each row's own full forward pass."""
    model = tiny_model(seed=4)
    engine = Engine(model, get_tokenizer("bytes"))
    gen = torch.Generator().manual_seed(4)
    for lengths in ([9, 9, 9], [1, 12, 30, 5]):
        prompts = [torch.randint(0, 256, (n,), generator=gen).tolist() for n in lengths]
        ids, pad = left_pad(prompts, engine.tokenizer.eot_id)
        cache = KVCache(2, len(prompts), 2, 32, max_len=48, device="cpu", pad=pad)
        assert cache.attn_mask(ids.size(1)) is None or len(set(lengths)) > 1
        prefill = engine._forward(ids, cache)
        reference = torch.cat([model(torch.tensor([p]))[:, -1, :259] for p in prompts])
        torch.testing.assert_close(prefill, reference, atol=1e-4, rtol=1e-4)
        old = KVCache(2, len(prompts), 2, 32, max_len=48, device="cpu", pad=pad,
                      causal_prefill=False)  # fmt: skip
        torch.testing.assert_close(engine._forward(ids, old), prefill, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(cache.k, old.k, atol=1e-4, rtol=1e-4)  # the same keys


def test_batched_rows_of_different_lengths_with_the_cache_equal_recomputing():
    engine = Engine(tiny_model(seed=5), get_tokenizer("bytes"))
    prompts = [list(b"x"), list(b"a somewhat longer prompt"), list(b"mid length")]
    cached = engine.generate_batch(prompts, 18, GREEDY, stop_tokens=[])
    full = engine.generate_batch(prompts, 18, GREEDY, stop_tokens=[], use_cache=False)
    assert cached == full
    assert all(len(row) == 18 for row in cached)


def test_one_new_token_runs_the_prefill_only():
    model = tiny_model()
    calls = []
    handle = model.register_forward_hook(lambda module, args, out: calls.append(args[0].shape))
    try:
        Engine(model, get_tokenizer("bytes")).generate_batch([[5, 6, 7]], 1, GREEDY)
    finally:
        handle.remove()
    assert calls == [torch.Size([1, 3])]  # no decode step for a token nobody reads


def test_compiled_decode_with_kept_caches_equals_eager():
    """compile traces the whole decode step (fullgraph) and reuses a kept cache per shape;
    aot_eager checks the tracing and the in-place cache writes without a C++ compiler."""
    model, tok = tiny_model(seed=6), get_tokenizer("bytes")
    eager = Engine(model, tok)
    compiled = Engine(model, tok, compile="aot_eager")
    first = [list(b"abc"), list(b"a longer prompt")]
    second = [list(b"zz top"), list(b"q")]  # same batch and bucket: the kept cache, reset
    for prompts in (first, second, first):
        assert compiled.generate_batch(prompts, 12, GREEDY, stop_tokens=[]) == (
            eager.generate_batch(prompts, 12, GREEDY, stop_tokens=[])
        )
    assert list(compiled._slots) == [(2, 64)]  # one shape, one cache (rounded up, capped)


def test_warm_up_compiles_the_shape_a_later_request_reuses():
    model, tok = tiny_model(seed=7, seq=1024), get_tokenizer("bytes")
    engine = Engine(model, tok, compile="aot_eager")
    assert engine.warm_up() >= 0 and list(engine._slots) == [(1, 256)]  # the first bucket
    engine.warm_up(700)  # rounded like any request: the 768 bucket
    assert list(engine._slots) == [(1, 256), (1, 768)]
    slot = engine._slots[(1, 256)]
    prompt = list(b"after the warm-up")
    assert engine.generate_batch([prompt], 10, GREEDY, stop_tokens=[]) == (
        Engine(model, tok).generate_batch([prompt], 10, GREEDY, stop_tokens=[])
    )
    assert engine._slots[(1, 256)] is slot  # the warmed cache served it
    assert Engine(tiny_model(seq=64), tok).warm_up(4096) >= 0  # capped at the context


def test_kept_caches_are_bounded_and_not_shared_by_running_generations():
    model, tok = tiny_model(seq=1024), get_tokenizer("bytes")
    engine = Engine(model, tok, compile="aot_eager", cache_slots=2)
    for batch in (1, 2, 3):
        engine.generate_batch([[1, 2]] * batch, 3, GREEDY, stop_tokens=[])
    assert list(engine._slots) == [(2, 256), (3, 256)]  # the least recently used went
    a = engine.generate([[1, 2, 3]], 6, GREEDY, stop_tokens=[])
    b = engine.generate([[9, 8]], 6, GREEDY, stop_tokens=[])
    interleaved = [(next(a), next(b)) for _ in range(6)]
    alone_a = engine.generate_batch([[1, 2, 3]], 6, GREEDY, stop_tokens=[])[0]
    alone_b = engine.generate_batch([[9, 8]], 6, GREEDY, stop_tokens=[])[0]
    assert [x[0][0] for x in interleaved] == alone_a
    assert [x[1][0] for x in interleaved] == alone_b


def test_sampled_batched_rows_are_seeded_and_reproducible():
    engine = Engine(tiny_model(), get_tokenizer("bytes"))
    params = SamplingParams(temperature=1.0, top_k=50, seed=123)
    prompts = [list(b"abc"), list(b"longer prompt")]
    assert engine.generate_batch(prompts, 10, params) == engine.generate_batch(prompts, 10, params)


def test_each_row_stops_on_its_own_stop_token():
    engine = Engine(tiny_model(seed=1), get_tokenizer("bytes"))
    prompts = [list(b"one"), list(b"second prompt")]
    free = engine.generate_batch(prompts, 12, GREEDY, stop_tokens=[])
    stop = free[0][3]  # row 0's fourth token becomes a stop token
    stopped = engine.generate_batch(prompts, 12, GREEDY, stop_tokens=[stop])
    assert stopped[0] == free[0][: free[0].index(stop) + 1]
    for row, out in zip(free, stopped):
        assert out == (row[: row.index(stop) + 1] if stop in row else row)


def test_padded_vocabulary_ids_are_never_sampled():
    model = tiny_model(vocab=259)  # the head is padded past 259
    assert model.lm_head.weight.size(0) > 259
    with torch.no_grad():
        model.lm_head.weight[259:] = 100.0  # padding rows would win every argmax
    engine = Engine(model, get_tokenizer("bytes"))
    out = engine.generate_batch([[1, 2, 3]], 10, SamplingParams(temperature=2.0, top_k=None))
    assert all(0 <= t < 259 for t in out[0])


def test_too_long_a_request_is_a_clear_error():
    engine = Engine(tiny_model(seq=64), get_tokenizer("bytes"))
    with pytest.raises(ValueError, match="context"):
        engine.generate_batch([[1] * 60], 10)
    with pytest.raises(ValueError, match="at least one token"):
        engine.generate_batch([[]], 10)


def test_text_stream_never_splits_a_multibyte_character():
    tok = get_tokenizer("bytes")
    text = "héllo 世界 🙂!"
    stream = TextStream(tok)
    pieces = [stream.push(b) for b in tok.encode(text)] + [stream.flush()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    assert pieces[tok.encode(text).index(0xE4)] == ""  # first byte of 世 alone gives no text


def test_stream_text_of_a_gpt2_model_is_valid_utf8():
    tok = get_tokenizer("gpt2")
    engine = Engine(tiny_model(vocab=tok.n_vocab), tok)
    pieces = list(engine.stream_text(tok.encode("Bonjour"), 15, GREEDY, stop_tokens=[]))
    assert "".join(pieces) == "".join(pieces).encode("utf-8", "replace").decode("utf-8")


def test_load_model_reads_a_checkpoint_with_its_tokenizer(tmp_path):
    model = tiny_model()
    cfg = dataclasses.asdict(model.config)
    meta = {"model_config": cfg, "tokenizer": "bytes", "config": {"mode": "mid-training"}}
    path = ckpt.save(tmp_path, 5, model, torch.optim.SGD(model.parameters(), lr=0.1), meta)
    loaded, tok, got = load_model(str(tmp_path))  # a run directory: its latest checkpoint
    assert tok.name == "bytes" and is_chat_model(got) and got["path"] == str(path)
    idx = torch.randint(0, 259, (1, 8))
    torch.testing.assert_close(loaded(idx), model(idx))
    (path / "meta.json").write_text("{broken")
    with pytest.raises(ckpt.CheckpointError, match="not valid JSON"):
        load_model(str(path))


@pytest.mark.gpu
def test_cuda_graph_decode_equals_eager_decode():
    model = tiny_model().cuda()
    tok = get_tokenizer("bytes")
    prompts = [list(b"abc"), list(b"a longer prompt here")]
    eager = Engine(model, tok, dtype=torch.float32, cuda_graphs=False)
    graphs = Engine(model, tok, dtype=torch.float32, cuda_graphs=True)
    compiled = Engine(model, tok, dtype=torch.float32, cuda_graphs=True, compile=True)
    kwargs = dict(params=GREEDY, stop_tokens=[])
    reference = eager.generate_batch(prompts, 20, **kwargs)
    assert graphs.generate_batch(prompts, 20, **kwargs) == reference
    assert graphs.generate_batch(prompts, 20, **kwargs) == reference  # the kept graph, replayed
    assert compiled.generate_batch(prompts, 20, **kwargs) == reference


def test_load_model_can_cast_the_weights_for_serving(tmp_path):
    model = tiny_model()
    meta = {"model_config": dataclasses.asdict(model.config), "tokenizer": "bytes"}
    ckpt.save(tmp_path, 1, model, torch.optim.SGD(model.parameters(), lr=0.1), meta)
    loaded, tok, _ = load_model(str(tmp_path), weights_dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    assert loaded.rope_cos.dtype == torch.float32  # the rotary tables keep their precision
    engine = Engine(loaded, tok, dtype=torch.bfloat16)
    assert len(engine.generate_batch([[1, 2, 3]], 5, GREEDY, stop_tokens=[])[0]) == 5


def test_prompt_format_guesses_from_the_training_mode_and_can_be_overridden():
    from nanogpt.engine import prompt_format, render_prompt

    base, mid = {"config": {"mode": "pretraining"}}, {"config": {"mode": "all"}}
    assert prompt_format(base) == "raw" and prompt_format(mid) == "chat"
    assert prompt_format(base, "chat") == "chat" and prompt_format(mid, "raw") == "raw"
    with pytest.raises(ValueError, match="format 'json'"):
        prompt_format(mid, "json")
    tok = get_tokenizer("bytes")
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    assert render_prompt(tok, turns, "chat") == tok.render_for_completion(turns)
    assert render_prompt(tok, turns, "raw") == [tok.eot_id, *tok.encode("hi\nyo")]
