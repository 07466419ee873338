"""Messages without moving parts (messages.py), and the storm they prevent (issue 14, item 6)."""

from __future__ import annotations

import pytest

from northflank_llm_operator.messages import (
    coarse_duration,
    credentials_probe_message,
    rate_limit_hold_cause,
    rate_limited_message,
    retry_after_message,
    steady,
)
from northflank_llm_operator.northflank import RateLimit, ServerError
from tests.unit.test_controller import Harness


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.2, "1s"),
        (1, "1s"),
        (29.2, "30s"),
        (30, "30s"),
        (30.4, "45s"),
        (61, "90s"),
        (119, "2 min"),
        (170, "3 min"),
        (3599.5, "1 h"),
        (3600, "1 h"),
        (3601, "2 h"),
        (0, "0s"),
        (-5, "0s"),
        (float("inf"), "0s"),
    ],
)
def test_durations_are_rounded_up_to_a_coarse_step(seconds: float, text: str) -> None:
    assert coarse_duration(seconds) == text


def test_a_jittered_or_shrinking_wait_gives_the_same_text() -> None:
    # A Retry-After given as an HTTP date arrives as slightly different seconds on every retry.
    assert len({retry_after_message("HTTP 503.", 30 - jitter / 10) for jitter in range(50)}) == 1
    assert len({credentials_probe_message("HTTP 401.", 60 * (1 + j / 100)) for j in range(-5, 6)}) == 2
    assert "every 90s" in credentials_probe_message("HTTP 401.", 63)


def test_a_rate_limit_hold_is_said_coarsely_or_not_at_all() -> None:
    assert rate_limited_message().endswith("polling resumes when its window resets.")
    assert rate_limited_message(2_950).endswith("when its window resets, within 1 h.")
    assert rate_limited_message(2_950) == rate_limited_message(3_600)
    assert rate_limited_message(40).endswith("within 45s.")


def test_no_message_names_a_moment() -> None:
    for message in (
        rate_limited_message(),
        rate_limit_hold_cause(),
        retry_after_message("Northflank answered with HTTP 503.", 30),
        credentials_probe_message("Northflank answered with HTTP 401.", 60),
    ):
        assert steady(message) == message
        assert ":" not in message.replace("HTTP 503", "")


@pytest.mark.parametrize(
    "upstream",
    [
        "<html>502 Bad Gateway at 2026-12-06T21:59:50.123Z</html>",
        "<html>502 Bad Gateway at 2026-12-06 21:59:50+01:00</html>",
        "<html>502 Bad Gateway at Sun, 06 Dec 2026 21:59:50 GMT</html>",
        "<html>502 Bad Gateway, request 3f2b9c1e-8d4a-4b7e-9f00-1a2b3c4d5e6f</html>",
        "<html>502 Bad Gateway, Ray ID: 7f3a9b2c1d0e4f5a</html>",
    ],
)
def test_steady_masks_timestamps_and_request_ids(upstream: str) -> None:
    assert steady(upstream) in ("<html>502 Bad Gateway at …</html>", "<html>502 Bad Gateway, request …</html>",
                                "<html>502 Bad Gateway, Ray ID: …</html>")  # fmt: skip


def test_steady_keeps_ordinary_text_and_numbers() -> None:
    text = "Northflank answered /v1/projects/p/llm-model-deployments with HTTP 503: upstream busy (retry 3 of 5)"
    assert steady(text) == text
    assert steady("deployment deadbeefdeadbeef1") == "deployment …"
    assert steady("counter 12345678901234567890") == "counter 12345678901234567890"


async def test_retries_of_a_503_with_retry_after_do_not_rewrite_the_status() -> None:
    h = Harness(interval=60)
    h.northflank.put("proj", "dep")
    key = h.add("dep")
    await h.advance(2)
    busy = RateLimit(limit=1000, remaining=900, reset_seconds=3000, retry_after_seconds=30)
    h.northflank.errors[("proj", "dep")] = ServerError("HTTP 503", status_code=503, rate_limit=busy)
    await h.advance(160, step=1)  # the first failure after ~60 s, then retries 30 s apart
    assert sum(1 for call in h.northflank.calls if call[2] == "dep") >= 3
    writes = [patch for k, patch in h.kube.patches if k == key]
    synced = h.condition(key, "Synced")
    assert synced["reason"] == "ServerError"
    messages = [c["message"] for patch in writes for c in patch.get("conditions", []) if c["type"] == "Synced"]
    assert len(writes) == 2, f"{len(writes)} status writes for one success and one unchanged failure: {messages}"
