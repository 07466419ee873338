"""Split brain (issue 14, item 2): a replica must not write once its renew deadline has passed without
a successful renewal. The fence on a fake clock, the election paused past it, the Kubernetes gateway
and the Northflank client refusing to send, and the process giving up leadership for good."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import kubernetes
import pytest
from aiohttp import web

from northflank_llm_operator import process
from northflank_llm_operator.kube import KubernetesGateway
from northflank_llm_operator.leader import ElectionConfig, FencedError, LeaderElector, LeaseFence, LeaseRecord
from northflank_llm_operator.northflank import NorthflankClient
from northflank_llm_operator.resource import ResourceKey
from northflank_llm_operator.settings import OperatorSettings
from northflank_llm_operator.status import Event
from tests.unit.payloads import full_deployment
from tests.unit.test_leader import FakeClock, MemoryLeaseStore, leading, until

# -- the fence itself ------------------------------------------------------------------------------


def test_the_fence_closes_a_renew_deadline_after_the_start_of_the_last_successful_renewal() -> None:
    clock = FakeClock()
    fence = LeaseFence(10, clock=clock)
    assert not fence.valid()  # a standby never held the Lease
    fence.renewed(clock.now)
    clock.now += 9.99
    assert fence.valid()
    assert fence.remaining() == pytest.approx(0.01)
    clock.now += 0.01
    assert not fence.valid()
    assert fence.remaining() == 0
    fence.renewed(clock.now - 5)  # an attempt that started 5 s ago and just succeeded
    assert fence.remaining() == pytest.approx(5)
    fence.renewed(clock.now - 8)  # an older attempt answered late never shortens it...
    assert fence.remaining() == pytest.approx(5)
    fence.revoke()  # ...but losing or releasing the Lease closes it at once
    assert not fence.valid()


def test_the_fence_counts_what_it_refused_and_without_leader_election_never_closes() -> None:
    clock = FakeClock()
    fence = LeaseFence(10, clock=clock)
    assert [fence.permit(), fence.permit()] == [False, False]
    fence.renewed(clock.now)
    assert fence.permit()
    assert fence.refused == 2
    unfenced = LeaseFence.unfenced()
    unfenced.revoke()
    assert unfenced.valid()
    assert unfenced.permit()
    assert unfenced.remaining() == math.inf


# -- the election, paused ---------------------------------------------------------------------------


class CountingStore(MemoryLeaseStore):
    """Counts every call, and can hold an update until released (a renewal in flight during a pause)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.hold_updates = False
        self.released = asyncio.Event()

    async def get(self) -> LeaseRecord | None:
        self.calls += 1
        return await super().get()

    async def update(self, record: LeaseRecord) -> LeaseRecord:
        self.calls += 1
        if self.hold_updates:
            await self.released.wait()
        return await super().update(record)


class Gate:
    """A sleep on the fake clock that does not return while the process is "stopped" (SIGSTOP):
    the clock keeps running, the code does not."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.running = asyncio.Event()
        self.running.set()

    async def sleep(self, seconds: float) -> None:
        self.clock.now += seconds
        await asyncio.sleep(0)
        await self.running.wait()


def candidate(
    store: MemoryLeaseStore, clock: FakeClock, identity: str, log: list[str], sleep: Any = None
) -> LeaderElector:
    async def started() -> None:
        log.append(f"{identity} started")

    async def stopped() -> None:
        log.append(f"{identity} stopped")

    return LeaderElector(
        store, identity, ElectionConfig(), on_started_leading=started, on_stopped_leading=stopped,
        clock=clock, wall_clock=clock.wall, sleep=sleep or clock.sleep,
    )  # fmt: skip


async def test_a_leader_paused_past_its_renew_deadline_is_fenced_before_it_runs_again() -> None:
    clock, store = FakeClock(), CountingStore()
    log: list[str] = []
    gate = Gate(clock)
    a = candidate(store, clock, "a", log, sleep=gate.sleep)
    b = candidate(store, clock, "b", log)
    task = asyncio.create_task(a.run())
    await until(lambda: leading(a))
    gate.running.clear()  # SIGSTOP
    for _ in range(5):
        await asyncio.sleep(0)
    assert not await b.try_acquire_or_renew()  # b sees a's record now...
    clock.now += 16
    assert await b.try_acquire_or_renew()  # ...and takes it a lease duration later
    # a still believes it leads (it has not run since), but its fence closed 10 s after its last renewal.
    assert leading(a)
    assert not a.fence.valid()
    calls = store.calls
    gate.running.set()  # SIGCONT
    await until(task.done)
    assert log == ["a started", "a stopped"]
    assert store.calls == calls  # not even a renewal was tried: the deadline had passed
    assert store.record is not None
    assert store.record.holder == "b"


async def test_a_renewal_sent_before_a_pause_and_answered_after_it_does_not_reopen_the_fence() -> None:
    clock, store = FakeClock(), CountingStore()
    a = candidate(store, clock, "a", [])
    assert await a.try_acquire_or_renew()
    clock.now += 2
    store.hold_updates = True
    renewal = asyncio.create_task(a.try_acquire_or_renew())
    await until(lambda: store.calls == 3)  # the create, the get, and the update now in flight
    clock.now += 30  # paused with the update on the wire; the API server stored it before the pause
    store.released.set()
    assert await renewal
    assert not a.fence.valid()


# -- the lowest layers refuse to send ---------------------------------------------------------------


async def test_the_northflank_client_sends_nothing_while_may_send_says_no() -> None:
    allowed = False
    seen: list[httpx.Request] = []
    finished: list[str] = []

    class Observer:
        def request_finished(self, endpoint: str, status_code: int | None, seconds: float) -> None:
            finished.append(endpoint)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": full_deployment()})

    client = NorthflankClient(
        "https://api.example.test", transport=httpx.MockTransport(handler), observer=Observer(),
        may_send=lambda: allowed,
    )  # fmt: skip
    async with client:
        with pytest.raises(FencedError, match="no longer holds the leader election Lease"):
            await client.list_llm_model_deployments("proj", token="nf-token")
        with pytest.raises(FencedError):
            await client.get_llm_model_deployment("proj", "dep", token="nf-token")
        assert seen == []
        assert finished == []  # nothing sent, so no request is counted either
        allowed = True
        await client.get_llm_model_deployment("proj", "dep", token="nf-token")
    assert len(seen) == 1


@pytest.fixture
async def kube_api() -> AsyncIterator[tuple[str, list[str]]]:
    """An API server stand-in that records every request and accepts status patches and Events."""
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        return web.json_response({"apiVersion": "v1", "kind": "Thing", "metadata": {"name": "x"}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def test_the_gateway_refuses_status_patches_and_events_once_the_fence_closed(
    kube_api: tuple[str, list[str]],
) -> None:
    host, seen = kube_api
    configuration = kubernetes.client.Configuration()
    configuration.host = host
    configuration.retries = 0
    clock = FakeClock()
    fence = LeaseFence(10, clock=clock)
    fence.renewed(clock.now)
    gateway = KubernetesGateway(kubernetes.client.ApiClient(configuration), instance="test", fence=fence)
    key = ResourceKey("ns", "alpha")
    event = Event("Normal", "PhaseChanged", "running")
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        await gateway.patch_status(key, {"phase": "running"})
        await gateway.create_event(key, "uid-1", event, name="alpha.1", count=1, first_timestamp=moment,
                                   last_timestamp=moment)  # fmt: skip
        await gateway.patch_event("ns", "alpha.1", count=2, last_timestamp=moment)
        assert [line.split()[0] for line in seen] == ["PATCH", "POST", "PATCH"]
        clock.now += 10  # the renew deadline passed without a renewal
        with pytest.raises(FencedError, match="status patch of ns/alpha"):
            await gateway.patch_status(key, {"phase": "crashed"})
        with pytest.raises(FencedError, match="PhaseChanged Event"):
            await gateway.create_event(key, "uid-1", event, name="alpha.2", count=1, first_timestamp=moment,
                                       last_timestamp=moment)  # fmt: skip
        with pytest.raises(FencedError, match="count of Event"):
            await gateway.patch_event("ns", "alpha.1", count=3, last_timestamp=moment)
        assert len(seen) == 3  # none was sent
        assert fence.refused == 3
        assert await gateway.read_resource(key) is not None  # reads are not writes: not fenced
        assert len(seen) == 4
    finally:
        gateway.close()


# -- the process: a lost Lease ends leadership for good ---------------------------------------------


class FakeRuntime:
    """What Leadership uses of the Runtime."""

    def __init__(self, fence: LeaseFence) -> None:
        self.fence = fence
        self.kubernetes_api = None
        self.leading = False
        self.poller_task: asyncio.Task[None] | None = None
        self.starts = 0
        self.started = asyncio.Event()
        self.metrics = self

    def set_leading(self, value: bool) -> None:
        pass

    def start(self) -> asyncio.Task[None]:
        self.starts += 1
        self.started.set()
        self.poller_task = asyncio.create_task(asyncio.sleep(3600))
        return self.poller_task

    async def stop_polling(self, grace: float | None = None) -> None:
        if self.poller_task is not None:
            self.poller_task.cancel()
            await asyncio.wait({self.poller_task})


async def leadership_with(
    monkeypatch: pytest.MonkeyPatch, store: MemoryLeaseStore, on_lost: Callable[[], None]
) -> tuple[process.Leadership, FakeRuntime]:
    settings = OperatorSettings(
        leader_elect=True, leader_election_namespace="ops", leader_election_lease_duration_seconds=0.6,
        leader_election_renew_deadline_seconds=0.4, leader_election_retry_period_seconds=0.05,
    )  # fmt: skip
    monkeypatch.setattr(process, "KubernetesLeaseStore", lambda *args, **kwargs: store)
    runtime = FakeRuntime(LeaseFence(settings.leader_election_renew_deadline_seconds))
    kopf_ready = asyncio.Event()
    kopf_ready.set()
    leadership = process.Leadership(
        runtime, settings, kopf_ready, stop_operator=lambda: None, poller_done=lambda task: None, on_lost=on_lost
    )
    return leadership, runtime


async def test_a_lost_lease_stops_polling_closes_the_fence_and_asks_the_process_to_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = MemoryLeaseStore()
    lost: list[bool] = []
    leadership, runtime = await leadership_with(monkeypatch, store, lambda: lost.append(True))
    campaign = asyncio.create_task(leadership.run())
    async with asyncio.timeout(10):
        await runtime.started.wait()
        assert runtime.fence.valid()
        store.broken = True  # the API server stops answering: no renewal succeeds any more
        await campaign  # returns (it does not campaign again)
    assert lost == [True]
    assert leadership.lost_lease
    assert not runtime.leading
    assert not runtime.fence.valid()
    assert runtime.poller_task is not None
    assert runtime.poller_task.cancelled()
    assert runtime.starts == 1


async def test_a_graceful_step_down_is_not_a_lost_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryLeaseStore()
    lost: list[bool] = []
    leadership, runtime = await leadership_with(monkeypatch, store, lambda: lost.append(True))
    campaign = asyncio.create_task(leadership.run())
    async with asyncio.timeout(10):
        await runtime.started.wait()
        await leadership.step_down()
    assert campaign.cancelled()
    assert lost == []
    assert not leadership.lost_lease
    assert not runtime.fence.valid()
    assert store.record is not None
    assert store.record.holder is None  # released for a standby


def test_the_shutdown_deadline_after_a_lost_lease_exits_non_zero(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    exits: list[int] = []
    monkeypatch.setattr(os, "_exit", exits.append)
    watchdog = process.ShutdownWatchdog(3600)
    watchdog.arm(exit_code=1, cause="losing the leader election Lease")
    watchdog.arm()  # a SIGTERM meanwhile does not turn it into a clean exit
    assert watchdog._timer is not None
    watchdog._timer.cancel()
    watchdog._expire()
    assert exits == [1]
    assert "Did not stop within 3600s of losing the leader election Lease" in caplog.text


async def test_the_signal_chain_keeper_ends_once_the_deadline_is_armed() -> None:
    """kopf waits up to 5 s at exit for tasks started after it; a keeper that never ended made every
    stop, a lost Lease's too, 5 s slower (the paused-leader test then missed its exit deadline in CI)."""
    watchdog = process.ShutdownWatchdog(3600)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    keeper = asyncio.create_task(watchdog.keep_chained())
    try:
        await asyncio.sleep(0)
        assert not keeper.done()
        watchdog.arm(exit_code=1, cause="losing the leader election Lease")
        async with asyncio.timeout(5 * process._RECHAIN_SECONDS):
            await keeper
    finally:
        keeper.cancel()
        if watchdog._timer is not None:
            watchdog._timer.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def test_a_lost_lease_deadline_is_short_and_replaces_a_later_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a lost Lease there is nothing left to finish: the process exits within a few seconds even
    when something in its clean stop hangs (a SIGTERM's longer deadline armed first does not hold it)."""
    exited = threading.Event()
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        exited.set()

    monkeypatch.setattr(os, "_exit", fake_exit)
    watchdog = process.ShutdownWatchdog(3600)
    watchdog.arm()  # SIGTERM first: an hour
    watchdog.arm(exit_code=1, cause="losing the leader election Lease", within=0.2)
    watchdog.arm(within=30)  # a later, longer deadline does not replace the short one
    try:
        assert exited.wait(10), "the short deadline did not fire"
    finally:
        assert watchdog._timer is not None
        watchdog._timer.cancel()
    assert codes == [1]


async def test_a_lost_lease_arms_the_exit_before_it_waits_for_polling_to_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopping the poll loop can hang (a worker whose cancel Python 3.11's wait_for swallowed): the
    process must be on its way out before that wait, and the wait itself is bounded."""
    store = MemoryLeaseStore()
    lost: list[bool] = []
    leadership, runtime = await leadership_with(monkeypatch, store, lambda: lost.append(True))
    graces: list[float | None] = []
    stopping = asyncio.Event()

    async def stop_polling_that_hangs(grace: float | None = None) -> None:
        graces.append(grace)
        stopping.set()
        await asyncio.sleep(3600 if grace is None else grace)

    monkeypatch.setattr(runtime, "stop_polling", stop_polling_that_hangs)
    campaign = asyncio.create_task(leadership.run())
    try:
        async with asyncio.timeout(10):
            await runtime.started.wait()
            store.broken = True  # no renewal succeeds any more
            await stopping.wait()
        assert lost == [True], "the exit was not armed before waiting for polling to stop"
        assert graces == [process.LOST_LEASE_EXIT_SECONDS]
    finally:
        campaign.cancel()
        await asyncio.gather(campaign, return_exceptions=True)
