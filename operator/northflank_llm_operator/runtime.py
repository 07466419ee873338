"""Everything one operator process shares: settings, clients, the registry and the controller."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .controller import Controller
from .credentials import CredentialResolver
from .kube import KubernetesGateway, load_api_client
from .leader import LeaseFence
from .metrics import OperatorMetrics, ResourceSample
from .northflank import NorthflankClient
from .northflank.writer import NorthflankWriter
from .registry import Registry
from .settings import OperatorSettings


@dataclass
class Runtime:
    settings: OperatorSettings
    registry: Registry
    northflank: NorthflankClient
    kubernetes_api: Any
    gateway: KubernetesGateway
    credentials: CredentialResolver
    metrics: OperatorMetrics
    #: False while this replica stands by for the leader election Lease (it polls only while leading).
    leading: bool = True
    #: Whether kopf serves the resource (the CRD exists); the liveness probe fails while it does not.
    served: bool = True
    #: Called when a resync finds the resource no longer served (the CRD was deleted).
    on_unserved: Callable[[], None] | None = None
    #: The namespaces the periodic resync lists (None: all).
    resync_namespaces: Sequence[str] | None = None
    #: Whether this replica may write (status, Events, Northflank requests); the gateway and the
    #: Northflank client check it before each request, the leader election keeps it.
    fence: LeaseFence = field(default_factory=LeaseFence.unfenced)
    #: Writes to Northflank: only when the installation enables management (None: observe only).
    writer: NorthflankWriter | None = None
    #: The observer, work queue and reconciler (the "poll loop"); rebuilt when leadership is taken over.
    poller: Controller = field(init=False)
    poller_task: asyncio.Task[None] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.poller = self._new_poller()

    @classmethod
    def create(cls, settings: OperatorSettings, *, resync_namespaces: Sequence[str] | None = None) -> Runtime:
        """Build the runtime inside the running event loop (the HTTP pool and events bind to it)."""
        kubernetes_api = load_api_client()
        fence = LeaseFence(settings.leader_election_renew_deadline_seconds if settings.leader_elect else None)
        gateway = KubernetesGateway(kubernetes_api, instance=socket.gethostname(), fence=fence)
        metrics = OperatorMetrics(
            leader_election_id=settings.leader_election_id, per_resource_series=settings.metrics_per_resource_series
        )
        northflank = NorthflankClient(
            str(settings.api_base_url),
            timeout_seconds=settings.request_timeout_seconds,
            deadline_seconds=settings.request_deadline_seconds,
            max_response_bytes=settings.max_response_bytes,
            observer=metrics,
            may_send=fence.permit,
        )
        writer = None
        if settings.enable_management:
            # Constructed only here: without the switch no code path can send a write.
            writer = NorthflankWriter(
                str(settings.api_base_url),
                timeout_seconds=settings.request_timeout_seconds,
                deadline_seconds=settings.request_deadline_seconds,
                max_response_bytes=settings.max_response_bytes,
                observer=metrics,
                may_send=fence.permit,
            )
        registry = Registry()
        credentials = CredentialResolver(
            gateway,
            default_token=settings.api_token,
            cache_seconds=settings.credentials_cache_seconds,
            default_token_file=settings.api_token_file,
            default_token_namespaces=settings.default_token_namespaces,
            default_token_denied_namespaces=settings.default_token_denied_namespaces,
        )
        runtime = cls(settings, registry, northflank, kubernetes_api, gateway, credentials, metrics,
                      leading=not settings.leader_elect, resync_namespaces=resync_namespaces, fence=fence,
                      writer=writer)  # fmt: skip
        metrics.observe_resources(runtime, accounts_in_use=lambda: runtime.poller.planner.accounts())
        return runtime

    def _new_poller(self) -> Controller:
        poller = Controller(registry=self.registry, client=self.northflank, credentials=self.credentials,
                        kube=self.gateway, settings=self.settings, metrics=self.metrics,
                        resync_namespaces=self.resync_namespaces, writer=self.writer)  # fmt: skip
        poller.on_unserved = self._unserved
        return poller

    def _unserved(self) -> None:
        self.served = False
        if self.on_unserved is not None:
            self.on_unserved()

    def start(self) -> asyncio.Task[None]:
        if self.poller_task is not None or self.settings.leader_elect:
            # Taking over: a fresh loop (fresh budgets start nearly empty: no burst) over the registry the
            # watch kept warm meanwhile. Resources already observed are spread over one interval, and
            # staleness counts from now: the time nobody led is not held against them twice.
            self.poller = self._new_poller()
            self.registry.mark_pending(resource.key for resource in self.registry)
        self.poller_task = asyncio.create_task(self.poller.run(), name="northflank-poller")
        return self.poller_task

    async def stop_polling(self, grace: float | None = None) -> None:
        """Stop polling and writing at once (the Lease was lost, or the process is stopping)."""
        if self.poller_task is not None and not self.poller_task.done():
            self.poller_task.cancel()
            # asyncio.wait, not gather/wait_for: a cancel swallowed inside the poll loop must not
            # keep the process from exiting (the shutdown watchdog is the last resort).
            await asyncio.wait({self.poller_task}, timeout=grace)

    def resource_samples(self) -> Iterator[ResourceSample]:
        """Per-resource metrics: only the leader observes, so only the leader reports."""
        if not self.leading or self.poller_task is None or self.poller_task.done():
            return
        for resource in self.registry:
            last_success, interval = self.poller.freshness(resource.key)
            yield ResourceSample(resource.key, resource.status, last_success, interval)

    async def close(self, grace: float = 10.0) -> None:
        await self.stop_polling(grace / 2)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.northflank.aclose(), grace / 4)
        if self.writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.writer.aclose(), grace / 4)
        self.gateway.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.to_thread(self.kubernetes_api.close), grace / 4)
