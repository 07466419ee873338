"""Every constraint of the reference page's response schema is checked: strictly (a typed validation
error) where status and conditions depend on the value, leniently (a recorded contract deviation, the
value kept) in fields the operator only mirrors."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from northflank_llm_operator.northflank.models import (
    DeploymentStatus,
    GetLLMModelDeploymentResponse,
    LLMModelDeployment,
)
from tests.unit.payloads import SEED_PAGE_EXAMPLE, full_deployment


def validate(body: dict[str, Any]) -> LLMModelDeployment:
    return LLMModelDeployment.model_validate(body)


def test_full_object_parses_with_typed_fields() -> None:
    deployment = validate(full_deployment())
    assert deployment.known_status is DeploymentStatus.RUNNING
    assert deployment.ports[0].internal_port == 8000
    assert deployment.dns.zone == "code.run"
    assert deployment.entity_type == "team"


@pytest.mark.parametrize(
    "field",
    ["spec", "id", "projectId", "entityId", "creatorId", "dns", "ports", "status"],
)
def test_every_required_field_is_required(field: str) -> None:
    body = full_deployment()
    del body[field]
    with pytest.raises(pydantic.ValidationError) as error:
        validate(body)
    assert error.value.errors()[0]["loc"][0] == field


@pytest.mark.parametrize("field", ["name", "entityType"])
def test_a_missing_mirrored_only_field_is_a_deviation_not_a_failure(field: str) -> None:
    body = full_deployment()
    del body[field]
    assert validate(body).contract_deviations == (f"{field}: Field required",)


@pytest.mark.parametrize(
    ("field", "value"), [("name", 5), ("tags", "gpu"), ("tags", ["ok-tag", 7]), ("description", {}), ("createdAt", 1)]
)
def test_a_mirrored_only_field_of_the_wrong_type_is_left_out_of_status(field: str, value: Any) -> None:
    deployment = validate(full_deployment(**{field: value}))
    assert field not in deployment.model_dump(by_alias=True, exclude_unset=True)
    assert deployment.contract_deviations[0].startswith(f"{field}: ")
    assert deployment.contract_deviations[0].endswith("(left out of status)")


@pytest.mark.parametrize("optional", ["description", "tags", "createdAt", "updatedAt"])
def test_optional_fields_may_be_absent(optional: str) -> None:
    body = full_deployment()
    del body[optional]
    validate(body)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("abc", True),
        ("ab", False),  # min length 3
        ("a" * 100, True),
        ("a" * 101, False),  # max length 100
        ("My Model Deployment", True),  # single spaces allowed
        ("my-model-1", True),
        ("my--model", False),
        ("my  model", False),
        ("-model", False),
        ("model-", False),
        ("model_x", False),
    ],
)
def test_name_length_and_pattern(name: str, valid: bool) -> None:
    check_lenient(full_deployment(name=name), valid)


@pytest.mark.parametrize(("length", "valid"), [(0, True), (1024, True), (1025, False)])
def test_description_max_length(length: int, valid: bool) -> None:
    check_lenient(full_deployment(description="x" * length), valid)


def test_description_allows_any_characters() -> None:
    validate(full_deployment(description="line one\nline two — ünïcode"))


@pytest.mark.parametrize(
    ("tag", "valid"),
    [
        ("gpu", True),
        ("gp", False),
        ("t" * 100, True),
        ("t" * 101, False),
        ("a-b-c", True),
        ("a b", False),
        ("a--b", False),
    ],
)
def test_tag_length_and_pattern(tag: str, valid: bool) -> None:
    check_lenient(full_deployment(tags=[tag]), valid)


@pytest.mark.parametrize(("entity_type", "valid"), [("user", True), ("team", True), ("org", True), ("robot", False)])
def test_entity_type_is_one_of_the_documented_values(entity_type: str, valid: bool) -> None:
    check_lenient(full_deployment(entityType=entity_type), valid)


@pytest.mark.parametrize(
    ("base", "valid"),
    [
        ("model--proj.code.run", True),
        ("aa.bb.cc", True),
        ("code.run", False),  # needs at least two labels before the TLD
        ("a.code.run", False),  # labels are at least two characters
        ("model--proj.code.r", False),  # TLD at least two letters
        ("model_x.code.run", False),
    ],
)
def test_dns_base_pattern(base: str, valid: bool) -> None:
    check_lenient(full_deployment(dns={"base": base, "zone": "code.run"}), valid)


def test_dns_zone_is_required() -> None:
    check(full_deployment(dns={"base": "model--proj.code.run"}), valid=False)


def port(**overrides: Any) -> dict[str, Any]:
    return {"id": "p01", "name": "http", "internalPort": 8000, "protocol": "HTTP", "public": True} | overrides


@pytest.mark.parametrize(
    ("port_id", "valid"),
    [("p01", True), ("p-01", True), ("http-api-2", True), ("P01", False), ("1p", False), ("p", False), ("p_1", False)],
)
def test_port_id_pattern(port_id: str, valid: bool) -> None:
    check_lenient(full_deployment(ports=[port(id=port_id)]), valid)


@pytest.mark.parametrize(
    ("name", "valid"),
    [("http", True), ("h", True), ("Http-2", True), ("2http", False), ("http-", False), ("h_t", False)],
)
def test_port_name_pattern(name: str, valid: bool) -> None:
    check_lenient(full_deployment(ports=[port(name=name)]), valid)


@pytest.mark.parametrize("field", ["id", "name", "internalPort", "protocol", "public"])
def test_port_required_fields(field: str) -> None:
    incomplete = port()
    del incomplete[field]
    check(full_deployment(ports=[incomplete]), valid=False)


def test_port_types_are_enforced() -> None:
    check(full_deployment(ports=[port(internalPort="eighty")]), valid=False)
    check(full_deployment(ports=[port(public="maybe")]), valid=False)


def test_unknown_fields_are_kept_at_every_level() -> None:
    body = full_deployment(deploymentConfiguration={"id": "cfg-1", "createdAt": "2026-11-26T10:00:00.000Z"})
    body["newTopLevel"] = {"x": 1}
    body["ports"][0]["newPortField"] = True
    dumped = validate(body).model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert dumped["newTopLevel"] == {"x": 1}
    assert dumped["ports"][0]["newPortField"] is True
    assert dumped["deploymentConfiguration"]["id"] == "cfg-1"
    assert dumped == body


def test_an_unknown_status_is_accepted_but_not_known() -> None:
    deployment = validate(full_deployment(status="hibernating"))
    assert deployment.status == "hibernating"
    assert deployment.known_status is None


@pytest.mark.parametrize("status", [s.value for s in DeploymentStatus])
def test_every_documented_status_is_known(status: str) -> None:
    assert validate(full_deployment(status=status)).known_status == DeploymentStatus(status)


def test_seed_page_example_is_a_validation_error_naming_missing_fields() -> None:
    with pytest.raises(pydantic.ValidationError) as error:
        GetLLMModelDeploymentResponse.model_validate(SEED_PAGE_EXAMPLE)
    missing = {e["loc"][-1] for e in error.value.errors() if e["type"] == "missing"}
    assert missing == {"id", "entityId", "creatorId", "dns", "ports", "status"}


def check_lenient(body: dict[str, Any], valid: bool) -> None:
    """Parsed either way; a broken documented rule is a recorded deviation, the value kept as sent."""
    deployment = validate(body)
    assert (not deployment.contract_deviations) is valid, deployment.contract_deviations
    assert deployment.model_dump(by_alias=True, exclude_unset=True) == body


def check(body: dict[str, Any], valid: bool) -> None:
    if valid:
        validate(body)
    else:
        with pytest.raises(pydantic.ValidationError):
            validate(body)


@pytest.mark.parametrize(
    ("field", "value"),
    [("ports", [{"id": "p01", "name": "http_1", "internalPort": 8000, "protocol": "HTTP", "public": True}]),
     ("ports", [{"id": "1port", "name": "http", "internalPort": 8000, "protocol": "HTTP", "public": False}]),
     ("dns", {"base": "localhost", "zone": "code.run"})],
)  # fmt: skip
def test_strings_the_operator_only_mirrors_are_not_held_to_the_docs_patterns(field: str, value: Any) -> None:
    # Neither official client checks these patterns and the operator never reads the values: a real answer
    # with a port named http_1 is mirrored with a recorded deviation, not refused as InvalidResponse.
    deployment = LLMModelDeployment.model_validate(full_deployment(**{field: value}))
    mirrored = deployment.model_dump(mode="json", by_alias=True, exclude_unset=True)[field]
    assert mirrored == value
    assert any(deviation.startswith(f"{field}") for deviation in deployment.contract_deviations)
