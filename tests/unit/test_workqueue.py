"""The work queue's client-go semantics, with a fake clock."""

from __future__ import annotations

from northflank_llm_operator.workqueue import WorkQueue


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_key_waits_once_and_one_worker_has_it_at_a_time() -> None:
    queue: WorkQueue[str] = WorkQueue(Clock())
    queue.add("a")
    queue.add("a")
    queue.add("b")
    assert len(queue) == 2, "a key added twice waits once"
    assert queue.take() == "a"
    queue.add("a")  # changed again while a worker has it
    assert queue.take() == "b", "not handed to a second worker while the first has it"
    assert queue.take() is None
    queue.done("a")
    assert queue.take() == "a", "handed out again once its worker is done"
    queue.done("a")
    queue.done("b")
    assert not queue.busy


def test_the_earliest_delayed_add_wins_and_wakes_whoever_promotes() -> None:
    clock = Clock()
    queue: WorkQueue[str] = WorkQueue(clock)
    queue.add_after("a", 30)
    assert queue.sooner.is_set()
    queue.sooner.clear()
    queue.add_after("a", 60)
    assert queue.delayed("a") == 130, "a later moment does not postpone an earlier one"
    assert not queue.sooner.is_set()
    queue.add_after("b", 10)
    assert queue.sooner.is_set(), "a key due sooner than any before must wake the loop"
    clock.now = 115
    queue.promote()
    assert queue.take() == "b"
    assert queue.take() is None
    clock.now = 130
    queue.promote()
    assert queue.take() == "a"


def test_failures_back_off_exponentially_until_forgotten() -> None:
    queue: WorkQueue[str] = WorkQueue(Clock(), base_delay=0.5, max_delay=4)
    assert [queue.add_rate_limited("a") for _ in range(5)] == [0.5, 1, 2, 4, 4]
    queue.forget("a")
    assert queue.add_rate_limited("a") == 0.5
