"""The poll loop: carries out the planner's requests and writes what they found into status.

One loop per operator process. It attaches each resource the registry reports to its group (after
resolving its credentials), asks the :class:`~.planner.Planner` what to send next, runs a bounded
number of requests at once, fans each answer out to every resource it observed, and judges
staleness on a clock of its own so that ``Ready`` turns ``Unknown`` on time even when no request can
be sent. One resource's failure never stops the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pydantic

from .conditions import format_time
from .credentials import CredentialResolver, CredentialsError
from .kube import KubernetesGateway, ResourceGoneError, StatusConflictError, StatusRejectedError
from .northflank import (
    AuthenticationError,
    LLMModelDeployment,
    NorthflankClient,
    NorthflankError,
    NotFoundError,
    RateLimit,
    RateLimitError,
    ServerError,
)
from .northflank.client import summarize_validation_error
from .planner import GroupKey, Planner, Request, Urgency
from .registry import Registry, TrackedResource
from .resource import LLMModelDeploymentSpec, ResourceKey
from .settings import OperatorSettings
from .status import (
    INTERNAL_ERROR,
    PAUSED,
    STATUS_REJECTED,
    Failure,
    Observation,
    Outcome,
    StatusUpdate,
    Timing,
    compute_staleness,
    compute_status,
    fallback_status,
)

logger = logging.getLogger(__name__)

#: Status writes in flight at once (the Kubernetes gateway has as many worker threads).
_CONCURRENT_STATUS_WRITES = 16
#: The sequence number of the Northflank request whose answer the current task handles (set per
#: request task), so that a refresh is recorded only by an answer to a request sent after it.
_REQUEST_SEQ: contextvars.ContextVar[int] = contextvars.ContextVar("northflank_request_seq", default=0)


class PollObserver(Protocol):
    """Told what the loop sees (the metrics module implements it; the loop knows nothing of metrics)."""

    def rate_limit_seen(self, account: str, rate_limit: RateLimit) -> None: ...

    def status_written(self) -> None: ...


#: How soon a Secret read that failed transiently (API server 5xx, timeout) is tried again.
_CREDENTIALS_RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class _WriteJob:
    """What to write into one resource's status: an outcome, or (None) a staleness judgement."""

    outcome: Outcome | None
    generation: int
    #: The object the outcome belongs to: a re-created object of the same name never gets it.
    uid: str
    #: The reconcile-requested-at value this outcome answers (written to lastHandledReconcileAt).
    handled_reconcile_at: str | None = None


@dataclass(frozen=True)
class Attachment:
    """Where a resource is observed from, as decided for one generation of its spec."""

    uid: str
    generation: int
    group: GroupKey
    deployment_id: str
    interval: float
    uses_secret: bool


class _Deadlines:
    """Moments at which something must be looked at again, per resource (a heap, lazily pruned)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, ResourceKey]] = []
        self._at: dict[ResourceKey, float] = {}

    def arm(self, key: ResourceKey, when: float) -> None:
        self._at[key] = when
        heapq.heappush(self._heap, (when, key))

    def disarm(self, key: ResourceKey) -> None:
        self._at.pop(key, None)

    def pop_due(self, now: float) -> list[ResourceKey]:
        due = []
        while self._heap and self._heap[0][0] <= now:
            when, key = heapq.heappop(self._heap)
            if self._at.get(key) == when:
                del self._at[key]
                due.append(key)
        return due

    def next(self) -> float | None:
        while self._heap and self._at.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._at)


class Poller:
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
        observer: PollObserver | None = None,
        resync_namespaces: Sequence[str] | None = None,
    ) -> None:
        self._observer = observer
        self._registry = registry
        self._client = client
        self._credentials = credentials
        self._kube = kube
        self._settings = settings
        self._clock = clock
        self._wall_clock = wall_clock
        self.planner: Planner[ResourceKey] = planner or Planner(clock, settings.planner_config())
        self._started_at = wall_clock()
        self._attached: dict[ResourceKey, Attachment] = {}
        self._tokens: dict[str, str] = {}
        self._last_success: dict[ResourceKey, datetime] = {}
        self._stale_checks = _Deadlines()
        self._retries = _Deadlines()
        self._next_secret_sweep = clock() + settings.credentials_cache_seconds
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        # Status writes wait here, one per resource (a newer answer replaces an older one still
        # waiting), so that requests keep their planned pace however slowly Kubernetes writes.
        self._jobs: dict[ResourceKey, _WriteJob] = {}
        self._writing: set[ResourceKey] = set()
        self._jobs_waiting = asyncio.Event()
        self._writes_idle = asyncio.Event()
        self._writers: list[asyncio.Task[None]] = []
        # Refresh requests (annotation value, last request sequence number sent before it) not yet
        # shown in status, and the resources paused by annotation.
        self._refresh: dict[ResourceKey, tuple[str, int]] = {}
        self._request_seq = 0
        self._paused: set[ResourceKey] = set()
        # Periodic resync: a deletion missed in a watch gap is found by listing (None: all namespaces).
        self._resync_namespaces = list(resync_namespaces) if resync_namespaces is not None else None
        self._next_resync = clock() + settings.resync_seconds
        self._resync_task: asyncio.Task[None] | None = None
        #: Called when a resync finds that the API server no longer serves the resource.
        self.on_unserved: Callable[[], None] | None = None

    # -- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll forever (until cancelled)."""
        try:
            while True:
                await self.step()
                await self._sleep()
        finally:
            resync = [self._resync_task] if self._resync_task is not None else []
            for task in [*self._tasks, *self._writers, *resync]:
                task.cancel()
            await asyncio.gather(*self._tasks, *self._writers, *resync, return_exceptions=True)
            self._writers.clear()

    async def step(self) -> None:
        """One pass: take registry changes, judge staleness, start whatever requests are due."""
        if not self._writers:
            self._writers = [
                asyncio.create_task(self._write_worker(), name=f"status-writer-{i}")
                for i in range(_CONCURRENT_STATUS_WRITES)
            ]
        now = self._clock()
        if now >= self._next_resync and (self._resync_task is None or self._resync_task.done()):
            self._next_resync = now + self._settings.resync_seconds
            self._resync_task = asyncio.create_task(self._resync(), name="resync")
        self._registry.mark_pending(self._retries.pop_due(now))
        if now >= self._next_secret_sweep:
            # Secrets are re-read when their cache expires, so a rotated token moves its resources.
            self._next_secret_sweep = now + max(self._settings.credentials_cache_seconds, 1.0)
            # So is the operator-wide token file: a changed file moves every resource using it.
            rotated = self._credentials.refresh_default()
            self._registry.mark_pending(key for key, a in self._attached.items() if a.uses_secret or rotated)
        for key in self._registry.take_pending():
            await self._guarded(key, self._sync(key))
        for key in self._stale_checks.pop_due(now):
            attachment = self._attached.get(key)
            if attachment is not None:
                self._enqueue(key, _WriteJob(None, attachment.generation, attachment.uid))
        self._start_requests()

    async def drain(self) -> None:
        """Wait until no request is in flight and every status is written (tests step the loop by hand
        with a fake clock)."""
        if self._resync_task is not None:
            await asyncio.gather(self._resync_task, return_exceptions=True)
        while self._tasks or self._jobs or self._writing:
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            else:
                self._writes_idle.clear()
                await self._writes_idle.wait()

    def _start_requests(self) -> None:
        while len(self._tasks) < self._settings.max_concurrent_requests:
            decision = self.planner.next_request()
            if not isinstance(decision, Request):
                return
            task = asyncio.create_task(self._execute(decision), name=f"northflank {decision}")
            self._tasks.add(task)
            task.add_done_callback(self._request_done)

    def _request_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()

    async def _sleep(self) -> None:
        wakes = [self._stale_checks.next(), self._retries.next(), self._next_secret_sweep, self._next_resync]
        if len(self._tasks) < self._settings.max_concurrent_requests:
            wakes.append(self.planner.next_wake())
        known = [w for w in wakes if w is not None]
        timeout = max(0.0, min(known) - self._clock()) if known else None
        self._registry.changed.clear()
        self._wake.clear()
        waiters = [asyncio.ensure_future(self._registry.changed.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _guarded(self, key: ResourceKey, work: Any) -> None:
        try:
            await work
        except Exception:
            # A bug or an unexpected Kubernetes error must not end polling for everyone else.
            logger.exception("Handling %s failed unexpectedly; retrying later", key)
            self._retries.arm(key, self._clock() + self._settings.poll_interval_seconds)

    # -- resync ---------------------------------------------------------------------------------

    async def _resync(self) -> None:
        """List the resources from the API server and forget the tracked ones that are gone.

        kopf re-lists after a watch gap without reporting deletions, so a resource deleted in the gap
        would otherwise be polled forever. Only resources the listing is newer than are judged.
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
                    if found.get(resource.key) == resource.uid or not _not_newer(
                        resource.resource_version, list_version
                    ):
                        continue
                    logger.info("%s was deleted while the watch was not looking; forgetting it", resource.key)
                    self._registry.forget(resource.key, uid=resource.uid)
        except Exception:
            logger.warning("Resync with the API server failed; trying again later", exc_info=True)

    # -- attaching resources to their groups --------------------------------------------------

    async def _sync(self, key: ResourceKey) -> None:
        resource = self._registry.get(key)
        if resource is None:
            self._detach(key)
            return
        try:
            spec = LLMModelDeploymentSpec.model_validate(resource.spec)
        except pydantic.ValidationError as exc:
            self._detach(key)
            message = f"spec is invalid: {summarize_validation_error(exc)}"
            self._enqueue(
                key, _WriteJob(Failure("InvalidSpec", message, transient=False), resource.generation, resource.uid)
            )
            return  # a new generation brings it back
        if resource.paused:
            self._pause(key, resource, spec)
            return
        resumed = key in self._paused
        self._paused.discard(key)
        refresh = self._note_refresh(key, resource)
        try:
            credential = await self._credentials.resolve(key.namespace, spec)
        except CredentialsError as exc:
            self._detach(key)
            failure = Failure(exc.reason, exc.message, transient=exc.transient)
            # Nothing can be observed: that is the answer to a refresh request too.
            self._enqueue(key, _WriteJob(failure, resource.generation, resource.uid, resource.reconcile_requested_at))
            # A Secret read the API server failed to answer is retried soon; a missing one at the interval.
            delay = (
                min(self._interval_of(spec), _CREDENTIALS_RETRY_SECONDS) if exc.transient else self._interval_of(spec)
            )
            self._retries.arm(key, self._clock() + delay)
            return
        group = GroupKey(credential.identity, spec.project_id, spec.team_id)
        self._tokens[credential.identity] = credential.token
        interval = self._interval_of(spec)
        previous = self._attached.get(key)
        attachment = Attachment(
            resource.uid,
            resource.generation,
            group,
            spec.llm_model_deployment_id,
            interval,
            spec.credentials_secret_ref is not None,
        )
        if previous is None:
            urgent = not _observed_at_generation(resource)  # new, or changed while the operator was away
        else:
            # A spec change or a rotated token is observed at once; a re-read Secret that still
            # holds the same token changes nothing.
            urgent = previous.generation != resource.generation or (previous.group, previous.deployment_id) != (
                group,
                attachment.deployment_id,
            )
        self._attached[key] = attachment
        # A refresh request or the end of a pause: observed at once (inside the budget's reserve).
        if refresh:
            urgency = Urgency.REQUESTED
        elif urgent or resumed:
            urgency = Urgency.CHANGED
        else:
            urgency = Urgency.ROUTINE
        self.planner.track(key, group, attachment.deployment_id, interval, urgency=urgency)
        if previous is None and urgency is Urgency.ROUTINE:
            # Observed before this process started: stale only if nothing comes within the limit.
            self._arm_staleness(key, self._timing(key, attachment))
        self._forget_unused_tokens()

    def _pause(self, key: ResourceKey, resource: TrackedResource, spec: LLMModelDeploymentSpec) -> None:
        """No request for a paused resource; its attachment and staleness clock stay, so Ready turns
        Unknown by the normal rule while the last observation is kept."""
        self.planner.untrack(key)
        self._forget_unused_tokens()
        if key not in self._attached:
            # Paused before this process started: its staleness is still judged, on the interval it
            # asks for (no account: its credentials are not even read while it is paused).
            attachment = Attachment(
                resource.uid,
                resource.generation,
                GroupKey("", spec.project_id, spec.team_id),
                spec.llm_model_deployment_id,
                self._interval_of(spec),
                uses_secret=False,
            )
            self._attached[key] = attachment
            self._arm_staleness(key, self._timing(key, attachment))
        if key not in self._paused:
            self._paused.add(key)
            self._refresh.pop(key, None)
            self._enqueue(key, _WriteJob(PAUSED, resource.generation, resource.uid))

    def _note_refresh(self, key: ResourceKey, resource: TrackedResource) -> bool:
        """Whether the resource asks for a refresh not seen before (it is then observed at once)."""
        value = resource.reconcile_requested_at
        if value is None or value == resource.status.get("lastHandledReconcileAt"):
            self._refresh.pop(key, None)
            return False
        known = self._refresh.get(key)
        if known is not None and known[0] == value:
            return False
        self._refresh[key] = (value, self._request_seq)
        return True

    def _handled_refresh(self, key: ResourceKey) -> str | None:
        """The refresh value an answer handled by the current request task settles, if any."""
        known = self._refresh.get(key)
        return known[0] if known is not None and _REQUEST_SEQ.get() > known[1] else None

    def _detach(self, key: ResourceKey) -> None:
        self._paused.discard(key)
        self._refresh.pop(key, None)
        self.planner.untrack(key)
        self._attached.pop(key, None)
        self._last_success.pop(key, None)
        self._stale_checks.disarm(key)
        self._retries.disarm(key)
        self._forget_unused_tokens()

    def _forget_unused_tokens(self) -> None:
        if len(self._tokens) > len(self.planner.accounts()):
            in_use = set(self.planner.accounts())
            for account in [a for a in self._tokens if a not in in_use]:
                del self._tokens[account]  # nothing is kept for a rotated-away or unused token

    def _interval_of(self, spec: LLMModelDeploymentSpec) -> float:
        return float(spec.poll_interval_seconds or self._settings.poll_interval_seconds)

    # -- requests -----------------------------------------------------------------------------

    async def _execute(self, request: Request) -> None:
        self._request_seq += 1
        _REQUEST_SEQ.set(self._request_seq)  # this task's own context
        try:
            token = self._tokens.get(request.group.account)
            if token is None:  # every resource of this account went away meanwhile
                self.planner.failed(request, transient=False)
                return
            if request.is_list:
                await self._list(request, token)
            else:
                await self._get(request, token)
        except Exception:
            logger.exception("Observing %s failed unexpectedly; retrying later", _describe(request))
            affected = self.planner.failed(request, transient=True)
            self._fan_out(
                request.group,
                affected,
                Failure(INTERNAL_ERROR, "The operator failed to process Northflank's answer; see its log.", True),
            )
        finally:
            self.planner.request_finished(request)

    async def _get(self, request: Request, token: str) -> None:
        group, deployment_id = request.group, request.deployment_id or ""
        try:
            result = await self._client.get_llm_model_deployment(
                group.project_id, deployment_id, token=token, team_id=group.team_id
            )
        except NotFoundError as exc:
            self.planner.credentials_accepted(group.account)
            self._record_headers(group, exc.rate_limit, rejected=False)
            self.planner.observed(group, deployment_id, None)
            self._fan_out(group, [deployment_id], Failure.from_error(exc))
            return
        except NorthflankError as exc:
            await self._failed(request, exc)
            return
        self.planner.credentials_accepted(group.account)
        self._record_headers(group, result.rate_limit, rejected=False)
        self.planner.observed(group, deployment_id, result.data.status)
        self._fan_out(group, [deployment_id], Observation(result.data))

    async def _list(self, request: Request, token: str) -> None:
        group = request.group
        tracked = self.planner.tracked_ids(group)
        found: dict[str, Mapping[str, Any]] = {}
        cursor: str | None = None
        pages = 0
        complete = False
        while True:
            if pages >= request.cost and not self._may_spend_extra_page(request):
                break  # longer than planned and the budget is short: finish on a later round
            try:
                result = await self._client.list_llm_model_deployments(
                    group.project_id, token=token, team_id=group.team_id, cursor=cursor,
                    page=None if cursor is not None or pages == 0 else pages + 1,
                )  # fmt: skip
            except NorthflankError as exc:
                await self._failed(request, exc)
                return
            pages += 1
            self.planner.credentials_accepted(group.account)
            self._record_headers(group, result.rate_limit, rejected=False)
            for item in result.data.items:
                deployment_id = item.get("id") if isinstance(item, Mapping) else None
                if isinstance(deployment_id, str):
                    found[deployment_id] = item
            if not result.data.has_next_page:
                complete = True
                break
            if tracked <= found.keys():
                break  # every tracked deployment is seen: the rest of the listing can wait
            cursor = result.data.cursor
        # Resources that arrived while the listing ran are observed by it too.
        tracked = self.planner.tracked_ids(group)
        outcomes = {
            deployment_id: _outcome_of(item) for deployment_id, item in found.items() if deployment_id in tracked
        }
        phases = {
            deployment_id: outcome.deployment.status
            for deployment_id, outcome in outcomes.items()
            if isinstance(outcome, Observation)
        }
        phases.update({d: str(found[d].get("status")) for d in outcomes if d not in phases})
        to_confirm, still_gone = self.planner.listed(group, phases, pages=pages, complete=complete)
        if to_confirm:
            logger.info("%d tracked deployment(s) missing from a listing of %s; confirming each with a GET",
                        len(to_confirm), group.project_id)  # fmt: skip
        self._still_current(group, still_gone)
        for deployment_id, outcome in outcomes.items():
            self._fan_out(group, [deployment_id], outcome)

    def _record_headers(self, group: GroupKey, rate_limit: RateLimit | None, *, rejected: bool) -> bool:
        if self._observer is not None and rate_limit is not None:
            self._observer.rate_limit_seen(group.account, rate_limit)
        return self.planner.record_headers(group, rate_limit, rejected=rejected)

    def _may_spend_extra_page(self, request: Request) -> bool:
        budget = self.planner.budget(request.group.account)
        if budget is None:
            return False
        now = self._clock()
        if budget.held(now) is not None or (budget.remaining is not None and budget.remaining <= budget.reserve // 2):
            return False
        budget.spend(now, 1, urgent=request.urgent)
        return True

    async def _failed(self, request: Request, error: NorthflankError) -> None:
        group = request.group
        rejected = isinstance(error, RateLimitError)
        new_hold = self._record_headers(group, error.rate_limit, rejected=rejected)
        budget = self.planner.budget(group.account)
        held_until = budget.held(self._clock()) if budget is not None else None
        failure = Failure.from_error(error)
        if rejected and held_until is not None:
            resume = self._wall_clock() + timedelta(seconds=held_until - self._clock())
            failure = Failure(
                "RateLimited",
                f"Northflank's rate limit for these credentials is spent; polling resumes at {format_time(resume)}.",
                transient=True,
            )
            if new_hold:
                # One warning per account and window, however many resources wait.
                logger.warning("Northflank's rate limit for one set of credentials is spent until %s; "
                               "its resources wait", format_time(resume))  # fmt: skip
        retry_at = held_until if rejected else None
        retry_after = error.retry_after_seconds if isinstance(error, ServerError) else None
        if retry_at is None and retry_after is not None:
            # A 502/503 that says when to come back (capped at the documented hour): come back then.
            retry_at = self._clock() + retry_after
            resume = self._wall_clock() + timedelta(seconds=retry_after)
            failure = Failure(
                failure.reason,
                f"{failure.message} Northflank asked to retry later; polling resumes at {format_time(resume)}.",
                transient=True,
            )
        if isinstance(error, AuthenticationError):
            # 401 is about the token itself, so it holds all of the token's resources. 403 is not: a
            # token may lack access to one project only, so it fails only its own resources.
            await self._credentials_rejected(request, failure)
            return
        affected = self.planner.failed(request, transient=error.transient, retry_at=retry_at)
        self._fan_out(group, affected, failure)

    async def _credentials_rejected(self, request: Request, failure: Failure) -> None:
        """A 401 holds every resource of these credentials (a circuit breaker): one probe per interval
        instead of one failing request per resource. Only the probed resource is told (the others keep
        their status and turn stale on the clock, saying why), so there is no storm of writes or Events."""
        group = request.group
        opened = self.planner.credentials_rejected(request)
        budget = self.planner.budget(group.account)
        held_until = budget.held(self._clock()) if budget is not None else None
        # The rejected target waits a full interval after the hold, so the next probe is another
        # resource's (a 401 that is about one resource only does not starve the others).
        self.planner.failed(request, transient=False)
        affected = [request.deployment_id] if request.deployment_id else sorted(self.planner.tracked_ids(group))
        if held_until is not None:
            wait = held_until - self._clock()
            probe = self._wall_clock() + timedelta(seconds=wait)
            # No moment in the message: it must stay the same from one probe to the next (no rewrites).
            failure = Failure(
                failure.reason,
                f"{failure.message} Every resource using these credentials waits; one request probes them "
                f"every {math.ceil(wait)}s.",
                transient=False,
            )
            if opened:
                logger.warning("Northflank rejected one set of credentials (%s); its %d deployment(s) wait, "
                               "probing at %s", failure.reason, len(self.planner.account_targets(group.account)),
                               format_time(probe))  # fmt: skip
        self._drop_cached_credentials(group, affected)
        self._fan_out(group, affected, failure)

    def _drop_cached_credentials(self, group: GroupKey, deployment_ids: Iterable[str]) -> None:
        """After a 401, read the Secrets again on the next pass: the token may have been rotated."""
        keys = [key for d in deployment_ids for key in self.planner.resources_of(group, d)]
        for key in keys:
            resource = self._registry.get(key)
            if resource is None:
                continue
            with contextlib.suppress(pydantic.ValidationError):
                self._credentials.forget(key.namespace, LLMModelDeploymentSpec.model_validate(resource.spec))
        self._registry.mark_pending(keys)

    # -- status -------------------------------------------------------------------------------

    def _still_current(self, group: GroupKey, deployment_ids: Iterable[str]) -> None:
        """A listing confirmed what the status already says (NotFound): fresh, nothing to write."""
        for deployment_id in deployment_ids:
            for key in self.planner.resources_of(group, deployment_id):
                attachment = self._attached.get(key)
                if attachment is not None:
                    self._last_success[key] = self._wall_clock()
                    self._arm_staleness(key, self._timing(key, attachment))

    def _fan_out(self, group: GroupKey, deployment_ids: Iterable[str], outcome: Outcome) -> None:
        """Hand ``outcome`` to the status writers for every resource observing these deployments."""
        current = isinstance(outcome, Observation) or (isinstance(outcome, Failure) and outcome.not_found)
        for deployment_id in deployment_ids:
            for key in self.planner.resources_of(group, deployment_id):
                attachment = self._attached.get(key)
                if attachment is None:
                    continue
                if current:
                    # A confirmed 404 is an answer too: the status is current, not stale.
                    self._last_success[key] = self._wall_clock()
                handled = self._handled_refresh(key)
                if handled is None and key in self._refresh:
                    # Asked before the refresh request: the planner just scheduled the target by its
                    # routine cadence, so ask again for the urgent observation the refresh wants.
                    self.planner.track(key, group, deployment_id, attachment.interval, urgency=Urgency.REQUESTED)
                self._enqueue(key, _WriteJob(outcome, attachment.generation, attachment.uid, handled))

    def _enqueue(self, key: ResourceKey, job: _WriteJob) -> None:
        if job.outcome is None and key in self._jobs:
            return  # an answer is already waiting to be written: nothing is stale
        self._jobs[key] = job
        self._jobs_waiting.set()

    async def _write_worker(self) -> None:
        while True:
            key = next((k for k in self._jobs if k not in self._writing), None)
            if key is None:
                if not self._writing:
                    self._writes_idle.set()
                self._jobs_waiting.clear()
                await self._jobs_waiting.wait()
                continue
            job = self._jobs.pop(key)
            self._writing.add(key)
            try:
                await self._guarded(key, self._perform(key, job))
            finally:
                self._writing.discard(key)
                self._jobs_waiting.set()  # a job for this key may have waited for this write

    async def _perform(self, key: ResourceKey, job: _WriteJob) -> None:
        resource = self._registry.get(key)
        if resource is None or resource.uid != job.uid:
            return  # deleted, or re-created under the same name: the outcome is not about this object
        attachment = self._attached.get(key)
        if attachment is not None and attachment.uid != job.uid:
            attachment = None
        timing = self._timing(key, attachment)
        if job.outcome is None:
            if attachment is not None:
                await self._judge_staleness(resource, attachment, timing)
            return
        try:
            update = compute_status(
                resource.status,
                job.outcome,
                generation=job.generation,
                timing=timing,
                expected_phase=_expected_phase(resource),
                handled_reconcile_at=job.handled_reconcile_at,
            )
        except Exception:
            # A bug, or an answer too hostile to map (RecursionError on deep JSON, ...): say so.
            logger.exception("Mapping the outcome for %s to a status failed", key)
            failure = Failure(INTERNAL_ERROR, "The operator failed to map Northflank's answer; see its log.", True)
            try:
                update = compute_status(resource.status, failure, generation=job.generation, timing=timing,
                                        expected_phase=_expected_phase(resource),
                                        handled_reconcile_at=job.handled_reconcile_at)  # fmt: skip
            except Exception:
                update = fallback_status(resource.status, failure, generation=job.generation, timing=timing)
        await self._apply(resource, update, job, timing)
        if attachment is not None:
            self._arm_staleness(key, timing)

    def freshness(self, key: ResourceKey) -> tuple[datetime | None, float | None]:
        """The last success staleness is judged from, and the effective interval, of ``key`` (metrics)."""
        attachment = self._attached.get(key)
        if attachment is None:
            return None, None
        timing = self._timing(key, attachment)
        return timing.last_success, timing.effective_interval

    def _timing(self, key: ResourceKey, attachment: Attachment | None) -> Timing:
        interval = attachment.interval if attachment else float(self._settings.poll_interval_seconds)
        stretch = self.planner.reported_stretch(attachment.group.account) if attachment else 1.0
        effective = interval * stretch
        last_success = self._last_success.get(key)
        if last_success is None and attachment is not None:
            # Observed before this process started: its downtime is not the resource's fault, and
            # the first observation comes within one interval of the start.
            last_success = self._started_at
        return Timing(
            now=self._wall_clock(),
            heartbeat=timedelta(seconds=self._settings.status_heartbeat_seconds),
            stale_after=timedelta(seconds=effective * self._settings.stale_after_intervals),
            last_success=last_success,
            requested_interval=interval,
            effective_interval=effective,
        )

    def _arm_staleness(self, key: ResourceKey, timing: Timing) -> None:
        """Look at ``key`` again when its last successful observation will be too old."""
        if timing.last_success is None:
            return
        remaining = (timing.last_success + timing.stale_after - timing.now).total_seconds()
        self._stale_checks.arm(key, self._clock() + max(remaining, 0.0) + 0.5)

    async def _judge_staleness(self, resource: TrackedResource, attachment: Attachment, timing: Timing) -> None:
        assert timing.last_success is not None  # _timing always has one for an attached resource
        if timing.now - timing.last_success < timing.stale_after:
            self._arm_staleness(resource.key, timing)  # observed meanwhile, or the plan moved
            return
        cause = PAUSED.message if resource.key in self._paused else self._hold_cause(attachment.group)
        update = compute_staleness(resource.status, generation=attachment.generation, timing=timing, cause=cause)
        await self._apply(resource, update, _WriteJob(None, attachment.generation, resource.uid), timing)

    async def _write(
        self, resource: TrackedResource, patch: Mapping[str, Any], job: _WriteJob
    ) -> Mapping[str, Any] | None:
        """Write ``patch`` to exactly the object that was read (its uid at its resourceVersion)."""
        try:
            return await self._kube.patch_status(
                resource.key, patch, uid=resource.uid, resource_version=resource.resource_version or None
            )
        except ResourceGoneError:
            # Forget only the object that is gone: a late 404 or conflict for a deleted object must not
            # drop one re-created under the same name meanwhile.
            self._registry.forget(resource.key, uid=resource.uid)
            return None
        except StatusConflictError as exc:
            # Someone else wrote the object since it was read: map the outcome again onto what it is now.
            self._registry.observe("MODIFIED", exc.current)
            if resource.key not in self._jobs:
                self._jobs[resource.key] = job
                self._jobs_waiting.set()
            return None

    def _hold_cause(self, group: GroupKey) -> str | None:
        budget = self.planner.budget(group.account)
        held = budget.held(self._clock()) if budget is not None else None
        if held is None or budget is None:
            return None
        if budget.breaker_open:
            return "Northflank rejected these credentials (HTTP 401); one request probes them every interval."
        resume = self._wall_clock() + timedelta(seconds=held - self._clock())
        return f"Northflank's rate limit for these credentials is spent until {format_time(resume)}."

    async def _apply(self, resource: TrackedResource, update: StatusUpdate, job: _WriteJob, timing: Timing) -> None:
        if not update.patch:
            return
        try:
            stored = await self._write(resource, update.patch, job)
        except StatusRejectedError as exc:
            # The API server will never take this status (a number beyond int64, over etcd's size
            # limit ...): replace it with a small one that only says why, so Ready stops saying True.
            logger.error("The API server refused the status of %s (%s); writing only the conditions", resource.key, exc)
            failure = Failure(
                STATUS_REJECTED,
                f"The API server refused the observed status (HTTP {exc.status}: {exc.message}).",
                transient=True,
            )
            update = fallback_status(resource.status, failure, generation=job.generation, timing=timing)
            if not update.patch:
                return
            stored = await self._write(resource, update.patch, job)
        if stored is None:
            return
        self._registry.record_written(resource.key, stored)
        if self._observer is not None:
            self._observer.status_written()
        for event in update.events:
            # Transitions only (never every poll), so this log stays readable with thousands of resources.
            level = logging.WARNING if event.type == "Warning" else logging.INFO
            logger.log(level, "%s: %s: %s", resource.key, event.reason, event.message)
            try:
                await self._kube.record_event(resource.key, resource.uid, event)
            except Exception:
                logger.warning("Could not record event %s on %s", event.reason, resource.key, exc_info=True)


def _not_newer(resource_version: str, list_version: str) -> bool:
    """Whether an object at ``resource_version`` is covered by a listing at ``list_version``."""
    try:
        return int(resource_version) <= int(list_version)
    except ValueError:
        return False


def _observed_at_generation(resource: TrackedResource) -> bool:
    """Whether the stored status already describes this generation (the operator restarted)."""
    status = resource.status
    return (
        status.get("observedGeneration") == resource.generation and "phase" in status and status["phase"] != ("unknown")
    )


def _expected_phase(resource: TrackedResource) -> str:
    # The spec was validated when the resource was attached; an older or odd value means the default.
    expected = resource.spec.get("expectedPhase")
    return expected if expected in ("running", "paused") else "running"


def _outcome_of(item: Mapping[str, Any]) -> Outcome:
    try:
        return Observation(LLMModelDeployment.model_validate(item))
    except pydantic.ValidationError as exc:
        return Failure(
            "InvalidResponse",
            f"Northflank's listing does not match the API contract: {summarize_validation_error(exc)}",
            transient=True,
        )


def _describe(request: Request) -> str:
    what = "listing" if request.is_list else f"deployment {request.deployment_id}"
    return f"{what} of project {request.group.project_id}"
