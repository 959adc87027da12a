"""Faults planted on purpose, so that tests can check how a run handles them. Nothing here
runs unless a config asks for it (``--debug-nan-at-step``); the training loop itself has no
test hooks."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch


def nan_loss_at(step_fn: Callable[[Any, int], Any], at_step: int) -> Callable[[Any, int], Any]:
    """``step_fn(run, step)``, except that at step ``at_step`` (counted from 0) every
    micro-batch's loss is NaN before its backward pass, so the gradients and then the weights
    are poisoned as in a real blow-up. ``run`` is a ``nanogpt.train.Run``."""

    def step(run: Any, index: int) -> Any:
        if index != at_step:
            return step_fn(run, index)
        forward = run.forward

        def poisoned(*args: Any, **kwargs: Any) -> torch.Tensor:
            return forward(*args, **kwargs) * float("nan")

        return step_fn(dataclasses.replace(run, forward=poisoned), index)

    return step
