"""The registry's reading of the pause annotation (issue 16, part 4)."""

from __future__ import annotations

from typing import Any

import pytest

from northflank_llm_operator.registry import Registry, parse_pause_annotation
from northflank_llm_operator.resource import PAUSED_ANNOTATION, ResourceKey

KEY = ResourceKey("ns", "model")


def body(paused: str | None, *, resource_version: str = "1") -> dict[str, Any]:
    annotations = {PAUSED_ANNOTATION: paused} if paused is not None else {}
    return {
        "metadata": {
            "namespace": "ns",
            "name": "model",
            "uid": "u1",
            "generation": 1,
            "resourceVersion": resource_version,
            "annotations": annotations,
        },
        "spec": {"projectId": "p", "llmModelDeploymentId": "d"},
    }


@pytest.mark.parametrize("value", ["true", "True", "TRUE", "yes", "Yes", "1", "on", "ON", " true "])
def test_the_usual_true_values_pause(value: str) -> None:
    registry = Registry()
    registry.observe(None, body(value))
    resource = registry.get(KEY)
    assert resource is not None
    assert resource.paused
    assert resource.pause_annotation_invalid is None
    assert registry.take_pause_warnings() == []


@pytest.mark.parametrize("value", ["false", "False", "no", "0", "off", ""])
def test_the_usual_false_values_do_not_pause_and_are_not_warned_about(value: str) -> None:
    registry = Registry()
    registry.observe(None, body(value))
    resource = registry.get(KEY)
    assert resource is not None
    assert not resource.paused
    assert resource.pause_annotation_invalid is None
    assert registry.take_pause_warnings() == []


def test_a_value_that_means_nothing_does_not_pause_and_is_warned_about_once() -> None:
    registry = Registry()
    registry.observe(None, body("ture"))
    resource = registry.get(KEY)
    assert resource is not None
    assert not resource.paused
    assert resource.pause_annotation_invalid == "ture"
    [(warned, event)] = registry.take_pause_warnings()
    assert warned is resource
    assert (event.type, event.reason) == ("Warning", "InvalidPauseAnnotation")
    assert "'ture'" in event.message
    assert PAUSED_ANNOTATION in event.message
    # The same value again (a status write echoes back): no second warning.
    registry.observe("MODIFIED", body("ture", resource_version="2"))
    assert registry.take_pause_warnings() == []
    # Another meaningless value is news; a valid one clears it.
    registry.observe("MODIFIED", body("paused", resource_version="3"))
    assert [event.message for _, event in registry.take_pause_warnings()] == [
        f"The annotation {PAUSED_ANNOTATION} is 'paused', which means neither true (true, yes, 1, on) nor "
        "false (false, no, 0, off); polling goes on as if it were not set."
    ]
    registry.observe("MODIFIED", body("yes", resource_version="4"))
    again = registry.get(KEY)
    assert again is not None
    assert again.paused
    assert again.pause_annotation_invalid is None
    assert registry.take_pause_warnings() == []


def test_a_change_of_meaning_reaches_the_poller() -> None:
    registry = Registry()
    registry.observe(None, body(None))
    registry.take_pending()
    registry.observe("MODIFIED", body("Yes", resource_version="2"))
    assert registry.take_pending() == [KEY]
    registry.observe("MODIFIED", body("1", resource_version="3"))  # same meaning: nothing to do
    assert registry.take_pending() == []


def test_the_value_is_escaped_in_the_warning() -> None:
    assert parse_pause_annotation("tr\x1b[31mue") == (False, "tr\\x1b[31mue")
    assert parse_pause_annotation(123) == (False, "123")
    registry = Registry()
    registry.observe(None, body("tr\x1b[31mue"))
    [(_, event)] = registry.take_pause_warnings()
    assert "is 'tr\\x1b[31mue'," in event.message
    assert "\x1b" not in event.message


def test_a_new_meaningless_value_wakes_the_loop() -> None:
    registry = Registry()
    registry.observe(None, body("false"))
    registry.take_pending()
    registry.changed.clear()
    registry.observe("MODIFIED", body("nope", resource_version="2"))
    assert registry.changed.is_set()


def _managed_body(*, deleting: bool, finalizers: list[str], resource_version: str = "1") -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": "m", "namespace": "ns", "uid": "u1", "generation": 1, "resourceVersion": resource_version,
        "creationTimestamp": "2026-01-01T00:00:00Z", "finalizers": finalizers,
        "annotations": {"northflank-llm-operator.dev/external-create-pending": "2026-01-01T00:00:01Z", "other": "x"},
    }  # fmt: skip
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-02T00:00:00Z"
    return {"metadata": metadata, "spec": {"projectId": "p", "llmModelDeploymentId": "m"}}


def test_a_resource_being_deleted_is_followed_only_while_it_carries_the_delete_finalizer() -> None:
    registry = Registry()
    key = ResourceKey("ns", "m")
    finalizer = "northflank-llm-operator.dev/delete-at-northflank"
    registry.observe("ADDED", _managed_body(deleting=False, finalizers=[finalizer]))
    tracked = registry.get(key)
    assert tracked is not None
    assert tracked.markers == {"northflank-llm-operator.dev/external-create-pending": "2026-01-01T00:00:01Z"}
    assert (tracked.finalizers, tracked.deleting, tracked.created_at) == ((finalizer,), False, "2026-01-01T00:00:00Z")
    registry.take_pending()
    registry.observe("MODIFIED", _managed_body(deleting=True, finalizers=[finalizer], resource_version="2"))
    assert registry.take_pending() == [key]  # being deleted is news: the deployment is to be deleted
    assert registry.get(key) is tracked
    assert tracked.deleting
    registry.observe("MODIFIED", _managed_body(deleting=True, finalizers=["someone-else"], resource_version="3"))
    assert registry.get(key) is None
    registry.observe("ADDED", _managed_body(deleting=True, finalizers=[]))
    assert registry.get(key) is None  # observing only: a resource being deleted is forgotten at once, as before


def test_resources_are_found_by_the_deployment_they_name_through_every_change() -> None:
    """The manager asks who else names a deployment on every pass: an index, kept exact."""

    def body(name: str, deployment: str, *, uid: str = "", generation: int = 1, rv: str = "1") -> dict[str, Any]:
        return {
            "metadata": {"namespace": "ns", "name": name, "uid": uid or f"uid-{name}", "generation": generation,
                         "resourceVersion": rv},
            "spec": {"projectId": "p", "llmModelDeploymentId": deployment},
        }  # fmt: skip

    def names(deployment: str) -> list[str]:
        return [r.key.name for r in registry.naming(None, "p", deployment)]

    registry = Registry()
    registry.observe("ADDED", body("a", "dep"))
    registry.observe("ADDED", body("b", "dep"))
    registry.observe("ADDED", body("c", "other"))
    assert names("dep") == ["a", "b"]
    registry.observe("MODIFIED", body("b", "other", generation=2, rv="2"))  # an old object without CEL
    assert (names("dep"), names("other")) == (["a"], ["b", "c"])
    registry.observe("ADDED", body("a", "third", uid="uid-a2", rv="3"))  # re-created under the same name
    assert (names("dep"), names("third")) == ([], ["a"])
    registry.observe("DELETED", body("c", "other", rv="4"))
    registry.forget(ResourceKey("ns", "b"))
    assert names("other") == []
    registry.clear()
    assert names("third") == []
    assert registry._by_deployment == {}
