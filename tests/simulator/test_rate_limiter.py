"""The per-token fixed window, driven by a fake clock."""

from __future__ import annotations

import functools

from northflank_api_simulator.models import RateLimitConfig
from northflank_api_simulator.state import RateLimiter


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter(limit: int = 3, window: float = 10.0) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    return RateLimiter(RateLimitConfig(limit=limit, window_seconds=window), clock), clock


def test_remaining_counts_down_then_refuses_without_spending() -> None:
    rate_limiter, _ = limiter(limit=3)
    statuses = [rate_limiter.charge("token") for _ in range(5)]
    assert [status.allowed for status in statuses] == [True, True, True, False, False]
    assert [status.remaining for status in statuses] == [2, 1, 0, 0, 0]
    assert {status.limit for status in statuses} == {3}


def test_window_starts_at_first_request_and_reset_rounds_up() -> None:
    rate_limiter, clock = limiter(window=10.0)
    clock.now += 500  # idle time before the first request must not shorten the window
    assert rate_limiter.charge("token").reset_seconds == 10
    clock.now += 2.5
    assert rate_limiter.charge("token").reset_seconds == 8
    clock.now += 7.4
    assert rate_limiter.charge("token").reset_seconds == 1


def test_full_budget_after_the_window() -> None:
    rate_limiter, clock = limiter(limit=2, window=10.0)
    for _ in range(3):
        rate_limiter.charge("token")
    clock.now += 9.99
    assert not rate_limiter.charge("token").allowed
    clock.now += 0.01
    status = rate_limiter.charge("token")
    assert (status.allowed, status.remaining, status.reset_seconds) == (True, 1, 10)


def test_tokens_have_separate_budgets() -> None:
    rate_limiter, _ = limiter(limit=1)
    assert rate_limiter.charge("a").allowed
    assert not rate_limiter.charge("a").allowed
    assert rate_limiter.charge("b").allowed


def test_configure_and_reset_restore_the_budget() -> None:
    rate_limiter, _ = limiter(limit=1)
    rate_limiter.charge("a")
    rate_limiter.configure(RateLimitConfig(limit=5, window_seconds=60))
    assert rate_limiter.charge("a").remaining == 4
    rate_limiter.reset()
    assert rate_limiter.charge("a").remaining == 4


def test_headers_use_northflank_names() -> None:
    rate_limiter, _ = limiter(limit=3, window=10.0)
    assert rate_limiter.charge("a").headers() == {
        "x-ratelimit-limit": "3",
        "x-ratelimit-remaining": "2",
        "x-ratelimit-reset": "10",
    }


def test_first_request_reports_the_whole_window_even_at_large_clock_readings() -> None:
    # 1e6 + 3600 - 1e6 is not exactly 3600 in floating point at some magnitudes; the header must be.
    for reading in (2094369.7126947192, 31710.01914415661, 523725.96064729214, 0.3):
        limiter = RateLimiter(RateLimitConfig(limit=1000, window_seconds=3600), clock=functools.partial(float, reading))
        assert limiter.charge("token").reset_seconds == 3600
