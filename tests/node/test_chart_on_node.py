"""The chart for real: its Pods on a real kubelet, the operator in-cluster, `helm test`, upgrade, rotation.

One release is installed once for the module, from the image built from the project's Dockerfile, into a
namespace that enforces the ``restricted`` Pod Security Standard (so the apiserver itself rejects a Pod
that misses any restricted-profile setting). The Northflank API simulator runs as a Pod and Service from
the same image; the operator reaches it by its cluster DNS name, the tests drive it through its Pod IP.
The tests run in file order and build on each other (install -> sync -> helm test -> upgrade -> rotate ->
uninstall).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

from northflank_api_simulator.control import SimulatorControl
from tests.controlplane.controlplane import ControlPlane
from tests.node.node import Node
from tests.support.waiting import wait_for

# The first test also pays for the session's node start (and, on a cold cache, the image build).
pytestmark = [pytest.mark.node, pytest.mark.timeout(1800)]

REPO: Final = Path(__file__).resolve().parents[2]
CHART: Final = REPO / "charts" / "northflank-llm-operator"
CRD_NAME: Final = "llmmodeldeployments.northflank-llm-operator.dev"
RELEASE: Final = "nfllm"
RELEASE_NS: Final = "nfllm-system"
SIM_NS: Final = "northflank-api"
APP_NS: Final = "team-apps"
PROJECT: Final = "llm-project"
TEAM: Final = "team-one"
TOKEN_A: Final = "nf-node-token-a"
TOKEN_B: Final = "nf-node-token-b"
TOKEN_C: Final = "nf-node-token-c"
TOKEN_D: Final = "nf-node-token-d"
TEAM_TOKEN_1: Final = "nf-node-team-token-1"
TEAM_TOKEN_2: Final = "nf-node-team-token-2"
DEADLINE: Final = 180.0
#: A token that may write (a manage- token, as everywhere in the suite) and what it creates.
MANAGE_TOKEN: Final = "manage-node-token"
MANAGED_CONFIGURATION: Final = {
    "engine": "vllm",
    "name": "google/gemma-3-1b-it",
    "nodeConfiguration": {"storage": {"storageSize": 6144}},
}
DELETE_FINALIZER: Final = "northflank-llm-operator.dev/delete-at-northflank"
RESTRICTED: Final = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def _json(plane: ControlPlane, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(plane.kubectl(*args, "-o", "json").stdout)
    return result


def _namespace(plane: ControlPlane, name: str) -> None:
    manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": RESTRICTED}}
    plane.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def _restricted_container() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


@dataclass
class Simulator:
    control: SimulatorControl
    service_url: str


@pytest.fixture(scope="module")
def simulator(node: Node) -> Iterator[Simulator]:
    """The Northflank API simulator as a Deployment + Service, from the operator's own image."""
    plane = node.plane
    _namespace(plane, SIM_NS)
    labels = {"app.kubernetes.io/name": "northflank-api-simulator"}
    manifests = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "northflank-api", "namespace": SIM_NS},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [
                            {
                                "name": "simulator",
                                "image": node.image,
                                "imagePullPolicy": "IfNotPresent",
                                "command": ["python", "-m", "northflank_api_simulator"],
                                "args": ["--host", "0.0.0.0", "--port", "8080"],  # noqa: S104 -- a Pod's own netns
                                "ports": [{"name": "http", "containerPort": 8080}],
                                "readinessProbe": {
                                    "httpGet": {"path": "/_simulator/healthz", "port": "http"},
                                    "periodSeconds": 2,
                                },
                                "securityContext": _restricted_container(),
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "northflank-api", "namespace": SIM_NS},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        },
    ]
    for manifest in manifests:
        plane.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    plane.kubectl(
        "rollout", "status", "deployment/northflank-api", "-n", SIM_NS, f"--timeout={DEADLINE:.0f}s",
        timeout=DEADLINE + 10,
    )  # fmt: skip
    pod = _json(plane, "get", "pods", "-n", SIM_NS, "-l", "app.kubernetes.io/name=northflank-api-simulator")["items"][0]
    # The test process sits on the node, on the Pod subnet's bridge: it reaches the Pod IP directly.
    control = SimulatorControl(f"http://{pod['status']['podIP']}:8080")
    control.wait_healthy(timeout=30)
    control.add_token(TOKEN_A, team_id=TEAM)
    control.put_project(PROJECT, team_id=TEAM)
    try:
        yield Simulator(control, f"http://northflank-api.{SIM_NS}.svc.cluster.local")
    finally:
        control.close()


def _image_values(node: Node) -> list[str]:
    repository, tag = node.image.rsplit(":", 1)
    return ["--set", f"image.repository={repository}", "--set", f"image.tag={tag}"]


@pytest.fixture(scope="module")
def release(node: Node, simulator: Simulator) -> str:
    """`helm install --wait` of the chart with the locally built image, an operator-wide token and fast
    liveness probes (so that they have run several times by the time the tests look)."""
    plane = node.plane
    _namespace(plane, RELEASE_NS)
    plane.helm(
        "install", RELEASE, str(CHART), "-n", RELEASE_NS, *_image_values(node),
        "--set", f"northflank.apiBaseUrl={simulator.service_url}",
        "--set", f"northflank.apiToken={TOKEN_A}",
        "--set", "operator.pollIntervalSeconds=10",
        "--set", "livenessProbe.initialDelaySeconds=2",
        "--set", "livenessProbe.periodSeconds=2",
        "--wait", f"--timeout={DEADLINE:.0f}s",
        timeout=DEADLINE + 30,
    )  # fmt: skip
    return RELEASE


def _operator_pod(plane: ControlPlane) -> dict[str, Any]:
    pods = _json(plane, "get", "pods", "-n", RELEASE_NS, "-l", "app.kubernetes.io/instance=" + RELEASE)["items"]
    running: list[dict[str, Any]] = [p for p in pods if p["metadata"].get("deletionTimestamp") is None]
    assert len(running) == 1, [p["metadata"]["name"] for p in pods]
    return running[0]


def _wait_rolled(plane: ControlPlane, old_uid: str) -> dict[str, Any]:
    """Wait until the operator Deployment has rolled out a Pod other than ``old_uid`` and it is ready."""
    plane.kubectl(
        "rollout", "status", f"deployment/{RELEASE}-northflank-llm-operator", "-n", RELEASE_NS,
        f"--timeout={DEADLINE:.0f}s", timeout=DEADLINE + 10,
    )  # fmt: skip

    def new_ready_pod() -> dict[str, Any] | None:
        pod = _operator_pod(plane)
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
        return pod if pod["metadata"]["uid"] != old_uid and ready else None

    pod: dict[str, Any] = wait_for(new_ready_pod, timeout=DEADLINE, message="a new ready operator Pod", interval=1.0)
    return pod


def _container_pid(node: Node, pod: dict[str, Any]) -> int:
    container_id = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    for line in node._ctr("tasks", "ls").stdout.splitlines()[1:]:
        task, pid, *_ = line.split()
        if task == container_id:
            return int(pid)
    raise AssertionError(f"no containerd task {container_id}")


def _llmd(namespace: str, name: str, deployment_id: str, **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "northflank-llm-operator.dev/v1alpha1",
            "kind": "LLMModelDeployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"projectId": PROJECT, "llmModelDeploymentId": deployment_id, **spec},
        }
    )


def _kubectl_wait_ready(plane: ControlPlane, name: str) -> None:
    proc = plane.kubectl(
        "wait", "--for=condition=Ready", f"llmd/{name}", "-n", APP_NS, f"--timeout={DEADLINE:.0f}s",
        timeout=DEADLINE + 10, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        status = _json(plane, "get", "llmd", name, "-n", APP_NS).get("status")
        logs = plane.kubectl("logs", "-n", RELEASE_NS, _operator_pod(plane)["metadata"]["name"], check=False).stdout
        raise AssertionError(f"llmd/{name} not Ready: {proc.stderr}\nstatus: {status}\noperator log:\n{logs[-3000:]}")


def _put_token_secret(plane: ControlPlane, namespace: str, name: str, token: str) -> None:
    """Create the Secret, or rotate it in place (as ``kubectl apply`` from a pipeline would)."""
    secret = plane.kubectl(
        "create", "secret", "generic", name, "-n", namespace, f"--from-literal=token={token}",
        "--dry-run=client", "-o", "json",
    ).stdout  # fmt: skip
    plane.kubectl("apply", "-f", "-", input=secret)


def _token_used(simulator: Simulator, token_id: str) -> bool:
    """Whether Northflank has answered a request made with this token."""
    return any(row["tokenId"] == token_id and row["status"] == 200 for row in simulator.control.stats())


def _wait_observed_with(plane: ControlPlane, simulator: Simulator, name: str, phase: str, token_id: str) -> None:
    """Until the resource shows ``phase`` (set at Northflank after the rotation) and the token was used."""
    wait_for(
        lambda: _token_used(simulator, token_id)
        and _json(plane, "get", "llmd", name, "-n", APP_NS)["status"].get("phase") == phase,
        timeout=DEADLINE, message=f"{name} {phase}, observed with the rotated token", interval=1.0,
    )  # fmt: skip


def test_install_runs_the_operator_pod_restricted_and_alive(node: Node, release: str) -> None:
    plane = node.plane
    plane.kubectl(
        "wait", "--for=condition=Available", f"deployment/{release}-northflank-llm-operator", "-n", RELEASE_NS,
        "--timeout=60s",
    )  # fmt: skip
    pod = _operator_pod(plane)
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"], status
    assert "running" in status["state"], status
    assert status["image"].endswith(node.image.split("/", 1)[1]), status["image"]

    # The liveness probe has run and passed: the kubelet's probe counters, read through the apiserver.
    def liveness_successes() -> int:
        metrics = plane.kubectl("get", "--raw", "/api/v1/nodes/nfllm-node/proxy/metrics/probes").stdout
        total = 0
        for line in metrics.splitlines():
            if (
                line.startswith("prober_probe_total{")
                and 'probe_type="Liveness"' in line
                and f'pod="{pod["metadata"]["name"]}"' in line
                and 'result="successful"' in line
            ):
                total += int(float(line.rsplit(" ", 1)[1]))
        return total

    wait_for(lambda: liveness_successes() >= 2, timeout=60, message="two successful liveness probes", interval=1.0)
    # (A probe before kopf listens may fail once under load; it must never have cost a restart.)
    assert _operator_pod(plane)["status"]["containerStatuses"][0]["restartCount"] == 0

    # What the kernel says about the operator process (not only what the manifest asks for).
    pid = _container_pid(node, pod)
    proc_status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    assert proc_status["Uid"].split() == ["65532"] * 4
    assert proc_status["Gid"].split() == ["65532"] * 4
    assert int(proc_status["CapEff"].strip(), 16) == 0
    assert proc_status["NoNewPrivs"].strip() == "1"
    assert proc_status["Seccomp"].strip() == "2"  # a seccomp filter (RuntimeDefault)
    root_mount = next(
        line.split() for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines() if line.split()[4] == "/"
    )
    assert "ro" in root_mount[5].split(","), root_mount
    # The namespace enforces the restricted profile: the apiserver admitted the Pod, so it meets all of it.
    labels = _json(plane, "get", "namespace", RELEASE_NS)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"

    logs = plane.kubectl("logs", "-n", RELEASE_NS, pod["metadata"]["name"]).stdout
    assert "Mirroring LLM model deployments from http://northflank-api." in logs, logs[-2000:]
    assert TOKEN_A not in logs


def test_in_cluster_operator_syncs_a_resource(node: Node, release: str, simulator: Simulator) -> None:
    plane = node.plane
    _namespace(plane, APP_NS)
    simulator.control.put_deployment(PROJECT, "qwen", status="running")
    plane.kubectl("apply", "-f", "-", input=_llmd(APP_NS, "qwen", "qwen"))
    _kubectl_wait_ready(plane, "qwen")
    status = _json(plane, "get", "llmd", "qwen", "-n", APP_NS)["status"]
    assert status["phase"] == "running"
    # The request came from the operator Pod, with the chart's token (the simulator counts per token).
    assert [row for row in simulator.control.stats() if row["status"] == 200 and row["count"] > 0]
    logs = plane.kubectl("logs", "-n", RELEASE_NS, _operator_pod(plane)["metadata"]["name"]).stdout
    assert TOKEN_A not in logs


def test_helm_test_passes(node: Node, release: str) -> None:
    # The test Pod reaches the operator's /healthz through its Service by DNS name; the chart deletes it once
    # it succeeded (hook-succeeded), so its Phase is what helm reports.
    result = node.plane.helm("test", release, "-n", RELEASE_NS, f"--timeout={DEADLINE:.0f}s", timeout=DEADLINE + 30)
    assert re.search(r"TEST SUITE:\s+nfllm-northflank-llm-operator-test-operator-up", result.stdout), result.stdout
    assert re.search(r"Phase:\s+Succeeded", result.stdout), result.stdout


def test_upgrade_rolls_the_pod_and_keeps_crd_and_resources(node: Node, release: str, simulator: Simulator) -> None:
    plane = node.plane
    old_pod = _operator_pod(plane)
    crd_uid = _json(plane, "get", "crd", CRD_NAME)["metadata"]["uid"]
    resource_uid = _json(plane, "get", "llmd", "qwen", "-n", APP_NS)["metadata"]["uid"]

    plane.helm(
        "upgrade", release, str(CHART), "-n", RELEASE_NS, "--reuse-values", "--set", "operator.logLevel=debug",
        "--wait", f"--timeout={DEADLINE:.0f}s", timeout=DEADLINE + 30,
    )  # fmt: skip
    new_pod = _wait_rolled(plane, old_pod["metadata"]["uid"])
    assert "--verbose" in new_pod["spec"]["containers"][0]["args"]
    assert _json(plane, "get", "crd", CRD_NAME)["metadata"]["uid"] == crd_uid
    assert _json(plane, "get", "llmd", "qwen", "-n", APP_NS)["metadata"]["uid"] == resource_uid
    # The new operator Pod keeps the resource in sync: a change at Northflank shows up.
    simulator.control.patch_deployment(PROJECT, "qwen", status="paused")
    wait_for(
        lambda: _json(plane, "get", "llmd", "qwen", "-n", APP_NS)["status"].get("phase") == "paused",
        timeout=DEADLINE, message="phase paused after the upgrade", interval=1.0,
    )  # fmt: skip


def test_chart_managed_token_rotation_rolls_the_pod(node: Node, release: str, simulator: Simulator) -> None:
    plane = node.plane
    old_pod = _operator_pod(plane)
    token_b_id = simulator.control.add_token(TOKEN_B, team_id=TEAM)
    plane.helm(
        "upgrade", release, str(CHART), "-n", RELEASE_NS, "--reuse-values", "--set", f"northflank.apiToken={TOKEN_B}",
        "--wait", f"--timeout={DEADLINE:.0f}s", timeout=DEADLINE + 30,
    )  # fmt: skip
    _wait_rolled(plane, old_pod["metadata"]["uid"])
    simulator.control.revoke_token(TOKEN_A)  # only the new token works from now on
    simulator.control.patch_deployment(PROJECT, "qwen", status="running")
    _kubectl_wait_ready(plane, "qwen")
    assert _token_used(simulator, token_b_id)


def test_existing_secret_rotation_is_picked_up_without_a_restart(
    node: Node, release: str, simulator: Simulator
) -> None:
    """The operator-wide token from a Secret the chart only references (northflank.existingSecret) is a
    mounted file: rotating the Secret reaches the running Pod through the kubelet, with no restart."""
    plane = node.plane
    token_c_id = simulator.control.add_token(TOKEN_C, team_id=TEAM)
    _put_token_secret(plane, RELEASE_NS, "operator-token", TOKEN_C)
    old_pod = _operator_pod(plane)
    plane.helm(
        "upgrade", release, str(CHART), "-n", RELEASE_NS, "--reuse-values", "--set", "northflank.apiToken=",
        "--set", "northflank.existingSecret=operator-token", "--set", "northflank.existingSecretKey=token",
        "--wait", f"--timeout={DEADLINE:.0f}s", timeout=DEADLINE + 30,
    )  # fmt: skip
    pod_uid = _wait_rolled(plane, old_pod["metadata"]["uid"])["metadata"]["uid"]
    simulator.control.revoke_token(TOKEN_B)
    simulator.control.patch_deployment(PROJECT, "qwen", status="paused")
    _wait_observed_with(plane, simulator, "qwen", "paused", token_c_id)

    # Rotate the referenced Secret in place; only the new token works from now on.
    token_d_id = simulator.control.add_token(TOKEN_D, team_id=TEAM)
    _put_token_secret(plane, RELEASE_NS, "operator-token", TOKEN_D)
    simulator.control.revoke_token(TOKEN_C)
    simulator.control.patch_deployment(PROJECT, "qwen", status="running")
    _wait_observed_with(plane, simulator, "qwen", "running", token_d_id)
    assert _operator_pod(plane)["metadata"]["uid"] == pod_uid, "picked up by the running Pod, no restart"


def test_referenced_secret_rotation_is_picked_up_without_a_restart(
    node: Node, release: str, simulator: Simulator
) -> None:
    plane = node.plane
    pod_uid = _operator_pod(plane)["metadata"]["uid"]
    simulator.control.add_token(TEAM_TOKEN_1, team_id=TEAM)
    _put_token_secret(plane, APP_NS, "team-token", TEAM_TOKEN_1)
    simulator.control.put_deployment(PROJECT, "llama", status="running")
    ref = {"name": "team-token", "key": "token"}
    plane.kubectl("apply", "-f", "-", input=_llmd(APP_NS, "llama", "llama", credentialsSecretRef=ref))
    _kubectl_wait_ready(plane, "llama")

    # Rotate: the new token exists, the Secret holds it, the old one is revoked (its next use gets 401).
    token_2_id = simulator.control.add_token(TEAM_TOKEN_2, team_id=TEAM)
    _put_token_secret(plane, APP_NS, "team-token", TEAM_TOKEN_2)
    simulator.control.revoke_token(TEAM_TOKEN_1)
    simulator.control.patch_deployment(PROJECT, "llama", status="paused")
    _wait_observed_with(plane, simulator, "llama", "paused", token_2_id)
    assert _operator_pod(plane)["metadata"]["uid"] == pod_uid  # picked up by the running operator


def test_traffic_stays_inside_the_run(node: Node, release: str) -> None:
    """Pods have no default route (only the Pod subnet and the Service range) and forwarding is untouched."""
    pid = _container_pid(node, _operator_pod(node.plane))
    routes = [line.split() for line in Path(f"/proc/{pid}/net/route").read_text().splitlines()[1:]]
    destinations = sorted((r[1], r[7]) for r in routes)  # hex little-endian destination, mask
    assert ("00000000", "00000000") not in destinations, destinations
    assert destinations == [("0000D50A", "00FFFFFF"), ("0080D50A", "00FFFFFF")], destinations
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == node.ip_forward_before


def test_management_enabled_by_the_chart_creates_a_deployment(node: Node, release: str, simulator: Simulator) -> None:
    """`management.enabled=true` on the running release: the operator Pod, with the chart's RBAC only,
    creates a deployment a `*` manifest declares, records it, and takes the delete finalizer."""
    plane = node.plane
    old_uid = _operator_pod(plane)["metadata"]["uid"]
    plane.helm(
        "upgrade", release, str(CHART), "-n", RELEASE_NS, "--reuse-values", "--set", "management.enabled=true",
        "--wait", f"--timeout={DEADLINE:.0f}s", timeout=DEADLINE + 30,
    )  # fmt: skip
    _wait_rolled(plane, old_uid)
    simulator.control.add_token(MANAGE_TOKEN, team_id=TEAM)
    _put_token_secret(plane, APP_NS, "manage-token", MANAGE_TOKEN)
    spec = {
        "credentialsSecretRef": {"name": "manage-token"},
        "managementPolicies": ["*"],
        "forProvider": {"spec": {"type": "custom", "configuration": MANAGED_CONFIGURATION}},
    }
    plane.kubectl("apply", "-f", "-", input=_llmd(APP_NS, "gemma", "gemma", **spec))
    _kubectl_wait_ready(plane, "gemma")
    created = [w for w in simulator.control.writes() if w["token"] == MANAGE_TOKEN and w["route"] == "create"]
    assert [(w["method"], w["status"], w["count"]) for w in created] == [("POST", 200, 1)], created
    metadata = _json(plane, "get", "llmd", "gemma", "-n", APP_NS)["metadata"]
    assert DELETE_FINALIZER in metadata.get("finalizers", []), metadata


def test_uninstall_keeps_the_crd_and_the_resources(node: Node, release: str, simulator: Simulator) -> None:
    plane = node.plane
    plane.helm("uninstall", release, "-n", RELEASE_NS, "--wait", f"--timeout={DEADLINE:.0f}s", timeout=DEADLINE + 30)
    assert plane.kubectl("get", "deployment", "-n", RELEASE_NS, "-o", "name").stdout.strip() == ""
    assert _json(plane, "get", "crd", CRD_NAME)["metadata"]["name"] == CRD_NAME
    names = [item["metadata"]["name"] for item in _json(plane, "get", "llmd", "-n", APP_NS)["items"]]
    assert sorted(names) == ["gemma", "llama", "qwen"]
    # Uninstalling deleted nothing at Northflank, also not the deployment a `*` resource created.
    assert simulator.control.get_deployment(PROJECT, "gemma")["id"] == "gemma"
    assert [w for w in simulator.control.writes() if w["route"] == "delete"] == []
