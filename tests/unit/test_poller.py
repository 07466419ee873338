"""The poll loop with an in-memory Northflank and Kubernetes: scheduling, rate limits, writes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from northflank_llm_operator.credentials import CredentialResolver, CredentialsError
from northflank_llm_operator.kube import ResourceGoneError
from northflank_llm_operator.northflank import (
    ApiResult,
    AuthenticationError,
    LLMModelDeployment,
    NorthflankError,
    RateLimit,
    RateLimitError,
    ServerError,
)
from northflank_llm_operator.poller import Poller
from northflank_llm_operator.registry import Registry, TrackedResource
from northflank_llm_operator.resource import ResourceKey
from northflank_llm_operator.settings import OperatorSettings
from northflank_llm_operator.status import Event, merge_patch
from tests.unit.payloads import full_deployment

PLENTY = RateLimit(limit=1000, remaining=900, reset_seconds=1200)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeNorthflank:
    """Answers GETs from a script: a deployment body, or an exception to raise."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], Any] = {}
        self.calls: list[tuple[str, str, str, str | None]] = []

    async def get_llm_model_deployment(
        self, project_id: str, deployment_id: str, *, token: str, team_id: str | None = None
    ) -> ApiResult[LLMModelDeployment]:
        self.calls.append((project_id, deployment_id, token, team_id))
        answer = self.answers[(project_id, deployment_id)]
        if isinstance(answer, Exception):
            raise answer
        rate_limit = answer.pop("_rate_limit", PLENTY) if isinstance(answer, dict) else PLENTY
        return ApiResult(LLMModelDeployment.model_validate(answer), rate_limit)


class FakeKubernetes:
    def __init__(self) -> None:
        self.objects: dict[ResourceKey, dict[str, Any]] = {}
        self.patches: list[tuple[ResourceKey, dict[str, Any]]] = []
        self.events: list[tuple[ResourceKey, Event]] = []
        self.secrets: dict[tuple[str, str, str], str] = {}
        self.secret_reads = 0
        self.resource_version = 100
        self.patched = asyncio.Event()

    async def patch_status(self, key: ResourceKey, patch: Mapping[str, Any]) -> Mapping[str, Any]:
        if key not in self.objects:
            raise ResourceGoneError(str(key))
        self.patches.append((key, dict(patch)))
        obj = self.objects[key]
        obj["status"] = apply_merge_patch(obj.get("status", {}), patch)
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        self.patched.set()
        return obj

    async def record_event(self, key: ResourceKey, uid: str, event: Event) -> None:
        self.events.append((key, event))

    async def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        self.secret_reads += 1
        try:
            return self.secrets[(namespace, name, key)]
        except KeyError:
            raise CredentialsError("CredentialsNotFound", f"Secret {name!r} is missing") from None


def apply_merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = apply_merge_patch(result[key], value)
        else:
            result[key] = value
    return result


class Harness:
    def __init__(self, *, default_token: str | None = "operator-token", interval: float = 60) -> None:
        self.clock = Clock()
        self.northflank = FakeNorthflank()
        self.kube = FakeKubernetes()
        self.registry = Registry(self.clock)
        settings = OperatorSettings(
            poll_interval_seconds=interval,
        )
        self.credentials = CredentialResolver(
            self.kube,
            default_token=SecretStr(default_token) if default_token else None,
            cache_seconds=30,
            clock=self.clock,
        )
        self.poller = Poller(
            registry=self.registry,
            client=self.northflank,  # type: ignore[arg-type]
            credentials=self.credentials,
            kube=self.kube,  # type: ignore[arg-type]
            settings=settings,
            clock=self.clock,
            wall_clock=lambda: datetime.fromtimestamp(self.clock.now, UTC),
        )

    def add(self, name: str, *, deployment: str | None = None, **spec: Any) -> TrackedResource:
        key = ResourceKey("ns", name)
        body = {
            "metadata": {
                "namespace": "ns",
                "name": name,
                "uid": f"uid-{name}",
                "generation": 1,
                "resourceVersion": "1",
            },
            "spec": {"projectId": "proj", "llmModelDeploymentId": deployment or name, **spec},
        }
        self.kube.objects[key] = body
        self.registry.observe("ADDED", body)
        resource = self.registry.get(key)
        assert resource is not None
        return resource

    async def poll(self, resource: TrackedResource) -> None:
        await self.poller.poll(resource)


async def test_first_poll_writes_status_and_an_unchanged_second_poll_writes_nothing() -> None:
    h = Harness()
    h.northflank.answers[("proj", "dep")] = full_deployment(id="dep", status="running")
    resource = h.add("dep")
    await h.poll(resource)
    assert len(h.kube.patches) == 1
    assert h.kube.objects[resource.key]["status"]["phase"] == "running"
    assert [e.reason for _, e in h.kube.events] == ["PhaseChanged"]

    h.clock.now += 60
    h.northflank.answers[("proj", "dep")] = full_deployment(id="dep", status="running")
    await h.poll(resource)
    assert len(h.kube.patches) == 1, "an unchanged deployment must not be written again"
    assert len(h.northflank.calls) == 2


async def test_patch_is_a_minimal_merge_patch() -> None:
    h = Harness()
    h.northflank.answers[("proj", "dep")] = full_deployment(id="dep", status="starting")
    resource = h.add("dep")
    await h.poll(resource)
    h.clock.now += 10
    h.northflank.answers[("proj", "dep")] = full_deployment(id="dep", status="running")
    await h.poll(resource)
    _, patch = h.kube.patches[-1]
    assert set(patch) == {"phase", "conditions", "lastSyncTime", "deployment"}
    assert patch["deployment"] == {"status": "running"}


async def test_success_schedules_the_next_poll_about_one_interval_later() -> None:
    h = Harness(interval=60)
    h.northflank.answers[("proj", "dep")] = full_deployment(id="dep")
    resource = h.add("dep")
    await h.poll(resource)
    assert 54 <= resource.next_due - h.clock.now <= 66


async def test_per_resource_interval_wins_over_the_default() -> None:
    h = Harness(interval=60)
    h.northflank.answers[("proj", "dep")] = full_deployment(id="dep")
    resource = h.add("dep", pollIntervalSeconds=600)
    await h.poll(resource)
    assert 540 <= resource.next_due - h.clock.now <= 660


async def test_transient_errors_back_off_exponentially_up_to_the_interval() -> None:
    h = Harness(interval=30)
    h.northflank.answers[("proj", "dep")] = ServerError("HTTP 500", status_code=500, rate_limit=PLENTY)
    resource = h.add("dep")
    delays = []
    for _ in range(5):
        await h.poll(resource)
        delays.append(resource.next_due - h.clock.now)
    assert delays == [5, 10, 20, 30, 30]


async def test_rate_limit_holds_every_resource_of_the_credential_until_reset() -> None:
    h = Harness()
    spent = RateLimit(limit=1000, remaining=0, reset_seconds=120)
    h.northflank.answers[("proj", "a")] = RateLimitError("HTTP 429", status_code=429, rate_limit=spent)
    h.northflank.answers[("proj", "b")] = full_deployment(id="b")
    a, b = h.add("a"), h.add("b")
    await h.poll(a)
    assert a.next_due == h.clock.now + 120
    await h.poll(b)
    assert len(h.northflank.calls) == 1, "no request may be sent while the window is spent"
    assert b.next_due == h.clock.now + 120
    synced = next(c for c in h.kube.objects[b.key]["status"]["conditions"] if c["type"] == "Synced")
    assert synced["reason"] == "RateLimited"

    h.clock.now += 121
    await h.poll(b)
    assert len(h.northflank.calls) == 2
    assert h.kube.objects[b.key]["status"]["phase"] == "running"


async def test_a_spent_budget_on_success_also_holds_the_credential() -> None:
    h = Harness()
    h.northflank.answers[("proj", "a")] = full_deployment(
        id="a", _rate_limit=RateLimit(limit=1000, remaining=0, reset_seconds=30)
    )
    h.northflank.answers[("proj", "b")] = full_deployment(id="b")
    a, b = h.add("a"), h.add("b")
    await h.poll(a)
    await h.poll(b)
    assert len(h.northflank.calls) == 1
    assert b.next_due == h.clock.now + 30


async def test_other_credentials_are_not_held_by_someone_elses_rate_limit() -> None:
    h = Harness()
    h.kube.secrets[("ns", "other", "token")] = "other-token"
    spent = RateLimit(limit=1000, remaining=0, reset_seconds=120)
    h.northflank.answers[("proj", "a")] = RateLimitError("HTTP 429", status_code=429, rate_limit=spent)
    h.northflank.answers[("proj", "b")] = full_deployment(id="b")
    a = h.add("a")
    b = h.add("b", credentialsSecretRef={"name": "other", "key": "token"})
    await h.poll(a)
    await h.poll(b)
    assert [call[2] for call in h.northflank.calls] == ["operator-token", "other-token"]


async def test_secret_credentials_are_cached_and_dropped_after_a_401() -> None:
    h = Harness(default_token=None)
    h.kube.secrets[("ns", "nf", "token")] = "old-token"
    h.northflank.answers[("proj", "dep")] = AuthenticationError("HTTP 401", status_code=401, rate_limit=RateLimit())
    resource = h.add("dep", credentialsSecretRef={"name": "nf", "key": "token"})
    await h.poll(resource)
    status = h.kube.objects[resource.key]["status"]
    assert next(c for c in status["conditions"] if c["type"] == "Synced")["reason"] == "AuthenticationFailed"

    h.kube.secrets[("ns", "nf", "token")] = "rotated-token"
    h.northflank.answers[("proj", "dep")] = full_deployment(id="dep")
    await h.poll(resource)
    assert [call[2] for call in h.northflank.calls] == ["old-token", "rotated-token"]
    assert h.kube.objects[resource.key]["status"]["phase"] == "running"
    await h.poll(resource)
    assert h.kube.secret_reads == 2, "a good token is served from the cache"


async def test_missing_credentials_are_reported_without_calling_northflank() -> None:
    h = Harness(default_token=None)
    resource = h.add("dep")
    await h.poll(resource)
    missing_secret = h.add("other", credentialsSecretRef={"name": "absent"})
    await h.poll(missing_secret)
    assert h.northflank.calls == []
    reasons = [
        next(c for c in h.kube.objects[r.key]["status"]["conditions"] if c["type"] == "Synced")["reason"]
        for r in (resource, missing_secret)
    ]
    assert reasons == ["CredentialsNotConfigured", "CredentialsNotFound"]


async def test_an_invalid_spec_is_reported_not_polled() -> None:
    h = Harness()
    resource = h.add("dep", deployment="../escape")
    await h.poll(resource)
    assert h.northflank.calls == []
    status = h.kube.objects[resource.key]["status"]
    synced = next(c for c in status["conditions"] if c["type"] == "Synced")
    assert synced["reason"] == "InvalidSpec"
    assert "llmModelDeploymentId" in synced["message"]


async def test_team_id_is_passed_through() -> None:
    h = Harness()
    h.northflank.answers[("proj", "dep")] = full_deployment(id="dep")
    await h.poll(h.add("dep", teamId="team-a"))
    assert h.northflank.calls[0][3] == "team-a"


async def test_a_resource_deleted_mid_poll_is_forgotten() -> None:
    h = Harness()
    h.northflank.answers[("proj", "dep")] = full_deployment(id="dep")
    resource = h.add("dep")
    del h.kube.objects[resource.key]
    await h.poll(resource)
    assert h.registry.get(resource.key) is None


async def test_the_token_never_reaches_status_or_events() -> None:
    h = Harness(default_token="super-secret-operator-token")
    h.northflank.answers[("proj", "dep")] = AuthenticationError(
        "Northflank answered with HTTP 401: invalid token", status_code=401, rate_limit=RateLimit()
    )
    await h.poll(h.add("dep"))
    written = repr(h.kube.patches) + repr(h.kube.events)
    assert "super-secret-operator-token" not in written
    assert "AuthenticationFailed" in written


async def test_run_loop_polls_due_resources_and_survives_a_broken_one() -> None:
    h = Harness(interval=60)
    h.northflank.answers[("proj", "good")] = full_deployment(id="good")
    h.northflank.answers[("proj", "broken")] = RuntimeError("a bug in a fake")
    real_clock = asyncio.get_running_loop().time
    h.clock.now = real_clock()
    h.registry._clock = real_clock  # the loop sleeps on real time; keep the registry in step
    h.poller._clock = real_clock
    h.add("broken")
    good = h.add("good")
    task = asyncio.create_task(h.poller.run())
    try:
        async with asyncio.timeout(5):
            while h.kube.objects[good.key].get("status", {}).get("phase") != "running":
                await h.kube.patched.wait()
                h.kube.patched.clear()
        assert len(h.kube.patches) == 1  # the broken one logged and was rescheduled, nothing written
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_merge_patch_nulls_removed_keys_and_keeps_equal_ones_out() -> None:
    old = {"a": 1, "b": {"x": 1, "y": 2}, "c": [1, 2], "gone": True}
    new = {"a": 1, "b": {"x": 1, "z": 3}, "c": [1, 2, 3]}
    assert merge_patch(old, new) == {"b": {"y": None, "z": 3}, "c": [1, 2, 3], "gone": None}
    assert merge_patch(new, new) == {}


def test_northflank_errors_are_transient_or_not_as_documented() -> None:
    assert ServerError("x", status_code=500, rate_limit=RateLimit()).transient
    assert RateLimitError("x", status_code=429, rate_limit=RateLimit()).transient
    assert not AuthenticationError("x", status_code=401, rate_limit=RateLimit()).transient
    assert NorthflankError("x").transient


async def test_a_spec_change_during_a_poll_is_observed_right_after_it() -> None:
    h = Harness()
    h.northflank.answers[("proj", "dep")] = full_deployment(id="dep")
    resource = h.add("dep")
    original = h.northflank.get_llm_model_deployment

    async def change_spec_mid_flight(*args: Any, **kwargs: Any) -> Any:
        body = h.kube.objects[resource.key]
        body["metadata"] |= {"generation": 2, "resourceVersion": "2"}
        body["spec"] = body["spec"] | {"pollIntervalSeconds": 600}
        h.registry.observe("MODIFIED", body)
        return await original(*args, **kwargs)

    h.northflank.get_llm_model_deployment = change_spec_mid_flight  # type: ignore[method-assign]
    await h.poll(resource)
    assert h.kube.objects[resource.key]["status"]["observedGeneration"] == 1
    assert resource.next_due == h.clock.now


def test_first_poll_is_immediate_for_new_resources_and_spread_for_observed_ones() -> None:
    from northflank_llm_operator.poller import first_poll_delay

    settings = OperatorSettings(poll_interval_seconds=60)
    new = {"metadata": {"generation": 1}, "status": {"observedGeneration": -1}, "spec": {}}
    changed = {"metadata": {"generation": 3}, "status": {"observedGeneration": 2, "lastSyncTime": "x"}, "spec": {}}
    assert first_poll_delay(new, settings) == 0
    assert first_poll_delay(changed, settings) == 0
    observed = {
        "metadata": {"generation": 2},
        "status": {"observedGeneration": 2, "lastSyncTime": "2026-11-26T10:00:00Z"},
        "spec": {"pollIntervalSeconds": 600},
    }
    delays = [first_poll_delay(observed, settings) for _ in range(200)]
    assert all(0 <= d <= 600 for d in delays)
    assert max(delays) - min(delays) > 300, "a restart's first polls are spread over the interval"


def test_registry_applies_the_first_delay() -> None:
    clock = Clock()
    registry = Registry(clock, first_delay=lambda body: 42.0)
    body = {"metadata": {"namespace": "ns", "name": "a", "uid": "u", "generation": 1, "resourceVersion": "1"}}
    registry.observe(None, body)
    resource = registry.get(ResourceKey("ns", "a"))
    assert resource is not None
    assert resource.next_due == clock.now + 42.0


def test_a_credential_never_shows_its_token() -> None:
    from northflank_llm_operator.credentials import Credential

    credential = Credential.of("super-secret-token-value")
    assert "super-secret-token-value" not in repr(credential)
    assert credential.identity == Credential.of("super-secret-token-value").identity
