"""Northflank-style pagination: ``per_page`` (default 50, max 100), 1-based ``page``, opaque ``cursor``.

The cursor names the last id of the previous page rather than an offset, so a walk over a project
whose deployments change meanwhile neither repeats nor skips the ones that stay.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
from collections.abc import Sequence
from dataclasses import dataclass

PER_PAGE_DEFAULT = 50
PER_PAGE_MAX = 100


class InvalidCursorError(ValueError):
    pass


def encode_cursor(last_id: str) -> str:
    raw = json.dumps({"after": last_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        after = json.loads(raw)["after"]
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise InvalidCursorError(cursor) from error
    if not isinstance(after, str):
        raise InvalidCursorError(cursor)
    return after


@dataclass(frozen=True)
class Page:
    start: int
    stop: int
    has_next_page: bool


def select_page(sorted_ids: Sequence[str], *, per_page: int, page: int, cursor: str | None) -> Page:
    """Which slice of ``sorted_ids`` to return; a cursor, when given, wins over ``page``."""
    if cursor is not None:
        start = bisect.bisect_right(sorted_ids, decode_cursor(cursor))
    else:
        start = min((page - 1) * per_page, len(sorted_ids))
    stop = min(start + per_page, len(sorted_ids))
    return Page(start=start, stop=stop, has_next_page=stop < len(sorted_ids))
