"""(a) Every answer the simulator serves validates against the official client's strict types: the
simulator never invents a field, a type or a status the real client does not know."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jsonschema
import pytest

from tests.simulator.fixtures import RunningSimulator, open_account
from tests.support.waiting import wait_for

Schema = Callable[[str], dict[str, Any]]
TEAM = "team-s"
PROJECT = "served"
ROUTE = f"/v1/projects/{PROJECT}/llm-model-deployments"
TEAM_ROUTE = f"/v1/teams/{TEAM}/projects/{PROJECT}/llm-model-deployments"


@pytest.fixture
def api(simulator: RunningSimulator) -> Iterator[httpx.Client]:
    open_account(simulator, team=TEAM, projects=[PROJECT], token="manage-served-token")
    simulator.control.add_token("served-org-token", scope="org", team_ids=[TEAM])
    with simulator.api("manage-served-token") as client:
        yield client


def strictly_valid(schema: dict[str, Any], body: Any) -> None:
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(body), key=lambda error: list(error.path))
    assert not errors, "\n".join(f"{'.'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors)


def test_get_and_list_of_default_deployments(simulator: RunningSimulator, api: httpx.Client, schema: Schema) -> None:
    for index in range(5):
        simulator.control.put_deployment(PROJECT, f"model-{index}", status="running")
    simulator.control.put_deployment(PROJECT, "bare", status="pending", ports=[])
    strictly_valid(schema("strict.GetLlmModelDeploymentResponse"), api.get(f"{ROUTE}/model-0").json())
    pages = [api.get(ROUTE, params={"per_page": 2}).json()]
    while "cursor" in pages[-1]["pagination"]:
        pages.append(api.get(ROUTE, params={"per_page": 2, "cursor": pages[-1]["pagination"]["cursor"]}).json())
    assert len(pages) == 3
    pages.append(api.get(ROUTE, params={"per_page": 4, "page": 2}).json())
    with simulator.api("served-org-token") as org:
        pages.append(org.get(TEAM_ROUTE).json())
        strictly_valid(schema("strict.GetLlmModelDeploymentResponse"), org.get(f"{TEAM_ROUTE}/bare").json())
    for page in pages:
        strictly_valid(schema("strict.ListLlmModelDeploymentsResponse"), page)


def test_every_write_answer_and_every_lifecycle_state(
    simulator: RunningSimulator, api: httpx.Client, schema: Schema
) -> None:
    simulator.control.set_lifecycle(0.05)
    item = schema("strict.GetLlmModelDeployment")
    served: list[dict[str, Any]] = []
    body: dict[str, Any] = {
        "name": "Full Model",
        "description": "all fields",
        "tags": ["gpu-fleet"],
        "ports": [
            {"name": "http", "internalPort": 8000, "protocol": "HTTP", "public": True, "domains": ["llm.example.com"]},
            {"name": "grpc", "internalPort": 9000, "protocol": "HTTP/2"},
        ],
        "spec": {
            "type": "custom",
            "configuration": {"engine": "vllm", "nodeConfiguration": {"storage": {"storageSize": 1}}},
        },
    }
    served.append(api.post(ROUTE, json=body).json()["data"])
    served.append(
        api.post(ROUTE, json={"name": "minimal", "spec": {"type": "custom", "configuration": {}}}).json()["data"]
    )
    path = f"{ROUTE}/full-model"
    wait_for(lambda: api.get(path).json()["data"]["status"] == "running", timeout=5, message="running")
    simulator.control.set_lifecycle(60)  # from here on each status holds until the test has read it
    update = {"spec": {"configuration": {"architecture": {"workerConfig": {"replicas": 2}}}}, "ports": []}
    served.append(api.post(path, json=update).json()["data"])
    served.append(simulator.control.ui_update(PROJECT, "full-model", description="from the UI"))
    assert api.delete(path).json() == {"data": {}}
    served.append(api.get(path).json()["data"])
    seen = {deployment["status"] for deployment in served}
    assert {"pending", "starting", "deleting"} <= seen
    for deployment in served:
        strictly_valid(item, deployment)


def test_the_contract_check_catches_an_invented_field(schema: Schema) -> None:
    # The check above can fail: a field or a status the official client does not know is refused.
    with pytest.raises(AssertionError, match="inventedField"):
        strictly_valid(schema("strict.GetLlmModelDeployment"), {"inventedField": 1})
