"""The poll loop: observe each due resource at Northflank and write what changed into its status.

One loop per operator process. It runs due resources concurrently (bounded), holds back every
resource of a credential whose rate limit is exhausted until Northflank says the window resets,
retries transient errors sooner than the steady interval (with backoff), and never lets one
resource's failure stop the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic

from .credentials import Credential, CredentialResolver, CredentialsError
from .kube import KubernetesGateway, ResourceGoneError
from .northflank import AuthenticationError, NorthflankClient, NorthflankError, RateLimit, RateLimitError
from .northflank.client import summarize_validation_error
from .registry import Registry, TrackedResource
from .resource import LLMModelDeploymentSpec, ResourceKey
from .settings import OperatorSettings
from .status import Failure, Observation, Outcome, Timing, compute_status

logger = logging.getLogger(__name__)

_FIRST_RETRY_SECONDS = 5.0
_DEFAULT_RATE_LIMIT_WAIT_SECONDS = 60.0
_JITTER = 0.1


class RateLimitGate:
    """Per-credential hold-off learned from Northflank's rate-limit headers."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._blocked_until: dict[str, float] = {}

    def blocked_until(self, credential: Credential) -> float | None:
        until = self._blocked_until.get(credential.identity)
        return until if until is not None and until > self._clock() else None

    def record(self, credential: Credential, rate_limit: RateLimit, *, rejected: bool) -> None:
        """Note the headers of a response; hold the credential if the budget is spent."""
        if rejected or rate_limit.exhausted:
            wait = rate_limit.wait_seconds()
            delay = wait if wait is not None else _DEFAULT_RATE_LIMIT_WAIT_SECONDS
            self._blocked_until[credential.identity] = self._clock() + delay


class Poller:
    def __init__(
        self,
        *,
        registry: Registry,
        client: NorthflankClient,
        credentials: CredentialResolver,
        kube: KubernetesGateway,
        settings: OperatorSettings,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._registry = registry
        self._client = client
        self._credentials = credentials
        self._kube = kube
        self._settings = settings
        self._clock = clock
        self._wall_clock = wall_clock
        self._gate = RateLimitGate(clock)
        self._limit = asyncio.Semaphore(settings.max_concurrent_requests)
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Poll forever (until cancelled)."""
        try:
            while True:
                for resource in self._registry.take_due(self._clock()):
                    task = asyncio.create_task(self._poll_guarded(resource), name=f"poll {resource.key}")
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                await self._sleep_until_due()
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _sleep_until_due(self) -> None:
        next_due = self._registry.next_due()
        timeout = None if next_due is None else max(0.0, next_due - self._clock())
        self._registry.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._registry.changed.wait(), timeout=timeout)

    async def _poll_guarded(self, resource: TrackedResource) -> None:
        try:
            await self.poll(resource)
        except Exception:
            # A bug or an unexpected Kubernetes error must not end polling for everyone else.
            logger.exception("Polling %s failed unexpectedly; retrying later", resource.key)
            resource.next_due = self._clock() + self._interval(resource)
        finally:
            resource.in_flight = False
            self._registry.changed.set()

    async def poll(self, resource: TrackedResource) -> None:
        """Observe one resource once, write its status if it changed, record Events."""
        # The spec may change while the request is in flight; the status must name the generation
        # that was actually observed.
        generation, spec = resource.generation, resource.spec
        async with self._limit:
            outcome, retry_at = await self._observe(resource.key, spec)
        now = self._wall_clock()
        if isinstance(outcome, Observation):
            resource.last_success = now
        timing = Timing(
            now=now,
            heartbeat=timedelta(seconds=self._settings.status_heartbeat_seconds),
            stale_after=timedelta(seconds=self._interval(resource) * self._settings.stale_after_intervals),
            last_success=resource.last_success,
        )
        update = compute_status(resource.status, outcome, generation=generation, timing=timing)
        if resource.generation != generation:
            resource.next_due = self._clock()  # observe the new spec right away
        else:
            resource.next_due = retry_at if retry_at is not None else self._next_due(resource, outcome)
        if not update.changed:
            return
        try:
            stored = await self._kube.patch_status(resource.key, update.patch)
        except ResourceGoneError:
            self._registry.forget(resource.key)
            return
        self._registry.record_written(resource.key, stored)
        for event in update.events:
            # Transitions only (never every poll), so this log stays readable with thousands of resources.
            level = logging.WARNING if event.type == "Warning" else logging.INFO
            logger.log(level, "%s: %s: %s", resource.key, event.reason, event.message)
            try:
                await self._kube.record_event(resource.key, resource.uid, event)
            except Exception:
                logger.warning("Could not record event %s on %s", event.reason, resource.key, exc_info=True)

    async def _observe(self, key: ResourceKey, raw_spec: Mapping[str, Any]) -> tuple[Outcome, float | None]:
        """What Northflank says about the resource's deployment, and an explicit retry time if any."""
        try:
            spec = LLMModelDeploymentSpec.model_validate(raw_spec)
        except pydantic.ValidationError as exc:
            return Failure("InvalidSpec", f"spec is invalid: {summarize_validation_error(exc)}", transient=False), None
        try:
            credential = await self._credentials.resolve(key.namespace, spec)
        except CredentialsError as exc:
            return Failure(exc.reason, exc.message, transient=False), None
        blocked_until = self._gate.blocked_until(credential)
        if blocked_until is not None:
            return _rate_limited_failure(), blocked_until
        try:
            result = await self._client.get_llm_model_deployment(
                spec.project_id, spec.llm_model_deployment_id, token=credential.token, team_id=spec.team_id
            )
        except NorthflankError as exc:
            if exc.rate_limit is not None:
                self._gate.record(credential, exc.rate_limit, rejected=isinstance(exc, RateLimitError))
            if isinstance(exc, AuthenticationError):
                self._credentials.forget(key.namespace, spec)
            return Failure.from_error(exc), self._gate.blocked_until(credential)
        self._gate.record(credential, result.rate_limit, rejected=False)
        return Observation(result.data), None

    def _interval(self, resource: TrackedResource) -> float:
        return poll_interval(resource.spec, self._settings)

    def _next_due(self, resource: TrackedResource, outcome: Outcome) -> float:
        interval = self._interval(resource)
        if isinstance(outcome, Failure) and outcome.transient:
            resource.consecutive_failures += 1
            backoff = _FIRST_RETRY_SECONDS * 2.0 ** (resource.consecutive_failures - 1)
            return self._clock() + min(interval, backoff)
        resource.consecutive_failures = 0
        jitter = random.uniform(1 - _JITTER, 1 + _JITTER)  # noqa: S311 - spreading load, not security
        return self._clock() + interval * jitter


def first_poll_delay(body: Mapping[str, Any], settings: OperatorSettings) -> float:
    """Delay before a newly seen resource's first poll.

    A resource whose status already describes its current generation (the operator restarted, or
    kopf re-listed) is spread over one interval instead of polled at once: a restart with a thousand
    resources would otherwise spend a thousand requests, the whole default hourly budget, in one
    burst. Resources not yet observed at their current generation are polled right away.
    """
    status = body.get("status") or {}
    generation = (body.get("metadata") or {}).get("generation")
    if status.get("observedGeneration") != generation or "lastSyncTime" not in status:
        return 0.0
    return random.uniform(0, poll_interval(body.get("spec") or {}, settings))  # noqa: S311 - load spreading


def poll_interval(spec: Mapping[str, Any], settings: OperatorSettings) -> float:
    """``spec.pollIntervalSeconds``, or the operator-wide default."""
    configured = spec.get("pollIntervalSeconds")
    if isinstance(configured, int) and configured > 0:
        return float(configured)
    return float(settings.poll_interval_seconds)


def _rate_limited_failure() -> Failure:
    return Failure(
        "RateLimited",
        "Northflank's rate limit for these credentials is spent; polling resumes when its window resets.",
        transient=True,
    )
