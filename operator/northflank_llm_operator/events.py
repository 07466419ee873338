"""Event aggregation, as client-go's EventCorrelator does it (tools/record/events_cache.go).

A blip that fails 2,000 resources, or one resource failing the same way on every retry, must not
create an Event per occurrence. The same Event (object, type, reason, message) seen again within
``window`` of its last occurrence increments ``count`` and moves ``lastTimestamp`` on the existing
core/v1 Event (one PATCH) instead of creating another. A token bucket per object and type (client-go's
spam filter: burst 25, one more every 5 minutes) bounds how often one object can write at all; an
occurrence it holds back is still counted, so the next write carries the true total. Both caches are
LRU-bounded, so memory does not grow with the number of objects ever seen.

:class:`EventCorrelator` is pure (an injected clock, no I/O); :class:`EventRecorder` performs its
decisions through the Kubernetes gateway, one write at a time per Event.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, Literal, Protocol, TypeVar

from .resource import ResourceKey
from .status import Event

logger = logging.getLogger(__name__)

#: client-go's defaults (maxLruCacheEntries, defaultAggregateIntervalInSeconds, defaultSpamBurst/QPS).
MAX_KEYS = 4096
WINDOW = timedelta(minutes=10)
SPAM_BURST = 25
SPAM_REFILL = timedelta(minutes=5)
#: Event names must be DNS subdomains: at most 253 characters.
_MAX_NAME = 253
_DIGEST_CHARS = 16

#: (namespace, name, uid, type, reason, message): what makes two Events "the same".
CorrelationKey = tuple[str, str, str, str, str, str]
Outcome = Literal["created", "patched", "suppressed", "failed"]
K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class EventWrite:
    """One write the correlator asks for: create the Event ``name``, or patch its count and time."""

    key: CorrelationKey
    create: bool
    name: str
    count: int
    first_timestamp: datetime
    last_timestamp: datetime


@dataclass
class _Occurrences:
    name: str
    count: int
    first: datetime
    last: datetime
    #: Whether the Event exists on the API server (its create succeeded).
    exists: bool = False


@dataclass
class _Bucket:
    tokens: float
    at: datetime


class _Lru(Generic[K, V]):
    """A dict bounded to ``size`` entries, dropping the least recently used."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("an LRU cache needs room for at least one entry")
        self._size = size
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)


def correlation_key(key: ResourceKey, uid: str, event: Event) -> CorrelationKey:
    return (key.namespace, key.name, uid, event.type, event.reason, event.message)


def event_name(key: CorrelationKey, first: datetime) -> str:
    """A name per Event and first occurrence, as client-go names them (``<object>.<hex>``): a create
    retried after a timeout meets its own Event (409) instead of making a second one."""
    seed = "\x00".join((*key, first.isoformat()))
    digest = hashlib.sha256(seed.encode()).hexdigest()[:_DIGEST_CHARS]
    # Custom resources' names are DNS subdomains already; this only guards the length and odd names.
    prefix = re.sub(r"[^a-z0-9.-]", "-", key[1].lower())[: _MAX_NAME - _DIGEST_CHARS - 1].strip(".-")
    return f"{prefix or 'event'}.{digest}"


class EventCorrelator:
    """Decides, for each Event the operator wants to record, whether to create it, patch the existing
    one or hold it back. Pure: ``clock`` is the only source of time."""

    def __init__(
        self,
        clock: Callable[[], datetime],
        *,
        max_keys: int = MAX_KEYS,
        window: timedelta = WINDOW,
        spam_burst: int = SPAM_BURST,
        spam_refill: timedelta = SPAM_REFILL,
    ) -> None:
        self._clock = clock
        self._window = window
        self._burst = spam_burst
        self._refill_per_second = 1 / spam_refill.total_seconds()
        self._occurrences: _Lru[CorrelationKey, _Occurrences] = _Lru(max_keys)
        self._buckets: _Lru[tuple[str, str, str, str], _Bucket] = _Lru(max_keys)

    def observe(self, key: ResourceKey, uid: str, event: Event) -> EventWrite | None:
        """Count one occurrence; the write to make for it, or None when the spam filter holds it back."""
        now = self._clock()
        ckey = correlation_key(key, uid, event)
        seen = self._occurrences.get(ckey)
        # A clock that went backwards also starts a new Event: better one too many than a lost one.
        if seen is None or not timedelta(0) <= now - seen.last <= self._window:
            seen = _Occurrences(name=event_name(ckey, now), count=0, first=now, last=now)
        seen.count += 1
        seen.last = now
        self._occurrences.put(ckey, seen)
        if not self._take_token((key.namespace, key.name, uid, event.type), now):
            return None
        return EventWrite(ckey, not seen.exists, seen.name, seen.count, seen.first, now)

    def created(self, write: EventWrite) -> None:
        """The Event of ``write`` exists on the API server now: further occurrences patch it."""
        seen = self._occurrences.get(write.key)
        if seen is not None and seen.name == write.name:
            seen.exists = True

    def lost(self, write: EventWrite) -> EventWrite:
        """The Event of ``write`` is gone (expired by the API server's event TTL, or deleted): the
        write to make instead, a create of the same Event with the count so far."""
        seen = self._occurrences.get(write.key)
        if seen is not None and seen.name == write.name:
            seen.exists = False
        return dataclasses.replace(write, create=True)

    def _take_token(self, key: tuple[str, str, str, str], now: datetime) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(self._burst), now)
        elapsed = max((now - bucket.at).total_seconds(), 0.0)
        bucket.tokens = min(float(self._burst), bucket.tokens + elapsed * self._refill_per_second)
        bucket.at = now
        self._buckets.put(key, bucket)
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def __len__(self) -> int:
        """Events remembered (at most ``max_keys``)."""
        return len(self._occurrences)


class EventSink(Protocol):
    """What the recorder needs of the Kubernetes gateway."""

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
        """Create the Event; False when one of that name exists already (409)."""
        ...

    async def patch_event(self, namespace: str, name: str, *, count: int, last_timestamp: datetime) -> bool:
        """Set the Event's count and lastTimestamp; False when it does not exist (404)."""
        ...


class EventRecorder:
    """Records Events through the correlator: one create per Event and window, then count patches.

    Writes of one Event are serialized (in the order observed), so a slow create is never overtaken
    by a patch and a count never goes backwards. Failures are logged, never raised: an Event is not
    worth failing a status write for.
    """

    def __init__(self, sink: EventSink, correlator: EventCorrelator) -> None:
        self._sink = sink
        self._correlator = correlator
        self._locks: dict[CorrelationKey, asyncio.Lock] = {}
        self._waiting: dict[CorrelationKey, int] = {}

    async def record(self, key: ResourceKey, uid: str, event: Event) -> Outcome:
        write = self._correlator.observe(key, uid, event)
        if write is None:
            return "suppressed"
        # No await between observe and joining the lock's FIFO queue: writes go out in observed order.
        lock = self._locks.setdefault(write.key, asyncio.Lock())
        self._waiting[write.key] = self._waiting.get(write.key, 0) + 1
        try:
            async with lock:
                return await self._perform(key, uid, event, write)
        except Exception:
            logger.warning("Could not record event %s on %s", event.reason, key, exc_info=True)
            return "failed"
        finally:
            self._waiting[write.key] -= 1
            if not self._waiting[write.key]:
                del self._waiting[write.key]
                del self._locks[write.key]

    async def _perform(self, key: ResourceKey, uid: str, event: Event, write: EventWrite) -> Outcome:
        if not write.create:
            if await self._sink.patch_event(
                key.namespace, write.name, count=write.count, last_timestamp=write.last_timestamp
            ):
                return "patched"
            write = self._correlator.lost(write)
        created = await self._sink.create_event(
            key,
            uid,
            event,
            name=write.name,
            count=write.count,
            first_timestamp=write.first_timestamp,
            last_timestamp=write.last_timestamp,
        )
        self._correlator.created(write)
        if created:
            return "created"
        # 409: an earlier create of this Event landed after all (its answer was lost): bring it up to date.
        await self._sink.patch_event(key.namespace, write.name, count=write.count, last_timestamp=write.last_timestamp)
        return "patched"

    def __len__(self) -> int:
        """Events with a write waiting or in flight."""
        return len(self._locks)
