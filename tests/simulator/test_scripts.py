"""Scripts move a deployment through states in the background, as Northflank would."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from northflank_api_simulator.control import SimulatorControlError
from tests.simulator.fixtures import RunningSimulator
from tests.support.waiting import wait_for

PROJECT = "inference"


@pytest.fixture(autouse=True)
def project(simulator: RunningSimulator) -> None:
    simulator.control.add_token("token", team_id="team-a")
    simulator.control.put_project(PROJECT, team_id="team-a")


def served_status(simulator: RunningSimulator, deployment_id: str) -> Callable[[], str | int]:
    """The status the Northflank route serves, or the HTTP status when there is no object."""

    def read() -> str | int:
        with simulator.api("token") as client:
            response = client.get(f"/v1/projects/{PROJECT}/llm-model-deployments/{deployment_id}")
        return response.json()["data"]["status"] if response.status_code == 200 else response.status_code

    return read


def test_status_moves_through_the_steps(simulator: RunningSimulator) -> None:
    created = simulator.control.put_deployment(PROJECT, "model")
    simulator.control.run_script(
        PROJECT,
        "model",
        [
            {"afterSeconds": 0.05, "status": "provisioning"},
            {"afterSeconds": 0.5, "status": "starting", "patch": {"description": "warming up"}},
            {"afterSeconds": 0.5, "status": "running"},
        ],
    )
    assert created["status"] == "pending"
    status = served_status(simulator, "model")
    wait_for(lambda: status() == "provisioning", timeout=5, message="provisioning")
    wait_for(lambda: status() == "starting", timeout=5, message="starting")
    wait_for(lambda: status() == "running", timeout=5, message="running")
    final = simulator.control.get_deployment(PROJECT, "model")
    assert final["description"] == "warming up"
    assert final["updatedAt"] >= created["updatedAt"]


def test_delete_step_removes_the_deployment(simulator: RunningSimulator) -> None:
    simulator.control.put_deployment(PROJECT, "model", status="running")
    simulator.control.run_script(
        PROJECT, "model", [{"afterSeconds": 0.05, "status": "deleting"}, {"afterSeconds": 0.3, "delete": True}]
    )
    status = served_status(simulator, "model")
    wait_for(lambda: status() == "deleting", timeout=5, message="deleting")
    wait_for(lambda: status() == 404, timeout=5, message="404 after deletion")


def test_a_new_script_replaces_the_running_one(simulator: RunningSimulator) -> None:
    simulator.control.put_deployment(PROJECT, "model")
    simulator.control.run_script(PROJECT, "model", [{"afterSeconds": 0.4, "status": "crashed"}])
    simulator.control.run_script(
        PROJECT,
        "model",
        [{"afterSeconds": 0.05, "status": "running"}, {"afterSeconds": 0.8, "patch": {"description": "done"}}],
    )
    # The replacement's last step comes after the moment the first script would have crashed it.
    wait_for(
        lambda: simulator.control.get_deployment(PROJECT, "model").get("description") == "done",
        timeout=5,
        message="the scripted patch",
    )
    assert simulator.control.get_deployment(PROJECT, "model")["status"] == "running"


@pytest.mark.parametrize("stop", ["reset", "delete"])
def test_reset_and_delete_cancel_scripts(simulator: RunningSimulator, stop: str) -> None:
    simulator.control.put_deployment(PROJECT, "model")
    simulator.control.run_script(PROJECT, "model", [{"afterSeconds": 0.3, "status": "crashed"}])
    if stop == "reset":
        simulator.control.reset()
    else:
        simulator.control.delete_deployment(PROJECT, "model")
    simulator.control.put_deployment(PROJECT, "model")
    # A second deployment's script acts as a clock that ticks after the cancelled step was due.
    simulator.control.put_deployment(PROJECT, "clock")
    simulator.control.run_script(PROJECT, "clock", [{"afterSeconds": 0.6, "status": "running"}])
    wait_for(
        lambda: simulator.control.get_deployment(PROJECT, "clock")["status"] == "running", timeout=5, message="running"
    )
    assert simulator.control.get_deployment(PROJECT, "model")["status"] == "pending"


def test_script_needs_an_existing_deployment_and_valid_steps(simulator: RunningSimulator) -> None:
    with pytest.raises(SimulatorControlError) as missing:
        simulator.control.run_script(PROJECT, "ghost", [{"afterSeconds": 0, "status": "running"}])
    assert missing.value.status_code == 404
    simulator.control.put_deployment(PROJECT, "model")
    with pytest.raises(SimulatorControlError) as invalid:
        simulator.control.run_script(PROJECT, "model", [{"afterSeconds": 0}])
    assert invalid.value.status_code == 400
