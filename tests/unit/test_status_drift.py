"""status.drift and the UpToDate condition (issue 17): present only with spec.forProvider, in every mode."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from northflank_llm_operator.conditions import find
from northflank_llm_operator.management import ForProvider
from northflank_llm_operator.northflank import LLMModelDeployment
from northflank_llm_operator.reconciler import _for_provider
from northflank_llm_operator.registry import TrackedResource
from northflank_llm_operator.resource import ResourceKey
from northflank_llm_operator.status import PAUSED, Failure, Observation, Timing, compute_status
from tests.unit.payloads import full_deployment

T0 = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
SERVER_ERROR = Failure("ServerError", "Northflank answered with HTTP 500: boom", transient=True)
NOT_FOUND = Failure("NotFound", "Northflank answered with HTTP 404: gone", transient=False, not_found=True)
MATCHING = ForProvider.model_validate(
    {"description": "A deployment for DeepSeek V3 model", "spec": {"configuration": {"engine": "vllm"}}}
)


def at(seconds: float) -> Timing:
    return Timing(now=T0 + timedelta(seconds=seconds), heartbeat=timedelta(minutes=10), stale_after=timedelta(90))


def observe(**overrides: Any) -> Observation:
    return Observation(LLMModelDeployment.model_validate(full_deployment(**overrides)))


def up_to_date(status: dict[str, Any]) -> tuple[str, str, str] | None:
    found = find(status.get("conditions", []), "UpToDate")
    return None if found is None else (found["status"], found["reason"], found["message"])


def test_a_matching_deployment_is_up_to_date_with_no_drift() -> None:
    status = compute_status({}, observe(), generation=1, timing=at(0), for_provider=MATCHING).status
    assert status["drift"] == []
    assert up_to_date(status) == ("True", "UpToDate", "The deployment matches spec.forProvider.")
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Synced", "UpToDate"]


def test_drift_is_shown_as_compact_json_and_named_in_the_condition() -> None:
    desired = ForProvider.model_validate(
        {
            "description": "wanted",
            "tags": ["a", "b"],
            "ports": [{"name": "http", "internalPort": 8080, "protocol": "HTTP", "public": False}],
        }
    )
    status = compute_status({}, observe(), generation=1, timing=at(0), for_provider=desired).status
    assert status["drift"] == [
        {"path": "description", "desired": '"wanted"', "observed": '"A deployment for DeepSeek V3 model"'},
        {"path": "tags", "desired": '["a","b"]', "observed": '["llm","gpu-heavy"]'},
        {"path": "ports[http].internalPort", "desired": "8080", "observed": "8000"},
        {"path": "ports[http].public", "desired": "false", "observed": "true"},
    ]
    assert up_to_date(status) == (
        "False",
        "Drifted",
        "The deployment differs from spec.forProvider at description, tags, ports[http].internalPort and 1 more"
        " (status.drift).",
    )
    # Drift is information: Ready and Synced say what they say without forProvider.
    plain = compute_status({}, observe(), generation=1, timing=at(0)).status
    assert status["conditions"][:2] == plain["conditions"]


def test_drift_is_bounded() -> None:
    ports = [
        {"id": f"p{i}", "name": f"p{i}", "internalPort": i + 1, "protocol": "TCP", "public": False} for i in range(30)
    ]
    desired = ForProvider.model_validate({"description": "x" * 1000, "ports": []})
    status = compute_status({}, observe(ports=ports), generation=1, timing=at(0), for_provider=desired).status
    assert len(status["drift"]) == 20
    assert len(status["drift"][0]["desired"]) == 256
    assert json.loads(status["drift"][1]["observed"]) == {
        "name": "p0",
        "internalPort": 1,
        "protocol": "TCP",
        "public": False,
    }
    message = up_to_date(status)
    assert message is not None
    assert message[2].endswith("and 28 more (status.drift).")


def test_the_last_comparison_stays_through_a_transient_failure_and_a_pause() -> None:
    desired = ForProvider.model_validate({"description": "wanted"})
    first = compute_status({}, observe(), generation=1, timing=at(0), for_provider=desired).status
    for failure in (SERVER_ERROR, PAUSED):
        after = compute_status(first, failure, generation=1, timing=at(30), for_provider=desired)
        assert after.status["drift"] == first["drift"]
        assert find(after.status["conditions"], "UpToDate") == find(first["conditions"], "UpToDate")


def test_not_observed_before_the_first_observation_and_while_the_deployment_is_absent() -> None:
    never = compute_status({}, SERVER_ERROR, generation=1, timing=at(0), for_provider=MATCHING).status
    assert up_to_date(never) == ("Unknown", "NotObserved", "Not observed yet: Northflank answered with HTTP 500: boom")
    assert "drift" not in never
    first = compute_status({}, observe(), generation=1, timing=at(0), for_provider=MATCHING).status
    gone = compute_status(first, NOT_FOUND, generation=1, timing=at(30), for_provider=MATCHING)
    assert up_to_date(gone.status) == (
        "Unknown",
        "NotObserved",
        "The deployment does not exist at Northflank: nothing to compare.",
    )
    assert "drift" not in gone.status
    assert gone.patch["drift"] is None


def test_removing_for_provider_removes_drift_and_up_to_date() -> None:
    first = compute_status({}, observe(), generation=1, timing=at(0), for_provider=MATCHING).status
    for outcome in (observe(), SERVER_ERROR):
        update = compute_status(first, outcome, generation=2, timing=at(30))
        assert "drift" not in update.status
        assert up_to_date(update.status) is None
        assert update.patch["drift"] is None


def test_an_unchanged_comparison_writes_nothing() -> None:
    first = compute_status({}, observe(), generation=1, timing=at(0), for_provider=MATCHING).status
    again = compute_status(first, observe(), generation=1, timing=at(30), for_provider=MATCHING)
    assert not again.changed


def test_a_change_at_northflank_flips_up_to_date_and_back() -> None:
    first = compute_status({}, observe(), generation=1, timing=at(0), for_provider=MATCHING).status
    drifted = compute_status(first, observe(description="ui"), generation=1, timing=at(30), for_provider=MATCHING)
    assert up_to_date(drifted.status) is not None
    assert drifted.patch["drift"] == [
        {"path": "description", "desired": '"A deployment for DeepSeek V3 model"', "observed": '"ui"'}
    ]
    back = compute_status(drifted.status, observe(), generation=1, timing=at(60), for_provider=MATCHING).status
    assert up_to_date(back) == ("True", "UpToDate", "The deployment matches spec.forProvider.")
    assert find(back["conditions"], "UpToDate")["lastTransitionTime"] == "2026-11-26T10:01:00Z"  # type: ignore[index]


def _tracked(spec: dict[str, Any]) -> TrackedResource:
    return TrackedResource(
        key=ResourceKey("ns", "r"), uid="u", generation=1, spec=spec, status={}, resource_version="1"
    )


def test_the_reconciler_passes_the_parsed_for_provider() -> None:
    assert _for_provider(_tracked({"projectId": "p"})) is None
    assert _for_provider(_tracked({"forProvider": {"description": "d"}})) == ForProvider(description="d")
    # Only an object stored under an older schema can be untyped: no drift rather than a wrong one.
    assert _for_provider(_tracked({"forProvider": {"spec": {"configuration": {"engine": "other"}}}})) is None
