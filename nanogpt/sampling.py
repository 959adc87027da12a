"""Choosing the next token from logits: temperature, top-k, top-p and a repetition penalty.

:class:`SamplingParams` validates its values once, with errors that name the field, so the CLI
and the server can hand user input to it directly. :func:`sample` works on a batch of logits
(B, V) and draws from a seeded ``torch.Generator``: the same seed gives the same tokens.

* temperature 0 is greedy (argmax), exactly; otherwise logits are divided by it;
* top-k keeps the k largest logits (ties at the k-th value cut by index, so exactly k remain);
* top-p keeps the smallest set of most likely tokens whose probability reaches p (the
  "nucleus", Holtzman et al. 2019, arXiv:1904.09751); the most likely token is always kept;
* the repetition penalty divides a positive logit of an already-seen token by the penalty and
  multiplies a negative one (CTRL, Keskar et al. 2019, arXiv:1909.05858).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

MAX_TEMPERATURE = 2.0


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.9  # 0 = greedy; at most 2
    top_k: int | None = 200  # keep the k most likely tokens; None = all
    top_p: float | None = None  # keep the smallest set with probability >= p; None = all
    repetition_penalty: float = 1.0  # > 1 discourages tokens already in the context; 1 = off
    seed: int | None = None  # seed of the sampling generator; None = a fresh random one

    def __post_init__(self) -> None:
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise ValueError(f"temperature must be a number, got {t!r}")
        if not 0 <= t <= MAX_TEMPERATURE:
            raise ValueError(f"temperature must be between 0 and {MAX_TEMPERATURE}, got {t}")
        k = self.top_k
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"top_k must be a whole number >= 1 (or None for all), got {k!r}")
        p = self.top_p
        if p is not None and (
            isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1
        ):
            raise ValueError(f"top_p must be in (0, 1] (or None for all), got {p!r}")
        r = self.repetition_penalty
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 1 <= r <= 10:
            raise ValueError(f"repetition_penalty must be between 1 (off) and 10, got {r!r}")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise ValueError(f"seed must be a whole number or None, got {self.seed!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device``, seeded with ``seed`` (or from the OS when None)."""
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    return gen


def apply_repetition_penalty(
    logits: torch.Tensor, seen: torch.Tensor, penalty: float
) -> torch.Tensor:
    """logits (B, V) float; seen (B, V) bool, True where the token is in the row's context."""
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Logits (B, V) with everything outside the top-k and the nucleus set to -inf."""
    vocab = logits.size(-1)
    if top_k is not None and top_k < vocab:
        values, indices = torch.topk(logits, top_k, dim=-1)
        kept = torch.full_like(logits, float("-inf"))
        logits = kept.scatter(-1, indices, values)
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs  # mass of the tokens ranked above
        drop_sorted = before >= top_p  # the first token has before = 0 and is always kept
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample(
    logits: torch.Tensor,
    params: SamplingParams,
    generator: torch.Generator | None = None,
    seen: torch.Tensor | None = None,
) -> torch.Tensor:
    """Next token ids (B,) from logits (B, V)."""
    logits = logits.float()
    if seen is not None:
        logits = apply_repetition_penalty(logits, seen, params.repetition_penalty)
    if params.greedy:
        return logits.argmax(dim=-1)
    logits = filter_logits(logits / params.temperature, params.top_k, params.top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
