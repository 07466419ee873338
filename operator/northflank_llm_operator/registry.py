"""In-memory view of the LLMModelDeployment resources the operator polls, fed by kopf's watch."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .resource import ResourceKey


@dataclass
class TrackedResource:
    key: ResourceKey
    uid: str
    generation: int
    spec: Mapping[str, Any]
    #: The status as last seen from the API server (watch event or our own write's response).
    status: Mapping[str, Any]
    resource_version: str
    next_due: float
    last_success: datetime | None = None
    consecutive_failures: int = 0
    in_flight: bool = False


def _newer(candidate: str, known: str) -> bool:
    """Whether a watch body is at least as new as what we hold.

    resourceVersions are opaque by contract; kube-apiserver's are etcd revisions, so compare them as
    integers when both parse, which stops a late watch event from rolling back our own write.
    """
    try:
        return int(candidate) >= int(known)
    except ValueError:
        return True


class Registry:
    """Tracks resources and when each is next due; wakes the poller when that changes."""

    def __init__(
        self,
        clock: Callable[[], float],
        first_delay: Callable[[Mapping[str, Any]], float] = lambda _: 0.0,
    ) -> None:
        self._clock = clock
        self._first_delay = first_delay
        self._resources: dict[ResourceKey, TrackedResource] = {}
        self.changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._resources)

    def get(self, key: ResourceKey) -> TrackedResource | None:
        return self._resources.get(key)

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Apply one watch event (``None`` is kopf's initial listing)."""
        metadata = body.get("metadata", {})
        key = ResourceKey(namespace=metadata.get("namespace", ""), name=metadata.get("name", ""))
        if event_type == "DELETED" or metadata.get("deletionTimestamp"):
            self._resources.pop(key, None)
            return
        uid = str(metadata.get("uid", ""))
        generation = int(metadata.get("generation") or 0)
        resource_version = str(metadata.get("resourceVersion", ""))
        existing = self._resources.get(key)
        if existing is None or existing.uid != uid:
            self._resources[key] = TrackedResource(
                key=key,
                uid=uid,
                generation=generation,
                spec=dict(body.get("spec") or {}),
                status=dict(body.get("status") or {}),
                resource_version=resource_version,
                next_due=self._clock() + self._first_delay(body),
            )
            self.changed.set()
            return
        if not _newer(resource_version, existing.resource_version):
            return
        existing.status = dict(body.get("status") or {})
        existing.resource_version = resource_version
        if generation != existing.generation:
            # The spec changed (credentials, interval): observe again now rather than at the old due time.
            existing.generation = generation
            existing.spec = dict(body.get("spec") or {})
            existing.next_due = self._clock()
            self.changed.set()

    def record_written(self, key: ResourceKey, stored: Mapping[str, Any]) -> None:
        """Remember what the API server stored after our status write."""
        resource = self._resources.get(key)
        if resource is None:
            return
        metadata = stored.get("metadata", {})
        resource_version = str(metadata.get("resourceVersion", ""))
        if _newer(resource_version, resource.resource_version):
            resource.status = dict(stored.get("status") or {})
            resource.resource_version = resource_version

    def forget(self, key: ResourceKey) -> None:
        self._resources.pop(key, None)

    def take_due(self, now: float) -> list[TrackedResource]:
        """Resources due by ``now`` that are not already being polled, marked in flight."""
        due = [r for r in self._resources.values() if not r.in_flight and r.next_due <= now]
        for resource in due:
            resource.in_flight = True
        return due

    def next_due(self) -> float | None:
        pending = [r.next_due for r in self._resources.values() if not r.in_flight]
        return min(pending) if pending else None
