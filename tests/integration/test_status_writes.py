"""Issue 7 (Kubernetes side) on the real kube-apiserver: the poll loop in-process with the real
Kubernetes gateway and a scripted Northflank, so each race and each hostile answer is exact."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from inspect import signature
from typing import Any

import kubernetes
import pytest
from pydantic import SecretStr

from northflank_llm_operator import status as status_module
from northflank_llm_operator.controller import Controller as Poller
from northflank_llm_operator.credentials import CredentialResolver
from northflank_llm_operator.kube import KubernetesGateway
from northflank_llm_operator.registry import Registry
from northflank_llm_operator.resource import ResourceKey
from northflank_llm_operator.settings import OperatorSettings
from tests.controlplane.controlplane import ControlPlane
from tests.support.cluster import API_VERSION, delete_all_resources, without_nulls
from tests.unit.test_controller import Clock, FakeNorthflank

pytestmark = pytest.mark.integration


class Loop:
    """The poll loop against the real API server, stepped by hand on a fake clock."""

    def __init__(self, plane: ControlPlane, namespace: str, **settings: Any) -> None:
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(plane.kubeconfig), client_configuration=configuration
        )
        self.api = kubernetes.client.ApiClient(configuration)
        self.gateway = KubernetesGateway(self.api, instance="test")
        self.plane = plane
        self.namespace = namespace
        self.clock = Clock()
        self.northflank = FakeNorthflank()
        self.registry = Registry()
        resync: dict[str, Any] = (
            {"resync_namespaces": [namespace]} if "resync_namespaces" in signature(Poller).parameters else {}
        )
        self.poller = Poller(
            registry=self.registry,
            client=self.northflank,  # type: ignore[arg-type]
            credentials=CredentialResolver(
                self.gateway, default_token=SecretStr("token"), cache_seconds=30, clock=self.clock
            ),
            kube=self.gateway,
            settings=OperatorSettings(poll_interval_seconds=60, **settings),
            clock=self.clock,
            wall_clock=lambda: datetime.fromtimestamp(self.clock.now, UTC),
            # Only where the poller has a resync (so that this file also runs against older code).
            **resync,
        )

    def kubectl_json(self, *args: str, input: str | None = None) -> dict[str, Any]:
        result = self.plane.kubectl(*args, "-o", "json", input=input)
        body: dict[str, Any] = json.loads(result.stdout)
        return body

    def create(self, name: str, deployment: str) -> dict[str, Any]:
        manifest = {
            "apiVersion": API_VERSION,
            "kind": "LLMModelDeployment",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {"projectId": "proj", "llmModelDeploymentId": deployment},
        }
        return self.kubectl_json("create", "-f", "-", input=json.dumps(manifest))

    def get(self, name: str) -> dict[str, Any]:
        return self.kubectl_json("get", "llmd", name, "-n", self.namespace)

    def delete(self, name: str) -> None:
        self.plane.kubectl("delete", "llmd", name, "-n", self.namespace, "--wait=true")

    async def advance(self, seconds: float, step: float = 1.0) -> None:
        end = self.clock.now + seconds
        while self.clock.now < end:
            self.clock.now = min(end, self.clock.now + step)
            await self.poller.step()
            await self.poller.drain()

    def condition(self, name: str, kind: str) -> dict[str, Any]:
        conditions = self.get(name).get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == kind), {})


@pytest.fixture
async def loop(control_plane: ControlPlane, crd_installed: object, namespace: str) -> AsyncIterator[Loop]:
    harness = Loop(control_plane, namespace)
    yield harness
    delete_all_resources(control_plane, namespace)
    task = asyncio.create_task(harness.poller.run())
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    harness.gateway.close()
    await asyncio.to_thread(harness.api.close)


async def test_a_hostile_answer_is_bounded_so_the_api_server_takes_the_status(loop: Loop) -> None:
    """Item 3: an integer beyond int64 and 3 MB of text would make the API server refuse the patch
    (422 and etcd's request size limit); bounded, the status is stored and says what was left out."""
    loop.northflank.put("proj", "dep", status="running")
    body = loop.northflank.projects["proj"]["dep"]
    body["spec"]["replicas"] = 2**64
    body["spec"]["blob"] = "x" * 3_000_000
    loop.registry.observe("ADDED", loop.create("hostile", "dep"))
    await loop.advance(3)
    status = loop.get("hostile")["status"]
    assert status["phase"] == "running"
    assert "replicas" not in status["deploymentSpec"]
    assert "blob" not in status["deploymentSpec"]
    synced = loop.condition("hostile", "Synced")
    assert synced["status"] == "True"
    assert "spec.replicas" in synced["message"]


async def test_a_status_the_api_server_refuses_is_replaced_by_a_small_one(
    loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 3: whatever still gets refused (here: bounding switched off, a port beyond int64 reaches
    the API server, which answers 422), Ready stops saying True and the status says why."""
    loop.northflank.put("proj", "dep", status="running")
    loop.registry.observe("ADDED", loop.create("refused", "dep"))
    await loop.advance(3)
    assert loop.condition("refused", "Ready")["status"] == "True"

    monkeypatch.setattr(status_module, "bounded", lambda value, omitted, **_: without_nulls(value))
    loop.northflank.projects["proj"]["dep"]["ports"][0]["internalPort"] = 2**64
    await loop.advance(70)
    status = loop.get("refused")["status"]
    ready, synced = loop.condition("refused", "Ready"), loop.condition("refused", "Synced")
    assert (ready["status"], ready["reason"]) == ("Unknown", "StatusRejected")
    assert (synced["status"], synced["reason"]) == ("False", "StatusRejected")
    assert set(status) == {"phase", "observedGeneration", "conditions"}


async def test_a_late_answer_never_lands_on_a_resource_re_created_under_the_same_name(loop: Loop) -> None:
    """Item 13: the answer for a deleted object arrives after a new object of the same name (pointing at
    another deployment) was created, before the watch told the operator. The API server refuses the
    write (resourceVersion precondition), and the new object is not forgotten."""
    loop.northflank.put("proj", "old", status="crashed")
    loop.northflank.put("proj", "new", status="running")
    first = loop.create("llm", "old")
    loop.registry.observe("ADDED", first)
    gate, started = asyncio.Event(), asyncio.Event()
    original_get = loop.northflank.get_llm_model_deployment

    async def slow_get(*args: Any, **kwargs: Any) -> Any:
        started.set()
        await gate.wait()
        return await original_get(*args, **kwargs)

    loop.northflank.get_llm_model_deployment = slow_get  # type: ignore[method-assign]
    await loop.poller.step()
    await loop.poller.reconciled()  # attached, observed after the batch delay
    loop.clock.now += 2
    await loop.poller.step()
    async with asyncio.timeout(5):
        await started.wait()  # the GET of "old" is in flight
    loop.delete("llm")
    second = loop.create("llm", "new")
    gate.set()
    await loop.poller.drain()
    assert "phase" not in (loop.get("llm").get("status") or {}), "the old deployment's answer was not written"

    loop.registry.observe("ADDED", second)  # the watch catches up
    loop.northflank.get_llm_model_deployment = original_get  # type: ignore[method-assign]
    await loop.advance(3)
    tracked = loop.registry.get(ResourceKey(loop.namespace, "llm"))
    assert tracked is not None
    assert tracked.uid == second["metadata"]["uid"]
    assert loop.get("llm")["status"]["phase"] == "running"


async def test_a_resync_forgets_what_was_deleted_while_the_watch_was_away(
    control_plane: ControlPlane, crd_installed: object, namespace: str
) -> None:
    """Item 14: the registry still holds a resource deleted during a watch gap; the periodic resync
    lists the namespace from the API server and forgets it (and only it)."""
    harness = Loop(control_plane, namespace, resync_seconds=30)
    try:
        harness.northflank.put("proj", "a")
        harness.northflank.put("proj", "b")
        harness.registry.observe("ADDED", harness.create("ghost", "a"))
        harness.registry.observe("ADDED", harness.create("alive", "b"))
        await harness.advance(3)
        harness.delete("ghost")  # the registry is never told
        await harness.advance(40, step=5)
        assert harness.registry.get(ResourceKey(namespace, "ghost")) is None
        assert harness.registry.get(ResourceKey(namespace, "alive")) is not None
        harness.northflank.calls.clear()
        await harness.advance(120, step=5)
        assert all(call[2] != "a" for call in harness.northflank.calls)
    finally:
        delete_all_resources(control_plane, namespace)
        harness.gateway.close()
        await asyncio.to_thread(harness.api.close)
