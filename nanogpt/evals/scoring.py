"""Scoring rows of token ids for the in-context evaluator (nanogpt.evals.icl): the plain
batched path (:func:`score_rows`: rows sorted by length, packed to a token budget, the head only
at the scored positions) and the shared-prefix path for multiple choice (:func:`score_shared`:
the context once per item, then every choice against its keys and values). Both return each
row's mean continuation loss and whether greedy decoding matched every continuation token; the
module docstring of nanogpt.evals.icl says why and how they agree."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from nanogpt import dist


def _batches(
    lengths: Sequence[int], groups: Sequence[int], batch_tokens: int | None
) -> list[list[int]]:
    """Row indices per forward pass. ``batch_tokens=None``: one group (item) per pass."""
    if batch_tokens is None:
        out: dict[int, list[int]] = {}
        for row, g in enumerate(groups):
            out.setdefault(g, []).append(row)
        return list(out.values())
    order = sorted(range(len(lengths)), key=lambda r: -lengths[r])
    batches, current, width = [], [], 0
    for row in order:
        new_width = max(width, lengths[row])
        if current and new_width * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, new_width = [], lengths[row]
        current.append(row)
        width = new_width
    if current:
        batches.append(current)
    return batches


@contextlib.contextmanager
def _head_only_at(model: torch.nn.Module, b_idx: torch.Tensor, t_idx: torch.Tensor):
    """Run a GPT's output head only at the positions scored (a few percent of a batch's tokens).

    A forward pre-hook on ``lm_head`` hands it the hidden states at (b_idx, t_idx) as one
    (1, N, C) row, so the model returns (1, N, V) logits: the head, most of a small model's
    FLOPs and nearly all of the logits' memory, is spent where the scores are read. Models
    without an ``lm_head`` (the tests' fakes) give full logits; yields whether it applied.
    """
    head = getattr(model, "lm_head", None)
    if not isinstance(head, torch.nn.Linear):
        yield False
        return

    def select(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]):
        return (args[0][b_idx, t_idx][None],)

    handle = head.register_forward_pre_hook(select)
    try:
        yield True
    finally:
        handle.remove()


class _PrefixCache:
    """The model's ``kv_cache`` protocol for scoring many continuations after one context.

    Pass 1 runs the contexts (B, Tc), right-padded, with plain causal attention and keeps every
    layer's keys and values. Pass 2 runs each item's continuations as one row (B, n * Tn):
    continuation c sits in columns c * Tn .. (c + 1) * Tn - 1 with rotary positions restarting
    at its item's context end, and attends to the item's real context keys and to its own
    earlier tokens only. Each continuation thus sees exactly what it sees after its context in
    a row of its own, so the losses are the same (up to float rounding), while the context is
    computed once per item instead of once per choice.
    """

    def __init__(self, n_layer: int, ctx_len: torch.Tensor, max_len: int) -> None:
        self.max_len = max_len
        self.k: list[torch.Tensor | None] = [None] * n_layer
        self.v: list[torch.Tensor | None] = [None] * n_layer
        self.ctx_len = ctx_len  # (B,) on the device
        self.second = False
        self._pos: torch.Tensor | None = None
        self._mask: torch.Tensor | None = None

    def start_continuations(self, n_slots: int, slot_width: int) -> None:
        """Switch to pass 2: ``n_slots`` continuations of up to ``slot_width`` tokens per row."""
        device = self.ctx_len.device
        offset = torch.arange(slot_width, device=device).repeat(n_slots)  # (T,) within a slot
        slot = torch.arange(n_slots, device=device).repeat_interleave(slot_width)  # (T,)
        # Padding columns past a short item's end may run past the rotary table: clamp them.
        self._pos = (self.ctx_len[:, None] + offset[None, :]).clamp(max=self.max_len - 1)
        width = self.k[0].size(2)  # type: ignore[union-attr]
        sees_ctx = torch.arange(width, device=device)[None, :] < self.ctx_len[:, None]  # (B, Tc)
        T = slot.numel()
        own = (slot[:, None] == slot[None, :]) & (offset[None, :] <= offset[:, None])  # (T, T)
        ctx_part = sees_ctx[:, None, :].expand(-1, T, -1)  # (B, T, Tc)
        own_part = own[None].expand(ctx_part.size(0), -1, -1)  # (B, T, T)
        self._mask = torch.cat((ctx_part, own_part), dim=-1)[:, None]  # (B, 1, T, Tc + T)
        self.second = True

    def positions(self, T: int) -> torch.Tensor:
        if self.second:
            return self._pos  # type: ignore[return-value]
        return torch.arange(T, device=self.ctx_len.device)[None].expand(self.ctx_len.numel(), T)

    def attn_mask(self, T: int) -> torch.Tensor | None:
        return self._mask if self.second else None  # pass 1: causal (flash attention)

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.second:
            self.k[layer], self.v[layer] = k, v
            return k, v
        k_ctx, v_ctx = self.k[layer], self.v[layer]
        return torch.cat((k_ctx, k), dim=2), torch.cat((v_ctx, v), dim=2)  # type: ignore[arg-type]

    def advance(self, n_tokens: int) -> None:
        pass


def _pad_rows(rows: Sequence[Sequence[int]], width: int, pad_id: int) -> torch.Tensor:
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for b, row in enumerate(rows):
        if row:
            ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
    return ids


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _counts(owner: torch.Tensor, n: int) -> torch.Tensor:
    """How often each of 0..n-1 occurs in ``owner``, in float64, on its device. Not
    ``torch.bincount``: on CUDA that reads its output size back to the host, a sync per batch."""
    ones = torch.ones(owner.numel(), dtype=torch.float64, device=owner.device)
    return torch.zeros(n, dtype=torch.float64, device=owner.device).index_add_(0, owner, ones)


def can_share_prefix(model: torch.nn.Module) -> bool:
    """Whether ``model`` runs the prefix-shared path: a nanogpt GPT (its KV-cache protocol)."""
    from nanogpt.model import GPT

    return isinstance(getattr(model, "_orig_mod", model), GPT)


def _shared_layout(
    items: Sequence[Sequence[tuple[list[int], list[int]]]], slot_width: int, pad_id: int
) -> tuple[
    list[list[int]], list[int], list[int], list[int], list[int], list[int], list[int], list[int]
]:
    """Pass 2's rows (each item's continuations side by side, ``slot_width`` apart) and the
    scored tokens: first every row's first continuation token (predicted at its context's last
    position, pass 1: the item, its target, the row), then the rest (pass 2: item, position,
    target, row)."""
    conts: list[list[int]] = []
    first_src, first_tgt, owner, rest_b, rest_t, rest_tgt, rest_owner = [], [], [], [], [], [], []
    row_base = 0
    for b, rows in enumerate(items):
        row: list[int] = []
        for c, (_, cont) in enumerate(rows):
            first_src.append(b)
            first_tgt.append(cont[0])
            owner.append(row_base + c)
            for j in range(len(cont) - 1):
                rest_b.append(b)
                rest_t.append(c * slot_width + j)
                rest_tgt.append(cont[j + 1])
                rest_owner.append(row_base + c)
            row += cont[:-1] + [pad_id] * (slot_width - len(cont) + 1)
        conts.append(row)
        row_base += len(rows)
    return conts, first_src, first_tgt, owner, rest_b, rest_t, rest_tgt, rest_owner


@torch.no_grad()
def score_shared(
    model: torch.nn.Module,
    items: Sequence[Sequence[tuple[list[int], list[int]]]],
    *,
    vocab_size: int,
    device: torch.device,
    batch_tokens: int,
    pad_id: int,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per item, per row: mean continuation loss and greedy match, as :func:`score_rows` gives,
    for items whose rows all share one context: the context runs once per item (pass 1,
    batched across items up to ``batch_tokens`` context tokens), then all of the item's
    continuations in one row against its keys and values (pass 2, see :class:`_PrefixCache`).
    """
    for rows in items:
        if any(ctx != rows[0][0] for ctx, _ in rows):
            raise ValueError("score_shared: an item's rows have different contexts")
    gpt = getattr(model, "_orig_mod", model)
    n_layer = gpt.config.n_layer
    ctx_lens = [len(rows[0][0]) for rows in items]
    groups = list(range(len(items)))
    pending = []
    for batch in _batches(ctx_lens, groups, batch_tokens):
        B = len(batch)
        width = max(ctx_lens[i] for i in batch)
        ctx_ids = _pad_rows([items[i][0][0] for i in batch], width, pad_id)
        n_slots = max(len(items[i]) for i in batch)
        slot_width = max(len(c) - 1 for i in batch for _, c in items[i])
        layout = _shared_layout([items[i] for i in batch], slot_width, pad_id)
        conts, first_src, first_tgt, owner, rest_b, rest_t, rest_tgt, rest_owner = layout
        n_rows = len(owner)
        ctx_len_t = _to_device(torch.tensor([ctx_lens[i] for i in batch]), device)
        cache = _PrefixCache(n_layer, ctx_len_t, gpt.config.sequence_len)
        b1 = torch.arange(B, device=device)
        with dist.autocast(device), _head_only_at(gpt, b1, ctx_len_t - 1) as selected:
            last = gpt(_to_device(ctx_ids, device), kv_cache=cache)  # (1, B, V)
        last = last[0] if selected else last[b1, ctx_len_t - 1]
        picked = [last[_to_device(torch.tensor(first_src), device)]]
        targets = [torch.tensor(first_tgt)]
        if slot_width > 0:
            cache.start_continuations(n_slots, slot_width)
            cont_ids = _pad_rows(conts, n_slots * slot_width, pad_id)
            b2 = _to_device(torch.tensor(rest_b, dtype=torch.long), device)
            t2 = _to_device(torch.tensor(rest_t, dtype=torch.long), device)
            with dist.autocast(device), _head_only_at(gpt, b2, t2) as selected:
                out = gpt(_to_device(cont_ids, device), kv_cache=cache)
            picked.append(out[0] if selected else out[b2, t2])
            targets.append(torch.tensor(rest_tgt, dtype=torch.long))
        logits = torch.cat(picked)[:, :vocab_size].float()
        tgt = _to_device(torch.cat(targets), device)
        own = _to_device(torch.tensor(owner + rest_owner), device)
        token_loss = F.cross_entropy(logits, tgt, reduction="none").double()
        miss = (logits.argmax(dim=-1) != tgt).long()
        sums = torch.zeros(n_rows, dtype=torch.float64, device=device).index_add_(
            0, own, token_loss
        )
        misses = torch.zeros(n_rows, dtype=torch.long, device=device).index_add_(0, own, miss)
        n_tok = _counts(own, n_rows)
        pending.append((batch, sums / n_tok, misses == 0))  # no host sync until the end
    mean_loss: list[torch.Tensor] = [torch.empty(0)] * len(items)
    all_match: list[torch.Tensor] = [torch.empty(0)] * len(items)
    for batch, loss, match in pending:
        loss, match = loss.cpu(), match.cpu()
        start = 0
        for i in batch:
            end = start + len(items[i])
            mean_loss[i], all_match[i] = loss[start:end], match[start:end]
            start = end
    return mean_loss, all_match


@torch.no_grad()
def score_rows(
    model: torch.nn.Module,
    rows: Sequence[tuple[list[int], list[int]]],
    groups: Sequence[int],
    *,
    vocab_size: int,
    pad_id: int,
    device: torch.device,
    batch_tokens: int | None,
    full_head: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: mean loss over the continuation, and whether greedy decoding reproduces it.

    ``batch_tokens``: padded tokens per forward pass; None: one group (item) per pass.
    ``full_head``: compute the logits at every position (the reference; slower).
    """
    lengths = [len(c) + len(x) for c, x in rows]
    mean_loss = torch.empty(len(rows), dtype=torch.float64)
    all_match = torch.empty(len(rows), dtype=torch.bool)
    pending = []
    for batch in _batches(lengths, groups, batch_tokens):
        width = max(lengths[r] for r in batch)
        ids = _pad_rows([rows[r][0] + rows[r][1] for r in batch], width, pad_id)
        b_idx, t_idx, row_of = [], [], []
        for b, r in enumerate(batch):
            ctx, cont = rows[r]
            # Position t predicts token t + 1: the continuation's tokens are predicted from
            # positions len(ctx) - 1 .. len(ctx) + len(cont) - 2.
            b_idx += [b] * len(cont)
            t_idx += range(len(ctx) - 1, len(ctx) + len(cont) - 1)
            row_of += [b] * len(cont)
        ids = _to_device(ids, device)
        b_t = _to_device(torch.tensor(b_idx), device)
        t_t = _to_device(torch.tensor(t_idx), device)
        head = contextlib.nullcontext(False) if full_head else _head_only_at(model, b_t, t_t)
        with dist.autocast(device), head as selected:
            logits = model(ids)  # (B, T, V), or (1, N, V) at the continuation positions
        picked = logits[0] if selected else logits[b_t, t_t]
        # Only real ids compete: the head's padding rows (and ids past the tokenizer) are cut.
        picked = picked[:, :vocab_size].float()  # (N, V)
        targets = ids[b_t, t_t + 1]
        token_loss = F.cross_entropy(picked, targets, reduction="none").double()
        miss = (picked.argmax(dim=-1) != targets).long()
        owner = _to_device(torch.tensor(row_of), device)
        n_tok = _counts(owner, len(batch))
        zeros = torch.zeros(len(batch), dtype=torch.float64, device=device)
        sums = zeros.index_add_(0, owner, token_loss)
        misses = torch.zeros(len(batch), dtype=torch.long, device=device).index_add_(0, owner, miss)
        pending.append((batch, sums / n_tok, misses == 0))  # no host sync until the end
    for batch, loss, match in pending:
        mean_loss[batch] = loss.cpu()
        all_match[batch] = match.cpu()
    return mean_loss, all_match
