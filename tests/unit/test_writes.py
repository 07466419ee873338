"""The pure write decisions of management (plan_write) and the status overlay."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from northflank_llm_operator.conditions import Condition
from northflank_llm_operator.management import ForProvider, Policies
from northflank_llm_operator.northflank.writer import Permissions, ai_model_permission
from northflank_llm_operator.writes import (
    ABSENT,
    UNKNOWN,
    Seen,
    Step,
    WriteInputs,
    overlay_status,
    plan_write,
)

ALL_PERMISSIONS = Permissions(frozenset(ai_model_permission(a) for a in ("Create", "Update", "Delete")))
CONFIGURATION = {"engine": "vllm", "name": "Qwen/Qwen3-8B", "nodeConfiguration": {"storage": {"storageSize": 6144}}}
FOR_PROVIDER = ForProvider.model_validate(
    {"description": "served by vLLM", "spec": {"type": "custom", "configuration": CONFIGURATION}}
)
RUNNING = Seen("exists", {"id": "my-model", "status": "running", "description": "served by vLLM",
                          "spec": {"type": "custom", "configuration": CONFIGURATION}})  # fmt: skip


def inputs(**changes: Any) -> WriteInputs:
    base = WriteInputs(
        policies=Policies.from_spec(["*"]),
        enabled=True,
        adopt_existing=False,
        for_provider=FOR_PROVIDER,
        project_id="proj",
        deployment_id="my-model",
        seen=ABSENT,
        permissions=ALL_PERMISSIONS,
        generation=1,
    )
    return dataclasses.replace(base, **changes)


def drifted(**fields: Any) -> Seen:
    return Seen("exists", {**RUNNING.data, **fields})


def test_observe_only_never_writes_and_says_nothing_about_management() -> None:
    decision = plan_write(inputs(policies=Policies.from_spec(None), seen=drifted(description="x")))
    assert (decision.step, decision.managed, decision.writing) == (Step.NOTHING, None, None)


def test_a_create_is_recorded_on_the_resource_before_it_is_sent() -> None:
    first = plan_write(inputs())
    assert first.step is Step.MARK_CREATE_PENDING
    assert first.writing == "Creating"
    second = plan_write(inputs(create_pending=True))
    assert second.step is Step.CREATE
    assert second.body == {"name": "my-model", "description": "served by vLLM",
                           "spec": {"type": "custom", "configuration": CONFIGURATION}}  # fmt: skip


def test_a_recorded_attempt_and_an_existing_deployment_mean_this_resource_created_it() -> None:
    """Crash right after the POST: after the restart the GET finds it, and it is confirmed, not re-created."""
    decision = plan_write(inputs(create_pending=True, seen=RUNNING))
    assert decision.step is Step.MARK_CREATED
    assert decision.managed is not None
    assert (decision.managed.status, decision.managed.reason) == ("True", "Created")


def test_a_409_for_this_resources_create_counts_as_created() -> None:
    assert plan_write(inputs(create_conflicted=True, seen=RUNNING)).step is Step.MARK_CREATED


def test_nothing_is_decided_from_an_unknown_or_unanswered_observation() -> None:
    assert plan_write(inputs(seen=UNKNOWN)).step is Step.NOTHING
    waiting = plan_write(inputs(create_pending=True, awaiting="Creating"))
    assert (waiting.step, waiting.writing) == (Step.NOTHING, "Creating")
    assert plan_write(inputs(permissions=None)).step is Step.NOTHING


def test_the_name_must_slug_to_the_id() -> None:
    named = FOR_PROVIDER.model_copy(update={"name": "Another Model"})
    decision = plan_write(inputs(for_provider=named))
    assert decision.step is Step.NOTHING
    assert decision.managed is not None
    assert decision.managed.reason == "InvalidName"
    assert plan_write(inputs(for_provider=FOR_PROVIDER.model_copy(update={"name": "My Model"}))).step is (
        Step.MARK_CREATE_PENDING
    )


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"enabled": False}, "ManagementDisabled"),
        ({"conflict_with": "ns/first"}, "Conflict"),
        ({"permissions": Permissions(frozenset())}, "PermissionDenied"),
        ({"policies": Policies.from_spec(["Observe", "Update"])}, "NotFound"),
    ],
)
def test_refusals_send_nothing_and_say_why(changes: dict[str, Any], reason: str) -> None:
    decision = plan_write(inputs(**changes))
    assert decision.step is Step.NOTHING
    assert decision.managed is not None
    assert (decision.managed.status, decision.managed.reason) == ("False", reason)
    if reason == "PermissionDenied":
        assert "Project > AiModels > General > Create" in decision.managed.message


def test_an_existing_deployment_is_not_touched_unless_adopted() -> None:
    stranger = plan_write(inputs(seen=drifted(description="other")))
    assert stranger.step is Step.NOTHING
    assert stranger.managed is not None
    assert stranger.managed.reason == "NotAdopted"
    adopted = plan_write(inputs(seen=drifted(description="other"), adopt_existing=True, has_finalizer=True))
    assert adopted.step is Step.UPDATE
    assert adopted.body == {"description": "served by vLLM"}


def test_the_finalizer_comes_first_and_only_with_delete() -> None:
    assert plan_write(inputs(create_succeeded=True, seen=RUNNING)).step is Step.ADD_FINALIZER
    no_delete = Policies.from_spec(["Observe", "Create", "Update"])
    assert plan_write(inputs(create_succeeded=True, seen=RUNNING, policies=no_delete)).step is Step.NOTHING
    assert plan_write(inputs(create_succeeded=True, seen=RUNNING, policies=no_delete, has_finalizer=True)).step is (
        Step.RELEASE_FINALIZER
    )
    off = plan_write(inputs(enabled=False, has_finalizer=True))
    assert off.step is Step.RELEASE_FINALIZER


def test_drift_is_updated_once_per_generation() -> None:
    owned = {"create_succeeded": True, "has_finalizer": True, "seen": drifted(description="changed in the UI")}
    update = plan_write(inputs(**owned))
    assert (update.step, update.writing, update.body) == (Step.UPDATE, "Updating", {"description": "served by vLLM"})
    again = plan_write(inputs(**owned, updated_generation=1))
    assert again.step is Step.NOTHING
    assert again.stalled
    assert again.managed is not None
    assert "description" in again.managed.message
    assert plan_write(inputs(**owned, updated_generation=1, generation=2)).step is Step.UPDATE
    refreshed = inputs(**owned, updated_generation=1, refresh="now", update_requested_at="before")
    assert plan_write(refreshed).step is Step.UPDATE
    handled = inputs(**owned, updated_generation=1, refresh="now", update_requested_at="now")
    assert plan_write(handled).step is Step.NOTHING
    no_update = Policies.from_spec(["Observe", "Create", "Delete"])
    assert plan_write(inputs(**owned, policies=no_update)).step is Step.NOTHING
    assert plan_write(inputs(create_succeeded=True, has_finalizer=True, seen=RUNNING)).managed == Condition(
        "Managed", "True", "Created", "Created at Northflank by this resource."
    )


def test_a_changed_configuration_sends_the_whole_configuration() -> None:
    seen = drifted(spec={"type": "custom", "configuration": {**CONFIGURATION, "engine": "other"}})
    decision = plan_write(inputs(create_succeeded=True, has_finalizer=True, seen=seen))
    assert decision.body == {"spec": {"configuration": CONFIGURATION}}


def test_delete_goes_through_the_finalizer_and_waits_for_404() -> None:
    deleting = {"being_deleted": True, "has_finalizer": True, "create_succeeded": True}
    assert plan_write(inputs(**deleting, seen=RUNNING)).step is Step.DELETE
    assert plan_write(inputs(**deleting, seen=drifted(status="deleting"))).writing == "Deleting"
    assert plan_write(inputs(**deleting, seen=drifted(status="deleting"))).step is Step.NOTHING
    assert plan_write(inputs(**deleting, seen=RUNNING, awaiting="Deleting")).step is Step.NOTHING
    assert plan_write(inputs(**deleting, seen=ABSENT)).step is Step.RELEASE_FINALIZER
    denied = plan_write(inputs(**deleting, seen=RUNNING, permissions=Permissions(frozenset())))
    assert denied.step is Step.NOTHING
    assert denied.managed is not None
    assert denied.managed.reason == "PermissionDenied"


@pytest.mark.parametrize("changes", [{"enabled": False}, {"crd_deleting": True}])
def test_never_deleted_when_switched_off_or_the_crd_goes(changes: dict[str, Any]) -> None:
    owned = {"being_deleted": True, "has_finalizer": True, "create_succeeded": True}
    decision = plan_write(inputs(**owned, seen=RUNNING, **changes))
    assert decision.step is Step.RELEASE_FINALIZER
    assert [e.reason for e in decision.events] == ["Orphaned"]


def test_without_delete_or_ownership_the_finalizer_is_released_without_deleting() -> None:
    no_delete = Policies.from_spec(["Observe", "Create", "Update"])
    base = {"being_deleted": True, "has_finalizer": True, "seen": RUNNING}
    assert plan_write(inputs(**base, policies=no_delete, create_succeeded=True)).step is Step.RELEASE_FINALIZER
    assert plan_write(inputs(**base)).step is Step.RELEASE_FINALIZER  # not created, not adopted


def test_a_write_error_shows_as_write_failed_until_a_write_succeeds() -> None:
    decision = plan_write(inputs(create_pending=True, write_error="POST ... answered HTTP 400: bad"))
    assert decision.step is Step.CREATE
    assert decision.managed is not None
    assert decision.managed.reason == "WriteFailed"


def test_the_overlay_adds_managed_and_reconciling_and_keeps_the_rest() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    status = {
        "phase": "running",
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Running", "message": "m", "observedGeneration": 1,
             "lastTransitionTime": "2025-01-01T00:00:00Z"},
        ],
    }  # fmt: skip
    managed = Condition("Managed", "True", "Created", "Created at Northflank by this resource.")
    new = overlay_status(status, managed=managed, writing="Updating", stalled=False,
                         management={"updatedGeneration": 2}, generation=2, now=now)  # fmt: skip
    types = [(c["type"], c["reason"]) for c in new["conditions"]]
    assert types == [("Ready", "Running"), ("Reconciling", "Updating"), ("Managed", "Created")]
    assert new["conditions"][0] == status["conditions"][0]
    assert new["management"] == {"updatedGeneration": 2}
    assert new["phase"] == "running"
    kept = overlay_status(new, managed=None, writing=None, stalled=False, management=None, generation=2, now=now)
    assert [c["type"] for c in kept["conditions"]] == ["Ready", "Managed"]  # the write is over


def test_a_write_in_progress_is_not_stalled() -> None:
    """Before a create the GET says 404, which the mapping calls Stalled: not while the create is under way."""
    status = {"conditions": [{"type": "Stalled", "status": "True", "reason": "NotFound", "message": "m",
                              "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}  # fmt: skip
    now = datetime(2026, 1, 1, tzinfo=UTC)
    creating = overlay_status(status, managed=None, writing="Creating", stalled=False, management=None,
                              generation=1, now=now)  # fmt: skip
    assert [c["type"] for c in creating["conditions"]] == ["Reconciling"]
    refused = overlay_status(status, managed=None, writing=None, stalled=False, management=None, generation=1, now=now)
    assert [c["reason"] for c in refused["conditions"]] == ["NotFound"]
