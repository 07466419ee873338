"""The simulator's in-memory world: tokens, projects, deployments, faults, rate limits, request log.

Everything here runs on the server's single event loop, so no locks are needed. Clocks are injectable
so the rate limiter can be tested without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import logging
import math
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from northflank_api_simulator.defaults import (
    DEFAULT_TEAM_ID,
    complete_deployment,
    dns_base,
    new_deployment_configuration,
    timestamp,
)
from northflank_api_simulator.models import (
    FaultSpec,
    HostileItem,
    Lifecycle,
    RateLimitConfig,
    ScriptStep,
    Seed,
    TokenGrant,
)

logger = logging.getLogger(__name__)

REQUEST_LOG_SIZE = 10_000
"""Newest requests kept; a long demo must not grow the simulator without bound."""


@dataclass(frozen=True)
class RateLimitStatus:
    """The outcome of charging one request, and the headers Northflank sends with it."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-reset": str(self.reset_seconds),
        }


@dataclass
class _Window:
    started_at: float
    used: int = 0


class RateLimiter:
    """Fixed window per token that starts at the token's first counted request.

    Northflank documents that the limit "resets one hour after the first request is sent". Requests
    refused with 429 do not spend budget.
    """

    def __init__(self, config: RateLimitConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    @property
    def config(self) -> RateLimitConfig:
        return self._config

    def configure(self, config: RateLimitConfig) -> None:
        """Apply a new budget; counters restart so the new numbers are easy to reason about."""
        self._config = config
        self.reset()

    def reset(self) -> None:
        self._windows.clear()

    def forget(self, key: str) -> None:
        self._windows.pop(key, None)

    def charge(self, key: str) -> RateLimitStatus:
        """Spend one request of ``key``'s budget if any is left."""
        now = self._clock()
        window = self._window(key, now)
        allowed = window.used < self._config.limit
        if allowed:
            window.used += 1
        return self._status(window, now, allowed)

    def spend(self, key: str, requests: int) -> tuple[int, RateLimitStatus]:
        """Spend up to ``requests`` of ``key``'s window at once, as someone else's requests on the same
        account would (never beyond the limit); how many were spent, and the budget after them."""
        now = self._clock()
        window = self._window(key, now)
        spent = max(0, min(requests, self._config.limit - window.used))
        window.used += spent
        return spent, self._status(window, now, spent == requests)

    def window_start(self, key: str) -> float | None:
        """When ``key``'s current window started; None when it has none (no request since it ended)."""
        window = self._windows.get(key)
        if window is None or self._clock() >= window.started_at + self._config.window_seconds:
            return None
        return window.started_at

    def _window(self, key: str, now: float) -> _Window:
        window = self._windows.get(key)
        if window is None or now >= window.started_at + self._config.window_seconds:
            window = self._windows[key] = _Window(started_at=now)
        return window

    def _status(self, window: _Window, now: float, allowed: bool) -> RateLimitStatus:
        # Subtract the elapsed time (not `started_at + window - now`): with large monotonic readings the
        # latter picks up float error and rounds 3600 up to 3601 on a window's first request.
        elapsed = now - window.started_at
        reset_seconds = max(0, math.ceil(self._config.window_seconds - elapsed))
        return RateLimitStatus(
            allowed=allowed,
            limit=self._config.limit,
            remaining=self._config.limit - window.used,
            reset_seconds=reset_seconds,
        )


class Spender:
    """Someone else spending ``fraction`` of every window of one token, evenly over the window.

    Each :meth:`tick` spends what is due by now (so a late tick catches up instead of losing
    requests); a spend refused because the window is spent is not retried. In a window it did not
    start, it spends only for the time from its first tick on.
    """

    def __init__(self, limiter: RateLimiter, token: str, fraction: float, clock: Callable[[], float]) -> None:
        self._limiter = limiter
        self._token = token
        self.fraction = fraction
        self._clock = clock
        self._window_started: float | None = None
        self._due_spent = 0
        #: Requests spent in all windows so far.
        self.spent = 0

    @property
    def interval(self) -> float:
        """How often to tick: about once per request due, at least every second, at most 200 times one."""
        config = self._limiter.config
        return min(1.0, max(0.005, config.window_seconds / (self.fraction * config.limit)))

    def tick(self) -> int:
        """Spend what is due by now; how many requests were spent."""
        started = self._limiter.window_start(self._token)
        if started is None:
            # Like a real client's first request, the spender's first request of a window starts it.
            spent, _ = self._limiter.spend(self._token, 1)
            self._window_started, self._due_spent = self._limiter.window_start(self._token), 1
            self.spent += spent
            return spent
        config = self._limiter.config
        elapsed = min(max(self._clock() - started, 0.0), config.window_seconds)
        # Rounded up (each request at the start of its share of time), so a window's last is not lost.
        due_by_now = math.ceil(self.fraction * config.limit * elapsed / config.window_seconds - 1e-9)
        if started != self._window_started:
            # A window someone else started: spend from now on, not for the time before (no burst).
            self._window_started, self._due_spent = started, due_by_now
        due = due_by_now - self._due_spent
        if due <= 0:
            return 0
        self._due_spent += due
        spent, _ = self._limiter.spend(self._token, due)
        self.spent += spent
        return spent


@dataclass(frozen=True)
class ActiveFault:
    id: str
    spec: FaultSpec


@dataclass
class _FaultEntry:
    fault: ActiveFault
    remaining: int | None


@dataclass(frozen=True)
class HeldRequest:
    """A request a ``hold`` fault keeps waiting (see :attr:`FaultSpec.hold`)."""

    fault_id: str
    method: str
    path: str
    stage: str


class FaultBook:
    """Injected faults in the order they were added; the first match wins."""

    def __init__(self) -> None:
        self._entries: dict[str, _FaultEntry] = {}
        self._ids = itertools.count(1)
        self._released: dict[str, asyncio.Event] = {}
        self._held: dict[int, HeldRequest] = {}
        self._held_ids = itertools.count(1)

    def held(self) -> list[HeldRequest]:
        return list(self._held.values())

    def release(self, fault_id: str) -> bool:
        """Let every request ``fault_id`` holds (and will hold) go on; False for an unknown fault."""
        known = fault_id in self._entries or fault_id in self._released
        self._released.setdefault(fault_id, asyncio.Event()).set()
        return known

    async def hold(self, fault_id: str, held: HeldRequest, client_gone: Callable[[], bool]) -> bool:
        """Wait until ``fault_id`` is released (or removed); True when the client hung up meanwhile."""
        released = self._released.setdefault(fault_id, asyncio.Event())
        ticket = next(self._held_ids)
        self._held[ticket] = held
        try:
            while not released.is_set():
                if client_gone():
                    return True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(released.wait(), 0.02)
            return client_gone()
        finally:
            del self._held[ticket]

    def add(self, spec: FaultSpec) -> str:
        fault_id = f"fault-{next(self._ids)}"
        self._entries[fault_id] = _FaultEntry(ActiveFault(fault_id, spec), spec.times)
        return fault_id

    def remove(self, fault_id: str) -> bool:
        self._released.setdefault(fault_id, asyncio.Event()).set()  # nothing stays held by a removed fault
        return self._entries.pop(fault_id, None) is not None

    def clear(self) -> None:
        for fault_id in self._entries:
            self._released.setdefault(fault_id, asyncio.Event()).set()
        self._entries.clear()

    def take(self, method: str, path: str, project_id: str | None, deployment_id: str | None) -> ActiveFault | None:
        """Return the first fault matching the request and use up one of its ``times``."""
        for fault_id, entry in self._entries.items():
            if entry.fault.spec.matches(method, path, project_id, deployment_id):
                if entry.remaining is not None:
                    entry.remaining -= 1
                    if entry.remaining == 0:
                        del self._entries[fault_id]
                return entry.fault
        return None


@dataclass
class Project:
    id: str
    team_id: str
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class TokenRecord:
    """A registered token; ``auth_id`` stands in for it wherever an id is shown (never the token)."""

    grant: TokenGrant
    auth_id: str
    created_at: str


class SimulatorState:
    """All simulated Northflank state plus the test-facing knobs.

    ``seed`` is the baseline that :meth:`reset` restores: empty unless the simulator was started with
    ``--token``, ``--rate-limit*`` or ``--seed``.
    """

    def __init__(
        self,
        seed: Seed | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        request_log_size: int = REQUEST_LOG_SIZE,
    ) -> None:
        self._seed = seed or Seed()
        self._wall_clock = wall_clock
        self._tokens: dict[str, TokenRecord] = {}
        self._token_ids = itertools.count(1)
        self._projects: dict[str, Project] = {}
        self._scripts: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._clock = clock
        #: Deployments served with a hostile value, by (project, deployment).
        self.hostile_items: dict[tuple[str, str], HostileItem] = {}
        self._spenders: dict[str, tuple[Spender, asyncio.Task[None]]] = {}
        self.rate_limiter = RateLimiter(self._seed.rate_limit, clock)
        self.faults = FaultBook()
        self.request_log: deque[dict[str, Any]] = deque(maxlen=request_log_size)
        self.request_counts: Counter[tuple[str, str, int]] = Counter()
        #: Every ``/v1`` request that is not a read, by (token, method, route kind, status), since the
        #: simulator started: :meth:`reset` keeps it, so a test suite can check at the end which tokens
        #: wrote (see :meth:`write_stats`).
        self.write_counts: Counter[tuple[str, str, str, int]] = Counter()
        #: ``/v1`` requests received and not yet answered in full (a dripping body counts until its end).
        self.in_flight = 0
        """Every ``/v1`` request ever answered, by (token id, route kind, status): unbounded, unlike the log."""
        self.lifecycle = Lifecycle()
        self.reset()

    def now(self) -> str:
        return timestamp(self._wall_clock())

    def reset(self) -> None:
        """Forget everything, cancel scripts, then restore the seed."""
        for task in self._scripts.values():
            task.cancel()
        self._scripts.clear()
        for _, task in self._spenders.values():
            task.cancel()
        self._spenders.clear()
        self.hostile_items.clear()
        self._tokens.clear()
        self._projects.clear()
        self.faults.clear()
        self.request_log.clear()
        self.request_counts.clear()
        self.rate_limiter.configure(self._seed.rate_limit)
        self.lifecycle = Lifecycle()
        for seed_token in self._seed.tokens:
            grant = TokenGrant.model_validate(seed_token.model_dump(exclude={"token"}))
            self.put_token(seed_token.token, grant)
        for seed_project in self._seed.projects:
            self.put_project(seed_project.id, seed_project.team_id)
        for deployment in self._seed.deployments:
            self.put_deployment(deployment["projectId"], deployment["id"], deployment)

    # Tokens

    def put_token(self, token: str, grant: TokenGrant) -> TokenRecord:
        """Register or re-scope a token; a re-scoped token keeps its rate-limit window."""
        previous = self._tokens.get(token)
        record = TokenRecord(
            grant=grant,
            auth_id=previous.auth_id if previous else f"token-{next(self._token_ids)}",
            created_at=previous.created_at if previous else self.now(),
        )
        self._tokens[token] = record
        return record

    def revoke_token(self, token: str) -> bool:
        self.rate_limiter.forget(token)
        return self._tokens.pop(token, None) is not None

    def token(self, token: str) -> TokenRecord | None:
        return self._tokens.get(token)

    # Projects and deployments

    def put_project(self, project_id: str, team_id: str) -> Project:
        project = self._projects.get(project_id)
        if project is None:
            project = self._projects[project_id] = Project(project_id, team_id)
        project.team_id = team_id
        return project

    def project(self, project_id: str) -> Project | None:
        return self._projects.get(project_id)

    def put_deployment(self, project_id: str, deployment_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Create or replace a deployment, defaulting what ``fields`` leaves out.

        Replacing keeps the original ``createdAt`` unless ``fields`` sets one. The project is created
        in :data:`DEFAULT_TEAM_ID` if it does not exist yet.
        """
        project = self._projects.get(project_id) or self.put_project(project_id, DEFAULT_TEAM_ID)
        now = self.now()
        previous = project.deployments.get(deployment_id)
        if previous is not None and "createdAt" not in fields:
            fields = {**fields, "createdAt": previous["createdAt"]}
        deployment = complete_deployment(
            fields, project_id=project_id, deployment_id=deployment_id, team_id=project.team_id, now=now
        )
        project.deployments[deployment_id] = deployment
        return copy.deepcopy(deployment)

    def patch_deployment(self, project_id: str, deployment_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        """Shallow-merge ``changes``; ``None`` if there is no such deployment.

        ``updatedAt`` moves to now unless ``changes`` sets it, and a new ``spec`` starts a new
        deployment configuration, as a redeploy would.
        """
        deployment = self._deployment(project_id, deployment_id)
        if deployment is None:
            return None
        for key, expected in (("id", deployment_id), ("projectId", project_id)):
            if key in changes and changes[key] != expected:
                raise ValueError(f'"{key}" cannot change')
        now = self.now()
        merged = {"updatedAt": now, **copy.deepcopy(changes)}
        if "spec" in changes and "deploymentConfiguration" not in changes:
            merged["deploymentConfiguration"] = new_deployment_configuration(now)
        deployment.update(merged)
        return copy.deepcopy(deployment)

    def delete_deployment(self, project_id: str, deployment_id: str) -> bool:
        """Remove a deployment and stop its script."""
        self._cancel_script(project_id, deployment_id)
        return self._remove_deployment(project_id, deployment_id)

    def deployment(self, project_id: str, deployment_id: str) -> dict[str, Any] | None:
        deployment = self._deployment(project_id, deployment_id)
        return copy.deepcopy(deployment) if deployment is not None else None

    def deployments(self, project_id: str) -> list[dict[str, Any]]:
        """A project's deployments in a stable order (by id), which pagination relies on."""
        project = self._projects.get(project_id)
        if project is None:
            return []
        return [copy.deepcopy(project.deployments[key]) for key in sorted(project.deployments)]

    def _deployment(self, project_id: str, deployment_id: str) -> dict[str, Any] | None:
        project = self._projects.get(project_id)
        return project.deployments.get(deployment_id) if project is not None else None

    def _remove_deployment(self, project_id: str, deployment_id: str) -> bool:
        self.hostile_items.pop((project_id, deployment_id), None)
        project = self._projects.get(project_id)
        return project is not None and project.deployments.pop(deployment_id, None) is not None

    # Writes through the public API (and "the UI"), with the lifecycles they start

    def create_deployment(self, project_id: str, body: dict[str, Any], *, creator_id: str) -> dict[str, Any]:
        """Create from a validated create request; the id is the slug of the name.

        Raises :class:`DeploymentExistsError` when the slug is taken. Starts the create lifecycle:
        ``pending``, then ``provisioning``, ``starting`` and ``running``, one per lifecycle step.
        """
        deployment_id = slugify(body["name"])
        if self._deployment(project_id, deployment_id) is not None:
            raise DeploymentExistsError(deployment_id)
        base = dns_base(project_id, deployment_id)
        fields: dict[str, Any] = {
            key: copy.deepcopy(body[key]) for key in ("name", "description", "tags", "spec") if key in body
        }
        fields.update(
            creatorId=creator_id,
            status="pending",
            ports=_ports_from_request(body.get("ports", []), base, []),
            dns={"base": base, "zone": base.split(".", 1)[1]},
        )
        deployment = self.put_deployment(project_id, deployment_id, fields)
        self._start_lifecycle(project_id, deployment_id, ["provisioning", "starting", "running"])
        return deployment

    def update_deployment(self, project_id: str, deployment_id: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Apply a validated update request; ``None`` if there is no such deployment.

        Raises :class:`DeploymentDeletingError` once a delete was asked for. A change to ``spec`` or
        ``ports`` rolls out a new deployment configuration: ``starting``, then ``running`` a step later.
        """
        deployment = self._deployment(project_id, deployment_id)
        if deployment is None:
            return None
        if deployment.get("status") == "deleting":
            raise DeploymentDeletingError(deployment_id)
        changes: dict[str, Any] = {k: copy.deepcopy(body[k]) for k in ("name", "description", "tags") if k in body}
        if "ports" in body:
            base = deployment["dns"]["base"]
            changes["ports"] = _ports_from_request(body["ports"], base, deployment.get("ports", []))
        configuration = body.get("spec", {}).get("configuration")
        if configuration is not None:
            spec = copy.deepcopy(deployment.get("spec") or {})
            stored = spec.get("configuration")
            stored = stored if isinstance(stored, dict) else {}
            merge = self.lifecycle.update_mode == "merge"
            spec["configuration"] = _deep_merge(stored, configuration) if merge else copy.deepcopy(configuration)
            changes["spec"] = spec
        if "spec" in changes or "ports" in changes:
            changes.update(status="starting", deploymentConfiguration=new_deployment_configuration(self.now()))
        updated = self.patch_deployment(project_id, deployment_id, changes)
        if "status" in changes:
            self._start_lifecycle(project_id, deployment_id, ["running"])
        return updated

    def request_delete(self, project_id: str, deployment_id: str) -> bool:
        """Start deleting: ``deleting`` now, gone (404) a lifecycle step later. False if unknown."""
        deployment = self._deployment(project_id, deployment_id)
        if deployment is None:
            return False
        if deployment.get("status") != "deleting":
            self.patch_deployment(project_id, deployment_id, {"status": "deleting"})
            steps = [ScriptStep(after_seconds=self.lifecycle.step_seconds, delete=True)]
            self.start_script(project_id, deployment_id, steps)
        return True

    def _start_lifecycle(self, project_id: str, deployment_id: str, statuses: list[str]) -> None:
        step = self.lifecycle.step_seconds
        self.start_script(project_id, deployment_id, [ScriptStep(after_seconds=step, status=s) for s in statuses])

    # Scripts

    def start_script(self, project_id: str, deployment_id: str, steps: Iterable[ScriptStep]) -> None:
        """Run ``steps`` in the background, replacing the deployment's running script if any.

        Must be called from the server's event loop.
        """
        self._cancel_script(project_id, deployment_id)
        key = (project_id, deployment_id)
        task = asyncio.get_running_loop().create_task(
            self._run_script(project_id, deployment_id, list(steps)),
            name=f"script {project_id}/{deployment_id}",
        )
        self._scripts[key] = task
        task.add_done_callback(lambda done: self._script_finished(key, done))

    async def stop_scripts(self) -> None:
        """Cancel every script and spender and wait for them, for a clean shutdown."""
        tasks = [*self._scripts.values(), *(task for _, task in self._spenders.values())]
        self._scripts.clear()
        self._spenders.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run_script(self, project_id: str, deployment_id: str, steps: list[ScriptStep]) -> None:
        for step in steps:
            await asyncio.sleep(step.after_seconds)
            if step.delete:
                self._remove_deployment(project_id, deployment_id)
                logger.info("script deleted %s/%s", project_id, deployment_id)
                return
            if self.patch_deployment(project_id, deployment_id, step.changes()) is None:
                logger.info("script for %s/%s stopped: the deployment is gone", project_id, deployment_id)
                return
            logger.info("script patched %s/%s: %s", project_id, deployment_id, sorted(step.changes()))

    def _cancel_script(self, project_id: str, deployment_id: str) -> None:
        task = self._scripts.pop((project_id, deployment_id), None)
        if task is not None:
            task.cancel()

    def _script_finished(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        if self._scripts.get(key) is task:
            del self._scripts[key]
        if not task.cancelled() and task.exception() is not None:
            logger.error("script for %s/%s failed", *key, exc_info=task.exception())

    # Hostile items

    def hostile_in(self, project_id: str) -> dict[str, HostileItem]:
        """The project's hostile deployments by id."""
        return {d: item for (p, d), item in self.hostile_items.items() if p == project_id}

    # Someone else spending a token's budget

    def start_spender(self, token: str, fraction: float) -> Spender:
        """Spend ``fraction`` of each of the token's windows in the background, replacing its spender.

        Must be called from the server's event loop.
        """
        self.stop_spender(token)
        spender = Spender(self.rate_limiter, token, fraction, self._clock)
        task = asyncio.get_running_loop().create_task(self._run_spender(token, spender), name=f"spender {token[:4]}…")
        self._spenders[token] = (spender, task)
        return spender

    def spender(self, token: str) -> Spender | None:
        running = self._spenders.get(token)
        return running[0] if running is not None else None

    def stop_spender(self, token: str) -> bool:
        running = self._spenders.pop(token, None)
        if running is not None:
            running[1].cancel()
        return running is not None

    async def _run_spender(self, token: str, spender: Spender) -> None:
        while True:
            if token in self._tokens:  # a revoked token has no budget to spend
                spender.tick()
            await asyncio.sleep(spender.interval)

    # Request log

    def record_request(
        self,
        *,
        method: str,
        path: str,
        query: dict[str, str],
        token_known: bool,
        status: int,
        fault_id: str | None,
        token_id: str | None = None,
        route: str = "other",
        token: str | None = None,
    ) -> None:
        """Remember a ``/v1`` request so tests can count calls; the token itself is never kept.

        ``token_id`` is the token's public id (``GET /v1/auth``'s ``id``; ``None`` for an unknown token) and
        ``route`` the kind of route (``get``, ``list``, ``auth`` or ``other``); both only feed
        :attr:`request_counts`, which keeps counting after the log has dropped old entries. ``token`` is
        the registered token that sent it (``None`` for an unknown one); only :attr:`write_counts` keeps
        it, and only for requests that are not reads.
        """
        self.request_counts[(token_id or "unknown", route, status)] += 1
        if method not in _READ_METHODS:
            self.write_counts[(token or "unknown", method, route, status)] += 1
        self.request_log.append(
            {
                "time": self.now(),
                "method": method,
                "path": path,
                "query": query,
                "tokenKnown": token_known,
                "status": status,
                "faultId": fault_id,
            }
        )

    def request_stats(self) -> list[dict[str, Any]]:
        """:attr:`request_counts` as JSON rows, sorted: ``{"tokenId", "route", "status", "count"}``."""
        return [
            {"tokenId": token_id, "route": route, "status": status, "count": count}
            for (token_id, route, status), count in sorted(self.request_counts.items())
        ]

    def write_stats(self) -> list[dict[str, Any]]:
        """:attr:`write_counts` as JSON rows, sorted: ``{"token", "method", "route", "status", "count"}``.

        Unlike :meth:`request_stats` these name the token: they exist so that a test suite can tell
        which of its own tokens wrote. Only tokens registered in the simulator are named (a token it
        does not know, which might be a real one sent by mistake, is ``unknown``).
        """
        return [
            {"token": token, "method": method, "route": route, "status": status, "count": count}
            for (token, method, route, status), count in sorted(self.write_counts.items())
        ]


_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class DeploymentExistsError(Exception):
    """A create whose name slugs to an id that is taken (Northflank answers 409)."""


class DeploymentDeletingError(Exception):
    """A write to a deployment that is being deleted."""


def slugify(name: str) -> str:
    """Northflank's ids are slug-ified names: ``"My Model 2"`` becomes ``my-model-2``."""
    return "-".join(part for part in re.split(r"[^a-z0-9]+", name.lower()) if part)


def _deep_merge(stored: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(stored)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _ports_from_request(
    requested: list[dict[str, Any]], base: str, previous: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Ports as GET serves them: a port keeps its id across updates (matched by name), public HTTP
    ports get a ``code.run`` host name, and ``domains`` are never returned (as on Northflank)."""
    ids = {port.get("name"): port.get("id") for port in previous if isinstance(port, dict)}
    taken = {port_id for port_id in ids.values() if isinstance(port_id, str)}
    numbers = (f"p{number:02d}" for number in itertools.count(1))
    ports: list[dict[str, Any]] = []
    for port in requested:
        port_id = ids.get(port["name"])
        if not isinstance(port_id, str):
            port_id = next(candidate for candidate in numbers if candidate not in taken)
            taken.add(port_id)
        served: dict[str, Any] = {
            "id": port_id,
            "name": port["name"],
            "internalPort": port["internalPort"],
            "protocol": port["protocol"],
            "public": port.get("public", False),
            "disableNfDomain": port.get("disableNfDomain", False),
        }
        if served["public"] and port["protocol"] in ("HTTP", "HTTP/2") and not served["disableNfDomain"]:
            served["dns"] = f"{port['name'].lower()}--{base}"
        ports.append(served)
    return ports
