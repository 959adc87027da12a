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
    assert board.try_acquire("a", ["n:0"])
    assert not board.try_acquire("wide", ["n:0", "n:1"])
    assert board.holders() == {"a": ["n:0"]}  # it did not take n:1 while waiting for n:0
    assert board.try_acquire("b", ["n:1"])
    board.release("a")
    board.release("b")
    assert not board.holds("wide", ["n:0", "n:1"])
    assert board.try_acquire("wide", ["n:1", "n:0"])
    assert board.holds("wide", ["n:0", "n:1"])  # what the other ranks of the trial watch for
    assert not board.try_acquire("c", ["n:1"])


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

        first = trial.remote("a", 2.0)
        time.sleep(1.0)
        second = trial.remote("b", 0.0)
        (wait_a, got_a), (wait_b, got_b) = ray.get([first, second])
        assert wait_a < 1.0
        assert wait_b > 0.5 and got_b >= got_a + 2.0
        assert ray.get(ray.get_actor(board_name("t"), namespace=NAMESPACE).holders.remote()) == {}
    finally:
        ray.shutdown()
