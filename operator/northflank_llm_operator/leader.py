"""Leader election through a ``coordination.k8s.io/v1`` Lease, the way client-go does it.

Only the leader polls Northflank and writes status; other replicas keep kopf's watch (and so the
registry) warm and take over when the Lease is released or expires. The rules are client-go's:

- a replica may take the Lease when it is free (no holder: a graceful release) or when its record has
  not changed for ``lease_duration`` as measured on *this* replica's clock since it last saw it change
  (so clock skew between nodes does not matter);
- the leader renews every ``retry_period``; when no renewal succeeded for ``renew_deadline`` it stops
  leading at once, well before another replica may take over (``renew_deadline < lease_duration``);
- a graceful stop releases the Lease (holder cleared), so a standby takes over on its next try.

A replica paused past its renew deadline (SIGSTOP, a frozen VM, a long GC) learns of it only when it
runs again, and by then a standby may lead. So every write is fenced on :class:`LeaseFence`: valid only
until ``renew_deadline`` after the start of the last successful acquire or renew, on the monotonic
clock, which keeps running while the process is paused. After a loss :meth:`LeaderElector.run`
returns (client-go's ``Run``); the process then exits, as controller-runtime's managers do.

The state machine is pure apart from the injected :class:`LeaseStore`, clock and sleep, so it is
tested with a fake clock; :class:`KubernetesLeaseStore` is the real store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import kubernetes
from kubernetes.client.exceptions import ApiException

from .northflank.errors import FencedError

__all__ = [
    "ElectionConfig",
    "FencedError",
    "KubernetesLeaseStore",
    "LeaderElector",
    "LeaseConflictError",
    "LeaseFence",
    "LeaseRecord",
    "LeaseStore",
]

logger = logging.getLogger(__name__)


class LeaseFence:
    """Whether this replica may still write: the lowest layer (the Kubernetes gateway, the Northflank
    client) asks it right before each request, so no code path can write without holding the Lease.

    Valid while ``clock() < start of the last successful acquire or renew + renew_deadline``
    (controller-runtime's rule). The start of the attempt, not its end: a renewal sent just before the
    process was paused and answered after it resumed says nothing about the time in between. The
    monotonic clock keeps counting while the process is stopped, so after SIGCONT the fence is already
    invalid, before any renewal is tried. Without leader election (``renew_deadline`` None) it is
    always valid.
    """

    def __init__(self, renew_deadline: float | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.renew_deadline = renew_deadline
        self._clock = clock
        self._valid_until = -math.inf  # a standby has never held the Lease
        #: Requests refused since the process started (logged when the process exits after a loss).
        self.refused = 0

    @classmethod
    def unfenced(cls) -> LeaseFence:
        """The fence of a process without leader election: always valid."""
        return cls(None)

    def valid(self) -> bool:
        return self.renew_deadline is None or self._clock() < self._valid_until

    def permit(self) -> bool:
        """``valid()``, counting a refusal: what the gateway and the Northflank client call before sending."""
        if self.valid():
            return True
        self.refused += 1
        return False

    def remaining(self) -> float:
        """Seconds until the fence closes (infinite without leader election, 0 once closed)."""
        if self.renew_deadline is None:
            return math.inf
        return max(0.0, self._valid_until - self._clock())

    def renewed(self, attempt_started: float) -> None:
        """An acquire or renew that started at ``attempt_started`` (on this clock) succeeded."""
        if self.renew_deadline is not None:
            self._valid_until = max(self._valid_until, attempt_started + self.renew_deadline)

    def revoke(self) -> None:
        """Leadership ended (lost or released): nothing may be written from now on."""
        self._valid_until = -math.inf


class LeaseConflictError(Exception):
    """Someone else created or changed the Lease first (HTTP 409)."""


@dataclass(frozen=True)
class LeaseRecord:
    """The fields of a Lease's spec that election uses, and its resourceVersion."""

    holder: str | None
    lease_duration_seconds: int
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    transitions: int = 0
    resource_version: str | None = None


class LeaseStore(Protocol):
    async def get(self) -> LeaseRecord | None:
        """The Lease, or None when it does not exist."""
        ...

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        """Create it; LeaseConflictError when it already exists."""
        ...

    async def update(self, record: LeaseRecord) -> LeaseRecord:
        """Replace it at ``record.resource_version``; LeaseConflictError when it changed meanwhile."""
        ...


@dataclass(frozen=True)
class ElectionConfig:
    """controller-runtime's defaults."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("leader election needs 0 < retry period < renew deadline < lease duration")


class LeaderElector:
    """Campaigns for one Lease and reports changes of leadership through two callbacks."""

    def __init__(
        self,
        store: LeaseStore,
        identity: str,
        config: ElectionConfig | None = None,
        *,
        on_started_leading: Callable[[], Awaitable[None]],
        on_stopped_leading: Callable[[], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        fence: LeaseFence | None = None,
    ) -> None:
        self._store = store
        self.identity = identity
        self.config = config or ElectionConfig()
        #: Valid while this replica may write; shared with the gateway and the Northflank client.
        self.fence = fence or LeaseFence(self.config.renew_deadline, clock=clock)
        if self.fence.renew_deadline != self.config.renew_deadline:
            raise ValueError("the fence must close at the election's renew deadline")
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._observed: LeaseRecord | None = None
        #: When (on our clock) the observed record last changed; a holder silent for a lease
        #: duration past this has lost the Lease.
        self._observed_at: float = -math.inf
        #: The last moment the Lease API answered us (readiness: can this replica lead?).
        self.last_contact: float = -math.inf
        self.leading = False

    @property
    def holder(self) -> str | None:
        return self._observed.holder if self._observed else None

    def reachable(self) -> bool:
        """Whether the Lease API answered within the last lease duration."""
        return self._clock() - self.last_contact <= self.config.lease_duration

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this replica holds the Lease afterwards (the fence then extends to the
        attempt's start plus the renew deadline)."""
        started = self._clock()
        if await self._attempt():
            self.fence.renewed(started)
            return True
        return False

    async def _attempt(self) -> bool:
        now_wall = self._wall_clock()
        try:
            current = await self._store.get()
        except Exception as exc:
            logger.debug("Reading the leader election Lease failed: %r", exc)
            return False
        self.last_contact = self._clock()
        duration = math.ceil(self.config.lease_duration)
        if current is None:
            record = LeaseRecord(self.identity, duration, now_wall, now_wall, 0)
            return await self._write(self._store.create, record)
        if current != self._observed:
            self._observed, self._observed_at = current, self._clock()
        mine = current.holder == self.identity
        if not mine and current.holder and self._observed_at + current.lease_duration_seconds > self._clock():
            return False  # someone else holds it and is still renewing
        if mine:
            record = replace(current, renew_time=now_wall, lease_duration_seconds=duration)
        else:
            record = replace(
                current, holder=self.identity, lease_duration_seconds=duration,
                acquire_time=now_wall, renew_time=now_wall, transitions=current.transitions + 1,
            )  # fmt: skip
        return await self._write(self._store.update, record)

    async def _write(self, operation: Callable[[LeaseRecord], Awaitable[LeaseRecord]], record: LeaseRecord) -> bool:
        try:
            stored = await operation(record)
        except LeaseConflictError:
            return False  # another replica was faster; look again on the next try
        except Exception as exc:
            logger.debug("Writing the leader election Lease failed: %r", exc)
            return False
        self.last_contact = self._clock()
        self._observed, self._observed_at = stored, self._clock()
        return True

    async def run(self) -> None:
        """Campaign until this replica holds the Lease, lead while renewals succeed, and return once
        the Lease is lost (client-go's ``Run``: the caller exits rather than campaign again with
        whatever state it had). Cancelling it (a graceful stop) reports the stop as well."""
        await self._acquire()
        self.leading = True
        logger.info("Became the leader (Lease holder %s)", self.identity)
        try:
            await self._on_started()
            cause = await self._renew_until_lost()
            logger.warning("Lost the leader election Lease: %s", cause)
        finally:
            self.leading = False
            self.fence.revoke()
            await self._on_stopped()

    async def _acquire(self) -> None:
        while not await self.try_acquire_or_renew():
            wait = self.config.retry_period
            if self._observed is not None and self._observed.holder:
                # Try again right when the holder's Lease runs out rather than up to a retry period later.
                expires_in = self._observed_at + self._observed.lease_duration_seconds - self._clock()
                if 0 <= expires_in < wait:
                    wait = expires_in + 0.05
            await self._sleep(wait)

    async def _renew_until_lost(self) -> str:
        """Renew every retry period until the fence closes or someone else holds the Lease; why it ended."""
        deadline_passed = f"no renewal succeeded within the renew deadline ({self.config.renew_deadline:g}s)"
        while True:
            await self._sleep(self.config.retry_period)
            if not self.fence.valid():
                # Also when the process could not run meanwhile (paused, starved): a standby may already
                # lead, so not even a renewal is tried.
                return deadline_passed
            with contextlib.suppress(TimeoutError):  # an attempt cut short is a failed one
                await asyncio.wait_for(self.try_acquire_or_renew(), timeout=self.fence.remaining())
            if self._observed is not None and self._observed.holder not in (None, self.identity):
                return f"{self._observed.holder} holds it"
            if not self.fence.valid():
                return deadline_passed

    async def release(self) -> None:
        """Give the Lease up (graceful shutdown) so that a standby takes over on its next try.

        Call it only once campaigning has stopped, or the free Lease is taken right back."""
        self.fence.revoke()  # nothing is written once the Lease may be someone else's
        if self._observed is None or self._observed.holder != self.identity:
            return
        for _ in range(2):  # a renewal cut short may have moved the resourceVersion: read it again once
            try:
                current = await self._store.get()
                if current is None or current.holder != self.identity:
                    return
                record = replace(current, holder=None, lease_duration_seconds=1, renew_time=self._wall_clock())
                self._observed = await self._store.update(record)
            except LeaseConflictError:
                continue
            except Exception as exc:
                logger.warning("Could not release the leader election Lease (%r); a standby takes over once "
                               "it expires", exc)  # fmt: skip
                return
            logger.info("Released the leader election Lease")
            return


# -- the real store ---------------------------------------------------------------------------------


class KubernetesLeaseStore:
    """One named Lease through the official client, each call in a worker thread with a timeout."""

    def __init__(self, api_client: Any, *, namespace: str, name: str, timeout_seconds: float) -> None:
        self._api = kubernetes.client.CoordinationV1Api(api_client)
        self._models = kubernetes.client
        self.namespace = namespace
        self.name = name
        self._timeout = timeout_seconds
        # Its own thread: Lease renewals must never queue behind a burst of status writes.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="leader-election")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def call() -> Any:
            return function(*args, _request_timeout=self._timeout, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def get(self) -> LeaseRecord | None:
        try:
            lease = await self._call(self._api.read_namespaced_lease, self.name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return self._record(lease)

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        body = self._models.V1Lease(
            metadata=self._models.V1ObjectMeta(name=self.name, namespace=self.namespace), spec=self._spec(record)
        )
        try:
            return self._record(await self._call(self._api.create_namespaced_lease, self.namespace, body))
        except ApiException as exc:
            if exc.status == 409:
                raise LeaseConflictError(self.name) from None
            raise

    async def update(self, record: LeaseRecord) -> LeaseRecord:
        body = self._models.V1Lease(
            metadata=self._models.V1ObjectMeta(
                name=self.name, namespace=self.namespace, resource_version=record.resource_version
            ),
            spec=self._spec(record),
        )
        try:
            return self._record(await self._call(self._api.replace_namespaced_lease, self.name, self.namespace, body))
        except ApiException as exc:
            if exc.status == 409:
                raise LeaseConflictError(self.name) from None
            raise

    def _spec(self, record: LeaseRecord) -> Any:
        return self._models.V1LeaseSpec(
            holder_identity=record.holder or "",
            lease_duration_seconds=record.lease_duration_seconds,
            acquire_time=_micro_time(record.acquire_time),
            renew_time=_micro_time(record.renew_time),
            lease_transitions=record.transitions,
        )

    @staticmethod
    def _record(lease: Any) -> LeaseRecord:
        spec = lease.spec
        return LeaseRecord(
            holder=spec.holder_identity or None,
            lease_duration_seconds=int(spec.lease_duration_seconds or 15),
            acquire_time=spec.acquire_time,
            renew_time=spec.renew_time,
            transitions=int(spec.lease_transitions or 0),
            resource_version=lease.metadata.resource_version,
        )


def _micro_time(value: datetime | None) -> datetime | None:
    # Lease times are MicroTime: the API server refuses one without a fraction, and isoformat() drops a
    # zero one.
    if value is None or value.microsecond:
        return value
    return value.replace(microsecond=1)
