"""Northflank's documented rate-limit headers, parsed once per response."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from .contract import DOCUMENTED_HOUR_SECONDS

#: Northflank's documented window is one hour; no announced wait is trusted beyond it.
MAX_WAIT_SECONDS = DOCUMENTED_HOUR_SECONDS


@dataclass(frozen=True)
class RateLimit:
    """``x-ratelimit-limit`` / ``-remaining`` / ``-reset`` (seconds until the window resets).

    Each field is None when the header was absent or unreadable: the headers are documented but a
    proxy error page will not carry them, and guessing would be worse than not knowing.
    """

    limit: int | None = None
    remaining: int | None = None
    reset_seconds: float | None = None
    retry_after_seconds: float | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimit:
        return cls(
            limit=_int(headers.get("x-ratelimit-limit")),
            remaining=_int(headers.get("x-ratelimit-remaining")),
            reset_seconds=_seconds(headers.get("x-ratelimit-reset")),
            retry_after_seconds=_seconds(headers.get("retry-after")),
        )

    @property
    def exhausted(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def wait_seconds(self) -> float | None:
        """How long to hold off before the next request, if the headers say so."""
        candidates = [s for s in (self.retry_after_seconds, self.reset_seconds) if s is not None]
        return max(candidates) if candidates else None


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        parsed = int(value.strip())
    except ValueError:
        return None
    return parsed if parsed >= 0 else None


def _seconds(value: str | None) -> float | None:
    # Only delta-seconds: Northflank documents x-ratelimit-reset as seconds, and an HTTP-date
    # Retry-After from some proxy is rare enough that ignoring it beats mis-parsing it.
    if value is None:
        return None
    try:
        parsed = float(value.strip())
    except ValueError:
        return None
    if math.isnan(parsed) or parsed < 0:
        return None
    # 1e9 or inf would hold a credential for decades: nothing waits longer than the documented window.
    return min(parsed, MAX_WAIT_SECONDS)
