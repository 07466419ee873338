"""The Northflank routes, over real HTTP: envelopes, lookups, pagination, scoping twins."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.simulator.fixtures import RunningSimulator

TOKEN = "team-a-token"
PROJECT = "inference"
DEPLOYMENTS = f"/v1/projects/{PROJECT}/llm-model-deployments"
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@pytest.fixture
def api(simulator: RunningSimulator) -> Iterator[httpx.Client]:
    simulator.control.add_token(TOKEN, team_id="team-a")
    simulator.control.put_project(PROJECT, team_id="team-a")
    with simulator.api(TOKEN) as client:
        yield client


def assert_error(response: httpx.Response, status: int, message_part: str = "") -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert error["status"] == status
    assert message_part.lower() in error["message"].lower()
    uuid.UUID(error["id"])
    return error


def test_get_returns_the_full_object(simulator: RunningSimulator, api: httpx.Client) -> None:
    stored = simulator.control.put_deployment(PROJECT, "deepseek-v3", status="running", description="DeepSeek V3")
    response = api.get(f"{DEPLOYMENTS}/deepseek-v3")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"data": stored}
    data = response.json()["data"]
    assert (data["id"], data["projectId"], data["status"], data["entityId"]) == (
        "deepseek-v3",
        PROJECT,
        "running",
        "team-a",
    )
    assert TIMESTAMP.match(data["createdAt"])
    assert TIMESTAMP.match(data["updatedAt"])


def test_unknown_project_and_deployment_are_404(api: httpx.Client) -> None:
    assert_error(api.get(f"{DEPLOYMENTS}/missing"), 404, "not found")
    response = api.get("/v1/projects/nowhere/llm-model-deployments")
    assert_error(response, 404, "project")
    assert response.headers["x-ratelimit-remaining"].isdigit()


def test_deleted_deployment_is_404(simulator: RunningSimulator, api: httpx.Client) -> None:
    simulator.control.put_deployment(PROJECT, "short-lived")
    assert api.get(f"{DEPLOYMENTS}/short-lived").status_code == 200
    simulator.control.delete_deployment(PROJECT, "short-lived")
    assert_error(api.get(f"{DEPLOYMENTS}/short-lived"), 404, "deployment")


def test_unserved_routes_answer_with_the_envelope(simulator: RunningSimulator, api: httpx.Client) -> None:
    assert_error(api.get("/v1/projects/inference/services"), 404)
    simulator.control.add_token("manage-unserved", team_id="team-a")  # a PUT is a write attempt
    with simulator.api("manage-unserved") as writer:
        error = assert_error(writer.put(DEPLOYMENTS, json={}), 405)
    assert error["message"]


def test_patch_changes_what_the_api_serves(simulator: RunningSimulator, api: httpx.Client) -> None:
    long_ago = "2026-01-01T00:00:00.000Z"
    created = simulator.control.put_deployment(PROJECT, "model", createdAt=long_ago, updatedAt=long_ago)
    patched = simulator.control.patch_deployment(PROJECT, "model", status="running")
    served = api.get(f"{DEPLOYMENTS}/model").json()["data"]
    assert served == patched
    assert served["status"] == "running"
    assert served["updatedAt"] > long_ago
    assert TIMESTAMP.match(served["updatedAt"])
    assert served["createdAt"] == long_ago
    assert served["deploymentConfiguration"] == created["deploymentConfiguration"]


def test_a_new_spec_gets_a_new_deployment_configuration(simulator: RunningSimulator) -> None:
    created = simulator.control.put_deployment(PROJECT, "model")
    spec = {**created["spec"], "configuration": {**created["spec"]["configuration"], "revision": "v2"}}
    patched = simulator.control.patch_deployment(PROJECT, "model", spec=spec)
    assert patched["deploymentConfiguration"]["id"] != created["deploymentConfiguration"]["id"]


def test_list_shape_at_the_end_of_the_list(simulator: RunningSimulator, api: httpx.Client) -> None:
    simulator.control.put_deployment(PROJECT, "b-model")
    simulator.control.put_deployment(PROJECT, "a-model")
    body = api.get(DEPLOYMENTS).json()
    assert body["pagination"] == {"hasNextPage": False, "count": 2}
    items = body["data"]["llmModelDeployments"]
    assert [item["id"] for item in items] == ["a-model", "b-model"]
    assert items[0] == simulator.control.get_deployment(PROJECT, "a-model")


def test_empty_project_lists_nothing(api: httpx.Client) -> None:
    body = api.get(DEPLOYMENTS).json()
    assert body == {"data": {"llmModelDeployments": []}, "pagination": {"hasNextPage": False, "count": 0}}


def put_many(simulator: RunningSimulator, count: int) -> list[str]:
    ids = [f"model-{number:03d}" for number in range(count)]
    for deployment_id in ids:
        simulator.control.put_deployment(PROJECT, deployment_id)
    return ids


def test_cursor_walk_returns_every_item_exactly_once(simulator: RunningSimulator, api: httpx.Client) -> None:
    ids = put_many(simulator, 230)
    seen: list[str] = []
    counts: list[int] = []
    params: dict[str, str | int] = {"per_page": 100}
    while True:
        body = api.get(DEPLOYMENTS, params=params).json()
        page = body["data"]["llmModelDeployments"]
        seen += [item["id"] for item in page]
        counts.append(body["pagination"]["count"])
        assert body["pagination"]["count"] == len(page)
        if not body["pagination"]["hasNextPage"]:
            assert "cursor" not in body["pagination"]
            break
        params = {"per_page": 100, "cursor": body["pagination"]["cursor"]}
    assert counts == [100, 100, 30]
    assert seen == ids


def test_page_numbers_and_default_page_size(simulator: RunningSimulator, api: httpx.Client) -> None:
    ids = put_many(simulator, 60)
    first = api.get(DEPLOYMENTS).json()
    assert first["pagination"]["count"] == 50
    assert first["pagination"]["hasNextPage"] is True
    second = api.get(DEPLOYMENTS, params={"page": 2}).json()
    assert [item["id"] for item in second["data"]["llmModelDeployments"]] == ids[50:]
    assert second["pagination"] == {"hasNextPage": False, "count": 10}


@pytest.mark.parametrize(
    "params",
    [{"per_page": 101}, {"per_page": 0}, {"per_page": "ten"}, {"per_page": "1.5"}, {"page": 0}, {"cursor": "!!"}],
)
def test_bad_pagination_parameters_are_400(api: httpx.Client, params: dict[str, str | int]) -> None:
    assert_error(api.get(DEPLOYMENTS, params=params), 400)


def test_per_page_100_is_allowed(api: httpx.Client) -> None:
    assert api.get(DEPLOYMENTS, params={"per_page": 100}).status_code == 200


def test_team_scoped_twins_serve_the_same_objects(simulator: RunningSimulator, api: httpx.Client) -> None:
    simulator.control.put_deployment(PROJECT, "model")
    team_route = f"/v1/teams/team-a/projects/{PROJECT}/llm-model-deployments"
    assert api.get(f"{team_route}/model").json() == api.get(f"{DEPLOYMENTS}/model").json()
    assert api.get(team_route).json() == api.get(DEPLOYMENTS).json()


def test_auth_introspection(simulator: RunningSimulator, api: httpx.Client) -> None:
    data = api.get("/v1/auth").json()["data"]
    assert data["tokenKind"] == "api"
    assert (data["entityId"], data["entityType"]) == ("team-a", "team")
    assert TOKEN not in str(data)
    simulator.control.add_token("org-token", scope="org", team_ids=["team-a"])
    with simulator.api("org-token") as org:
        assert org.get("/v1/auth").json()["data"]["entityType"] == "org"
