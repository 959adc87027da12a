"""GPU slots for trials started ahead: the board's rules, and the wait inside Ray workers."""

import time

import pytest

from nanogpt.sweep.slots import NAMESPACE, SlotBoard, board_name


def test_a_gpu_takes_per_gpu_trials_and_the_next_one_waits_for_a_release():
    board = SlotBoard(per_gpu=2)
    assert board.try_acquire("a", ["n:0"]) and board.try_acquire("b", ["n:0"])
    assert not board.try_acquire("c", ["n:0"])
    assert board.try_acquire("c", ["n:1"])  # another GPU has room
    assert not board.try_acquire("d", ["n:0"])
    board.release("a")
    assert board.try_acquire("d", ["n:0"])
    assert board.holders() == {"b": ["n:0"], "c": ["n:1"], "d": ["n:0"]}


def test_a_multi_gpu_trial_takes_all_its_gpus_or_none():
    board = SlotBoard(per_gpu=1)
    assert board.try_acquire("a", ["n:0"]) and board.try_acquire("b", ["n:1"])
    assert not board.try_acquire("wide", ["n:0", "n:1"])
    assert board.holders() == {"a": ["n:0"], "b": ["n:1"]}  # it took neither while waiting
    board.release("a")
    assert not board.try_acquire("wide", ["n:0", "n:1"])  # n:1 is still b's
    assert board.holders() == {"b": ["n:1"]}
    board.release("b")
    assert not board.holds("wide", ["n:0", "n:1"])
    assert board.try_acquire("wide", ["n:1", "n:0"])
    assert board.holds("wide", ["n:0", "n:1"])  # what the other ranks of the trial watch for
    assert not board.try_acquire("c", ["n:1"])


def test_waiting_trials_are_served_in_the_order_they_first_asked():
    now = [0.0]
    board = SlotBoard(per_gpu=1, stale_s=5.0, clock=lambda: now[0])
    assert board.try_acquire("a", ["n:0"])
    for trial in ("first", "second", "third"):
        assert not board.try_acquire(trial, ["n:0"])
    board.release("a")
    # the latest to ask (and to ask most often) does not jump the queue
    assert not board.try_acquire("third", ["n:0"]) and not board.try_acquire("second", ["n:0"])
    assert board.try_acquire("first", ["n:0"])
    board.release("first")
    assert not board.try_acquire("third", ["n:0"])
    assert board.try_acquire("second", ["n:0"])
    board.release("second")
    assert board.try_acquire("third", ["n:0"])
    # a wide trial waiting for two GPUs is not overtaken by narrow ones on either
    assert board.try_acquire("x", ["n:1"])
    assert not board.try_acquire("wide", ["n:0", "n:1"])
    board.release("x")
    assert not board.try_acquire("narrow", ["n:1"])  # n:1 is free, but "wide" asked first
    board.release("third")
    assert board.try_acquire("wide", ["n:0", "n:1"])
    # a waiter that stops asking (its process died) loses its place after stale_s
    board.release("wide")
    assert board.try_acquire("y", ["n:0"])
    assert not board.try_acquire("dead", ["n:0"])
    now[0] = 3.0
    assert not board.try_acquire("alive", ["n:0"])
    board.release("y")
    assert not board.try_acquire("alive", ["n:0"])  # "dead" asked 3 s ago: still first
    now[0] = 6.0
    assert board.try_acquire("alive", ["n:0"])  # 6 s without a word: "dead" is passed over


def test_a_restarted_trial_keeps_its_slot_or_asks_afresh_on_other_gpus():
    board = SlotBoard(per_gpu=1)
    assert board.try_acquire("a", ["n:0"]) and board.try_acquire("b", ["n:1"])
    assert board.try_acquire("a", ["n:0"])  # same trial, same GPU: a restarted worker
    assert not board.try_acquire("a", ["n:1"])  # restarted on b's GPU: waits like anyone
    assert board.holders() == {"b": ["n:1"]}  # and gave n:0 back
    board.release("a")  # releasing twice is harmless
    with pytest.raises(ValueError):
        SlotBoard(per_gpu=0)


def test_workers_wait_in_ray_until_a_slot_on_their_gpu_is_released():
    """Real Ray with one (logical) GPU: the second task runs only after the first released."""
    ray = pytest.importorskip("ray")
    from nanogpt.sweep.slots import release_slot, start_board, wait_for_slot

    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        board = start_board("t", per_gpu=1)  # noqa: F841 (keeps the actor alive)

        @ray.remote(num_gpus=0.5, num_cpus=0)
        def trial(key: str, hold_s: float) -> tuple[float, float]:
            waited = wait_for_slot("t", key, poll_s=0.01)
            got = time.time()
            time.sleep(hold_s)
            release_slot("t", key)
            return waited, got

        actor = ray.get_actor(board_name("t"), namespace=NAMESPACE)
        first = trial.remote("a", 2.0)
        deadline = time.time() + 60
        while not ray.get(actor.holders.remote()) and time.time() < deadline:
            time.sleep(0.05)  # "b" starts only once "a" holds the slot (process starts vary)
        second = trial.remote("b", 0.0)
        (wait_a, got_a), (wait_b, got_b) = ray.get([first, second])
        assert wait_a < 1.0
        assert wait_b > 0.5 and got_b >= got_a + 2.0
        assert ray.get(actor.holders.remote()) == {}
    finally:
        ray.shutdown()


def test_both_ranks_of_a_two_worker_trial_wait_for_the_slot_and_go_together(tmp_path):
    """Real Ray, one logical GPU, two gloo ranks of one trial: rank 0 asks the board, rank 1
    watches it (no collective while waiting); neither starts before the holder releases."""
    ray = pytest.importorskip("ray")
    from nanogpt.sweep.slots import release_slot, start_board, wait_for_slot

    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        board = start_board("t2", per_gpu=1)
        node = ray.get_runtime_context().get_node_id()
        gpu = ray.get(ray.remote(num_gpus=0.25, num_cpus=0)(lambda: ray.get_gpu_ids()[0]).remote())
        assert ray.get(board.try_acquire.remote("other", [f"{node}:{gpu}"]))

        @ray.remote(num_gpus=0.25, num_cpus=0)
        def rank(r: int) -> tuple[float, float]:
            import torch.distributed as dist

            store = f"file://{tmp_path / 'store'}"
            dist.init_process_group("gloo", init_method=store, rank=r, world_size=2)
            try:
                waited = wait_for_slot("t2", "wide", poll_s=0.01)
                got = time.time()
                dist.barrier()
                if r == 0:
                    release_slot("t2", "wide")
                return waited, got
            finally:
                dist.destroy_process_group()

        ranks = [rank.remote(0), rank.remote(1)]
        done, _ = ray.wait(ranks, num_returns=2, timeout=3.0)
        assert not done, "a rank went on while another trial held the slot"
        released = time.time()
        release_slot("t2", "other")
        (wait0, got0), (wait1, got1) = ray.get(ranks, timeout=60)
        assert got0 >= released and got1 >= released
        assert wait0 > 1.0 and wait1 > 1.0
        assert ray.get(board.holders.remote()) == {}
    finally:
        ray.shutdown()
