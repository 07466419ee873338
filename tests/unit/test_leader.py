"""Lease leader election on a fake clock: acquire, respect a live holder, take over an expired or
released Lease, and stop leading once renewals fail for the renew deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from northflank_llm_operator.leader import ElectionConfig, LeaderElector, LeaseConflictError, LeaseRecord


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return self.wall_at(self.now)

    @staticmethod
    def wall_at(moment: float) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=moment)

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


class MemoryLeaseStore:
    """One Lease with optimistic concurrency, like the API server; ``broken`` makes every call fail."""

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self.version = 0
        self.broken = False
        self.writes = 0

    def _check(self) -> None:
        if self.broken:
            raise ConnectionError("API server unreachable")

    async def get(self) -> LeaseRecord | None:
        self._check()
        return self.record

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        self._check()
        if self.record is not None:
            raise LeaseConflictError("exists")
        return self._store(record)

    async def update(self, record: LeaseRecord) -> LeaseRecord:
        self._check()
        if self.record is None or record.resource_version != self.record.resource_version:
            raise LeaseConflictError("changed")
        return self._store(record)

    def _store(self, record: LeaseRecord) -> LeaseRecord:
        self.version += 1
        self.writes += 1
        self.record = replace(record, resource_version=str(self.version))
        return self.record


def leading(candidate: LeaderElector) -> bool:
    return candidate.leading  # read through a call: the flag changes behind mypy's back


async def until(predicate: Callable[[], bool]) -> None:
    """Let the election task run until ``predicate`` holds (the fake clock makes this quick)."""
    for _ in range(10_000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("the election never got there")


def elector(store: MemoryLeaseStore, clock: FakeClock, identity: str, log: list[str] | None = None) -> LeaderElector:
    events = log if log is not None else []

    async def started() -> None:
        events.append(f"{identity} started")

    async def stopped() -> None:
        events.append(f"{identity} stopped")

    return LeaderElector(
        store, identity, ElectionConfig(), on_started_leading=started, on_stopped_leading=stopped,
        clock=clock, wall_clock=clock.wall, sleep=clock.sleep,
    )  # fmt: skip


async def test_the_first_replica_creates_the_lease_and_the_second_stands_by() -> None:
    clock, store = FakeClock(), MemoryLeaseStore()
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    assert await a.try_acquire_or_renew()
    assert store.record is not None
    assert store.record.holder == "a"
    assert store.record.lease_duration_seconds == 15
    assert not await b.try_acquire_or_renew()
    # a keeps renewing every 2 s: b never gets it, however long it waits.
    for _ in range(20):
        clock.now += 2
        assert await a.try_acquire_or_renew()
        assert not await b.try_acquire_or_renew()
    assert b.holder == "a"


async def test_a_silent_holder_loses_the_lease_after_the_lease_duration_on_the_standbys_clock() -> None:
    clock, store = FakeClock(), MemoryLeaseStore()
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()  # b sees the record change now
    clock.now += 14.9
    assert not await b.try_acquire_or_renew()
    clock.now += 0.2
    assert await b.try_acquire_or_renew()
    assert store.record is not None
    assert store.record.holder == "b"
    assert store.record.transitions == 1
    # a comes back: it sees b's fresh record and does not take it back.
    assert not await a.try_acquire_or_renew()


async def test_a_released_lease_is_taken_over_on_the_next_try() -> None:
    clock, store = FakeClock(), MemoryLeaseStore()
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    await a.release()
    assert store.record is not None
    assert store.record.holder is None
    assert await b.try_acquire_or_renew()


async def test_two_replicas_racing_for_a_free_lease_elect_exactly_one() -> None:
    clock, store = FakeClock(), MemoryLeaseStore()
    results = await asyncio.gather(*(elector(store, clock, name).try_acquire_or_renew() for name in "abcd"))
    assert sorted(results) == [False, False, False, True]


async def test_the_leader_stops_leading_once_renewals_fail_for_the_renew_deadline_and_campaigns_no_more() -> None:
    clock, store = FakeClock(), MemoryLeaseStore()
    log: list[str] = []
    a = elector(store, clock, "a", log)
    task = asyncio.create_task(a.run())
    for _ in range(10):
        await asyncio.sleep(0)
    assert log == ["a started"]
    assert leading(a)
    store.broken = True
    assert store.record is not None
    assert store.record.renew_time is not None
    last_renewed = (store.record.renew_time - FakeClock.wall_at(0)).total_seconds()
    await until(task.done)
    # Stopped within the renew deadline of the last renewal (10 s, checked every 2 s retry), before
    # anyone may take over (15 s); then run() returns: the process exits instead of campaigning again.
    assert 10 <= clock.now - last_renewed <= 12
    assert log == ["a started", "a stopped"]
    assert not leading(a)
    assert not a.fence.valid()
    assert task.result() is None


async def test_cancelling_a_leader_reports_the_stop_and_closes_the_fence() -> None:
    clock, store = FakeClock(), MemoryLeaseStore()
    log: list[str] = []
    a = elector(store, clock, "a", log)
    task = asyncio.create_task(a.run())
    await until(lambda: leading(a))
    assert a.fence.valid()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert log == ["a started", "a stopped"]
    assert not a.fence.valid()


async def test_reachability_follows_the_last_answer_of_the_lease_api() -> None:
    clock, store = FakeClock(), MemoryLeaseStore()
    a = elector(store, clock, "a")
    assert not a.reachable()
    assert await a.try_acquire_or_renew()
    assert a.reachable()
    store.broken = True
    clock.now += 10
    assert not await a.try_acquire_or_renew()
    assert a.reachable()
    clock.now += 6
    assert not a.reachable()


def test_timings_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="retry period"):
        ElectionConfig(lease_duration=10, renew_deadline=10, retry_period=2)


async def test_a_standby_takes_over_right_when_the_lease_runs_out() -> None:
    clock, store = FakeClock(), MemoryLeaseStore()
    log: list[str] = []
    assert await elector(store, clock, "a").try_acquire_or_renew()
    seen_at = clock.now
    b = elector(store, clock, "b", log)
    task = asyncio.create_task(b.run())
    await until(lambda: "b started" in log)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    # Not at the next multiple of the 2 s retry period (16 s) but just after the 15 s lease.
    assert store.record is not None
    assert store.record.holder == "b"
    assert store.record.acquire_time is not None
    taken_after = (store.record.acquire_time - FakeClock.wall_at(seen_at)).total_seconds()
    assert 15 < taken_after < 15.2
