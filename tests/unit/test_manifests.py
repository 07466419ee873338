"""Manifest generation for ``northflank-llm-operator import``: names, labels, specs, deterministic YAML."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from northflank_llm_operator.cli import build_parser
from northflank_llm_operator.manifests import (
    DEPLOYMENT_LABEL,
    PROJECT_LABEL,
    ImportOptions,
    assign_names,
    build_manifests,
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
