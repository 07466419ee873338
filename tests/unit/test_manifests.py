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
    render,
)
from northflank_llm_operator.resource import LLMModelDeploymentSpec
from tests.unit.payloads import full_deployment

DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def item(deployment_id: str, name: str | None = None, status: str = "running") -> dict[str, Any]:
    return full_deployment(id=deployment_id, name=name or deployment_id, status=status)


def test_names_are_dns_1123_labels_made_from_the_deployment_name() -> None:
    assert kubernetes_name("DeepSeek V3 deployment") == "deepseek-v3-deployment"
    assert kubernetes_name("a  --  B") == "a-b"
    long = kubernetes_name("x" * 60 + " y" * 20)
    assert len(long) <= 63
    assert DNS_1123_LABEL.match(long)
    assert kubernetes_name("---") == ""


def test_colliding_names_get_a_short_deterministic_suffix_and_the_exact_id_keeps_its_name() -> None:
    names = assign_names({"llama": "Llama", "llama-1": "LLAMA", "llama-2": "llama"})
    assert names["llama"] == "llama"
    assert names["llama-1"] != names["llama-2"]
    assert all(re.fullmatch(r"llama-[0-9a-f]{5}", names[d]) for d in ("llama-1", "llama-2"))
    assert assign_names({"llama-2": "llama", "llama-1": "LLAMA", "llama": "Llama"}) == names
    # A deployment added later does not rename one imported before.
    later = assign_names({"llama": "Llama", "llama-1": "LLAMA", "llama-2": "llama", "llama-0": "llama"})
    assert later["llama-1"] == names["llama-1"]
    assert len(set(assign_names({f"m{i}": "Same Name" for i in range(50)}).values())) == 50


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
    assert [d["metadata"]["name"] for d in documents] == [f"model-{i}" for i in range(10)]
    assert first.startswith("---\napiVersion: northflank-llm-operator.dev/v1alpha1\nkind: LLMModelDeployment\n")
    assert all("status" not in d for d in documents)
    assert render([]) == ""


def test_the_import_command_refuses_an_interval_the_crd_would_refuse() -> None:
    parser = build_parser()
    assert parser.parse_args(["import", "--project", "p", "--poll-interval", "60"]).poll_interval == 60
    with pytest.raises(SystemExit):
        parser.parse_args(["import", "--project", "p", "--poll-interval", "5"])
