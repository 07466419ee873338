"""The pure management module: policies, drift, and the create and update bodies."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from northflank_llm_operator.management import (
    Drift,
    ForProvider,
    Policies,
    Policy,
    compute_drift,
    create_body,
    slug,
    update_body,
)
from northflank_llm_operator.resource import LLMModelDeploymentSpec
from tests.support.for_provider import as_observed, for_provider_manifests
from tests.unit.payloads import full_deployment

EXAMPLES = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

CONFIGURATION: dict[str, Any] = {
    "engine": "vllm",
    "name": "deepseek-ai/DeepSeek-V3",
    "nodeConfiguration": {"storage": {"storageClass": "nvme", "storageSize": 6144}},
}


def fp(**fields: Any) -> ForProvider:
    return ForProvider.model_validate(fields)


# --- policies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "creates", "updates", "deletes"),
    [
        (None, False, False, False),
        ([], False, False, False),
        (["Observe"], False, False, False),
        (["Observe", "Create"], True, False, False),
        (["Observe", "Update"], False, True, False),
        (["Observe", "Delete"], False, False, True),
        (["Observe", "Create", "Update", "Delete"], True, True, True),
        (["*"], True, True, True),
    ],
)
def test_policies(values: list[str] | None, creates: bool, updates: bool, deletes: bool) -> None:
    policies = Policies.from_spec(values)
    assert (policies.creates, policies.updates, policies.deletes) == (creates, updates, deletes)
    assert policies.writes == (creates or updates or deletes)


def test_unset_policies_mean_observe_and_unknown_ones_are_refused() -> None:
    assert Policies.from_spec(None) == Policies() == Policies(frozenset({Policy.OBSERVE}))
    with pytest.raises(ValueError, match="Observer"):
        Policies.from_spec(["Observer"])


def test_the_resource_spec_parses_the_management_fields() -> None:
    spec = LLMModelDeploymentSpec.model_validate(
        {
            "projectId": "p",
            "llmModelDeploymentId": "d",
            "managementPolicies": ["Observe", "Update"],
            "adoptExisting": True,
            "forProvider": {"spec": {"configuration": CONFIGURATION}, "ports": []},
        }
    )
    assert spec.management_policies == [Policy.OBSERVE, Policy.UPDATE]
    assert spec.adopt_existing is True
    assert spec.for_provider is not None
    assert spec.for_provider.ports == []
    bare = LLMModelDeploymentSpec.model_validate({"projectId": "p", "llmModelDeploymentId": "d"})
    assert (bare.management_policies, bare.adopt_existing, bare.for_provider) == (None, None, None)


def test_for_provider_is_typed() -> None:
    with pytest.raises(ValidationError):
        fp(spec={"configuration": {**CONFIGURATION, "engine": "sglang"}})
    with pytest.raises(ValidationError):
        fp(spec={"configuration": CONFIGURATION}, futureField=1)
    with pytest.raises(ValidationError):
        fp(ports=[{"name": "http", "internalPort": 8000}])  # protocol is required


# --- slug ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("My Model", "my-model"),
        ("deepseek-v3-deployment", "deepseek-v3-deployment"),
        ("  Qwen 3 -- 0.6B!  ", "qwen-3-0-6b"),
        ("UPPER_case", "upper-case"),
    ],
)
def test_slug(name: str, expected: str) -> None:
    assert slug(name) == expected


@given(st.text(max_size=40))
def test_a_slug_is_an_id_and_slugging_it_again_changes_nothing(name: str) -> None:
    result = slug(name)
    assert slug(result) == result
    assert result == "" or (result[0].isalnum() and result[-1].isalnum() and result == result.lower())


# --- drift --------------------------------------------------------------------------------------


def test_no_drift_when_northflank_reports_what_for_provider_sets() -> None:
    desired = fp(
        description="A deployment for DeepSeek V3 model",
        tags=["gpu-heavy", "llm"],  # another order: tags are a set
        ports=[{"name": "http", "internalPort": 8000, "protocol": "HTTP", "public": True, "domains": ["a.example"]}],
        spec={"type": "custom", "configuration": CONFIGURATION},
    )
    assert compute_drift(desired, full_deployment()) == []


def test_only_fields_for_provider_sets_are_compared() -> None:
    assert compute_drift(fp(), full_deployment(description="changed", tags=[], ports=[], spec={})) == []
    assert compute_drift(fp(name="Something Else"), full_deployment()) == [], "name is identity, not drift"


def test_drift_paths_and_values() -> None:
    desired = fp(
        description="new",
        tags=["llm"],
        ports=[
            {"name": "http", "internalPort": 8080, "protocol": "HTTP", "public": True},
            {"name": "metrics", "internalPort": 9090, "protocol": "TCP"},
        ],
        spec={"configuration": {**CONFIGURATION, "engine": "vllm", "revision": "v2"}},
    )
    observed = full_deployment()
    observed["ports"].append({"id": "p02", "name": "grpc", "internalPort": 50051, "protocol": "TCP", "dns": "g"})
    assert compute_drift(desired, observed) == [
        Drift("description", "new", "A deployment for DeepSeek V3 model"),
        Drift("tags", ["llm"], ["llm", "gpu-heavy"]),
        Drift("ports[http].internalPort", 8080, 8000),
        Drift("ports[metrics]", {"name": "metrics", "internalPort": 9090, "protocol": "TCP"}, None),
        Drift("ports[grpc]", None, {"name": "grpc", "internalPort": 50051, "protocol": "TCP"}),
        Drift("spec.configuration.revision", "v2", None),
    ]


def test_numbers_compare_as_numbers_and_booleans_are_not_numbers() -> None:
    port = {"name": "http", "internalPort": 8000, "protocol": "HTTP", "public": True}
    observed = full_deployment(ports=[{**port, "internalPort": 8000.0}])
    assert compute_drift(fp(ports=[port]), observed) == []
    observed = full_deployment(ports=[{**port, "public": 1}])
    assert compute_drift(fp(ports=[port]), observed) == [Drift("ports[http].public", True, 1)]


def test_port_domains_are_not_compared_because_get_never_returns_them() -> None:
    port = {"name": "http", "internalPort": 8000, "protocol": "HTTP", "public": True, "domains": ["x.example"]}
    assert compute_drift(fp(ports=[port]), full_deployment()) == []


def test_a_missing_spec_object_reports_its_leaves() -> None:
    desired = fp(spec={"configuration": CONFIGURATION})
    drift = compute_drift(desired, full_deployment(spec={"type": "custom", "configuration": {"engine": "vllm"}}))
    assert [d.path for d in drift] == [
        "spec.configuration.name",
        "spec.configuration.nodeConfiguration.storage.storageClass",
        "spec.configuration.nodeConfiguration.storage.storageSize",
    ]


def test_description_and_tags_absent_at_northflank_equal_empty() -> None:
    observed = {k: v for k, v in full_deployment().items() if k not in ("description", "tags")}
    assert compute_drift(fp(description="", tags=[]), observed) == []


# --- bodies -------------------------------------------------------------------------------------


def test_create_body_defaults_the_name_to_the_id_and_types_the_spec() -> None:
    body = create_body(fp(spec={"configuration": CONFIGURATION}), "my-model")
    assert body == {"name": "my-model", "spec": {"type": "custom", "configuration": CONFIGURATION}}
    assert create_body(fp(name="My Model", spec={"configuration": CONFIGURATION}), "my-model")["name"] == "My Model"
    with pytest.raises(ValueError, match="spec"):
        create_body(fp(description="no spec"), "x")


def test_update_body_sends_the_whole_configuration_when_any_of_it_drifted() -> None:
    desired = fp(description="d", spec={"configuration": CONFIGURATION})
    drift = [Drift("spec.configuration.nodeConfiguration.storage.storageSize", 6144, 4096)]
    assert update_body(desired, drift) == {"spec": {"configuration": CONFIGURATION}}


def test_update_body_never_sends_ports_for_provider_does_not_set() -> None:
    desired = fp(spec={"configuration": CONFIGURATION})
    assert update_body(desired, [Drift("ports[http].public", True, False)]) == {}


def test_update_body_is_empty_without_drift() -> None:
    assert update_body(fp(description="d", tags=["a"], spec={"configuration": CONFIGURATION}), []) == {}


@EXAMPLES
@given(manifest=for_provider_manifests(with_spec=True))
def test_the_manifest_round_trips_through_the_model(manifest: dict[str, Any]) -> None:
    """Everything the CRD admits parses, and the fields it sets are exactly the ones sent back."""
    assert ForProvider.model_validate(manifest).wire() == manifest


@EXAMPLES
@given(manifest=for_provider_manifests(with_spec=True))
def test_a_created_deployment_shows_no_drift(manifest: dict[str, Any]) -> None:
    desired = ForProvider.model_validate(manifest)
    assert compute_drift(desired, as_observed(create_body(desired, "my-model"))) == []


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [leaf for key, child in value.items() for leaf in _leaves(child, (*path, key))]
    if isinstance(value, list):
        return [leaf for index, child in enumerate(value) for leaf in _leaves(child, (*path, index))]
    return [path]


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    return f"{value}-changed"


@EXAMPLES
@given(manifest=for_provider_manifests(with_spec=True), data=st.data())
def test_an_update_owns_no_more_than_for_provider_and_corrects_the_drift(
    manifest: dict[str, Any], data: st.DataObject
) -> None:
    desired = ForProvider.model_validate(manifest)
    observed = as_observed(create_body(desired, "my-model"))
    # Someone changes a value at Northflank (not the identity, nor the spec type no update can change).
    owned = ("description", "tags", "ports", "spec")
    leaves = [p for p in _leaves(observed) if p[0] in owned and p != ("spec", "type")]
    if leaves:
        path = data.draw(st.sampled_from(leaves))
        parent = observed
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = _changed(parent[path[-1]])
    drift = compute_drift(desired, observed)
    body = update_body(desired, drift)
    assert "name" not in body
    assert set(body) <= set(manifest)
    if "ports" not in manifest:
        assert not any(d.path.startswith("ports") for d in drift)
    # Northflank applying the body (whichever way it treats the configuration) leaves no drift.
    updated = copy.deepcopy(observed)
    for key, value in body.items():
        updated[key] = {**updated["spec"], **value} if key == "spec" else copy.deepcopy(value)
    assert compute_drift(desired, as_observed(updated)) == []
