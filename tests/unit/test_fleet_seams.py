"""Issue 14's seams, each reproduced with the in-memory Northflank and Kubernetes and a fake clock.

Every test here failed on the poll loop that owned everything (main before the observer / work queue /
reconciler reshape); the note of that change shows each failure.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from northflank_llm_operator import redaction
from northflank_llm_operator.credentials import CredentialsError
from northflank_llm_operator.northflank import (
    InvalidResponseError,
    NorthflankClient,
    RateLimit,
    RateLimitError,
    ServerError,
)
from northflank_llm_operator.resource import ResourceKey
from northflank_llm_operator.status import Observation, compute_status
from tests.unit.payloads import full_deployment
from tests.unit.test_controller import PLENTY, Harness

BROKEN = ServerError("HTTP 502", status_code=502, rate_limit=PLENTY)


async def pump(h: Harness, seconds: float, *, step: float = 1.0) -> None:
    """Let fake time pass, running the loop without waiting for requests still in flight (a held
    request must not hold the test)."""
    end = h.clock.now + seconds
    while h.clock.now < end:
        h.clock.now = min(end, h.clock.now + step)
        for _ in range(3):
            async with asyncio.timeout(10):  # the loop itself must never block on one request
                await h.poller.step()
            for _ in range(30):
                await asyncio.sleep(0)


async def until(h: Harness, predicate: Callable[[], bool], *, within: float = 120) -> None:
    """Advance fake time a second at a time until ``predicate`` holds."""
    for _ in range(int(within)):
        if predicate():
            return
        await h.advance(1)
    raise AssertionError(f"not within {within:g} fake seconds")


def hold(h: Harness, projects: set[str]) -> asyncio.Event:
    """Requests touching ``projects`` wait (a slow Northflank answer) until the event is set."""
    release = asyncio.Event()

    def held(call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(project_id: str, *args: Any, **kwargs: Any) -> Any:
            if project_id in projects:
                await release.wait()
            return await call(project_id, *args, **kwargs)

        return wrapper

    nf = h.northflank
    nf.get_llm_model_deployment = held(nf.get_llm_model_deployment)  # type: ignore[method-assign,assignment]
    nf.list_llm_model_deployments = held(nf.list_llm_model_deployments)  # type: ignore[method-assign,assignment]
    return release


def observations_of(h: Harness, project: str) -> int:
    return sum(1 for call in h.northflank.calls if call[1] == project)


# -- 1. slow answers ------------------------------------------------------------------------------


async def test_four_slow_projects_do_not_starve_the_rest_of_the_fleet() -> None:
    h = Harness(interval=60)
    for i in range(4):
        h.northflank.put(f"slow-{i}", f"s{i}")
        h.add(f"s{i}", project=f"slow-{i}", pollIntervalSeconds=30)
    h.northflank.put("fast", "f")
    fast = h.add("f", project="fast", pollIntervalSeconds=10)
    await h.advance(2)
    release = hold(h, {f"slow-{i}" for i in range(4)})
    before = observations_of(h, "fast")
    await pump(h, 60)
    assert observations_of(h, "fast") - before >= 5, "a steady resource elsewhere is observed every interval"
    h.northflank.put("fresh", "n")
    newcomer = h.add("n", project="fresh")
    await pump(h, 3)
    assert h.status(newcomer).get("phase") == "running", "a new resource gets its first status at once"
    assert h.condition(fast, "Ready")["status"] == "True"
    release.set()
    await h.settle()


# -- 3. one hostile item --------------------------------------------------------------------------


async def test_an_unreadable_listing_falls_back_to_gets_and_fails_only_the_hostile_deployment() -> None:
    h = Harness()
    for name in ("a", "b", "c"):
        h.northflank.put("big", name, status="running")
    keys = {name: h.add(name, project="big") for name in ("a", "b", "c")}
    too_large = InvalidResponseError("the body is larger than 4194304 bytes", status_code=200, rate_limit=PLENTY)
    h.northflank.errors[("big", None)] = too_large
    h.northflank.errors[("big", "c")] = too_large  # the hostile deployment's own answer is too large too
    await h.advance(5)
    assert h.northflank.count("list") == 1
    assert h.northflank.count("get") >= 3, "the tracked deployments are observed one by one"
    for name in ("a", "b"):
        assert h.status(keys[name])["phase"] == "running"
        assert h.condition(keys[name], "Ready")["status"] == "True"
    await h.advance(130)  # the hostile deployment's failures show once they last (2 intervals)
    assert h.condition(keys["c"], "Synced")["reason"] == "InvalidResponse"
    h.northflank.put("big", "a", status="paused")
    await h.advance(65)
    assert h.status(keys["a"])["phase"] == "paused", "still observed while the listing is unreadable"


async def test_json_nested_too_deep_to_parse_is_cut_and_the_rest_is_mirrored() -> None:
    deep = "[" * 10_000 + "]" * 10_000
    body = json.dumps({"data": full_deployment(id="dep", spec={"type": "custom", "configuration": {}})})
    body = body.replace('"configuration": {}', f'"configuration": {{"nested": {deep}}}')

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body.encode(), headers={"content-type": "application/json"})

    async with NorthflankClient("https://api.example", transport=httpx.MockTransport(answer)) as client:
        result = await client.get_llm_model_deployment("proj", "dep", token="tok-123456789")
    timing = _timing(datetime(2026, 1, 1, tzinfo=UTC))
    update = compute_status({}, Observation(result.data), generation=1, timing=timing)
    synced = next(c for c in update.status["conditions"] if c["type"] == "Synced")
    assert update.status["phase"] == "running"
    assert (synced["status"], synced["reason"]) == ("True", "Observed")
    assert "Not mirrored" in synced["message"]
    assert "spec.configuration.nested" in synced["message"]


# -- 6. blips -------------------------------------------------------------------------------------


async def test_one_failed_listing_writes_nothing_and_a_lasting_failure_writes_once() -> None:
    h = Harness(interval=60)
    for i in range(20):
        h.northflank.put("p", f"d{i}")
        h.add(f"d{i}", project="p")
    await h.advance(2)
    written, events = len(h.kube.patches), len(h.kube.events)
    h.northflank.errors[("p", None)] = BROKEN
    await until(h, lambda: h.northflank.count("list") == 2)  # one routine listing fails
    assert len(h.kube.patches) == written, "a single blip of a listing rewrites no status"
    assert len(h.kube.events) == events, "and records no Event"
    await until(h, lambda: h.northflank.count("list") == 3)  # the retry fails the same way: still a blip
    assert len(h.kube.patches) == written
    # (staleAfterIntervals - 1) intervals after the last success: news, one interval before Ready goes stale.
    await until(h, lambda: len(h.kube.patches) >= written + 20, within=200)
    assert len(h.kube.patches) == written + 20
    assert h.condition(ResourceKey("ns", "d0"), "Ready")["status"] == "True", "Synced turns False before stale"
    del h.northflank.errors[("p", None)]
    await until(h, lambda: len(h.kube.patches) >= written + 40, within=120)
    await h.advance(10)
    assert len(h.kube.patches) == written + 40, "recovery writes each status once"


async def test_a_retry_after_keeps_the_message_the_same_from_one_retry_to_the_next() -> None:
    h = Harness(interval=120)  # stale only after 360 s: every write below is about the 503s
    h.northflank.put("p", "d")
    key = h.add("d", project="p")
    await h.advance(2)
    asked = ServerError("HTTP 503", status_code=503, rate_limit=RateLimit(1000, 900, 1200, retry_after_seconds=30))
    h.northflank.errors[("p", "d")] = asked
    await until(h, lambda: h.condition(key, "Synced").get("reason") == "ServerError", within=400)
    written = len(h.kube.patches)
    gets = h.northflank.count("get")
    await h.advance(90)
    assert h.northflank.count("get") >= gets + 2
    assert len(h.kube.patches) == written, "a retry that fails the same way rewrites nothing"


# -- 7. Secret reads ------------------------------------------------------------------------------


async def test_a_hung_secret_read_does_not_hold_other_resources() -> None:
    h = Harness(interval=10)
    hung = asyncio.Event()
    read = h.kube.read_secret_value

    async def slow_read(namespace: str, name: str, key: str) -> str:
        if name == "hung":
            await hung.wait()
        return await read(namespace, name, key)

    h.kube.read_secret_value = slow_read  # type: ignore[method-assign]
    h.kube.secrets[("ns", "hung", "token")] = "hung-token-123"
    h.northflank.put("p1", "s")
    h.northflank.put("p2", "d")
    h.add("s", project="p1", credentialsSecretRef={"name": "hung", "key": "token"})
    plain = h.add("d", project="p2")
    await pump(h, 40)
    assert h.status(plain).get("phase") == "running"
    assert observations_of(h, "p2") >= 3
    hung.set()
    await h.settle()


# -- 8. seams between answers and resources ---------------------------------------------------------


async def test_a_resource_deleted_and_created_again_in_one_batch_is_new() -> None:
    h = Harness(interval=60)
    h.northflank.put("p", "d")
    key = h.add("d", project="p")
    await h.advance(2)
    old = h.kube.objects[key]
    again = json.loads(json.dumps(old))
    again["metadata"].update(uid="uid-again", resourceVersion="9000")
    again["status"] = {}
    h.registry.observe("DELETED", old)
    h.kube.objects[key] = again
    h.registry.observe("ADDED", again)
    await h.advance(3)
    assert h.status(key).get("phase") == "running", "the new object is observed at once, not in an interval"


async def test_a_transient_secret_read_failure_at_start_up_is_not_stale_at_once() -> None:
    h = Harness(default_token=None, interval=60)

    async def failing(namespace: str, name: str, key: str) -> str:
        raise CredentialsError("CredentialsUnavailable", "the API server did not answer", transient=True)

    h.kube.read_secret_value = failing  # type: ignore[method-assign]
    yesterday = datetime.fromtimestamp(h.clock.now, UTC) - timedelta(days=1)
    observed = compute_status({}, Observation(_deployment()), generation=1,
                              timing=_timing(yesterday)).status  # fmt: skip
    key = h.add("d", project="p", status=observed, credentialsSecretRef={"name": "nf", "key": "token"})
    await h.advance(3)
    ready = h.condition(key, "Ready")
    assert (ready["status"], ready.get("reason")) == ("True", "Running"), "the operator's restart is not staleness"


async def test_an_older_answer_never_replaces_a_newer_one() -> None:
    h = Harness()
    h.northflank.put("p", "d", status="starting")
    key = h.add("d", project="p")
    await h.advance(2)
    observer = h.poller.observer
    group = h.poller.planner.group(next(iter(h.poller.planner._groups)))
    assert group is not None
    running = Observation(_deployment(status="running"))
    starting = Observation(_deployment(status="starting"))
    observer._store(group.key, ["d"], running, sent=100)  # a listing sent after the GET lands first
    observer._store(group.key, ["d"], starting, sent=99)  # then the slow GET sent before it
    await h.settle()
    assert h.status(key)["phase"] == "running"


async def test_a_failed_status_write_is_retried_with_backoff() -> None:
    h = Harness(interval=60)
    h.northflank.put("p", "d")
    key = h.add("d", project="p")
    patch = h.kube.patch_status
    failures = [RuntimeError("HTTP 500 from the API server")] * 2

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await patch(*args, **kwargs)

    h.kube.patch_status = flaky  # type: ignore[method-assign]
    await h.advance(10)
    assert not failures
    assert h.status(key).get("phase") == "running", "written on a retry, not at the next observation"


async def test_a_failed_staleness_write_is_retried() -> None:
    h = Harness(interval=10)
    h.northflank.put("p", "d")
    key = h.add("d", project="p")
    await h.advance(2)
    spent = RateLimit(limit=1000, remaining=0, reset_seconds=3600)
    h.northflank.errors[("p", "d")] = RateLimitError("HTTP 429", status_code=429, rate_limit=spent)  # a long hold
    patch = h.kube.patch_status
    broken = True

    async def failing(*args: Any, **kwargs: Any) -> Any:
        if broken:
            raise RuntimeError("HTTP 500 from the API server")
        return await patch(*args, **kwargs)

    h.kube.patch_status = failing  # type: ignore[method-assign]
    await h.advance(45)  # stale after 30 s: the write fails
    broken = False
    await h.advance(40)  # the next try of the backoff (0.5 s doubling, here up to 32 s)
    assert h.condition(key, "Ready")["reason"] == "StatusStale"


async def test_nothing_is_kept_for_a_secret_no_resource_uses() -> None:
    h = Harness(default_token=None, interval=60)
    h.kube.secrets[("ns", "nf", "token")] = "short-lived-token-123"
    h.northflank.put("p", "d")
    key = h.add("d", project="p", credentialsSecretRef={"name": "nf", "key": "token"})
    await h.advance(2)
    assert "short-lived-token-123" not in redaction.redact("short-lived-token-123")
    h.registry.observe("DELETED", h.kube.objects.pop(key))
    await h.advance(65)
    assert not h.credentials._cache, "the Secret's value is dropped"
    assert redaction.redact("short-lived-token-123") == "short-lived-token-123", "and its token forgotten"


def _deployment(**fields: Any) -> Any:
    from northflank_llm_operator.northflank import LLMModelDeployment

    return LLMModelDeployment.model_validate(full_deployment(id="d", **fields))


def _timing(now: datetime) -> Any:
    from northflank_llm_operator.status import Timing

    return Timing(now=now, heartbeat=timedelta(0), stale_after=timedelta(minutes=3), requested_interval=60,
                  effective_interval=60)  # fmt: skip
