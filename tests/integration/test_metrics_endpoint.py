"""``/metrics`` of the running operator, checked against what the simulator counted and the cluster holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from northflank_api_simulator.control import SimulatorControl
from tests.controlplane.controlplane import ControlPlane
from tests.simulator.fixtures import RunningSimulator, open_account
from tests.support.cluster import DEADLINE, PROJECT, Cluster, delete_all_resources
from tests.support.metrics import Scrape, scrape
from tests.support.operator_process import OperatorProcess, free_port, run_operator, run_operator_for_module
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

TOKEN = "nf-metrics-token"
LIMIT = 50_000


def test_metrics_match_the_simulators_counts_and_the_resources(
    control_plane: ControlPlane,
    crd_installed: object,
    namespace: str,
    simulator: RunningSimulator,
    tmp_path: Path,
) -> None:
    nf = open_account(simulator, team="team-m", projects=[PROJECT], requests_per_hour=LIMIT)
    token_id = nf.add_token(TOKEN, team_id="team-m")
    nf.put_deployment(PROJECT, "alpha", status="running")
    nf.put_deployment(PROJECT, "beta", status="crashed")
    with run_operator_for_module(
        kubeconfig=control_plane.kubeconfig,
        api_base_url=simulator.base_url,
        log_path=tmp_path / "operator.log",
        api_token=TOKEN,
        poll_interval_seconds=2.0,
        metrics_port=free_port(),
    ) as operator:
        assert operator.metrics_url is not None
        cluster = Cluster(control_plane, namespace, operator)
        try:
            check_metrics(cluster, operator, nf, token_id)
        finally:
            delete_all_resources(control_plane, namespace)


def check_metrics(cluster: Cluster, operator: OperatorProcess, nf: SimulatorControl, token_id: str) -> None:
    namespace = cluster.namespace
    cluster.apply("alpha", "alpha")
    cluster.apply("beta", "beta")
    cluster.apply("gone", "never-existed")
    cluster.wait_phase("alpha", "running")
    cluster.wait_phase("beta", "crashed")
    cluster.wait_condition("gone", "Ready", "False", "NotFound")

    def consistent() -> tuple[Scrape, list[dict[str, Any]]] | None:
        # The simulator's counts just before and just after the scrape agree: nothing was in flight.
        before = [row for row in nf.stats() if row["tokenId"] == token_id]
        metrics = scrape(operator.metrics_url or "")
        after = [row for row in nf.stats() if row["tokenId"] == token_id]
        return (metrics, after) if before == after and after else None

    metrics, rows = wait_for(consistent, timeout=DEADLINE, message="a quiet moment to compare counts")
    counted = {(row["route"], str(row["status"])): row["count"] for row in rows}
    exported = {
        (dict(key)["endpoint"], dict(key)["code"]): value
        for key, value in metrics.matching("northflank_api_requests_total").items()
    }
    assert exported == counted
    assert ("get", "404") in exported  # the missing deployment was confirmed with a GET
    histogram = sum(metrics.matching("northflank_api_request_duration_seconds_count").values())
    assert histogram == sum(counted.values())

    # One credential: its remaining budget is what the simulator's last header said.
    remaining = metrics.matching("northflank_ratelimit_remaining")
    assert len(remaining) == 1
    ((account_labels, value),) = remaining.items()
    account = dict(account_labels)["account"]
    assert value == LIMIT - sum(counted.values())
    assert metrics.value("northflank_ratelimit_limit", account=account) == LIMIT
    reset = metrics.value("northflank_ratelimit_reset_seconds", account=account)
    assert reset is not None
    assert 3000 < reset <= 3600
    assert TOKEN not in account
    assert account not in operator.log()

    # Per-resource series mirror the status in the cluster.
    for name in ("alpha", "beta", "gone"):
        status = cluster.status(name)
        assert metrics.value("llmmodeldeployment_phase", namespace=namespace, name=name,
                             phase=status["phase"]) == 1  # fmt: skip
        for condition in status["conditions"]:
            assert metrics.value("llmmodeldeployment_status_condition", namespace=namespace, name=name,
                                 condition=condition["type"], status=condition["status"]) == 1  # fmt: skip
        age = metrics.value("llmmodeldeployment_observation_age_seconds", namespace=namespace, name=name)
        assert age is not None
        assert 0 <= age < 30
        interval = metrics.value("llmmodeldeployment_poll_interval_seconds", namespace=namespace, name=name)
        assert interval == status["effectivePollIntervalSeconds"] == 2
    assert metrics.value("llmmodeldeployment_resources", phase="running") == 1
    assert metrics.value("llmmodeldeployment_resources", phase="crashed") == 1
    # Three first observations were written, at least.
    writes = metrics.value("llmmodeldeployment_status_writes_total")
    assert writes is not None
    assert writes >= 3
    assert metrics.value("leader_election_master_status", name="northflank-llm-operator") == 1
    assert (metrics.value("process_resident_memory_bytes") or 0) > 0

    # A deleted resource's series go with it.
    cluster.plane.kubectl("delete", "llmd", "beta", "-n", namespace)
    wait_for(
        lambda: not scrape(operator.metrics_url or "").matching("llmmodeldeployment_phase", name="beta"),
        timeout=DEADLINE,
        message="beta's series removed",
    )


def test_secure_metrics_ask_the_api_server_who_may_read_them(
    control_plane: ControlPlane, crd_installed: object, namespace: str, simulator: RunningSimulator, tmp_path: Path
) -> None:
    plane = control_plane
    for account in ("scraper", "stranger"):
        plane.kubectl("create", "serviceaccount", account, "-n", namespace)
    role = f"{namespace}-metrics-reader"
    plane.kubectl("create", "clusterrole", role, "--verb=get", "--non-resource-url=/metrics")
    plane.kubectl(
        "create", "clusterrolebinding", role, f"--clusterrole={role}", f"--serviceaccount={namespace}:scraper"
    )
    try:
        tokens = {
            account: plane.kubectl("create", "token", account, "-n", namespace, "--duration=10m").stdout.strip()
            for account in ("scraper", "stranger")
        }
        port = free_port()
        with run_operator(
            kubeconfig=plane.kubeconfig,
            namespaces=[namespace],
            api_base_url=simulator.base_url,
            api_token=TOKEN,
            log_path=tmp_path / "operator.log",
            metrics_port=port,
            extra_args=["--metrics-secure"],
        ) as operator:
            url = f"https://127.0.0.1:{port}"

            def answer(token: str | None, path: str = "/metrics") -> httpx.Response | None:
                operator.assert_alive()
                headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
                try:
                    return httpx.get(url + path, headers=headers, verify=False, timeout=10)  # noqa: S501 - self-signed
                except httpx.TransportError:
                    return None  # not listening yet

            allowed = wait_for(lambda: answer(tokens["scraper"]), timeout=DEADLINE, message="the secure endpoint")
            assert allowed.status_code == 200, allowed.text
            assert "leader_election_master_status" in allowed.text
            assert _status(answer(tokens["stranger"])) == 403, "authenticated, but no get on /metrics"
            assert _status(answer(None)) == 401
            assert _status(answer("not-a-token")) == 401
            assert _status(answer(None, "/readyz")) in (200, 503), "readiness needs no token"
            with pytest.raises(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        log = (tmp_path / "operator.log").read_text(errors="replace")
        assert "Refused /metrics to 'system:serviceaccount:" + namespace + ":stranger'" in log
        for token in tokens.values():
            assert token not in log, "a scraper's token reached the log"
    finally:
        plane.kubectl("delete", "clusterrolebinding", role, "--ignore-not-found", check=False)
        plane.kubectl("delete", "clusterrole", role, "--ignore-not-found", check=False)


def _status(response: httpx.Response | None) -> int | None:
    return response.status_code if response is not None else None
