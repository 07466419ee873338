"""A work queue of resource keys with client-go's semantics, for one event loop.

- A key waits at most once (adding it again while it waits is a no-op: deduplication).
- A key is handed to at most one worker at a time; added again while a worker has it, it is handed
  out again after that worker calls :meth:`WorkQueue.done` (serialization per key).
- :meth:`add_after` hands a key out later (the earliest asked moment wins); :meth:`add_rate_limited`
  does so with a per-key exponential backoff that :meth:`forget` resets (failed writes).

Pure bookkeeping with an injected clock: whoever drives it calls :meth:`promote` with the time and
takes keys with :meth:`take`; :attr:`ready` wakes workers waiting for one.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, clock: Callable[[], float], *, base_delay: float = 0.5, max_delay: float = 300.0) -> None:
        self._clock = clock
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._queue: deque[K] = deque()
        #: Keys waiting to be handed out (in ``_queue``, or to be re-queued when their worker is done).
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._later: list[tuple[float, int, K]] = []
        self._later_at: dict[K, float] = {}
        self._seq = itertools.count()
        self._failures: dict[K, int] = {}
        #: Set while a key can be taken.
        self.ready = asyncio.Event()
        #: Set when a delayed key became due sooner than any before it (whoever promotes must look again).
        self.sooner = asyncio.Event()

    def __len__(self) -> int:
        return len(self._dirty)

    @property
    def busy(self) -> bool:
        """Whether a key waits to be taken or is being processed."""
        return bool(self._queue) or bool(self._processing)

    def add(self, key: K) -> None:
        self._later_at.pop(key, None)  # handed out now: an earlier delayed add is settled by it
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self.ready.set()

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        when = self._clock() + delay
        known = self._later_at.get(key)
        if known is not None and known <= when:
            return
        due = self.next_due()
        self._later_at[key] = when
        heapq.heappush(self._later, (when, next(self._seq), key))
        if due is None or when < due:
            self.sooner.set()

    def add_rate_limited(self, key: K) -> float:
        """Hand ``key`` out again after its backoff (0.5, 1, 2 … s, capped); returns the delay."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = min(self._max_delay, self._base_delay * 2.0**failures)
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """``key`` succeeded: its next failure starts the backoff from the beginning."""
        self._failures.pop(key, None)

    def discard(self, key: K) -> None:
        """Drop everything known about ``key`` (the resource is gone); a worker holding it finishes."""
        self._failures.pop(key, None)
        self._later_at.pop(key, None)

    def promote(self) -> None:
        """Hand out the delayed keys whose moment has come."""
        now = self._clock()
        while self._later and self._later[0][0] <= now:
            when, _, key = heapq.heappop(self._later)
            if self._later_at.get(key) == when:
                del self._later_at[key]
                self.add(key)

    def next_due(self) -> float | None:
        """The earliest moment a delayed key is due."""
        while self._later and self._later_at.get(self._later[0][2]) != self._later[0][0]:
            heapq.heappop(self._later)
        return self._later[0][0] if self._later else None

    def take(self) -> K | None:
        """The next key to process (the caller must call :meth:`done` with it), or None."""
        if not self._queue:
            self.ready.clear()
            return None
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        if not self._queue:
            self.ready.clear()
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self.ready.set()

    def delayed(self, key: K) -> float | None:
        """When ``key`` is due, if it waits for a delayed add (tests and introspection)."""
        return self._later_at.get(key)
