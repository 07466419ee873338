"""Condition and Event messages that stay the same while nothing changes.

A message that names a moment ("polling resumes at 12:03:07Z") or a countdown changes on every retry,
so every covered status is rewritten and every Event is a new one (the correlator aggregates only
identical messages). These builders say when polling resumes without a clock: by what it waits for,
or by a duration rounded up to a coarse step, so that jitter and a shrinking wait give the same text.
Pure functions, no clock.
"""

from __future__ import annotations

import math
import re

#: Durations are rounded up to one of these steps (seconds); beyond the last, to whole hours.
_STEPS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1200, 1800, 2700, 3600)
_HOUR = 3600

# What makes upstream text differ from one identical failure to the next: timestamps and request ids.
_MOVING = re.compile(
    r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"  # RFC 3339 / ISO 8601
    r"|\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT"  # HTTP date
    r"|\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"  # UUID
    r"|\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{16,}\b"  # long hex ids (trace ids, CDN ray ids)
)


def coarse_duration(seconds: float) -> str:
    """``seconds`` rounded up to a coarse step, as text: "30s", "90s", "5 min", "1 h", "2 h".

    Rounded up, never down: the wait it names is at least the real one."""
    if not math.isfinite(seconds) or seconds <= 0:
        return "0s"
    step = next((s for s in _STEPS if s >= seconds - 1e-9), None)
    if step is None:
        return f"{math.ceil(seconds / _HOUR - 1e-9)} h"
    if step < 120:
        return f"{step}s"
    return "1 h" if step == _HOUR else f"{step // 60} min"


def rate_limited_message(wait_seconds: float | None = None) -> str:
    """Synced=False (RateLimited) after a 429, with the hold's length (capped at the documented hour)
    rounded up to a coarse step: resources refused moments apart in one window read the same."""
    within = f", within {coarse_duration(wait_seconds)}" if wait_seconds is not None else ""
    return f"Northflank's rate limit for these credentials is spent; polling resumes when its window resets{within}."


def rate_limit_hold_cause() -> str:
    """Appended to the StatusStale message while a 429 holds these credentials."""
    return "Northflank's rate limit for these credentials is spent until its window resets."


def retry_after_message(message: str, retry_after_seconds: float) -> str:
    """A 502/503 with Retry-After: the failure's own message and the wait Northflank asked for."""
    return f"{message} Northflank asked to retry after {coarse_duration(retry_after_seconds)}; polling waits as told."


def credentials_probe_message(message: str, probe_interval_seconds: float) -> str:
    """A 401 holds every resource of these credentials; one request probes them per interval."""
    return (
        f"{message} Every resource using these credentials waits; one request probes them about every "
        f"{coarse_duration(probe_interval_seconds)}."
    )


def steady(text: str) -> str:
    """Upstream text (an error body's snippet) with its timestamps and request ids masked, so that the
    same failure gives the same message on every retry."""
    return _MOVING.sub("…", text)
