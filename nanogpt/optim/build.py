"""The run's optimizer: which parameters Muon gets and which AdamW gets, with the learning
rates and weight decays of the run's config (tests/test_optim_groups.py checks them), and the
speed options that change how, not what, the step computes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from nanogpt import scaling
from nanogpt.config import TrainConfig
from nanogpt.optim.sharded import MuonAdamW

if TYPE_CHECKING:
    from nanogpt.model import GPT

# MuonAdamW's speed options, on by default with CUDA (TrainConfig.fast_optimizer): Newton-Schulz
# without copies of X and with its last product in fp32, Muon's and AdamW's per-bucket updates
# compiled. One H200, 2026-12-03: the step 2.6% faster at DEPTH 12 and 2.5% at DEPTH 6, the
# final loss of a 2,000-step DEPTH 6 run within 0.28% of the default (docs/benchmarks.md).
FAST_OPTIONS: dict[str, bool] = {"fast_muon": True, "compile_muon": True, "compile_adamw": True}


def optimizer_options(cfg: TrainConfig, device: torch.device) -> dict[str, bool]:
    """FAST_OPTIONS when ``cfg.fast_optimizer`` says so (None: on with CUDA), else none."""
    fast = cfg.fast_optimizer if cfg.fast_optimizer is not None else device.type == "cuda"
    return dict(FAST_OPTIONS) if fast else {}


def build_optimizer(model: GPT, cfg: TrainConfig, **options: Any) -> MuonAdamW:
    """The run's MuonAdamW; ``options`` go to its constructor (e.g. ``fast_muon=True``)."""
    kinds = model.parameter_kinds()
    width_mult = scaling.lr_width_multiplier(model.config.n_embd)
    adam_lr = cfg.lr_adamw * width_mult
    adam_wd = scaling.weight_decay_for_lr(cfg.weight_decay, width_mult)
    betas = (cfg.adam_beta1, cfg.adam_beta2)
    groups: list[dict[str, Any]] = [
        dict(
            kind="muon",
            name="matrix",
            params=kinds["matrix"],
            lr=cfg.lr_muon,
            # Same decay per step (lr x wd) as the AdamW groups at width 768: the averaging
            # timescale 1/(lr x wd) is what should match (Wang & Aitchison, arXiv:2405.13698).
            weight_decay=scaling.weight_decay_for_lr(cfg.weight_decay, cfg.lr_muon / cfg.lr_adamw),
            momentum=cfg.muon_momentum,
        )
    ]
    for name, wd in (("embedding", adam_wd), ("lm_head", adam_wd), ("vector", 0.0)):
        if kinds[name]:
            groups.append(
                dict(
                    kind="adamw",
                    name=name,
                    params=kinds[name],
                    lr=adam_lr,
                    weight_decay=wd,
                    betas=betas,
                    eps=1e-8,
                )
            )
    return MuonAdamW(groups, max_grad_norm=cfg.grad_clip if cfg.grad_clip > 0 else None, **options)
