"""The operator as a real process, against the real kube-apiserver and the simulator as a real server."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from northflank_api_simulator.control import SimulatorControl
from northflank_llm_operator.status import OWNED_KEYS as OWNED_STATUS_KEYS
from tests.simulator.fixtures import RunningSimulator, open_account
from tests.support.cluster import (
    DEADLINE,
    DEFAULT_COLUMNS,
    PROJECT,
    WIDE_COLUMNS,
    Cluster,
    conditions_by_type,
    parse_table,
    without_nulls,
)
from tests.support.operator_process import ModuleOperatorStarter, OperatorProcess
from tests.support.waiting import wait_for
from tests.unit.payloads import SEED_PAGE_EXAMPLE

pytestmark = pytest.mark.integration

OPERATOR_TOKEN = "nf-operator-wide-token"
TEAM = "team-one"


@pytest.fixture(scope="module")
def operator(start_module_operator: ModuleOperatorStarter) -> Iterator[OperatorProcess]:
    with start_module_operator(
        api_token=OPERATOR_TOKEN,
        poll_interval_seconds=1.0,
        other_secrets=("team-two-token", "org-token"),
        liveness=True,
        # A Secret that was missing is read again after the credentials cache time (30 s by default):
        # shorter here, so that picking it up once created does not wait half a minute.
        extra_env={"NORTHFLANK_LLM_OPERATOR_CREDENTIALS_CACHE_SECONDS": "3"},
    ) as process:
        yield process


@pytest.fixture
def nf(simulator: RunningSimulator) -> SimulatorControl:
    return open_account(simulator, team=TEAM, projects=[PROJECT], token=OPERATOR_TOKEN)


def test_resource_follows_its_deployment_through_every_phase(cluster: Cluster, nf: SimulatorControl) -> None:
    nf.put_deployment(PROJECT, "qwen", status="pending")
    cluster.apply("qwen", "qwen")
    cluster.wait_phase("qwen", "pending")

    for phase in ("provisioning", "starting", "running", "paused", "crashed", "deleting"):
        nf.patch_deployment(PROJECT, "qwen", status=phase)
        status = cluster.wait_phase("qwen", phase)
        ready = conditions_by_type(status)["Ready"]
        assert ready["status"] == ("True" if phase == "running" else "False")
        assert conditions_by_type(status)["Synced"]["status"] == "True"
        assert ("Stalled" in conditions_by_type(status)) is (phase == "crashed")
        assert ("Reconciling" in conditions_by_type(status)) is (phase in ("provisioning", "starting", "deleting"))

    cluster.wait_events("qwen", lambda events: [e["reason"] for e in events].count("PhaseChanged") >= 7, "7 changes")

    # The operator only ever writes its own status fields: no kopf bookkeeping, finalizers or annotations.
    body = cluster.get("qwen")
    assert set(body["status"]) <= set(OWNED_STATUS_KEYS)
    assert "finalizers" not in body["metadata"]
    assert not [a for a in body["metadata"].get("annotations", {}) if "kopf" in a]


def test_ports_dns_and_the_rest_of_the_response_match_the_api_exactly(cluster: Cluster, nf: SimulatorControl) -> None:
    served = nf.put_deployment(
        PROJECT,
        "llama",
        status="running",
        description="Llama on two GPUs",
        tags=["prod", "gpu-a100"],
        ports=[
            {"id": "p01", "name": "http", "internalPort": 8000, "protocol": "HTTP", "public": True,
             "dns": "http--llama--llm-project--x1y2.code.run"},
            {"id": "p02", "name": "metrics", "internalPort": 9090, "protocol": "HTTP", "public": False},
        ],
    )  # fmt: skip
    cluster.apply("llama", "llama")
    status = cluster.wait_phase("llama", "running")
    # JSON nulls (e.g. spec...storage.shmSize) are the one thing not mirrored: the CRD has no nullable fields.
    served = without_nulls(served)
    assert status["dns"] == served["dns"]
    assert status["ports"] == served["ports"]
    assert status["deploymentSpec"] == served["spec"]
    expected_rest = {k: v for k, v in served.items() if k not in ("dns", "ports", "spec")}
    assert status["deployment"] == expected_rest
    assert status["observedGeneration"] == cluster.get("llama")["metadata"]["generation"]


def test_kubectl_get_prints_the_columns(cluster: Cluster, nf: SimulatorControl) -> None:
    served = nf.put_deployment(PROJECT, "mistral", status="running")
    cluster.apply("mistral", "mistral")
    cluster.wait_condition("mistral", "Ready", "True")

    default = DEFAULT_COLUMNS
    [row] = parse_table(cluster.plane.kubectl("get", "llmd", "-n", cluster.namespace).stdout, default)
    assert [row[k] for k in default[:6]] == ["mistral", "True", "running", "Running", "deepseek-ai/DeepSeek-V3",
                                             "h200-141 × 8"]  # fmt: skip

    wide_columns = WIDE_COLUMNS
    [wide] = parse_table(
        cluster.plane.kubectl("get", "llmd", "-n", cluster.namespace, "-o", "wide").stdout, wide_columns
    )
    assert [wide[k] for k in wide_columns[8:]] == [
        "vllm", "1", "https://" + served["ports"][0]["dns"], PROJECT, "mistral", "", "1",
        "The deployment is running.",
    ], "EXPECTED is empty while spec.expectedPhase is unset"  # fmt: skip

    by_category = cluster.plane.kubectl("get", "northflank", "-n", cluster.namespace).stdout
    assert [line.split()[0] for line in by_category.splitlines()] == ["NAME", "mistral"]


def test_an_unchanged_deployment_produces_no_status_writes(cluster: Cluster, nf: SimulatorControl) -> None:
    nf.put_deployment(PROJECT, "steady", status="running")
    cluster.apply("steady", "steady")
    cluster.wait_condition("steady", "Ready", "True")
    # Let the first write's echo settle, then watch several polls go by.
    before = cluster.get("steady")
    polls_before = len(nf.requests(path_contains="/llm-model-deployments/steady"))
    wait_for(
        lambda: len(nf.requests(path_contains="/llm-model-deployments/steady")) >= polls_before + 4,
        timeout=DEADLINE,
        message="four more polls of the steady deployment",
    )
    after = cluster.get("steady")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["status"]["lastSyncTime"] == before["status"]["lastSyncTime"]


def test_kubectl_wait_gates_on_ready(cluster: Cluster, nf: SimulatorControl) -> None:
    nf.put_deployment(PROJECT, "gated", status="starting")
    nf.run_script(PROJECT, "gated", [{"afterSeconds": 3, "status": "running"}])
    cluster.apply("gated", "gated")
    cluster.plane.kubectl(
        "wait", "--for=condition=Ready", "llmd/gated", "-n", cluster.namespace, f"--timeout={DEADLINE:.0f}s",
        timeout=DEADLINE + 10,
    )  # fmt: skip
    assert cluster.status("gated")["phase"] == "running"


def test_the_reference_pages_example_response_explains_itself(cluster: Cluster, nf: SimulatorControl) -> None:
    nf.put_deployment(PROJECT, "healthy", status="running")
    nf.put_deployment(PROJECT, "deepseek-v3-deployment", status="running")
    nf.add_fault(status=200, json_body=SEED_PAGE_EXAMPLE, deployment_id="deepseek-v3-deployment")
    # Alone in its project, the resource is observed with a GET, which the fault answers.
    cluster.apply("deepseek", "deepseek-v3-deployment")

    synced = cluster.wait_condition("deepseek", "Synced", "False", "InvalidResponse")
    message = conditions_by_type(synced)["Synced"]["message"]
    assert "does not match the API contract" in message
    assert "data.id: Field required" in message
    assert conditions_by_type(synced)["Ready"]["status"] == "Unknown"
    assert synced["phase"] == "unknown"
    cluster.apply("healthy", "healthy")
    cluster.wait_condition("healthy", "Ready", "True")
    cluster.operator.assert_alive()
    cluster.wait_events(
        "deepseek",
        lambda events: ("InvalidResponse", "Warning") in [(e["reason"], e["type"]) for e in events],
        "an InvalidResponse warning",
    )


@dataclass(frozen=True)
class FaultCase:
    name: str
    inject: Callable[[SimulatorControl, str], None]
    undo: Callable[[SimulatorControl, str], None]
    reason: str
    ready: str


def _revoke(nf: SimulatorControl, _: str) -> None:
    nf.revoke_token(OPERATOR_TOKEN)


def _restore_token(nf: SimulatorControl, _: str) -> None:
    nf.add_token(OPERATOR_TOKEN, team_id=TEAM)


def _delete(nf: SimulatorControl, deployment: str) -> None:
    nf.delete_deployment(PROJECT, deployment)


def _recreate(nf: SimulatorControl, deployment: str) -> None:
    nf.put_deployment(PROJECT, deployment, status="running")


def _exhaust_budget(nf: SimulatorControl, _: str) -> None:
    # A real window of the simulator's rate limiter (three requests, then 429 until it resets), spent
    # by someone else sharing the account: the operator's own pacing would never run into it.
    nf.set_rate_limit(3, 12)
    with httpx.Client(base_url=nf.base_url, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}) as other:
        for _attempt in range(4):
            if other.get(f"/v1/projects/{PROJECT}/llm-model-deployments").status_code == 429:
                break


def _restore_budget(nf: SimulatorControl, _: str) -> None:
    nf.set_rate_limit(100_000, 3600)


def _server_error(nf: SimulatorControl, deployment: str) -> None:
    nf.add_fault(
        status=500, json_body={"error": {"status": 500, "message": "Internal error"}}, deployment_id=deployment
    )


def _clear_faults(nf: SimulatorControl, _: str) -> None:
    nf.clear_faults()


def _malformed_body(nf: SimulatorControl, deployment: str) -> None:
    nf.add_fault(status=200, body='{"data": {"name": "truncated', deployment_id=deployment)


def _slower_than_the_timeout(nf: SimulatorControl, deployment: str) -> None:
    # run_operator sets a 5 s request timeout.
    nf.add_fault(latency_seconds=8, deployment_id=deployment)


FAULTS = [
    FaultCase("401", _revoke, _restore_token, "AuthenticationFailed", "Unknown"),
    FaultCase("404", _delete, _recreate, "NotFound", "False"),
    FaultCase("429", _exhaust_budget, _restore_budget, "RateLimited", "True"),
    FaultCase("500", _server_error, _clear_faults, "ServerError", "True"),
    FaultCase("malformed-json", _malformed_body, _clear_faults, "InvalidResponse", "True"),
    # With polls every second, a 5 s timeout alone outlasts the 3-interval staleness window.
    FaultCase("timeout", _slower_than_the_timeout, _clear_faults, "Timeout", "Unknown"),
]


@pytest.mark.parametrize("case", FAULTS, ids=[case.name for case in FAULTS])
def test_errors_end_in_the_documented_condition_and_keep_the_last_observation(
    cluster: Cluster, nf: SimulatorControl, case: FaultCase
) -> None:
    deployment = f"fault-{case.name}"
    nf.put_deployment(PROJECT, deployment, status="running")
    cluster.apply(deployment, deployment)
    good = cluster.wait_condition(deployment, "Ready", "True")

    case.inject(nf, deployment)
    failed = cluster.wait_condition(deployment, "Synced", "False", case.reason)
    conditions = conditions_by_type(failed)
    assert conditions["Ready"]["status"] == case.ready
    for key in ("phase", "dns", "ports", "deployment", "deploymentSpec", "lastSyncTime"):
        assert failed[key] == good[key], f"{key} must keep the last good observation"
    assert OPERATOR_TOKEN not in json.dumps(failed)
    cluster.wait_events(
        deployment, lambda events: case.reason in [e["reason"] for e in events if e["type"] == "Warning"], case.reason
    )

    case.undo(nf, deployment)
    cluster.wait_condition(deployment, "Synced", "True")
    cluster.wait_condition(deployment, "Ready", "True")


def test_credentials_from_a_secret_in_the_resources_namespace(cluster: Cluster, nf: SimulatorControl) -> None:
    nf.put_project("other-project", team_id="team-two")
    nf.put_deployment("other-project", "phi", status="running")
    nf.add_token("team-two-token", team_id="team-two")
    cluster.plane.kubectl(
        "create", "secret", "generic", "team-two", "-n", cluster.namespace, "--from-literal=apiToken=team-two-token"
    )
    manifest = {
        "apiVersion": "northflank-llm-operator.dev/v1alpha1",
        "kind": "LLMModelDeployment",
        "metadata": {"name": "phi", "namespace": cluster.namespace},
        "spec": {
            "projectId": "other-project",
            "llmModelDeploymentId": "phi",
            "credentialsSecretRef": {"name": "team-two", "key": "apiToken"},
        },
    }
    cluster.plane.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    cluster.wait_condition("phi", "Ready", "True")


def test_a_missing_secret_is_explained_and_picked_up_once_created(cluster: Cluster, nf: SimulatorControl) -> None:
    nf.put_deployment(PROJECT, "later", status="running")
    cluster.apply("later", "later", credentialsSecretRef={"name": "not-yet"})
    failed = cluster.wait_condition("later", "Synced", "False", "CredentialsNotFound")
    assert "not-yet" in conditions_by_type(failed)["Synced"]["message"]
    assert conditions_by_type(failed)["Stalled"]["status"] == "True"
    cluster.plane.kubectl(
        "create", "secret", "generic", "not-yet", "-n", cluster.namespace, f"--from-literal=token={OPERATOR_TOKEN}"
    )
    cluster.wait_condition("later", "Ready", "True")


def test_organisation_token_uses_the_team_scoped_route(cluster: Cluster, nf: SimulatorControl) -> None:
    nf.put_deployment(PROJECT, "org-owned", status="running")
    nf.add_token("org-token", scope="org", team_ids=[TEAM])
    cluster.plane.kubectl(
        "create", "secret", "generic", "org", "-n", cluster.namespace, "--from-literal=token=org-token"
    )
    cluster.apply("org-owned", "org-owned", teamId=TEAM, credentialsSecretRef={"name": "org"})
    cluster.wait_condition("org-owned", "Ready", "True")
    paths = {r["path"] for r in nf.requests(path_contains="org-owned")}
    assert f"/v1/teams/{TEAM}/projects/{PROJECT}/llm-model-deployments/org-owned" in paths


def test_liveness_endpoint_reports_the_poll_loop(cluster: Cluster, nf: SimulatorControl) -> None:
    nf.put_deployment(PROJECT, "probed", status="running")
    cluster.apply("probed", "probed")
    cluster.wait_condition("probed", "Ready", "True")
    url = cluster.operator.liveness_url
    assert url is not None

    def healthy() -> dict[str, Any] | None:
        response = httpx.get(url, timeout=5)
        return response.json() if response.status_code == 200 else None

    report = wait_for(healthy, timeout=DEADLINE, message="a 200 from the liveness endpoint")
    assert report["trackedResources"] >= 1
