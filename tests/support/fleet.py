"""An in-memory fleet for the real :class:`~northflank_llm_operator.controller.Controller` on a fake clock.

The operator's own observer, planner, work queue, reconciler and status mapping run unchanged; only
Northflank and Kubernetes are fakes, and time is a number the driver moves from one due moment to the
next, so hours of a 5,000-resource fleet take seconds. The fakes can be made hostile the ways issue 14
asks for: an account someone else spends (:class:`SharedWindow`, a fixed window as Northflank documents
it that answers ``x-ratelimit-*`` headers and 429s), an edge answering 502 to a share of requests, and
projects whose answers take 30 s. A slow answer waits on a fake-clock timer, never on real time, so it
holds only its own request while the rest of the fleet goes on.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from northflank_llm_operator.controller import EVENT_KEYS, Controller
from northflank_llm_operator.credentials import CredentialResolver, CredentialsError
from northflank_llm_operator.events import EventCorrelator, EventRecorder
from northflank_llm_operator.kube import ResourceGoneError
from northflank_llm_operator.northflank import (
    ApiResult,
    DeploymentPage,
    LLMModelDeployment,
    NotFoundError,
    RateLimit,
    RateLimitError,
    ServerError,
)
from northflank_llm_operator.planner import Planner
from northflank_llm_operator.registry import Registry
from northflank_llm_operator.resource import ResourceKey
from northflank_llm_operator.settings import OperatorSettings
from northflank_llm_operator.status import Event

PAGE_SIZE = 100
NAMESPACE = "fleet"


class FakeClock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


class Timers:
    """Futures resolved when the fake clock reaches their moment (the driver fires them)."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (self._clock.now + seconds, next(self._seq), future))
        await future

    @property
    def pending(self) -> int:
        return len(self._heap)

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def fire(self) -> int:
        fired = 0
        while self._heap and self._heap[0][0] <= self._clock.now:
            _, _, future = heapq.heappop(self._heap)
            if not future.done():
                future.set_result(None)
            fired += 1
        return fired


@dataclass
class SharedWindow:
    """Northflank's documented limiter (``limit`` requests per fixed window) on an account that someone
    else spends too: ``others_share`` of each window, evenly across it or all at its start (``burst``).
    The other client never stops, so windows follow each other without a gap."""

    limit: int = 1000
    window: float = 3600.0
    others_share: float = 0.0
    burst: bool = False
    started: float | None = None
    used: int = 0
    others_used: int = 0
    rejected: int = 0

    def charge(self, now: float) -> tuple[bool, RateLimit]:
        if self.started is None:
            self.started = now
        if now >= self.started + self.window:
            self.started += self.window * math.floor((now - self.started) / self.window)
            self.used = self.others_used = 0
        if self.others_share > 0:
            elapsed = 1.0 if self.burst else (now - self.started) / self.window
            spent = math.floor(self.others_share * self.limit * elapsed)
            self.used += spent - self.others_used
            self.others_used = spent
        allowed = self.used < self.limit
        if allowed:
            self.used += 1
        else:
            self.rejected += 1
        reset = math.ceil(self.started + self.window - now)
        remaining = max(0, self.limit - self.used)
        return allowed, RateLimit(
            limit=self.limit, remaining=remaining, reset_seconds=reset, retry_after_seconds=None if allowed else reset
        )


@dataclass
class Call:
    at: float
    kind: str  # "get" or "list"
    project: str
    outcome: str  # "ok", "502", "429", "404"


class FleetNorthflank:
    """Projects of deployments (bodies built once, phases changed in place) behind the limiter."""

    def __init__(self, clock: FakeClock, timers: Timers, *, limiter: SharedWindow | None = None,
                 flaky_share: float = 0.0, slow_projects: Mapping[str, float] | None = None,
                 seed: int = 1) -> None:  # fmt: skip
        self.clock = clock
        self.timers = timers
        self.limiter = limiter or SharedWindow()
        self.flaky_share = flaky_share
        self.slow_projects = dict(slow_projects or {})
        self._rng = random.Random(seed)
        self.projects: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.calls: list[Call] = []

    def put(self, project: str, deployment_id: str, phase: str = "running") -> None:
        self.projects[project][deployment_id] = {
            "id": deployment_id,
            "name": deployment_id,
            "projectId": project,
            "entityId": "team",
            "entityType": "team",
            "creatorId": "user",
            "spec": {"type": "custom", "configuration": {"engine": "vllm", "name": "m"}},
            "dns": {"base": f"{deployment_id}--{project}.code.run", "zone": "code.run"},
            "ports": [],
            "status": phase,
            "createdAt": "2026-11-26T10:00:00.000Z",
            "updatedAt": "2026-11-26T10:00:00.000Z",
        }

    def set_phase(self, project: str, deployment_id: str, phase: str) -> None:
        self.projects[project][deployment_id]["status"] = phase

    async def _answer(self, kind: str, project: str) -> RateLimit:
        """Charge the request, wait as long as the project's answers take, then raise a fault or return
        the headers of the answer."""
        now = self.clock.now
        flaky = self.flaky_share > 0 and self._rng.random() < self.flaky_share
        if flaky:
            # The edge answers, not the API: no budget is charged and no rate-limit headers come back.
            self.calls.append(Call(now, kind, project, "502"))
            allowed, headers = True, RateLimit()
        else:
            allowed, headers = self.limiter.charge(now)
            self.calls.append(Call(now, kind, project, "ok" if allowed else "429"))
        delay = self.slow_projects.get(project, 0.0)
        if delay > 0:
            await self.timers.sleep(delay)
        if flaky:
            raise ServerError("Northflank answered HTTP 502 (Bad Gateway)", status_code=502, rate_limit=headers)
        if not allowed:
            raise RateLimitError("Northflank answered HTTP 429", status_code=429, rate_limit=headers)
        return headers

    async def get_llm_model_deployment(
        self, project_id: str, deployment_id: str, *, token: str, team_id: str | None = None
    ) -> ApiResult[LLMModelDeployment]:
        headers = await self._answer("get", project_id)
        body = self.projects.get(project_id, {}).get(deployment_id)
        if body is None:
            raise NotFoundError("HTTP 404", status_code=404, rate_limit=headers)
        return ApiResult(LLMModelDeployment.model_validate(body), headers)

    async def list_llm_model_deployments(
        self,
        project_id: str,
        *,
        token: str,
        team_id: str | None = None,
        per_page: int = PAGE_SIZE,
        cursor: str | None = None,
        page: int | None = None,
    ) -> ApiResult[DeploymentPage]:
        headers = await self._answer("list", project_id)
        items = sorted(self.projects.get(project_id, {}).items())
        start = int(cursor) if cursor is not None else 0
        chunk = items[start : start + PAGE_SIZE]
        more = start + PAGE_SIZE < len(items)
        listing = DeploymentPage([dict(body) for _, body in chunk], more, str(start + PAGE_SIZE) if more else None)
        return ApiResult(listing, headers)

    async def aclose(self) -> None:
        return None


@dataclass
class Write:
    at: float
    key: ResourceKey
    patch: dict[str, Any]


class FleetKubernetes:
    """Status subresource and Events, recorded with the fake time they happened at."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.objects: dict[ResourceKey, dict[str, Any]] = {}
        self.writes: list[Write] = []
        #: Events as the reconciler records them (before aggregation).
        self.events: list[tuple[float, ResourceKey, Event]] = []
        #: Event objects created, and count patches of existing ones (after the EventCorrelator).
        self.created_events: list[tuple[float, ResourceKey, Event]] = []
        self.event_patches = 0
        self.resource_version = 1
        # The correlating recorder the controller builds, with a tap in front that sees every Event.
        self.recorder = EventRecorder(self, EventCorrelator(clock.wall, max_keys=EVENT_KEYS))

    async def patch_status(
        self, key: ResourceKey, patch: Mapping[str, Any], *, uid: str | None = None, resource_version: str | None = None
    ) -> Mapping[str, Any]:
        obj = self.objects.get(key)
        if obj is None or (uid is not None and obj["metadata"]["uid"] != uid):
            raise ResourceGoneError(str(key))
        self.writes.append(Write(self.clock.now, key, dict(patch)))
        obj["status"] = merge(obj.get("status", {}), patch)
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        return obj

    async def list_resource_uids(self, namespace: str | None) -> tuple[dict[ResourceKey, str], str] | None:
        found = {k: o["metadata"]["uid"] for k, o in self.objects.items() if namespace in (None, k.namespace)}
        return found, str(self.resource_version)

    async def record(self, key: ResourceKey, uid: str, event: Event) -> str:
        self.events.append((self.clock.now, key, event))
        return await self.recorder.record(key, uid, event)

    async def create_event(self, key: ResourceKey, uid: str, event: Event, *, name: str, count: int,
                           first_timestamp: datetime, last_timestamp: datetime) -> bool:  # fmt: skip
        self.created_events.append((self.clock.now, key, event))
        return True

    async def patch_event(self, namespace: str, name: str, *, count: int, last_timestamp: datetime) -> bool:
        self.event_patches += 1
        return True

    async def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        raise CredentialsError("CredentialsNotFound", f"Secret {name!r} is missing")


def merge(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 merge patch."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


@dataclass
class Fleet:
    """The real controller wired to the fakes, and a driver that moves fake time between due moments."""

    settings: OperatorSettings = field(default_factory=OperatorSettings)
    limiter: SharedWindow = field(default_factory=SharedWindow)
    flaky_share: float = 0.0
    slow_projects: Mapping[str, float] = field(default_factory=dict)
    seed: int = 1

    def __post_init__(self) -> None:
        self.clock = FakeClock()
        self.timers = Timers(self.clock)
        self.northflank = FleetNorthflank(self.clock, self.timers, limiter=self.limiter, flaky_share=self.flaky_share,
                                          slow_projects=self.slow_projects, seed=self.seed)  # fmt: skip
        self.kube = FleetKubernetes(self.clock)
        self.registry = Registry()
        credentials = CredentialResolver(self.kube, default_token=SecretStr("fleet-token"), cache_seconds=30,
                                         clock=self.clock)  # fmt: skip
        planner: Planner[ResourceKey] = Planner(
            self.clock,
            self.settings.planner_config(),
            rng=random.Random(self.seed),
        )
        self.controller = Controller(registry=self.registry, client=self.northflank,  # type: ignore[arg-type]
                                     credentials=credentials, kube=self.kube,  # type: ignore[arg-type]
                                     settings=self.settings, planner=planner, clock=self.clock,
                                     wall_clock=self.clock.wall, events=self.kube)  # fmt: skip
        #: Deployment of each resource: (project, deployment id).
        self.target_of: dict[ResourceKey, tuple[str, str]] = {}
        #: Moments the driver must stop at (upstream changes are applied by the caller between them).
        self._stops: list[float] = []

    def add(self, project: str, deployment_id: str, *, phase: str = "running") -> ResourceKey:
        if deployment_id not in self.northflank.projects.get(project, {}):
            self.northflank.put(project, deployment_id, phase)
        key = ResourceKey(NAMESPACE, f"{project}-{deployment_id}")
        body = {
            "metadata": {
                "namespace": key.namespace,
                "name": key.name,
                "uid": f"uid-{key.name}",
                "generation": 1,
                "resourceVersion": "1",
            },
            "spec": {"projectId": project, "llmModelDeploymentId": deployment_id},
            "status": {},
        }
        self.kube.objects[key] = body
        self.registry.observe("ADDED", body)
        self.target_of[key] = (project, deployment_id)
        return key

    @property
    def in_flight(self) -> int:
        return len(self.controller.observer._requests)

    async def quiesce(self) -> None:
        """Let the event loop run until only requests waiting on fake-clock timers are left in flight and
        every queued key is reconciled. (``Controller.drain`` would wait for the slow answers too.)"""
        for _ in range(100_000):
            await asyncio.sleep(0)
            if self.in_flight <= self.timers.pending and not self.controller.queue.busy:
                if not self.registry.has_pending:
                    return
                for key in self.registry.take_pending():
                    self.controller.queue.add(key)
        raise AssertionError("the controller did not settle")

    async def settle(self) -> None:
        """Run the loop at the current fake time until it has nothing more to do now."""
        for _ in range(1000):
            self.timers.fire()
            await self.controller.step()
            await self.quiesce()
            if self._next_moment() > self.clock.now:
                return
        raise AssertionError(f"the loop kept finding work at t={self.clock.now}")

    def _next_moment(self) -> float:
        observer = self.controller.observer
        wakes = [observer.next_wake(), self.controller.queue.next_due(), self.timers.next_due(),
                 self.controller._next_resync]  # fmt: skip
        due = [w for w in wakes if w is not None]
        return min(due) if due else math.inf

    async def run_until(self, end: float) -> None:
        """Move fake time to ``end``, stopping at every moment something is due."""
        await self.settle()
        while self.clock.now < end:
            moment = self._next_moment()
            # Never stand still (a due moment a hair in the past), never jump past ``end``.
            self.clock.now = min(end, max(moment, self.clock.now + 1e-3))
            await self.settle()

    async def close(self) -> None:
        tasks = [*self.controller._workers]
        if self.controller._resync_task is not None:
            tasks.append(self.controller._resync_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.controller.observer.close()
