"""Issue 7, Kubernetes side: hostile answers, revoked tokens, re-created objects, hand-edited status,
spec-edit storms and timeouts, with the fake-clock harness (real API server versions in tests/integration)."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import kopf
import pytest

from northflank_llm_operator import kube as kube_module
from northflank_llm_operator.handlers import configure
from northflank_llm_operator.kube import KubernetesGateway
from northflank_llm_operator.northflank import AuthenticationError, LLMModelDeployment, RateLimit
from northflank_llm_operator.resource import ResourceKey
from northflank_llm_operator.status import Observation, Timing, compute_staleness, compute_status
from tests.unit.payloads import full_deployment
from tests.unit.test_controller import PLENTY, Harness

T0 = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
# Looked up when a test runs, so that each test fails on its own against code without them.
MAX_MIRRORED_DEPTH = 32
MAX_MIRRORED_BYTES = 256 * 1024


def _timing(seconds: float = 0) -> Timing:
    return Timing(now=T0 + timedelta(seconds=seconds), heartbeat=timedelta(0), stale_after=timedelta(seconds=90))


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"d": value}
    return value


# -- item 3: bounded status, every failure ends in conditions ----------------------------------


def test_what_is_mirrored_is_bounded_in_depth_size_and_integer_range() -> None:
    from northflank_llm_operator import status as status_module

    assert (status_module.MAX_MIRRORED_DEPTH, status_module.MAX_MIRRORED_BYTES) == (
        MAX_MIRRORED_DEPTH,
        MAX_MIRRORED_BYTES,
    )
    body = full_deployment(status="running")
    body["spec"]["deep"] = _nested(MAX_MIRRORED_DEPTH + 10)
    body["spec"]["huge"] = 2**70
    body["spec"]["fine"] = 2**62
    body["ports"][0]["internalPort"] = 2**64
    body["spec"]["blob"] = "x" * (MAX_MIRRORED_BYTES * 2)
    update = compute_status({}, Observation(LLMModelDeployment.model_validate(body)), generation=1, timing=_timing())
    status = update.status
    encoded = json.dumps(status)
    assert len(encoded) < MAX_MIRRORED_BYTES + 20_000
    assert "huge" not in status["deploymentSpec"]
    assert status["deploymentSpec"]["fine"] == 2**62
    assert "internalPort" not in status["ports"][0]
    assert "blob" not in status["deploymentSpec"]
    assert status["deployment"]["description"] == body["description"]
    synced = next(c for c in status["conditions"] if c["type"] == "Synced")
    assert "Not mirrored" in synced["message"]
    assert "spec.huge" in synced["message"]

    def depth(value: Any) -> int:
        if isinstance(value, dict):
            return 1 + max((depth(v) for v in value.values()), default=0)
        if isinstance(value, list):
            return 1 + max((depth(v) for v in value), default=0)
        return 0

    assert depth(status) <= MAX_MIRRORED_DEPTH + 2


def test_bounding_never_recurses_past_its_limit() -> None:
    omitted: list[str] = []
    from northflank_llm_operator.status import bounded

    assert bounded({"a": _nested(5000)}, omitted)["a"] is not None
    assert omitted
    assert omitted[0].startswith("a.d.d")


async def test_a_status_the_api_server_refuses_is_replaced_by_the_conditions_alone() -> None:
    h = Harness()
    h.northflank.put("proj", "dep", status="running")
    key = h.add("dep")
    await h.advance(2)
    assert h.condition(key, "Ready")["status"] == "True"

    from northflank_llm_operator.kube import StatusRejectedError

    original = h.kube.patch_status
    refused = 0

    async def refuse_big(key: ResourceKey, patch: Any, **kwargs: Any) -> Any:
        nonlocal refused
        if patch.get("deployment") is not None:
            refused += 1
            raise StatusRejectedError(422, "status.ports[0].internalPort: Invalid value")
        return await original(key, patch, **kwargs)

    h.kube.patch_status = refuse_big  # type: ignore[method-assign]
    h.northflank.put("proj", "dep", status="running", description="changed")
    await h.advance(70)
    assert refused >= 1
    status = h.status(key)
    ready, synced = h.condition(key, "Ready"), h.condition(key, "Synced")
    assert (ready["status"], ready["reason"]) == ("Unknown", "StatusRejected")
    assert (synced["status"], synced["reason"]) == ("False", "StatusRejected")
    assert "422" in synced["message"]
    assert set(status) == {"phase", "observedGeneration", "conditions"}
    assert [e.reason for _, e in h.kube.events if e.type == "Warning"] == ["StatusRejected"]


async def test_an_answer_that_cannot_be_mapped_ends_in_an_internal_error_condition() -> None:
    h = Harness()
    h.northflank.put("proj", "dep", status="running")
    key = h.add("dep")

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    original = Observation.raw
    Observation.raw = property(explode)  # type: ignore[assignment, method-assign]
    try:
        await h.advance(2)
    finally:
        Observation.raw = original  # type: ignore[method-assign]
    synced = h.condition(key, "Synced")
    assert (synced["status"], synced["reason"]) == ("False", "InternalError")
    assert h.condition(key, "Ready")["status"] != "True"


# -- item 8: a rejected token holds every resource of the credential --------------------------


async def test_a_rejected_token_holds_every_resource_of_that_credential() -> None:
    error = AuthenticationError
    h = Harness(interval=60)
    for i in range(10):
        h.northflank.put(f"p{i}", "dep")
        h.add(f"r{i}", project=f"p{i}", deployment="dep")
    await h.advance(3)
    assert len(h.northflank.calls) == 10
    for i in range(10):
        h.northflank.errors[(f"p{i}", "dep")] = error("HTTP 401", status_code=401, rate_limit=PLENTY)
    h.northflank.calls.clear()
    h.kube.events.clear()
    await h.advance(900, step=5)
    # Fifteen minutes: a few rejected requests, then one probe per 60 s interval; not ten per interval.
    assert 12 <= len(h.northflank.calls) <= 20, h.northflank.calls
    warnings = [e for _, e in h.kube.events if e.type == "Warning"]
    assert len(warnings) <= 10, "at most one Warning per resource, at the transition only"
    for i in range(10):
        key = ResourceKey("ns", f"r{i}")
        # Probed (AuthenticationFailed) or only waiting, and then stale, saying why.
        assert h.condition(key, "Ready")["status"] == "Unknown"
        said = h.condition(key, "Synced")["reason"] + h.condition(key, "Ready")["message"]
        assert error.reason in said or "rejected these credentials" in said

    h.northflank.errors.clear()
    await h.advance(120, step=5)
    for i in range(10):
        assert h.condition(ResourceKey("ns", f"r{i}"), "Synced")["status"] == "True"


async def test_a_401_about_one_resource_only_does_not_starve_the_others() -> None:
    h = Harness(interval=60)
    for i in range(3):
        h.northflank.put(f"p{i}", "dep")
        h.add(f"r{i}", project=f"p{i}", deployment="dep")
    h.northflank.errors[("p0", "dep")] = AuthenticationError("HTTP 401", status_code=401, rate_limit=RateLimit())
    await h.advance(400, step=5)
    for i in (1, 2):
        assert h.condition(ResourceKey("ns", f"r{i}"), "Ready")["status"] == "True"
    polled = [call[1] for call in h.northflank.calls]
    assert polled.count("p1") >= 3, "the others keep being polled (the probes rotate)"


# -- item 13: a late answer never lands on, or forgets, a re-created object --------------------


async def test_a_late_404_does_not_forget_a_resource_re_created_under_the_same_name() -> None:
    h = Harness()
    h.northflank.put("proj", "dep")
    key = h.add("dep")
    await h.advance(2)
    stale = h.registry.get(key)
    assert stale is not None
    # Deleted and re-created while a write for the old object was under way.
    recreated = json.loads(json.dumps(h.kube.objects[key]))
    recreated["metadata"].update(uid="uid-new", resourceVersion="5000")
    recreated["status"] = {}
    h.registry.observe("DELETED", h.kube.objects[key])
    h.kube.objects[key] = recreated
    h.registry.observe("ADDED", recreated)
    await h.poller.reconciler._write(stale, {"phase": "crashed"})
    current = h.registry.get(key)
    assert current is not None
    assert current.uid == "uid-new", "the re-created resource is still tracked"
    assert h.kube.objects[key]["status"] == {}, "nothing was written onto the new object"


# -- item 17: hand-edited status, spec-edit storms ----------------------------------------------


def test_a_last_sync_time_in_the_future_does_not_turn_staleness_off() -> None:
    observed = compute_status(
        {}, Observation(LLMModelDeployment.model_validate(full_deployment())), generation=1, timing=_timing()
    ).status
    observed["lastSyncTime"] = "2999-01-01T00:00:00Z"
    timing = Timing(
        now=T0 + timedelta(seconds=600), heartbeat=timedelta(0), stale_after=timedelta(seconds=90), last_success=T0
    )
    update = compute_staleness(observed, generation=1, timing=timing)
    ready = next(c for c in update.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("Unknown", "StatusStale")
    again = compute_status(
        observed, Observation(LLMModelDeployment.model_validate(full_deployment())), generation=1, timing=_timing(700)
    )
    assert again.status["lastSyncTime"] != "2999-01-01T00:00:00Z", "a future time is replaced at the next observation"


async def test_fifty_quick_spec_edits_cost_a_few_requests() -> None:
    h = Harness(interval=3600)
    h.northflank.put("proj", "dep")
    key = h.add("dep", pollIntervalSeconds=3600)
    await h.advance(2)
    h.northflank.calls.clear()
    for i in range(50):
        h.change_spec(key, pollIntervalSeconds=3000 + i)
        await h.advance(0.4, step=0.2)
    await h.advance(30)
    assert len(h.northflank.calls) <= 4, len(h.northflank.calls)
    assert h.status(key)["observedGeneration"] == 51
    assert h.status(key)["effectivePollIntervalSeconds"] == 3049


# -- item 12: timeouts on every Kubernetes call, kopf's watch timeouts --------------------------


async def test_kopf_watch_and_request_timeouts_are_set_at_startup() -> None:
    settings = kopf.OperatorSettings()
    await cast(Any, configure)(settings=settings)
    assert settings.watching.server_timeout is not None
    assert 0 < settings.watching.server_timeout <= 600
    assert settings.watching.client_timeout is not None
    assert settings.watching.client_timeout > settings.watching.server_timeout
    assert settings.watching.connect_timeout is not None
    assert settings.networking.request_timeout is not None
    assert settings.networking.request_timeout <= 60


async def test_a_hung_kubernetes_call_ends_with_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube_module, "_CALL_DEADLINE_SECONDS", 0.5)
    gateway = KubernetesGateway(object(), instance="test")
    release = threading.Event()
    try:
        async with asyncio.timeout(5):
            with pytest.raises(TimeoutError):
                await gateway._call(release.wait)
    finally:
        release.set()
        gateway.close()


# -- item 14: ghosts after a watch gap ----------------------------------------------------------


async def test_a_periodic_resync_forgets_a_resource_deleted_during_a_watch_gap() -> None:
    h = Harness(interval=60)
    h.northflank.put("proj", "dep")
    h.northflank.put("proj", "kept")
    ghost = h.add("dep")
    kept = h.add("kept")
    await h.advance(2)
    del h.kube.objects[ghost]  # deleted while the watch was down: kopf never reports it
    await h.advance(400, step=10)  # past one resync (300 s by default)
    assert h.registry.get(ghost) is None
    assert h.registry.get(kept) is not None
    h.northflank.calls.clear()
    await h.advance(300, step=10)
    assert all(call[2] != "dep" for call in h.northflank.calls), "the ghost is no longer polled"
