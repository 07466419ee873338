"""Management (issue 17), the writes, end to end: the real API server, the simulator, and the operator as a
process started with management enabled. Each test uses its own ``manage-`` token (a suite-wide check
makes sure no other token ever caused a POST or DELETE)."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from northflank_api_simulator.control import SimulatorControl
from tests.controlplane.controlplane import ControlPlane
from tests.integration.test_operator_lifecycle import _delete_crd, _install_crd
from tests.simulator.fixtures import RunningSimulator, open_account
from tests.support.cluster import PROJECT, Cluster, conditions_by_type
from tests.support.kube_api import client, llmd_path
from tests.support.operator_process import OperatorProcess, OperatorStarter
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

TEAM = "team-manage"
ENABLED = {"NORTHFLANK_LLM_OPERATOR_ENABLE_MANAGEMENT": "true"}
PENDING = "northflank-llm-operator.dev/external-create-pending"
SUCCEEDED = "northflank-llm-operator.dev/external-create-succeeded"
FINALIZER = "northflank-llm-operator.dev/delete-at-northflank"
CONFIGURATION: dict[str, Any] = {
    "engine": "vllm",
    "name": "Qwen/Qwen3-0.6B",
    "nodeConfiguration": {"storage": {"storageSize": 6144}},
}
#: Waits that span a whole create (pending → provisioning → starting → running at 0.3 s a step) and polls.
DEADLINE = 60.0


@pytest.fixture
def token(request: pytest.FixtureRequest) -> str:
    """A token of this test's own, whose name says it may write."""
    return f"manage-{request.node.name.replace('_', '-')[5:45]}"


@pytest.fixture
def nf(simulator: RunningSimulator, token: str) -> SimulatorControl:
    control = open_account(simulator, team=TEAM, projects=[PROJECT], token=token)
    control.set_lifecycle(0.3)
    return control


def managed(cluster: Cluster, name: str, policies: list[str], **for_provider: Any) -> None:
    spec: dict[str, Any] = {
        "managementPolicies": policies,
        "forProvider": {"spec": {"configuration": CONFIGURATION}, **for_provider},
    }
    cluster.plane.kubectl("apply", "-f", "-", input=json.dumps(cluster.manifest(name, name, **spec)))


def writes(nf: SimulatorControl, method: str, *, path_end: str = "") -> list[dict[str, Any]]:
    return [r for r in nf.requests(path_contains="/llm-model-deployments") if r["method"] == method
            and r["path"].endswith(path_end)]  # fmt: skip


def gets(nf: SimulatorControl) -> int:
    """Observations so far (GETs and listings: two resources of one project are listed)."""
    return len([r for r in nf.requests(path_contains="/llm-model-deployments") if r["method"] == "GET"])


def at_northflank(nf: SimulatorControl, deployment_id: str) -> dict[str, Any] | None:
    try:
        return nf.get_deployment(PROJECT, deployment_id)
    except Exception:
        return None


def running(cluster: Cluster, name: str) -> dict[str, Any]:
    def done(status: dict[str, Any]) -> bool:
        conditions = conditions_by_type(status)
        return (
            status.get("phase") == "running"
            and conditions.get("Managed", {}).get("status") == "True"
            and conditions.get("UpToDate", {}).get("status") == "True"
        )

    return cluster.wait_status(name, done, "running, Managed and UpToDate", timeout=DEADLINE)


def owned(cluster: Cluster, name: str) -> dict[str, Any]:
    """The resource once it records the confirmed create and carries the finalizer."""

    def recorded() -> dict[str, Any] | None:
        metadata: dict[str, Any] = cluster.get(name)["metadata"]
        annotations, finalizers = metadata.get("annotations", {}), metadata.get("finalizers", [])
        return metadata if {PENDING, SUCCEEDED} <= set(annotations) and FINALIZER in finalizers else None

    return wait_for(recorded, timeout=DEADLINE, message=f"{name}: create confirmed and the finalizer added")


def a_few_more_polls(nf: SimulatorControl, polls: int = 3) -> None:
    """Let the operator observe a few more times (what it would do wrong, it would do by then)."""
    seen = gets(nf)
    wait_for(lambda: gets(nf) >= seen + polls, timeout=30, message=f"{polls} more polls")


@pytest.fixture(autouse=True)
def _finalizers_released(control_plane: ControlPlane, namespace: str) -> Iterator[None]:
    """Resources left with the delete-at-Northflank finalizer after the operator stopped would never go
    (and would hold up deleting the CRD): take the finalizer off before the namespace is emptied."""
    yield
    api = client(control_plane)
    for item in api.get(llmd_path(namespace)).json().get("items", []):
        name = item["metadata"]["name"]
        patch = {"metadata": {"finalizers": None}}
        headers = {"Content-Type": "application/merge-patch+json"}
        api.patch(llmd_path(namespace, name), json=patch, headers=headers)


@pytest.fixture
def start(
    token: str, start_operator: OperatorStarter, tmp_path: Path
) -> Callable[..., AbstractContextManager[OperatorProcess]]:
    def started(*, enabled: bool = True, log: str = "operator.log") -> AbstractContextManager[OperatorProcess]:
        return start_operator(api_token=token, extra_env=ENABLED if enabled else {}, log_path=tmp_path / log)

    return started


def test_a_manifest_with_star_creates_a_deployment_that_reaches_running(
    control_plane: ControlPlane, namespace: str, nf: SimulatorControl, start: Callable[..., Any]
) -> None:
    with start() as operator:
        cluster = Cluster(control_plane, namespace, operator)
        managed(cluster, "qwen", ["*"], description="served by vLLM")
        status = running(cluster, "qwen")
        assert conditions_by_type(status)["Managed"]["reason"] == "Created"
        owned(cluster, "qwen")
        deployment = at_northflank(nf, "qwen")
        assert deployment is not None
        assert deployment["description"] == "served by vLLM"
        assert deployment["spec"]["configuration"]["name"] == CONFIGURATION["name"]
        a_few_more_polls(nf)
    assert len(writes(nf, "POST", path_end="/llm-model-deployments")) == 1
    assert writes(nf, "POST", path_end="/qwen") == []
    assert writes(nf, "DELETE") == []


def test_editing_the_configuration_sends_exactly_one_update_and_the_status_follows(
    control_plane: ControlPlane, namespace: str, nf: SimulatorControl, start: Callable[..., Any]
) -> None:
    with start() as operator:
        cluster = Cluster(control_plane, namespace, operator)
        managed(cluster, "edit", ["*"])
        running(cluster, "edit")
        edited = {**CONFIGURATION, "name": "Qwen/Qwen3-8B"}
        spec: dict[str, Any] = {"managementPolicies": ["*"], "forProvider": {"spec": {"configuration": edited}}}
        control_plane.kubectl("apply", "-f", "-", input=json.dumps(cluster.manifest("edit", "edit", **spec)))

        def followed(status: dict[str, Any]) -> bool:
            configuration = status.get("deploymentSpec", {}).get("configuration", {})
            conditions = conditions_by_type(status)
            return (configuration.get("name") == "Qwen/Qwen3-8B" and status.get("phase") == "running"
                    and conditions.get("UpToDate", {}).get("status") == "True")  # fmt: skip

        status = cluster.wait_status("edit", followed, "the new configuration running", timeout=DEADLINE)
        assert status["management"]["updatedGeneration"] == cluster.get("edit")["metadata"]["generation"]
        a_few_more_polls(nf)
    updates = writes(nf, "POST", path_end="/edit")
    assert len(updates) == 1


def test_a_change_made_at_northflank_is_corrected_once(
    control_plane: ControlPlane, namespace: str, nf: SimulatorControl, start: Callable[..., Any]
) -> None:
    with start() as operator:
        cluster = Cluster(control_plane, namespace, operator)
        managed(cluster, "drifts", ["*"], description="as in Git")
        running(cluster, "drifts")
        nf.ui_update(PROJECT, "drifts", description="changed in the UI")
        wait_for(lambda: writes(nf, "POST", path_end="/drifts"), timeout=DEADLINE, message="the correcting update")
        wait_for(lambda: (at_northflank(nf, "drifts") or {}).get("description") == "as in Git", timeout=DEADLINE,
                 message="the description corrected")  # fmt: skip
        running(cluster, "drifts")
        a_few_more_polls(nf)
    assert len(writes(nf, "POST", path_end="/drifts")) == 1


def _gone(plane: ControlPlane, namespace: str, name: str) -> bool:
    return client(plane).get(llmd_path(namespace, name)).status_code == 404


def test_deleting_a_resource_with_delete_removes_the_deployment_then_the_finalizer(
    control_plane: ControlPlane, namespace: str, nf: SimulatorControl, start: Callable[..., Any]
) -> None:
    with start() as operator:
        cluster = Cluster(control_plane, namespace, operator)
        managed(cluster, "doomed", ["*"])
        running(cluster, "doomed")
        owned(cluster, "doomed")
        nf.set_lifecycle(3.0)  # a delete that takes a while at Northflank: the finalizer holds meanwhile
        control_plane.kubectl("delete", "llmmodeldeployment", "doomed", "-n", namespace, "--wait=false")
        # The finalizer holds the resource while Northflank deletes (status shows deleting).
        cluster.wait_status("doomed", lambda s: s.get("phase") == "deleting", "deleting", timeout=DEADLINE)
        assert FINALIZER in cluster.get("doomed")["metadata"]["finalizers"]
        wait_for(lambda: _gone(control_plane, namespace, "doomed"), timeout=DEADLINE, message="the resource gone")
        assert at_northflank(nf, "doomed") is None
        operator.assert_alive()
    assert len(writes(nf, "DELETE")) == 1


def test_without_delete_nothing_is_deleted(
    control_plane: ControlPlane, namespace: str, nf: SimulatorControl, start: Callable[..., Any]
) -> None:
    with start() as operator:
        cluster = Cluster(control_plane, namespace, operator)
        managed(cluster, "kept", ["Observe", "Create", "Update"])
        running(cluster, "kept")
        assert FINALIZER not in cluster.get("kept")["metadata"].get("finalizers", [])
        control_plane.kubectl("delete", "llmmodeldeployment", "kept", "-n", namespace, "--wait=true", "--timeout=30s")
    assert (at_northflank(nf, "kept") or {}).get("status") == "running"
    assert writes(nf, "DELETE") == []


def test_management_switched_off_sends_nothing(
    control_plane: ControlPlane, namespace: str, nf: SimulatorControl, start: Callable[..., Any]
) -> None:
    nf.put_deployment(PROJECT, "present", status="running")
    with start(enabled=False) as operator:
        cluster = Cluster(control_plane, namespace, operator)
        managed(cluster, "absent", ["*"])
        managed(cluster, "present", ["*"], description="desired")
        for name in ("absent", "present"):
            cluster.wait_condition(name, "Managed", "False", "ManagementDisabled", timeout=DEADLINE)
        a_few_more_polls(nf)
        assert FINALIZER not in cluster.get("present")["metadata"].get("finalizers", [])
    assert writes(nf, "POST") == []
    assert writes(nf, "DELETE") == []
    assert nf.requests(path_contains="/v1/auth") == []
    assert at_northflank(nf, "absent") is None


def test_deleting_the_crd_deletes_nothing_at_northflank(
    control_plane: ControlPlane, namespace: str, nf: SimulatorControl, start: Callable[..., Any]
) -> None:
    try:
        with start() as operator:
            cluster = Cluster(control_plane, namespace, operator)
            managed(cluster, "survivor", ["*"])
            running(cluster, "survivor")
            owned(cluster, "survivor")
            _delete_crd(control_plane)  # waits until the CRD (and so every resource) is gone
            operator.assert_alive()
        assert (at_northflank(nf, "survivor") or {}).get("status") == "running"
        assert writes(nf, "DELETE") == []
        assert "Orphaned" in operator.log()
    finally:
        _install_crd(control_plane)


@pytest.mark.parametrize("moment", ["request", "answer"])
def test_a_crash_around_the_create_leaves_exactly_one_deployment(
    control_plane: ControlPlane,
    namespace: str,
    simulator: RunningSimulator,
    token: str,
    nf: SimulatorControl,
    start: Callable[..., Any],
    moment: str,
) -> None:
    """kill -9 after the create attempt was recorded and before the POST reached Northflank ("request":
    the POST is held, then dropped when the process dies), or right after Northflank processed it
    ("answer"): after a restart exactly one deployment exists, this resource owns it (Created) and
    manages it."""
    fault = nf.add_fault(method="POST", path="/llm-model-deployments$", hold=moment)  # type: ignore[arg-type]
    with start(log="first.log") as first:
        cluster = Cluster(control_plane, namespace, first)
        managed(cluster, "crash", ["*"])
        wait_for(nf.held, timeout=DEADLINE, message="the create held at the simulator")
        assert PENDING in cluster.get("crash")["metadata"].get("annotations", {})
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
    wait_for(lambda: not nf.held(), timeout=10, message="the held request given up")
    nf.remove_fault(fault)
    assert (at_northflank(nf, "crash") is None) == (moment == "request")
    with start(log="second.log") as second:
        cluster = Cluster(control_plane, namespace, second)
        status = running(cluster, "crash")
        assert conditions_by_type(status)["Managed"]["reason"] == "Created"
        owned(cluster, "crash")
    with simulator.api(token) as api:
        listing = api.get(f"/v1/projects/{PROJECT}/llm-model-deployments").json()["data"]["llmModelDeployments"]
    assert [d["id"] for d in listing] == ["crash"]
    created = [r for r in writes(nf, "POST", path_end="/llm-model-deployments") if r["status"] == 200]
    assert len(created) == 1


def test_a_crash_right_after_an_update_sends_it_once(
    control_plane: ControlPlane, namespace: str, nf: SimulatorControl, start: Callable[..., Any]
) -> None:
    """kill -9 after Northflank processed an update and before its answer (and the bookkeeping of
    status.management) arrived: after a restart the update is not sent again and the status follows."""
    with start(log="first.log") as first:
        cluster = Cluster(control_plane, namespace, first)
        managed(cluster, "upd", ["*"])
        running(cluster, "upd")
        fault = nf.add_fault(method="POST", path="/upd$", hold="answer")
        edited = {**CONFIGURATION, "name": "Qwen/Qwen3-8B"}
        spec: dict[str, Any] = {"managementPolicies": ["*"], "forProvider": {"spec": {"configuration": edited}}}
        control_plane.kubectl("apply", "-f", "-", input=json.dumps(cluster.manifest("upd", "upd", **spec)))
        wait_for(nf.held, timeout=DEADLINE, message="the update held at the simulator")
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
    wait_for(lambda: not nf.held(), timeout=10, message="the held answer given up")
    nf.remove_fault(fault)
    with start(log="second.log") as second:
        cluster = Cluster(control_plane, namespace, second)
        status = running(cluster, "upd")
        assert status["deploymentSpec"]["configuration"]["name"] == "Qwen/Qwen3-8B"
        a_few_more_polls(nf)
    assert [r["status"] for r in writes(nf, "POST", path_end="/upd")] == [200]


def test_a_crash_right_after_a_delete_deletes_once_and_releases_the_finalizer(
    control_plane: ControlPlane, namespace: str, nf: SimulatorControl, start: Callable[..., Any]
) -> None:
    """kill -9 after Northflank accepted the DELETE and before its answer arrived: after a restart the
    operator sees the deployment going (or gone), releases the finalizer, and the resource goes."""
    with start(log="first.log") as first:
        cluster = Cluster(control_plane, namespace, first)
        managed(cluster, "del", ["*"])
        running(cluster, "del")
        owned(cluster, "del")
        fault = nf.add_fault(method="DELETE", path="/del$", hold="answer")
        control_plane.kubectl("delete", "llmmodeldeployment", "del", "-n", namespace, "--wait=false")
        wait_for(nf.held, timeout=DEADLINE, message="the delete held at the simulator")
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
    wait_for(lambda: not nf.held(), timeout=10, message="the held answer given up")
    nf.remove_fault(fault)
    with start(log="second.log"):
        wait_for(lambda: _gone(control_plane, namespace, "del"), timeout=DEADLINE, message="the resource gone")
    assert at_northflank(nf, "del") is None
    assert [r["status"] for r in writes(nf, "DELETE") if r["status"] == 200] == [200]
