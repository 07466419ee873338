"""Wait for a condition with a deadline instead of sleeping and hoping (one helper for every test)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T | bool | None], *, timeout: float, message: str, interval: float = 0.1) -> T:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout`` seconds.

    Every 0.1 s by default: a predicate is an HTTP round trip (API server, simulator log, metrics), and
    several workers wait at once on 2 cores; a test that must see a short-lived state passes ``interval``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
        except Exception as exc:  # a transient kubectl/HTTP failure while waiting is not the answer
            last_error = exc
            value = None
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {message}{detail}")
        time.sleep(interval)
