"""The request planner with a fake clock and a fake Northflank rate limiter: no sleeps, no network."""

from __future__ import annotations

import itertools
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field

import pytest

from northflank_llm_operator.northflank import RateLimit
from northflank_llm_operator.planner import (
    Budget,
    GroupKey,
    HoldCause,
    Planner,
    PlannerConfig,
    Request,
    Urgency,
    cheapest_plan,
    ladder_ceil,
    ladder_floor_below,
)
from northflank_llm_operator.settings import OperatorSettings


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FixedWindow:
    """Northflank's documented limiter: ``limit`` requests per window starting at the first request."""

    limit: int = 1000
    window: float = 3600.0
    started: float | None = None
    used: int = 0
    rejected: int = 0

    def charge(self, now: float) -> tuple[bool, RateLimit]:
        if self.started is None or now >= self.started + self.window:
            self.started, self.used = now, 0
        allowed = self.used < self.limit
        if allowed:
            self.used += 1
        else:
            self.rejected += 1
        reset = math.ceil(self.started + self.window - now)
        return allowed, RateLimit(limit=self.limit, remaining=self.limit - self.used, reset_seconds=reset)


@dataclass
class World:
    """Projects of deployments with phases; answers the planner's requests instantly."""

    clock: Clock
    planner: Planner[str]
    limiter: FixedWindow
    projects: dict[str, dict[str, str]] = field(default_factory=dict)
    observed_at: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    requests: list[tuple[float, Request]] = field(default_factory=list)

    def answer(self, request: Request) -> None:
        try:
            self._answer(request)
        finally:
            self.planner.request_finished(request)  # as the observer does, however the request ended

    def _answer(self, request: Request) -> None:
        self.requests.append((self.clock.now, request))
        group = request.group
        phases = self.projects[group.project_id]
        for _page in range(request.cost if request.is_list else 1):
            allowed, headers = self.limiter.charge(self.clock.now)
            self.planner.record_headers(group, headers, rejected=not allowed)
            if not allowed:
                self.planner.failed(request, transient=True, retry_at=self.planner.budget(group.account).held_until)  # type: ignore[union-attr]
                return
        if request.is_list:
            tracked = self.planner.tracked_ids(group)
            found = {d: phases[d] for d in tracked if d in phases}
            for deployment_id in found:
                self.observed_at[f"{group.project_id}/{deployment_id}"].append(self.clock.now)
            self.planner.listed(group, found, pages=max(1, math.ceil(len(phases) / 100)), complete=True)
        else:
            assert request.deployment_id is not None
            self.observed_at[f"{group.project_id}/{request.deployment_id}"].append(self.clock.now)
            self.planner.observed(group, request.deployment_id, phases.get(request.deployment_id))

    def run_until(self, end: float, *, max_steps: int = 1_000_000) -> None:
        for _ in range(max_steps):
            decision = self.planner.next_request()
            if isinstance(decision, Request):
                self.answer(decision)
                continue
            if decision is None or decision > end:
                self.clock.now = end
                return
            self.clock.now = max(self.clock.now, decision)
        raise AssertionError("the planner did not settle")


def world(*, limit: int = 1000, seed: int = 7, config: PlannerConfig | None = None) -> World:
    clock = Clock()
    planner: Planner[str] = Planner(clock, config or PlannerConfig(), rng=random.Random(seed))
    return World(clock, planner, FixedWindow(limit=limit))


def add_project(w: World, project: str, deployments: int, *, tracked: int | None = None, interval: float = 60,
                phase: str = "running", urgency: Urgency = Urgency.CHANGED, account: str = "acct") -> None:  # fmt: skip
    w.projects[project] = {f"d{i}": phase for i in range(deployments)}
    for i in range(deployments if tracked is None else tracked):
        w.planner.track(f"{project}/d{i}", GroupKey(account, project), f"d{i}", interval, urgency=urgency)


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


# -- choosing how to observe a group ---------------------------------------------------------------


def test_cheapest_plan_lists_when_that_costs_less_than_gets() -> None:
    assert cheapest_plan(1, [60.0]) == (None, pytest.approx(1 / 60)), "one deployment: a GET, no confirmation needed"  # type: ignore[comparison-overlap]
    assert cheapest_plan(1, [60.0, 60.0]) == (60.0, pytest.approx(1 / 60))  # type: ignore[comparison-overlap]
    assert cheapest_plan(5, [60.0, 60.0]) == (None, pytest.approx(2 / 60)), "2 of 500: two GETs beat five pages"  # type: ignore[comparison-overlap]
    # One deployment starting (15 s) among 499 stable ones: list the five pages at the stable cadence
    # and GET the fast one, rather than listing everything every 15 s.
    interval, rate = cheapest_plan(5, [15.0] + [60.0] * 499)
    assert interval == 60.0
    assert rate == pytest.approx(5 / 60 + 1 / 15)
    # In a one-page project, listing at the fast cadence is cheaper still.
    assert cheapest_plan(1, [15.0] + [60.0] * 99)[0] == 15.0


def test_a_hundred_new_resources_of_one_project_cost_one_list_call() -> None:
    w = world()
    add_project(w, "p", 100)
    w.run_until(w.clock.now + 5)
    assert [(r.is_list, r.urgent) for _, r in w.requests] == [(True, True)]
    assert len(w.observed_at) == 100


@pytest.mark.parametrize(("urgency", "held_back"), [(Urgency.CHANGED, True), (Urgency.REQUESTED, False)])
def test_only_a_change_soon_after_another_waits_out_the_spacing(urgency: Urgency, held_back: bool) -> None:
    w = world()
    add_project(w, "p", 1)
    w.run_until(w.clock.now + 5)
    w.planner.track("p/d0", GroupKey("acct", "p"), "d0", 60, urgency=Urgency.CHANGED)
    w.run_until(w.clock.now + 3)  # the first change: observed at once, and its spacing window opens
    w.requests.clear()
    second_at = w.clock.now
    w.planner.track("p/d0", GroupKey("acct", "p"), "d0", 60, urgency=urgency)
    w.run_until(second_at + 30)
    first = w.requests[0][0] - second_at
    spacing = w.planner.config.spec_change_spacing_seconds
    assert (first >= spacing - 5) is held_back, f"observed {first:.1f}s after the second {urgency.value}"


def test_several_resources_naming_one_deployment_are_observed_once() -> None:
    w = world()
    w.projects["p"] = {"d0": "running"}
    for name in ("ns-a/x", "ns-b/y", "ns-c/z"):
        w.planner.track(name, GroupKey("acct", "p"), "d0", 60, urgency=Urgency.CHANGED)
    w.run_until(w.clock.now + 5)
    assert len(w.requests) == 1
    assert not w.requests[0][1].is_list
    assert sorted(w.planner.resources_of(GroupKey("acct", "p"), "d0")) == ["ns-a/x", "ns-b/y", "ns-c/z"]


def test_a_deployment_missing_from_a_complete_listing_is_confirmed_with_a_get() -> None:
    w = world()
    add_project(w, "p", 3)
    w.run_until(w.clock.now + 5)
    group = GroupKey("acct", "p")
    to_confirm, still_gone = w.planner.listed(group, {"d0": "running", "d1": "running"}, pages=1, complete=True)
    assert (to_confirm, still_gone) == ({"d2"}, set())
    confirm = w.planner.next_request()
    assert isinstance(confirm, Request)
    assert (confirm.deployment_id, confirm.urgent) == ("d2", True)
    w.planner.observed(group, "d2", None)  # 404: gone
    w.clock.now += 120
    # Later listings without it confirm what is known; no GET every interval.
    assert w.planner.listed(group, {"d0": "running", "d1": "running"}, pages=1, complete=True) == (set(), {"d2"})
    w.projects["p"].pop("d2")
    w.requests.clear()
    w.run_until(w.clock.now + 600)
    assert w.requests, "the group is still observed"
    assert all(r.is_list for _, r in w.requests)


def test_an_incomplete_listing_does_not_call_anything_missing() -> None:
    w = world()
    add_project(w, "p", 3)
    assert w.planner.listed(GroupKey("acct", "p"), {"d0": "running"}, pages=1, complete=False) == (set(), set())


def test_the_page_count_learned_from_a_listing_can_switch_a_group_to_gets() -> None:
    w = world()
    w.projects["p"] = {f"d{i}": "running" for i in range(500)}  # five pages, but only two tracked
    for i in range(2):
        w.planner.track(f"p/d{i}", GroupKey("acct", "p"), f"d{i}", 60, urgency=Urgency.CHANGED)
    w.run_until(w.clock.now + 5)
    assert w.requests[0][1].is_list  # nothing known yet: a listing teaches the size
    w.run_until(w.clock.now + 130)
    assert all(not r.is_list for _, r in w.requests[1:]), "then two GETs per interval beat five pages"


# -- pace and fairness ---------------------------------------------------------------------------


def spent_per_hour(w: World, since: float) -> float:
    return sum(r.cost for t, r in w.requests if t > since) / ((w.clock.now - since) / 3600)


@pytest.mark.parametrize(
    ("projects", "per_project"),
    [(2000, 1), (10, 200)],
    ids=["2000-alone-in-their-projects", "2000-in-10-projects"],
)
def test_2000_resources_at_60s_are_each_observed_in_every_stretched_interval(projects: int, per_project: int) -> None:
    w = world()
    for p in range(projects):
        add_project(w, f"p{p}", per_project, interval=60)
    start = w.clock.now
    w.run_until(start + 12 * 3600)
    stretch = w.planner.stretch("acct")
    assert stretch > 1, "the fleet asks for more than the budget"
    assert w.limiter.rejected == 0, "pacing never runs into a 429"
    assert len(w.observed_at) == 2000
    warm = start + 2 * 60 * stretch
    worst = 0.0
    for key, times in w.observed_at.items():
        steady = gaps([t for t in times if t > warm])
        assert len(steady) >= 2, f"{key} starved"
        worst = max(worst, max(steady) / (60 * stretch))
    # Jitter (±5 %) and the pacing of what falls due together: never more than 15 % late.
    assert worst <= 1.15
    assert 850 <= spent_per_hour(w, start + 6 * 3600) <= 1000, "the budget is used, not wasted"


def test_overload_stretches_every_interval_by_the_same_factor() -> None:
    w = world(config=PlannerConfig(jitter=0.0))
    for p in range(200):
        add_project(w, f"p{p}", 1, interval=60 if p % 2 else 120)
    start = w.clock.now
    w.run_until(start + 8 * 3600)
    stretch = w.planner.stretch("acct")
    assert stretch == pytest.approx((100 / 60 + 100 / 120) / 0.25)
    warm = start + 3 * 120 * stretch
    for key, times in w.observed_at.items():
        asked = 60 if int(key.split("/")[0][1:]) % 2 else 120
        steady = gaps([t for t in times if t > warm])
        assert steady, f"{key} starved"
        assert sum(steady) / len(steady) == pytest.approx(asked * stretch, rel=0.1), key
    assert w.limiter.rejected == 0


def test_mixed_lists_and_gets_share_one_stretch() -> None:
    w = world(config=PlannerConfig(jitter=0.0))
    add_project(w, "big", 1000)  # 10 pages per listing
    for p in range(200):
        add_project(w, f"solo{p}", 1)
    start = w.clock.now
    w.run_until(start + 2 * 3600)
    assert w.limiter.rejected == 0
    stretch = w.planner.stretch("acct")
    assert stretch > 1
    big = gaps([t for t in w.observed_at["big/d0"] if t > start + 3600])
    solo = gaps([t for t in w.observed_at["solo0/d0"] if t > start + 3600])
    assert max(big) == pytest.approx(max(solo), rel=0.05), "one stretch for listings and GETs"
    # At most the planned stretch; a little less, as the backlog also uses what the idle reserve
    # would waste (PlannerConfig.borrow_idle_reserve).
    assert 0.85 * 60 * stretch <= max(big) <= 1.05 * 60 * stretch


def test_transitional_deployments_go_first_and_more_often() -> None:
    w = world(config=PlannerConfig(jitter=0.0))
    w.projects["a"] = {"d0": "running"}
    w.projects["b"] = {"d0": "starting"}
    w.planner.track("a", GroupKey("acct", "a"), "d0", 60, urgency=Urgency.ROUTINE, phase="running")
    w.planner.track("b", GroupKey("acct", "b"), "d0", 60, urgency=Urgency.ROUTINE, phase="starting")
    for target in (w.planner.group(GroupKey("acct", g)).targets["d0"] for g in "ab"):  # type: ignore[union-attr]
        target.due = w.clock.now  # due at the same moment
    first = w.planner.next_request()
    assert isinstance(first, Request)
    assert first.group.project_id == "b", "a transitional deployment wins a tie"
    w.answer(first)
    w.run_until(w.clock.now + 600)
    assert len(w.observed_at["b/d0"]) > 3 * len(w.observed_at["a/d0"]), "starting is observed about 4x as often"


def test_routine_work_never_spends_the_reserve_but_urgent_work_may() -> None:
    clock = Clock()
    budget = Budget(clock(), PlannerConfig())
    budget.record(clock(), RateLimit(limit=1000, remaining=150, reset_seconds=1800), rejected=False)
    assert budget.reserve == 100
    sent = 0
    while budget.routine_ready_at(clock(), 1) <= clock() + 3600 and sent < 1000:
        clock.now = max(clock.now, budget.routine_ready_at(clock(), 1))
        if clock.now >= 10_000 + 1800:
            break
        budget.spend(clock(), 1, urgent=False)
        sent += 1
    assert sent == 50, "routine work stops where the reserve begins"
    assert budget.routine_ready_at(clock(), 1) >= 10_000 + 1800 - 1, "and waits for the reset"
    assert budget.urgent_ready(clock(), 1), "the reserve still serves a new resource"


def test_a_window_spent_by_someone_else_slows_routine_work_to_what_is_left() -> None:
    clock = Clock()
    budget = Budget(clock(), PlannerConfig())
    budget.record(clock(), RateLimit(limit=1000, remaining=999, reset_seconds=3600), rejected=False)
    normal = budget.planned_rate
    budget.record(clock(), RateLimit(limit=1000, remaining=280, reset_seconds=3590), rejected=False)
    budget.spend(clock(), 1, urgent=False)
    budget.spend(clock(), 1, urgent=False)
    wait = budget.routine_ready_at(clock(), 1) - clock()
    assert wait >= 1 / normal * 1.5, "fewer than planned are left: the pace drops below the planned rate"


def test_a_429_holds_until_the_reset_and_the_reset_is_capped_at_the_documented_hour() -> None:
    clock = Clock()
    budget = Budget(clock(), PlannerConfig())
    assert budget.record(clock(), RateLimit(limit=1000, remaining=0, reset_seconds=1e12), rejected=True)
    assert budget.held(clock()) == clock() + 3600
    assert not budget.record(clock(), RateLimit(limit=1000, remaining=0, reset_seconds=10), rejected=True), (
        "a hold already running is not news: one warning per window"
    )


def test_the_window_length_is_learned_from_a_windows_first_request() -> None:
    clock = Clock()
    budget = Budget(clock(), PlannerConfig())
    assert budget.window == 3600
    budget.record(clock(), RateLimit(limit=1000, remaining=400, reset_seconds=100), rejected=False)
    assert budget.window == 3600, "the middle of a window says nothing about its length"
    budget.record(clock(), RateLimit(limit=1000, remaining=999, reset_seconds=180), rejected=False)
    assert budget.window == 180


def test_a_restart_spreads_the_first_observations_over_one_interval() -> None:
    w = world()
    for p in range(300):
        add_project(w, f"p{p}", 1, interval=3600, urgency=Urgency.ROUTINE)  # observed before the restart
    start = w.clock.now
    w.run_until(start + 3600)
    times = sorted(min(t) for t in w.observed_at.values())
    assert len(times) == 300, "each observed within its interval"
    assert sum(1 for t in times if t < start + 10) <= 5, "no burst at start"
    thirds = [sum(1 for t in times if start + 1200 * i <= t < start + 1200 * (i + 1)) for i in range(3)]
    assert min(thirds) >= 70, f"spread over the interval, got {thirds}"


def test_after_a_held_window_resets_work_resumes_at_the_planned_pace_not_in_a_burst() -> None:
    w = world(limit=1000)
    for p in range(600):
        add_project(w, f"p{p}", 1, interval=600)
    start = w.clock.now
    w.run_until(start + 10)
    # Someone else spends the account: the next request is refused until the window resets.
    w.limiter.used = w.limiter.limit
    w.run_until(start + 3700)
    resumed = sorted(t for t, _ in w.requests if t >= w.limiter.started)  # type: ignore[operator]
    first_minute = [t for t in resumed if t < resumed[0] + 60]
    assert len(first_minute) <= 1000 / 3600 * 60 + 5, "the reset is not a burst"
    assert w.limiter.rejected == 1, "one 429, then the hold"


def test_unchanged_demand_keeps_the_reported_stretch_and_a_visible_change_moves_it() -> None:
    assert ladder_ceil(1.0) == 1.0
    assert ladder_ceil(1.01) == 1.1
    assert ladder_ceil(6.67) == 7.0
    assert ladder_ceil(133.3) == 150.0
    assert ladder_floor_below(7.0) == 6.0
    assert ladder_floor_below(10.0) == 8.0
    w = world()
    for p in range(40):
        add_project(w, f"p{p}", 1)
    w.planner.next_request()
    reported = w.planner.reported_stretch("acct")
    assert reported == ladder_ceil(w.planner.stretch("acct"))
    w.planner.untrack("p0/d0")  # 2.5% less demand: within the step, nothing to report
    w.planner.next_request()
    assert w.planner.reported_stretch("acct") == reported
    for p in range(40, 80):
        add_project(w, f"p{p}", 1)
    w.planner.next_request()
    assert w.planner.reported_stretch("acct") > reported


def test_nothing_is_kept_for_an_account_nobody_uses_any_more() -> None:
    w = world()
    w.planner.track("r", GroupKey("old-token", "p"), "d", 60, urgency=Urgency.CHANGED)
    w.planner.track("r", GroupKey("new-token", "p"), "d", 60, urgency=Urgency.CHANGED)  # rotated
    assert w.planner.accounts() == ["new-token"]
    w.planner.untrack("r")
    assert w.planner.accounts() == []
    assert w.planner.next_request() is None


def test_each_account_has_its_own_budget() -> None:
    w = world()
    add_project(w, "p", 1, account="a")
    add_project(w, "q", 1, account="b")
    budget_a = w.planner.budget("a")
    assert budget_a is not None
    budget_a.record(w.clock.now, RateLimit(limit=1000, remaining=0, reset_seconds=600), rejected=True)
    w.run_until(w.clock.now + 5)
    assert [r.group.account for _, r in w.requests] == ["b"]


# -- a budget someone else spends (issue 14, item 4) ----------------------------------------------


@dataclass
class SharedWindow(FixedWindow):
    """A fixed window that another client of the same account spends too: ``share`` of each window,
    either evenly across it or all at its start. Its windows follow each other without a gap, since
    the other client never stops."""

    share: float = 0.7
    burst: bool = False
    others_used: int = 0

    def charge(self, now: float) -> tuple[bool, RateLimit]:
        if self.started is None:
            self.started = now
        if now >= self.started + self.window:
            self.started += self.window * math.floor((now - self.started) / self.window)
            self.used = self.others_used = 0
        elapsed = 1.0 if self.burst else (now - self.started) / self.window
        spent_by_others = math.floor(self.share * self.limit * elapsed)
        self.used += spent_by_others - self.others_used
        self.others_used = spent_by_others
        return super().charge(now)


def routine_fleet(w: World, projects: int, *, interval: float = 60) -> None:
    """Resources observed before (a restart): no urgent first observation, only the routine pace."""
    for p in range(projects):
        add_project(w, f"p{p}", 1, interval=interval, urgency=Urgency.ROUTINE)


def test_a_window_someone_else_drained_is_spread_over_the_time_left_not_front_loaded() -> None:
    w = world()
    routine_fleet(w, 300)  # asks far more than the budget: every spendable request is wanted
    w.run_until(w.clock.now + 1800)
    # Someone else has spent 700 of the window: 300 are left with 3,000 s to go.
    w.limiter.started, w.limiter.used = w.clock.now - 600, 700
    start = w.clock.now
    reset = start + 3000
    w.requests.clear()
    w.run_until(reset - 1)
    times = [t for t, _ in w.requests]
    assert w.limiter.rejected == 0
    # What is left above the reserve, plus what the idle reserve would waste (at most half of it).
    assert 150 <= len(times) <= 250, f"what is left is used, and no more: {len(times)}"
    early = sum(1 for t in times if t < start + 800)
    assert early <= len(times) * 800 / 3000 * 1.3, f"{early} of {len(times)} requests went in the first 800 s"
    spacing = gaps([start, *times, reset])
    mean = (reset - start) / (len(times) + 1)
    assert max(spacing) <= 3 * mean, f"a gap of {max(spacing):.0f} s against a mean of {mean:.0f} s"


@pytest.mark.parametrize("burst", [False, True], ids=["others-spend-evenly", "others-spend-at-the-window-start"])
def test_an_account_shared_with_a_client_spending_70_percent_is_observed_evenly_and_never_stale(burst: bool) -> None:
    clock = Clock()
    planner: Planner[str] = Planner(clock, PlannerConfig(), rng=random.Random(3))
    w = World(clock, planner, SharedWindow(share=0.7, burst=burst))
    routine_fleet(w, 20)
    stale_after_intervals = OperatorSettings.model_fields["stale_after_intervals"].default
    w.run_until(clock.now + 3600)  # the first window teaches how much the other client spends
    start = clock.now
    end = start + 3 * 3600
    reported: list[float] = []
    while clock.now < end:
        w.run_until(min(end, clock.now + 30))
        reported.append(planner.reported_stretch("acct"))
    assert w.limiter.rejected == 0, "pacing never runs into a 429"
    times = [t for t, r in w.requests if t >= start]
    spacing = gaps(times)
    mean = sum(spacing) / len(spacing)
    assert max(spacing) <= 3 * mean, f"a gap of {max(spacing):.0f} s against a mean of {mean:.0f} s"
    assert len(times) >= 0.8 * 3 * 200, f"the share the other client leaves is used: {len(times)} in 3 h"
    stale_after = stale_after_intervals * 60 * min(reported)
    for key, seen in w.observed_at.items():
        worst = max(gaps([start, *(t for t in seen if t >= start), end]))
        assert worst < stale_after, f"{key} went {worst:.0f} s unobserved; stale after {stale_after:.0f} s"


# -- one transitional deployment among 5,000 (issue 14, item 5) ------------------------------------


def test_one_deployment_starting_among_5000_moves_no_status_and_is_paid_from_the_slack() -> None:
    w = world()
    for p in range(50):  # 50 one-page projects of 100: stretched 3.33, reported 3.5, little slack
        add_project(w, f"p{p}", 100, urgency=Urgency.ROUTINE)
    reported: set[float] = set()

    def run(seconds: float) -> None:
        end = w.clock.now + seconds
        while w.clock.now < end:
            w.run_until(min(end, w.clock.now + 10))
            reported.add(w.planner.reported_stretch("acct"))

    run(3600)
    assert reported == {3.5}
    w.observed_at.clear()
    w.projects["p0"]["d0"] = "starting"
    starting_at = w.clock.now
    run(3600)
    w.projects["p0"]["d0"] = "running"
    running_at = w.clock.now
    run(3600)
    assert reported == {3.5}, "a deployment starting changes no other status"
    starting = gaps([t for t in w.observed_at["p0/d0"] if starting_at + 600 <= t <= running_at])
    others = gaps([t for t in w.observed_at["p1/d0"] if starting_at + 600 <= t <= running_at])
    assert max(starting) <= min(others) / 2, "the starting deployment is observed faster, from the slack"
    reported_interval = 60 * 3.5
    for key, times in w.observed_at.items():
        if key == "p0/d0":
            continue
        steady = gaps([t for t in times if t >= starting_at + 600])
        assert sum(steady) / len(steady) <= reported_interval, f"{key} observed less often than reported"
        assert max(steady) <= reported_interval * 1.05, f"{key} observed later than reported and the jitter"
    assert w.limiter.rejected == 0


# -- what the observer asks instead of reaching into the budget --------------------------------------


def test_hold_cause_says_why_and_until_when_an_account_sends_nothing() -> None:
    w = world()
    add_project(w, "p", 1, account="a")
    assert w.planner.hold_cause("a") is None
    assert w.planner.hold_cause("unknown") is None
    group = GroupKey("a", "p")
    assert w.planner.record_headers(group, RateLimit(limit=1000, remaining=0, reset_seconds=600), rejected=True)
    assert w.planner.hold_cause("a") == HoldCause("rate_limited", w.clock.now + 600)
    w.clock.now += 601
    assert w.planner.hold_cause("a") is None
    request = w.planner.next_request()
    assert isinstance(request, Request)
    assert w.planner.credentials_rejected(request)
    cause = w.planner.hold_cause("a")
    assert cause is not None
    assert cause.kind == "breaker"
    assert cause.until > w.clock.now


def test_an_extra_page_is_taken_only_while_the_budget_has_room_and_is_charged() -> None:
    w = world()
    add_project(w, "p", 1)
    request = Request(GroupKey("acct", "p"), None, 1, urgent=False)
    budget = w.planner.budget("acct")
    assert budget is not None
    budget.record(w.clock.now, RateLimit(limit=1000, remaining=500, reset_seconds=1800), rejected=False)
    assert w.planner.may_spend_extra_page(request)
    assert budget.remaining == 499, "the page is charged"
    budget.record(w.clock.now, RateLimit(limit=1000, remaining=50, reset_seconds=1800), rejected=False)
    assert not w.planner.may_spend_extra_page(request), "half the reserve is left: finish later"
    stranger = Request(GroupKey("nobody", "p"), None, 1, urgent=False)
    assert not w.planner.may_spend_extra_page(stranger)


def test_a_backlog_uses_the_idle_reserve_but_new_resources_still_find_it() -> None:
    w = world()
    routine_fleet(w, 600)  # far more than the budget: a backlog all the time
    start = w.clock.now
    w.run_until(start + 3 * 3600)
    assert w.limiter.rejected == 0
    spent = spent_per_hour(w, start + 3600)
    assert 920 <= spent <= 1000, f"{spent:.0f}/h: more than the planned 900, inside the limit"
    budget = w.planner.budget("acct")
    assert budget is not None
    assert budget.urgent_tokens >= budget.reserve - 5, "the reserve's bucket stays (nearly) full"
    add_project(w, "new", 50)  # a kubectl apply of 50 new resources, in one project: one listing
    for p in range(30):
        add_project(w, f"new{p}", 1)  # and 30 alone in their projects: 30 GETs
    applied = w.clock.now
    w.run_until(applied + 5)
    assert {f"new/d{i}" for i in range(50)} <= set(w.observed_at), "observed at once"
    assert {f"new{p}/d0" for p in range(30)} <= set(w.observed_at), "observed at once"


# -- learning others' spending: only what they really spend, and only while they spend it ----------


def send_new_resources_together(w: World, count: int) -> None:
    """``count`` new resources, each alone in its project, observed at once: every request is in
    flight when the first answer comes back (the server counts each as it arrives)."""
    for p in range(count):
        add_project(w, f"p{p}", 1)
    w.clock.now += 1.0  # the batch delay
    taken: list[Request] = []
    while isinstance(request := w.planner.next_request(), Request):
        taken.append(request)
    assert len(taken) == count, "all go at once (on the reserve)"
    answers = [w.limiter.charge(w.clock.now)[1] for _ in taken]
    for request, headers in zip(taken, answers, strict=True):
        w.planner.record_headers(request.group, headers, rejected=False)
        if request.is_list:
            w.planner.listed(request.group, {"d0": "running"}, pages=1, complete=True)
        else:
            w.planner.observed(request.group, "d0", "running")
        w.planner.request_finished(request)


def reported_over(w: World, seconds: float) -> set[float]:
    reported = {w.planner.reported_stretch("acct")}
    end = w.clock.now + seconds
    while w.clock.now < end:
        w.run_until(min(end, w.clock.now + 30))
        reported.add(w.planner.reported_stretch("acct"))
    return reported


def test_requests_in_flight_when_a_window_begins_are_counted_as_ours_not_as_someone_elses() -> None:
    w = world(limit=100)
    send_new_resources_together(w, 5)  # 300 requests/h asked of 90 planned: reported 3.5
    budget = w.planner.budget("acct")
    assert budget is not None
    assert budget.others_spent == 0, "nobody else spends this account"
    assert reported_over(w, 3600) == {3.5}, "no status moves for spending nobody did"
    assert budget.others_rate == 0


def test_a_burst_seen_while_the_first_requests_are_in_flight_is_no_rate_and_moves_no_status() -> None:
    clock = Clock()
    w = World(clock, Planner(clock, PlannerConfig(), rng=random.Random(3)), SharedWindow(share=0.7, burst=True))
    # Another client spends 700 at each window's start; 20 new resources ask 1,200 requests/h of the
    # 200 left above the reserve: reported 6.0, from the first answer on, every window.
    send_new_resources_together(w, 20)
    assert reported_over(w, 3 * 3600) == {6.0}
    assert w.limiter.rejected == 0


@pytest.mark.parametrize("burst", [False, True], ids=["steady-spender-stops", "one-burst-exhausts-the-window"])
def test_once_others_stop_spending_the_operator_is_back_at_its_planned_rate_within_a_fifth_of_a_window(
    burst: bool,
) -> None:
    def shared(share: float) -> World:
        clock = Clock()
        w = World(clock, Planner(clock, PlannerConfig(), rng=random.Random(3)), SharedWindow(share=share))
        routine_fleet(w, 20)  # 1,200 requests/h asked of 900 planned
        w.run_until(clock.now + 900)
        return w

    alone = shared(0.0).planner.reported_stretch("acct")
    assert alone == 1.5
    w = shared(0.0 if burst else 0.7)
    clock, planner, limiter = w.clock, w.planner, w.limiter
    assert isinstance(limiter, SharedWindow)
    if burst:
        # A test (another client) spends everything left of the operator's first window at once.
        assert limiter.started is not None
        limiter.used = limiter.limit
        w.run_until(limiter.started + 3600 + 1)  # a 429, held until the reset
        stopped = clock.now
    else:
        w.run_until(clock.now + 2 * 3600)  # two windows shared with a client spending 70 %
        assert planner.reported_stretch("acct") > alone
        limiter.share = 0.0  # it stops; the rest of this window and every later one are the operator's
        stopped = clock.now
    bound = 3600 / 5
    w.run_until(stopped + bound)
    assert planner.reported_stretch("acct") == alone, "the status says what it said before others spent"
    w.requests.clear()
    w.run_until(clock.now + 1800)
    budget = planner.budget("acct")
    assert budget is not None
    assert budget.others_rate == 0
    assert len(w.requests) >= 0.95 * budget.planned_rate * 1800, (
        f"{len(w.requests)} requests in 30 min at the planned {budget.planned_rate * 1800:.0f}"
    )
