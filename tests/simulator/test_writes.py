"""The write routes (create, update, delete), their lifecycles, permissions, and changes "from the UI"."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from northflank_api_simulator.control import SimulatorControl
from tests.simulator.fixtures import RunningSimulator, open_account
from tests.simulator.test_api import assert_error
from tests.support.waiting import wait_for

TOKEN = "manage-writer-token"
TEAM = "team-w"
PROJECT = "inference"
DEPLOYMENTS = f"/v1/projects/{PROJECT}/llm-model-deployments"
STEP = 0.3
"""Seconds per lifecycle step: long enough for a poll every 20 ms to see each status."""


def create_body(name: str = "My Model", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "description": "served by vLLM",
        "tags": ["gpu-fleet"],
        "ports": [{"name": "http", "internalPort": 8000, "protocol": "HTTP", "public": True}],
        "spec": {
            "type": "custom",
            "configuration": {
                "engine": "vllm",
                "name": "Qwen/Qwen3-8B",
                "nodeConfiguration": {
                    "gpu": {"enabled": True, "configuration": {"gpuType": "h100-80", "gpuCount": 1}},
                    "storage": {"storageSize": 6144, "shmSize": None},
                },
                "architecture": {"type": "aggregated", "workerConfig": {"replicas": 1, "dataType": "auto"}},
            },
        },
    }
    body.update(overrides)
    return body


@pytest.fixture
def control(simulator: RunningSimulator) -> SimulatorControl:
    control = open_account(simulator, team=TEAM, projects=[PROJECT], token=TOKEN)
    control.set_lifecycle(STEP)
    return control


@pytest.fixture
def api(simulator: RunningSimulator, control: SimulatorControl) -> Iterator[httpx.Client]:
    with simulator.api(TOKEN) as client:
        yield client


def statuses_until(api: httpx.Client, path: str, final: str | None, *, timeout: float = 10.0) -> list[str | None]:
    """The distinct statuses GET shows, in order, until ``final`` (``None``: until 404)."""
    seen: list[str | None] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = api.get(path)
        status = response.json()["data"]["status"] if response.status_code == 200 else None
        assert response.status_code in (200, 404), response.text
        if not seen or seen[-1] != status:
            seen.append(status)
        if status == final:
            return seen
        time.sleep(0.02)
    raise AssertionError(f"{path} did not reach {final!r} in {timeout}s; saw {seen}")


def test_create_answers_the_object_and_goes_pending_provisioning_starting_running(api: httpx.Client) -> None:
    response = api.post(DEPLOYMENTS, json=create_body())
    assert response.status_code == 200, response.text
    created = response.json()["data"]
    assert created["id"] == "my-model"  # ids are slugs of names
    assert (created["name"], created["status"], created["entityId"]) == ("My Model", "pending", TEAM)
    assert created["spec"] == create_body()["spec"]
    assert [(p["id"], p["name"], p["public"], p["dns"]) for p in created["ports"]] == [
        ("p01", "http", True, f"http--{created['dns']['base']}")
    ]
    assert "domains" not in created["ports"][0]
    assert statuses_until(api, f"{DEPLOYMENTS}/my-model", "running") == [
        "pending",
        "provisioning",
        "starting",
        "running",
    ]


def test_a_taken_name_is_409_and_the_first_deployment_is_untouched(api: httpx.Client) -> None:
    first = api.post(DEPLOYMENTS, json=create_body("my-model")).json()["data"]
    response = api.post(DEPLOYMENTS, json=create_body("My Model", description="another"))
    assert_error(response, 409, "same derived identifier")
    assert api.get(f"{DEPLOYMENTS}/my-model").json()["data"]["description"] == first["description"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"spec": create_body()["spec"]}, "name"),
        (create_body(spec={"configuration": {}}), "type"),
        (create_body(spec={"type": "custom"}), "configuration"),
        (create_body(spec={"type": "custom", "configuration": {"nodeConfiguration": {"storage": {}}}}), "storage"),
        (create_body(spec={"type": "custom", "configuration": {"engine": "sglang"}}), "engine"),
        (create_body(name="x"), "name"),
        (create_body(name="bad_name"), "name"),
        (create_body(ports=[{"name": "http", "internalPort": 8000}]), "protocol"),
        (create_body(ports=[{"name": "toolongname", "internalPort": 80, "protocol": "HTTP"}]), "name"),
        (create_body(ports=[{"name": "http", "internalPort": 70000, "protocol": "HTTP"}]), "internalPort"),
        (create_body(ports=[{"name": "http", "internalPort": "8000", "protocol": "HTTP"}]), "internalPort"),
        (create_body(description=None), "description"),
        (create_body(unknown=True), "unknown"),
    ],
)
def test_create_validates_like_the_clients(api: httpx.Client, body: dict[str, Any], where: str) -> None:
    error = assert_error(api.post(DEPLOYMENTS, json=body), 400)
    assert where in str(error["details"])
    assert api.get(DEPLOYMENTS).json()["data"]["llmModelDeployments"] == []


def test_update_rolls_out_a_new_configuration_through_starting(api: httpx.Client, control: SimulatorControl) -> None:
    control.set_lifecycle(0)
    created = api.post(DEPLOYMENTS, json=create_body()).json()["data"]
    path = f"{DEPLOYMENTS}/my-model"
    wait_for(lambda: api.get(path).json()["data"]["status"] == "running", timeout=5, message="running")
    control.set_lifecycle(STEP)
    change = {"spec": {"configuration": {"architecture": {"workerConfig": {"replicas": 3}}}}}
    response = api.post(path, json=change)
    assert response.status_code == 200, response.text
    updated = response.json()["data"]
    assert updated["status"] == "starting"
    assert updated["deploymentConfiguration"]["id"] != created["deploymentConfiguration"]["id"]
    worker = updated["spec"]["configuration"]["architecture"]["workerConfig"]
    assert worker == {"replicas": 3, "dataType": "auto"}  # merged (the default update mode)
    assert statuses_until(api, path, "running") == ["starting", "running"]


def test_update_mode_replace_replaces_the_configuration(api: httpx.Client, control: SimulatorControl) -> None:
    api.post(DEPLOYMENTS, json=create_body())
    control.set_lifecycle(STEP, update_mode="replace")
    configuration = {"engine": "vllm", "nodeConfiguration": {"storage": {"storageSize": 8192}}}
    updated = api.post(f"{DEPLOYMENTS}/my-model", json={"spec": {"configuration": configuration}}).json()["data"]
    assert updated["spec"] == {"type": "custom", "configuration": configuration}


def test_update_of_metadata_keeps_the_configuration_and_ports_keep_their_ids(api: httpx.Client) -> None:
    created = api.post(DEPLOYMENTS, json=create_body()).json()["data"]
    path = f"{DEPLOYMENTS}/my-model"
    renamed = api.post(path, json={"name": "Renamed", "tags": []}).json()["data"]
    assert (renamed["id"], renamed["name"], renamed["tags"]) == ("my-model", "Renamed", [])
    assert renamed["deploymentConfiguration"] == created["deploymentConfiguration"]
    ports = [
        {"name": "metrics", "internalPort": 9090, "protocol": "TCP"},
        {"name": "http", "internalPort": 8080, "protocol": "HTTP", "public": True},
    ]
    updated = api.post(path, json={"ports": ports}).json()["data"]
    assert [(p["id"], p["name"], p["internalPort"], "dns" in p) for p in updated["ports"]] == [
        ("p02", "metrics", 9090, False),
        ("p01", "http", 8080, True),
    ]


def test_update_validates_and_404s(api: httpx.Client) -> None:
    api.post(DEPLOYMENTS, json=create_body())
    path = f"{DEPLOYMENTS}/my-model"
    assert "type" in str(assert_error(api.post(path, json={"spec": {"type": "custom"}}), 400)["details"])
    assert_error(api.post(path, json={"spec": {"configuration": {"engine": None}}}), 400)
    assert_error(api.post(path, json={"ports": [{"name": "http"}]}), 400)
    assert_error(api.post(f"{DEPLOYMENTS}/missing", json={"description": "x"}), 404, "not found")


def test_delete_goes_deleting_then_404(api: httpx.Client) -> None:
    api.post(DEPLOYMENTS, json=create_body())
    path = f"{DEPLOYMENTS}/my-model"
    response = api.delete(path)
    assert (response.status_code, response.json()) == (200, {"data": {}})
    assert api.delete(path).json() == {"data": {}}  # asked again while deleting: same answer
    assert_error(api.post(path, json={"description": "late"}), 409, "being deleted")
    assert statuses_until(api, path, None) == ["deleting", None]
    assert_error(api.delete(path), 404)


def test_team_scoped_twins_serve_the_writes(simulator: RunningSimulator, control: SimulatorControl) -> None:
    control.add_token("manage-org-token", scope="org", team_ids=[TEAM])
    twin = f"/v1/teams/{TEAM}/projects/{PROJECT}/llm-model-deployments"
    with simulator.api("manage-org-token") as api:
        assert api.post(twin, json=create_body()).status_code == 200
        assert api.post(f"{twin}/my-model", json={"description": "via the team"}).status_code == 200
        assert api.delete(f"{twin}/my-model").json() == {"data": {}}
        assert_error(api.post(DEPLOYMENTS, json=create_body("Other")), 403, "team-scoped route")


def test_permissions_are_reported_and_enforced(simulator: RunningSimulator, control: SimulatorControl) -> None:
    read_only = ["Project > AiModels > General > Read"]
    control.add_token("manage-reader", team_id=TEAM, permissions=read_only)
    with simulator.api("manage-reader") as api:
        auth = api.get("/v1/auth").json()["data"]
        assert auth["permissions"] == {"orgScope": [], "teamScope": [], "projectScope": read_only}
        assert api.get(DEPLOYMENTS).status_code == 200
        error = assert_error(api.post(DEPLOYMENTS, json=create_body()), 403, "Create")
        assert error["details"] == {"permission": "Project > AiModels > General > Create"}
    with simulator.api(TOKEN) as api:
        granted = api.get("/v1/auth").json()["data"]["permissions"]["projectScope"]
        assert {p.rsplit(" > ", 1)[1] for p in granted} == {"Read", "Create", "Update", "Delete"}
        api.post(DEPLOYMENTS, json=create_body())
    update = "Project > AiModels > General > Update"
    control.add_token("manage-no-delete", team_id=TEAM, permissions=[*read_only, update])
    with simulator.api("manage-no-delete") as api:
        assert api.post(f"{DEPLOYMENTS}/my-model", json={"description": "ok"}).status_code == 200
        assert_error(api.delete(f"{DEPLOYMENTS}/my-model"), 403, "Delete")


def test_writes_spend_the_rate_limit_and_are_counted_by_kind(simulator: RunningSimulator, api: httpx.Client) -> None:
    simulator.control.set_rate_limit(3, 3600)
    remaining = [api.post(DEPLOYMENTS, json=create_body()).headers["x-ratelimit-remaining"]]
    remaining.append(api.post(f"{DEPLOYMENTS}/my-model", json={"description": "x"}).headers["x-ratelimit-remaining"])
    remaining.append(api.delete(f"{DEPLOYMENTS}/my-model").headers["x-ratelimit-remaining"])
    assert remaining == ["2", "1", "0"]
    assert api.post(DEPLOYMENTS, json=create_body("Other")).status_code == 429
    counts = {(row["route"], row["status"]): row["count"] for row in simulator.control.stats()}
    assert counts == {("create", 200): 1, ("update", 200): 1, ("delete", 200): 1, ("create", 429): 1}


def test_a_change_from_the_ui_rolls_out_without_the_public_api(
    simulator: RunningSimulator, api: httpx.Client, control: SimulatorControl
) -> None:
    control.set_lifecycle(0)
    api.post(DEPLOYMENTS, json=create_body())
    path = f"{DEPLOYMENTS}/my-model"
    wait_for(lambda: api.get(path).json()["data"]["status"] == "running", timeout=5, message="running")
    control.set_lifecycle(STEP)
    control.clear_stats()
    changed = control.ui_update(PROJECT, "my-model", spec={"configuration": {"revision": "v2"}})
    assert changed["status"] == "starting"
    assert changed["spec"]["configuration"]["revision"] == "v2"
    assert simulator.control.stats() == []  # not a /v1 request: no budget, no log
    assert statuses_until(api, path, "running") == ["starting", "running"]
    with pytest.raises(Exception, match="400"):
        control.ui_update(PROJECT, "my-model", spec={"configuration": {"engine": "other"}})
