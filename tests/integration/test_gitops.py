"""GitOps adoption on the real kube-apiserver with the simulator: expectedPhase, refresh and pause
annotations, and ``northflank-llm-operator import`` output applied for real."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from northflank_api_simulator.control import SimulatorControl
from tests.gitops.test_health import HEALTH_LUA, build_evaluators, evaluate
from tests.simulator.fixtures import RunningSimulator, open_account
from tests.support.cluster import DEADLINE, PROJECT, WIDE_COLUMNS, Cluster, conditions_by_type, parse_table
from tests.support.importing import run_import
from tests.support.operator_process import ModuleOperatorStarter, OperatorProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

OPERATOR_TOKEN = "nf-gitops-token"
TEAM = "team-gitops"
OTHER_PROJECT = "llm-witness"
REFRESH = "northflank-llm-operator.dev/reconcile-requested-at"
PAUSE = "northflank-llm-operator.dev/paused"
#: "Within a few seconds": the batch delay (1 s), one request and one status write, on a loaded box.
REFRESH_DEADLINE = 10.0


@pytest.fixture(scope="module")
def operator(start_module_operator: ModuleOperatorStarter) -> Iterator[OperatorProcess]:
    with start_module_operator(api_token=OPERATOR_TOKEN, poll_interval_seconds=1.0) as process:
        yield process


@pytest.fixture(scope="module")
def evaluators() -> Path:
    try:
        return build_evaluators()
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def nf(simulator: RunningSimulator) -> SimulatorControl:
    return open_account(simulator, team=TEAM, projects=[PROJECT, OTHER_PROJECT], token=OPERATOR_TOKEN)


def annotate(cluster: Cluster, name: str, *changes: str) -> None:
    cluster.plane.kubectl("annotate", "llmd", name, "-n", cluster.namespace, "--overwrite", *changes)


def verdicts(evaluators: Path, obj: dict[str, Any]) -> tuple[str, str]:
    return (
        evaluate(evaluators, ["kstatus"], obj).status,
        evaluate(evaluators, ["argocd-health", str(HEALTH_LUA)], obj).status,
    )


def test_expected_paused_is_ready_healthy_and_current(cluster: Cluster, nf: SimulatorControl, evaluators: Path) -> None:
    nf.put_deployment(PROJECT, "held", status="paused")
    cluster.apply("held", "held", expectedPhase="paused")
    cluster.plane.kubectl(
        "wait", "--for=condition=Ready", "llmd/held", "-n", cluster.namespace, f"--timeout={DEADLINE:.0f}s",
        timeout=DEADLINE + 10,
    )  # fmt: skip
    ready = cluster.condition("held", "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "PausedAsExpected")
    assert verdicts(evaluators, cluster.get("held")) == ("Current", "Healthy")
    table = cluster.plane.kubectl("get", "llmd", "held", "-n", cluster.namespace, "-o", "wide").stdout
    [row] = parse_table(table, WIDE_COLUMNS)
    assert [row[k] for k in ("READY", "PHASE", "REASON", "EXPECTED")] == [
        "True",
        "paused",
        "PausedAsExpected",
        "paused",
    ]

    # Someone resumed it at Northflank: running is not what Git says.
    nf.patch_deployment(PROJECT, "held", status="running")
    status = cluster.wait_condition("held", "Ready", "False", "UnexpectedPhase")
    assert "the expected phase is paused" in conditions_by_type(status)["Ready"]["message"]
    assert verdicts(evaluators, cluster.get("held")) == ("InProgress", "Degraded")


def test_a_refresh_request_is_observed_within_seconds_and_recorded(
    cluster: Cluster, nf: SimulatorControl, capsys: pytest.CaptureFixture[str]
) -> None:
    nf.put_deployment(PROJECT, "slow", status="running")
    cluster.apply("slow", "slow", pollIntervalSeconds=3600)
    cluster.wait_condition("slow", "Ready", "True")
    nf.patch_deployment(PROJECT, "slow", status="paused")
    value = "2026-12-03T18:00:00Z"
    started = time.monotonic()
    annotate(cluster, "slow", f"{REFRESH}={value}")
    status = cluster.wait_status(
        "slow", lambda s: s.get("lastHandledReconcileAt") == value, "lastHandledReconcileAt", timeout=REFRESH_DEADLINE
    )
    elapsed = time.monotonic() - started
    assert status["phase"] == "paused", "the recorded value comes with the observation it asked for"
    with capsys.disabled():
        print(f"\n[measured] refresh annotation -> lastHandledReconcileAt in {elapsed:.2f}s (kubectl included)")

    requests = len(nf.requests(path_contains="/llm-model-deployments/slow"))
    annotate(cluster, "slow", f"{REFRESH}=again")
    cluster.wait_status("slow", lambda s: s.get("lastHandledReconcileAt") == "again", "a second refresh")
    assert len(nf.requests(path_contains="/llm-model-deployments/slow")) == requests + 1


def test_a_paused_resource_sends_no_request_and_resumes_when_unpaused(
    cluster: Cluster, nf: SimulatorControl, capsys: pytest.CaptureFixture[str]
) -> None:
    nf.put_deployment(PROJECT, "quiet", status="running")
    nf.put_deployment(OTHER_PROJECT, "witness", status="running")
    cluster.apply("quiet", "quiet")
    cluster.apply("witness", "witness", project=OTHER_PROJECT)
    cluster.wait_condition("quiet", "Ready", "True")
    cluster.wait_condition("witness", "Ready", "True")

    annotate(cluster, "quiet", f"{PAUSE}=true")
    paused = cluster.wait_condition("quiet", "Synced", "False", "ReconcilePaused")
    assert paused["phase"] == "running", "the last observation is kept"
    cluster.wait_events("quiet", lambda events: any(e["reason"] == "ReconcilePaused" for e in events), "paused")
    nf.clear_requests()
    quiet_project = f"/projects/{PROJECT}/"
    wait_for(
        lambda: len(nf.requests(path_contains="/llm-model-deployments/witness")) >= 6,
        timeout=DEADLINE,
        message="six polls of the witness (1 s interval)",
    )
    assert nf.requests(path_contains=quiet_project) == [], "a paused resource costs no request"
    # Ready turns Unknown only by the staleness rule (3 intervals of 1 s here).
    stale = cluster.wait_condition("quiet", "Ready", "Unknown", "StatusStale")
    assert stale["phase"] == "running"
    assert nf.requests(path_contains=quiet_project) == []

    nf.patch_deployment(PROJECT, "quiet", status="paused")
    started = time.monotonic()
    annotate(cluster, "quiet", f"{PAUSE}-")
    resumed = cluster.wait_condition("quiet", "Synced", "True", timeout=REFRESH_DEADLINE)
    elapsed = time.monotonic() - started
    assert resumed["phase"] == "paused"
    assert nf.requests(path_contains=quiet_project)
    cluster.wait_events("quiet", lambda events: any(e["reason"] == "ReconcileResumed" for e in events), "resumed")
    with capsys.disabled():
        print(f"\n[measured] unpause -> observed again in {elapsed:.2f}s (kubectl included)")


def test_import_output_applies_reaches_its_phases_and_is_stable(
    cluster: Cluster, nf: SimulatorControl, simulator: RunningSimulator
) -> None:
    nf.put_deployment(PROJECT, "llama-3-8b", name="Llama 3 8B", status="running")
    nf.put_deployment(PROJECT, "llama-3-8b-eu", name="llama 3 8b", status="paused")
    nf.put_deployment(PROJECT, "qwen", name="Qwen Coder", status="paused")
    args = ("--project", PROJECT, "--namespace", cluster.namespace, "--expected-phase-from-current")
    first = run_import(simulator.base_url, OPERATOR_TOKEN, *args)
    assert first.returncode == 0, first.stderr
    documents = list(yaml.safe_load_all(first.stdout))
    names = [d["metadata"]["name"] for d in documents]
    assert names == ["llama-3-8b", "llama-3-8b-eu", "qwen"], "names are the immutable ids"

    cluster.plane.kubectl("apply", "--dry-run=server", "-f", "-", input=first.stdout)
    assert cluster.get_all() == {}, "a dry run creates nothing"
    cluster.plane.kubectl("apply", "-f", "-", input=first.stdout)
    items = cluster.wait_all_ready(names)
    for document in documents:
        deployment_id = document["spec"]["llmModelDeploymentId"]
        phase = nf.get_deployment(PROJECT, deployment_id)["status"]
        assert items[document["metadata"]["name"]]["status"]["phase"] == phase

    second = run_import(simulator.base_url, OPERATOR_TOKEN, *args)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout, "a second import prints identical output"
