"""Validation loss (nats per token) and bits per byte, over a fixed set of batches and summed
over the ranks. Bits per byte divide by the UTF-8 bytes the target tokens stand for, so runs
with different tokenizers compare."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from nanogpt import dist
from nanogpt.tokenizer import get_tokenizer


def token_byte_lengths(device: torch.device, tokenizer: str = "gpt2") -> torch.Tensor:
    """UTF-8 bytes per token id; special tokens count 0 and are left out of bits per byte."""
    return torch.tensor(get_tokenizer(tokenizer).token_bytes(), dtype=torch.int64, device=device)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    token_bytes: torch.Tensor,
    device: torch.device,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Validation loss (nats per token) and bits per byte over a fixed set of batches.

    ``on_batch(n)`` is called after the n-th batch (the training loop prints progress)."""
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # nats, tokens, nats w/ bytes, bytes
    for i, (x, y) in enumerate(batches):
        with dist.autocast(device):
            loss = model(x, y, loss_reduction="none").double()  # (B, T)
        valid = y != -1
        nbytes = token_bytes[y.clamp(min=0)] * valid
        counted = nbytes > 0
        sums += torch.stack(
            [
                (loss * valid).sum(),
                valid.sum().double(),
                (loss * counted).sum(),
                nbytes.sum().double(),
            ]
        )
        if on_batch is not None:
            on_batch(i + 1)
    dist.all_reduce_sum(sums)
    model.train()
    nats, tokens, nats_b, nbytes = sums.tolist()
    return {
        "val_loss": nats / max(tokens, 1.0),
        "val_bpb": nats_b / (math.log(2) * nbytes) if nbytes else float("nan"),
    }
