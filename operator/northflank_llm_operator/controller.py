"""Wires the observer, the work queue and the reconciler into one loop, the way controller-runtime does.

```
registry changes ──┐
observer answers ──┼──► work queue (dedup per key, one worker per key, requeue-after, backoff)
stale deadlines ───┘              │
                                  ▼
                    reconcile(key), 16 workers ──► status patch + Events, only on change
```

The loop itself only moves keys and starts work; it never awaits Kubernetes or Northflank. A
periodic resync (a Kubernetes listing, in a task of its own) finds resources deleted while the watch
was not looking.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from .credentials import CredentialResolver
from .events import EventCorrelator, EventRecorder
from .kube import KubernetesGateway
from .northflank import FencedError, NorthflankClient
from .northflank.writer import NorthflankWriter
from .observer import Observer
from .planner import Planner
from .reconciler import EventSink, Reconciler, WriteRetry
from .registry import Registry, not_newer
from .resource import ResourceKey
from .settings import OperatorSettings
from .workqueue import WorkQueue

logger = logging.getLogger(__name__)

#: Resources reconciled at once (the Kubernetes gateway has as many worker threads).
RECONCILE_WORKERS = 16
#: How long stopping waits for the workers and the observer's tasks (they are cancelled first).
STOP_GRACE_SECONDS = 2.0
#: Distinct Events the correlator remembers (about 0.8 KB each): two per resource of a 4,000-resource fleet.
EVENT_KEYS = 8192


class Controller:
    def __init__(
        self,
        *,
        registry: Registry,
        client: NorthflankClient,
        credentials: CredentialResolver,
        kube: KubernetesGateway,
        settings: OperatorSettings,
        planner: Planner[ResourceKey] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: Any = None,
        events: EventSink | None = None,
        resync_namespaces: Sequence[str] | None = None,
        writer: NorthflankWriter | None = None,
    ) -> None:
        self._registry = registry
        self._kube = kube
        self._settings = settings
        self._clock = clock
        self.queue: WorkQueue[ResourceKey] = WorkQueue(clock)
        self.planner: Planner[ResourceKey] = planner or Planner(clock, settings.planner_config())
        self.observer = Observer(client=client, credentials=credentials, settings=settings, notify=self.queue.add,
                                 planner=self.planner, clock=clock, wall_clock=wall_clock,
                                 metrics=metrics)  # fmt: skip
        recorder = events or EventRecorder(kube, EventCorrelator(wall_clock, max_keys=EVENT_KEYS))
        # Management: the writer exists only when the installation enables it (--enable-management).
        self.reconciler = Reconciler(registry=registry, observer=self.observer, kube=kube, events=recorder,
                                     settings=settings, wall_clock=wall_clock, clock=clock,
                                     metrics=metrics, writer=writer, metadata=kube)  # fmt: skip
        self._workers: list[asyncio.Task[None]] = []
        #: Set once run() ends: a worker whose cancel was swallowed leaves its loop at the next turn.
        self._stopping = False
        self._idle = asyncio.Event()
        # Periodic resync: a deletion missed in a watch gap is found by listing (None: all namespaces).
        self._resync_namespaces = list(resync_namespaces) if resync_namespaces is not None else None
        self._next_resync = clock() + settings.resync_seconds
        self._resync_task: asyncio.Task[None] | None = None
        #: Called when a resync finds that the API server no longer serves the resource.
        self.on_unserved: Callable[[], None] | None = None

    # -- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled."""
        try:
            while True:
                await self.step()
                await self._sleep()
        finally:
            self._stopping = True
            tasks = [*self._workers, *([self._resync_task] if self._resync_task is not None else [])]
            for task in tasks:
                task.cancel()
            # Bounded: Python 3.11's wait_for can swallow a cancel (the call it awaited finished at the
            # same moment); such a worker leaves its loop at the next turn, but must not hold this stop.
            _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS) if tasks else (set(), set())
            if pending:
                logger.warning("%d reconcile workers did not stop within %gs", len(pending), STOP_GRACE_SECONDS)
            self._workers.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.observer.close(), STOP_GRACE_SECONDS)

    async def step(self) -> None:
        """One pass: queue registry changes and due keys, start due requests and Secret reads."""
        if not self._workers:
            self._workers = [asyncio.create_task(self._work(), name=f"reconcile-{i}") for i in range(RECONCILE_WORKERS)]
        now = self._clock()
        if now >= self._next_resync and (self._resync_task is None or self._resync_task.done()):
            self._next_resync = now + self._settings.resync_seconds
            self._resync_task = asyncio.create_task(self._resync(), name="resync")
        for key in self._registry.take_pending():
            self.queue.add(key)
        for resource, event in self._registry.take_pause_warnings():
            self.reconciler.note_event(resource.key, resource.uid, event)
            self.queue.add(resource.key)
        self.queue.promote()
        self.observer.step()

    async def drain(self) -> None:
        """Wait until no request is in flight and every queued key is reconciled (tests step the loop
        by hand with a fake clock)."""
        if self._resync_task is not None:
            await asyncio.gather(self._resync_task, return_exceptions=True)
        while True:
            if self.observer.busy:
                await self.observer.settle()
                continue
            for key in self._registry.take_pending():
                self.queue.add(key)
            if self.queue.busy:
                self._idle.clear()
                await self._idle.wait()
                continue
            return

    async def reconciled(self) -> None:
        """Wait until every queued key is reconciled (requests in flight may go on)."""
        while self.queue.busy:
            self._idle.clear()
            await self._idle.wait()

    def freshness(self, key: ResourceKey) -> tuple[datetime | None, float | None]:
        return self.reconciler.freshness(key)

    async def _sleep(self) -> None:
        wakes = [self.observer.next_wake(), self.queue.next_due(), self._next_resync]
        known = [w for w in wakes if w is not None]
        timeout = max(0.0, min(known) - self._clock()) if known else None
        self._registry.changed.clear()
        self.observer.wake.clear()
        self.queue.sooner.clear()
        # A worker may requeue a key for sooner than this sleep's timeout: that wakes it too.
        events = (self._registry.changed, self.observer.wake, self.queue.sooner)
        waiters = [asyncio.ensure_future(event.wait()) for event in events]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _work(self) -> None:
        while not self._stopping:
            key = self.queue.take()
            if key is None:
                if not self.queue.busy:
                    self._idle.set()
                await self.queue.ready.wait()
                continue
            try:
                delay = await self.reconciler.reconcile(key)
            except WriteRetry:
                self.queue.add_rate_limited(key)
            except FencedError:
                pass  # the Lease may be lost: nothing is written any more, and the process is on its way out
            except Exception:
                # A failed write (or a bug) must not end reconciling for everyone else: retried with backoff.
                delay_s = self.queue.add_rate_limited(key)
                logger.warning("Reconciling %s failed; retrying in %.1fs", key, delay_s, exc_info=True)
            else:
                self.queue.forget(key)
                if self._registry.get(key) is None:
                    self.queue.discard(key)
                elif delay is not None:
                    self.queue.add_after(key, delay)
            finally:
                self.queue.done(key)

    # -- resync ---------------------------------------------------------------------------------

    async def _resync(self) -> None:
        """List the resources from the API server and forget the tracked ones that are gone.

        kopf re-lists after a watch gap without reporting deletions, so a resource deleted in the gap
        would otherwise be observed forever. Only resources the listing is newer than are judged.
        """
        try:
            if self._resync_namespaces is None:
                scopes: Sequence[str | None] = [None]
            elif any(c in ns for ns in self._resync_namespaces for c in "*?[!"):
                scopes = sorted({resource.key.namespace for resource in self._registry})  # kopf globs
            else:
                scopes = list(self._resync_namespaces)
            for namespace in scopes:
                listing = await self._kube.list_resource_uids(namespace)
                if listing is None:
                    logger.error("The API server no longer serves LLMModelDeployments (the CRD is gone)")
                    self._registry.clear()
                    if self.on_unserved is not None:
                        self.on_unserved()
                    return
                found, list_version = listing
                for resource in list(self._registry):
                    if namespace is not None and resource.key.namespace != namespace:
                        continue
                    if found.get(resource.key) == resource.uid or not not_newer(
                        resource.resource_version, list_version
                    ):
                        continue
                    logger.info("%s was deleted while the watch was not looking; forgetting it", resource.key)
                    self._registry.forget(resource.key, uid=resource.uid)
        except Exception:
            logger.warning("Resync with the API server failed; trying again later", exc_info=True)
