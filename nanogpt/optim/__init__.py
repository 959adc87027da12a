"""Muon + AdamW in one optimizer, sharded ZeRO-2 style, with the gradient sync built in.

The model is never wrapped in DDP: every rank accumulates its own gradients and `step()` does
the rest, in this order:

1. reduce-scatter the gradients (summed, then divided by the world size: an average), so that
   each rank holds the averaged gradient of only the shard it owns;
2. global gradient norm: sum of squares of the owned shards, all-reduced, square root;
   clip the shards by it;
3. update the owned shard (optimizer state exists only for it: ZeRO stage 2);
4. all-gather the new parameter values, so that every rank again holds the whole model.

Muon (https://kellerjordan.github.io/posts/muon/) updates the 2-D weight matrices of the
transformer blocks: momentum, then the matrix is replaced by the nearest semi-orthogonal matrix
(computed by a Newton-Schulz-type iteration), scaled by the matrix's shape. Same-shape matrices
are stacked, each rank owns a contiguous block of the stack, and orthogonalises it as one batch.
AdamW updates everything else (embeddings, the output head, vectors and scalars); those
parameters are flattened and sharded by element. docs/README_MUON.md and
docs/README_DISTMUON.md explain the maths and the communication plan.

With one rank (no process group, or a group of one) nothing is communicated at all.

Modules, by concept: ``newton_schulz`` (Muon's maths: the orthogonalisation, the update scale),
``muon`` (Muon's defaults, group checks and bucket), ``adamw`` (AdamW's), ``collectives`` (the
only one that talks to torch.distributed), ``sharded`` (``MuonAdamW``, the ZeRO-2 wrapper that
drives the buckets through a step).
"""

from __future__ import annotations

from nanogpt.optim.adamw import ADAMW_DEFAULTS
from nanogpt.optim.muon import MUON_DEFAULTS
from nanogpt.optim.newton_schulz import (
    POLAR_EXPRESS_COEFFICIENTS,
    QUINTIC_COEFFICIENTS,
    muon_update_scale,
    newton_schulz,
)
from nanogpt.optim.sharded import MuonAdamW

__all__ = [
    "ADAMW_DEFAULTS",
    "MUON_DEFAULTS",
    "POLAR_EXPRESS_COEFFICIENTS",
    "QUINTIC_COEFFICIENTS",
    "MuonAdamW",
    "muon_update_scale",
    "newton_schulz",
]
