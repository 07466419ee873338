"""The operator's create and update bodies are ones the official clients' strict request types allow."""

from __future__ import annotations

from typing import Any

import jsonschema
from hypothesis import HealthCheck, given, settings

from northflank_llm_operator.management import Drift, ForProvider, compute_drift, create_body, update_body
from tests.contract.conftest import load_schema
from tests.support.for_provider import crd_for_provider_schema, for_provider_manifests

CREATE = load_schema("strict.CreateLlmModelDeploymentRequest")
UPDATE = load_schema("strict.UpdateLlmModelDeploymentRequest")
EXAMPLES = settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@EXAMPLES
@given(manifest=for_provider_manifests(with_spec=True))
def test_create_bodies_are_valid_create_requests(manifest: dict[str, Any]) -> None:
    jsonschema.validate(create_body(ForProvider.model_validate(manifest), "my-model"), CREATE)


@EXAMPLES
@given(manifest=for_provider_manifests())
def test_update_bodies_are_valid_update_requests(manifest: dict[str, Any]) -> None:
    desired = ForProvider.model_validate(manifest)
    # Everything drifted: the largest body update_body can make for this forProvider.
    everything = [Drift(path, None, None) for path in ("description", "tags", "ports[x]", "spec.configuration")]
    body = update_body(desired, everything)
    jsonschema.validate(body, UPDATE)
    jsonschema.validate(update_body(desired, compute_drift(desired, {})), UPDATE)


def _paths(schema: dict[str, Any], path: str = "") -> set[str]:
    found = {path}
    for name, child in schema.get("properties", {}).items():
        found |= _paths(child, f"{path}.{name}")
    if "items" in schema:
        found |= _paths(schema["items"], f"{path}[]")
    return found


def test_for_provider_has_every_field_of_the_create_request_and_no_other() -> None:
    """A field the clients add (make regenerate-contract) must reach the CRD and the model too."""
    assert _paths(crd_for_provider_schema()) == _paths(CREATE)
