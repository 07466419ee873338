"""The metrics module: request counters fed by the API client, rate-limit gauges, per-resource series
read at scrape time (gone with the resource), and no secret in any label."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from northflank_llm_operator.credentials import Credential
from northflank_llm_operator.metrics import (
    SNAPSHOT_SLICE,
    MetricsServer,
    OperatorMetrics,
    ResourceSample,
    account_label,
    parse_bind_address,
)
from northflank_llm_operator.northflank import APIConnectionError, NorthflankClient, RateLimit
from northflank_llm_operator.resource import ResourceKey

EMPTY_PAGE = {"data": {"llmModelDeployments": []}, "pagination": {"hasNextPage": False, "count": 0}}
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def build(clock: Clock | None = None, *, per_resource_series: bool = True) -> OperatorMetrics:
    return OperatorMetrics(
        leader_election_id="nf-llm",
        clock=clock or Clock(),
        wall_clock=lambda: NOW,
        process_metrics=False,
        per_resource_series=per_resource_series,
    )


async def test_the_client_reports_every_request_by_endpoint_and_code() -> None:
    metrics = build()
    answers = iter([200, 429, 500])

    def handler(request: httpx.Request) -> httpx.Response:
        if "fail" in request.url.path:
            raise httpx.ConnectError("refused")
        code = next(answers)
        body = EMPTY_PAGE if code == 200 else {"error": {"message": "no"}}
        return httpx.Response(code, json=body)

    async with NorthflankClient("http://nf.test", transport=httpx.MockTransport(handler), observer=metrics) as client:
        await client.list_llm_model_deployments("proj-xq7", token="t")
        for _ in range(2):
            with pytest.raises(Exception, match="HTTP"):
                await client.get_llm_model_deployment("proj-xq7", "dep-zr9", token="t")
        with pytest.raises(APIConnectionError):
            await client.get_llm_model_deployment("fail", "dep", token="t")
    value = metrics.registry.get_sample_value
    assert value("northflank_api_requests_total", {"endpoint": "list", "code": "200"}) == 1
    assert value("northflank_api_requests_total", {"endpoint": "get", "code": "429"}) == 1
    assert value("northflank_api_requests_total", {"endpoint": "get", "code": "500"}) == 1
    assert value("northflank_api_requests_total", {"endpoint": "get", "code": "error"}) == 1
    assert value("northflank_api_request_duration_seconds_count", {"endpoint": "get"}) == 3
    # No URL, id or token anywhere in the exposition.
    text = metrics.render().decode()
    assert "xq7" not in text
    assert "zr9" not in text


def test_rate_limit_gauges_follow_the_headers_and_leave_with_the_account() -> None:
    clock = Clock()
    metrics = build(clock)
    token = "nf-secret-token-value"
    identity = Credential.of(token).identity
    accounts = {identity}
    metrics.observe_resources(NoResources(), accounts_in_use=lambda: accounts)
    metrics.rate_limit_seen(identity, RateLimit(limit=1000, remaining=900, reset_seconds=3000))
    # A late answer from the same window does not raise what is left; a new window does.
    metrics.rate_limit_seen(identity, RateLimit(limit=1000, remaining=905, reset_seconds=3001))
    label = {"account": account_label(identity)}
    clock.now += 10
    value = metrics.registry.get_sample_value
    assert value("northflank_ratelimit_limit", label) == 1000
    assert value("northflank_ratelimit_remaining", label) == 900
    assert value("northflank_ratelimit_reset_seconds", label) == pytest.approx(2991)
    metrics.rate_limit_seen(identity, RateLimit(limit=1000, remaining=999, reset_seconds=3600))
    assert value("northflank_ratelimit_remaining", label) == 999
    # The label is no part of the token nor of the credential's internal digest.
    text = metrics.render().decode()
    assert token not in text
    assert identity not in text
    assert token[:6] not in text
    accounts.clear()
    assert value("northflank_ratelimit_remaining", label) is None


def scraped(metrics: OperatorMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a render, parsed back as Prometheus would read it."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
    }


class NoResources:
    def resource_samples(self) -> Iterable[ResourceSample]:
        return []


class Resources:
    def __init__(self, samples: list[ResourceSample]) -> None:
        self.samples = samples

    def resource_samples(self) -> Iterable[ResourceSample]:
        return list(self.samples)


def test_per_resource_series_come_from_the_current_resources_and_go_with_them() -> None:
    metrics = build()
    running = {
        "phase": "running",
        "lastSyncTime": "2026-12-03T11:59:00Z",
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "True"}],
    }
    stale = {"phase": "running", "conditions": [{"type": "Ready", "status": "Unknown", "reason": "StatusStale"}]}
    source = Resources([
        ResourceSample(ResourceKey("ns", "a"), running, NOW - timedelta(seconds=30), 60.0),
        ResourceSample(ResourceKey("ns", "b"), stale, None, 120.0),
        ResourceSample(ResourceKey("other", "c"), {}, None, None),
    ])  # fmt: skip
    metrics.observe_resources(source, accounts_in_use=list)

    def value(name: str, labels: dict[str, str] | None = None) -> float | None:
        return samples.get((name, frozenset((labels or {}).items())))

    samples = scraped(metrics)
    a, b = {"namespace": "ns", "name": "a"}, {"namespace": "ns", "name": "b"}
    assert value("llmmodeldeployment_status_condition", {**a, "condition": "Ready", "status": "True"}) == 1
    assert value("llmmodeldeployment_status_condition", {**a, "condition": "Ready", "status": "False"}) == 0
    assert value("llmmodeldeployment_status_condition", {**b, "condition": "Ready", "status": "Unknown"}) == 1
    assert value("llmmodeldeployment_phase", {**a, "phase": "running"}) == 1
    assert value("llmmodeldeployment_phase", {"namespace": "other", "name": "c", "phase": "unknown"}) == 1
    assert value("llmmodeldeployment_observation_age_seconds", a) == 30
    assert value("llmmodeldeployment_observation_age_seconds", b) is None
    assert value("llmmodeldeployment_poll_interval_seconds", b) == 120
    assert value("llmmodeldeployment_resources", {"phase": "running"}) == 2
    assert value("llmmodeldeployment_resources", {"phase": "unknown"}) == 1
    by_condition = "llmmodeldeployment_resources_by_condition"
    assert value(by_condition, {"condition": "Ready", "status": "Unknown", "reason": "StatusStale"}) == 1
    assert value(by_condition, {"condition": "Ready", "status": "True", "reason": ""}) == 1
    source.samples.pop(0)  # deleted
    samples = scraped(metrics)
    assert value("llmmodeldeployment_phase", {**a, "phase": "running"}) is None
    assert value("llmmodeldeployment_status_condition", {**a, "condition": "Ready", "status": "True"}) is None
    assert value("llmmodeldeployment_resources", {"phase": "running"}) == 1


def test_label_values_from_the_status_are_escaped() -> None:
    metrics = build()
    odd = 'Weird"type\\with\nlines'
    status = {"phase": 'run"ning', "conditions": [{"type": odd, "status": "True"}]}
    metrics.observe_resources(
        Resources([ResourceSample(ResourceKey("ns", "a"), status, NOW, 60.0)]), accounts_in_use=list
    )
    samples = scraped(metrics)
    labels = {"namespace": "ns", "name": "a", "condition": odd, "status": "True"}
    assert samples[("llmmodeldeployment_status_condition", frozenset(labels.items()))] == 1
    assert (
        samples[("llmmodeldeployment_phase", frozenset({"namespace": "ns", "name": "a", "phase": 'run"ning'}.items()))]
        == 1
    )


def test_per_resource_series_can_be_turned_off_and_the_counts_stay() -> None:
    metrics = build(per_resource_series=False)
    ready = {"phase": "running", "conditions": [{"type": "Ready", "status": "True", "reason": "Running"}]}
    stale = {"phase": "running", "conditions": [{"type": "Ready", "status": "Unknown", "reason": "StatusStale"}]}
    metrics.observe_resources(Resources([
        ResourceSample(ResourceKey("ns", "a"), ready, NOW, 60.0),
        ResourceSample(ResourceKey("ns", "b"), stale, NOW, 60.0),
        ResourceSample(ResourceKey("ns", "c"), stale, NOW, 60.0),
    ]), accounts_in_use=list)  # fmt: skip
    text = metrics.render().decode()
    for per_resource in ("status_condition", "llmmodeldeployment_phase", "observation_age", "poll_interval_seconds"):
        assert per_resource not in text
    assert 'name="a"' not in text
    value = metrics.registry.get_sample_value
    assert value("llmmodeldeployment_resources", {"phase": "running"}) == 3
    by_condition = "llmmodeldeployment_resources_by_condition"
    assert value(by_condition, {"condition": "Ready", "status": "Unknown", "reason": "StatusStale"}) == 2
    assert value(by_condition, {"condition": "Ready", "status": "True", "reason": "Running"}) == 1


class _SlowCollector(Collector):
    """Blocks inside the render until the test releases it from the event loop."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.released_in_time: list[bool] = []

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily("slow_collector_done", "rendered")]

    def collect(self) -> Iterator[Metric]:
        self.entered.set()
        self.released_in_time.append(self.release.wait(timeout=5))
        yield GaugeMetricFamily("slow_collector_done", "rendered", value=1)


async def test_a_scrape_is_rendered_off_the_event_loop_from_a_snapshot_taken_on_it() -> None:
    metrics = build()
    running = {"phase": "running", "conditions": [{"type": "Ready", "status": "True", "reason": "Running"}]}
    source = Resources([ResourceSample(ResourceKey("ns", "before"), running, NOW, 60.0)])
    metrics.observe_resources(source, accounts_in_use=list)
    slow = _SlowCollector()
    metrics.registry.register(slow)
    server = MetricsServer(metrics, ready=lambda: (True, "ok"))
    await server.start("127.0.0.1:0")
    try:
        async with httpx.AsyncClient() as client:
            scrape = asyncio.create_task(client.get(f"http://127.0.0.1:{server.port}/metrics", timeout=30))
            # While the collector is blocked inside the render, the loop still runs this test...
            assert await asyncio.to_thread(slow.entered.wait, 10), "the scrape never reached the collector"
            assert not scrape.done()
            # ...and what changes on the loop now is not in this scrape: it renders the snapshot.
            source.samples[:] = [ResourceSample(ResourceKey("ns", "after"), running, NOW, 60.0)]
            slow.release.set()
            response = await scrape
    finally:
        await server.stop()
    assert slow.released_in_time == [True], "the render blocked the event loop until the collector gave up"
    assert response.status_code == 200
    assert "slow_collector_done 1.0" in response.text
    assert 'name="before"' in response.text
    assert 'name="after"' not in response.text


async def test_a_large_fleet_is_copied_in_slices_with_the_loop_free_in_between() -> None:
    metrics = build()
    running = {"phase": "running", "conditions": [{"type": "Ready", "status": "True"}]}
    other_task_ran: list[bool] = []
    loop_turns = 0

    async def other_task() -> None:
        nonlocal loop_turns
        while True:
            loop_turns += 1
            await asyncio.sleep(0)

    class Fleet:
        def resource_samples(self) -> Iterator[ResourceSample]:
            seen = loop_turns
            for i in range(3 * SNAPSHOT_SLICE):
                if i % SNAPSHOT_SLICE == 0 and i:
                    other_task_ran.append(loop_turns > seen)
                    seen = loop_turns
                yield ResourceSample(ResourceKey("ns", f"r{i}"), running, NOW, 60.0)

    metrics.observe_resources(Fleet(), accounts_in_use=list)
    other = asyncio.create_task(other_task())
    try:
        text = (await metrics.render_off_loop()).decode()
    finally:
        other.cancel()
    assert other_task_ran == [True, True], "the loop did not run between two slices of the copy"
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert [sample.value for sample in families["llmmodeldeployment_resources"].samples] == [3 * SNAPSHOT_SLICE]
    assert text.count("llmmodeldeployment_phase{") == 3 * SNAPSHOT_SLICE


def test_leader_status_and_status_writes() -> None:
    metrics = build()
    value = metrics.registry.get_sample_value
    assert value("leader_election_master_status", {"name": "nf-llm"}) == 0
    metrics.set_leading(True)
    metrics.status_written()
    metrics.status_written()
    assert value("leader_election_master_status", {"name": "nf-llm"}) == 1
    assert value("llmmodeldeployment_status_writes_total") == 2


def test_process_metrics_are_exported() -> None:
    metrics = OperatorMetrics(leader_election_id="x")
    assert metrics.registry.get_sample_value("process_resident_memory_bytes") is not None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (":8081", ("0.0.0.0", 8081)),  # noqa: S104 - what ":PORT" means
        ("127.0.0.1:9000", ("127.0.0.1", 9000)),
        ("[::1]:80", ("::1", 80)),
    ],
)
def test_bind_addresses(value: str, expected: tuple[str, int]) -> None:
    assert parse_bind_address(value) == expected


@pytest.mark.parametrize("value", ["8081", "host:", "host:99999", "host:http"])
def test_bad_bind_addresses_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_bind_address(value)
