"""Everything one operator process shares: settings, clients, the registry and the poller."""

from __future__ import annotations

import asyncio
import socket
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

    @classmethod
    def create(cls, settings: OperatorSettings) -> Runtime:
        """Build the runtime inside the running event loop (the HTTP pool and events bind to it)."""
        kubernetes_api = load_api_client()
        gateway = KubernetesGateway(kubernetes_api, instance=socket.gethostname())
        northflank = NorthflankClient(
            str(settings.api_base_url),
            timeout_seconds=settings.request_timeout_seconds,
            deadline_seconds=settings.request_deadline_seconds,
            max_response_bytes=settings.max_response_bytes,
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
        poller = Poller(registry=registry, client=northflank, credentials=credentials, kube=gateway, settings=settings)
        return cls(settings, registry, poller, northflank, kubernetes_api, gateway)

    def start(self) -> asyncio.Task[None]:
        self.poller_task = asyncio.create_task(self.poller.run(), name="northflank-poller")
        return self.poller_task

    async def close(self) -> None:
        if self.poller_task is not None:
            self.poller_task.cancel()
            await asyncio.gather(self.poller_task, return_exceptions=True)
        await self.northflank.aclose()
        self.gateway.close()
        await asyncio.to_thread(self.kubernetes_api.close)
