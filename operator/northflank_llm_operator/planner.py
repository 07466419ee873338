"""Request planning: which Northflank request to send next, and when. Pure: no I/O, an injected clock.

The unit of observation is a *group*: the resources that share one Northflank account, team and
project. One list call (one request per page of 100) observes every deployment of a project, so a
group is observed either by listing it, by single GETs of the deployments it tracks, or by both (a
list at the stable cadence plus GETs for the few deployments that must be watched faster); the planner
picks whichever costs fewer requests per second and re-decides when membership, phases or the
learned page count change. Several resources naming the same deployment share one *target*.

Every account (a token, until proven otherwise) has a :class:`Budget` learned from Northflank's
``x-ratelimit-*`` headers. Routine observations are paced evenly across what is left of the window
(less what other clients of the account are expected to spend) by a small token bucket; a reserve
serves new resources, spec changes and confirmations at once. When the account's demand exceeds its
budget, every interval of that account is stretched by the same factor and work is served in
due-time order from a heap, so nobody starves. The stretch reported in status comes from the steady
demand; observing transitional deployments faster is paid from the slack under it or from half of
the reserve, never by moving every status.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Any, Generic, Literal, TypeVar

from .northflank import RateLimit

# Re-exported: they were defined here before contract.py, and the loop may import them from here.
from .northflank.contract import DOCUMENTED_HOUR_SECONDS
from .northflank.contract import DOCUMENTED_LIMIT as DOCUMENTED_LIMIT
from .northflank.contract import PAGE_SIZE as PAGE_SIZE
from .northflank.contract import TRANSITIONAL_PHASES as TRANSITIONAL_PHASES

#: Northflank documents a fixed window of one hour; a reset announced beyond it is not believed.
DOCUMENTED_WINDOW_SECONDS = DOCUMENTED_HOUR_SECONDS

# Stretch factors are reported on this ladder (times powers of ten), rounded up, so a status only
# changes when the plan moves by a visible step rather than on every small change of demand.
_LADDER = (1.0, 1.1, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0)
#: The reported stretch steps down only when the actual one is this far below the next step down.
_LADDER_HYSTERESIS = 0.1
#: Due times are re-timed when the stretch moves by more than this share since they were set.
_RETIME_THRESHOLD = 0.1


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
class HoldCause:
    """Why an account sends nothing now, and until when (the planner's clock)."""

    kind: Literal["breaker", "rate_limited"]
    until: float


@dataclass(frozen=True)
class PlannerConfig:
    reserve_fraction: float = 0.1
    #: When the budget binds, work falls due this much sooner than the budget can serve it: a short
    #: queue is always waiting, so the budget's pace, not the jitter of due times, spaces requests
    #: evenly (round robin by due time), and no capacity is lost to moments when nothing is due.
    backlog_headroom: float = 0.1
    #: A backlog of routine work may use what the idle reserve would waste (its bucket is full), up to
    #: half the reserve per window and never below half of it left in the window.
    borrow_idle_reserve: bool = True
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
    a hard bound on top, and routine work is *admitted* at ``min(planned, spendable / time left)``,
    so a window someone else has partly spent is spread over the time left instead of being spent
    at once and then leaving the account blind. What the window loses beyond this process's own
    requests is other clients' spending: a steady rate of it (the lower median of its rate over
    twelfths of the window, so a one-off burst or a previous life of this process is no rate) is
    expected to go on until the reset and is kept out of the pace. The stretch is planned on the
    same pace as of the last answered request (``sustainable_rate``), so resources are not called
    stale for what others spend. A 429 holds everything until the reset, capped at the documented
    window; being unplanned, it moves no plan.
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
        # Requests this process sent in the current window, and those of them sent on the reserve;
        # the rest of what the window lost was spent by other clients of the account.
        self._ours = 0
        self._ours_urgent = 0
        # Per twelfth of the current window, the last answered request in it: (seconds into the
        # window, what other clients had spent by then, whether none of ours was in flight). A 429
        # is no answer: holds move no plan.
        self._marks: dict[int, tuple[float, int, bool]] = {}
        self._first_mark: tuple[float, int] | None = None
        # Other clients' steady rate in the previous window (requests per second; None: none seen).
        self._others_rate_before: float | None = None
        # Routine requests per second this account keeps up, as of the last answered request.
        self._sustainable = self.planned_rate
        self._sustained_at = now
        # Requests of the current window that sped up transitional work on the reserve, and a bucket
        # that paces them at ``borrowable_rate``.
        self._borrowed = 0
        self._borrow_tokens = 0.0
        self._idle_tokens = 0.0
        # Routine requests per second in force since the last change of what is known.
        self._pace = self.planned_rate
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
        """Requests per second routine work may use when nobody else spends the account."""
        return max(self.limit - self.reserve, 1) / self.window

    @property
    def others_spent(self) -> int:
        """Requests of the current window spent by other clients of the account, as far as known."""
        if self.remaining is None:
            return 0
        return max(0, self.limit - self.remaining - self._ours)

    @property
    def sustainable_rate(self) -> float:
        """Routine requests per second this account keeps up: the planned rate, or the pace that what
        is left of the window allows, as of the last answered request. The stretch is planned on it."""
        return self._sustainable

    @property
    def others_rate(self) -> float:
        """Other clients' steady spending, requests per second: the lower median of its rate between
        the twelfths of this window (a jump in one of them is a burst, not a rate); until two such
        rates are known, the previous window's, or in a first window the rate since its first answer
        (once a minute has passed), so that a first window is not spent early and then blind."""
        marks = [self._marks[k] for k in sorted(self._marks)]
        rates = sorted((b[1] - a[1]) / (b[0] - a[0]) for a, b in itertools.pairwise(marks) if b[0] > a[0])
        if len(rates) >= 2:
            return max(0.0, rates[(len(rates) - 1) // 2])
        if self._others_rate_before is not None:
            return self._others_rate_before
        if self._first_mark is None or not marks or marks[-1][0] - self._first_mark[0] < 60.0:
            return 0.0
        (start, before), (end, after, _) = self._first_mark, marks[-1]
        return max(0.0, (after - before) / (end - start))

    def _routine_share(self, now: float) -> tuple[float, float] | None:
        """What routine work may still spend of this window, and the seconds left (None: unknown)."""
        if self.remaining is None or self.reset_at is None:
            return None
        left = max(self.reset_at - now, 1.0)
        spendable = max(self.remaining - self._floor, 0)
        return max(spendable - self.others_rate * left, 0.1 * spendable), left

    def _learn_sustainable(self, now: float, rate: float) -> None:
        """Down at once (or resources go stale); back to the planned rate at once when what is left
        no longer binds (others stopped spending: the operator must not stay slow for the rest of
        the window); otherwise up smoothed over a sixth of the window, so that the noise of an
        estimate made of what is left moves no status."""
        if rate < self._sustainable or rate >= self.planned_rate:
            self._sustainable = rate
        else:
            weight = 1 - math.exp(-max(0.0, now - self._sustained_at) / (self.window / 6))
            self._sustainable += weight * (rate - self._sustainable)
        self._sustained_at = now

    def pace(self, now: float) -> float:
        """Routine requests per second admitted from ``now``: the planned rate, or less when what is
        left of the window (less the reserve and what other clients are expected to spend until the
        reset) would not last until the reset at that rate."""
        share = self._routine_share(now)
        if share is None:
            return self._sustainable  # a new window, nothing heard of it yet
        ours, left = share
        # Half a request more, so the last one goes half a gap before the reset rather than at it.
        # (Never quite blind while something is spendable: the others may spend less than expected.)
        return min(self.planned_rate, (ours + 0.5) / left) if ours > 0 else 0.0

    @property
    def _floor(self) -> int:
        """What routine work leaves of the window: the reserve, less what urgent work has spent of it."""
        return max(self.reserve - self._ours_urgent, 0)

    @property
    def borrowable_rate(self) -> float:
        """Requests per second transitional work may take from the reserve: half of its refill."""
        return self.reserve / 2 / self.window

    def borrow_ready_at(self, now: float, cost: int, *, idle_only: bool = False) -> float | None:
        """When work costing ``cost`` may be sent on the reserve (None: not in this window): at
        ``borrowable_rate``, and while half the reserve stays for urgent work, in the bucket and in
        the window. ``idle_only`` (routine work): only while the reserve's bucket is full, that is
        with what it would otherwise waste, so new resources still find it (nearly) full."""
        self._refill(now)
        if self.held(now) is not None or self._borrowed + cost > self.reserve // 2:
            return None
        if self.remaining is not None and self.remaining - cost < self.reserve - self.reserve // 2:
            return None
        need = min(float(cost), 1.0)
        paced = (need - self._borrow_tokens) / self.borrowable_rate
        if idle_only:
            # Slower than the backlog the headroom keeps, so routine requests stay evenly spaced.
            paced = max(paced, (need - self._idle_tokens) / self._idle_rate)
        keep = self.reserve - 1.0 if idle_only else self.reserve / 2 + cost
        refilled = (keep - self.urgent_tokens) / (self.reserve / self.window)
        return now + max(0.0, paced, refilled)

    @property
    def _idle_rate(self) -> float:
        return max(min(self.borrowable_rate, self._sustainable * self._config.backlog_headroom / 2), 1e-9)

    def borrow(self, now: float, cost: int, *, idle: bool = False) -> None:
        self.spend(now, cost, urgent=True)
        if idle:
            self._idle_tokens -= cost
        self._borrow_tokens -= cost
        self._borrowed += cost
        self._pace = self.pace(now)

    @property
    def _capacity(self) -> float:
        return max(2.0, self.limit / 200)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._refilled_at)
        self._refilled_at = now
        self.tokens = min(self._capacity, self.tokens + elapsed * self._pace)
        self.urgent_tokens = min(float(self.reserve), self.urgent_tokens + elapsed * self.reserve / self.window)
        self._borrow_tokens = min(1.0, self._borrow_tokens + elapsed * self.borrowable_rate)
        self._idle_tokens = min(1.0, self._idle_tokens + elapsed * self._idle_rate)
        if self.reset_at is not None and now >= self.reset_at:
            # A new window has begun; the next response says how much of it is left. One request
            # may go at once to learn it (one is no burst), whatever the pacing says.
            self._end_window()
            self.tokens = max(self.tokens, 1.0)
        self._pace = self.pace(now)

    def _end_window(self) -> None:
        if self._marks:
            self._others_rate_before = self.others_rate
        self._marks.clear()
        self._first_mark = None
        self.remaining = None
        self.reset_at = None
        self._ours = self._ours_urgent = 0
        self._borrowed = 0

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
        if self.remaining is not None and self.reset_at is not None:
            spendable = self.remaining - self._floor
            if spendable < min(cost, self.remaining) or self._pace <= 0:
                return self.reset_at  # the window's routine share is spent: wait for the reset
        need = min(float(cost), self._capacity)
        if self.tokens >= need:
            return now
        return now + (need - self.tokens) / self._pace

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
        self._ours += cost
        if urgent:
            self._ours_urgent += cost
        if self.remaining is not None:
            self.remaining = max(0, self.remaining - cost)
        self._pace = self.pace(now)

    def may_spend_extra_page(self, now: float, *, urgent: bool) -> bool:
        """A listing turned out longer than planned: take one more page now if the account is not held
        and more than half the reserve is left (and charge it); else the listing finishes later."""
        self._refill(now)
        if self.held(now) is not None or (self.remaining is not None and self.remaining <= self.reserve // 2):
            return False
        self.spend(now, 1, urgent=urgent)
        return True

    def _learn_limit_and_window(self, rate_limit: RateLimit, reset: float | None) -> None:
        """The account's own limit and window length (the documented ones are assumed until then). The
        plan moves to them at once, so a first status already shows the interval that will stay."""
        limit, window = self.limit, self._window
        if rate_limit.limit is not None and rate_limit.limit > 0:
            limit = rate_limit.limit
        if reset is not None and rate_limit.remaining is not None and rate_limit.remaining >= limit - 1:
            window = max(1.0, reset)  # the first request of a window: what is left of it is the whole window
        if limit != self.limit or abs(window - self._window) > 0.05 * self._window:
            self.limit, self._window = limit, window
            self._sustainable = self.planned_rate
        else:
            self._window = window

    def record(self, now: float, rate_limit: RateLimit | None, *, rejected: bool, in_flight: int = 0) -> bool:
        """Learn from one response's headers (``in_flight``: this process's other requests of the
        account still unanswered). Returns True when this starts a new hold (a 429)."""
        if rate_limit is None:
            return False
        self._refill(now)
        reset = (
            min(rate_limit.reset_seconds, DOCUMENTED_WINDOW_SECONDS) if rate_limit.reset_seconds is not None else None
        )
        if not rejected:
            # Learned from answered requests only: the plan (and every stale limit built on it)
            # must not move because of a hold, which is unplanned by definition.
            self._learn_limit_and_window(rate_limit, reset)
        if reset is not None and rate_limit.remaining is not None:
            new_reset_at = now + reset
            if self.reset_at is None or new_reset_at > self.reset_at + 5.0:
                if self.reset_at is not None:
                    ours, ours_urgent = self._ours, self._ours_urgent
                    self._end_window()  # the headers saw the reset before the clock did
                    self._ours, self._ours_urgent = ours, ours_urgent
                # A newer window. Of what this process sent since it began, the server counted at
                # most what the window lost and the requests still in flight, which it may count
                # after this answer (the rest went to the old window). Counting too many of ours
                # only hides others' spending; too few would invent some.
                self._ours = min(self._ours, max(self.limit - rate_limit.remaining, 0) + max(in_flight, 0))
                self._ours_urgent = min(self._ours_urgent, self._ours)
                self.remaining = rate_limit.remaining
            else:
                self.remaining = min(self.remaining if self.remaining is not None else rate_limit.remaining,
                                     rate_limit.remaining)  # fmt: skip
            self.reset_at = new_reset_at
            if not rejected:
                seen_at = max(0.0, self.window - reset)
                # Requests of ours in flight count as ours before the server counts them, so only an
                # answer with none in flight says exactly what others spent: a mark taken with some
                # in flight (a start observes everything at once) stands only until an exact one.
                exact = in_flight <= 0
                twelfth = min(11, int(seen_at * 12 / self.window))
                if exact or not self._marks.get(twelfth, (0.0, 0, False))[2]:
                    self._marks[twelfth] = (seen_at, self.others_spent, exact)
                if self._first_mark is None and exact:
                    self._first_mark = (seen_at, self.others_spent)
                share = self._routine_share(now)
                if share is not None and share[1] >= self.window / 12:
                    # Not in the window's last twelfth, where a request more or less is a large share.
                    share_left, left = share
                    # One request more: being one request ahead of the pace is no news.
                    rate = min(self.planned_rate, max((share_left + 1) / left, 1 / self.window))
                    self._learn_sustainable(now, rate)
        self._pace = self.pace(now)
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
    #: The same with every target at its requested interval, as if none were transitional: what the
    #: reported stretch is computed from, so one deployment starting does not move every status.
    steady_demand: float = 0.0
    reported_stretch: float = 1.0
    #: Groups with a target observed faster than requested (a transitional phase).
    speeding: set[GroupKey] = field(default_factory=set)
    #: How much faster transitional targets are observed now: the configured speed-up, or less when
    #: the budget's slack under the reported stretch cannot pay for it.
    speedup: float = 1.0
    #: The routine rate ``speedup`` was fitted to.
    fitted_rate: float = 0.0
    #: The stretch the due times were computed with (all of them re-timed when it moves a lot).
    timed_stretch: float = 1.0
    urgent: list[tuple[float, int, int, WorkKey]] = field(default_factory=list)
    routine: list[tuple[float, int, int, WorkKey]] = field(default_factory=list)
    #: Due work of groups that have all their requests in flight (and the heap it came from): back in
    #: its heap when one of them ends.
    parked: list[tuple[list[tuple[float, int, int, WorkKey]], tuple[float, int, int, WorkKey]]] = field(
        default_factory=list
    )
    #: Routine work that observes a transitional deployment: it may also be paid from the reserve.
    transitional: list[tuple[float, int, int, WorkKey]] = field(default_factory=list)


#: What to send now: the account, the heap and entry it comes from, and whether the reserve pays.
_Decision = tuple[_Account, list[tuple[float, int, int, WorkKey]], tuple[float, int, int, WorkKey], bool]


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
        self._steady_rate: dict[GroupKey, float] = {}
        # Groups whose plan must be recomputed; done in one go before the next decision, so that
        # a thousand resources arriving together cost one replan per group, not one each.
        self._dirty: set[GroupKey] = set()
        #: When each deployment was last written to (management): one write per effective interval.
        self._last_write: dict[tuple[GroupKey, str], float] = {}

    def adapted_interval(self, target: Target, speedup: float | None = None) -> float:
        """The target's interval for its current phase, before any budget stretch (``speedup``: of a
        transitional phase; the configured one unless given)."""
        interval = target.requested_interval
        if target.phase in TRANSITIONAL_PHASES:
            floor = min(interval, self.config.min_interval_seconds)
            return max(interval / (self.config.transitional_speedup if speedup is None else speedup), floor)
        return interval

    def _adapted(self, group_key: GroupKey, target: Target) -> float:
        """The target's interval with its account's current transitional speed-up."""
        account = self._accounts.get(group_key.account)
        return self.adapted_interval(target, account.speedup if account is not None else None)

    def _covered(self, group: Group, target: Target) -> bool:
        return group.covered(target, self._adapted(group.key, target))

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
            account = self._accounts.setdefault(
                group_key.account, _Account(Budget(now, self.config), speedup=self.config.transitional_speedup)
            )
            account.groups.add(group_key)
        existing = group.targets.get(deployment_id)
        if existing is None:
            target = group.targets[deployment_id] = Target(deployment_id, phase=phase)
            target.resources[resource] = interval
            if urgent:
                self._pull_forward(target, when)
            else:
                target.due = now + self._rng.uniform(0, self._due_interval(group_key, target))
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
        steady = self._steady_rate.pop(group_key, 0.0)
        if account is not None:
            account.groups.discard(group_key)
            account.speeding.discard(group_key)
            account.demand -= rate
            account.steady_demand -= steady
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
        interval = min(self.effective_interval(request.group, self._adapted(request.group, t)) for t in targets)
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
            for heap, entry in acc.parked:
                heapq.heappush(heap, entry)
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
        """How much longer than asked every interval of ``account`` is, so its demand fits. What
        transitional work costs beyond the slack under the reported stretch is paid from the
        reserve, not by stretching everyone."""
        acc = self._accounts.get(account)
        if acc is None:
            return 1.0
        rate = acc.budget.sustainable_rate
        return max(1.0, min(acc.demand / rate, self._stretch_cap(account, acc)))

    def _stretch_cap(self, name: str, account: _Account) -> float:
        """The stretch everyone is scheduled at, at most: the steady one, or the reported one less
        the jitter when that is more (the slack transitional work may use)."""
        steady = account.steady_demand / account.budget.sustainable_rate
        return max(steady, self.reported_stretch(name) / (1 + self.config.jitter))

    def reported_stretch(self, account: str) -> float:
        """The stretch of the account's steady demand (every target at its requested interval),
        rounded up to a visible step with hysteresis: what status and staleness use. Observing a
        transitional deployment faster is paid from the slack under it, so it moves no status."""
        acc = self._accounts.get(account)
        if acc is None:
            return 1.0
        actual = max(1.0, acc.steady_demand / acc.budget.sustainable_rate)
        current = acc.reported_stretch
        # Up at once (or resources go stale); down only once clearly below the step under it, so
        # an estimate wavering around a step moves no status.
        if actual > current or actual <= ladder_floor_below(current) * (1 - _LADDER_HYSTERESIS):
            acc.reported_stretch = ladder_ceil(actual)
        return acc.reported_stretch

    def effective_interval(self, group_key: GroupKey, interval: float) -> float:
        return interval * self.stretch(group_key.account)

    def _due_interval(self, group_key: GroupKey, target: Target, stretch: float | None = None) -> float:
        """How long after an observation ``target`` falls due again: its stretched interval, a little
        sooner while the budget binds (see ``backlog_headroom``), except in a transitional phase,
        whose work may skip the queue on the reserve, which is planned on the exact interval.
        (``stretch``: the account's, when the caller has it for many targets.)"""
        stretch = self.stretch(group_key.account) if stretch is None else stretch
        if target.phase not in TRANSITIONAL_PHASES:
            stretch = max(1.0, stretch * (1 - self.config.backlog_headroom))
        return self._adapted(group_key, target) * stretch

    def budget(self, account: str) -> Budget | None:
        """The account's budget: for metrics and tests only (the loop uses the methods above and below)."""
        acc = self._accounts.get(account)
        return acc.budget if acc else None

    def hold_cause(self, account: str) -> HoldCause | None:
        """Why ``account`` is held now (rejected credentials, or a spent rate limit), and until when."""
        acc = self._accounts.get(account)
        if acc is None:
            return None
        until = acc.budget.held(self._clock())
        if until is None:
            return None
        return HoldCause("breaker" if acc.budget.breaker_open else "rate_limited", until)

    def may_spend_extra_page(self, request: Request) -> bool:
        """A listing turned out longer than ``request.cost`` pages: whether to fetch one more page now
        (it is charged) or finish the listing on a later round (the budget is held or short)."""
        acc = self._accounts.get(request.group.account)
        return acc is not None and acc.budget.may_spend_extra_page(self._clock(), urgent=request.urgent)

    def _replan(self, group_key: GroupKey) -> None:
        self._dirty.add(group_key)

    def _replan_dirty(self) -> None:
        accounts = {key.account for key in self._dirty}
        while self._dirty:
            self._replan_now(self._dirty.pop())
        for name, account in self._accounts.items():
            if name in accounts or account.fitted_rate != account.budget.sustainable_rate:
                self._fit_speedup(name, account)
                self._retime(name, account)

    def _retime(self, name: str, account: _Account) -> None:
        """When the stretch moved a lot (the budget's pace changed: a window someone else spent, a
        new window), scale every routine target's time to its due by the same factor, instead of
        keeping due times planned on the old stretch for one old interval (too slow, or too fast
        and then a gap). Their order is kept, so they stay spread evenly."""
        stretch = self.stretch(name)
        if abs(stretch / account.timed_stretch - 1) <= _RETIME_THRESHOLD:
            return
        factor, account.timed_stretch = stretch / account.timed_stretch, stretch
        now = self._clock()
        for key in account.groups:
            for target in self._groups[key].targets.values():
                if target.due > now and not (target.urgent or target.in_flight or target.failures):
                    # Never beyond one new interval from now: retimes must not compound.
                    latest = self._due_interval(key, target, stretch) * (1 + self.config.jitter)
                    target.due = now + min((target.due - now) * factor, latest)
            self._replan_now(key)

    def _fit_speedup(self, name: str, account: _Account) -> None:
        """Choose the transitional speed-up the slack under the reported stretch can pay for: the
        configured one when it fits, else the largest that does (1: none), so that the others are
        never observed less often than the reported stretch says."""
        account.fitted_rate = account.budget.sustainable_rate
        speedup = self.config.transitional_speedup
        if account.speeding:
            budget = account.budget
            affordable = (account.fitted_rate + budget.borrowable_rate) * self._stretch_cap(name, account)
            groups = [self._groups[key] for key in account.speeding]

            def demand(k: float) -> float:
                extra = 0.0
                for group in groups:
                    intervals = (self.adapted_interval(t, k) for t in group.targets.values())
                    extra += cheapest_plan(group.estimated_pages(), intervals)[1] - self._steady_rate[group.key]
                return account.steady_demand + extra

            if demand(speedup) > affordable * (1 + 1e-9):
                low, high = 1.0, speedup
                for _ in range(12):
                    middle = (low + high) / 2
                    low, high = (middle, high) if demand(middle) <= affordable else (low, middle)
                speedup = low
        if abs(speedup - account.speedup) > 1e-6 * speedup:
            account.speedup = speedup
            for key in list(account.speeding):
                self._replan_now(key)

    def _replan_now(self, group_key: GroupKey) -> None:
        """Choose the group's cheapest way of observing and (re)schedule its work items."""
        group = self._groups.get(group_key)
        if group is None:
            return
        account = self._accounts[group_key.account]
        targets = list(group.targets.values())
        pages = group.estimated_pages()
        group.list_interval, rate = cheapest_plan(pages, (self.adapted_interval(t, account.speedup) for t in targets))
        if self._clock() < group.list_unreadable_until:
            group.list_interval, rate = None, sum(1.0 / self.adapted_interval(t, account.speedup) for t in targets)
        account.demand += rate - self._group_rate.get(group_key, 0.0)
        self._group_rate[group_key] = rate
        if any(t.phase in TRANSITIONAL_PHASES for t in targets):
            account.speeding.add(group_key)
            steady = cheapest_plan(pages, (t.requested_interval for t in targets))[1]
        else:
            account.speeding.discard(group_key)
            steady = rate
        account.steady_demand += steady - self._steady_rate.get(group_key, 0.0)
        self._steady_rate[group_key] = steady
        covered_ids = {t.deployment_id for t in targets if group.covered(t, self.adapted_interval(t, account.speedup))}
        covered = [t for t in targets if t.deployment_id in covered_ids]
        if covered and not group.list_in_flight:
            due = min(t.due for t in covered)
            priority = _priority(covered)
            self._schedule(account, (group_key, None), due, priority)
        else:
            self._scheduled.pop((group_key, None), None)
        for target in targets:
            key: WorkKey = (group_key, target.deployment_id)
            if target.deployment_id in covered_ids or target.in_flight:
                self._scheduled.pop(key, None)
            else:
                self._schedule(account, key, target.due, _priority([target]))

    def _schedule(self, account: _Account, key: WorkKey, due: float, priority: Priority) -> None:
        seq = next(self._seq)
        self._scheduled[key] = seq
        if priority is Priority.URGENT:
            heap = account.urgent
        else:
            heap = account.transitional if priority is Priority.TRANSITIONAL else account.routine
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

    def _decide(self) -> _Decision | float | None:
        self._replan_dirty()
        now = self._clock()
        wake: float | None = None
        for account in self._accounts.values():
            decision = self._decide_account(account, now)
            if isinstance(decision, tuple):
                return decision
            if decision is not None:
                wake = decision if wake is None else min(wake, decision)
        return wake

    def _decide_account(self, account: _Account, now: float) -> _Decision | float | None:
        """The account's request to send now (reserve: urgent work first), else when to look again."""
        budget = account.budget
        wakes: list[float] = []
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
            wakes.append(head[0])
        routine, fast = self._head(account.routine), self._head(account.transitional)
        heap, head = (account.routine, routine)
        if fast is not None and (routine is None or fast < routine):
            heap, head = account.transitional, fast
        if head is not None:
            ready = max(head[0], budget.routine_ready_at(now, self._cost(head[3])))
            if ready <= now:
                return account, heap, head, False
            wakes.append(ready)
        # What the routine pace cannot take now may go on the reserve: transitional work (its speed-up
        # is planned on it), else a routine backlog with what the idle reserve would waste.
        borrow: tuple[list[tuple[float, int, int, WorkKey]], tuple[float, int, int, WorkKey]] | None = None
        if fast is not None:
            borrow = account.transitional, fast
        elif routine is not None and routine[0] <= now and self.config.borrow_idle_reserve and not account.speeding:
            borrow = account.routine, routine
        if borrow is not None:
            idle = borrow[0] is account.routine
            borrow_at = budget.borrow_ready_at(now, self._cost(borrow[1][3]), idle_only=idle)
            if borrow_at is not None:
                borrow_at = max(borrow_at, borrow[1][0])
                if borrow_at <= now:
                    return account, borrow[0], borrow[1], True
                wakes.append(borrow_at)
        return min(wakes) if wakes else None

    def _park_saturated(self, account: _Account, now: float) -> None:
        """Move due work of groups with every slot in flight out of the way, so the next group's work
        is not held up behind it (it returns when one of the group's requests ends)."""
        limit = self.config.max_in_flight_per_group
        for heap in (account.urgent, account.routine, account.transitional):
            head = self._head(heap)
            while head is not None and head[0] <= now and self._groups[head[3][0]].in_flight >= limit:
                account.parked.append((heap, heapq.heappop(heap)))
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
        if urgent and heap is not account.urgent:
            account.budget.borrow(self._clock(), cost, idle=heap is account.routine)
        else:
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
        others = sum(self._groups[key].in_flight for key in account.groups if key in self._groups) - 1
        return account.budget.record(self._clock(), rate_limit, rejected=rejected, in_flight=others)

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
        stretch = self.stretch(group_key.account)
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
                target.due = now + self._due_interval(group_key, target, stretch) * jitter
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
        target.due = self._clock() + self._due_interval(group_key, target) * self._jitter()
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
            interval = self.effective_interval(request.group, self._adapted(request.group, target))
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
