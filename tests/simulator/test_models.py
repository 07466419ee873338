"""Validation of control payloads: mistakes in a test's setup must fail loudly."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from northflank_api_simulator.models import FaultSpec, Script, Seed, TokenGrant


@pytest.mark.parametrize(
    "body",
    [
        {"scope": "team"},
        {"scope": "team", "teamId": "a", "teamIds": ["a"]},
        {"scope": "org", "teamId": "a"},
        {"scope": "org", "teamIds": []},
        {"scope": "user", "teamId": "a"},
        {"scope": "team", "teamId": "a", "tema": "typo"},
    ],
)
def test_invalid_token_grants(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TokenGrant.model_validate(body)


def test_token_grant_teams_and_projects() -> None:
    org = TokenGrant.model_validate({"scope": "org", "teamIds": ["a", "b"], "projects": ["p"]})
    assert org.teams == ["a", "b"]
    assert org.allows_project("p")
    assert not org.allows_project("q")
    assert TokenGrant.model_validate({"teamId": "a"}).allows_project("anything")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"status": 200, "json": {}, "body": "x"},
        {"body": "x", "latencySeconds": 1},
        {"status": 99},
        {"status": 500, "path": "("},
        {"status": 500, "times": 0},
    ],
)
def test_invalid_faults(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        FaultSpec.model_validate(body)


def test_fault_matching() -> None:
    fault = FaultSpec.model_validate({"status": 500, "path": "/llm-model-deployments$", "projectId": "p"})
    assert fault.matches("GET", "/v1/projects/p/llm-model-deployments", "p", None)
    assert not fault.matches("POST", "/v1/projects/p/llm-model-deployments", "p", None)
    assert not fault.matches("GET", "/v1/projects/q/llm-model-deployments", "q", None)
    assert not fault.matches("GET", "/v1/projects/p/llm-model-deployments/d", "p", "d")
    assert FaultSpec.model_validate({"status": 500, "method": "*"}).matches("DELETE", "/v1/auth", None, None)


def test_json_null_is_a_body() -> None:
    assert FaultSpec.model_validate({"status": 200, "json": None}).has_json_body
    assert not FaultSpec.model_validate({"status": 200}).has_json_body


@pytest.mark.parametrize(
    "steps",
    [
        [],
        [{"afterSeconds": 1}],
        [{"afterSeconds": -1, "status": "running"}],
        [{"afterSeconds": 1, "delete": True, "status": "running"}],
        [{"afterSeconds": 1, "delete": True}, {"afterSeconds": 1, "status": "running"}],
    ],
)
def test_invalid_scripts(steps: list[dict[str, Any]]) -> None:
    with pytest.raises(ValidationError):
        Script.model_validate({"steps": steps})


def test_step_status_wins_over_patch_status() -> None:
    step = Script.model_validate(
        {"steps": [{"afterSeconds": 0, "status": "running", "patch": {"status": "crashed", "tags": ["a"]}}]}
    ).steps[0]
    assert step.changes() == {"status": "running", "tags": ["a"]}


def test_seed_deployments_need_an_address() -> None:
    with pytest.raises(ValidationError, match="projectId"):
        Seed.model_validate({"deployments": [{"id": "d"}]})
