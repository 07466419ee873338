"""Management (issue 17) on the real API server: the CRD refuses policy combinations that make no sense,
and a resource in Observe mode with forProvider shows drift (status.drift, UpToDate) and writes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from northflank_api_simulator.control import SimulatorControl
from tests.controlplane.controlplane import ControlPlane
from tests.simulator.fixtures import RunningSimulator, open_account
from tests.support.cluster import PROJECT, Cluster
from tests.support.operator_process import ModuleOperatorStarter, OperatorProcess

pytestmark = pytest.mark.integration

OPERATOR_TOKEN = "nf-management-drift-token"
TEAM = "team-drift"
API_VERSION = "northflank-llm-operator.dev/v1alpha1"


@pytest.fixture(scope="module")
def operator(start_module_operator: ModuleOperatorStarter) -> Iterator[OperatorProcess]:
    with start_module_operator(api_token=OPERATOR_TOKEN, poll_interval_seconds=1.0) as process:
        yield process


@pytest.fixture
def nf(simulator: RunningSimulator) -> SimulatorControl:
    return open_account(simulator, team=TEAM, projects=[PROJECT], token=OPERATOR_TOKEN)


def _manifest(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "LLMModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"projectId": PROJECT, "llmModelDeploymentId": name, **spec},
    }


def _server_dry_run(plane: ControlPlane, manifest: dict[str, Any]) -> tuple[bool, str]:
    result = plane.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(manifest), check=False)
    return result.returncode == 0, result.stderr


CONFIGURATION = {"spec": {"configuration": {"engine": "vllm", "name": "Qwen/Qwen3-0.6B"}}}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"managementPolicies": ["*", "Observe"]}, '"*" already means every policy and cannot be combined'),
        ({"managementPolicies": ["Create", "Update"]}, "managementPolicies must include Observe"),
        ({"managementPolicies": []}, "should have at least 1 items"),
        ({"managementPolicies": ["Observe", "Observe"]}, "Duplicate value"),
        ({"managementPolicies": ["Observe", "Adopt"]}, 'supported values: "Observe", "Create"'),
        ({"managementPolicies": ["Observe", "Create"]}, 'the Create (or "*") policy needs forProvider.spec'),
        ({"managementPolicies": ["*"], "forProvider": {"description": "d"}}, "needs forProvider.spec"),
        ({"forProvider": {"spec": {"configuration": {"engine": "sglang"}}}}, 'supported values: "vllm"'),
        ({"forProvider": {"ports": [{"name": "http", "internalPort": 8000}]}}, "protocol: Required value"),
        ({"forProvider": {"futureField": 1}}, 'unknown field "spec.forProvider.futureField"'),
        (
            {
                "forProvider": {
                    "spec": {
                        "configuration": {
                            "architecture": {"workerConfig": {"sequenceLengthConfig": {"maxModelLength": "long"}}}
                        }
                    }
                }
            },
            'maxModelLength is a number of tokens or "auto"',
        ),
    ],
)
def test_the_api_server_refuses_what_makes_no_sense(
    control_plane: ControlPlane, crd_installed: object, namespace: str, spec: dict[str, Any], message: str
) -> None:
    accepted, stderr = _server_dry_run(control_plane, _manifest(namespace, "bad", **spec))
    assert not accepted
    assert message in stderr, stderr


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"managementPolicies": ["Observe"]},
        {"managementPolicies": ["Observe", "Update"], "adoptExisting": True, "forProvider": {"tags": ["a"]}},
        {"managementPolicies": ["Observe", "Delete"]},
        {"managementPolicies": ["Observe", "Create", "Update", "Delete"], "forProvider": CONFIGURATION},
        {"managementPolicies": ["*"], "forProvider": {"name": "Good", **CONFIGURATION}},
        {
            "forProvider": {
                "ports": [{"name": "http", "internalPort": 8000, "protocol": "HTTP", "public": True}],
                "spec": {
                    "type": "custom",
                    "configuration": {
                        "nodeConfiguration": {"storage": {"storageSize": 6144, "shmSize": None}},
                        "architecture": {"workerConfig": {"sequenceLengthConfig": {"maxModelLength": "auto"}}},
                    },
                },
            }
        },
    ],
)
def test_the_api_server_accepts_sensible_specs(
    control_plane: ControlPlane, crd_installed: object, namespace: str, spec: dict[str, Any]
) -> None:
    accepted, stderr = _server_dry_run(control_plane, _manifest(namespace, "good", **spec))
    assert accepted, stderr


def _for_provider_of(served: dict[str, Any]) -> dict[str, Any]:
    """What ``import --manage`` would declare for a served deployment: its description, ports and whole
    configuration, as the create request spells them (the CRD's typed schema accepts it as served)."""
    configuration = served["spec"]["configuration"]
    ports = [{k: p[k] for k in ("name", "internalPort", "protocol", "public") if k in p} for p in served["ports"]]
    return {"description": served["description"], "ports": ports, "spec": {"configuration": configuration}}


def test_observe_mode_shows_drift_made_in_the_ui_and_writes_nothing(cluster: Cluster, nf: SimulatorControl) -> None:
    served = nf.put_deployment(PROJECT, "drifty", status="running", description="as declared")
    nf.put_deployment(PROJECT, "plain", status="running")
    cluster.apply("drifty", "drifty", forProvider=_for_provider_of(served))
    cluster.apply("plain", "plain")

    matching = cluster.wait_condition("drifty", "UpToDate", "True", "UpToDate")
    assert matching["drift"] == []

    # Someone changes the deployment in Northflank's UI.
    nf.ui_update(PROJECT, "drifty", description="changed in the UI", spec={"configuration": {"revision": "ui-rev"}})
    drifted = cluster.wait_condition("drifty", "UpToDate", "False", "Drifted")
    paths = {d["path"]: d for d in drifted["drift"]}
    assert paths["description"] == {
        "path": "description",
        "desired": '"as declared"',
        "observed": '"changed in the UI"',
    }
    assert paths["spec.configuration.revision"] == {
        "path": "spec.configuration.revision",
        "desired": '"main"',
        "observed": '"ui-rev"',
    }
    assert len(paths) == 2, drifted["drift"]
    # Drift is information in Observe mode: the deployment is still Ready once it runs again.
    cluster.wait_condition("drifty", "Ready", "True", "Running")

    # The UI puts it back: up to date again.
    nf.ui_update(PROJECT, "drifty", description="as declared", spec={"configuration": served["spec"]["configuration"]})
    back = cluster.wait_condition("drifty", "UpToDate", "True", "UpToDate")
    assert back["drift"] == []

    # Without forProvider: neither drift nor UpToDate, as before management existed.
    plain = cluster.wait_condition("plain", "Ready", "True", "Running")
    assert "drift" not in plain
    assert "UpToDate" not in {c["type"] for c in plain["conditions"]}

    stats = nf.stats()
    assert sum(row["count"] for row in stats if row["route"] in ("get", "list")) > 0, stats
    assert [row for row in stats if row["route"] in ("create", "update", "delete")] == []
    assert [r for r in nf.requests() if r["method"] in ("POST", "DELETE", "PUT", "PATCH")] == []
