"""GPU slots for trials started ahead ("standby"): a trial whose workers are up waits here for a
slot on its GPUs, so the hand-over between trials is a message rather than a Ray Train start-up.

On a GPU cluster each trial's workers ask Ray for ``1 / (trials_per_gpu + ahead)`` of a GPU,
where ``ahead`` is the GPU's part of the trials started ahead, so that many more trials than train
fit on every GPU; those start their worker processes, torch, CUDA and the process group while the
others train, then wait on the ``SlotBoard`` until a training trial on their GPUs ends. The board is a plain class (tested directly) that the driver runs as a named
Ray actor for the sweep's lifetime.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any


class SlotBoard:
    """Which trial holds which GPU slots; ``per_gpu`` trials may train on one GPU at once.

    A trial asks for all its GPUs at once (one request for a multi-GPU trial, so two trials can
    never each hold half of what the other needs). Asking again with the same trial key and
    GPUs is granted (a restarted worker or a retried trial keeps its slot; one restarted on other
    GPUs asks afresh); a trial releases its slots when it ends.

    Waiting trials are served in the order they first asked: a trial is not granted while an
    earlier one that wants any of its GPUs is still waiting, so none waits forever behind later
    arrivals (and a wide trial is not starved by narrow ones). A waiter that has not asked again
    for ``stale_s`` seconds (its process died) loses its place.
    """

    def __init__(
        self, per_gpu: int, stale_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if per_gpu < 1:
            raise ValueError(f"per_gpu must be >= 1, not {per_gpu}")
        self.per_gpu = per_gpu
        self.stale_s = stale_s
        self.clock = clock
        self.held: dict[str, frozenset[str]] = {}
        # trial -> (GPUs, order of its first ask, time of its latest ask)
        self.waiting: dict[str, tuple[frozenset[str], int, float]] = {}
        self.arrivals = 0

    def try_acquire(self, trial: str, gpus: list[str]) -> bool:
        wanted = frozenset(gpus)
        if self.held.get(trial) == wanted:
            return True
        self.held.pop(trial, None)  # a restarted worker may have landed on another GPU
        now = self.clock()
        if trial in self.waiting and self.waiting[trial][0] == wanted:
            order = self.waiting[trial][1]
        else:
            order, self.arrivals = self.arrivals, self.arrivals + 1
        self.waiting[trial] = (wanted, order, now)
        for other, (their_gpus, their_order, last) in list(self.waiting.items()):
            if now - last > self.stale_s:
                del self.waiting[other]  # stopped asking: gone
            elif their_order < order and their_gpus & wanted:
                return False  # an earlier waiter goes first
        in_use = Counter(gpu for held in self.held.values() for gpu in held)
        if all(in_use[gpu] < self.per_gpu for gpu in wanted):
            self.held[trial] = wanted
            del self.waiting[trial]
            return True
        return False

    def holds(self, trial: str, gpus: list[str]) -> bool:
        return self.held.get(trial) == frozenset(gpus)

    def release(self, trial: str) -> None:
        self.held.pop(trial, None)
        self.waiting.pop(trial, None)

    def holders(self) -> dict[str, list[str]]:
        return {trial: sorted(gpus) for trial, gpus in self.held.items()}


NAMESPACE = "nanogpt"


def board_name(sweep_name: str) -> str:
    return f"slots-{sweep_name}"


def start_board(sweep_name: str, per_gpu: int) -> Any:
    """The board as a named actor of this Ray job (it ends with the driver)."""
    import ray

    actor = ray.remote(num_cpus=0)(SlotBoard)
    return actor.options(
        name=board_name(sweep_name), namespace=NAMESPACE, get_if_exists=True
    ).remote(per_gpu)


def wait_for_slot(sweep_name: str, trial: str, poll_s: float = 0.05) -> float:
    """Inside a Ray Train worker: block until this trial holds a slot on its GPUs.

    Every rank gathers its GPU's name; rank 0 asks the board for all of them, and the other ranks
    watch the board until their trial holds them (not a collective: a wait may outlast the
    process group's timeout). Returns the seconds spent waiting.
    """
    import ray
    import torch.distributed as dist

    started = time.time()
    context = ray.get_runtime_context()
    mine = [f"{context.get_node_id()}:{gpu}" for gpu in ray.get_gpu_ids()]
    gpus = [mine]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, mine)
        gpus = gathered
    board = ray.get_actor(board_name(sweep_name), namespace=NAMESPACE)
    wanted = sorted({gpu for rank in gpus for gpu in rank})
    leader = not dist.is_initialized() or dist.get_rank() == 0
    ask = board.try_acquire if leader else board.holds
    while not ray.get(ask.remote(trial, wanted)):
        time.sleep(poll_s)
    return time.time() - started


def release_slot(sweep_name: str, trial: str) -> None:
    """After a trial's TorchTrainer has returned (or failed for good): free its slots."""
    import ray

    try:
        board = ray.get_actor(board_name(sweep_name), namespace=NAMESPACE)
    except ValueError:
        return  # no board: the sweep runs without standby trials
    ray.get(board.release.remote(trial))
