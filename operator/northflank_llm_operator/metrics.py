"""Prometheus metrics: every instrument of the operator, and the HTTP endpoint that serves them.

The rest of the code knows nothing of Prometheus: the API client reports each request to a
:class:`~.northflank.client.RequestObserver`, the poller reports rate-limit headers and status writes
to a :class:`~.poller.PollObserver`, and per-resource series are read from the registry and the poller
at scrape time (so a deleted resource's series disappear with it). Names follow controller-runtime,
External Secrets and Crossplane, so existing dashboards and habits carry over.

Labels never carry a secret: ``account`` is a short digest of the credential's digest, never any part
of a token.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import (
    gc_collector as _gc,
)
from prometheus_client import (
    platform_collector as _platform,
)
from prometheus_client import (
    process_collector as _process,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .northflank import RateLimit
from .resource import ResourceKey

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Northflank requests take tens of milliseconds to seconds; the request timeout caps them.
_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_CONDITION_STATUSES = ("True", "False", "Unknown")
_SAME_WINDOW_SECONDS = 5.0


def account_label(identity: str) -> str:
    """A stable, non-secret label for one credential: a short digest of its (already opaque) digest."""
    return hashlib.sha256(f"northflank-llm-operator/account/{identity}".encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ResourceSample:
    """What the per-resource series say about one resource at scrape time."""

    key: ResourceKey
    status: Mapping[str, Any]
    #: When Northflank last answered about it, or when this replica began leading if not since then
    #: (the operator's own staleness clock). None: not attached (invalid spec, no credentials).
    last_success: datetime | None
    #: The poll interval the budget lets the operator keep (None: not attached).
    effective_interval: float | None


class ResourceSource(Protocol):
    def resource_samples(self) -> Iterable[ResourceSample]:
        """Every resource this replica observes now (nothing while it is not the leader)."""
        ...


@dataclass
class _RateLimitSeen:
    limit: int | None
    remaining: int | None
    reset_at: float | None


class OperatorMetrics:
    """All instruments in one registry of their own (tests can build as many as they like)."""

    def __init__(
        self,
        *,
        leader_election_id: str,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        process_metrics: bool = True,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._clock = clock
        self._wall_clock = wall_clock
        self.requests = Counter(
            "northflank_api_requests",
            "Requests sent to the Northflank API, by endpoint (get, list) and HTTP status code (error: no answer).",
            ["endpoint", "code"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "northflank_api_request_duration_seconds",
            "Latency of requests to the Northflank API, by endpoint (get, list).",
            ["endpoint"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.status_writes = Counter(
            "llmmodeldeployment_status_writes",
            "Status subresource writes of LLMModelDeployments (only a change is written).",
            registry=self.registry,
        )
        self.leader = Gauge(
            "leader_election_master_status",
            "1 when this replica is the leader (polls and writes status), 0 when it stands by.",
            ["name"],
            registry=self.registry,
        )
        self._leader_name = leader_election_id
        self.leader.labels(leader_election_id).set(0)
        self._rate_limits: dict[str, _RateLimitSeen] = {}
        self._accounts_in_use: Callable[[], Iterable[str]] = lambda: self._rate_limits.keys()
        self._source: ResourceSource | None = None
        self.registry.register(_ScrapeTimeCollector(self))
        if process_metrics:
            _process.ProcessCollector(registry=self.registry)
            _platform.PlatformCollector(registry=self.registry)
            _gc.GCCollector(registry=self.registry)

    # -- hooks the rest of the operator calls -----------------------------------------------------

    def request_finished(self, endpoint: str, status_code: int | None, seconds: float) -> None:
        """One Northflank request ended (``status_code`` None: no HTTP answer at all)."""
        self.requests.labels(endpoint, str(status_code) if status_code is not None else "error").inc()
        self.request_duration.labels(endpoint).observe(seconds)

    def rate_limit_seen(self, account: str, rate_limit: RateLimit) -> None:
        """The ``x-ratelimit-*`` headers of one response for ``account`` (a credential digest)."""
        if rate_limit.limit is None and rate_limit.remaining is None and rate_limit.reset_seconds is None:
            return  # an error page without the headers says nothing about the budget
        now = self._clock()
        label = account_label(account)
        reset_at = now + rate_limit.reset_seconds if rate_limit.reset_seconds is not None else None
        seen = self._rate_limits.get(label)
        remaining = rate_limit.remaining
        if (
            seen is not None
            and remaining is not None
            and seen.remaining is not None
            and reset_at is not None
            and seen.reset_at is not None
            and abs(reset_at - seen.reset_at) <= _SAME_WINDOW_SECONDS
        ):
            # Answers of one window can arrive out of order (requests in parallel): the lowest is current.
            remaining = min(remaining, seen.remaining)
        self._rate_limits[label] = _RateLimitSeen(
            rate_limit.limit if rate_limit.limit is not None else (seen.limit if seen else None), remaining, reset_at
        )

    def status_written(self) -> None:
        self.status_writes.inc()

    def set_leading(self, leading: bool) -> None:
        self.leader.labels(self._leader_name).set(1 if leading else 0)
        if not leading:
            self._rate_limits.clear()  # a standby reports no budget: the leader's numbers are the current ones

    def observe_resources(self, source: ResourceSource, accounts_in_use: Callable[[], Iterable[str]]) -> None:
        """Where per-resource series come from, and which accounts still have resources."""
        self._source = source
        self._accounts_in_use = accounts_in_use

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # -- scrape-time series -------------------------------------------------------------------------

    def _scrape(self) -> Iterator[Metric]:
        yield from self._rate_limit_families()
        yield from self._resource_families()

    def _rate_limit_families(self) -> Iterator[Metric]:
        limit = GaugeMetricFamily(
            "northflank_ratelimit_limit", "Requests per window Northflank allows the account.", labels=["account"]
        )
        remaining = GaugeMetricFamily(
            "northflank_ratelimit_remaining",
            "Requests left in the account's current window, as Northflank's last headers said.",
            labels=["account"],
        )
        reset = GaugeMetricFamily(
            "northflank_ratelimit_reset_seconds",
            "Seconds until the account's window resets, counted from Northflank's last headers.",
            labels=["account"],
        )
        in_use = {account_label(account) for account in self._accounts_in_use()}
        now = self._clock()
        for label in [label for label in self._rate_limits if label not in in_use]:
            del self._rate_limits[label]  # no resource uses the credential any more: its series go
        for label, seen in sorted(self._rate_limits.items()):
            if seen.limit is not None:
                limit.add_metric([label], seen.limit)
            if seen.remaining is not None:
                remaining.add_metric([label], seen.remaining)
            if seen.reset_at is not None:
                reset.add_metric([label], max(0.0, seen.reset_at - now))
        yield from (limit, remaining, reset)

    def _resource_families(self) -> Iterator[Metric]:
        labels = ["namespace", "name"]
        condition = GaugeMetricFamily(
            "llmmodeldeployment_status_condition",
            "1 for the status the condition has, 0 for the others.",
            labels=[*labels, "condition", "status"],
        )
        phase = GaugeMetricFamily(
            "llmmodeldeployment_phase", "1 for the resource's status.phase, 0 for none else.", labels=[*labels, "phase"]
        )
        age = GaugeMetricFamily(
            "llmmodeldeployment_observation_age_seconds",
            "Seconds since the deployment was last observed successfully at Northflank.",
            labels=labels,
        )
        interval = GaugeMetricFamily(
            "llmmodeldeployment_poll_interval_seconds",
            "Effective seconds between observations (the requested interval, stretched to fit the budget).",
            labels=labels,
        )
        per_phase = GaugeMetricFamily(
            "llmmodeldeployment_resources", "LLMModelDeployments this replica observes, by phase.", labels=["phase"]
        )
        counts: dict[str, int] = {}
        now = self._wall_clock()
        samples = list(self._source.resource_samples()) if self._source is not None else []
        for sample in samples:
            ids = [sample.key.namespace, sample.key.name]
            for stored in sample.status.get("conditions") or []:
                if not isinstance(stored, Mapping) or not isinstance(stored.get("type"), str):
                    continue
                for value in _CONDITION_STATUSES:
                    condition.add_metric([*ids, stored["type"], value], 1.0 if stored.get("status") == value else 0.0)
            current = sample.status.get("phase")
            current = current if isinstance(current, str) and current else "unknown"
            phase.add_metric([*ids, current], 1.0)
            counts[current] = counts.get(current, 0) + 1
            if sample.last_success is not None:
                # Not status.lastSyncTime: with the default heartbeat it moves only when something changes.
                age.add_metric(ids, max(0.0, (now - sample.last_success).total_seconds()))
            if sample.effective_interval is not None:
                interval.add_metric(ids, sample.effective_interval)
        for name, count in sorted(counts.items()):
            per_phase.add_metric([name], count)
        yield from (condition, phase, age, interval, per_phase)


class _ScrapeTimeCollector(Collector):
    def __init__(self, metrics: OperatorMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return list(self._metrics._scrape())


# -- the HTTP endpoint ------------------------------------------------------------------------------


def parse_bind_address(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` (all interfaces) or ``[::1]:PORT``."""
    host, separator, port = value.strip().rpartition(":")
    if not separator or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bind address {value!r} is not HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - ':8080' means every interface, as in controller-runtime
    return host, int(port)


class MetricsServer:
    """``/metrics`` and ``/readyz`` on one port, served from the operator's event loop."""

    def __init__(self, metrics: OperatorMetrics, *, ready: Callable[[], tuple[bool, str]]) -> None:
        self._metrics = metrics
        self._ready = ready
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def _serve_metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def _serve_ready(self, _: web.Request) -> web.Response:
        ready, reason = self._ready()
        return web.Response(status=200 if ready else 503, text=reason + "\n")

    async def start(self, bind_address: str) -> None:
        host, port = parse_bind_address(bind_address)
        app = web.Application()
        app.router.add_get("/metrics", self._serve_metrics)
        app.router.add_get("/readyz", self._serve_ready)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        addresses = self._runner.addresses
        self.port = int(addresses[0][1]) if addresses else port
        logger.info("Serving metrics on %s:%s/metrics", host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
