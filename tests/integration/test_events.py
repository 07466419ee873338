"""Event aggregation (issue 14, item 6) on the real kube-apiserver: the gateway's named create and
count PATCH, driven by the EventRecorder on a fake clock; no operator process needed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes
import pytest

from northflank_llm_operator.conditions import format_time
from northflank_llm_operator.events import EventCorrelator, EventRecorder
from northflank_llm_operator.kube import KubernetesGateway
from northflank_llm_operator.resource import ResourceKey
from northflank_llm_operator.status import Event
from tests.controlplane.controlplane import ControlPlane
from tests.support.cluster import API_VERSION, delete_all_resources

pytestmark = pytest.mark.integration

FAILED = Event(
    "Warning", "InvalidResponse", "Northflank's answer to /v1/projects/proj/llm-model-deployments is not JSON."
)


class Clock:
    def __init__(self) -> None:
        # Whole seconds: core/v1 Event timestamps are stored with second precision.
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Setup:
    plane: ControlPlane
    namespace: str
    gateway: KubernetesGateway
    clock: Clock
    recorder: EventRecorder
    key: ResourceKey
    uid: str

    def events(self) -> list[dict[str, Any]]:
        result = self.plane.kubectl(
            "get", "events", "-n", self.namespace, "--field-selector", f"involvedObject.uid={self.uid}", "-o", "json"
        )
        items: list[dict[str, Any]] = json.loads(result.stdout)["items"]
        return items


@pytest.fixture
async def setup(control_plane: ControlPlane, crd_installed: object, namespace: str) -> AsyncIterator[Setup]:
    manifest = {
        "apiVersion": API_VERSION,
        "kind": "LLMModelDeployment",
        "metadata": {"name": "llama", "namespace": namespace},
        "spec": {"projectId": "proj", "llmModelDeploymentId": "dep"},
    }
    created = json.loads(control_plane.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(manifest)).stdout)
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(control_plane.kubeconfig), client_configuration=configuration
    )
    api = kubernetes.client.ApiClient(configuration)
    gateway = KubernetesGateway(api, instance="test")
    clock = Clock()
    recorder = EventRecorder(gateway, EventCorrelator(clock))
    yield Setup(
        control_plane, namespace, gateway, clock, recorder, ResourceKey(namespace, "llama"), created["metadata"]["uid"]
    )
    delete_all_resources(control_plane, namespace)
    gateway.close()
    await asyncio.to_thread(api.close)


async def test_repeated_failures_are_one_event_whose_count_the_gateway_patches(setup: Setup) -> None:
    first = setup.clock.now
    outcomes = []
    for _ in range(5):
        outcomes.append(await setup.recorder.record(setup.key, setup.uid, FAILED))
        setup.clock.now += timedelta(seconds=30)
    assert outcomes == ["created", "patched", "patched", "patched", "patched"]
    (event,) = setup.events()
    assert event["count"] == 5
    assert event["firstTimestamp"] == format_time(first)
    assert event["lastTimestamp"] == format_time(first + timedelta(seconds=120))
    assert (event["type"], event["reason"], event["message"]) == (FAILED.type, FAILED.reason, FAILED.message)
    assert event["involvedObject"]["uid"] == setup.uid
    assert event["metadata"]["name"].startswith("llama.")

    # Another message is another Event; the same one after ten quiet minutes is a new Event too.
    other = Event("Warning", "ServerError", "Northflank answered with HTTP 503.")
    assert await setup.recorder.record(setup.key, setup.uid, other) == "created"
    setup.clock.now += timedelta(minutes=11)
    assert await setup.recorder.record(setup.key, setup.uid, FAILED) == "created"
    assert sorted((e["reason"], e["count"]) for e in setup.events()) == [
        ("InvalidResponse", 1),
        ("InvalidResponse", 5),
        ("ServerError", 1),
    ]


async def test_an_event_deleted_on_the_api_server_is_created_again_with_its_count(setup: Setup) -> None:
    assert await setup.recorder.record(setup.key, setup.uid, FAILED) == "created"
    (event,) = setup.events()
    setup.plane.kubectl("delete", "event", event["metadata"]["name"], "-n", setup.namespace)
    setup.clock.now += timedelta(seconds=10)
    assert await setup.recorder.record(setup.key, setup.uid, FAILED) == "created"
    (again,) = setup.events()
    assert again["count"] == 2


async def test_the_gateway_tells_an_existing_or_missing_event_apart(setup: Setup) -> None:
    now = setup.clock.now
    created = await setup.gateway.create_event(
        setup.key, setup.uid, FAILED, name="llama.fixed", count=3, first_timestamp=now, last_timestamp=now
    )
    again = await setup.gateway.create_event(
        setup.key, setup.uid, FAILED, name="llama.fixed", count=1, first_timestamp=now, last_timestamp=now
    )
    assert (created, again) == (True, False)
    assert not await setup.gateway.patch_event(setup.namespace, "llama.missing", count=2, last_timestamp=now)
    assert await setup.gateway.patch_event(
        setup.namespace, "llama.fixed", count=7, last_timestamp=now + timedelta(seconds=5)
    )
    (event,) = setup.events()
    assert (event["count"], event["lastTimestamp"]) == (7, format_time(now + timedelta(seconds=5)))
