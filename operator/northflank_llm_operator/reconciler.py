"""The reconciler: for one resource key, make its status say what the observer knows. The one place
that writes status and records Events.

``reconcile(key)`` is level-triggered and idempotent: it reads the resource from the registry, tells
the observer what to observe for it, maps the newest outcome through the pure status mapping
(:func:`~.status.compute_status`), judges staleness on the clock, sends a minimal merge patch only
when something changed, and says when to look again (the stale deadline). A failed write raises,
and the work queue retries it with backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pydantic

from .kube import ResourceGoneError, StatusConflictError, StatusRejectedError
from .management import ForProvider
from .manager import Manager, MetadataConflict, MetadataWriter
from .northflank.client import summarize_validation_error
from .northflank.writer import NorthflankWriter
from .observer import Observer, View
from .registry import Registry, TrackedResource
from .resource import LLMModelDeploymentSpec, ResourceKey
from .settings import OperatorSettings
from .status import (
    INTERNAL_ERROR,
    PAUSED,
    STATUS_REJECTED,
    Event,
    Failure,
    Outcome,
    StatusUpdate,
    Timing,
    compute_staleness,
    compute_status,
    fallback_status,
)

logger = logging.getLogger(__name__)

#: Reason of the status of a resource whose spec the operator cannot use.
INVALID_SPEC = "InvalidSpec"


class StatusWriter(Protocol):
    async def patch_status(
        self, key: ResourceKey, patch: Mapping[str, Any], *, uid: str | None = None, resource_version: str | None = None
    ) -> Mapping[str, Any]: ...


class EventSink(Protocol):
    """Records one Event (the correlating :class:`~.events.EventRecorder`); never raises."""

    async def record(self, key: ResourceKey, uid: str, event: Event) -> str: ...


class WriteObserver(Protocol):
    def status_written(self) -> None: ...


class WriteRetry(Exception):
    """The write did not happen (someone else wrote the object first): reconcile again with backoff."""


@dataclass
class Reconciler:
    registry: Registry
    observer: Observer
    kube: StatusWriter
    events: EventSink
    settings: OperatorSettings
    wall_clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    clock: Callable[[], float] = time.monotonic
    metrics: WriteObserver | None = None
    #: Management: the writer (only when the installation enables it) and the metadata side of Kubernetes.
    writer: NorthflankWriter | None = None
    metadata: MetadataWriter | None = None
    manager: Manager = field(init=False)

    def __post_init__(self) -> None:
        #: The outcome last written per resource: (uid, cache revision). Only a different one is mapped.
        self._applied: dict[ResourceKey, tuple[str, int]] = {}
        #: Events about a resource that no status change carries (an annotation that means nothing).
        self._noted: dict[ResourceKey, list[tuple[str, Event]]] = {}
        self.manager = Manager(self.registry, self.observer, self.writer, self.metadata, self._apply_management,
                               self._record, self.wall_clock)  # fmt: skip

    async def reconcile(self, key: ResourceKey) -> float | None:
        """Bring ``key``'s status up to date. Returns in how many seconds to look again (None: only
        when notified)."""
        resource = self.registry.get(key)
        if resource is None:
            self.observer.detach(key)
            self.forget(key)
            return None
        for uid, event in self._noted.pop(key, []):
            if uid == resource.uid:
                await self._record(resource, event)
        self._observe(resource)
        view = self.observer.view(key, resource.uid)
        timing = self._timing(view)
        stored = view.outcome
        applied = self._applied.get(key)
        if stored is not None and applied != (resource.uid, stored.rev):
            update = self._map(resource, stored.outcome, timing, view.handled_refresh)
            await self._apply(resource, update, timing)
            self._applied[key] = (resource.uid, stored.rev)
            if view.handled_refresh is not None:
                self.observer.refresh_answered(key, view.handled_refresh)
        elif view.observing and view.last_success is not None:
            stale = compute_staleness(resource.status, generation=resource.generation, timing=timing,
                                      cause=PAUSED.message if view.paused else view.hold_cause)  # fmt: skip
            await self._apply(resource, stale, timing)
        look = self._next_look(view, timing)
        try:
            write_again = await self.manager.manage(resource, view, timing.now)
        except MetadataConflict:
            raise WriteRetry(str(key)) from None
        if write_again is not None:
            look = write_again if look is None else min(look, write_again)
        return look

    def freshness(self, key: ResourceKey) -> tuple[datetime | None, float | None]:
        """The last success staleness is judged from, and the effective interval (metrics)."""
        resource = self.registry.get(key)
        if resource is None:
            return None, None
        view = self.observer.view(key, resource.uid)
        if not view.observing:
            return None, None
        return view.last_success, view.effective_interval

    def forget(self, key: ResourceKey) -> None:
        self._applied.pop(key, None)
        self._noted.pop(key, None)
        self.manager.forget(key)

    def note_event(self, key: ResourceKey, uid: str, event: Event) -> None:
        """Record ``event`` on the object ``uid`` when ``key`` is next reconciled."""
        self._noted.setdefault(key, []).append((uid, event))

    # -- what to observe -----------------------------------------------------------------------

    def _observe(self, resource: TrackedResource) -> None:
        key = resource.key
        try:
            spec = LLMModelDeploymentSpec.model_validate(resource.spec)
        except pydantic.ValidationError as exc:
            message = f"spec is invalid: {summarize_validation_error(exc)}"
            self.observer.reject(key, resource.uid, Failure(INVALID_SPEC, message, transient=False))
            return  # a new generation brings it back
        if resource.paused:
            self.observer.pause(key, resource.uid, resource.generation, spec)
            return
        handled = resource.status.get("lastHandledReconcileAt")
        self.observer.attach(
            key,
            resource.uid,
            resource.generation,
            spec,
            observed_before=_observed_at_generation(resource),
            refresh=resource.reconcile_requested_at,
            handled_refresh=handled if isinstance(handled, str) else None,
        )

    # -- mapping -------------------------------------------------------------------------------

    def _timing(self, view: View) -> Timing:
        return Timing(
            now=self.wall_clock(),
            heartbeat=timedelta(seconds=self.settings.status_heartbeat_seconds),
            stale_after=timedelta(seconds=self.observer.stale_limit(view.effective_interval)),
            last_success=view.last_success,
            requested_interval=view.interval,
            effective_interval=view.effective_interval,
        )

    def _map(self, resource: TrackedResource, outcome: Outcome, timing: Timing, handled: str | None) -> StatusUpdate:
        expected, for_provider = _expected_phase(resource), _for_provider(resource)
        try:
            update = compute_status(resource.status, outcome, generation=resource.generation, timing=timing,
                                    expected_phase=expected, handled_reconcile_at=handled,
                                    for_provider=for_provider)  # fmt: skip
            return self.manager.with_management(resource, update, timing.now)
        except Exception:
            # A bug, or an answer too hostile to map (RecursionError on deep JSON, ...): say so.
            logger.exception("Mapping the outcome for %s to a status failed", resource.key)
        failure = Failure(INTERNAL_ERROR, "The operator failed to map Northflank's answer; see its log.", True)
        try:
            return compute_status(resource.status, failure, generation=resource.generation, timing=timing,
                                  expected_phase=expected, handled_reconcile_at=handled,
                                  for_provider=for_provider)  # fmt: skip
        except Exception:
            return fallback_status(resource.status, failure, generation=resource.generation, timing=timing)

    def _next_look(self, view: View, timing: Timing) -> float | None:
        """When the status may go stale (or credentials are to be read again), whichever is first."""
        looks = [view.retry_in] if view.retry_in is not None else []
        if view.observing and view.last_success is not None:
            remaining = (view.last_success + timing.stale_after - timing.now).total_seconds()
            if remaining > 0:
                looks.append(remaining + 0.5)
        return min(looks) if looks else None

    # -- writing -------------------------------------------------------------------------------

    async def _apply(self, resource: TrackedResource, update: StatusUpdate, timing: Timing) -> None:
        if not update.patch:
            return
        try:
            stored = await self._write(resource, update.patch)
        except StatusRejectedError as exc:
            # The API server will never take this status (a number beyond int64, over etcd's size
            # limit ...): replace it with a small one that only says why, so Ready stops saying True.
            logger.error("The API server refused the status of %s (%s); writing only the conditions", resource.key, exc)
            failure = Failure(
                STATUS_REJECTED,
                f"The API server refused the observed status (HTTP {exc.status}: {exc.message}).",
                transient=True,
            )
            update = fallback_status(resource.status, failure, generation=resource.generation, timing=timing)
            if not update.patch:
                return
            stored = await self._write(resource, update.patch)
        if stored is None:
            return
        self.registry.record_written(resource.key, stored)
        if self.metrics is not None:
            self.metrics.status_written()
        for event in update.events:
            await self._record(resource, event)

    async def _apply_management(self, resource: TrackedResource, update: StatusUpdate) -> None:
        await self._apply(resource, update, self._timing(self.observer.view(resource.key, resource.uid)))

    async def _record(self, resource: TrackedResource, event: Event) -> None:
        # Transitions only (never every poll), so this log stays readable with thousands of resources.
        level = logging.WARNING if event.type == "Warning" else logging.INFO
        logger.log(level, "%s: %s: %s", resource.key, event.reason, event.message)
        # The same object, reason and message within 10 minutes counts up on the existing Event.
        await self.events.record(resource.key, resource.uid, event)

    async def _write(self, resource: TrackedResource, patch: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """Write ``patch`` to exactly the object that was read (its uid at its resourceVersion)."""
        try:
            return await self.kube.patch_status(
                resource.key, patch, uid=resource.uid, resource_version=resource.resource_version or None
            )
        except ResourceGoneError:
            # Forget only the object that is gone: a late 404 or conflict for a deleted object must not
            # drop one re-created under the same name meanwhile.
            self.registry.forget(resource.key, uid=resource.uid)
            return None
        except StatusConflictError as exc:
            # Someone else wrote the object since it was read: map the outcome again onto what it is now.
            self.registry.observe("MODIFIED", exc.current)
            raise WriteRetry(str(resource.key)) from None


def _observed_at_generation(resource: TrackedResource) -> bool:
    """Whether the stored status already describes this generation (the operator restarted)."""
    status = resource.status
    return status.get("observedGeneration") == resource.generation and status.get("phase", "unknown") != "unknown"


def _expected_phase(resource: TrackedResource) -> str:
    # The spec was validated before it was observed; an older or odd value means the default.
    expected = resource.spec.get("expectedPhase")
    return expected if expected in ("running", "paused") else "running"


def _for_provider(resource: TrackedResource) -> ForProvider | None:
    raw = resource.spec.get("forProvider")
    if raw is None:
        return None
    try:
        return ForProvider.model_validate(raw)
    except pydantic.ValidationError:
        # The CRD types forProvider; only an object stored under an older schema gets here: no drift
        # is shown rather than a wrong one.
        return None
