"""The manager's own logic that no pure decision covers: which resource manages a deployment first."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from northflank_llm_operator.manager import Manager
from northflank_llm_operator.registry import Registry
from northflank_llm_operator.resource import LLMModelDeploymentSpec, ResourceKey
from northflank_llm_operator.status import Event, StatusUpdate


def body(namespace: str, name: str, created: str, policies: list[str] | None, *, deployment: str = "dep",
         uid: str | None = None) -> dict[str, Any]:  # fmt: skip
    spec: dict[str, Any] = {"projectId": "p", "llmModelDeploymentId": deployment}
    if policies is not None:
        spec["managementPolicies"] = policies
    metadata = {"namespace": namespace, "name": name, "uid": uid or f"{namespace}-{name}", "generation": 1,
                "resourceVersion": "1", "creationTimestamp": created}  # fmt: skip
    return {"metadata": metadata, "spec": spec}


async def _nothing(*_: Any) -> None:
    return None


def manager_over(registry: Registry) -> Manager:
    return Manager(registry, cast(Any, None), None, None, _nothing, _nothing, lambda: datetime.now(UTC))


def conflict(manager: Manager, registry: Registry, key: ResourceKey) -> str | None:
    resource = registry.get(key)
    assert resource is not None
    return manager._conflict_with(resource, LLMModelDeploymentSpec.model_validate(resource.spec))


def test_the_second_writer_of_a_deployment_is_in_conflict_with_the_first() -> None:
    registry = Registry()
    registry.observe("ADDED", body("b", "first", "2026-01-01T00:00:00Z", ["*"]))
    registry.observe("ADDED", body("a", "second", "2026-01-01T00:00:05Z", ["Observe", "Update"]))
    registry.observe("ADDED", body("a", "tie", "2026-01-01T00:00:05Z", ["*"]))
    registry.observe("ADDED", body("c", "observer", "2025-01-01T00:00:00Z", None))
    registry.observe("ADDED", body("c", "elsewhere", "2025-01-01T00:00:00Z", ["*"], deployment="other"))
    manager = manager_over(registry)
    assert conflict(manager, registry, ResourceKey("b", "first")) is None  # an observer is no rival
    assert conflict(manager, registry, ResourceKey("a", "second")) == "b/first"
    assert conflict(manager, registry, ResourceKey("a", "tie")) == "b/first"
    assert conflict(manager, registry, ResourceKey("c", "elsewhere")) is None


def test_a_restarted_operator_keeps_the_managed_condition_through_the_first_mapping() -> None:
    """The first status mapped after a start comes before the first decision: Managed must not flap."""
    registry = Registry()
    managed = {"type": "Managed", "status": "True", "reason": "Created", "message": "m", "observedGeneration": 1,
               "lastTransitionTime": "2026-01-01T00:00:00Z"}  # fmt: skip
    resource_body = body("a", "m", "2026-01-01T00:00:00Z", ["*"])
    resource_body["status"] = {"phase": "running", "conditions": [managed]}
    registry.observe("ADDED", resource_body)
    resource = registry.get(ResourceKey("a", "m"))
    assert resource is not None
    ready = {"type": "Ready", "status": "True", "reason": "Running", "message": "r", "observedGeneration": 1,
             "lastTransitionTime": "2026-01-01T00:00:00Z"}  # fmt: skip
    mapped = StatusUpdate({"phase": "running", "conditions": [ready]}, {"conditions": [ready]})
    kept = manager_over(registry).with_management(resource, mapped, datetime(2026, 2, 1, tzinfo=UTC))
    assert [c for c in kept.status["conditions"] if c["type"] == "Managed"] == [managed]
    observing = body("a", "o", "2026-01-01T00:00:00Z", None)
    registry.observe("ADDED", observing)
    plain = registry.get(ResourceKey("a", "o"))
    assert plain is not None
    assert manager_over(registry).with_management(plain, mapped, datetime(2026, 2, 1, tzinfo=UTC)) is mapped


def test_a_deployment_about_to_be_created_is_creating_not_stalled_from_the_first_mapping() -> None:
    """The first observation of a deployment a `*` resource creates is a 404: the status it maps must
    say Creating (kstatus InProgress), not Stalled/NotFound (kstatus Failed, which ends a Flux health
    check), and no NotFound warning is recorded; without Create it stays what observing says."""
    registry = Registry()
    registry.observe("ADDED", body("a", "new", "2026-01-01T00:00:00Z", ["*"]))
    registry.observe("ADDED", body("a", "kept", "2026-01-01T00:00:00Z", ["Observe", "Update"], deployment="other"))
    now = datetime(2026, 2, 1, tzinfo=UTC)
    moment = "2026-02-01T00:00:00Z"

    def condition(kind: str, status: str, reason: str) -> dict[str, Any]:
        return {"type": kind, "status": status, "reason": reason, "message": "m", "observedGeneration": 1,
                "lastTransitionTime": moment}  # fmt: skip

    not_found = [condition("Ready", "False", "NotFound"), condition("Synced", "False", "NotFound"),
                 condition("Stalled", "True", "NotFound")]  # fmt: skip
    mapped = StatusUpdate({"phase": "unknown", "conditions": not_found}, {"conditions": not_found},
                          [Event("Warning", "NotFound", "m")])  # fmt: skip
    manager = Manager(registry, cast(Any, None), cast(Any, object()), cast(Any, object()), _nothing, _nothing,
                      lambda: now)  # fmt: skip
    creating = registry.get(ResourceKey("a", "new"))
    assert creating is not None
    update = manager.with_management(creating, mapped, now)
    kinds = {c["type"]: (c["status"], c["reason"]) for c in update.status["conditions"]}
    assert kinds.get("Reconciling") == ("True", "Creating")
    assert "Stalled" not in kinds
    assert update.events == []
    observed = registry.get(ResourceKey("a", "kept"))
    assert observed is not None
    kept = manager.with_management(observed, mapped, now)
    assert {c["type"]: c["reason"] for c in kept.status["conditions"]}.get("Stalled") == "NotFound"
    assert [e.reason for e in kept.events] == ["NotFound"]
