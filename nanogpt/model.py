"""The GPT: architecture only, read top to bottom.

A GPT-2-shaped decoder with the changes that modern small-model training has settled on
(docs/README_MODEL.md says what differs from GPT-2 and why):

* rotary position embeddings instead of a learned position table (docs/README_ROPE.md);
* RMSNorm without weights, before attention and MLP (pre-norm), after the embedding, on the
  queries and keys (QK-norm) and before the head;
* no biases anywhere; ReLU² in the MLP; untied input embedding and output head;
* optional tanh soft-capping of the logits and an optional z-loss (docs/README_STABILITY.md).

Nothing here knows about processes or devices beyond the tensors it is given: parallelism and
mixed precision are applied from outside (nanogpt.optim, nanogpt.dist.autocast).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from nanogpt import scaling, triton_loss
from nanogpt.config import ModelConfig
from nanogpt.loss import chunked_token_losses, fused_head_loss


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


def rotary_tables(seq_len: int, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape (seq_len, head_dim // 2), in fp32."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv_freq)
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[..., i], x[..., i + D/2]) by position-dependent angles.

    x: (B, T, n_head, head_dim); cos, sin: (T, head_dim // 2), or (B, T, head_dim // 2) when
    each row has its own positions (batched generation, nanogpt/engine.py).
    """
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    if cos.ndim == 2:
        cos, sin = cos[None], sin[None]
    cos = cos[:, :, None, :].to(x.dtype)
    sin = sin[:, :, None, :].to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head = cfg.n_head
        self.head_dim = cfg.n_embd // cfg.n_head
        self.c_q = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.c_k = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.c_v = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.fused_qkv = cfg.fused_qkv

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        kv_cache: Any = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        B, T, C = x.shape
        if self.fused_qkv:
            # One (3C, C) GEMM instead of three (C, C) ones, forward and backward. The weights
            # stay three parameters, so Muon still orthogonalises Q, K and V one by one and
            # checkpoints keep their layout; the concatenation is folded by torch.compile into
            # the fp32 -> bf16 cast that autocast makes of every weight anyway.
            w = torch.cat((self.c_q.weight, self.c_k.weight, self.c_v.weight))
            qkv = F.linear(x, w).view(B, T, 3, self.n_head, self.head_dim)
            q, k, v = qkv.unbind(2)  # each (B, T, n_head, head_dim)
        else:
            q = self.c_q(x).view(B, T, self.n_head, self.head_dim)
            k = self.c_k(x).view(B, T, self.n_head, self.head_dim)
            v = self.c_v(x).view(B, T, self.n_head, self.head_dim)
        # QK-norm bounds the attention logits whatever the weights do (docs/README_STABILITY.md).
        q, k = rms_norm(q), rms_norm(k)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, n_head, T, hd)

        if kv_cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            # The cached branch (nanogpt/engine.py owns the cache): store this chunk's keys and
            # values and get back what to attend over. Decode attends over the whole
            # preallocated cache under the engine's mask (B, 1, T, max_len), which hides
            # padding, unwritten slots and the future; a prefill into an empty cache attends
            # over the prompt's own keys, causally (flash attention) when no row is padded.
            k, v = kv_cache.update(self.layer_idx, k, v)
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, is_causal=attn_mask is None
            )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ReLU²: as good as GELU at this scale and cheaper (So et al. 2021, arXiv:2109.08668).
        return self.c_proj(F.relu(self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.attn = CausalSelfAttention(cfg, layer_idx)
        self.mlp = MLP(cfg)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        kv_cache: Any = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(rms_norm(x), cos, sin, kv_cache, attn_mask)
        x = x + self.mlp(rms_norm(x))
        return x


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        vocab = cfg.padded_vocab_size
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(vocab, cfg.n_embd),
                "h": nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer)),
            }
        )
        self.lm_head = nn.Linear(cfg.n_embd, vocab, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight
        head_dim = cfg.n_embd // cfg.n_head
        cos, sin = rotary_tables(cfg.sequence_len, head_dim, cfg.rope_base)
        # Not saved in checkpoints: they are a function of the config.
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        cfg = self.config
        nn.init.normal_(self.transformer.wte.weight, mean=0.0, std=0.02)
        if not cfg.tie_embeddings:
            # Small, so the first logits are near uniform (loss ≈ ln V) but gradients still flow.
            nn.init.normal_(self.lm_head.weight, mean=0.0, std=0.001)
        for block in self.transformer.h:
            for linear in (block.attn.c_q, block.attn.c_k, block.attn.c_v, block.mlp.c_fc):
                nn.init.normal_(linear.weight, mean=0.0, std=linear.in_features**-0.5)
            # Residual branches start as the identity; a common choice in modded-nanogpt and
            # nanochat that lets depth grow without shrinking the init.
            nn.init.zeros_(block.attn.c_proj.weight)
            nn.init.zeros_(block.mlp.c_proj.weight)
        cos, sin = rotary_tables(cfg.sequence_len, cfg.n_embd // cfg.n_head, cfg.rope_base)
        self.rope_cos.copy_(cos)
        self.rope_sin.copy_(sin)

    # --- counting ----------------------------------------------------------------------------

    def parameter_kinds(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by how they are optimised: Muon for block matrices, AdamW for the rest."""
        kinds: dict[str, list[nn.Parameter]] = {
            "matrix": [p for p in self.transformer.h.parameters() if p.ndim == 2],
            "vector": [p for p in self.transformer.h.parameters() if p.ndim != 2],
            "embedding": [self.transformer.wte.weight],
            "lm_head": [] if self.config.tie_embeddings else [self.lm_head.weight],
        }
        return kinds

    def param_counts(self) -> dict[str, int]:
        """params_total, params_nonembedding, params_scaling (see nanogpt.scaling)."""
        kinds = self.parameter_kinds()
        blocks = sum(p.numel() for p in kinds["matrix"] + kinds["vector"])
        head = self.lm_head.weight.numel()
        total = sum(p.numel() for p in self.parameters())  # a tied weight counts once
        return {
            "params_total": total,
            "params_nonembedding": blocks,
            "params_scaling": blocks + head,
            "params_embedding": self.transformer.wte.weight.numel(),
        }

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token (6N + attention) by nanogpt.scaling's formula."""
        return scaling.flops_per_token(self.config.shape, seq_len)

    # --- forward -----------------------------------------------------------------------------

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        kv_cache: Any = None,
        loss_reduction: str = "mean",
        last_only: bool = False,
    ) -> torch.Tensor:
        """Logits (B, T, vocab_size) without targets; the loss with them.

        Targets equal to -1 are ignored (masked chat tokens). ``loss_reduction="none"`` gives
        the per-token loss (B, T), used for bits per byte. ``kv_cache`` is the engine's
        :class:`nanogpt.engine.KVCache`: it gives each row's positions and the attention mask
        and keeps the keys and values. ``last_only`` computes the head for the last position
        only (generation needs nothing else).
        """
        cfg = self.config
        B, T = idx.shape
        mask = None
        if kv_cache is None:
            if T > cfg.sequence_len:
                raise ValueError(
                    f"sequence of {T} tokens is longer than the model's context "
                    f"({cfg.sequence_len})"
                )
            cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        else:
            positions = kv_cache.positions(T)  # (B, T), checked against the context by the engine
            cos, sin = self.rope_cos[positions], self.rope_sin[positions]
            mask = kv_cache.attn_mask(T)

        x = rms_norm(self.transformer.wte(idx))  # (B, T, C)
        for block in self.transformer.h:
            x = block(x, cos, sin, kv_cache, mask)
        if kv_cache is not None:
            kv_cache.advance(T)
        if last_only and targets is None:
            x = x[:, -1:]  # before the norm and the head: generation needs the last position only
        x = rms_norm(x)

        fused = cfg.fused_loss  # None picks by device (nanogpt.config.ModelOptions says why)
        if fused is None and targets is not None:
            fused = x.device.type != "cuda" or triton_loss.available(x.device)
        training_loss = targets is not None and loss_reduction == "mean" and torch.is_grad_enabled()
        if cfg.fp8_head and training_loss:
            check_fp8_head(x.device, fused)
        if targets is not None and fused:
            flat_x, flat_t = x.reshape(B * T, -1), targets.reshape(B * T)
            args = (self.lm_head.weight, flat_t, cfg.vocab_size, cfg.logit_softcap, cfg.z_loss)
            if training_loss:
                kernel = "triton-fp8" if cfg.fp8_head else cfg.loss_kernel
                return fused_head_loss(
                    flat_x, *args, cfg.loss_chunk_rows, kernel=kernel, hw_tanh=cfg.loss_hw_tanh
                )
            per_token = chunked_token_losses(flat_x, *args)
            if loss_reduction == "none":
                return per_token.view(B, T)
            if loss_reduction == "sum":
                return per_token.sum()
            return per_token.sum() / (flat_t != -1).sum().clamp(min=1)
        return self._head_and_loss(x, targets, loss_reduction)

    def _head_and_loss(
        self, x: torch.Tensor, targets: torch.Tensor | None, loss_reduction: str
    ) -> torch.Tensor:
        """The plain (unfused) head: full logits, then cross-entropy. Reference for the fused."""
        cfg = self.config
        B, T, _ = x.shape
        logits = self.lm_head(x).float()  # (B, T, V_padded)
        if cfg.logit_softcap > 0:
            logits = cfg.logit_softcap * torch.tanh(logits / cfg.logit_softcap)
        if targets is None:
            # Padding rows of the head are cut off, so a padded id can never be sampled.
            return logits[..., : cfg.vocab_size]

        # Only real ids enter the softmax: padded ones take no probability mass and no gradient.
        flat_logits = logits[..., : cfg.vocab_size].reshape(B * T, cfg.vocab_size)
        flat_targets = targets.reshape(-1)
        loss = F.cross_entropy(flat_logits, flat_targets, ignore_index=-1, reduction="none")
        if cfg.z_loss > 0:
            # z-loss keeps log Z near 0 so logits cannot drift (PaLM, arXiv:2204.02311, §5).
            z = torch.logsumexp(flat_logits, dim=-1)
            loss = loss + cfg.z_loss * z.square() * (flat_targets != -1)
        if loss_reduction == "none":
            return loss.view(B, T)
        if loss_reduction == "sum":
            return loss.sum()
        valid = (flat_targets != -1).sum().clamp(min=1)
        return loss.sum() / valid


@torch.compiler.disable  # host-side checks; the fused loss after it runs outside the graph anyway
def check_fp8_head(device: torch.device, fused: bool = True) -> None:
    """Raise, saying why, unless ``fp8_head`` can run on ``device``: a CUDA GPU with FP8 tensor
    cores (compute capability 8.9 or newer: Ada, Hopper, Blackwell), Triton, the fused loss."""
    if device.type != "cuda":
        raise RuntimeError(
            f"fp8_head runs the head's matmuls on FP8 tensor cores and needs a CUDA GPU; this "
            f"model is on {device}. Set fp8_head=False (the default) here"
        )
    capability = torch.cuda.get_device_capability(device)
    if capability < (8, 9):
        raise RuntimeError(
            f"fp8_head needs FP8 tensor cores (compute capability >= 8.9); "
            f"{torch.cuda.get_device_name(device)} has {capability[0]}.{capability[1]}"
        )
    if not triton_loss.available(device) or not fused:
        raise RuntimeError(
            "fp8_head runs inside the fused head + loss (Triton kernel); it is off here "
            "(fused_loss=False or no Triton installed)"
        )


def model_summary(cfg: ModelConfig) -> dict[str, int]:
    """Counts from the config alone (no weights built), for dry runs and tables."""
    return {
        **scaling.param_counts(cfg.shape),
        "flops_per_token": scaling.flops_per_token(cfg.shape),
    }
