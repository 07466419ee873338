"""The operator survives a restart: nothing is lost, nothing is rewritten, changes are picked up."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from tests.controlplane.controlplane import ControlPlane
from tests.simulator.fixtures import RunningSimulator, open_account
from tests.support.kube_api import get_json, llmd_path
from tests.support.operator_process import OperatorProcess, OperatorStarter
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

TOKEN = "restart-token"
PROJECT = "restart-project"


def test_a_restarted_operator_resumes_without_rewriting_anything(
    control_plane: ControlPlane,
    namespace: str,
    simulator: RunningSimulator,
    tmp_path: Path,
    start_operator: OperatorStarter,
) -> None:
    nf = open_account(simulator, team="team-r", projects=[PROJECT], token=TOKEN)
    nf.put_deployment(PROJECT, "gemma", status="running")
    manifest = {
        "apiVersion": "northflank-llm-operator.dev/v1alpha1",
        "kind": "LLMModelDeployment",
        "metadata": {"name": "gemma", "namespace": namespace},
        "spec": {"projectId": PROJECT, "llmModelDeploymentId": "gemma"},
    }
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    def get() -> dict[str, Any]:
        return get_json(control_plane, llmd_path(namespace, "gemma"))

    def ready() -> dict[str, Any] | None:
        body = get()
        conditions = {c["type"]: c for c in body.get("status", {}).get("conditions", [])}
        return body if conditions.get("Ready", {}).get("status") == "True" else None

    def operator(log_name: str) -> AbstractContextManager[OperatorProcess]:
        return start_operator(
            api_token=TOKEN,
            log_path=tmp_path / log_name,
            poll_interval_seconds=1.0,
        )

    with operator("first.log"):
        before = wait_for(ready, timeout=30, message="Ready=True under the first operator")

    polls = len(nf.requests(path_contains="/gemma"))
    with operator("second.log") as second:
        wait_for(
            lambda: len(nf.requests(path_contains="/gemma")) >= polls + 3,
            timeout=30,
            message="the restarted operator polling again",
        )
        second.assert_alive()
        # Same observation, same status: the restart wrote nothing.
        assert get()["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]

        nf.patch_deployment(PROJECT, "gemma", status="crashed")
        crashed = wait_for(
            lambda: (body := get())["status"]["phase"] == "crashed" and body,
            timeout=30,
            message="the restarted operator noticing the crash",
        )
    conditions = {c["type"]: c for c in crashed["status"]["conditions"]}
    assert conditions["Stalled"]["reason"] == "Crashed"
    # The Synced condition never flipped across the restart, so its transition time is the original one.
    before_synced = next(c for c in before["status"]["conditions"] if c["type"] == "Synced")
    assert conditions["Synced"]["lastTransitionTime"] == before_synced["lastTransitionTime"]
