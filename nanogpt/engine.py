"""Generation: a preallocated KV cache, prefill then decode, batches of different prompts.

A batch holds prompts of different lengths **left-padded** to one width: row b has ``pad[b]``
padding columns, so every row's last prompt token sits in the same column and each decode step
writes one column for all rows. Each row's rotary positions start at 0 at its first real token
(position = column - pad[b]) and the attention mask hides its padding, so a row generates what
it would generate alone. (nanochat's engine prefills one prompt and copies it to every row; this
one serves different prompts at once.)

Prefill writes the prompt's keys and values into the empty cache and attends over the prompt's
own keys only: causal flash attention when no row is padded, a (B, 1, T, T) mask when rows have
different lengths. Decode attends over the whole preallocated cache under a mask, so every step
has the same shapes: on a GPU the step is captured once in a CUDA graph and replayed
(``cuda_graphs``), which removes the per-kernel launch cost that dominates small-batch decoding,
and ``compile=True`` has torch.compile fuse the step's kernels first. The cache and its graph are
kept per (batch, length bucket) and reused by later requests of that shape, so neither the
allocation nor the capture nor the compilation is paid per request. Rows stop on their own stop
tokens (``<|im_end|>`` and ``<|endoftext|>`` by default); the batch ends when every row has.
"""

from __future__ import annotations

import codecs
import contextlib
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from nanogpt.model import GPT
from nanogpt.sampling import SamplingParams, make_generator, sample
from nanogpt.tokenizer import AnyTokenizer


class KVCache:
    """Keys and values of every layer for ``batch_size`` rows of ``max_len`` columns.

    ``pad`` (B,) is each row's left padding; ``pos`` is the next column to write, a 0-d tensor
    so that a captured CUDA graph reads and advances it on the device. While the cache is empty
    (before the first chunk), :meth:`update` hands back the chunk's own keys and values and
    :meth:`attn_mask` gives None (causal) or the padding mask over the chunk alone, so a prefill
    costs attention over the prompt, not over ``max_len`` columns. ``causal_prefill=False``
    keeps the masked attention over the whole cache for prefill too (the benchmark's A/B).
    """

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_head: int,
        head_dim: int,
        max_len: int,
        device: torch.device | str,
        dtype: torch.dtype = torch.float32,
        pad: torch.Tensor | None = None,
        causal_prefill: bool = True,
    ) -> None:
        # One tensor per layer, not one (n_layer, ...) tensor: torch.compile writes a decode
        # step's column into a whole tensor in place, but a write through a view of a larger
        # one becomes a copy of the whole cache every step.
        shape = (batch_size, n_head, max_len, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.max_len = max_len
        self.pad = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.pos = torch.zeros((), dtype=torch.long, device=device)
        self._columns = torch.arange(max_len, device=device)
        self.causal_prefill = causal_prefill
        self.reset(pad)

    def reset(self, pad: torch.Tensor | None = None) -> None:
        """Empty the cache for a new batch with left padding ``pad`` (B,), in place: tensors
        keep their storage, so a CUDA graph captured on this cache stays valid. Old keys and
        values are left where they are; the mask never lets a query see them."""
        pad_cpu = torch.zeros(self.pad.shape, dtype=torch.long) if pad is None else pad.cpu()
        if pad_cpu.shape != self.pad.shape:
            raise ValueError(
                f"pad has shape {tuple(pad_cpu.shape)}; this cache holds {self.pad.numel()} rows"
            )
        self.pad.copy_(pad_cpu)
        self.pos.zero_()
        self.ragged = bool((pad_cpu != 0).any())  # host-side, so prefill needs no device sync
        self.empty = True

    def positions(self, T: int) -> torch.Tensor:
        """Rotary positions (B, T) of the next T columns; padding columns get 0 (masked)."""
        cols = self.pos + self._columns[:T]
        return (cols[None, :] - self.pad[:, None]).clamp(min=0)

    def _prefilling(self) -> bool:
        return self.empty and self.causal_prefill

    def attn_mask(self, T: int) -> torch.Tensor | None:
        """(B, 1, T, S) bool: query column i sees key column j if j <= i and j is not padding.
        A padding query sees itself, so no softmax row is empty (no NaN). S is ``max_len``,
        or T for a prefill into the empty cache, where None means plain causal attention."""
        if self._prefilling() and not self.ragged:
            return None
        query = (self.pos + self._columns[:T])[None, :, None]  # (1, T, 1)
        key = self._columns[None, None, : T if self._prefilling() else self.max_len]  # (1, 1, S)
        real_key = key >= self.pad[:, None, None]  # (B, 1, S)
        mask = (key <= query) & (real_key | (key == query))
        return mask[:, None]

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, n_head, T, head_dim) at columns pos..pos+T-1; return what to attend
        over: the whole cache, or k and v themselves for a prefill into the empty cache."""
        cols = self.pos + self._columns[: k.size(2)]
        k_cache, v_cache = self.k[layer], self.v[layer]
        k_cache[:, :, cols] = k.to(k_cache.dtype)  # index_put_, in place under torch.compile too
        v_cache[:, :, cols] = v.to(v_cache.dtype)
        if self._prefilling():
            return k, v
        return k_cache, v_cache

    def advance(self, n_tokens: int) -> None:
        self.pos.add_(n_tokens)
        self.empty = False


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T_max) ids with each prompt right-aligned, and each row's padding (B,)."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        if prompt:
            ids[row, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
    pad = torch.tensor([width - len(p) for p in prompts], dtype=torch.long)
    return ids, pad


class TextStream:
    """Token ids in, text out, never splitting a multi-byte UTF-8 character."""

    def __init__(self, tokenizer: AnyTokenizer) -> None:
        self.tokenizer = tokenizer
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def token_bytes(self, token: int) -> bytes:
        tok = self.tokenizer
        if hasattr(tok, "enc"):
            return tok.enc.decode_single_token_bytes(token)
        return bytes([token]) if token < 256 else tok.decode([token]).encode()

    def push(self, token: int) -> str:
        return self._decoder.decode(self.token_bytes(token))

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    tokens: torch.Tensor  # (B, 1) static input
    logits: torch.Tensor  # (B, V) static output


@dataclass
class _Slot:
    """A cache kept for requests of one (batch, length bucket), with its decode graph."""

    cache: KVCache
    graph: _Graph | None = None
    busy: bool = False


LENGTH_BUCKET = 256  # cache lengths are rounded up to this, so a few shapes serve every request
COMPILE_CHOICES = ("auto", "true", "false")


def resolve_compile(choice: str | bool, device: torch.device | str) -> bool:
    """The ``--compile auto|true|false`` of the chat CLI and the server, for one device.

    ``auto`` compiles on CUDA only: there the compiled step captured in the CUDA graph decodes
    about twice as fast (docs/benchmarks.md), while on a CPU or MPS the compile costs more than
    it saves. ``true``/``false`` (or a bool) force it either way.
    """
    if isinstance(choice, bool):
        return choice
    value = str(choice).strip().lower()
    if value not in COMPILE_CHOICES:
        raise ValueError(f"compile must be one of {', '.join(COMPILE_CHOICES)}, got {choice!r}")
    if value == "auto":
        return torch.device(device).type == "cuda"
    return value == "true"


class Engine:
    """Prefill and decode for one model and tokenizer.

    ``dtype`` defaults to bf16 on a GPU and fp32 on a CPU; ``cuda_graphs`` (default: on a GPU)
    replays the decode step as a CUDA graph. ``compile=True`` compiles the decode step with
    torch.compile (inductor, ``dynamic=False``: the preallocated cache makes its shapes static);
    a string names another torch.compile backend (the CPU tests use ``"aot_eager"``). Prefill
    stays eager: its shapes change with every prompt. With graphs or compile, caches are kept
    for the ``cache_slots`` most recent (batch, length bucket) shapes and reused, so capture
    and compilation happen once per shape (the first request of that shape pays for them).
    ``causal_prefill=False`` is the old prefill (masked attention over the whole cache), kept
    for the benchmark's A/B.

    ``compile`` defaults to False here, for library use (tests, notebooks, a CPU): the first
    request of each shape would otherwise wait for a compile. The chat CLI and the server
    default to ``--compile auto`` (:func:`resolve_compile`: on for CUDA), and the server calls
    :meth:`warm_up` at start-up so that its first user does not pay for it.
    """

    def __init__(
        self,
        model: GPT,
        tokenizer: AnyTokenizer,
        dtype: torch.dtype | None = None,
        cuda_graphs: bool | None = None,
        compile: bool | str = False,
        cache_slots: int = 4,
        causal_prefill: bool = True,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        on_gpu = self.device.type == "cuda"
        self.dtype = dtype or (torch.bfloat16 if on_gpu else torch.float32)
        self.cuda_graphs = on_gpu if cuda_graphs is None else (cuda_graphs and on_gpu)
        self.causal_prefill = causal_prefill
        # Only ids the tokenizer can decode are sampled: the head's padding rows and any id the
        # model has beyond the tokenizer are cut off.
        self.vocab = min(model.config.vocab_size, tokenizer.n_vocab)
        self.stop_tokens = (tokenizer.im_end_id, tokenizer.eot_id)
        self.compile = compile
        self._decode = self._forward
        if compile:
            # Each (batch, length bucket) shape is one more compiled graph of this one function,
            # for every engine in the process; under fullgraph, passing dynamo's recompile limit
            # (8 by default) is an error, so the limit is raised.
            from torch._dynamo import config as dynamo

            limit = "recompile_limit" if hasattr(dynamo, "recompile_limit") else "cache_size_limit"
            setattr(dynamo, limit, max(getattr(dynamo, limit), 64))
            backend = "inductor" if compile is True else str(compile)
            # fullgraph: a graph break would put host work (and syncs) inside the CUDA graph.
            self._decode = torch.compile(
                self._forward, backend=backend, dynamic=False, fullgraph=True
            )
        self.cache_slots = cache_slots
        self._slots: OrderedDict[tuple[int, int], _Slot] = OrderedDict()

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _forward(self, ids: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
        with self._autocast():
            logits = self.model(ids, kv_cache=cache, last_only=True)
        return logits[:, -1, : self.vocab].float()

    def _capture(self, cache: KVCache, batch: int) -> _Graph:
        tokens = torch.zeros((batch, 1), dtype=torch.long, device=self.device)
        start = cache.pos.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        # Warm-up (and compilation) outside the graph, as capture requires.
        with torch.cuda.stream(side):
            for _ in range(2):
                self._decode(tokens, cache)
                cache.pos.copy_(start)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            logits = self._decode(tokens, cache)
        cache.pos.copy_(start)  # capture ran the step once; the cache column is rewritten
        return _Graph(graph, tokens, logits)

    def _new_cache(self, batch: int, max_len: int, pad: torch.Tensor) -> KVCache:
        cfg = self.model.config
        return KVCache(
            cfg.n_layer, batch, cfg.n_head, cfg.n_embd // cfg.n_head, max_len, self.device,
            self.dtype, pad, causal_prefill=self.causal_prefill,
        )  # fmt: skip

    def _take_slot(self, batch: int, max_len: int, pad: torch.Tensor) -> _Slot:
        """A cache for this batch: a kept one of its shape (reset) when graphs or compile need
        static shapes, else a fresh one of exactly ``max_len`` columns."""
        if not (self.cuda_graphs or self.compile) or self.cache_slots < 1:
            return _Slot(self._new_cache(batch, max_len, pad))
        bucket = -(-max_len // LENGTH_BUCKET) * LENGTH_BUCKET
        key = (batch, min(bucket, self.model.config.sequence_len))  # >= max_len
        slot = self._slots.get(key)
        if slot is not None and slot.busy:  # a generation of this shape is still running
            return _Slot(self._new_cache(*key, pad))
        if slot is None:
            slot = _Slot(self._new_cache(*key, pad))
            self._slots[key] = slot
            for old_key in [k for k, s in self._slots.items() if not s.busy]:
                if len(self._slots) <= self.cache_slots:
                    break
                if old_key != key:
                    del self._slots[old_key]  # the least recently used shape goes first
        else:
            slot.cache.reset(pad)
        self._slots.move_to_end(key)
        slot.busy = True
        return slot

    def warm_up(self, max_len: int | None = None, batch: int = 1) -> float:
        """Generate two tokens for ``batch`` rows with a cache of ``max_len`` columns (default:
        the first length bucket; capped at the context), so that the decode step's compilation
        and CUDA-graph capture for that shape happen now, not on a user's request. The cache is
        kept in the engine's slots like any other. Returns the seconds it took."""
        context = self.model.config.sequence_len
        max_len = min(max_len or LENGTH_BUCKET, context)
        prompt = [self.tokenizer.eot_id] * max(1, max_len - 2)  # prompt + 2 tokens = max_len
        start = time.perf_counter()
        self.generate_batch(
            [prompt] * batch, min(2, context - len(prompt)), SamplingParams(temperature=0), []
        )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start

    def check_lengths(self, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> int:
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        total = max(len(p) for p in prompts) + max_new_tokens
        context = self.model.config.sequence_len
        if total > context:
            raise ValueError(
                f"the longest prompt ({max(len(p) for p in prompts)} tokens) plus "
                f"{max_new_tokens} new tokens is {total}, more than the model's context "
                f"({context}); shorten the prompt or ask for fewer tokens"
            )
        return total

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        max_new_tokens: int,
        params: SamplingParams | None = None,
        stop_tokens: Sequence[int] | None = None,
        use_cache: bool = True,
    ) -> Iterator[list[int | None]]:
        """Yield, per step, each row's new token (None once the row has stopped).

        A row's stop token is yielded, then the row is finished. ``use_cache=False`` recomputes
        the full forward pass every step (the reference, and the benchmark's baseline).
        """
        params = params or SamplingParams()
        stop_list = list(self.stop_tokens if stop_tokens is None else stop_tokens)
        stop_set = set(stop_list)
        stops = torch.tensor(stop_list or [-1], device=self.device)
        filler = (stop_list or [-1])[0]  # what a finished row's column gets
        max_len = self.check_lengths(prompts, max_new_tokens)
        gen = make_generator(params.seed, self.device)
        ids, pad_cpu = left_pad(prompts, self.tokenizer.eot_id)
        ids, pad = ids.to(self.device), pad_cpu.to(self.device)
        batch = ids.size(0)
        seen = None
        if params.repetition_penalty != 1.0:
            seen = torch.zeros((batch, self.vocab), dtype=torch.bool, device=self.device)
            real = torch.arange(ids.size(1), device=self.device)[None] >= pad[:, None]
            seen.scatter_(1, ids.clamp(max=self.vocab - 1), real)
        done = torch.zeros(batch, dtype=torch.bool, device=self.device)
        finished = [False] * batch  # the host's copy of ``done``
        step = self._cached_steps(ids, pad_cpu, max_len) if use_cache else self._full_steps(prompts)
        try:
            logits = next(step)
            for i in range(max_new_tokens):
                token = sample(logits, params, gen, seen)
                token = torch.where(done, torch.full_like(token, filler), token)
                out = token.tolist()  # the step's one device sync
                yield [None if d else t for t, d in zip(out, finished)]
                finished = [d or t in stop_set for t, d in zip(out, finished)]
                if all(finished) or i + 1 == max_new_tokens:
                    return  # no forward pass for a token nobody will read
                if seen is not None:
                    seen.scatter_(1, token[:, None], True)
                done |= torch.isin(token, stops)
                logits = step.send(token)
        finally:
            step.close()  # hands the cache back to the engine's slots

    def _cached_steps(self, ids: torch.Tensor, pad: torch.Tensor, max_len: int):
        slot = self._take_slot(ids.size(0), max_len, pad)
        try:
            token = yield self._forward(ids, slot.cache)  # prefill, eager
            while True:
                if self.cuda_graphs:
                    if slot.graph is None:
                        slot.graph = self._capture(slot.cache, ids.size(0))
                    slot.graph.tokens.copy_(token[:, None])
                    slot.graph.graph.replay()
                    logits = slot.graph.logits.clone()
                else:
                    logits = self._decode(token[:, None], slot.cache)
                token = yield logits
        finally:
            slot.busy = False

    def _full_steps(self, prompts: Sequence[Sequence[int]]):
        rows = [torch.tensor(list(p), dtype=torch.long, device=self.device) for p in prompts]
        same_length = len({len(p) for p in prompts}) == 1
        while True:
            if same_length:
                logits = self._forward(torch.stack(rows), None)
            else:  # no padding mask without a cache: each row alone
                logits = torch.cat([self._forward(r[None], None) for r in rows])
            token = yield logits
            rows = [torch.cat([r, t[None]]) for r, t in zip(rows, token)]

    def generate_batch(
        self,
        prompts: Sequence[Sequence[int]],
        max_new_tokens: int,
        params: SamplingParams | None = None,
        stop_tokens: Sequence[int] | None = None,
        use_cache: bool = True,
    ) -> list[list[int]]:
        """Each row's generated ids, its stop token included if it stopped on one."""
        out: list[list[int]] = [[] for _ in prompts]
        for step in self.generate(prompts, max_new_tokens, params, stop_tokens, use_cache):
            for row, token in enumerate(step):
                if token is not None:
                    out[row].append(token)
        return out

    def stream_text(
        self,
        prompt: Sequence[int],
        max_new_tokens: int,
        params: SamplingParams | None = None,
        stop_tokens: Sequence[int] | None = None,
    ) -> Iterator[str]:
        """Text pieces of one reply, stop token left out, whole UTF-8 characters only."""
        stream = TextStream(self.tokenizer)
        stops = set(self.stop_tokens if stop_tokens is None else stop_tokens)
        for (token,) in self.generate([prompt], max_new_tokens, params, stop_tokens):
            if token is None or token in stops:
                break
            piece = stream.push(token)
            if piece:
                yield piece
        tail = stream.flush()
        if tail:
            yield tail


def load_model(
    ckpt_dir: str,
    device: torch.device | str = "cpu",
    weights_dtype: torch.dtype | None = None,
) -> tuple[GPT, AnyTokenizer, dict]:
    """The model, tokenizer and meta of any nanogpt checkpoint (its meta.json names both).

    ``weights_dtype`` (e.g. bf16 for serving on a GPU) casts the parameters after loading; the
    rotary tables stay fp32. Without it the weights stay fp32 and bf16 autocast casts them at
    every decode step, which costs memory bandwidth at small batches.
    """
    from pathlib import Path

    from nanogpt import checkpoint as ckpt
    from nanogpt.config import ModelConfig
    from nanogpt.tokenizer import get_tokenizer

    path = Path(ckpt_dir)
    if not path.exists():
        raise ckpt.CheckpointError(f"{path} does not exist; pass a step_NNNNNN directory")
    if path.is_dir() and not (path / ckpt.META_FILE).is_file():
        latest = ckpt.find_latest(path)  # a run directory: its newest checkpoint
        if latest is not None:
            path = latest
    meta = ckpt.read_meta(path)
    fields = meta.get("model_config")
    if not isinstance(fields, dict):
        raise ckpt.CheckpointError(f"{path / ckpt.META_FILE} has no model_config; not a model")
    try:
        model_cfg = ModelConfig(**fields)
    except (TypeError, ValueError) as e:
        raise ckpt.CheckpointError(f"{path}: its model_config is not valid ({e})") from e
    tokenizer = get_tokenizer(meta.get("tokenizer", "gpt2"))
    model = GPT(model_cfg)
    try:
        ckpt.load_model(path, model, fields)
    except RuntimeError as e:
        if isinstance(e, ckpt.CheckpointError):
            raise
        raise ckpt.CheckpointError(f"{path / ckpt.MODEL_FILE} does not fit its config: {e}") from e
    model = model.to(device)
    if weights_dtype is not None:
        for param in model.parameters():
            param.data = param.data.to(weights_dtype)
    return model.eval(), tokenizer, {**meta, "path": str(path)}


def is_chat_model(meta: dict) -> bool:
    """Mid-trained checkpoints (mode mid-training or all) know the chat format.

    This is a guess from how the checkpoint was trained; :func:`prompt_format` lets the user
    override it (a pretrained model fine-tuned elsewhere, or a chat model used for raw text).
    """
    return meta.get("config", {}).get("mode", "pretraining") != "pretraining"


PROMPT_FORMATS = ("auto", "chat", "raw")


def prompt_format(meta: dict, requested: str = "auto") -> str:
    """``chat`` (``<|im_start|>role ... <|im_end|>`` turns) or ``raw`` (text continuation).

    ``auto`` follows :func:`is_chat_model`; ``chat`` or ``raw`` is the user's explicit choice.
    """
    if requested not in PROMPT_FORMATS:
        raise ValueError(f"format {requested!r} is not one of {', '.join(PROMPT_FORMATS)}")
    if requested != "auto":
        return requested
    return "chat" if is_chat_model(meta) else "raw"


def render_prompt(
    tokenizer: AnyTokenizer, messages: Sequence[dict[str, str]], fmt: str
) -> list[int]:
    """The prompt ids of a conversation in format ``chat`` or ``raw``.

    ``chat`` renders the turns and primes ``<|im_start|>assistant\n``; ``raw`` is a document
    (``<|endoftext|>`` then the contents joined by newlines) for a base model to continue.
    Either way message text is encoded as ordinary text: it can never produce a special token.
    """
    if fmt == "chat":
        return tokenizer.render_for_completion(messages)
    if fmt == "raw":
        return tokenizer.encode_document("\n".join(m["content"] for m in messages))
    raise ValueError(f"format {fmt!r} is not chat or raw")
