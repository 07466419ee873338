"""Page selection and the opaque cursor."""

from __future__ import annotations

import pytest

from northflank_api_simulator.pagination import (
    InvalidCursorError,
    decode_cursor,
    encode_cursor,
    select_page,
)

IDS = sorted(f"model-{number:03d}" for number in range(230))


def walk(ids: list[str], per_page: int) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = select_page(ids, per_page=per_page, page=1, cursor=cursor)
        pages.append(ids[page.start : page.stop])
        if not page.has_next_page:
            return pages
        cursor = encode_cursor(ids[page.stop - 1])


def test_cursor_walk_returns_every_id_once() -> None:
    pages = walk(IDS, per_page=100)
    assert [len(page) for page in pages] == [100, 100, 30]
    assert [item for page in pages for item in page] == IDS


def test_page_numbers() -> None:
    third = select_page(IDS, per_page=100, page=3, cursor=None)
    assert (third.start, third.stop, third.has_next_page) == (200, 230, False)
    beyond = select_page(IDS, per_page=100, page=4, cursor=None)
    assert (beyond.stop - beyond.start, beyond.has_next_page) == (0, False)


def test_cursor_wins_over_page() -> None:
    page = select_page(IDS, per_page=10, page=5, cursor=encode_cursor(IDS[9]))
    assert page.start == 10


def test_cursor_survives_deletion_of_the_last_seen_item() -> None:
    cursor = encode_cursor(IDS[99])
    remaining = [item for item in IDS if item != IDS[99]]
    page = select_page(remaining, per_page=100, page=1, cursor=cursor)
    assert remaining[page.start] == IDS[100]


def test_cursor_round_trip_is_url_safe() -> None:
    cursor = encode_cursor("a/b+c?")
    assert cursor.replace("-", "").replace("_", "").isalnum()
    assert decode_cursor(cursor) == "a/b+c?"


@pytest.mark.parametrize("cursor", ["", "!!!", "bm90IGpzb24", encode_cursor("x").upper(), "WzFd"])
def test_garbage_cursor_is_rejected(cursor: str) -> None:
    with pytest.raises(InvalidCursorError):
        decode_cursor(cursor)
