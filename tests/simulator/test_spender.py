"""Someone else spending a token's budget (``Spender``), on a fake clock."""

from __future__ import annotations

from northflank_api_simulator.models import RateLimitConfig
from northflank_api_simulator.state import RateLimiter, Spender
from tests.simulator.test_rate_limiter import FakeClock


def spender(fraction: float = 0.7, limit: int = 1000, window: float = 3600.0) -> tuple[Spender, RateLimiter, FakeClock]:
    clock = FakeClock()
    limiter = RateLimiter(RateLimitConfig(limit=limit, window_seconds=window), clock)
    return Spender(limiter, "token", fraction, clock), limiter, clock


def test_spending_is_spread_evenly_over_each_window() -> None:
    spending, limiter, clock = spender(0.7)
    per_second = []
    for _ in range(2 * 3600):
        per_second.append(spending.tick())
        clock.now += 1
    first, second = sum(per_second[:3600]), sum(per_second[3600:])
    assert (first, second) == (700, 700)
    assert max(per_second) == 1, "never more than one request in a second at 700 an hour"
    assert sum(per_second[:1800]) == 350
    # 30 % of each window is left for the operator.
    assert limiter.charge("token").remaining == 1000 - spending.spent % 700 - 1


def test_a_late_tick_catches_up() -> None:
    spending, _, clock = spender(0.7)
    assert spending.tick() == 1  # its first request starts the window
    clock.now += 360
    assert spending.tick() == 69  # 70 due by now, one of them spent already
    clock.now += 0.5
    assert spending.tick() == 1  # the 71st request's share of time has begun
    assert spending.tick() == 0


def test_a_window_someone_else_started_is_spent_from_then_on_without_a_burst() -> None:
    spending, limiter, clock = spender(0.5, limit=100, window=100)
    limiter.charge("token")  # the operator's first request starts the window
    clock.now += 50
    assert spending.tick() == 0
    clock.now += 20
    assert spending.tick() == 10
    assert limiter.charge("token").remaining == 100 - 2 - 10


def test_it_never_spends_beyond_the_limit_and_does_not_retry_refused_requests() -> None:
    spending, limiter, clock = spender(0.5, limit=10, window=100)
    assert spending.tick() == 1
    assert limiter.spend("token", 100) == (9, limiter.charge("token"))
    clock.now += 99
    assert spending.tick() == 0
    clock.now += 1  # a new window: the spender starts it
    assert spending.tick() == 1
    assert spending.spent == 2


def test_spend_counts_against_the_window_like_requests() -> None:
    _, limiter, clock = spender(limit=10, window=100)
    spent, status = limiter.spend("token", 4)
    assert (spent, status.remaining, status.reset_seconds, status.allowed) == (4, 6, 100, True)
    assert limiter.window_start("token") == clock.now
    clock.now += 100
    assert limiter.window_start("token") is None
