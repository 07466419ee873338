"""(c) The simulator accepts create and update bodies exactly as the official clients type them.

Two directions. Every body the clients' types allow (narrowed to the documented constraints the
clients do not check: name and port patterns, integer sizes, the port range) is accepted. Every body
the simulator accepts is one the clients' strict types allow: a random mutation of a valid body (an
unknown key, a missing required key, a null, a value of the wrong type) is either refused or still
valid for the clients.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from pydantic import BaseModel, ValidationError

from northflank_api_simulator.models import CreateDeploymentRequest, UpdateDeploymentRequest
from tests.contract.conftest import load_schema
from tests.simulator.fixtures import RunningSimulator, open_account

CREATE = load_schema("strict.CreateLlmModelDeploymentRequest")
UPDATE = load_schema("strict.UpdateLlmModelDeploymentRequest")
EXAMPLES = settings(max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

#: Narrower than the documented rules, so every generated value meets them (and generation stays fast).
_DOCUMENTED: dict[str, dict[str, Any]] = {
    "name": {"type": "string", "pattern": r"^[a-z][a-z0-9]{2,10}( [a-z0-9]{1,4})?$"},
    "description": {"type": "string", "maxLength": 40},
    "tags": {"type": "array", "maxItems": 2, "items": {"type": "string", "pattern": r"^[a-z]{3,6}(-[a-z]{1,3})?$"}},
    "storageClass": {"type": "string", "pattern": r"^[a-z]{3,8}$"},
    "internalPort": {"type": "integer", "minimum": 1, "maximum": 65535},
    "gpuMemoryUtilization": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "domains": {"type": "array", "maxItems": 1, "items": {"type": "string", "pattern": r"^[a-z]{2,6}\.[a-z]{2,3}$"}},
}


def documented(schema: Any, key: str = "") -> Any:
    """``schema`` with the documented constraints applied: sizes and counts are positive integers."""
    if not isinstance(schema, dict):
        return schema
    narrowing = _DOCUMENTED.get(key)
    if narrowing is not None and schema.get("type") in (narrowing["type"], "number"):
        narrowed = {**schema, **narrowing}
        if schema.get("description", "").startswith("The name used to identify the port"):
            narrowed["pattern"] = r"^[a-z][a-z0-9]{0,7}$"  # port names: 1 to 8 characters
        return narrowed
    if schema.get("type") == "number":
        return {**schema, "type": "integer", "minimum": 1, "maximum": 100_000}
    if schema.get("type") == ["number", "null"]:
        return {**schema, "type": ["integer", "null"], "minimum": 0, "maximum": 100_000}
    narrowed = {name: documented(value, key) for name, value in schema.items() if name not in ("properties", "items")}
    if "properties" in schema:
        narrowed["properties"] = {name: documented(value, name) for name, value in schema["properties"].items()}
    if "items" in schema:
        narrowed["items"] = documented(schema["items"], key)
    if "anyOf" in schema:
        narrowed["anyOf"] = [documented(branch, key) for branch in schema["anyOf"]]
    if key == "ports" and schema.get("type") == "array":
        narrowed["maxItems"] = 3
    return narrowed


def accepts(model: type[BaseModel], body: Any) -> bool:
    """What the simulator's routes decide (they validate the body with exactly this model)."""
    try:
        model.model_validate(body)
    except ValidationError:
        return False
    return True


def allowed_by(schema: dict[str, Any], body: Any) -> bool:
    return jsonschema.Draft7Validator(schema).is_valid(body)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*path, index))


_MUTATIONS = ("unknown key", "drop", "null", "string", "float", "bool", "empty object")


@st.composite
def mutated(draw: st.DrawFn, schema: dict[str, Any]) -> Any:
    """A valid body with one random mutation somewhere in it."""
    body = copy.deepcopy(draw(from_schema(documented(schema))))
    path, value = draw(st.sampled_from(list(_paths(body))))
    mutation = draw(st.sampled_from(_MUTATIONS))
    if mutation == "unknown key" and isinstance(value, dict):
        value["futureField"] = 1
        return body
    if not path:
        return {} if mutation == "empty object" else body
    parent: Any = body
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if mutation == "drop" and isinstance(parent, dict):
        del parent[last]
    else:
        replacements: dict[str, Any] = {"null": None, "string": "8", "float": 1.5, "bool": True, "empty object": {}}
        parent[last] = replacements.get(mutation)
    return body


@EXAMPLES
@given(body=from_schema(documented(CREATE)))
def test_every_create_body_the_clients_allow_is_accepted(body: dict[str, Any]) -> None:
    assert allowed_by(CREATE, body)
    assert accepts(CreateDeploymentRequest, body), body


@EXAMPLES
@given(body=from_schema(documented(UPDATE)))
def test_every_update_body_the_clients_allow_is_accepted(body: dict[str, Any]) -> None:
    assert allowed_by(UPDATE, body)
    assert accepts(UpdateDeploymentRequest, body), body


@EXAMPLES
@given(body=mutated(CREATE))
def test_a_create_body_the_simulator_accepts_is_one_the_clients_allow(body: Any) -> None:
    if accepts(CreateDeploymentRequest, body):
        assert allowed_by(CREATE, body), body


@EXAMPLES
@given(body=mutated(UPDATE))
def test_an_update_body_the_simulator_accepts_is_one_the_clients_allow(body: Any) -> None:
    if accepts(UpdateDeploymentRequest, body):
        assert allowed_by(UPDATE, body), body


@pytest.mark.parametrize(
    ("schema", "body"),
    [
        (CREATE, {"name": "abc", "spec": {"configuration": {}}}),  # the docs' own example leaves out spec.type
        (CREATE, {"name": "abc", "spec": {"type": "custom", "configuration": {}}, "status": "running"}),
        (UPDATE, {"spec": {"type": "custom"}}),  # update's spec has no type
        (UPDATE, {"ports": [{"name": "http", "internalPort": 80, "protocol": "SCTP"}]}),
        (UPDATE, {"description": None}),
    ],
)
def test_bodies_the_clients_refuse_are_refused(schema: dict[str, Any], body: dict[str, Any]) -> None:
    model = CreateDeploymentRequest if schema is CREATE else UpdateDeploymentRequest
    assert not allowed_by(schema, body)
    assert not accepts(model, body)


@pytest.fixture
def writer(simulator: RunningSimulator) -> Iterator[httpx.Client]:
    open_account(simulator, team="team-c", projects=["contract"], token="manage-contract-token")
    simulator.control.set_lifecycle(60)
    with simulator.api("manage-contract-token") as api:
        yield api


def test_the_routes_answer_as_the_models_decide(writer: httpx.Client, schema: Callable[[str], dict[str, Any]]) -> None:
    route = "/v1/projects/contract/llm-model-deployments"
    valid = {"name": "abc", "spec": {"type": "custom", "configuration": {"engine": "vllm"}}}
    created = writer.post(route, json=valid)
    assert created.status_code == 200, created.text
    jsonschema.validate(created.json()["data"], schema("strict.GetLlmModelDeployment"))
    assert writer.post(route, json={**valid, "spec": {"configuration": {}}}).status_code == 400
    assert writer.post(f"{route}/abc", json={"tags": ["new-tag"]}).status_code == 200
    assert writer.post(f"{route}/abc", json={"tags": "new-tag"}).status_code == 400
