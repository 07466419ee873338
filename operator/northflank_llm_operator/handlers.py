"""kopf handlers: translate watch events into registry changes, nothing else.

Only event-watching handlers are registered, so kopf adds no finalizers and no annotations to the
resources: the operator only ever writes their status subresource. Deleting a resource never waits
for the operator.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from .resource import GROUP, PLURAL, VERSION
from .runtime import Runtime
from .selector import selector_for

registry = kopf.OperatorRegistry()

WATCH_SERVER_TIMEOUT_SECONDS = 300
_background: set[asyncio.Task[None]] = set()


def runtime_of(memo: Any) -> Runtime:
    runtime = getattr(memo, "runtime", None)
    if not isinstance(runtime, Runtime):
        raise RuntimeError("the operator was started without its runtime in kopf's memo")
    return runtime


@kopf.on.login(registry=registry)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # A registry of our own does not carry kopf's default login: use the kubernetes client's
    # (in-cluster service account when in a pod, else the current kubeconfig context).
    return kopf.login_via_client(**kwargs)


@kopf.on.startup(registry=registry)
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo | None = None, **_: Any) -> None:
    # No CRD/namespace watching: the CRD is installed before the operator, namespaces are explicit,
    # and the operator's RBAC then needs no cluster-wide read on CRDs or namespaces.
    settings.scanning.disabled = True
    # Named after our group in case a future handler needs one; today nothing adds it.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # kopf's own handler failures still become Warning Events; successes stay in the log only.
    settings.posting.level = logging.WARNING
    # A watch the API server ends every few minutes, and a client-side deadline past that, so a
    # connection that silently died (a load balancer, a NAT table) is noticed and re-established.
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT_SECONDS
    settings.watching.client_timeout = WATCH_SERVER_TIMEOUT_SECONDS + 60
    settings.watching.connect_timeout = 30
    # Every other request kopf makes (listings, patches of its own) has a deadline too.
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 30
    watchdog = getattr(memo, "watchdog", None) if memo is not None else None
    if watchdog is not None:
        # kopf installs its SIGTERM handler after the startup handlers; keep the hard shutdown
        # deadline in front of it (the task ends once the deadline is armed, by a signal or a lost Lease).
        settings.process.ultimate_exiting_timeout = watchdog.timeout
        _background.add(asyncio.create_task(watchdog.keep_chained(), name="shutdown-watchdog"))


@kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
async def track(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime = runtime_of(memo)
    selector = selector_for(runtime.settings)
    if selector is not None and not selector.matches(labels_of(body)):
        # Another shard's resource, or one whose labels no longer match: forget it as if it were deleted.
        runtime.registry.observe("DELETED", body)
        return
    runtime.registry.observe(type, body)


def labels_of(body: Mapping[str, Any]) -> Mapping[str, str]:
    labels = body.get("metadata", {}).get("labels")
    return labels if isinstance(labels, Mapping) else {}


@kopf.on.probe(id="trackedResources", registry=registry)
async def tracked_resources(memo: kopf.Memo, **_: Any) -> int:
    runtime = runtime_of(memo)
    if runtime.leading and (runtime.poller_task is None or runtime.poller_task.done()):
        # The liveness endpoint then fails and the kubelet restarts the pod. A standby polls nothing.
        raise kopf.PermanentError("the poll loop is not running")
    if not runtime.served:
        raise kopf.PermanentError("the API server does not serve LLMModelDeployments (CRD missing)")
    return len(runtime.registry)
