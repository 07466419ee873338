"""Request planning: which Northflank request to send next, and when. Pure: no I/O, an injected clock.

The unit of observation is a *group*: the resources that share one Northflank account, team and
project. One list call (one request per page of 100) observes every deployment of a project, so a
group is observed either by listing it, by single GETs of the deployments it tracks, or by both (a
list at the stable cadence plus GETs for the few deployments that must be watched faster); the planner
picks whichever costs fewer requests per second and re-decides when membership, phases or the
learned page count change. Several resources naming the same deployment share one *target*.

Every account (a token, until proven otherwise) has a :class:`Budget` learned from Northflank's
``x-ratelimit-*`` headers. Routine observations are paced evenly across the window by a small token
bucket; a reserve serves new resources, spec changes and confirmations at once. When the account's
demand exceeds its budget, every interval of that account is stretched by the same factor and work
is served in due-time order from a heap, so nobody starves.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Any, Generic, TypeVar

from .northflank import RateLimit

#: Northflank documents a fixed window of one hour; a reset announced beyond it is not believed.
DOCUMENTED_WINDOW_SECONDS = 3600.0
#: Northflank's documented default budget, assumed until the first response says otherwise.
DOCUMENTED_LIMIT = 1000
PAGE_SIZE = 100
#: Phases in which Northflank is still moving the deployment: worth observing sooner.
TRANSITIONAL_PHASES = frozenset({"pending", "provisioning", "starting", "deleting"})

# Stretch factors are reported on this ladder (times powers of ten), rounded up, so a status only
# changes when the plan moves by a visible step rather than on every small change of demand.
_LADDER = (1.0, 1.1, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0)


class Priority(IntEnum):
    """Order among work that is due at the same moment."""

    URGENT = 0  # a new or changed resource, a refresh request, a NotFound confirmation
    TRANSITIONAL = 1
    STABLE = 2


class Urgency(Enum):
    """Why a resource is (re)tracked, which says when it is observed."""

    ROUTINE = "routine"  # already observed (before a restart): spread over one interval
    CHANGED = "changed"  # new or changed: soon, batched; a change soon after another waits out the spacing
    REQUESTED = "requested"  # someone asked (a refresh): soon, batched, never held back by the spacing


@dataclass(frozen=True, order=True)
class GroupKey:
    """Resources observed together: same account (token identity), team and project."""

    account: str
    project_id: str
    team_id: str | None = None


@dataclass(frozen=True)
class Request:
    """What to send: a listing of the group's project, or a GET of one deployment."""

    group: GroupKey
    #: None for a listing of the whole project.
    deployment_id: str | None
    #: Requests it is expected to cost (pages for a listing).
    cost: int
    urgent: bool

    @property
    def is_list(self) -> bool:
        return self.deployment_id is None


@dataclass(frozen=True)
class PlannerConfig:
    reserve_fraction: float = 0.1
    #: Seconds to wait for more new resources before observing a group "at once", so that a
    #: ``kubectl apply`` of 100 manifests is one list call.
    batch_delay_seconds: float = 1.0
    #: Transitional phases are observed this many times more often (never faster than the minimum).
    transitional_speedup: float = 4.0
    min_interval_seconds: float = 10.0
    #: Relative spread of every due time, so observations never line up.
    jitter: float = 0.05
    first_retry_seconds: float = 5.0
    #: A resource whose spec keeps changing is observed at once for the first change, then at most
    #: once per this many seconds: fifty quick edits must not spend fifty requests of a shared budget.
    spec_change_spacing_seconds: float = 10.0
    #: Requests in flight at once for one group (account, team, project): a project whose answers are
    #: slow holds its own slots only, never another project's.
    max_in_flight_per_group: int = 4
    #: After a listing whose body could not be read (too large, not JSON, nested too deep: one hostile
    #: item), the group is observed with GETs for this many of its intervals before listing again.
    unreadable_list_intervals: float = 10.0


def ladder_ceil(value: float) -> float:
    """The smallest ladder value ≥ ``value`` (1, 1.1, 1.25, 1.5, … 8, 10, 11, 12.5, …)."""
    if value <= 1.0:
        return 1.0
    scale = 10.0 ** math.floor(math.log10(value))
    for step in (*_LADDER, 10.0):
        if step * scale >= value * (1 - 1e-9):
            return step * scale
    return 10.0 * scale  # pragma: no cover - the loop always returns


def ladder_floor_below(value: float) -> float:
    """The ladder value just below ``value`` (which is itself on the ladder)."""
    if value <= 1.0:
        return 0.0
    scale = 10.0 ** math.floor(math.log10(value * (1 + 1e-9)))
    candidates = [step * scale for step in (*_LADDER, 10.0) if step * scale < value * (1 - 1e-9)]
    return max(candidates) if candidates else 0.8 * scale


class Budget:
    """One account's request budget, learned from the rate-limit headers of every response.

    ``planned_rate`` spends ``1 - reserve_fraction`` of the limit evenly across the window; the
    reserve serves urgent work. What the headers say is left (``remaining`` before ``reset_at``) is
    a hard bound on top: when someone else spends the same account, routine work slows down to what
    is left, and waits for the reset once only the reserve is left. A 429 holds everything until the
    reset, capped at the documented window.
    """

    def __init__(self, now: float, config: PlannerConfig) -> None:
        self._config = config
        self.limit = DOCUMENTED_LIMIT
        self._window = DOCUMENTED_WINDOW_SECONDS
        self.remaining: int | None = None
        self.reset_at: float | None = None
        self.held_until: float | None = None
        self._refilled_at = now
        # Start nearly empty: a restart or a new credential must not begin with a burst.
        self.tokens = 1.0
        self.urgent_tokens = float(self.reserve)
        # Circuit breaker for rejected credentials (401/403): while open, the account is held, and once
        # the hold ends one request at a time probes whether the credentials work again.
        self.breaker_open = False
        self.probe_in_flight = False

    @property
    def window(self) -> float:
        """The window's length: the reset announced by a window's first request, else the documented hour."""
        return self._window

    @property
    def reserve(self) -> int:
        return max(1, math.ceil(self.limit * self._config.reserve_fraction))

    @property
    def planned_rate(self) -> float:
        """Requests per second routine work may use."""
        return max(self.limit - self.reserve, 1) / self.window

    @property
    def _capacity(self) -> float:
        return max(2.0, self.limit / 200)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._refilled_at)
        self._refilled_at = now
        self.tokens = min(self._capacity, self.tokens + elapsed * self.planned_rate)
        self.urgent_tokens = min(float(self.reserve), self.urgent_tokens + elapsed * self.reserve / self.window)
        if self.reset_at is not None and now >= self.reset_at:
            # A new window has begun; the next response says how much of it is left. One request
            # may go at once to learn it (one is no burst), whatever the pacing says.
            self.remaining = None
            self.reset_at = None
            self.tokens = max(self.tokens, 1.0)

    def held(self, now: float) -> float | None:
        if self.held_until is not None and self.held_until > now:
            return self.held_until
        if self.breaker_open and self.probe_in_flight:
            return now + 1.0  # the probe's answer decides; the poller wakes when it comes
        return None

    def trip(self, now: float, probe_after: float) -> bool:
        """The credentials were rejected: hold everything, probe once after ``probe_after`` seconds.
        Returns True when the breaker was closed until now."""
        opened = not self.breaker_open
        self.breaker_open = True
        self.probe_in_flight = False
        self.held_until = max(self.held_until or 0.0, now + probe_after)
        return opened

    def close_breaker(self) -> None:
        self.breaker_open = False
        self.probe_in_flight = False

    def routine_ready_at(self, now: float, cost: int) -> float:
        """When routine work costing ``cost`` requests may be sent."""
        self._refill(now)
        held = self.held(now)
        if held is not None:
            return held
        rate = self.planned_rate
        if self.remaining is not None and self.reset_at is not None:
            spendable = self.remaining - self.reserve
            if spendable < min(cost, self.remaining):
                return self.reset_at  # the window's routine share is spent: wait for the reset
            rate = min(rate, spendable / max(self.reset_at - now, 1.0))
        need = min(float(cost), self._capacity)
        if self.tokens >= need:
            return now
        return now + (need - self.tokens) / rate

    def urgent_ready(self, now: float, cost: int) -> bool:
        self._refill(now)
        if self.held(now) is not None:
            return False
        if self.remaining is not None and self.remaining < cost:
            return False
        return self.urgent_tokens >= min(float(cost), float(self.reserve))

    def spend(self, now: float, cost: int, *, urgent: bool) -> None:
        self._refill(now)
        if urgent:
            self.urgent_tokens -= cost
        else:
            self.tokens -= cost  # may go below zero: a listing longer than expected is paid back later
        if self.breaker_open:
            self.probe_in_flight = True
        if self.remaining is not None:
            self.remaining = max(0, self.remaining - cost)

    def record(self, now: float, rate_limit: RateLimit | None, *, rejected: bool) -> bool:
        """Learn from one response's headers. Returns True when this starts a new hold (a 429)."""
        if rate_limit is None:
            return False
        self._refill(now)
        if rate_limit.limit is not None and rate_limit.limit > 0 and not rejected:
            # Learned from answered requests only: the plan (and every stale limit built on it)
            # must not move because of a hold, which is unplanned by definition.
            self.limit = rate_limit.limit
        reset: float | None = None
        if rate_limit.reset_seconds is not None:
            reset = min(rate_limit.reset_seconds, DOCUMENTED_WINDOW_SECONDS)
            if not rejected and rate_limit.remaining is not None and rate_limit.remaining >= self.limit - 1:
                # The first request of a window: what is left of it is the whole window.
                self._window = max(1.0, reset)
        if reset is not None and rate_limit.remaining is not None:
            new_reset_at = now + reset
            if self.reset_at is None or new_reset_at > self.reset_at + 5.0:
                self.remaining = rate_limit.remaining  # a newer window
            else:
                self.remaining = min(self.remaining if self.remaining is not None else rate_limit.remaining,
                                     rate_limit.remaining)  # fmt: skip
            self.reset_at = new_reset_at
        if not rejected:
            return False
        wait = rate_limit.wait_seconds()
        hold = min(wait if wait is not None else 60.0, DOCUMENTED_WINDOW_SECONDS)
        new_hold = self.held(now) is None
        self.held_until = max(self.held_until or 0.0, now + hold)
        self.remaining = 0
        return new_hold


@dataclass
class Target:
    """One Northflank deployment tracked in a group, and the resources that name it."""

    deployment_id: str
    #: Requested interval per resource; the target is observed as often as the most demanding asks.
    resources: dict[Any, float] = field(default_factory=dict)
    phase: str | None = None
    #: When it should be observed next; not planned until tracked.
    due: float = math.inf
    urgent: bool = False
    in_flight: bool = False
    failures: int = 0
    #: Confirm with a GET before calling it NotFound (it was missing from a complete listing).
    confirm: bool = False
    #: The last answer was a 404: a listing without it confirms that, no GET needed.
    gone: bool = False

    @property
    def requested_interval(self) -> float:
        return min(self.resources.values())


@dataclass
class Group:
    key: GroupKey
    targets: dict[str, Target] = field(default_factory=dict)
    #: Pages the last listing needed to find every tracked deployment; None before the first.
    pages: int | None = None
    #: Observe by listing at this (unstretched) interval; targets that want to be observed more
    #: often than this get their own GETs. None: GETs only.
    list_interval: float | None = None
    list_in_flight: bool = False
    list_failures: int = 0
    #: Requests of this group in flight (a listing counts once).
    in_flight: int = 0
    #: Until then the group is observed with GETs only (its listing could not be read).
    list_unreadable_until: float = -math.inf

    def estimated_pages(self) -> int:
        return self.pages if self.pages is not None else max(1, math.ceil(len(self.targets) / PAGE_SIZE))

    def covered(self, target: Target, adapted_interval: float) -> bool:
        """Whether the group's listing observes ``target`` often enough (no GETs of its own)."""
        return self.list_interval is not None and not target.confirm and adapted_interval >= self.list_interval - 1e-9


def cheapest_plan(pages: int, intervals: Iterable[float]) -> tuple[float | None, float]:
    """The list interval (None: GETs only) that observes targets with these intervals for the fewest
    requests per second, and that rate. Listing at interval L costs ``pages / L``; every target that
    wants more than that adds ``1 / interval`` of GETs."""
    values = sorted(intervals)
    best_interval: float | None = None
    best_rate = sum(1.0 / v for v in values)  # GETs only; wins ties (exact, and no NotFound confirmation)
    for candidate in sorted(set(values)):
        rate = pages / candidate + sum(1.0 / v for v in values if v < candidate - 1e-9)
        if rate < best_rate - 1e-12:
            best_interval, best_rate = candidate, rate
    return best_interval, best_rate


WorkKey = tuple[GroupKey, str | None]
K = TypeVar("K", bound=Hashable)


@dataclass
class _Account:
    budget: Budget
    groups: set[GroupKey] = field(default_factory=set)
    #: Sum over groups of their cheapest plan's requests per second, before stretching.
    demand: float = 0.0
    reported_stretch: float = 1.0
    urgent: list[tuple[float, int, int, WorkKey]] = field(default_factory=list)
    routine: list[tuple[float, int, int, WorkKey]] = field(default_factory=list)
    #: Due work of groups that have all their requests in flight: back in its heap when one ends.
    parked: list[tuple[bool, tuple[float, int, int, WorkKey]]] = field(default_factory=list)


class Planner(Generic[K]):
    """Decides, per account, which request to send next and when; owns all scheduling state."""

    def __init__(
        self,
        clock: Callable[[], float],
        config: PlannerConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self.config = config or PlannerConfig()
        self._rng = rng or random.Random()  # noqa: S311 - spreading load, not security
        self._groups: dict[GroupKey, Group] = {}
        self._accounts: dict[str, _Account] = {}
        self._where: dict[K, tuple[GroupKey, str]] = {}
        # Start of each resource's current spec-change window (see spec_change_spacing_seconds).
        self._change_window: dict[K, float] = {}
        self._scheduled: dict[WorkKey, int] = {}
        self._seq = itertools.count()
        self._group_rate: dict[GroupKey, float] = {}
        # Groups whose plan must be recomputed; done in one go before the next decision, so that
        # a thousand resources arriving together cost one replan per group, not one each.
        self._dirty: set[GroupKey] = set()
        #: When each deployment was last written to (management): one write per effective interval.
        self._last_write: dict[tuple[GroupKey, str], float] = {}

    def adapted_interval(self, target: Target) -> float:
        """The target's interval for its current phase, before any budget stretch."""
        interval = target.requested_interval
        if target.phase in TRANSITIONAL_PHASES:
            floor = min(interval, self.config.min_interval_seconds)
            return max(interval / self.config.transitional_speedup, floor)
        return interval

    def _covered(self, group: Group, target: Target) -> bool:
        return group.covered(target, self.adapted_interval(target))

    # -- membership ---------------------------------------------------------------------------

    def track(
        self,
        resource: K,
        group_key: GroupKey,
        deployment_id: str,
        interval: float,
        *,
        urgency: Urgency,
        phase: str | None = None,
    ) -> None:
        """Attach a resource to its target; ``urgency`` says when it is observed."""
        now = self._clock()
        previous = self._where.get(resource)
        urgent = urgency is not Urgency.ROUTINE
        when = now
        if urgency is Urgency.CHANGED and previous is not None:
            window = self._change_window.get(resource)
            if window is not None and now < window + self.config.spec_change_spacing_seconds:
                when = window + self.config.spec_change_spacing_seconds  # coalesced into one later poll
            else:
                self._change_window[resource] = now
        if previous == (group_key, deployment_id):
            target = self._groups[group_key].targets[deployment_id]
            if target.resources[resource] != interval or urgent:
                target.resources[resource] = interval
                if urgent:
                    self._pull_forward(target, when)
                self._replan(group_key)
            return
        if previous is not None:
            window = self._change_window.get(resource)
            self.untrack(resource)
            if window is not None:
                self._change_window[resource] = window
        group = self._groups.get(group_key)
        if group is None:
            group = self._groups[group_key] = Group(group_key)
            account = self._accounts.setdefault(group_key.account, _Account(Budget(now, self.config)))
            account.groups.add(group_key)
        existing = group.targets.get(deployment_id)
        if existing is None:
            target = group.targets[deployment_id] = Target(deployment_id, phase=phase)
            target.resources[resource] = interval
            if urgent:
                self._pull_forward(target, when)
            else:
                target.due = now + self._rng.uniform(
                    0, self.effective_interval(group_key, self.adapted_interval(target))
                )
        else:
            existing.resources[resource] = interval
            if urgent:
                self._pull_forward(existing, when)
        self._where[resource] = (group_key, deployment_id)
        self._replan(group_key)

    def untrack(self, resource: K) -> None:
        self._change_window.pop(resource, None)
        where = self._where.pop(resource, None)
        if where is None:
            return
        group_key, deployment_id = where
        group = self._groups[group_key]
        target = group.targets[deployment_id]
        target.resources.pop(resource, None)
        if not target.resources:
            del group.targets[deployment_id]
            self._scheduled.pop((group_key, deployment_id), None)
        if not group.targets:
            self._drop_group(group_key)
        else:
            self._replan(group_key)

    def _pull_forward(self, target: Target, now: float) -> None:
        target.urgent = True
        target.due = min(target.due, now + self.config.batch_delay_seconds)

    def _drop_group(self, group_key: GroupKey) -> None:
        self._groups.pop(group_key, None)
        for written in [w for w in self._last_write if w[0] == group_key]:
            del self._last_write[written]
        self._dirty.discard(group_key)
        self._scheduled.pop((group_key, None), None)
        account = self._accounts.get(group_key.account)
        rate = self._group_rate.pop(group_key, 0.0)
        if account is not None:
            account.groups.discard(group_key)
            account.demand -= rate
            if not account.groups:
                # Nothing is kept for a credential nobody uses any more (rotated tokens).
                del self._accounts[group_key.account]

    def account_targets(self, account: str) -> list[tuple[GroupKey, str]]:
        """Every deployment tracked with ``account``'s credentials."""
        acc = self._accounts.get(account)
        if acc is None:
            return []
        return [(g, d) for g in sorted(acc.groups) for d in sorted(self._groups[g].targets)]

    def credentials_rejected(self, request: Request) -> bool:
        """A 401/403: hold every request of the account and probe once per interval (of the rejected
        target; of the listing's most frequent target for a listing). True when this opens the breaker."""
        account = self._accounts.get(request.group.account)
        group = self._groups.get(request.group)
        if account is None or group is None or not group.targets:
            return False
        target = group.targets.get(request.deployment_id or "")
        targets = [target] if target is not None else list(group.targets.values())
        interval = min(self.effective_interval(request.group, self.adapted_interval(t)) for t in targets)
        return account.budget.trip(self._clock(), interval)

    def credentials_accepted(self, account: str) -> None:
        acc = self._accounts.get(account)
        if acc is not None:
            acc.budget.close_breaker()

    def request_finished(self, request: Request) -> None:
        """However the request ended: a probe of an open breaker is no longer in flight."""
        acc = self._accounts.get(request.group.account)
        if acc is not None:
            acc.budget.probe_in_flight = False
            group = self._groups.get(request.group)
            if group is not None:
                group.in_flight = max(0, group.in_flight - 1)
            for urgent, entry in acc.parked:
                heapq.heappush(acc.urgent if urgent else acc.routine, entry)
            acc.parked.clear()

    def resources_of(self, group_key: GroupKey, deployment_id: str) -> list[K]:
        group = self._groups.get(group_key)
        target = group.targets.get(deployment_id) if group else None
        return list(target.resources) if target else []

    def tracked_ids(self, group_key: GroupKey) -> set[str]:
        group = self._groups.get(group_key)
        return set(group.targets) if group else set()

    # -- the plan -----------------------------------------------------------------------------

    def stretch(self, account: str) -> float:
        """How much longer than asked every interval of ``account`` is, so its demand fits."""
        acc = self._accounts.get(account)
        if acc is None:
            return 1.0
        return max(1.0, acc.demand / acc.budget.planned_rate)

    def reported_stretch(self, account: str) -> float:
        """The stretch rounded up to a visible step (with hysteresis): what status and staleness use."""
        acc = self._accounts.get(account)
        if acc is None:
            return 1.0
        actual = self.stretch(account)
        current = acc.reported_stretch
        if not (ladder_floor_below(current) < actual <= current):
            acc.reported_stretch = ladder_ceil(actual)
        return acc.reported_stretch

    def effective_interval(self, group_key: GroupKey, interval: float) -> float:
        return interval * self.stretch(group_key.account)

    def budget(self, account: str) -> Budget | None:
        acc = self._accounts.get(account)
        return acc.budget if acc else None

    def _replan(self, group_key: GroupKey) -> None:
        self._dirty.add(group_key)

    def _replan_dirty(self) -> None:
        while self._dirty:
            self._replan_now(self._dirty.pop())

    def _replan_now(self, group_key: GroupKey) -> None:
        """Choose the group's cheapest way of observing and (re)schedule its work items."""
        group = self._groups.get(group_key)
        if group is None:
            return
        account = self._accounts[group_key.account]
        targets = list(group.targets.values())
        group.list_interval, rate = cheapest_plan(group.estimated_pages(), (self.adapted_interval(t) for t in targets))
        if self._clock() < group.list_unreadable_until:
            group.list_interval, rate = None, sum(1.0 / self.adapted_interval(t) for t in targets)
        account.demand += rate - self._group_rate.get(group_key, 0.0)
        self._group_rate[group_key] = rate
        covered = [t for t in targets if self._covered(group, t)]
        if covered and not group.list_in_flight:
            due = min(t.due for t in covered)
            priority = _priority(covered)
            self._schedule(account, (group_key, None), due, priority)
        else:
            self._scheduled.pop((group_key, None), None)
        for target in targets:
            key: WorkKey = (group_key, target.deployment_id)
            if self._covered(group, target) or target.in_flight:
                self._scheduled.pop(key, None)
            else:
                self._schedule(account, key, target.due, _priority([target]))

    def _schedule(self, account: _Account, key: WorkKey, due: float, priority: Priority) -> None:
        seq = next(self._seq)
        self._scheduled[key] = seq
        heap = account.urgent if priority is Priority.URGENT else account.routine
        heapq.heappush(heap, (due, int(priority), seq, key))

    def _head(self, heap: list[tuple[float, int, int, WorkKey]]) -> tuple[float, int, int, WorkKey] | None:
        while heap:
            entry = heap[0]
            if self._scheduled.get(entry[3]) == entry[2]:
                return entry
            heapq.heappop(heap)  # superseded by a later schedule of the same work
        return None

    def _cost(self, key: WorkKey) -> int:
        group_key, deployment_id = key
        return self._groups[group_key].estimated_pages() if deployment_id is None else 1

    def next_request(self) -> Request | float | None:
        """The request to send now (taken: it is in flight from here), else when to ask again
        (None: nothing is tracked)."""
        decision = self._decide()
        if isinstance(decision, tuple):
            account, heap, entry, urgent = decision
            return self._take(account, heap, entry, urgent=urgent)
        return decision

    def next_wake(self) -> float | None:
        """When :meth:`next_request` may have a request (now, if one is ready), without taking it."""
        decision = self._decide()
        return self._clock() if isinstance(decision, tuple) else decision

    def _decide(
        self,
    ) -> tuple[_Account, list[tuple[float, int, int, WorkKey]], tuple[float, int, int, WorkKey], bool] | float | None:
        self._replan_dirty()
        now = self._clock()
        wake: float | None = None
        for account in self._accounts.values():
            budget = account.budget
            self._park_saturated(account, now)
            head = self._head(account.urgent)
            while head is not None and head[0] <= now and not budget.urgent_ready(now, self._cost(head[3])):
                # The reserve is spent: the work waits its turn like any other, first among equals.
                heapq.heappop(account.urgent)
                heapq.heappush(account.routine, head)
                head = self._head(account.urgent)
            if head is not None:
                if head[0] <= now:
                    return account, account.urgent, head, True
                wake = head[0] if wake is None else min(wake, head[0])
            head = self._head(account.routine)
            if head is not None:
                ready = max(head[0], budget.routine_ready_at(now, self._cost(head[3])))
                if ready <= now:
                    return account, account.routine, head, False
                wake = ready if wake is None else min(wake, ready)
        return wake

    def _park_saturated(self, account: _Account, now: float) -> None:
        """Move due work of groups with every slot in flight out of the way, so the next group's work
        is not held up behind it (it returns when one of the group's requests ends)."""
        limit = self.config.max_in_flight_per_group
        for urgent, heap in ((True, account.urgent), (False, account.routine)):
            head = self._head(heap)
            while head is not None and head[0] <= now and self._groups[head[3][0]].in_flight >= limit:
                account.parked.append((urgent, heapq.heappop(heap)))
                head = self._head(heap)

    def _take(
        self, account: _Account, heap: list[tuple[float, int, int, WorkKey]], entry: tuple[float, int, int, WorkKey],
        *, urgent: bool,
    ) -> Request:  # fmt: skip
        heapq.heappop(heap)
        key = entry[3]
        del self._scheduled[key]
        group_key, deployment_id = key
        group = self._groups[group_key]
        cost = self._cost(key)
        account.budget.spend(self._clock(), cost, urgent=urgent)
        group.in_flight += 1
        if deployment_id is None:
            group.list_in_flight = True
        else:
            group.targets[deployment_id].in_flight = True
        return Request(group_key, deployment_id, cost, urgent)

    # -- results ------------------------------------------------------------------------------

    def record_headers(self, group_key: GroupKey, rate_limit: RateLimit | None, *, rejected: bool) -> bool:
        """Feed one response's rate-limit headers. True when a 429 starts a new hold of the account."""
        account = self._accounts.get(group_key.account)
        if account is None:
            return False
        return account.budget.record(self._clock(), rate_limit, rejected=rejected)

    def listed(
        self, group_key: GroupKey, phases: dict[str, str], *, pages: int, complete: bool
    ) -> tuple[set[str], set[str]]:
        """A listing succeeded. ``phases``: tracked deployments found, with their status.

        Returns the tracked deployments missing from a complete listing: first those to confirm with
        a GET (scheduled at once), then those already known to be gone, which the listing confirms.
        """
        group = self._groups.get(group_key)
        if group is None:
            return set(), set()
        now = self._clock()
        group.list_in_flight = False
        group.list_failures = 0
        group.pages = max(1, pages)
        jitter = self._jitter()
        to_confirm: set[str] = set()
        still_gone: set[str] = set()
        for deployment_id, target in group.targets.items():
            if deployment_id in phases or (complete and target.gone and not target.in_flight):
                if deployment_id in phases:
                    target.phase, target.gone = phases[deployment_id], False
                    target.confirm = False
                else:
                    still_gone.add(deployment_id)
                target.urgent = False
                target.failures = 0
                target.due = now + self.effective_interval(group_key, self.adapted_interval(target)) * jitter
            elif complete and not target.in_flight:
                to_confirm.add(deployment_id)
                target.confirm = True
                self._pull_forward(target, now)
                target.due = now
        self._replan(group_key)
        return to_confirm, still_gone

    def observed(self, group_key: GroupKey, deployment_id: str, phase: str | None) -> None:
        """A GET succeeded (``phase`` None: it answered 404, which is an answer too)."""
        target = self._target(group_key, deployment_id)
        if target is None:
            return
        target.in_flight = target.urgent = target.confirm = False
        target.failures = 0
        target.phase = phase
        target.gone = phase is None
        target.due = self._clock() + self.effective_interval(group_key, self.adapted_interval(target)) * self._jitter()
        self._replan(group_key)

    def failed(self, request: Request, *, transient: bool, retry_at: float | None = None) -> list[str]:
        """The request failed. Transient failures retry sooner (5, 10, 20 … s, capped at the
        interval); others wait one interval; ``retry_at`` (a rate-limit hold) wins over both.
        Returns the deployments the request was to observe (a listing: those it covers, not those
        observed with GETs of their own)."""
        group = self._groups.get(request.group)
        if group is None:
            return []
        now = self._clock()
        if request.is_list:
            group.list_in_flight = False
            group.list_failures += 1
            affected = [t for t in group.targets.values() if self._covered(group, t)]
            failures = group.list_failures
        else:
            target = group.targets.get(request.deployment_id or "")
            if target is None:
                return []
            target.in_flight = False
            target.failures += 1
            affected, failures = [target], target.failures
        for target in affected:
            interval = self.effective_interval(request.group, self.adapted_interval(target))
            delay = min(interval, self.config.first_retry_seconds * 2.0 ** (failures - 1)) if transient else interval
            target.due = retry_at if retry_at is not None else now + delay
            target.urgent = False
        self._replan(request.group)
        return sorted(target.deployment_id for target in affected)

    def admit_write(self, group_key: GroupKey, deployment_id: str | None) -> float | None:
        """Admit one write (create, update, delete; ``deployment_id`` None: a permissions read) now,
        spending it from the account's reserve: None when admitted, else seconds to wait.

        At most one write per deployment per effective interval, so a resource that keeps failing or
        fighting can never spend more than observing it does; never while the account is held (429,
        rejected credentials) or its reserve is spent.
        """
        account = self._accounts.get(group_key.account)
        if account is None:
            return self.config.first_retry_seconds  # not tracked yet: its first observation comes first
        now = self._clock()
        budget = account.budget
        if deployment_id is not None:
            target = self._target(group_key, deployment_id)
            interval = self.effective_interval(group_key, target.requested_interval if target else 60.0)
            last = self._last_write.get((group_key, deployment_id))
            if last is not None and now < last + interval:
                return last + interval - now
        held = budget.held(now)
        if held is not None:
            return held - now
        if not budget.urgent_ready(now, 1):
            # The reserve refills at reserve/window per second; at least one second.
            return max(1.0, (1.0 - budget.urgent_tokens) * budget.window / budget.reserve)
        budget.spend(now, 1, urgent=True)
        if deployment_id is not None:
            self._last_write[(group_key, deployment_id)] = now
        return None

    def may_spend_extra_page(self, request: Request) -> bool:
        """Whether a listing longer than planned may fetch one more page now (and pay for it)."""
        account = self._accounts.get(request.group.account)
        if account is None:
            return False
        budget, now = account.budget, self._clock()
        if budget.held(now) is not None or (budget.remaining is not None and budget.remaining <= budget.reserve // 2):
            return False
        budget.spend(now, 1, urgent=request.urgent)
        return True

    def list_unreadable(self, request: Request) -> list[str]:
        """The listing's body could not be read (one hostile item can do that): observe the group's
        deployments with GETs for a while, starting now. Returns the deployments the listing covered."""
        group = self._groups.get(request.group)
        if group is None:
            return []
        now = self._clock()
        group.list_in_flight = False
        covered = [t for t in group.targets.values() if self._covered(group, t)]
        longest = max((t.requested_interval for t in group.targets.values()), default=0.0)
        group.list_unreadable_until = now + self.config.unreadable_list_intervals * longest
        for target in covered:
            target.due = min(target.due, now)
        self._replan(request.group)
        return sorted(t.deployment_id for t in covered)

    def _target(self, group_key: GroupKey, deployment_id: str) -> Target | None:
        group = self._groups.get(group_key)
        return group.targets.get(deployment_id) if group else None

    def _jitter(self) -> float:
        return self._rng.uniform(1 - self.config.jitter, 1 + self.config.jitter)

    # -- introspection for tests and status ---------------------------------------------------

    def group(self, group_key: GroupKey) -> Group | None:
        return self._groups.get(group_key)

    def accounts(self) -> list[str]:
        return list(self._accounts)


def _priority(targets: Iterable[Target]) -> Priority:
    best = Priority.STABLE
    for target in targets:
        if target.urgent:
            return Priority.URGENT
        if target.phase in TRANSITIONAL_PHASES:
            best = Priority.TRANSITIONAL
    return best
