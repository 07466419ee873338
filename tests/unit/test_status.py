"""The pure status mapping: conditions, transitions, last-good-observation and no-op detection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from northflank_llm_operator.conditions import find
from northflank_llm_operator.northflank import LLMModelDeployment
from northflank_llm_operator.status import PAUSED, Failure, Observation, Timing, compute_staleness, compute_status
from tests.unit.payloads import full_deployment

T0 = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
HEARTBEAT = timedelta(minutes=10)
STALE = timedelta(seconds=90)


def at(seconds: float) -> Timing:
    return Timing(now=T0 + timedelta(seconds=seconds), heartbeat=HEARTBEAT, stale_after=STALE)


def observe(status: str = "running", **overrides: Any) -> Observation:
    return Observation(LLMModelDeployment.model_validate(full_deployment(status=status, **overrides)))


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    found = find(status.get("conditions", []), kind)
    assert found is not None, f"no {kind} condition in {status.get('conditions')}"
    return dict(found)


def has_condition(status: dict[str, Any], kind: str) -> bool:
    return find(status.get("conditions", []), kind) is not None


SERVER_ERROR = Failure("ServerError", "Northflank answered with HTTP 500: boom", transient=True)
UNAUTHORIZED = Failure("AuthenticationFailed", "Northflank answered with HTTP 401: bad token", transient=False)
NOT_FOUND = Failure("NotFound", "Northflank answered with HTTP 404: gone", transient=False, not_found=True)


def test_first_observation_mirrors_the_response() -> None:
    update = compute_status({}, observe("running"), generation=3, timing=at(0))
    status = update.status
    body = full_deployment(status="running")
    assert update.changed
    assert status["phase"] == "running"
    assert status["observedGeneration"] == 3
    assert status["lastSyncTime"] == "2026-11-26T10:00:00Z"
    assert status["dns"] == body["dns"]
    assert status["ports"] == body["ports"]
    assert status["deploymentSpec"] == body["spec"]
    assert status["deployment"] == {k: v for k, v in body.items() if k not in ("dns", "ports", "spec")}
    assert condition(status, "Ready") | {"lastTransitionTime": None} == {
        "type": "Ready",
        "status": "True",
        "reason": "Running",
        "message": "The deployment is running.",
        "observedGeneration": 3,
        "lastTransitionTime": None,
    }
    assert condition(status, "Synced")["status"] == "True"
    assert not has_condition(status, "Reconciling")
    assert not has_condition(status, "Stalled")


@pytest.mark.parametrize(
    ("phase", "ready", "reconciling", "stalled"),
    [
        ("pending", "False", True, False),
        ("provisioning", "False", True, False),
        ("starting", "False", True, False),
        ("deleting", "False", True, False),
        ("paused", "False", False, False),
        ("crashed", "False", False, True),
        ("running", "True", False, False),
    ],
)
def test_each_phase_maps_to_conditions(phase: str, ready: str, reconciling: bool, stalled: bool) -> None:
    status = compute_status({}, observe(phase), generation=1, timing=at(0)).status
    assert status["phase"] == phase
    assert condition(status, "Ready")["status"] == ready
    assert condition(status, "Ready")["reason"] == phase.capitalize()
    assert has_condition(status, "Reconciling") is reconciling
    assert has_condition(status, "Stalled") is stalled


def test_unknown_status_keeps_raw_value_and_says_so() -> None:
    status = compute_status({}, observe("hibernating"), generation=1, timing=at(0)).status
    assert status["phase"] == "unknown"
    assert status["deployment"]["status"] == "hibernating"
    ready = condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "UnknownStatus")
    assert "hibernating" in ready["message"]


def test_unchanged_observation_is_not_a_change_and_keeps_times() -> None:
    first = compute_status({}, observe(), generation=1, timing=at(0)).status
    again = compute_status(first, observe(), generation=1, timing=at(300))
    assert not again.changed
    assert again.status == first
    assert again.events == []


def test_heartbeat_restamps_last_sync_time_only_when_due() -> None:
    first = compute_status({}, observe(), generation=1, timing=at(0)).status
    due = compute_status(first, observe(), generation=1, timing=at(HEARTBEAT.total_seconds()))
    assert due.changed
    assert due.status["lastSyncTime"] == "2026-11-26T10:10:00Z"
    assert condition(due.status, "Ready")["lastTransitionTime"] == "2026-11-26T10:00:00Z"
    assert due.events == []


def test_transition_time_moves_only_when_status_flips() -> None:
    pending = compute_status({}, observe("pending"), generation=1, timing=at(0)).status
    starting = compute_status(pending, observe("starting"), generation=1, timing=at(30)).status
    # Ready stayed False (reason changed): its transition time is kept.
    assert condition(starting, "Ready")["lastTransitionTime"] == "2026-11-26T10:00:00Z"
    assert condition(starting, "Ready")["reason"] == "Starting"
    running = compute_status(starting, observe("running"), generation=1, timing=at(60)).status
    assert condition(running, "Ready")["lastTransitionTime"] == "2026-11-26T10:01:00Z"
    assert condition(running, "Synced")["lastTransitionTime"] == "2026-11-26T10:00:00Z"


def test_a_new_generation_is_a_change() -> None:
    first = compute_status({}, observe(), generation=1, timing=at(0)).status
    update = compute_status(first, observe(), generation=2, timing=at(10))
    assert update.changed
    assert update.status["observedGeneration"] == 2
    assert all(c["observedGeneration"] == 2 for c in update.status["conditions"])


def test_transient_error_keeps_the_last_good_observation_and_ready() -> None:
    good = compute_status({}, observe("running"), generation=1, timing=at(0)).status
    update = compute_status(good, SERVER_ERROR, generation=1, timing=at(30))
    status = update.status
    for key in ("phase", "dns", "ports", "deployment", "deploymentSpec", "lastSyncTime"):
        assert status[key] == good[key], key
    synced = condition(status, "Synced")
    assert (synced["status"], synced["reason"], synced["message"]) == ("False", "ServerError", SERVER_ERROR.message)
    assert condition(status, "Ready") == condition(good, "Ready")
    assert not has_condition(status, "Stalled")
    assert [(e.type, e.reason) for e in update.events] == [("Warning", "ServerError")]


def test_repeated_identical_error_writes_nothing_new() -> None:
    good = compute_status({}, observe(), generation=1, timing=at(0)).status
    failed = compute_status(good, SERVER_ERROR, generation=1, timing=at(30)).status
    again = compute_status(failed, SERVER_ERROR, generation=1, timing=at(60))
    assert not again.changed
    assert again.events == []


def test_ready_turns_unknown_once_the_observation_is_stale() -> None:
    good = compute_status({}, observe(), generation=1, timing=at(0)).status
    stale = compute_status(good, SERVER_ERROR, generation=1, timing=at(STALE.total_seconds() + 1)).status
    ready = condition(stale, "Ready")
    assert (ready["status"], ready["reason"]) == ("Unknown", "StatusStale")
    assert "2026-11-26T10:00:00Z" in ready["message"]
    assert stale["phase"] == "running"


def test_authentication_failure_is_stalled_and_ready_unknown() -> None:
    good = compute_status({}, observe(), generation=1, timing=at(0)).status
    status = compute_status(good, UNAUTHORIZED, generation=1, timing=at(5)).status
    assert (condition(status, "Ready")["status"], condition(status, "Ready")["reason"]) == (
        "Unknown",
        "AuthenticationFailed",
    )
    assert condition(status, "Stalled")["reason"] == "AuthenticationFailed"
    assert status["dns"] == good["dns"]


def test_not_found_is_ready_false() -> None:
    good = compute_status({}, observe("deleting"), generation=1, timing=at(0)).status
    status = compute_status(good, NOT_FOUND, generation=1, timing=at(5)).status
    assert (condition(status, "Ready")["status"], condition(status, "Ready")["reason"]) == ("False", "NotFound")
    assert condition(status, "Stalled")["status"] == "True"
    assert status["phase"] == "deleting"


def test_error_before_any_observation_has_unknown_phase() -> None:
    status = compute_status({}, SERVER_ERROR, generation=1, timing=at(0)).status
    assert status["phase"] == "unknown"
    assert condition(status, "Ready")["status"] == "Unknown"
    assert "lastSyncTime" not in status
    assert "dns" not in status


def test_recovery_emits_an_event_and_clears_stalled() -> None:
    good = compute_status({}, observe(), generation=1, timing=at(0)).status
    failed = compute_status(good, UNAUTHORIZED, generation=1, timing=at(5)).status
    recovered = compute_status(failed, observe(), generation=1, timing=at(10))
    assert not has_condition(recovered.status, "Stalled")
    assert condition(recovered.status, "Synced")["status"] == "True"
    assert ("Normal", "SyncRecovered") in [(e.type, e.reason) for e in recovered.events]


def test_phase_changes_emit_events_crashes_as_warnings() -> None:
    running = compute_status({}, observe("running"), generation=1, timing=at(0))
    assert [(e.type, e.reason) for e in running.events] == [("Normal", "PhaseChanged")]
    crashed = compute_status(running.status, observe("crashed"), generation=1, timing=at(10))
    assert [(e.type, e.reason) for e in crashed.events] == [("Warning", "PhaseChanged")]
    assert "crashed (was running)" in crashed.events[0].message


def test_endpoint_changes_emit_an_event() -> None:
    first = compute_status({}, observe(), generation=1, timing=at(0)).status
    moved = observe(dns={"base": "moved--default-project--abcd.code.run", "zone": "code.run"})
    update = compute_status(first, moved, generation=1, timing=at(10))
    assert [(e.type, e.reason) for e in update.events] == [("Normal", "EndpointsChanged")]


def test_nulls_in_the_response_are_dropped() -> None:
    status = compute_status({}, observe(description=None), generation=1, timing=at(0)).status
    assert "description" not in status["deployment"]


def test_fields_outside_the_owned_set_are_ignored_for_change_detection() -> None:
    first = compute_status({}, observe(), generation=1, timing=at(0)).status
    update = compute_status(first | {"somethingElse": 1}, observe(), generation=1, timing=at(5))
    assert not update.changed


def test_staleness_counts_from_the_last_successful_poll_not_the_heartbeat_stamp() -> None:
    good = compute_status({}, observe(), generation=1, timing=at(0)).status
    # Polls kept succeeding until t=200 without rewriting lastSyncTime (heartbeat not due).
    later = Timing(now=T0 + timedelta(seconds=230), heartbeat=HEARTBEAT, stale_after=STALE,
                   last_success=T0 + timedelta(seconds=200))  # fmt: skip
    status = compute_status(good, SERVER_ERROR, generation=1, timing=later).status
    assert condition(status, "Ready")["status"] == "True"
    stale = Timing(now=T0 + timedelta(seconds=300), heartbeat=HEARTBEAT, stale_after=STALE,
                   last_success=T0 + timedelta(seconds=200))  # fmt: skip
    status = compute_status(good, SERVER_ERROR, generation=1, timing=stale).status
    assert condition(status, "Ready")["reason"] == "StatusStale"
    assert "2026-11-26T10:03:20Z" in condition(status, "Ready")["message"]


def test_with_the_heartbeat_off_an_unchanged_observation_never_restamps_last_sync_time() -> None:
    off = timedelta(0)
    first = compute_status({}, observe(), generation=1, timing=Timing(now=T0, heartbeat=off, stale_after=STALE))
    much_later = Timing(now=T0 + timedelta(days=3), heartbeat=off, stale_after=STALE)
    assert not compute_status(first.status, observe(), generation=1, timing=much_later).changed
    changed = compute_status(first.status, observe("paused"), generation=1, timing=much_later)
    assert changed.status["lastSyncTime"] == "2026-11-29T10:00:00Z"


def test_staleness_on_the_clock_turns_ready_unknown_and_keeps_everything_else() -> None:
    good = compute_status({}, observe(), generation=4, timing=at(0)).status
    fresh = Timing(now=T0 + timedelta(seconds=89), heartbeat=HEARTBEAT, stale_after=STALE, effective_interval=30)
    assert not compute_staleness(good, generation=4, timing=fresh).changed

    late = Timing(now=T0 + timedelta(seconds=91), heartbeat=HEARTBEAT, stale_after=STALE, effective_interval=30)
    update = compute_staleness(good, generation=4, timing=late, cause="Northflank's rate limit is spent.")
    ready = condition(update.status, "Ready")
    assert (ready["status"], ready["reason"]) == ("Unknown", "StatusStale")
    assert "2026-11-26T10:00:00Z" in ready["message"]
    assert "every 30s" in ready["message"]
    assert "rate limit is spent" in ready["message"]
    assert set(update.patch) == {"conditions"}, "the last observation stays as it is"
    assert condition(update.status, "Synced") == condition(good, "Synced")
    assert update.events == []
    assert not compute_staleness(update.status, generation=4, timing=late).changed, "stale once, written once"

    recovered = compute_status(update.status, observe(), generation=4, timing=at(120))
    assert condition(recovered.status, "Ready")["status"] == "True"


def test_staleness_leaves_a_resource_never_observed_alone() -> None:
    failed = compute_status({}, SERVER_ERROR, generation=1, timing=at(0)).status
    assert not compute_staleness(failed, generation=1, timing=at(1000)).changed


def test_a_stretched_interval_is_stated_in_synced_and_status() -> None:
    stretched = Timing(now=T0, heartbeat=HEARTBEAT, stale_after=STALE, requested_interval=60, effective_interval=420)
    status = compute_status({}, observe(), generation=1, timing=stretched).status
    assert status["effectivePollIntervalSeconds"] == 420
    assert "stretches polling to every 420s (asked 60s)" in condition(status, "Synced")["message"]
    plain = Timing(now=T0, heartbeat=HEARTBEAT, stale_after=STALE, requested_interval=60, effective_interval=60)
    assert condition(compute_status({}, observe(), generation=1, timing=plain).status, "Synced")["message"] == (
        "The last poll of Northflank succeeded."
    )


# -- spec.expectedPhase, refresh requests and pause ------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "expected", "ready", "reason"),
    [
        ("running", "running", "True", "Running"),
        ("paused", "paused", "True", "PausedAsExpected"),
        ("paused", "running", "False", "Paused"),
        ("running", "paused", "False", "UnexpectedPhase"),
        ("starting", "paused", "False", "Starting"),
        ("crashed", "paused", "False", "Crashed"),
    ],
)
def test_ready_means_the_expected_phase(phase: str, expected: str, ready: str, reason: str) -> None:
    status = compute_status({}, observe(phase), generation=1, timing=at(0), expected_phase=expected).status
    found = condition(status, "Ready")
    assert (found["status"], found["reason"]) == (ready, reason)
    if phase != expected and phase in ("running", "paused"):
        assert found["message"] == f"Northflank reports the deployment as {phase}; the expected phase is {expected}."


def test_changing_the_expected_phase_flips_ready_without_a_new_phase() -> None:
    first = compute_status({}, observe("paused"), generation=1, timing=at(0)).status
    assert condition(first, "Ready")["status"] == "False"
    second = compute_status(first, observe("paused"), generation=2, timing=at(30), expected_phase="paused")
    assert condition(second.status, "Ready")["status"] == "True"
    assert second.patch["observedGeneration"] == 2


def test_a_handled_refresh_is_recorded_and_kept_by_later_polls() -> None:
    first = compute_status({}, observe("running"), generation=1, timing=at(0)).status
    handled = compute_status(first, observe("running"), generation=1, timing=at(10), handled_reconcile_at="r1")
    assert handled.patch == {"lastHandledReconcileAt": "r1"}, "only the new field: lastSyncTime is not re-stamped"
    later = compute_status(handled.status, observe("running"), generation=1, timing=at(20))
    assert not later.changed
    failed = compute_status(handled.status, SERVER_ERROR, generation=1, timing=at(30), handled_reconcile_at="r2")
    assert failed.status["lastHandledReconcileAt"] == "r2", "a failed poll answers the request too"


def test_pause_keeps_the_observation_and_ready_until_it_is_stale() -> None:
    running = compute_status({}, observe("running"), generation=1, timing=at(0)).status
    paused = compute_status(running, PAUSED, generation=1, timing=at(5))
    synced = condition(paused.status, "Synced")
    assert (synced["status"], synced["reason"]) == ("False", "ReconcilePaused")
    assert condition(paused.status, "Ready")["status"] == "True"
    assert {k: v for k, v in paused.status.items() if k != "conditions"} == {
        k: v for k, v in running.items() if k != "conditions"
    }
    assert [(e.type, e.reason) for e in paused.events] == [("Normal", "ReconcilePaused")]
    stale = compute_staleness(paused.status, generation=1, timing=at(STALE.total_seconds() + 1)).status
    assert (condition(stale, "Ready")["status"], condition(stale, "Ready")["reason"]) == ("Unknown", "StatusStale")
    resumed = compute_status(stale, observe("running"), generation=1, timing=at(200))
    assert [e.reason for e in resumed.events] == ["ReconcileResumed"]
    assert condition(resumed.status, "Ready")["status"] == "True"


def test_pause_keeps_a_crash_stalled() -> None:
    crashed = compute_status({}, observe("crashed"), generation=1, timing=at(0)).status
    paused = compute_status(crashed, PAUSED, generation=1, timing=at(5)).status
    assert condition(paused, "Stalled")["status"] == "True"
    assert condition(paused, "Ready")["reason"] == "Crashed"


def test_a_contract_deviation_in_a_mirrored_only_field_is_noted_not_fatal() -> None:
    """A name Northflank no longer restricts (too long, underscores) keeps the fleet observed; the
    deviation is said in Synced's message and the value is mirrored as sent."""
    odd_name = "model_" + "x" * 120
    update = compute_status({}, observe("running", name=odd_name, entityType="robot"), generation=1, timing=at(0))
    status = update.status
    assert condition(status, "Ready")["status"] == "True"
    synced = condition(status, "Synced")
    assert (synced["status"], synced["reason"]) == ("True", "Observed")
    assert "Contract deviation in fields the operator only mirrors: name:" in synced["message"]
    assert "entityType: Input should be 'user', 'team' or 'org' (kept as sent)" in synced["message"]
    assert status["deployment"]["name"] == odd_name
    assert status["deployment"]["entityType"] == "robot"
    again = compute_status(status, observe("running", name=odd_name, entityType="robot"), generation=1, timing=at(5))
    assert not again.changed  # the same deviation is not news


def test_a_null_from_northflank_is_recorded_so_it_differs_from_absent() -> None:
    # A merge patch cannot store a null (it deletes the key), so the nulls are listed beside the mirror.
    spec = full_deployment()["spec"]
    spec["configuration"]["nodeConfiguration"]["storage"]["shmSize"] = None
    nulled = compute_status({}, observe(spec=spec, description=None), generation=1, timing=at(0)).status
    assert nulled["nullFields"] == [
        "deployment.description",
        "deploymentSpec.configuration.nodeConfiguration.storage.shmSize",
    ]
    assert "shmSize" not in nulled["deploymentSpec"]["configuration"]["nodeConfiguration"]["storage"]
    absent = compute_status({}, observe(), generation=1, timing=at(0)).status
    assert "nullFields" not in absent
    # Stored as written, the next identical observation changes nothing.
    again = compute_status(nulled, observe(spec=spec, description=None), generation=1, timing=at(1))
    assert not again.changed


# -- the fleet at a glance: derived fields for kubectl's columns (issue 16, part 2) -----------------


def spec_with_gpu(gpu: Any) -> dict[str, Any]:
    spec: dict[str, Any] = full_deployment()["spec"]
    spec["configuration"]["nodeConfiguration"]["gpu"] = gpu
    return spec


@pytest.mark.parametrize(
    ("gpu", "expected"),
    [
        ({"enabled": True, "configuration": {"gpuType": "h100-80", "gpuCount": 2}}, "h100-80 × 2"),
        ({"enabled": True, "configuration": {"gpuType": "l4-24", "gpuCount": 1, "timesliced": True}},
         "l4-24 × 1 (timesliced)"),
        ({"configuration": {"gpuType": "a100-40"}}, "a100-40"),
        ({"configuration": {"gpuCount": 4}}, "gpu × 4"),
        ({"enabled": False, "configuration": {"gpuType": "h100-80", "gpuCount": 2}}, "none"),
        ({"enabled": True}, None),
        ({"configuration": {"gpuType": 7, "gpuCount": "two"}}, None),
        ("not an object", None),
    ],
)  # fmt: skip
def test_the_gpu_summary_says_type_and_count(gpu: Any, expected: str | None) -> None:
    status = compute_status({}, observe(spec=spec_with_gpu(gpu)), generation=1, timing=at(0)).status
    assert status.get("gpu") == expected


def test_no_gpu_configuration_at_all_has_no_summary() -> None:
    assert "gpu" not in compute_status({}, observe(), generation=1, timing=at(0)).status


def test_the_url_is_the_first_public_ports_dns() -> None:
    ports = [
        {"id": "p01", "name": "metrics", "internalPort": 9090, "protocol": "HTTP", "public": False, "dns": "private"},
        {"id": "p02", "name": "grpc", "internalPort": 7000, "protocol": "TCP", "public": True},
        {"id": "p03", "name": "http", "internalPort": 8000, "protocol": "HTTP/2", "public": True, "dns": "api.example"},
        {"id": "p04", "name": "http2", "internalPort": 8001, "protocol": "HTTP", "public": True, "dns": "second"},
    ]
    status = compute_status({}, observe(ports=ports), generation=1, timing=at(0)).status
    assert status["url"] == "https://api.example"
    tcp = [{"id": "p01", "name": "db", "internalPort": 5432, "protocol": "TCP", "public": True, "dns": "db.example"}]
    assert compute_status({}, observe(ports=tcp), generation=1, timing=at(0)).status["url"] == "db.example"
    assert "url" not in compute_status({}, observe(ports=[]), generation=1, timing=at(0)).status


def test_derived_fields_follow_the_deployment_and_stay_on_errors() -> None:
    first = compute_status({}, observe(), generation=1, timing=at(0)).status
    assert first["url"] == "https://http--deepseek-v3-deployment--default-project--abcd.code.run"
    kept = compute_status(first, SERVER_ERROR, generation=1, timing=at(10)).status
    assert kept["url"] == first["url"]
    private = [dict(full_deployment()["ports"][0], public=False)]
    gone = compute_status(first, observe(ports=private), generation=1, timing=at(20))
    assert "url" not in gone.status
    assert gone.patch["url"] is None, "a field that no longer applies is removed from the stored status"
