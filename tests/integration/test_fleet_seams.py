"""Issue 14 items 1 and 3 against the real operator process, the real kube-apiserver and the simulator:
slow projects hold only their own request slots, and one hostile listing item blinds nobody.

(Item 2, the paused leader, is in test_leader_election.py; the other items are unit tests with a fake
clock in tests/unit/test_fleet_seams.py.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from northflank_api_simulator.control import SimulatorControl
from tests.controlplane.controlplane import ControlPlane
from tests.simulator.fixtures import RunningSimulator, open_account
from tests.support.cluster import DEADLINE, Cluster, conditions_by_type, delete_all_resources
from tests.support.operator_process import OperatorStarter
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

TOKEN = "nf-seams-operator-token"
TEAM = "team-seams"
SLOW = [f"slow-{i}" for i in range(4)]


@pytest.fixture(autouse=True)
def _cleanup(control_plane: ControlPlane, namespace: str) -> Iterator[None]:
    """Other modules on this API server count resources in every namespace: leave none behind."""
    yield
    delete_all_resources(control_plane, namespace)


def _gets_of(nf: SimulatorControl, project: str) -> int:
    return len(nf.requests(path_contains=f"/projects/{project}/llm-model-deployments"))


def test_four_slow_projects_delay_no_other_observation(
    control_plane: ControlPlane, namespace: str, simulator: RunningSimulator, start_operator: OperatorStarter
) -> None:
    """Four projects whose answers take longer than the request deadline held every request slot:
    a steady resource elsewhere was observed once in 56 s and a new one waited 26 s for a status."""
    nf = open_account(simulator, team=TEAM, projects=[*SLOW, "steady", "fresh"], token=TOKEN)
    for project in SLOW:
        nf.put_deployment(project, "model", status="running")
        nf.slow_project(project, first_byte_seconds=60)  # past the deadline: each holds its slot 20 s
    nf.put_deployment("steady", "model", status="running")
    nf.put_deployment("fresh", "model", status="running")
    with start_operator(api_token=TOKEN, poll_interval_seconds=2.0,
                        extra_env={"NORTHFLANK_LLM_OPERATOR_REQUEST_DEADLINE_SECONDS": "20",
                                   "NORTHFLANK_LLM_OPERATOR_MAX_CONCURRENT_REQUESTS": "4"}) as operator:  # fmt: skip
        cluster = Cluster(control_plane, namespace, operator)
        cluster.apply_all(cluster.manifest(p, "model", project=p, pollIntervalSeconds=30) for p in SLOW)
        wait_for(lambda: nf.in_flight() >= 4, timeout=DEADLINE, message="four slow requests in flight")
        cluster.apply("steady", "model", project="steady")
        cluster.wait_condition("steady", "Ready", "True")
        before, started = _gets_of(nf, "steady"), time.monotonic()
        wait_for(lambda: _gets_of(nf, "steady") >= before + 4, timeout=20,
                 message="the steady resource observed every 2 s while the slow projects hold their slots")  # fmt: skip
        assert time.monotonic() - started < 20
        applied = time.monotonic()
        cluster.apply("fresh", "model", project="fresh")
        cluster.wait_condition("fresh", "Ready", "True", timeout=10)
        assert time.monotonic() - applied < 10, "a new resource's first status does not wait for a slot"


def test_one_hostile_listing_item_fails_only_its_own_deployment(
    control_plane: ControlPlane, namespace: str, simulator: RunningSimulator, start_operator: OperatorStarter
) -> None:
    """One item with a 10 MB description failed the whole page: every tracked deployment of the project
    went InvalidResponse and the operator kept listing (22 listings, 0 GETs)."""
    nf = open_account(simulator, team=TEAM, projects=["crowded"], token=TOKEN)
    names = [f"model-{i}" for i in range(5)]
    for name in names:
        nf.put_deployment("crowded", name, status="running")
    nf.make_hostile("crowded", "model-0", field="description", text_bytes=10 * 1024 * 1024)
    with start_operator(api_token=TOKEN, poll_interval_seconds=2.0) as operator:
        cluster = Cluster(control_plane, namespace, operator)
        cluster.apply_all(cluster.manifest(name, name, project="crowded") for name in names)
        for name in names[1:]:
            cluster.wait_condition(name, "Ready", "True")
        status = cluster.wait_condition("model-0", "Synced", "False", "InvalidResponse")
        assert "larger than" in conditions_by_type(status)["Synced"]["message"]
        nf.put_deployment("crowded", "model-1", status="paused")
        cluster.wait_phase("model-1", "paused")  # still observed, by GET, while the listing is unreadable


def test_json_too_deep_to_mirror_is_not_mirrored_not_an_internal_error(
    control_plane: ControlPlane, namespace: str, simulator: RunningSimulator, start_operator: OperatorStarter
) -> None:
    nf = open_account(simulator, team=TEAM, projects=["deep"], token=TOKEN)
    nf.put_deployment("deep", "model", status="running")
    nf.put_deployment("deep", "neighbour", status="running")
    nf.make_hostile("deep", "model", field="spec.configuration.nested", depth=10_000)
    with start_operator(api_token=TOKEN, poll_interval_seconds=2.0) as operator:
        cluster = Cluster(control_plane, namespace, operator)
        cluster.apply_all(cluster.manifest(n, n, project="deep") for n in ("model", "neighbour"))
        cluster.wait_condition("neighbour", "Ready", "True")
        status = cluster.wait_condition("model", "Ready", "True")
        synced = conditions_by_type(status)["Synced"]
        assert (synced["status"], synced["reason"]) == ("True", "Observed")
        assert "Not mirrored" in synced["message"]
