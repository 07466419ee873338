"""Event aggregation (events.py): the correlator on a fake clock, the recorder against a fake gateway."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from northflank_llm_operator.events import EventCorrelator, EventRecorder, event_name
from northflank_llm_operator.resource import ResourceKey
from northflank_llm_operator.status import Event

FAILED = Event("Warning", "InvalidResponse", "Northflank answered with a malformed body.")
KEY = ResourceKey("team-a", "llama")
UID = "uid-1"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class StoredEvent:
    key: ResourceKey
    uid: str
    event: Event
    count: int
    first: datetime
    last: datetime


@dataclass
class FakeGateway:
    """core/v1 Events by name, as the API server would keep them, and every call made."""

    events: dict[str, StoredEvent] = field(default_factory=dict)
    creates: int = 0
    patches: int = 0
    #: Each create waits for this (when set), so a test can hold one in flight.
    release: asyncio.Event | None = None

    async def create_event(
        self,
        key: ResourceKey,
        uid: str,
        event: Event,
        *,
        name: str,
        count: int,
        first_timestamp: datetime,
        last_timestamp: datetime,
    ) -> bool:
        self.creates += 1
        if self.release is not None:
            await self.release.wait()
        if name in self.events:
            return False
        self.events[name] = StoredEvent(key, uid, event, count, first_timestamp, last_timestamp)
        return True

    async def patch_event(self, namespace: str, name: str, *, count: int, last_timestamp: datetime) -> bool:
        self.patches += 1
        stored = self.events.get(name)
        if stored is None or stored.key.namespace != namespace:
            return False
        stored.count, stored.last = count, last_timestamp
        return True


def recorder(**options: object) -> tuple[EventRecorder, FakeGateway, Clock]:
    clock = Clock()
    gateway = FakeGateway()
    return EventRecorder(gateway, EventCorrelator(clock, **options)), gateway, clock  # type: ignore[arg-type]


async def test_two_thousand_identical_failures_in_ten_minutes_are_one_event_with_their_count() -> None:
    # A spam burst as large as the test's occurrences, so that every one of them is written.
    events, gateway, clock = recorder(spam_burst=2_000)
    outcomes = []
    for _ in range(2_000):
        outcomes.append(await events.record(KEY, UID, FAILED))
        clock.advance(0.3)  # 2,000 failures in 600 s
    assert outcomes.count("created") == 1
    assert outcomes.count("patched") == 1_999
    (stored,) = gateway.events.values()
    assert stored.count == 2_000
    assert stored.last - stored.first == timedelta(seconds=0.3 * 1_999)
    assert (stored.event, stored.uid) == (FAILED, UID)


async def test_the_spam_filter_lets_one_object_write_25_times_then_once_every_five_minutes() -> None:
    events, gateway, clock = recorder()
    outcomes = [await events.record(KEY, UID, FAILED) for _ in range(2_000)]
    assert outcomes.count("created") == 1
    assert outcomes.count("patched") == 24
    assert outcomes.count("suppressed") == 1_975
    (stored,) = gateway.events.values()
    assert stored.count == 25
    clock.advance(299)
    assert await events.record(KEY, UID, FAILED) == "suppressed"
    clock.advance(1)
    # The held-back occurrences were counted: the next write carries the true total.
    assert await events.record(KEY, UID, FAILED) == "patched"
    assert stored.count == 2_002
    assert gateway.creates + gateway.patches == 26


async def test_the_spam_filter_is_per_object_and_type() -> None:
    events, gateway, _ = recorder(spam_burst=2)
    other = ResourceKey("team-a", "mistral")
    assert [await events.record(KEY, UID, Event("Warning", "R", f"m{i}")) for i in range(3)] == [
        "created",
        "created",
        "suppressed",
    ]
    assert await events.record(other, "uid-2", FAILED) == "created"
    assert await events.record(KEY, UID, Event("Normal", "SyncRecovered", "ok")) == "created"
    assert len(gateway.events) == 4


async def test_after_ten_quiet_minutes_the_same_failure_is_a_new_event() -> None:
    events, gateway, clock = recorder()
    assert await events.record(KEY, UID, FAILED) == "created"
    clock.advance(600)
    assert await events.record(KEY, UID, FAILED) == "patched"  # within 10 minutes of the last one
    clock.advance(600.001)
    assert await events.record(KEY, UID, FAILED) == "created"
    assert sorted(stored.count for stored in gateway.events.values()) == [1, 2]


async def test_a_clock_that_goes_backwards_starts_a_new_event() -> None:
    events, gateway, clock = recorder()
    await events.record(KEY, UID, FAILED)
    clock.advance(-60)
    assert await events.record(KEY, UID, FAILED) == "created"
    assert len(gateway.events) == 2


async def test_different_messages_reasons_types_and_objects_are_different_events() -> None:
    events, gateway, _ = recorder()
    variants = [
        (KEY, UID, FAILED),
        (KEY, UID, Event("Warning", "InvalidResponse", "Northflank answered with HTTP 502.")),
        (KEY, UID, Event("Warning", "ServerError", FAILED.message)),
        (KEY, UID, Event("Normal", "InvalidResponse", FAILED.message)),
        (ResourceKey("team-a", "mistral"), "uid-2", FAILED),
        (ResourceKey("team-b", "llama"), "uid-3", FAILED),
        (KEY, "uid-re-created", FAILED),  # deleted and re-created under the same name
    ]
    for variant in variants:
        assert await events.record(*variant) == "created"
    assert len(gateway.events) == len(variants)
    for variant in variants:
        assert await events.record(*variant) == "patched"
    assert {stored.count for stored in gateway.events.values()} == {2}


async def test_the_least_recently_used_events_are_forgotten_beyond_the_bound() -> None:
    clock = Clock()
    correlator = EventCorrelator(clock, max_keys=3)
    gateway = FakeGateway()
    events = EventRecorder(gateway, correlator)
    keys = [ResourceKey("team-a", f"model-{i}") for i in range(4)]
    for key in keys[:3]:
        await events.record(key, UID, FAILED)
    await events.record(keys[0], UID, FAILED)  # model-0 is used again: model-1 is now the oldest
    await events.record(keys[3], UID, FAILED)
    assert len(correlator) == 3
    clock.advance(1)
    assert await events.record(keys[0], UID, FAILED) == "patched"
    assert await events.record(keys[1], UID, FAILED) == "created"  # forgotten: a new Event
    assert len(gateway.events) == 5
    for i in range(1_000):
        await events.record(ResourceKey("team-a", f"burst-{i}"), UID, FAILED)
    assert len(correlator) == 3


async def test_an_event_that_expired_on_the_api_server_is_created_again_with_its_count() -> None:
    events, gateway, _ = recorder()
    await events.record(KEY, UID, FAILED)
    gateway.events.clear()  # the API server's event TTL (one hour by default) removed it
    assert await events.record(KEY, UID, FAILED) == "created"
    (stored,) = gateway.events.values()
    assert stored.count == 2
    assert await events.record(KEY, UID, FAILED) == "patched"
    assert stored.count == 3


async def test_a_failed_create_is_retried_by_the_next_occurrence_with_the_full_count() -> None:
    events, gateway, _ = recorder()
    broken = gateway.create_event

    async def refuse(*args: object, **kwargs: object) -> bool:
        raise OSError("API server unreachable")

    gateway.create_event = refuse  # type: ignore[method-assign]
    assert await events.record(KEY, UID, FAILED) == "failed"
    gateway.create_event = broken  # type: ignore[method-assign]
    assert await events.record(KEY, UID, FAILED) == "created"
    (stored,) = gateway.events.values()
    assert stored.count == 2


async def test_writes_of_one_event_are_serialized_so_the_count_never_goes_backwards() -> None:
    events, gateway, clock = recorder()
    gateway.release = asyncio.Event()
    first = asyncio.create_task(events.record(KEY, UID, FAILED))
    await asyncio.sleep(0)  # the create is in flight
    later = []
    for _ in range(3):
        clock.advance(1)
        later.append(asyncio.create_task(events.record(KEY, UID, FAILED)))
    await asyncio.sleep(0)
    assert gateway.creates == 1, "the others wait for the create instead of creating a second Event"
    gateway.release.set()
    assert await asyncio.gather(first, *later) == ["created", "patched", "patched", "patched"]
    (stored,) = gateway.events.values()
    assert (stored.count, stored.last) == (4, clock.now)
    assert len(events) == 0, "no lock is kept once nothing is in flight"


async def test_a_create_answered_409_means_it_landed_before_and_is_patched_to_the_count() -> None:
    events, gateway, clock = recorder()
    name = event_name(("team-a", "llama", UID, FAILED.type, FAILED.reason, FAILED.message), clock.now)
    gateway.events[name] = StoredEvent(KEY, UID, FAILED, 1, clock.now, clock.now)  # a lost answer's create
    assert await events.record(KEY, UID, FAILED) == "patched"
    assert await events.record(KEY, UID, FAILED) == "patched"
    assert gateway.events[name].count == 2
    assert gateway.creates == 1


@pytest.mark.parametrize(
    ("object_name", "expected_prefix"),
    [("llama", "llama"), ("Odd_Name", "odd-name"), ("a" * 253, "a" * 236), ("-.x.-", "x")],
)
def test_event_names_are_dns_subdomains_of_bounded_length(object_name: str, expected_prefix: str) -> None:
    name = event_name(("ns", object_name, UID, "Warning", "R", "m"), datetime(2026, 1, 1, tzinfo=UTC))
    prefix, _, digest = name.rpartition(".")
    assert prefix == expected_prefix
    assert len(digest) == 16
    assert len(name) <= 253
