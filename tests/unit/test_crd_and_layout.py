"""The CRD reads well in `kubectl explain` and agrees with the operator's own models; the layout is sound."""

from __future__ import annotations

import operator
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from northflank_llm_operator import resource
from northflank_llm_operator.status import OWNED_KEYS

REPO = Path(__file__).resolve().parents[2]
CRD_PATH = REPO / "crds" / f"{resource.PLURAL}.{resource.GROUP}.yaml"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return loaded


def version(crd: dict[str, Any]) -> dict[str, Any]:
    (only,) = crd["spec"]["versions"]
    assert isinstance(only, dict)
    return only


def walk(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, child in schema.get("properties", {}).items():
        yield f"{path}.{name}", child
        yield from walk(child, f"{path}.{name}")
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")


def test_names_match_the_public_contract(crd: dict[str, Any]) -> None:
    names = crd["spec"]["names"]
    assert crd["metadata"]["name"] == f"{resource.PLURAL}.{resource.GROUP}"
    assert (names["kind"], names["plural"], names["shortNames"], names["categories"]) == (
        "LLMModelDeployment",
        "llmmodeldeployments",
        ["llmd"],
        ["northflank"],
    )
    assert crd["spec"]["scope"] == "Namespaced"
    assert version(crd)["name"] == resource.VERSION
    assert version(crd)["subresources"] == {"status": {}}


def test_every_field_has_a_description(crd: dict[str, Any]) -> None:
    schema = version(crd)["schema"]["openAPIV3Schema"]
    undocumented = [path for path, child in walk(schema, "") if path != ".metadata" and not child.get("description")]
    assert undocumented == []


def test_spec_patterns_and_bounds_agree_with_the_operators_model(crd: dict[str, Any]) -> None:
    spec = version(crd)["schema"]["openAPIV3Schema"]["properties"]["spec"]
    fields = resource.LLMModelDeploymentSpec.model_fields
    for name in ("projectId", "llmModelDeploymentId", "teamId"):
        model_field = next(f for f in fields.values() if f.alias == name)
        constraints = {type(m).__name__: m for m in model_field.metadata}
        assert spec["properties"][name]["pattern"] == constraints["_PydanticGeneralMetadata"].pattern
        assert spec["properties"][name]["maxLength"] == constraints["MaxLen"].max_length
    expected_phase = fields["expected_phase"]
    assert spec["properties"]["expectedPhase"]["enum"] == list(get_args(expected_phase.annotation))
    assert expected_phase.default == "running"
    assert "default" not in spec["properties"]["expectedPhase"], "unset stays unset: GitOps diffs stay empty"
    interval = spec["properties"]["pollIntervalSeconds"]
    assert interval["minimum"] == resource.MIN_POLL_INTERVAL_SECONDS
    assert set(spec["required"]) == {"projectId", "llmModelDeploymentId"}


def test_identity_fields_are_immutable(crd: dict[str, Any]) -> None:
    spec = version(crd)["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for name in ("projectId", "llmModelDeploymentId", "teamId"):
        rules = [r["rule"] for r in spec["properties"][name]["x-kubernetes-validations"]]
        assert rules == ["self == oldSelf"]


def test_status_schema_declares_every_field_the_operator_writes(crd: dict[str, Any]) -> None:
    status = version(crd)["schema"]["openAPIV3Schema"]["properties"]["status"]
    # status.management is the management writer's bookkeeping, outside what compute_status owns.
    assert set(status["properties"]) == {*OWNED_KEYS, "management"}
    phases = status["properties"]["phase"]["enum"]
    assert phases == ["unknown", "pending", "provisioning", "starting", "crashed", "paused", "running", "deleting"]


def test_printer_columns(crd: dict[str, Any]) -> None:
    columns = [(c["name"], c.get("priority", 0)) for c in version(crd)["additionalPrinterColumns"]]
    assert columns == [
        ("Ready", 0),
        ("Phase", 0),
        ("Reason", 0),
        ("Model", 0),
        ("GPU", 0),
        ("Last Change", 0),
        ("Age", 0),
        ("Engine", 1),
        ("Replicas", 1),
        ("URL", 1),
        ("Project", 1),
        ("Deployment", 1),
        ("Expected", 1),
        ("Interval(s)", 1),
        ("Message", 1),
    ]


def test_printer_columns_read_fields_the_status_has(crd: dict[str, Any]) -> None:
    """Each column's path starts at a field the schema declares (a typo would print <none> forever)."""
    schema = version(crd)["schema"]["openAPIV3Schema"]
    for column in version(crd)["additionalPrinterColumns"]:
        top, field = column["jsonPath"].lstrip(".").split(".")[:2]
        field = field.split("[")[0]
        if top == "metadata":
            continue
        assert field in schema["properties"][top]["properties"], column


def test_operator_folder_is_not_a_package_and_does_not_shadow_the_stdlib() -> None:
    assert not (REPO / "operator" / "__init__.py").exists()
    assert operator.__file__ is not None
    assert Path(operator.__file__).is_relative_to(sysconfig.get_paths()["stdlib"])


def test_examples_are_valid_resources() -> None:
    for path in sorted((REPO / "crds" / "examples").glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        assert body["apiVersion"] == resource.API_VERSION, path.name
        resource.LLMModelDeploymentSpec.model_validate(body["spec"])


def test_mirrored_objects_keep_fields_newer_than_this_operator(crd: dict[str, Any]) -> None:
    # Without x-kubernetes-preserve-unknown-fields the API server prunes a new Northflank field silently.
    status = version(crd)["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for mirrored in ("dns", "deployment", "deploymentSpec"):
        assert status[mirrored].get("x-kubernetes-preserve-unknown-fields") is True, mirrored
    assert status["ports"]["items"].get("x-kubernetes-preserve-unknown-fields") is True
