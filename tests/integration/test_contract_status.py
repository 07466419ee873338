"""What the real API server keeps of a mirrored answer (issue 16): a newer ``dns.*`` field is not pruned,
and a null sent by Northflank stays distinguishable from an absent field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes
import pytest

from northflank_llm_operator.kube import KubernetesGateway
from northflank_llm_operator.northflank import LLMModelDeployment
from northflank_llm_operator.resource import ResourceKey
from northflank_llm_operator.status import Observation, Timing, compute_status
from tests.controlplane.controlplane import ControlPlane
from tests.support.cluster import API_VERSION
from tests.unit.payloads import full_deployment

pytestmark = pytest.mark.integration


async def test_new_dns_fields_and_nulls_survive_the_api_server(
    control_plane: ControlPlane, crd_installed: object, namespace: str
) -> None:
    manifest = {
        "apiVersion": API_VERSION,
        "kind": "LLMModelDeployment",
        "metadata": {"name": "newer", "namespace": namespace},
        "spec": {"projectId": "proj", "llmModelDeploymentId": "dep"},
    }
    control_plane.kubectl("create", "-f", "-", input=json.dumps(manifest))
    body = full_deployment(dns={"base": "dep--proj--abcd.code.run", "zone": "code.run", "ipv6": "fd00::1"})
    body["spec"]["configuration"]["nodeConfiguration"]["storage"]["shmSize"] = None
    observation = Observation(LLMModelDeployment.model_validate(body))
    timing = Timing(now=datetime(2026, 12, 6, tzinfo=UTC), heartbeat=timedelta(minutes=10), stale_after=timedelta(90))
    update = compute_status({}, observation, generation=1, timing=timing)

    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(control_plane.kubeconfig), client_configuration=configuration
    )
    api = kubernetes.client.ApiClient(configuration)
    gateway = KubernetesGateway(api, instance="test")
    try:
        stored: dict[str, Any] = dict(await gateway.patch_status(ResourceKey(namespace, "newer"), update.patch))
    finally:
        gateway.close()
        api.close()  # type: ignore[no-untyped-call]

    status = stored["status"]
    assert status["dns"] == {"base": "dep--proj--abcd.code.run", "zone": "code.run", "ipv6": "fd00::1"}
    assert status["nullFields"] == ["deploymentSpec.configuration.nodeConfiguration.storage.shmSize"]
    # What the API server stored is what the operator computes again: no write on the next poll.
    assert not compute_status(status, observation, generation=1, timing=timing).changed
