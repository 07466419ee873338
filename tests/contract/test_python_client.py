"""The second official client, PyPI ``northflank`` 2.1.0, as an oracle: its TypedDicts (validated
strictly with pydantic) accept what the simulator serves, including ``GET /v1/auth``, which the JS
client does not type, and refuse the create bodies the simulator refuses."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter, ValidationError

from tests.contract import regenerate
from tests.simulator.fixtures import RunningSimulator, open_account

TEAM = "team-py"
PROJECT = "python-client"
ROUTE = f"/v1/projects/{PROJECT}/llm-model-deployments"


@pytest.fixture(scope="module")
def types(contract_packages: Path) -> ModuleType:
    """``northflank/_types.py`` alone (the package itself would import httpx and websockets)."""
    spec = importlib.util.spec_from_file_location(
        "northflank_client_types", contract_packages / regenerate.PYTHON_TYPES
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # TypedDicts resolve their annotations through their module
    spec.loader.exec_module(module)
    return module


def valid(types: ModuleType, name: str, body: Any) -> None:
    TypeAdapter(getattr(types, name)).validate_python(body, strict=True)


@pytest.fixture
def api(simulator: RunningSimulator) -> Iterator[httpx.Client]:
    open_account(simulator, team=TEAM, projects=[PROJECT], token="manage-py-token")
    simulator.control.set_lifecycle(60)
    with simulator.api("manage-py-token") as client:
        yield client


def test_auth_answers_are_what_the_python_client_types(
    simulator: RunningSimulator, api: httpx.Client, types: ModuleType
) -> None:
    simulator.control.add_token("py-limited", team_id=TEAM, projects=[PROJECT], permissions=[])
    simulator.control.add_token("py-org", scope="org", team_ids=[TEAM])
    answers = [api.get("/v1/auth").json()["data"]]
    for token in ("py-limited", "py-org"):
        with simulator.api(token) as other:
            answers.append(other.get("/v1/auth").json()["data"])
    for answer in answers:
        valid(types, "GetAuthResponse", answer)
    assert answers[1]["projectRestrictions"] == {"enabled": True, "projects": [PROJECT], "restrictionMode": "in"}


def test_deployments_and_pages_are_what_the_python_client_types(api: httpx.Client, types: ModuleType) -> None:
    body = {"name": "py model", "spec": {"type": "custom", "configuration": {"engine": "vllm"}}}
    valid(types, "CreateLlmModelDeploymentRequest", body)
    valid(types, "GetLlmModelDeploymentResponse", api.post(ROUTE, json=body).json()["data"])
    valid(types, "GetLlmModelDeploymentResponse", api.get(f"{ROUTE}/py-model").json()["data"])
    valid(types, "ListLlmModelDeploymentsResponse", api.get(ROUTE).json()["data"])
    update = {"spec": {"configuration": {"revision": "v2"}}}
    valid(types, "UpdateLlmModelDeploymentRequest", update)
    valid(types, "GetLlmModelDeploymentResponse", api.post(f"{ROUTE}/py-model", json=update).json()["data"])


def test_a_create_body_both_refuse(api: httpx.Client, types: ModuleType) -> None:
    body = {"name": "no type", "spec": {"configuration": {}}}  # the docs' own example leaves out spec.type
    with pytest.raises(ValidationError, match="type"):
        valid(types, "CreateLlmModelDeploymentRequest", body)
    assert api.post(ROUTE, json=body).status_code == 400
