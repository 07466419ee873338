"""Prometheus metrics: every instrument of the operator, and the HTTP endpoint that serves them.

The rest of the code knows nothing of Prometheus: the API client reports each request to a
:class:`~.northflank.client.RequestObserver`, the poller reports rate-limit headers and status writes
to a :class:`~.poller.PollObserver`, and per-resource series are read from the registry and the poller
at scrape time (so a deleted resource's series disappear with it). Names follow controller-runtime,
External Secrets and Crossplane, so existing dashboards and habits carry over.

A scrape must not pause the event loop (kopf's watch, the Lease renewal and the poll loop run on it).
At 10,000 resources the text is about 9 MB; built from prometheus-client's families it took seconds
of the loop, most of it allocating some 150,000 samples and the garbage collections they set off. So:

- the server copies the scrape-time state on the loop (the registry, the poller and the rate limits are
  only ever changed there, so only there can they be read safely), in slices of ``SNAPSHOT_SLICE``
  resources with the loop free in between. Each resource's row is copied in one uninterrupted step
  and the counts by phase and condition are made from the same rows, so a scrape agrees with itself;
  its rows are copied within a fraction of a second of each other, as in any scrape of a live process
  (a resource deleted meanwhile shows once more, then goes);
- a worker thread builds the text from that copy alone: the per-resource series as plain lines
  (no sample objects), everything else through the registry (prometheus-client's instruments lock
  themselves, and may be collected from any thread). The copy reaches the registry's collector
  through a context variable, so concurrent scrapes each render their own, and ``registry.collect()``
  called on the loop (tests) takes a copy itself.

Labels never carry a secret: ``account`` is a short digest of the credential's digest, never any part
of a token.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import hashlib
import ipaddress
import logging
import socket
import ssl
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
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
from prometheus_client.utils import floatToGoString as _untyped_float_to_go_string

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


#: One resource's per-resource series copied on the event loop: namespace, name, phase, observation age,
#: effective interval and (condition type, its status, ...). A plain tuple of plain values, which the
#: garbage collector stops tracking at its first pass, so that 10,000 of them kept for a scrape do not
#: bring on a full collection (hundreds of milliseconds with the GIL held, whichever thread runs it).
_ResourceRow = tuple[str, str, str, float | None, float | None, tuple[str | None, ...]]


#: Resources copied per uninterrupted step of an off-loop scrape (a few milliseconds of the loop each).
SNAPSHOT_SLICE = 200


@dataclass
class _Snapshot:
    """Everything scrape-time series show, copied on the event loop; read-only once complete."""

    per_resource: bool
    wall_now: datetime
    #: (account label, limit, remaining, seconds to reset)
    rate_limits: list[tuple[str, int | None, int | None, float | None]] = field(default_factory=list)
    resources: list[_ResourceRow] = field(default_factory=list)
    per_phase: dict[str, int] = field(default_factory=dict)
    #: (condition, status, reason) -> resources
    per_condition: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def add(self, sample: ResourceSample) -> None:
        conditions: list[str | None] = []
        for stored in sample.status.get("conditions") or []:
            if not isinstance(stored, Mapping) or not isinstance(stored.get("type"), str):
                continue
            status, reason = stored.get("status"), stored.get("reason")
            conditions += (stored["type"], status if isinstance(status, str) else None)
            counted = (stored["type"], str(status), reason if isinstance(reason, str) else "")
            self.per_condition[counted] = self.per_condition.get(counted, 0) + 1
        phase = sample.status.get("phase")
        phase = phase if isinstance(phase, str) and phase else "unknown"
        self.per_phase[phase] = self.per_phase.get(phase, 0) + 1
        if self.per_resource:
            # Not status.lastSyncTime: with the default heartbeat it moves only when something changes.
            last = sample.last_success
            age = max(0.0, (self.wall_now - last).total_seconds()) if last is not None else None
            key = sample.key
            self.resources.append((key.namespace, key.name, phase, age, sample.effective_interval, tuple(conditions)))


#: A value as prometheus-client writes it (Go's formatting: ``1.0``, ``1.7e+09``).
_go_float: Callable[[float], str] = _untyped_float_to_go_string

#: Current context's snapshot: set in the worker thread for the duration of one render.
_current_snapshot: ContextVar[_Snapshot | None] = ContextVar("northflank_llm_operator_metrics_snapshot", default=None)

#: The per-resource families (labels namespace, name, ...), written as text by :func:`_per_resource_text`.
PER_RESOURCE_FAMILIES = {
    "llmmodeldeployment_status_condition": "1 for the status the condition has, 0 for the others.",
    "llmmodeldeployment_phase": "1 for the resource's status.phase, 0 for none else.",
    "llmmodeldeployment_observation_age_seconds": "Seconds since the deployment was last observed successfully "
    "at Northflank.",
    "llmmodeldeployment_poll_interval_seconds": "Effective seconds between observations (the requested "
    "interval, stretched to fit the budget).",
}


def _label(value: str) -> str:
    """A label value escaped as the text format wants (names are DNS labels; conditions can be anything)."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def _per_resource_text(rows: Iterable[_ResourceRow]) -> bytes:
    """The per-resource families as exposition text: strings only, which the garbage collector does not
    track, so that building 150,000 lines sets off no collection that would hold the GIL for long."""
    conditions: list[str] = []
    phases: list[str] = []
    ages: list[str] = []
    intervals: list[str] = []
    for namespace, name, phase, age, interval, flat_conditions in rows:
        ids = f'namespace="{_label(namespace)}",name="{_label(name)}"'
        for index in range(0, len(flat_conditions), 2):
            condition_type, current = flat_conditions[index], flat_conditions[index + 1]
            prefix = f'llmmodeldeployment_status_condition{{{ids},condition="{_label(str(condition_type))}",status="'
            for value in _CONDITION_STATUSES:
                conditions.append(f'{prefix}{value}"}} {"1.0" if current == value else "0.0"}\n')
        phases.append(f'llmmodeldeployment_phase{{{ids},phase="{_label(phase)}"}} 1.0\n')
        if age is not None:
            ages.append(f"llmmodeldeployment_observation_age_seconds{{{ids}}} {_go_float(age)}\n")
        if interval is not None:
            intervals.append(f"llmmodeldeployment_poll_interval_seconds{{{ids}}} {_go_float(interval)}\n")
    parts: list[str] = []
    families = zip(PER_RESOURCE_FAMILIES.items(), (conditions, phases, ages, intervals), strict=True)
    for (name, help_text), lines in families:
        parts.append(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n")
        parts.extend(lines)
    return "".join(parts).encode()


class OperatorMetrics:
    """All instruments in one registry of their own (tests can build as many as they like)."""

    def __init__(
        self,
        *,
        leader_election_id: str,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        process_metrics: bool = True,
        per_resource_series: bool = True,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._clock = clock
        #: Off: no series per (namespace, name), only the counts by phase and by condition (large fleets).
        self.per_resource_series = per_resource_series
        self._wall_clock = wall_clock
        self.requests = Counter(
            "northflank_api_requests",
            "Requests sent to the Northflank API, by endpoint (get, list; with management also create, update, "
            "delete, auth) and HTTP status code (error: no answer).",
            ["endpoint", "code"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "northflank_api_request_duration_seconds",
            "Latency of requests to the Northflank API, by endpoint (get, list, create, update, delete, auth).",
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
        """The exposition, all of it built on the calling thread (tests; the server uses :meth:`render_off_loop`)."""
        return self._render_snapshot(self.snapshot())

    async def render_off_loop(self, executor: Executor | None = None) -> bytes:
        """The exposition: copied on the event loop a slice at a time, the text built in a worker thread
        (of ``executor``; None: the loop's default one)."""
        snapshot = self._begin_snapshot()
        samples = iter(self._source.resource_samples() if self._source is not None else ())
        while True:
            taken = 0
            for sample in samples:
                snapshot.add(sample)
                taken += 1
                if taken == SNAPSHOT_SLICE:
                    break
            if taken < SNAPSHOT_SLICE:
                break
            await asyncio.sleep(0)  # let the watch, the Lease and the poll loop run between slices
        return await asyncio.get_running_loop().run_in_executor(executor, self._render_snapshot, snapshot)

    def _render_snapshot(self, snapshot: _Snapshot) -> bytes:
        token = _current_snapshot.set(snapshot)
        try:
            text = generate_latest(self.registry)
        finally:
            _current_snapshot.reset(token)
        return text + _per_resource_text(snapshot.resources) if snapshot.per_resource else text

    # -- scrape-time series -------------------------------------------------------------------------

    def snapshot(self) -> _Snapshot:
        """Copy what scrape-time series show, in one pass. Call it on the event loop: it reads its state."""
        snapshot = self._begin_snapshot()
        for sample in self._source.resource_samples() if self._source is not None else ():
            snapshot.add(sample)
        return snapshot

    def _begin_snapshot(self) -> _Snapshot:
        """A snapshot with the rate limits in it, to which the resources are added."""
        snapshot = _Snapshot(per_resource=self.per_resource_series, wall_now=self._wall_clock())
        in_use = {account_label(account) for account in self._accounts_in_use()}
        now = self._clock()
        for label in [label for label in self._rate_limits if label not in in_use]:
            del self._rate_limits[label]  # no resource uses the credential any more: its series go
        for label, seen in sorted(self._rate_limits.items()):
            reset = max(0.0, seen.reset_at - now) if seen.reset_at is not None else None
            snapshot.rate_limits.append((label, seen.limit, seen.remaining, reset))
        return snapshot

    def _scrape(self, snapshot: _Snapshot) -> Iterator[Metric]:
        yield from self._rate_limit_families(snapshot)
        yield from self._resource_families(snapshot)

    def _rate_limit_families(self, snapshot: _Snapshot) -> Iterator[Metric]:
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
        for label, seen_limit, seen_remaining, reset_in in snapshot.rate_limits:
            if seen_limit is not None:
                limit.add_metric([label], seen_limit)
            if seen_remaining is not None:
                remaining.add_metric([label], seen_remaining)
            if reset_in is not None:
                reset.add_metric([label], reset_in)
        yield from (limit, remaining, reset)

    def _resource_families(self, snapshot: _Snapshot) -> Iterator[Metric]:
        """The counts (the series per resource are written as text: :func:`_per_resource_text`)."""
        per_phase = GaugeMetricFamily(
            "llmmodeldeployment_resources", "LLMModelDeployments this replica observes, by phase.", labels=["phase"]
        )
        per_condition = GaugeMetricFamily(
            "llmmodeldeployment_resources_by_condition",
            "LLMModelDeployments this replica observes, by condition, status and reason.",
            labels=["condition", "status", "reason"],
        )
        for name, count in sorted(snapshot.per_phase.items()):
            per_phase.add_metric([name], count)
        for (condition_type, status, reason), count in sorted(snapshot.per_condition.items()):
            per_condition.add_metric([condition_type, status, reason], count)
        yield from (per_phase, per_condition)


class _ScrapeTimeCollector(Collector):
    def __init__(self, metrics: OperatorMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        snapshot = _current_snapshot.get()
        # No snapshot: a render on the loop's own thread (tests, registry.get_sample_value) takes one now.
        return list(self._metrics._scrape(snapshot if snapshot is not None else self._metrics.snapshot()))


# -- the HTTP endpoint ------------------------------------------------------------------------------


def parse_bind_address(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` (all interfaces) or ``[::1]:PORT``."""
    host, separator, port = value.strip().rpartition(":")
    if not separator or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bind address {value!r} is not HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - ':8080' means every interface, as in controller-runtime
    return host, int(port)


@dataclass(frozen=True)
class AccessVerdict:
    """What the API server said about one bearer token asking for ``GET /metrics``."""

    authenticated: bool
    allowed: bool
    #: Who it is, or why not (for the log); never any part of the token.
    detail: str


class AccessReviewer(Protocol):
    async def review_metrics_access(self, token: str) -> AccessVerdict:
        """A TokenReview, then a SubjectAccessReview for ``get`` on the non-resource URL ``/metrics``."""
        ...


class MetricsAuthorizer:
    """Who may read ``/metrics`` with ``--metrics-secure``: the API server decides, as controller-runtime's
    ``filters.WithAuthenticationAndAuthorization`` does (a TokenReview, then a SubjectAccessReview for
    ``get`` on ``/metrics``). Verdicts are cached per token digest for a short while, so a scrape every
    few seconds costs the API server two calls a minute, and a revoked grant ends within a minute."""

    def __init__(
        self,
        reviewer: AccessReviewer,
        *,
        clock: Callable[[], float] = time.monotonic,
        allowed_ttl: float = 60.0,
        denied_ttl: float = 10.0,
        max_entries: int = 1024,
    ) -> None:
        self._reviewer = reviewer
        self._clock = clock
        self._allowed_ttl = allowed_ttl
        self._denied_ttl = denied_ttl
        self._max_entries = max_entries
        self._cache: dict[str, tuple[float, AccessVerdict]] = {}

    async def check(self, authorization: str | None) -> tuple[int, str]:
        """HTTP status (200, 401, 403, or 500 when the API server could not be asked) and a short text."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return 401, "Unauthorized: a bearer token is required"
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            verdict = cached[1]
        else:
            try:
                verdict = await self._reviewer.review_metrics_access(token)
            except Exception:
                logger.warning("Could not review access to /metrics with the API server", exc_info=True)
                return 500, "Internal Server Error: the access review failed"
            if len(self._cache) >= self._max_entries:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                if len(self._cache) >= self._max_entries:
                    self._cache.clear()  # a flood of distinct tokens: forget rather than grow
            self._cache[key] = (now + (self._allowed_ttl if verdict.allowed else self._denied_ttl), verdict)
        if not verdict.authenticated:
            return 401, "Unauthorized"
        if not verdict.allowed:
            logger.info("Refused /metrics to %s", verdict.detail)
            return 403, "Forbidden"
        return 200, "OK"


def tls_context(cert_dir: Path | None, *, hostname: str | None = None) -> ssl.SSLContext:
    """The server's TLS context: ``tls.crt`` and ``tls.key`` from ``cert_dir`` (a mounted Secret, e.g.
    from cert-manager), or, without one, a self-signed certificate made at start-up, as
    controller-runtime does (Prometheus then scrapes with ``insecureSkipVerify``)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_dir is not None:
        context.load_cert_chain(cert_dir / "tls.crt", cert_dir / "tls.key")
        return context
    cert_pem, key_pem = self_signed_certificate(hostname or socket.gethostname())
    # load_cert_chain reads files only; they live for this call alone, in a private directory.
    with tempfile.TemporaryDirectory(prefix="metrics-tls-") as directory:
        cert_path, key_path = Path(directory) / "tls.crt", Path(directory) / "tls.key"
        cert_path.write_bytes(cert_pem)
        key_path.touch(mode=0o600)
        key_path.write_bytes(key_pem)
        context.load_cert_chain(cert_path, key_path)
    return context


def self_signed_certificate(hostname: str, *, days: int = 365) -> tuple[bytes, bytes]:
    """A PEM certificate and key (ECDSA P-256) for ``hostname``, ``localhost`` and 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64])])
    now = datetime.now(UTC)
    names: list[x509.GeneralName] = [x509.DNSName(hostname), x509.DNSName("localhost")]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return (
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


class MetricsServer:
    """``/metrics`` and ``/readyz`` on one port, served from the operator's event loop (the text of
    ``/metrics`` is built in a worker thread).

    With an ``authorizer`` and an ``ssl_context`` (``--metrics-secure``) it serves HTTPS and ``/metrics``
    only to bearer tokens the API server allows ``get`` on ``/metrics``; ``/readyz`` stays open (the
    kubelet's probe sends no token, and says nothing secret)."""

    def __init__(
        self,
        metrics: OperatorMetrics,
        *,
        ready: Callable[[], tuple[bool, str]],
        authorizer: MetricsAuthorizer | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._metrics = metrics
        self._ready = ready
        self._authorizer = authorizer
        self._ssl_context = ssl_context
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        # One thread of its own: scrapes at once queue here (one text in memory at a time) instead of
        # taking the loop's default executor, which name resolution for Northflank requests needs.
        self._render_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-render")

    async def _serve_metrics(self, request: web.Request) -> web.Response:
        if self._authorizer is not None:
            status, text = await self._authorizer.check(request.headers.get("Authorization"))
            if status != 200:
                return web.Response(status=status, text=text + "\n")
        body = await self._metrics.render_off_loop(self._render_thread)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def _serve_ready(self, _: web.Request) -> web.Response:
        ready, reason = self._ready()
        return web.Response(status=200 if ready else 503, text=reason + "\n")

    async def start(self, bind_address: str) -> None:
        host, port = parse_bind_address(bind_address)
        app = web.Application()
        app.router.add_get("/metrics", self._serve_metrics)
        app.router.add_get("/readyz", self._serve_ready)
        # A scrape in flight must not hold a stopping process for aiohttp's default 60 s.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=self._ssl_context)
        await site.start()
        addresses = self._runner.addresses
        self.port = int(addresses[0][1]) if addresses else port
        scheme = "https" if self._ssl_context is not None else "http"
        secured = " (authenticated: TokenReview + SubjectAccessReview)" if self._authorizer is not None else ""
        logger.info("Serving metrics on %s://%s:%s/metrics%s", scheme, host, self.port, secured)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._render_thread.shutdown(wait=False, cancel_futures=True)
