"""``import --manage`` (issue 17): forProvider from what is running, so that importing and applying
shows zero drift (and so sends nothing); the manifests are what the real API server accepts."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import yaml

from northflank_api_simulator.defaults import default_spec
from northflank_llm_operator.management import ForProvider, compute_drift
from tests.controlplane.controlplane import ControlPlane
from tests.simulator.fixtures import RunningSimulator, open_account
from tests.support.importing import run_import

TOKEN = "import-token"
WRITER = "manage-import-seeder"  # creates deployments through the public API, as a person would
TEAM = "team-import"
PROJECT = "managed-project"
ROUTE = f"/v1/projects/{PROJECT}/llm-model-deployments"


def create(api: httpx.Client, body: dict[str, Any]) -> None:
    response = api.post(ROUTE, json=body)
    assert response.status_code == 200, response.text


def seed(simulator: RunningSimulator) -> None:
    """Deployments with every field a request can set, and the awkward cases of what GET reports."""
    control = open_account(simulator, team=TEAM, projects=[PROJECT], token=TOKEN)
    control.add_token(WRITER, team_id=TEAM)
    control.set_lifecycle(0)
    with simulator.api(WRITER) as api:
        create(
            api,
            {
                "name": "Chat Model",
                "description": "served by vLLM",
                "tags": ["llm", "gpu-heavy"],
                "ports": [
                    # domains are accepted by a create but never returned by GET
                    {"name": "http", "internalPort": 8000, "protocol": "HTTP", "public": True,
                     "domains": ["chat.example.com"]},
                    {"name": "grpc", "internalPort": 9000, "protocol": "TCP", "public": False},
                    {"name": "metrics", "internalPort": 9100, "protocol": "HTTP", "public": True,
                     "disableNfDomain": True},
                ],
                "spec": {"type": "custom", "configuration": default_spec()["configuration"]},
            },
        )  # fmt: skip
        create(api, {"name": "minimal", "spec": {"type": "custom", "configuration": {"engine": "vllm"}}})
    with_null = default_spec()
    with_null["configuration"]["nodeConfiguration"]["storage"]["shmSize"] = None
    control.put_deployment(PROJECT, "with-null", name="with-null", spec=with_null, status="running")
    newer = default_spec()
    newer["configuration"]["speculativeDecoding"] = {"method": "eagle"}  # a field newer than the clients
    control.put_deployment(PROJECT, "newer-field", name="newer field", spec=newer, status="running")
    control.put_deployment(PROJECT, "renamed", name="Production chat model", status="running")


def imported(simulator: RunningSimulator, *args: str) -> tuple[list[dict[str, Any]], str]:
    result = run_import(simulator.base_url, TOKEN, "--project", PROJECT, "--namespace", "models", *args)
    assert result.returncode == 0, result.stderr
    assert TOKEN not in result.stdout + result.stderr
    assert WRITER not in result.stdout + result.stderr
    return list(yaml.safe_load_all(result.stdout)), result.stderr


def observed(simulator: RunningSimulator, deployment_id: str) -> dict[str, Any]:
    with simulator.api(TOKEN) as api:
        response = api.get(f"{ROUTE}/{deployment_id}")
    assert response.status_code == 200
    data: dict[str, Any] = response.json()["data"]
    return data


def test_import_manage_round_trips_with_zero_drift(simulator: RunningSimulator) -> None:
    seed(simulator)
    manifests, stderr = imported(simulator, "--manage")
    by_id = {m["spec"]["llmModelDeploymentId"]: m["spec"] for m in manifests}
    assert sorted(by_id) == ["chat-model", "minimal", "newer-field", "renamed", "with-null"]
    for deployment_id, spec in by_id.items():
        assert spec["managementPolicies"] == ["Observe", "Update"], "the default"
        assert spec["adoptExisting"] is True, "Update needs it: the resource did not create the deployment"
        for_provider = ForProvider.model_validate(spec["forProvider"])
        assert compute_drift(for_provider, observed(simulator, deployment_id)) == [], deployment_id

    chat = by_id["chat-model"]["forProvider"]
    assert chat["name"] == "Chat Model"
    assert chat["description"] == "served by vLLM"
    assert chat["tags"] == ["llm", "gpu-heavy"]
    assert chat["ports"] == [
        {"name": "http", "internalPort": 8000, "protocol": "HTTP", "public": True, "disableNfDomain": False},
        {"name": "grpc", "internalPort": 9000, "protocol": "TCP", "public": False, "disableNfDomain": False},
        {"name": "metrics", "internalPort": 9100, "protocol": "HTTP", "public": True, "disableNfDomain": True},
    ], "ports as a request spells them: no id or dns, and no domains (GET never returns them)"
    configuration = default_spec()["configuration"]
    assert configuration["nodeConfiguration"]["storage"].pop("shmSize", 0) is None, "the default has a null"
    assert chat["spec"] == {"type": "custom", "configuration": configuration}, "JSON nulls left out, as CRDs store none"
    assert "shmSize" not in by_id["with-null"]["forProvider"]["spec"]["configuration"]["nodeConfiguration"]["storage"]
    assert "speculativeDecoding" not in by_id["newer-field"]["forProvider"]["spec"]["configuration"]
    assert "deployment newer-field reports fields no request can set (spec.configuration.speculativeDecoding)" in stderr
    assert "name" not in by_id["renamed"]["forProvider"], "a name that does not slug to the id would be InvalidName"
    assert "deployment renamed is named 'Production chat model', which does not slug to its id" in stderr
    assert "no custom domains" in stderr


def test_import_manage_with_every_policy_and_only_observe(simulator: RunningSimulator) -> None:
    seed(simulator)
    everything, _ = imported(simulator, "--manage", "--management-policies", "*")
    assert {(m["spec"]["managementPolicies"] == ["*"], m["spec"]["adoptExisting"]) for m in everything} == {
        (True, True)
    }
    observing, _ = imported(simulator, "--manage", "--management-policies", "Observe")
    assert all(m["spec"]["managementPolicies"] == ["Observe"] for m in observing)
    assert all("adoptExisting" not in m["spec"] for m in observing), "nothing to adopt when nothing is written"
    assert all("forProvider" in m["spec"] for m in observing), "drift is shown in Observe mode too"
    plain, _ = imported(simulator)
    assert all(set(m["spec"]) == {"projectId", "llmModelDeploymentId"} for m in plain), "without --manage: as before"


@pytest.mark.parametrize(
    ("policies", "complaint"),
    [
        ("Update", "must include Observe"),
        ("*,Observe", "stands alone"),
        ("Observe,Destroy", "policies are Observe, Create, Update, Delete, *"),
    ],
)
def test_policies_the_api_server_would_refuse_are_a_usage_error(
    simulator: RunningSimulator, policies: str, complaint: str
) -> None:
    result = run_import(simulator.base_url, TOKEN, "--project", PROJECT, "--manage", "--management-policies", policies)
    assert result.returncode == 2
    assert complaint in result.stderr
    assert simulator.control.requests() == [], "refused before any request"


def test_the_policies_need_manage(simulator: RunningSimulator) -> None:
    result = run_import(simulator.base_url, TOKEN, "--project", PROJECT, "--management-policies", "*")
    assert result.returncode == 2
    assert "--management-policies needs --manage" in result.stderr


def test_the_real_api_server_accepts_the_manifests_as_they_are(
    simulator: RunningSimulator, control_plane: ControlPlane, crd_installed: object, namespace: str
) -> None:
    """Strict field validation: an unknown or pruned field, or a CEL rule broken, fails the apply."""
    seed(simulator)
    for policies in ("Observe,Update", "*", "Observe,Create,Update,Delete"):
        result = run_import(
            simulator.base_url, TOKEN, "--project", PROJECT, "--namespace", namespace, "--manage",
            "--management-policies", policies,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        control_plane.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", input=result.stdout)
    control_plane.kubectl("apply", "--validate=strict", "-f", "-", input=result.stdout)
    stored = yaml.safe_load(control_plane.kubectl("get", "llmd", "chat-model", "-n", namespace, "-o", "yaml").stdout)
    printed = next(m for m in yaml.safe_load_all(result.stdout) if m["metadata"]["name"] == "chat-model")
    assert stored["spec"] == printed["spec"], "the API server stored every field as printed (nothing pruned)"
    assert (
        compute_drift(ForProvider.model_validate(stored["spec"]["forProvider"]), observed(simulator, "chat-model"))
        == []
    )
