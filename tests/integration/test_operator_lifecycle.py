"""Issue 7 (Kubernetes side) with the operator as a real process: the CRD deleted or late, SIGTERM
during a CPU-heavy poll, and a storm of spec edits, against the real kube-apiserver and the simulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from northflank_api_simulator.control import SimulatorControl
from tests.controlplane.controlplane import ControlPlane
from tests.controlplane.fixtures import CRD_DIR, CRD_NAME
from tests.simulator.fixtures import RunningSimulator, open_account
from tests.support.cluster import PROJECT, Cluster, delete_all_resources
from tests.support.kube_api import wait_established
from tests.support.operator_process import OperatorProcess, OperatorStarter, free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

TOKEN = "lifecycle-token"
TEAM = "team-lifecycle"


@pytest.fixture(autouse=True)
def _clean_up(control_plane: ControlPlane, namespace: str) -> Iterator[None]:
    yield
    delete_all_resources(control_plane, namespace)


@pytest.fixture
def nf(simulator: RunningSimulator) -> SimulatorControl:
    return open_account(simulator, team=TEAM, projects=[PROJECT], token=TOKEN)


def _liveness(url: str) -> int | None:
    """The liveness endpoint's HTTP status, None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - a loopback URL of ours
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def _install_crd(plane: ControlPlane) -> None:
    files = [arg for path in sorted(CRD_DIR.glob("*.yaml")) for arg in ("-f", str(path))]
    plane.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=nfllm-tests", *files)
    wait_established(plane, CRD_NAME)

    def served() -> bool:
        result = plane.kubectl("api-resources", "--api-group=northflank-llm-operator.dev", "-o", "name")
        return "llmmodeldeployments" in result.stdout

    wait_for(served, timeout=60, message="the CRD served by the API server")


def _delete_crd(plane: ControlPlane) -> None:
    plane.kubectl("delete", "crd", CRD_NAME, "--ignore-not-found", "--wait=true", "--timeout=90s", timeout=120)


def _not_serving(operator: OperatorProcess) -> bool:
    operator.assert_alive()
    assert operator.liveness_url is not None
    return _liveness(operator.liveness_url) != 200


#: Notices a deleted or returning CRD within seconds.
RESYNC_EVERY_2S = {"NORTHFLANK_LLM_OPERATOR_RESYNC_SECONDS": "2"}


def test_the_operator_waits_for_a_late_crd_and_survives_its_deletion(
    control_plane: ControlPlane, namespace: str, nf: SimulatorControl, start_operator: OperatorStarter
) -> None:
    nf.put_deployment(PROJECT, "late", status="running")
    _delete_crd(control_plane)
    try:
        with start_operator(api_token=TOKEN, extra_env=RESYNC_EVERY_2S, liveness_port=free_port()) as operator:
            cluster = Cluster(control_plane, namespace, operator)
            # Started before the CRD: alive, but the liveness probe says it cannot serve.
            wait_for(lambda: "does not serve" in operator.log(), timeout=60, message="the operator waiting")
            assert _not_serving(operator)
            _install_crd(control_plane)
            cluster.apply("late", "late")
            cluster.wait_condition("late", "Ready", "True", timeout=90)
            assert operator.liveness_url is not None
            wait_for(lambda: _liveness(operator.liveness_url or "") == 200, timeout=30, message="liveness 200")

            # Deleted under a running operator: it keeps running, fails liveness, and recovers.
            _delete_crd(control_plane)
            wait_for(lambda: _not_serving(operator), timeout=60, message="liveness failing without the CRD")
            _install_crd(control_plane)
            cluster.apply("late", "late")
            cluster.wait_condition("late", "Ready", "True", timeout=90)
            operator.assert_alive()
    finally:
        _install_crd(control_plane)


_BUSY_OPERATOR = """
import os, sys
from northflank_llm_operator import cli, reconciler as poller

def busy(*args, **kwargs):
    open(os.environ["BUSY_MARK"], "w").close()
    while True:  # a CPU-heavy poll that never yields to the event loop
        pass

poller.compute_status = busy
sys.exit(cli.main(sys.argv[1:]))
"""


def test_sigterm_stops_the_operator_in_time_even_during_a_cpu_heavy_poll(
    control_plane: ControlPlane, crd_installed: object, namespace: str, simulator: RunningSimulator,
    nf: SimulatorControl, tmp_path: Path,
) -> None:  # fmt: skip
    nf.put_deployment(PROJECT, "busy", status="running")
    mark = tmp_path / "busy"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NORTHFLANK_", "NF_"))}
    env.update(
        KUBECONFIG=str(control_plane.kubeconfig),
        NORTHFLANK_API_BASE_URL=simulator.base_url,
        NORTHFLANK_API_TOKEN=TOKEN,
        NORTHFLANK_LLM_OPERATOR_POLL_INTERVAL_SECONDS="1",
        NORTHFLANK_LLM_OPERATOR_SHUTDOWN_TIMEOUT_SECONDS="3",
        BUSY_MARK=str(mark),
        PYTHONUNBUFFERED="1",
    )
    log_path = tmp_path / "operator.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", _BUSY_OPERATOR, "run", "--standalone", "--verbose", "-n", namespace],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        cluster = Cluster(control_plane, namespace, OperatorProcess(process, log_path))
        cluster.apply("busy", "busy")
        wait_for(mark.exists, timeout=60, message="the CPU-heavy poll running")
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 20 s after SIGTERM:\n{log_path.read_text()[-3000:]}")
        elapsed = time.monotonic() - started
        assert elapsed < 10, f"stopped after {elapsed:.1f}s"
        assert "Did not stop within 3s of SIGTERM" in log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_fifty_quick_spec_edits_cost_a_few_northflank_requests(
    control_plane: ControlPlane, namespace: str, nf: SimulatorControl, start_operator: OperatorStarter
) -> None:
    nf.put_deployment(PROJECT, "edited", status="running")
    with start_operator(api_token=TOKEN) as operator:
        cluster = Cluster(control_plane, namespace, operator)
        cluster.apply("edited", "edited", pollIntervalSeconds=3600)
        cluster.wait_condition("edited", "Ready", "True")
        before = len(nf.requests(path_contains="/llm-model-deployments"))
        for i in range(50):
            patch = {"spec": {"pollIntervalSeconds": 3000 + i}}
            control_plane.kubectl("patch", "llmd", "edited", "-n", namespace, "--type=merge", "-p", json.dumps(patch))
        generation = cluster.get("edited")["metadata"]["generation"]
        cluster.wait_status(
            "edited", lambda s: s.get("observedGeneration") == generation, "the last edit observed", timeout=60
        )
        spent = len(nf.requests(path_contains="/llm-model-deployments")) - before
        assert spent <= 5, f"{spent} Northflank requests for 50 spec edits"


def test_after_the_crd_comes_back_sigterm_still_hands_the_lease_over_first(
    control_plane: ControlPlane, namespace: str, nf: SimulatorControl, start_operator: OperatorStarter
) -> None:
    """kopf installs its own SIGTERM handler each time it starts; once the CRD was deleted and came
    back, a leader must still stop polling and release its Lease first (the standby's seconds-long
    take-over), not only after kopf has wound down."""
    lease = "nf-llm-lifecycle"
    nf.put_deployment(PROJECT, "again", status="running")
    try:
        leader_election = [
            "--leader-elect",
            f"--leader-election-id={lease}",
            f"--leader-election-namespace={namespace}",
        ]
        with start_operator(api_token=TOKEN, extra_env=RESYNC_EVERY_2S, extra_args=leader_election) as operator:
            cluster = Cluster(control_plane, namespace, operator)
            cluster.apply("again", "again")
            cluster.wait_condition("again", "Ready", "True", timeout=90)
            _delete_crd(control_plane)
            wait_for(lambda: "does not serve" in operator.log(), timeout=60, message="the operator waiting")
            _install_crd(control_plane)
            cluster.apply("again", "again")
            cluster.wait_condition("again", "Ready", "True", timeout=90)

            operator.process.send_signal(signal.SIGTERM)
            assert operator.process.wait(timeout=30) == 0
            log = operator.log()
            assert "handing the leader election Lease over first" in log
            assert log.index("handing the leader election Lease over first") < log.rindex("Released the leader")
            holder = control_plane.kubectl(
                "get", "lease", lease, "-n", namespace, "-o", "jsonpath={.spec.holderIdentity}"
            ).stdout
            assert holder == "", f"the Lease is still held by {holder!r}"
    finally:
        _install_crd(control_plane)
