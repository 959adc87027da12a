"""The DEPTH knob and the arithmetic around it: pure functions, no torch.

This module is the one source of a model's parameter counts, its FLOPs per token and the peak
FLOPs of the devices MFU is measured against; the model (``GPT.flops_per_token``), the trainer,
the sweep's grid and the synthetic tables all call it. Vocabulary sizes belong to the tokenizers
(``nanogpt.tokenizer.N_VOCAB`` and ``BYTE_N_VOCAB``).

DEPTH sets everything about a model's shape: ``n_layer = DEPTH``, ``n_embd = 64 * DEPTH`` and
``n_head = DEPTH`` (so every head is 64 wide). DEPTH=12 is exactly GPT-2 small: 12 layers, 768
wide, 12 heads. Keeping the aspect ratio (width / depth = 64) fixed makes DEPTH a single dial
for model size, the way nanochat sizes its models (https://github.com/karpathy/nanochat).

Counting conventions (docs/README_DEPTH_PARAMETERIZATION.md has the table):

* ``params_nonembedding`` — the weight matrices of the transformer blocks: per layer q, k, v, o
  (4 C²) and the MLP (8 C²), so 12·L·C². The RMSNorms have no weights and there are no biases.
* ``params_scaling`` — non-embedding plus the output head (V_padded·C). The head is a real
  matmul per token, so it belongs in the compute count; the token embedding is a table lookup
  and does not. This is the N of ``6N``.
* ``params_total`` — everything stored: adds the token embedding (once if it is tied to the head).
* ``params_embedding`` — the token embedding table (V_padded·C).

tests/test_scaling.py checks each of these against the numel of a real ``GPT``'s parameters,
group by group, at several depths, widths and vocabularies.

FLOPs per token for training (forward + backward = 3 × forward) are
``6 · params_scaling + 12 · n_layer · seq_len · n_embd``. The second term is attention's two
matmuls (QKᵀ and AV), counted over the full T×T score matrix as PaLM (arXiv:2204.02311, App. B)
and nanoGPT's MFU estimate count it, even though a causal kernel skips about half of it.
Left out: norms, rotary embeddings, softmax, activations, the loss and the optimizer — all
elementwise, together well under 1% of the total at GPT-2 shapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nanogpt.tokenizer import N_VOCAB

HEAD_DIM = 64  # width per attention head at every DEPTH
WIDTH_PER_LAYER = 64  # n_embd = 64 * DEPTH
REFERENCE_WIDTH = 768  # learning rates are tuned at GPT-2 small's width and scaled from there
VOCAB_PAD_MULTIPLE = 64  # embedding rows padded so matmuls hit tensor-core-friendly sizes
# Dense bf16 tensor-core peaks in FLOP/s (no sparsity), from NVIDIA's data sheets; MFU divides
# by these. Keys are matched as substrings of the CUDA device name.
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "GH200": 989e12, "A100": 312e12}


@dataclass(frozen=True)
class ModelShape:
    n_layer: int
    n_embd: int
    n_head: int
    vocab_size: int = N_VOCAB  # ids the model can see or emit
    seq_len: int = 1024
    tie_embeddings: bool = False  # the head shares the embedding's weights

    @property
    def padded_vocab_size(self) -> int:
        return padded_vocab(self.vocab_size)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


def padded_vocab(vocab_size: int, multiple: int = VOCAB_PAD_MULTIPLE) -> int:
    return math.ceil(vocab_size / multiple) * multiple


def shape_for_depth(
    depth: int,
    seq_len: int = 1024,
    vocab_size: int = N_VOCAB,
    aspect_ratio: int = WIDTH_PER_LAYER,
    head_dim: int = HEAD_DIM,
) -> ModelShape:
    """The model shape DEPTH stands for; DEPTH=12 is GPT-2 small (12 layers, 768 wide, 12 heads).

    ``aspect_ratio`` is the width per layer (64 by default, GPT-2's ratio) and ``head_dim`` the
    width of each head; CPU-sized models use smaller multiples (16 and 16 in the embedded sweep),
    so that DEPTH stays the one dial at sizes of a few thousand parameters.
    """
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise ValueError(f"DEPTH must be a whole number, got {depth!r}")
    if depth < 1:
        raise ValueError(f"DEPTH must be at least 1, got {depth}")
    if seq_len < 1:
        raise ValueError(f"seq_len must be at least 1, got {seq_len}")
    if aspect_ratio < 1 or head_dim < 2 or head_dim % 2:
        raise ValueError(
            f"aspect_ratio must be >= 1 and head_dim even and >= 2, got {aspect_ratio} and "
            f"{head_dim}"
        )
    n_embd = aspect_ratio * depth
    if n_embd % head_dim:
        raise ValueError(
            f"width {n_embd} (aspect_ratio {aspect_ratio} x DEPTH {depth}) is not a multiple of "
            f"head_dim {head_dim}; pick an aspect ratio that is a multiple of the head width"
        )
    return ModelShape(
        n_layer=depth,
        n_embd=n_embd,
        n_head=n_embd // head_dim,
        vocab_size=vocab_size,
        seq_len=seq_len,
    )


def param_groups(shape: ModelShape) -> dict[str, int]:
    """Weights per part of the model: the token embedding, all blocks' attention (q, k, v and
    the output projection), all blocks' MLPs (C -> 4C -> C) and the head (counted even when it
    is tied: the matmul is done either way). No biases, and the RMSNorms have no weights."""
    c, layers, v = shape.n_embd, shape.n_layer, shape.padded_vocab_size
    return {
        "embedding": v * c,
        "attention": layers * 4 * c * c,
        "mlp": layers * 2 * c * (4 * c),
        "lm_head": v * c,
    }


def param_counts(shape: ModelShape) -> dict[str, int]:
    """Parameter counts by convention (see the module docstring)."""
    groups = param_groups(shape)
    nonembedding = groups["attention"] + groups["mlp"]
    embedding, lm_head = groups["embedding"], groups["lm_head"]
    return {
        "params_total": nonembedding + embedding + (0 if shape.tie_embeddings else lm_head),
        "params_nonembedding": nonembedding,
        "params_scaling": nonembedding + lm_head,
        "params_embedding": embedding,
    }


def flops_per_token(shape: ModelShape, seq_len: int | None = None) -> int:
    """Training FLOPs per token: 6 · params_scaling + 12 · L · T · C (attention scores and AV).

    ``seq_len`` overrides the shape's context (T); 0 leaves out the attention term (C = 6 N D).
    """
    n = param_counts(shape)["params_scaling"]
    t = shape.seq_len if seq_len is None else seq_len
    return 6 * n + 12 * shape.n_layer * t * shape.n_embd


def shape_columns(shape: ModelShape, seq_len: int | None = None) -> dict[str, int]:
    """The results table's shape columns: n_layer, n_embd, n_head, the parameter counts and
    flops_per_token (the trainer's summary, the grid's plan and the synthetic tables use it)."""
    return {
        "n_layer": shape.n_layer,
        "n_embd": shape.n_embd,
        "n_head": shape.n_head,
        **param_counts(shape),
        "flops_per_token": flops_per_token(shape, seq_len),
    }


def peak_flops(device_name: str) -> float | None:
    """Dense bf16 peak FLOP/s of a device by its name (``torch.cuda.get_device_name``), or None
    for a device not in :data:`PEAK_BF16_FLOPS` (then no MFU is reported)."""
    for key, value in PEAK_BF16_FLOPS.items():
        if key in device_name:
            return value
    return None


def budget_to_steps(
    flops_budget: float, shape: ModelShape, tokens_per_step: int
) -> tuple[int, int]:
    """(steps, tokens) that fit in ``flops_budget``: whole steps, never over the budget."""
    if tokens_per_step < 1:
        raise ValueError(f"tokens_per_step must be positive, got {tokens_per_step}")
    if not flops_budget > 0:
        raise ValueError(f"the FLOP budget must be positive, got {flops_budget!r}")
    per_step = flops_per_token(shape) * tokens_per_step
    steps = int(flops_budget // per_step)
    if steps < 1:
        raise ValueError(
            f"a FLOP budget of {flops_budget:.3g} is too small for one step of this model: one step "
            f"of {tokens_per_step:,} tokens costs {per_step:.3g} FLOPs "
            f"(n_layer={shape.n_layer}, n_embd={shape.n_embd}); raise the budget or shrink the batch"
        )
    return steps, steps * tokens_per_step


def lr_width_multiplier(n_embd: int) -> float:
    """Multiplier for AdamW learning rates at width ``n_embd`` (1.0 at 768).

    AdamW's rates scale as 1/sqrt(width / 768), nanochat's rule for its AdamW groups
    (https://github.com/karpathy/nanochat, base_train's dmodel_lr_scale), a gentle form of
    μP's 1/width for hidden weights (Yang et al. 2022, arXiv:2203.03466). Muon needs no
    multiplier: it normalises every update to the matrix's shape, so its rate transfers across
    widths as it is (Jordan et al. 2024, https://kellerjordan.github.io/posts/muon/).
    """
    return (n_embd / REFERENCE_WIDTH) ** -0.5


def weight_decay_for_lr(weight_decay: float, lr_multiplier: float) -> float:
    """Weight decay to pair with a learning rate that was scaled by ``lr_multiplier``.

    Decoupled weight decay shrinks weights by lr·λ per step, an exponential average over about
    1/(lr·λ) steps. Wang & Aitchison (2024, arXiv:2405.13698) find that this timescale is what
    should stay fixed as models grow, so λ is divided by whatever multiplied the rate.
    """
    return weight_decay / lr_multiplier


def depth_table(
    depths: list[int],
    seq_len: int = 1024,
    tokens_per_step: int = 524_288,
    flops_budget: float = 1e18,
    vocab_size: int = N_VOCAB,
    aspect_ratio: int = WIDTH_PER_LAYER,
    head_dim: int = HEAD_DIM,
) -> list[dict[str, float]]:
    """One row per DEPTH: shape, parameters, FLOPs per token, steps for a budget."""
    rows = []
    for depth in depths:
        columns = shape_columns(shape_for_depth(depth, seq_len, vocab_size, aspect_ratio, head_dim))
        steps = int(flops_budget // (columns["flops_per_token"] * tokens_per_step))
        rows.append(
            {
                "depth": depth,
                **columns,
                "steps": steps,
                "tokens": steps * tokens_per_step,
                "tokens_per_param": steps * tokens_per_step / columns["params_scaling"],
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Print the DEPTH table (docs/README_DEPTH_PARAMETERIZATION.md is made with this)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m nanogpt.scaling", description="Model shape and compute for each DEPTH."
    )
    parser.add_argument(
        "--depths", default="2..20", help="range A..B or a list, e.g. 2..20 or 6,12"
    )
    parser.add_argument("--seq-len", type=int, default=1024, help="context length in tokens")
    parser.add_argument("--tokens-per-step", type=int, default=524_288, help="batch in tokens")
    parser.add_argument(
        "--flops", type=float, default=1e18, help="FLOP budget for the steps column"
    )
    args = parser.parse_args(argv)
    if ".." in args.depths:
        lo, hi = (int(x) for x in args.depths.split(".."))
        depths = list(range(lo, hi + 1))
    else:
        depths = [int(x) for x in args.depths.split(",")]
    rows = depth_table(depths, args.seq_len, args.tokens_per_step, args.flops)
    print(
        f"| DEPTH | layers | width | heads | params total | non-embedding | params_scaling "
        f"| FLOPs/token | steps for {args.flops:.0e} FLOPs | tokens/param |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['depth']} | {r['n_layer']} | {r['n_embd']} | {r['n_head']} "
            f"| {r['params_total'] / 1e6:.1f} M | {r['params_nonembedding'] / 1e6:.1f} M "
            f"| {r['params_scaling'] / 1e6:.1f} M | {r['flops_per_token'] / 1e6:.1f} M "
            f"| {r['steps']:,} | {r['tokens_per_param']:.1f} |"
        )


if __name__ == "__main__":
    main()
