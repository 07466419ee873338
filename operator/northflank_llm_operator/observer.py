"""The observer: decides what to ask Northflank, asks, and keeps the answers.

It owns the :class:`~.planner.Planner` (pure scheduling), the Northflank client and an observation
cache keyed by target (account, team, project, deployment). Each answer carries the sequence number
of the request that brought it, and an answer older than the one already kept is dropped, so a slow
GET sent before a listing can never move a phase backwards. When what a resource should show
changes, the observer hands its key to ``notify`` (the work queue); it never writes status.

It never awaits Kubernetes: a Secret is read in a task of its own (one per Secret at a time, however
many resources use it), and the loop only looks at what the reads left behind.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import pydantic

from .credentials import TRANSIENT_RETRY_SECONDS, CredentialResolver, CredentialsError, SecretId, secret_id_of
from .messages import credentials_probe_message, rate_limit_hold_cause, rate_limited_message, retry_after_message
from .northflank import (
    AuthenticationError,
    FencedError,
    LLMModelDeployment,
    NorthflankClient,
    NorthflankError,
    NotFoundError,
    RateLimit,
    RateLimitError,
    ServerError,
)
from .northflank.client import summarize_validation_error
from .northflank.errors import InvalidResponseError
from .planner import GroupKey, Planner, Request, Urgency
from .resource import LLMModelDeploymentSpec, ResourceKey
from .settings import OperatorSettings
from .status import INTERNAL_ERROR, PAUSED, Failure, Observation, Outcome

logger = logging.getLogger(__name__)

#: How soon a resource whose Secret read failed transiently (API server 5xx, timeout) is tried again.
CREDENTIALS_RETRY_SECONDS = TRANSIENT_RETRY_SECONDS
#: Secret reads in flight at once (each is one Kubernetes GET in the gateway's thread pool).
_CONCURRENT_SECRET_READS = 8
#: Requests in flight at once across every account (a bound on memory; pacing is per account).
_MAX_REQUESTS_IN_FLIGHT = 256
#: Failures that say when the next try is (a rate-limit hold) are shown at once; other transient
#: failures only when the same kind fails twice in a row, so a single blip writes nothing.
_SHOWN_AT_ONCE = frozenset({"RateLimited"})


class RequestObserver(Protocol):
    """Told what the observer sees (the metrics module implements it)."""

    def rate_limit_seen(self, account: str, rate_limit: RateLimit) -> None: ...


@dataclass(frozen=True)
class Attachment:
    """Where a resource is observed from, as decided for one generation of its spec."""

    uid: str
    generation: int
    group: GroupKey
    deployment_id: str
    interval: float
    secret: SecretId | None
    #: The cache revision when it attached: only answers stored after it are about this attachment.
    since: int


@dataclass(frozen=True)
class Stored:
    """One outcome in the cache."""

    outcome: Outcome
    #: Sequence number of the request that brought it (0: not from a request).
    sent: int
    #: Cache revision when it was stored (the order in which outcomes arrived).
    rev: int


@dataclass
class _TargetState:
    stored: Stored | None = None
    #: Reason and count of the transient failures in a row not shown yet, and when the first came.
    streak: tuple[str, int] | None = None
    #: When the last success was stored (this process's clock).
    succeeded_at: float = 0.0


@dataclass
class _ResourceState:
    #: The object this state is about (a re-created object of the same name starts afresh).
    uid: str = ""
    attachment: Attachment | None = None
    #: An outcome about the resource itself (its spec, its credentials, a pause), newest wins.
    own: Stored | None = None
    paused: bool = False
    #: The refresh annotation value not yet answered, and the request sequence number when it came.
    refresh: tuple[str, int] | None = None
    #: The last successful observation (or this process's start, for one observed before it).
    last_success: datetime | None = None
    #: The Secret this resource waits to be read before it can be attached.
    waiting_for: SecretId | None = None
    #: Management: a write ended when this request number was the last sent; an answer to a later one
    #: is wanted soon (an answer to an earlier one asks again at once).
    confirm_after: int | None = None


@dataclass(frozen=True)
class View:
    """What the reconciler needs to know about one resource."""

    outcome: Stored | None
    last_success: datetime | None
    interval: float
    effective_interval: float
    observing: bool
    paused: bool
    #: Why requests wait (a rate-limit hold, rejected credentials), to add to a stale message.
    hold_cause: str | None
    #: The refresh annotation value the outcome answers, if it does.
    handled_refresh: str | None
    #: Look again this soon (seconds) although nothing may notify: credentials to read again.
    retry_in: float | None = None


@dataclass
class Observer:
    client: NorthflankClient
    credentials: CredentialResolver
    settings: OperatorSettings
    #: Called with the key of every resource whose view changed (the work queue's ``add``).
    notify: Callable[[ResourceKey], None]
    planner: Planner[ResourceKey]
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    metrics: RequestObserver | None = None

    def __post_init__(self) -> None:
        self._started_at = self.wall_clock()
        self._targets: dict[tuple[GroupKey, str], _TargetState] = {}
        self._resources: dict[ResourceKey, _ResourceState] = {}
        self._tokens: dict[str, str] = {}
        self._request_seq = itertools.count(1)
        self._last_sent = 0
        self._rev = itertools.count(1)
        self._requests: set[asyncio.Task[None]] = set()
        self._secret_reads: dict[SecretId, asyncio.Task[None]] = {}
        self._secret_waiters: dict[SecretId, set[ResourceKey]] = {}
        self._next_secret_sweep = self.clock() + self.settings.credentials_cache_seconds
        #: Set when a request or a Secret read ends (the loop may have more to do).
        self.wake = asyncio.Event()

    # -- membership (called by the reconciler; no I/O) ---------------------------------------

    def attach(self, key: ResourceKey, uid: str, generation: int, spec: LLMModelDeploymentSpec,
               *, observed_before: bool, refresh: str | None, handled_refresh: str | None) -> None:  # fmt: skip
        """Observe ``spec``'s deployment for ``key``. With credentials not read yet, the Secret is read
        in the background and ``key`` is handed to ``notify`` once it is."""
        state = self._state(key, uid)
        resumed = state.paused
        state.paused = False
        requested = self._note_refresh(state, refresh, handled_refresh)
        try:
            credential = self.credentials.peek(key.namespace, spec)
        except CredentialsError as exc:
            self._credentials_failed(key, state, exc, observed_before=observed_before)
            return
        if credential is None:
            secret = secret_id_of(key.namespace, spec)
            assert secret is not None  # only a Secret can be unread
            self._read_secret_later(key, state, secret)
            return
        state.waiting_for = None
        self._tokens[credential.identity] = credential.token
        previous = state.attachment
        group = GroupKey(credential.identity, spec.project_id, spec.team_id)
        interval = self._interval_of(spec)
        same_object = previous is not None
        moved = previous is None or (previous.group, previous.deployment_id) != (group, spec.llm_model_deployment_id)
        changed = not same_object or moved or previous is None or previous.generation != generation
        since = next(self._rev) if changed else previous.since  # type: ignore[union-attr]
        state.attachment = Attachment(uid, generation, group, spec.llm_model_deployment_id, interval,
                                      secret_id_of(key.namespace, spec), since)  # fmt: skip
        if state.own is not None and state.own.outcome is not PAUSED:
            state.own = None  # a credentials or spec problem is over
        if requested:
            urgency = Urgency.REQUESTED
        elif (changed and not (previous is None and observed_before)) or resumed:
            urgency = Urgency.CHANGED
        else:
            urgency = Urgency.ROUTINE
        self.planner.track(key, group, spec.llm_model_deployment_id, interval, urgency=urgency)
        self.wake.set()  # the plan may have new work due before the loop meant to look again
        if state.last_success is None and urgency is Urgency.ROUTINE:
            # Observed before this process started: its downtime is not the resource's fault, and
            # the first observation comes within one interval of the start.
            state.last_success = self._started_at
        self._forget_unused()

    def pause(self, key: ResourceKey, uid: str, generation: int, spec: LLMModelDeploymentSpec) -> None:
        """No request for a paused resource; its last observation and staleness clock stay."""
        state = self._state(key, uid)
        self.planner.untrack(key)
        if state.attachment is None:
            # Paused before this process started: staleness is still judged, on the interval it asks
            # for (its credentials are not even read while it is paused).
            state.attachment = Attachment(uid, generation, GroupKey("", spec.project_id, spec.team_id),
                                          spec.llm_model_deployment_id, self._interval_of(spec), None,
                                          next(self._rev))  # fmt: skip
            state.last_success = state.last_success or self._started_at
        if not state.paused:
            state.paused = True
            state.refresh = None
            state.own = Stored(PAUSED, 0, next(self._rev))
        self._forget_unused()

    def reject(self, key: ResourceKey, uid: str, failure: Failure) -> None:
        """The resource cannot be observed at all (its spec is invalid): nothing is asked for it."""
        state = self._state(key, uid)
        self.detach(key, keep=True)
        if state.own is None or state.own.outcome != failure:
            state.own = Stored(failure, 0, next(self._rev))

    def detach(self, key: ResourceKey, *, keep: bool = False) -> None:
        """Forget ``key`` (deleted). ``keep``: only stop observing, keep its own outcome."""
        self.planner.untrack(key)
        state = self._resources.setdefault(key, _ResourceState()) if keep else self._resources.pop(key, None)
        if state is not None:
            state.attachment = None
            state.paused = False
            state.refresh = None
            if state.waiting_for is not None:
                self._secret_waiters.get(state.waiting_for, set()).discard(key)
                state.waiting_for = None
        self._forget_unused()

    def _state(self, key: ResourceKey, uid: str) -> _ResourceState:
        state = self._resources.get(key)
        if state is None or state.uid != uid:
            # New, or deleted and created again under the same name (in one batch of watch events):
            # nothing of the old object's observation applies.
            if state is not None:
                self.detach(key)
            state = self._resources[key] = _ResourceState(uid=uid)
        return state

    def _note_refresh(self, state: _ResourceState, value: str | None, handled: str | None) -> bool:
        """Whether the resource asks for a refresh not seen before (it is then observed at once)."""
        if value is None or value == handled:
            state.refresh = None
            return False
        if state.refresh is not None and state.refresh[0] == value:
            return False
        state.refresh = (value, self._last_sent)
        return True

    def _credentials_failed(self, key: ResourceKey, state: _ResourceState, exc: CredentialsError,
                            *, observed_before: bool) -> None:  # fmt: skip
        self.planner.untrack(key)
        if state.attachment is None and state.last_success is None and observed_before:
            # Observed before this process started: a Secret the API server fails to read right now is
            # no reason to call the last observation stale before its time.
            state.last_success = self._started_at
        state.attachment = None
        failure = Failure(exc.reason, exc.message, transient=exc.transient)
        if state.own is None or state.own.outcome != failure:
            state.own = Stored(failure, 0, next(self._rev))
        if state.refresh is not None:
            # Nothing can be observed: that is the answer to a refresh request too.
            state.refresh = (state.refresh[0], -1)
        self._forget_unused()

    # -- Secrets -------------------------------------------------------------------------------

    def _read_secret_later(self, key: ResourceKey, state: _ResourceState, secret: SecretId) -> None:
        state.waiting_for = secret
        self._secret_waiters.setdefault(secret, set()).add(key)
        self._start_secret_read(secret)

    def _start_secret_read(self, secret: SecretId) -> None:
        if secret in self._secret_reads or len(self._secret_reads) >= _CONCURRENT_SECRET_READS:
            return
        task = asyncio.create_task(self._read_secret(secret), name=f"secret {secret[0]}/{secret[1]}")
        self._secret_reads[secret] = task

    async def _read_secret(self, secret: SecretId) -> None:
        try:
            changed = await self.credentials.read(secret)
        except Exception:
            logger.exception("Reading Secret %s/%s failed unexpectedly", secret[0], secret[1])
            changed = False
        finally:
            self._secret_reads.pop(secret, None)
            self.wake.set()
        waiters = self._secret_waiters.pop(secret, set())
        users = {k for k, s in self._resources.items() if s.attachment is not None and s.attachment.secret == secret}
        for key in waiters | (users if changed else set()):
            self.notify(key)

    def _secrets_in_use(self) -> set[SecretId]:
        in_use = {s.attachment.secret for s in self._resources.values() if s.attachment and s.attachment.secret}
        return in_use | {secret for secret, waiters in self._secret_waiters.items() if waiters}

    # -- the loop's part (no awaiting) ---------------------------------------------------------

    def step(self) -> None:
        """Start whatever is due: Secret re-reads and Northflank requests."""
        now = self.clock()
        if now >= self._next_secret_sweep:
            # Secrets are re-read when their cache time ends, so a rotated token moves its resources;
            # so is the operator-wide token file.
            self._next_secret_sweep = now + max(self.settings.credentials_cache_seconds, 1.0)
            in_use = self._secrets_in_use()
            self.credentials.retain(in_use)
            if self.credentials.refresh_default():
                for key, state in self._resources.items():
                    if state.attachment is not None and state.attachment.secret is None and not state.paused:
                        self.notify(key)
            for secret in self.credentials.due(in_use):
                self._start_secret_read(secret)
        for secret in [s for s, waiters in self._secret_waiters.items() if waiters]:
            self._start_secret_read(secret)  # waited for a free read slot
        while len(self._requests) < _MAX_REQUESTS_IN_FLIGHT:
            decision = self.planner.next_request()
            if not isinstance(decision, Request):
                return
            task = asyncio.create_task(self._execute(decision), name=f"northflank {_describe(decision)}")
            self._requests.add(task)
            task.add_done_callback(self._request_done)

    def next_wake(self) -> float | None:
        wakes = [self._next_secret_sweep]
        if len(self._requests) < _MAX_REQUESTS_IN_FLIGHT:
            planned = self.planner.next_wake()
            if planned is not None:
                wakes.append(planned)
        return min(wakes)

    @property
    def busy(self) -> bool:
        """Whether a request or a Secret read is in flight."""
        return bool(self._requests) or bool(self._secret_reads)

    async def settle(self) -> None:
        """Wait for every request and Secret read in flight (tests step the loop with a fake clock)."""
        while self._requests or self._secret_reads:
            await asyncio.gather(*self._requests, *self._secret_reads.values(), return_exceptions=True)

    async def close(self) -> None:
        tasks = [*self._requests, *self._secret_reads.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _request_done(self, task: asyncio.Task[None]) -> None:
        self._requests.discard(task)
        self.wake.set()

    # -- what the reconciler reads -------------------------------------------------------------

    def view(self, key: ResourceKey, uid: str) -> View:
        state = self._resources.get(key)
        if state is not None and state.uid != uid:
            state = None
        attachment = state.attachment if state is not None else None
        interval = attachment.interval if attachment else float(self.settings.poll_interval_seconds)
        stretch = (
            self.planner.reported_stretch(attachment.group.account) if attachment and attachment.group.account else 1.0
        )
        outcome = state.own if state is not None else None
        handled: str | None = None
        if state is not None and attachment is not None and not state.paused:
            target = self._targets.get((attachment.group, attachment.deployment_id))
            stored = target.stored if target is not None else None
            if stored is not None and stored.rev > attachment.since and (outcome is None or stored.rev > outcome.rev):
                outcome = stored
                if state.refresh is not None and stored.sent > state.refresh[1]:
                    handled = state.refresh[0]
        if state is not None and state.refresh is not None and state.refresh[1] < 0 and outcome is state.own:
            handled = state.refresh[0]  # answered by the credentials problem
        retry_in: float | None = None
        if state is not None and outcome is state.own and outcome is not None and attachment is None:
            failure = outcome.outcome
            if isinstance(failure, Failure) and failure.reason.startswith("Credentials"):
                retry_in = CREDENTIALS_RETRY_SECONDS if failure.transient else interval
        return View(
            outcome=outcome,
            last_success=state.last_success if state is not None else None,
            retry_in=retry_in,
            interval=interval,
            effective_interval=interval * stretch,
            observing=attachment is not None,
            paused=state.paused if state is not None else False,
            hold_cause=self._hold_cause(attachment.group) if attachment is not None else None,
            handled_refresh=handled,
        )

    # -- management (the reconciler's writes) -------------------------------------------------------

    def write_target(self, key: ResourceKey) -> tuple[GroupKey, str, str] | None:
        """Where ``key`` writes to and with which token: (group, deployment id, token); None while it is
        not attached (credentials not read yet, paused, invalid)."""
        state = self._resources.get(key)
        attachment = state.attachment if state is not None and not state.paused else None
        token = self._tokens.get(attachment.group.account) if attachment is not None else None
        if attachment is None or token is None:
            return None
        return attachment.group, attachment.deployment_id, token

    @property
    def requests_started(self) -> int:
        """The sequence number of the last request started: only answers to later ones (``Stored.sent``
        above it) can know of a write that has ended by now."""
        return self._last_sent

    def confirm(self, key: ResourceKey) -> None:
        """A write was sent for ``key``: observe its deployment soon (a GET says what became of it)."""
        state = self._resources.get(key)
        attachment = state.attachment if state is not None else None
        if state is not None and attachment is not None and not state.paused:
            state.confirm_after = self._last_sent
            self.planner.track(key, attachment.group, attachment.deployment_id, attachment.interval,
                               urgency=Urgency.REQUESTED)  # fmt: skip
            self.wake.set()

    def write_answered(self, group: GroupKey, rate_limit: RateLimit | None, *, rejected: bool) -> None:
        """The rate-limit headers of a write's answer count like any other."""
        self._record_headers(group, rate_limit, rejected=rejected)

    def refresh_answered(self, key: ResourceKey, value: str) -> None:
        """The reconciler wrote ``value`` to lastHandledReconcileAt."""
        state = self._resources.get(key)
        if state is not None and state.refresh is not None and state.refresh[0] == value:
            state.refresh = None

    def stale_limit(self, effective_interval: float) -> float:
        return effective_interval * self.settings.stale_after_intervals

    def _hold_cause(self, group: GroupKey) -> str | None:
        cause = self.planner.hold_cause(group.account)
        if cause is None:
            return None
        if cause.kind == "breaker":
            return "Northflank rejected these credentials (HTTP 401); one request probes them every interval."
        # No moment in the message: it must stay the same from one window to the next (no rewrites).
        return rate_limit_hold_cause()

    def _interval_of(self, spec: LLMModelDeploymentSpec) -> float:
        return float(spec.poll_interval_seconds or self.settings.poll_interval_seconds)

    def _forget_unused(self) -> None:
        if len(self._tokens) > len(self.planner.accounts()):
            in_use = set(self.planner.accounts())
            for account in [a for a in self._tokens if a not in in_use]:
                del self._tokens[account]  # nothing is kept for a rotated-away or unused token
        if len(self._targets) > 2 * max(1, len(self._resources)):
            tracked = {(s.attachment.group, s.attachment.deployment_id) for s in self._resources.values()
                       if s.attachment is not None}  # fmt: skip
            for target in [t for t in self._targets if t not in tracked]:
                del self._targets[target]

    # -- requests ------------------------------------------------------------------------------

    async def _execute(self, request: Request) -> None:
        sent = next(self._request_seq)
        self._last_sent = sent
        try:
            token = self._tokens.get(request.group.account)
            if token is None:  # every resource of this account went away meanwhile
                self.planner.failed(request, transient=False)
                return
            if request.is_list:
                await self._list(request, token, sent)
            else:
                await self._get(request, token, sent)
        except FencedError:
            # The Lease may be lost: nothing was sent, and nothing is news; the process is on its way out.
            logger.debug("Not observing %s: this replica no longer holds the Lease", _describe(request))
        except Exception:
            logger.exception("Observing %s failed unexpectedly; retrying later", _describe(request))
            affected = self.planner.failed(request, transient=True)
            failure = Failure(INTERNAL_ERROR, "The operator failed to process Northflank's answer; see its log.", True)
            self._store(request.group, affected, failure, sent)
        finally:
            self.planner.request_finished(request)

    async def _get(self, request: Request, token: str, sent: int) -> None:
        group, deployment_id = request.group, request.deployment_id or ""
        try:
            result = await self.client.get_llm_model_deployment(
                group.project_id, deployment_id, token=token, team_id=group.team_id
            )
        except NotFoundError as exc:
            self._answered(group, exc.rate_limit)
            self.planner.observed(group, deployment_id, None)
            self._store(group, [deployment_id], Failure.from_error(exc), sent)
            return
        except NorthflankError as exc:
            self._failed(request, exc, sent)
            return
        self._answered(group, result.rate_limit)
        self.planner.observed(group, deployment_id, result.data.status)
        self._store(group, [deployment_id], Observation(result.data), sent)

    async def _list(self, request: Request, token: str, sent: int) -> None:
        group = request.group
        tracked = self.planner.tracked_ids(group)
        found: dict[str, Mapping[str, Any]] = {}
        cursor: str | None = None
        pages = 0
        complete = False
        while True:
            if pages >= request.cost and not self.planner.may_spend_extra_page(request):
                break  # longer than planned and the budget is short: finish on a later round
            try:
                result = await self.client.list_llm_model_deployments(
                    group.project_id, token=token, team_id=group.team_id, cursor=cursor,
                    page=None if cursor is not None or pages == 0 else pages + 1,
                )  # fmt: skip
            except InvalidResponseError as exc:
                self._answered(group, exc.rate_limit)
                covered = self.planner.list_unreadable(request)
                logger.warning("A listing of project %s could not be read (%s); observing its %d tracked "
                               "deployment(s) with GETs for a while", group.project_id, exc.message,
                               len(covered))  # fmt: skip
                return
            except NorthflankError as exc:
                self._failed(request, exc, sent)
                return
            pages += 1
            self._answered(group, result.rate_limit)
            for item in result.data.items:
                deployment_id = item.get("id") if isinstance(item, Mapping) else None
                if isinstance(deployment_id, str):
                    found[deployment_id] = item
            if not result.data.has_more:
                complete = True
                break
            if tracked <= found.keys():
                break  # every tracked deployment is seen: the rest of the listing can wait
            cursor = result.data.cursor
        # Resources that arrived while the listing ran are observed by it too.
        tracked = self.planner.tracked_ids(group)
        outcomes = {d: _outcome_of(item) for d, item in found.items() if d in tracked}
        phases = {d: o.deployment.status for d, o in outcomes.items() if isinstance(o, Observation)}
        phases.update({d: str(found[d].get("status")) for d in outcomes if d not in phases})
        to_confirm, still_gone = self.planner.listed(group, phases, pages=pages, complete=complete)
        if to_confirm:
            logger.info("%d tracked deployment(s) missing from a listing of %s; confirming each with a GET",
                        len(to_confirm), group.project_id)  # fmt: skip
        self._confirmed_current(group, still_gone)
        for deployment_id, outcome in outcomes.items():
            self._store(group, [deployment_id], outcome, sent)

    def _answered(self, group: GroupKey, rate_limit: RateLimit | None) -> None:
        self.planner.credentials_accepted(group.account)
        self._record_headers(group, rate_limit, rejected=False)

    def _record_headers(self, group: GroupKey, rate_limit: RateLimit | None, *, rejected: bool) -> bool:
        if self.metrics is not None and rate_limit is not None:
            self.metrics.rate_limit_seen(group.account, rate_limit)
        return self.planner.record_headers(group, rate_limit, rejected=rejected)

    def _failed(self, request: Request, error: NorthflankError, sent: int) -> None:
        group = request.group
        rejected = isinstance(error, RateLimitError)
        new_hold = self._record_headers(group, error.rate_limit, rejected=rejected)
        cause = self.planner.hold_cause(group.account)
        held_until = cause.until if cause is not None else None
        failure = Failure.from_error(error)
        if rejected and held_until is not None:
            failure = Failure("RateLimited", rate_limited_message(held_until - self.clock()), transient=True)
            if new_hold:
                # One warning per account and window, however many resources wait.
                logger.warning("Northflank's rate limit for one set of credentials is spent for %ds; its "
                               "resources wait", math.ceil(held_until - self.clock()))  # fmt: skip
        retry_at = held_until if rejected else None
        retry_after = error.retry_after_seconds if isinstance(error, ServerError) else None
        if retry_at is None and retry_after is not None:
            # A 502/503 that says when to come back (capped at the documented hour): come back then.
            # No moment in the message: every retry would rewrite every status it covers.
            retry_at = self.clock() + retry_after
            failure = Failure(failure.reason, retry_after_message(failure.message, retry_after), transient=True)
        if isinstance(error, AuthenticationError):
            # 401 is about the token itself, so it holds all of the token's resources. 403 is not: a
            # token may lack access to one project only, so it fails only its own resources.
            self._credentials_rejected(request, failure, sent)
            return
        affected = self.planner.failed(request, transient=error.transient, retry_at=retry_at)
        self._store(group, affected, failure, sent)

    def _credentials_rejected(self, request: Request, failure: Failure, sent: int) -> None:
        """A 401 holds every resource of these credentials (a circuit breaker): one probe per interval
        instead of one failing request per resource. Only the probed resource is told (the others keep
        their status and turn stale on the clock, saying why), so there is no storm of writes or Events."""
        group = request.group
        opened = self.planner.credentials_rejected(request)
        cause = self.planner.hold_cause(group.account)
        held_until = cause.until if cause is not None else None
        # The rejected target waits a full interval after the hold, so the next probe is another
        # resource's (a 401 that is about one resource only does not starve the others).
        self.planner.failed(request, transient=False)
        affected = [request.deployment_id] if request.deployment_id else sorted(self.planner.tracked_ids(group))
        if held_until is not None:
            wait = held_until - self.clock()
            # No moment in the message: it must stay the same from one probe to the next (no rewrites).
            failure = Failure(failure.reason, credentials_probe_message(failure.message, wait), transient=False)
            if opened:
                logger.warning("Northflank rejected one set of credentials (%s); its %d deployment(s) wait, "
                               "probing every %ds", failure.reason, len(self.planner.account_targets(group.account)),
                               math.ceil(wait))  # fmt: skip
        # The token may have been rotated: read the Secrets of these resources again.
        for key in [k for d in affected for k in self.planner.resources_of(group, d)]:
            state = self._resources.get(key)
            if state is not None and state.attachment is not None and state.attachment.secret is not None:
                self.credentials.forget_secret(state.attachment.secret)
                self._start_secret_read(state.attachment.secret)
        self._store(group, affected, failure, sent)

    # -- the cache -----------------------------------------------------------------------------

    def _confirmed_current(self, group: GroupKey, deployment_ids: Iterable[str]) -> None:
        """A listing confirmed what the status already says (NotFound): fresh, nothing to write."""
        now = self.wall_clock()
        for deployment_id in deployment_ids:
            for key in self.planner.resources_of(group, deployment_id):
                state = self._resources.get(key)
                if state is not None:
                    state.last_success = now

    def _store(self, group: GroupKey, deployment_ids: Iterable[str], outcome: Outcome, sent: int) -> None:
        """Keep ``outcome`` for these targets (unless a newer answer is kept already) and hand the keys
        of their resources to ``notify``."""
        current = isinstance(outcome, Observation) or (isinstance(outcome, Failure) and outcome.not_found)
        now = self.wall_clock()
        for deployment_id in deployment_ids:
            target = self._targets.setdefault((group, deployment_id), _TargetState())
            if target.stored is not None and target.stored.sent > sent:
                continue  # an answer to a later request is kept already: this one is older news
            if not self._shown(group, deployment_id, target, outcome):
                continue
            target.stored = Stored(outcome, sent, next(self._rev))
            for key in self.planner.resources_of(group, deployment_id):
                state = self._resources.get(key)
                if state is None or state.attachment is None:
                    continue
                if current:
                    # A confirmed 404 is an answer too: the status is current, not stale.
                    state.last_success = now
                if state.refresh is not None and state.refresh[1] >= sent:
                    # Asked before the refresh request: ask again for the observation the refresh wants.
                    attachment = state.attachment
                    self.planner.track(key, group, deployment_id, attachment.interval, urgency=Urgency.REQUESTED)
                elif state.confirm_after is not None and state.confirm_after >= sent:
                    # Asked before a write ended (it cannot know of it): the confirming GET is still wanted.
                    self.planner.track(key, group, deployment_id, state.attachment.interval,
                                       urgency=Urgency.REQUESTED)  # fmt: skip
                elif state.confirm_after is not None:
                    state.confirm_after = None
                self.notify(key)

    def _shown(self, group: GroupKey, deployment_id: str, target: _TargetState, outcome: Outcome) -> bool:
        """Whether ``outcome`` is news to show. A transient failure is shown only when the same kind
        failed twice in a row and the last success is so old that the status would go stale within
        one more interval: a blip, even two failed tries of a 2,000-deployment listing, costs no write
        and no Event, and Synced still turns False one interval before Ready turns Unknown."""
        now = self.clock()
        if not isinstance(outcome, Failure) or not outcome.transient or outcome.reason in _SHOWN_AT_ONCE:
            target.streak = None
            if not isinstance(outcome, Failure) or outcome.not_found:
                target.succeeded_at = now
            return True
        streak = target.streak
        target.streak = (outcome.reason, streak[1] + 1 if streak is not None and streak[0] == outcome.reason else 1)
        if target.stored is None or isinstance(target.stored.outcome, Failure):
            return True  # nothing good to keep showing: say what is wrong at once
        grace = max(0.0, self.settings.stale_after_intervals - 1) * self._effective_interval(group, deployment_id)
        return target.streak[1] >= 2 and now - target.succeeded_at >= grace

    def _effective_interval(self, group: GroupKey, deployment_id: str) -> float:
        intervals = [
            state.attachment.interval
            for key in self.planner.resources_of(group, deployment_id)
            if (state := self._resources.get(key)) is not None and state.attachment is not None
        ]
        interval = min(intervals, default=float(self.settings.poll_interval_seconds))
        return interval * self.planner.reported_stretch(group.account)


def _outcome_of(item: Mapping[str, Any]) -> Outcome:
    try:
        return Observation(LLMModelDeployment.model_validate(item))
    except (pydantic.ValidationError, RecursionError, ValueError) as exc:
        detail = summarize_validation_error(exc) if isinstance(exc, pydantic.ValidationError) else type(exc).__name__
        return Failure(
            "InvalidResponse", f"Northflank's listing does not match the API contract: {detail}", transient=True
        )


def _describe(request: Request) -> str:
    what = "listing" if request.is_list else f"deployment {request.deployment_id}"
    return f"{what} of project {request.group.project_id}"
