"""A deployment created with only an id must satisfy the contract (get-llm-model-deployment.txt)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from northflank_api_simulator.defaults import complete_deployment

NOW = "2026-11-26T10:00:00.000Z"
NAME = re.compile(r"^[a-zA-Z0-9]+((-|\s)[a-zA-Z0-9]+)*$")
DNS_BASE = re.compile(r"^([a-zA-Z0-9-]{2,}\.){2,}[a-zA-Z]{2,}$")
PORT_ID = re.compile(r"^[a-z]-?[a-z0-9]+(-[a-z0-9]+)*$")
PORT_NAME = re.compile(r"^[a-zA-Z](-?[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*)?$")
STATUSES = {"pending", "provisioning", "starting", "crashed", "paused", "running", "deleting"}
REQUIRED = {"name", "spec", "id", "projectId", "entityId", "entityType", "creatorId", "dns", "ports", "status"}


def complete(deployment_id: str = "deepseek-v3", **fields: Any) -> dict[str, Any]:
    return complete_deployment(fields, project_id="inference", deployment_id=deployment_id, team_id="team-a", now=NOW)


def assert_contract_valid(deployment: dict[str, Any]) -> None:
    assert deployment.keys() >= REQUIRED
    assert isinstance(deployment["name"], str)
    assert NAME.match(deployment["name"])
    assert 3 <= len(deployment["name"]) <= 100
    assert deployment["entityType"] in {"user", "team", "org"}
    assert deployment["status"] in STATUSES
    dns = deployment["dns"]
    assert isinstance(dns, dict)
    assert DNS_BASE.match(dns["base"])
    assert all(len(label) <= 63 for label in dns["base"].split("."))
    assert isinstance(dns["zone"], str)
    ports = deployment["ports"]
    assert isinstance(ports, list)
    assert ports
    for port in ports:
        assert PORT_ID.match(port["id"])
        assert PORT_NAME.match(port["name"])
        assert isinstance(port["internalPort"], int)
        assert isinstance(port["protocol"], str)
        assert isinstance(port["public"], bool)
        assert all(len(label) <= 63 for label in port["dns"].split("."))


def test_only_an_id_gives_a_contract_valid_object() -> None:
    deployment = complete()
    assert_contract_valid(deployment)
    assert deployment["name"] == deployment["id"] == "deepseek-v3"
    assert deployment["projectId"] == "inference"
    assert deployment["entityId"] == "team-a"
    assert deployment["status"] == "pending"
    assert deployment["createdAt"] == deployment["updatedAt"] == NOW
    assert deployment["deploymentConfiguration"] == {
        "id": deployment["deploymentConfiguration"]["id"],
        "createdAt": NOW,
    }
    assert deployment["spec"]["type"] == "custom"
    assert deployment["spec"]["configuration"]["engine"] == "vllm"
    assert deployment["spec"]["configuration"]["nodeConfiguration"]["storage"]["storageSize"] == 6144
    assert deployment["ports"][0]["dns"] == f"http--{deployment['dns']['base']}"


@pytest.mark.parametrize("deployment_id", ["x" * 100, "Model_With.Odd/Chars", "---"])
def test_dns_stays_valid_for_awkward_ids(deployment_id: str) -> None:
    dns_base = complete(deployment_id)["dns"]["base"]
    assert DNS_BASE.match(dns_base)
    assert all(len(label) <= 63 for label in f"http--{dns_base}".split("."))


def test_dns_is_stable_per_project_and_id() -> None:
    assert complete()["dns"] == complete()["dns"]
    assert complete("other")["dns"] != complete()["dns"]


def test_given_fields_are_kept_verbatim() -> None:
    deployment = complete(status="running", tags=["gpu"], dns={"base": "a1.b2.example", "zone": "example"})
    assert deployment["status"] == "running"
    assert deployment["tags"] == ["gpu"]
    assert deployment["ports"][0]["dns"] == "http--a1.b2.example"


def test_defaults_are_not_shared_between_objects() -> None:
    first = complete()
    first["spec"]["configuration"]["engine"] = "changed"
    assert complete()["spec"]["configuration"]["engine"] == "vllm"


def test_id_must_agree_with_the_path() -> None:
    with pytest.raises(ValueError, match="id"):
        complete(id="something-else")
