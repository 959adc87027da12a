"""Generation: a preallocated KV cache, prefill then decode, batches of different prompts.

A batch holds prompts of different lengths **left-padded** to one width: row b has ``pad[b]``
padding columns, so every row's last prompt token sits in the same column and each decode step
writes one column for all rows. Each row's rotary positions start at 0 at its first real token
(position = column - pad[b]) and the attention mask hides its padding, so a row generates what
it would generate alone. (nanochat's engine prefills one prompt and copies it to every row; this
one serves different prompts at once.)

Decode attends over the whole preallocated cache under a mask, so every step has the same shapes:
on a GPU the step is captured once in a CUDA graph and replayed (``cuda_graphs``), which removes
the per-kernel launch cost that dominates small-batch decoding. Rows stop on their own stop
tokens (``<|im_end|>`` and ``<|endoftext|>`` by default); the batch ends when every row has.
"""

from __future__ import annotations

import codecs
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from nanogpt.model import GPT
from nanogpt.sampling import SamplingParams, make_generator, sample
from nanogpt.tokenizer import AnyTokenizer


class KVCache:
    """Keys and values of every layer for ``batch_size`` rows of ``max_len`` columns.

    ``pad`` (B,) is each row's left padding; ``pos`` is the next column to write, a 0-d tensor
    so that a captured CUDA graph reads and advances it on the device.
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
    ) -> None:
        shape = (n_layer, batch_size, n_head, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.pad = (
            torch.zeros(batch_size, dtype=torch.long, device=device)
            if pad is None
            else pad.to(device=device, dtype=torch.long)
        )
        self.pos = torch.zeros((), dtype=torch.long, device=device)
        self._columns = torch.arange(max_len, device=device)

    def positions(self, T: int) -> torch.Tensor:
        """Rotary positions (B, T) of the next T columns; padding columns get 0 (masked)."""
        cols = self.pos + self._columns[:T]
        return (cols[None, :] - self.pad[:, None]).clamp(min=0)

    def attn_mask(self, T: int) -> torch.Tensor:
        """(B, 1, T, max_len) bool: query column i sees key column j if j <= i and j is not
        padding. A padding query sees itself, so no softmax row is empty (no NaN)."""
        query = (self.pos + self._columns[:T])[None, :, None]  # (1, T, 1)
        key = self._columns[None, None, :]  # (1, 1, S)
        real_key = key >= self.pad[:, None, None]  # (B, 1, S)
        mask = (key <= query) & (real_key | (key == query))
        return mask[:, None]

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, n_head, T, head_dim) at columns pos..pos+T-1; return the whole cache."""
        cols = self.pos + self._columns[: k.size(2)]
        self.k[layer].index_copy_(2, cols, k.to(self.k.dtype))
        self.v[layer].index_copy_(2, cols, v.to(self.v.dtype))
        return self.k[layer], self.v[layer]

    def advance(self, n_tokens: int) -> None:
        self.pos.add_(n_tokens)


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


class Engine:
    """Prefill and decode for one model and tokenizer.

    ``dtype`` defaults to bf16 on a GPU and fp32 on a CPU; ``cuda_graphs`` (default: on a GPU)
    replays the decode step as a CUDA graph.
    """

    def __init__(
        self,
        model: GPT,
        tokenizer: AnyTokenizer,
        dtype: torch.dtype | None = None,
        cuda_graphs: bool | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        on_gpu = self.device.type == "cuda"
        self.dtype = dtype or (torch.bfloat16 if on_gpu else torch.float32)
        self.cuda_graphs = on_gpu if cuda_graphs is None else (cuda_graphs and on_gpu)
        # Only ids the tokenizer can decode are sampled: the head's padding rows and any id the
        # model has beyond the tokenizer are cut off.
        self.vocab = min(model.config.vocab_size, tokenizer.n_vocab)
        self.stop_tokens = (tokenizer.im_end_id, tokenizer.eot_id)

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
        with torch.cuda.stream(side):  # warm-up outside the graph, as capture requires
            for _ in range(2):
                self._forward(tokens, cache)
                cache.pos.copy_(start)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            logits = self._forward(tokens, cache)
        cache.pos.copy_(start)  # capture ran the step once; the cache column is rewritten
        return _Graph(graph, tokens, logits)

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
        stops = torch.tensor(
            list(self.stop_tokens if stop_tokens is None else stop_tokens) or [-1],
            device=self.device,
        )
        max_len = self.check_lengths(prompts, max_new_tokens)
        gen = make_generator(params.seed, self.device)
        ids, pad = left_pad(prompts, self.tokenizer.eot_id)
        ids, pad = ids.to(self.device), pad.to(self.device)
        batch = ids.size(0)
        seen = None
        if params.repetition_penalty != 1.0:
            seen = torch.zeros((batch, self.vocab), dtype=torch.bool, device=self.device)
            real = torch.arange(ids.size(1), device=self.device)[None] >= pad[:, None]
            seen.scatter_(1, ids.clamp(max=self.vocab - 1), real)
        done = torch.zeros(batch, dtype=torch.bool, device=self.device)
        step = self._cached_steps(ids, pad, max_len) if use_cache else self._full_steps(prompts)
        logits = next(step)
        for _ in range(max_new_tokens):
            token = sample(logits, params, gen, seen)
            token = torch.where(done, torch.full_like(token, int(stops[0])), token)
            out = token.tolist()
            yield [None if d else t for t, d in zip(out, done.tolist())]
            if seen is not None:
                seen.scatter_(1, token[:, None], True)
            done |= torch.isin(token, stops)
            if bool(done.all()):
                return
            logits = step.send(token)

    def _cached_steps(self, ids: torch.Tensor, pad: torch.Tensor, max_len: int):
        model_cfg = self.model.config
        head_dim = model_cfg.n_embd // model_cfg.n_head
        cache = KVCache(
            model_cfg.n_layer, ids.size(0), model_cfg.n_head, head_dim, max_len,
            self.device, self.dtype, pad,
        )  # fmt: skip
        token = yield self._forward(ids, cache)  # prefill
        graph = self._capture(cache, ids.size(0)) if self.cuda_graphs else None
        while True:
            if graph is None:
                logits = self._forward(token[:, None], cache)
            else:
                graph.tokens.copy_(token[:, None])
                graph.graph.replay()
                logits = graph.logits.clone()
            token = yield logits

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
