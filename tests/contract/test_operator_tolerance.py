"""(b) Whatever the official client's types allow (extra keys included, as a newer API may add them),
the operator's models accept and the status mapping turns into a status, without an exception.

Narrowings: TypeScript's ``number`` has no integer-ness, and the docs make ``internalPort`` an
integer (so does the CRD's status schema), so generated ports are whole numbers; extra keys are
scalars (see ``few_extras``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis_jsonschema import from_schema

from northflank_llm_operator.northflank.models import ListLLMModelDeploymentsResponse, LLMModelDeployment
from northflank_llm_operator.status import UNKNOWN_PHASE, Observation, Timing, compute_status
from tests.contract.conftest import load_schema

EXAMPLES = settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
TIMING = Timing(now=datetime(2026, 12, 6, tzinfo=UTC), heartbeat=timedelta(minutes=10), stale_after=timedelta(90))


def whole_ports(schema: Any) -> Any:
    """``schema`` with ``ports[].internalPort`` an integer, wherever the GET object sits in it."""
    if not isinstance(schema, dict):
        return schema
    narrowed = {key: whole_ports(value) if key in ("items", "anyOf") else value for key, value in schema.items()}
    if isinstance(schema.get("anyOf"), list):
        narrowed["anyOf"] = [whole_ports(branch) for branch in schema["anyOf"]]
    properties = schema.get("properties")
    if isinstance(properties, dict):
        narrowed["properties"] = {key: whole_ports(value) for key, value in properties.items()}
        if "internalPort" in properties:
            narrowed["properties"]["internalPort"] = {"type": "integer", "minimum": 1, "maximum": 65535}
    return narrowed


def few_extras(schema: Any) -> Any:
    """Extra keys stay allowed on every object, as scalars and two at most: arbitrary nested JSON makes
    generation four times slower and tests nothing more (the mirror treats every value alike)."""
    if isinstance(schema, list):
        return [few_extras(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    narrowed = {key: few_extras(value) for key, value in schema.items()}
    if schema.get("type") == "object" and "additionalProperties" not in schema:
        narrowed["additionalProperties"] = {"type": ["string", "integer", "number", "boolean", "null"]}
        narrowed["maxProperties"] = len(schema.get("properties", {})) + 2
    if schema.get("type") == "array":
        narrowed["maxItems"] = 3
    return narrowed


GET = few_extras(whole_ports(load_schema("lenient.GetLlmModelDeployment")))
LIST = few_extras(whole_ports(load_schema("lenient.ListLlmModelDeploymentsResponse")))


def mirrored(body: dict[str, Any]) -> None:
    deployment = LLMModelDeployment.model_validate(body)
    update = compute_status({}, Observation(deployment), generation=1, timing=TIMING)
    assert update.status["phase"] in {body["status"], UNKNOWN_PHASE}
    assert update.status["deployment"]["id"] == body["id"]
    again = compute_status(update.status, Observation(deployment), generation=1, timing=TIMING)
    assert not again.changed, "an unchanged answer writes nothing"


@EXAMPLES
@given(body=from_schema(GET))
def test_every_object_the_client_allows_is_mirrored(body: dict[str, Any]) -> None:
    mirrored(body)


@settings(EXAMPLES, max_examples=8)  # pages of up to three objects; the objects have the test above
@given(page=from_schema(LIST))
def test_every_page_the_client_allows_is_read(page: dict[str, Any]) -> None:
    listing = ListLLMModelDeploymentsResponse.model_validate(page)
    for item in listing.data.llm_model_deployments:
        mirrored(item)


def test_a_port_named_like_http_1_is_mirrored() -> None:
    # The regression of issue 16: the docs' pattern refuses it, neither client does, nor does the operator now.
    body = {
        "name": "real",
        "spec": {"type": "custom", "configuration": {}},
        "id": "real",
        "projectId": "p",
        "entityId": "t",
        "entityType": "team",
        "creatorId": "u",
        "dns": {"base": "real--p--abcd.code.run", "zone": "code.run"},
        "ports": [{"id": "p01", "name": "http_1", "internalPort": 8000, "protocol": "HTTP", "public": True}],
        "status": "running",
    }
    mirrored(body)
