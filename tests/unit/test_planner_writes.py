"""Writes (management) are admitted by the planner: from the account's reserve, at most one per
deployment per effective interval, never while the account is held. Fake clock, no I/O."""

from __future__ import annotations

from northflank_llm_operator.northflank import RateLimit
from northflank_llm_operator.planner import GroupKey, Planner, PlannerConfig, Urgency
from tests.unit.test_planner import Clock

GROUP = GroupKey("account", "project")


def planner_with(clock: Clock, *, interval: float = 60.0, reserve_fraction: float = 0.1) -> Planner[str]:
    planner: Planner[str] = Planner(clock, PlannerConfig(reserve_fraction=reserve_fraction))
    planner.track("a", GROUP, "dep-a", interval, urgency=Urgency.ROUTINE)
    planner.track("b", GROUP, "dep-b", interval, urgency=Urgency.ROUTINE)
    return planner


def test_one_write_per_deployment_per_interval() -> None:
    clock = Clock()
    planner = planner_with(clock)
    assert planner.admit_write(GROUP, "dep-a") is None
    assert planner.admit_write(GROUP, "dep-a") == 60.0
    assert planner.admit_write(GROUP, "dep-b") is None  # another deployment is not held back
    clock.now += 59.0
    assert planner.admit_write(GROUP, "dep-a") == 1.0
    clock.now += 1.0
    assert planner.admit_write(GROUP, "dep-a") is None


def test_writes_spend_the_reserve_and_wait_when_it_is_spent() -> None:
    clock = Clock()
    planner = planner_with(clock, reserve_fraction=0.002)  # a reserve of 2 requests of 1000
    budget = planner.budget("account")
    assert budget is not None
    assert budget.reserve == 2
    assert planner.admit_write(GROUP, None) is None  # a permissions read: no per-deployment spacing
    assert planner.admit_write(GROUP, "dep-a") is None
    wait = planner.admit_write(GROUP, "dep-b")
    assert wait is not None
    assert wait >= 1.0
    assert budget.urgent_tokens < 1
    clock.now += wait
    assert planner.admit_write(GROUP, "dep-b") is None


def test_no_write_while_the_account_is_held_by_a_429() -> None:
    clock = Clock()
    planner = planner_with(clock)
    planner.record_headers(GROUP, RateLimit(limit=1000, remaining=0, reset_seconds=120), rejected=True)
    wait = planner.admit_write(GROUP, "dep-a")
    assert wait is not None
    assert 119 <= wait <= 120
    clock.now += 121
    assert planner.admit_write(GROUP, "dep-a") is None


def test_the_spacing_follows_the_stretched_interval_and_is_forgotten_with_the_group() -> None:
    clock = Clock()
    planner = planner_with(clock, interval=30.0)
    assert planner.admit_write(GROUP, "dep-a") is None
    assert planner.admit_write(GROUP, "dep-a") == 30.0 * planner.stretch("account")
    planner.untrack("a")
    planner.untrack("b")
    assert planner.admit_write(GROUP, "dep-a") is not None  # untracked: nothing is written for it
    planner.track("a", GROUP, "dep-a", 30.0, urgency=Urgency.ROUTINE)
    assert planner.admit_write(GROUP, "dep-a") is None
