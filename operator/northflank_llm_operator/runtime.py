"""Everything one operator process shares: settings, clients, the registry and the poller."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .credentials import CredentialResolver
from .kube import KubernetesGateway, load_api_client
from .northflank import NorthflankClient
from .poller import Poller
from .registry import Registry
from .settings import OperatorSettings


@dataclass
class Runtime:
    settings: OperatorSettings
    registry: Registry
    poller: Poller
    northflank: NorthflankClient
    kubernetes_api: Any
    gateway: KubernetesGateway
    poller_task: asyncio.Task[None] | None = field(default=None)
    #: Whether kopf serves the resource (the CRD exists); the liveness probe fails while it does not.
    served: bool = True
    #: Called when a resync finds the resource no longer served (the CRD was deleted).
    on_unserved: Callable[[], None] | None = None

    @classmethod
    def create(cls, settings: OperatorSettings, *, resync_namespaces: Sequence[str] | None = None) -> Runtime:
        """Build the runtime inside the running event loop (the HTTP pool and events bind to it)."""
        kubernetes_api = load_api_client()
        gateway = KubernetesGateway(kubernetes_api, instance=socket.gethostname())
        northflank = NorthflankClient(str(settings.api_base_url), timeout_seconds=settings.request_timeout_seconds)
        registry = Registry()
        credentials = CredentialResolver(
            gateway, default_token=settings.api_token, cache_seconds=settings.credentials_cache_seconds
        )
        poller = Poller(
            registry=registry,
            client=northflank,
            credentials=credentials,
            kube=gateway,
            settings=settings,
            resync_namespaces=resync_namespaces,
        )
        runtime = cls(settings, registry, poller, northflank, kubernetes_api, gateway)
        poller.on_unserved = runtime._unserved
        return runtime

    def _unserved(self) -> None:
        self.served = False
        if self.on_unserved is not None:
            self.on_unserved()

    def start(self) -> asyncio.Task[None]:
        self.poller_task = asyncio.create_task(self.poller.run(), name="northflank-poller")
        return self.poller_task

    async def close(self, grace: float = 10.0) -> None:
        if self.poller_task is not None:
            self.poller_task.cancel()
            # asyncio.wait, not gather/wait_for: a cancel swallowed inside the poll loop must not
            # keep the process from exiting (the shutdown watchdog is the last resort).
            await asyncio.wait({self.poller_task}, timeout=grace / 2)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.northflank.aclose(), grace / 4)
        self.gateway.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.to_thread(self.kubernetes_api.close), grace / 4)
