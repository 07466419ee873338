"""Manifest generation for ``northflank-llm-operator import``: names, labels, specs, deterministic YAML."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from northflank_llm_operator.cli import build_parser
from northflank_llm_operator.management import ForProvider, compute_drift
from northflank_llm_operator.manifests import (
    DEPLOYMENT_LABEL,
    PROJECT_LABEL,
    ImportOptions,
    assign_names,
    build_manifests,
    check_policies,
    kubernetes_name,
    manifest_name,
    render,
)
from northflank_llm_operator.resource import LLMModelDeploymentSpec
from tests.unit.payloads import full_deployment

DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def item(deployment_id: str, name: str | None = None, status: str = "running") -> dict[str, Any]:
    return full_deployment(id=deployment_id, name=name or deployment_id, status=status)


def test_kubernetes_name_slugs_free_text() -> None:
    assert kubernetes_name("DeepSeek V3 deployment") == "deepseek-v3-deployment"
    assert kubernetes_name("a  --  B") == "a-b"
    long = kubernetes_name("x" * 60 + " y" * 20)
    assert len(long) <= 63
    assert DNS_1123_LABEL.match(long)
    assert kubernetes_name("---") == ""


def test_names_come_from_the_immutable_id_alone() -> None:
    assert manifest_name("llama-3-8b") == "llama-3-8b"
    upper = manifest_name("Llama-3")
    assert re.fullmatch(r"llama-3-[0-9a-f]{5}", upper)
    long = manifest_name("m" * 100)
    assert len(long) == 63
    assert DNS_1123_LABEL.match(long)
    assert manifest_name("m" * 100) == long
    assert manifest_name("m" * 99 + "n") != long


def test_assigned_names_do_not_depend_on_the_other_deployments() -> None:
    names = assign_names(["llama", "Llama", "LLAMA"])
    assert names["llama"] == "llama"
    assert len(set(names.values())) == 3
    assert all(DNS_1123_LABEL.match(n) for n in names.values())
    # A deployment added later renames nothing.
    assert {d: n for d, n in assign_names(["llama", "Llama", "LLAMA", "llama-2"]).items() if d != "llama-2"} == names
    # An id that happens to equal another id's suffixed name keeps it; the suffixed one grows its digest.
    clash = manifest_name("Llama")
    both = assign_names(["Llama", clash])
    assert both[clash] == clash
    assert both["Llama"] != clash
    assert both["Llama"].startswith(clash)


def test_a_rename_at_northflank_does_not_rename_the_manifest() -> None:
    before, _ = build_manifests([item("chat", "Llama 3")], ImportOptions("proj"))
    after, _ = build_manifests([item("chat", "Production chat")], ImportOptions("proj"))
    assert [m["metadata"]["name"] for m in before] == [m["metadata"]["name"] for m in after] == ["chat"]


def test_manifests_carry_ids_in_labels_and_spec_and_no_status() -> None:
    options = ImportOptions(
        project_id="proj", team_id="team-a", namespace="models", credentials_secret="nf", poll_interval_seconds=120
    )
    manifests, notes = build_manifests([item("qwen-2", "Qwen 2")], options)
    assert notes == []
    assert manifests == [
        {
            "apiVersion": "northflank-llm-operator.dev/v1alpha1",
            "kind": "LLMModelDeployment",
            "metadata": {
                "name": "qwen-2",
                "namespace": "models",
                "labels": {PROJECT_LABEL: "proj", DEPLOYMENT_LABEL: "qwen-2"},
            },
            "spec": {
                "projectId": "proj",
                "llmModelDeploymentId": "qwen-2",
                "teamId": "team-a",
                "credentialsSecretRef": {"name": "nf"},
                "pollIntervalSeconds": 120,
            },
        }
    ]
    LLMModelDeploymentSpec.model_validate(manifests[0]["spec"])


def test_expected_phase_from_current_only_for_running_and_paused() -> None:
    items = [item("a", status="paused"), item("b", status="running"), item("c", status="starting")]
    manifests, notes = build_manifests(items, ImportOptions("proj", expected_phase_from_current=True))
    assert [m["spec"].get("expectedPhase") for m in manifests] == ["paused", "running", None]
    assert [n.deployment for n in notes] == ["c"]
    plain, _ = build_manifests(items, ImportOptions("proj"))
    assert all("expectedPhase" not in m["spec"] for m in plain)


def test_bad_items_are_left_out_with_a_note_not_a_crash() -> None:
    items: list[Any] = [item("good"), {"name": "no id"}, "not an object", item("../escape"), item("good")]
    manifests, notes = build_manifests(items, ImportOptions("proj"))
    assert [m["metadata"]["name"] for m in manifests] == ["good"], "duplicates from shifting pages count once"
    assert len(notes) == 3
    assert any(n.deployment == "../escape" and "left out" in n.message for n in notes)


def test_output_is_sorted_deterministic_multi_document_yaml() -> None:
    items = [item(f"d{i}", f"Model {9 - i}") for i in range(10)]
    first = render(build_manifests(items, ImportOptions("proj"))[0])
    again = render(build_manifests(list(reversed(items)), ImportOptions("proj"))[0])
    assert first == again
    documents = list(yaml.safe_load_all(first))
    assert [d["metadata"]["name"] for d in documents] == [f"d{i}" for i in range(10)]
    assert first.startswith("---\napiVersion: northflank-llm-operator.dev/v1alpha1\nkind: LLMModelDeployment\n")
    assert all("status" not in d for d in documents)
    assert render([]) == ""


def test_the_import_command_refuses_an_interval_the_crd_would_refuse() -> None:
    parser = build_parser()
    assert parser.parse_args(["import", "--project", "p", "--poll-interval", "60"]).poll_interval == 60
    with pytest.raises(SystemExit):
        parser.parse_args(["import", "--project", "p", "--poll-interval", "5"])


# -- import --manage (issue 17) --------------------------------------------------------------------


def managed(items: list[dict[str, Any]], *policies: str) -> tuple[dict[str, dict[str, Any]], list[str]]:
    options = ImportOptions("proj", management_policies=check_policies(policies or ("Observe", "Update")))
    manifests, notes = build_manifests(items, options)
    return {m["spec"]["llmModelDeploymentId"]: m["spec"] for m in manifests}, [
        f"{n.deployment} {n.message}" for n in notes
    ]


def test_for_provider_has_no_drift_against_the_answer_it_came_from() -> None:
    answer = full_deployment(id="deepseek-v3-deployment", name="DeepSeek V3 deployment", status="running")
    answer["ports"][0]["domains"] = ["ignored.example.com"]  # were GET to return them one day
    specs, notes = managed([answer])
    spec = specs["deepseek-v3-deployment"]
    assert compute_drift(ForProvider.model_validate(spec["forProvider"]), answer) == []
    assert spec["forProvider"]["name"] == "DeepSeek V3 deployment"
    assert all(
        set(p) <= {"name", "internalPort", "protocol", "public", "disableNfDomain"}
        for p in spec["forProvider"]["ports"]
    )
    assert notes == []
    LLMModelDeploymentSpec.model_validate(spec)


@pytest.mark.parametrize(
    ("policies", "adopt"),
    [
        (("Observe",), None),
        (("Observe", "Create"), None),
        (("Observe", "Update"), True),
        (("Observe", "Delete"), True),
        (("*",), True),
    ],
)
def test_adopt_existing_only_when_the_policies_write_to_what_exists(
    policies: tuple[str, ...], adopt: bool | None
) -> None:
    specs, _ = managed([item("chat")], *policies)
    assert specs["chat"]["managementPolicies"] == list(policies)
    assert specs["chat"].get("adoptExisting") is adopt


def test_what_no_request_can_set_is_left_out_and_named() -> None:
    answer = item("chat")
    answer["spec"]["configuration"]["speculative"] = {"method": "eagle"}
    answer["spec"]["configuration"]["nodeConfiguration"]["storage"]["shmSize"] = None
    specs, notes = managed([answer, item("renamed", "Production chat")])
    chat = specs["chat"]["forProvider"]
    assert "speculative" not in chat["spec"]["configuration"]
    assert "shmSize" not in chat["spec"]["configuration"]["nodeConfiguration"]["storage"]
    assert compute_drift(ForProvider.model_validate(chat), answer) == []
    assert "chat reports fields no request can set (spec.configuration.speculative): left out of forProvider" in notes
    assert "name" not in specs["renamed"]["forProvider"]
    assert any(n.startswith("renamed is named 'Production chat', which does not slug") for n in notes)


def test_repeated_tags_become_a_set_without_drift() -> None:
    answer = item("chat")
    answer["tags"] = ["llm", "llm", "gpu"]
    specs, _ = managed([answer])
    assert specs["chat"]["forProvider"]["tags"] == ["llm", "gpu"], "the CRD keeps tags as a set"
    assert compute_drift(ForProvider.model_validate(specs["chat"]["forProvider"]), answer) == []


def test_a_refused_top_level_field_is_left_out_not_the_deployment() -> None:
    answer = item("chat")
    answer["ports"] = [{"name": "http", "internalPort": "eighty", "protocol": "HTTP", "public": True}]
    specs, notes = managed([answer])
    assert "ports" not in specs["chat"]["forProvider"]
    assert "spec" in specs["chat"]["forProvider"]
    assert any("forProvider.ports left out (ports.0.internalPort:" in n for n in notes)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("Update", "must include Observe"),
        ("*,Delete", "stands alone"),
        ("Observe,Nope", "policies are"),
        (",", "at least one"),
    ],
)
def test_policy_combinations_the_crd_refuses_are_refused(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        check_policies(text.split(","))


def test_policies_come_out_in_a_stable_order() -> None:
    assert [p.value for p in check_policies(["Delete", " Observe", "Update", "Observe"])] == [
        "Observe",
        "Update",
        "Delete",
    ]
    assert build_parser().parse_args(["import", "--project", "p", "--manage"]).management_policies is None
