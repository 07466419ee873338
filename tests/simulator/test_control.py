"""The control API itself: request log, reset, validation, and the client's error reporting."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from northflank_api_simulator.control import SimulatorControl, SimulatorControlError
from tests.simulator.fixtures import RunningSimulator
from tests.simulator.test_api import assert_error

SECRET = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.c2lnbmF0dXJl"


def test_request_log_counts_calls_without_keeping_tokens(simulator: RunningSimulator) -> None:
    simulator.control.add_token(SECRET, team_id="team-a")
    simulator.control.put_project("inference", team_id="team-a")
    simulator.control.put_deployment("inference", "model")
    with simulator.api(SECRET) as client:
        client.get("/v1/projects/inference/llm-model-deployments/model")
        client.get("/v1/projects/inference/llm-model-deployments", params={"per_page": 10})
    with simulator.api("wrong") as client:
        client.get("/v1/auth")

    logged = simulator.control.requests()
    assert [(entry["path"], entry["status"], entry["tokenKnown"]) for entry in logged] == [
        ("/v1/projects/inference/llm-model-deployments/model", 200, True),
        ("/v1/projects/inference/llm-model-deployments", 200, True),
        ("/v1/auth", 401, False),
    ]
    assert logged[1]["query"] == {"per_page": "10"}
    assert {entry["method"] for entry in logged} == {"GET"}
    assert all(entry["time"].endswith("Z") for entry in logged)
    assert SECRET not in json.dumps(logged)
    assert len(simulator.control.requests(path_contains="/model")) == 1

    simulator.control.clear_requests()
    assert simulator.control.requests() == []


def test_control_calls_are_not_logged(simulator: RunningSimulator) -> None:
    simulator.control.put_deployment("inference", "model")
    simulator.control.get_deployment("inference", "model")
    assert simulator.control.requests() == []


def test_reset_forgets_everything(simulator: RunningSimulator) -> None:
    simulator.control.add_token("token", team_id="team-a")
    simulator.control.put_project("inference", team_id="team-a")
    simulator.control.put_deployment("inference", "model")
    simulator.control.add_fault(status=500, json_body={})
    simulator.control.set_rate_limit(1, 60)
    with simulator.api("token") as client:
        client.get("/v1/auth")

    simulator.control.reset()

    assert simulator.control.requests() == []
    with pytest.raises(SimulatorControlError):
        simulator.control.get_deployment("inference", "model")
    with simulator.api("token") as client:
        assert_error(client.get("/v1/auth"), 401)
    simulator.control.add_token("token", team_id="team-a")
    with simulator.api("token") as client:
        assert client.get("/v1/auth").headers["x-ratelimit-limit"] == "1000"


def test_deployment_in_a_new_project_lands_in_the_default_team(simulator: RunningSimulator) -> None:
    simulator.control.add_token("default", team_id="default-team")
    created = simulator.control.put_deployment("fresh", "model")
    assert created["entityId"] == "default-team"
    with simulator.api("default") as client:
        assert client.get("/v1/projects/fresh/llm-model-deployments/model").status_code == 200


def test_put_replaces_but_keeps_creation_time(simulator: RunningSimulator) -> None:
    first = simulator.control.put_deployment("inference", "model", tags=["old-tag"])
    second = simulator.control.put_deployment("inference", "model", status="running")
    assert "tags" not in second
    assert second["createdAt"] == first["createdAt"]


@pytest.mark.parametrize(
    ("call", "status"),
    [
        (lambda control: control.put_deployment("inference", "model", id="other"), 400),
        (lambda control: control.put_deployment("inference", "model", projectId="other"), 400),
        (lambda control: control.patch_deployment("inference", "ghost", status="running"), 404),
        (lambda control: control.delete_deployment("inference", "ghost"), 404),
        (lambda control: control.revoke_token("ghost"), 404),
        (lambda control: control.add_token("token", scope="org"), 400),
        (lambda control: control.set_rate_limit(0, 60), 400),
    ],
)
def test_refused_control_calls_raise(
    simulator: RunningSimulator, call: Callable[[SimulatorControl], object], status: int
) -> None:
    with pytest.raises(SimulatorControlError) as refused:
        call(simulator.control)
    assert refused.value.status_code == status
    assert json.loads(refused.value.body)["error"]["status"] == status


def test_patch_cannot_change_the_id(simulator: RunningSimulator) -> None:
    simulator.control.put_deployment("inference", "model")
    with pytest.raises(SimulatorControlError) as refused:
        simulator.control.patch_deployment("inference", "model", id="other")
    assert refused.value.status_code == 400


def test_control_api_errors_use_the_envelope(simulator: RunningSimulator) -> None:
    with httpx.Client(base_url=simulator.base_url) as client:
        assert_error(client.get("/_simulator/nothing-here"), 404)
        assert_error(client.put("/_simulator/projects/p", content=b"{not json"), 400, "json")
        assert_error(client.put("/_simulator/projects/p", json=["a list"]), 400, "object")
        invalid = assert_error(client.put("/_simulator/tokens/t", json={"scope": "team"}), 400)
        assert invalid["details"]["errors"]
        assert client.get("/_simulator/healthz").json() == {"status": "ok"}


def test_ids_with_reserved_characters_round_trip(simulator: RunningSimulator) -> None:
    simulator.control.add_token("a/b token", team_id="team-a")
    simulator.control.put_project("inference", team_id="team-a")
    created = simulator.control.put_deployment("inference", "model v2")
    assert created["id"] == "model v2"
    assert simulator.control.get_deployment("inference", "model v2") == created
    with simulator.api("a/b token") as client:
        assert client.get("/v1/auth").status_code == 200
