"""Tiny random checkpoints for the chat CLI and server tests, written with the real saver."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from nanogpt import checkpoint as ckpt
from nanogpt.config import ModelConfig
from nanogpt.model import GPT
from nanogpt.tokenizer import get_tokenizer


def tiny_chat_model(
    tokenizer: str = "bytes", seq: int = 256, never_stop: bool = False, seed: int = 0
) -> GPT:
    """2 layers, width 64, random weights far from uniform.

    ``never_stop`` (byte-level only): the stop tokens and every byte but printable ASCII
    get logits near the soft-cap's floor at every position, so a reply is readable
    characters running to its token limit (a long reply for the Ctrl-C and stop-button tests).
    Embedding column 0 is large for every token, so after the final RMSNorm the hidden state
    always has a large positive first component, and the banned head rows are strongly
    negative there.
    """
    tok = get_tokenizer(tokenizer)
    if never_stop and tokenizer != "bytes":
        raise ValueError("never_stop is built for the byte-level tokenizer")
    torch.manual_seed(seed)
    cfg = ModelConfig(n_layer=2, n_head=2, n_embd=64, vocab_size=tok.n_vocab, sequence_len=seq)
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
        if never_stop:
            model.transformer.wte.weight[:, 0] = 100.0
            model.lm_head.weight[:, 0] = 0.0
            allowed = range(32, 127)
            banned = [i for i in range(tok.n_vocab) if i not in allowed]
            model.lm_head.weight[banned, 0] = -20.0
    return model.eval()


def write_checkpoint(
    root: Path,
    tokenizer: str = "bytes",
    mode: str = "mid-training",
    seq: int = 256,
    never_stop: bool = False,
) -> Path:
    """A complete checkpoint directory (model.pt, meta.json, an optimizer shard) under root."""
    model = tiny_chat_model(tokenizer, seq, never_stop)
    meta = {
        "model_config": dataclasses.asdict(model.config),
        "tokenizer": tokenizer,
        "config": {"mode": mode},
    }
    optim = torch.optim.SGD(model.parameters(), lr=0.1)
    return ckpt.save(root, 1, model, optim, meta)
