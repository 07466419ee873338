"""The poll loop with an in-memory Northflank and Kubernetes and a fake clock: what it asks, what it writes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from northflank_llm_operator.controller import STOP_GRACE_SECONDS, Controller
from northflank_llm_operator.credentials import Credential, CredentialResolver, CredentialsError
from northflank_llm_operator.kube import ResourceGoneError
from northflank_llm_operator.northflank import (
    ApiResult,
    AuthenticationError,
    DeploymentPage,
    LLMModelDeployment,
    NorthflankError,
    NotFoundError,
    RateLimit,
    RateLimitError,
    ServerError,
)
from northflank_llm_operator.registry import Registry
from northflank_llm_operator.resource import PAUSED_ANNOTATION, ResourceKey
from northflank_llm_operator.settings import OperatorSettings
from northflank_llm_operator.status import Event, merge_patch
from tests.unit.payloads import full_deployment

PLENTY = RateLimit(limit=1000, remaining=900, reset_seconds=1200)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        #: When set, the time is read from it (a test of the loop on real time).
        self.source: Callable[[], float] | None = None

    def __call__(self) -> float:
        return self.source() if self.source is not None else self.now


class FakeNorthflank:
    """Projects of deployment bodies; ``errors`` makes a GET or a listing raise instead."""

    def __init__(self) -> None:
        self.projects: dict[str, dict[str, dict[str, Any]]] = {}
        self.errors: dict[tuple[str, str | None], Exception] = {}
        self.calls: list[tuple[str, str, str | None, str, str | None]] = []  # kind, project, id, token, team
        self.rate_limit = PLENTY
        self.page_size = 100
        #: When set, GETs wait for it (a request held in flight).
        self.gate: asyncio.Event | None = None

    def put(self, project: str, deployment_id: str, **fields: Any) -> None:
        self.projects.setdefault(project, {})[deployment_id] = full_deployment(id=deployment_id, **fields)

    async def get_llm_model_deployment(
        self, project_id: str, deployment_id: str, *, token: str, team_id: str | None = None
    ) -> ApiResult[LLMModelDeployment]:
        self.calls.append(("get", project_id, deployment_id, token, team_id))
        if self.gate is not None:
            await self.gate.wait()
        error = self.errors.get((project_id, deployment_id))
        if error is not None:
            raise error
        body = self.projects.get(project_id, {}).get(deployment_id)
        if body is None:
            raise NotFoundError("HTTP 404", status_code=404, rate_limit=self.rate_limit)
        return ApiResult(LLMModelDeployment.model_validate(body), self.rate_limit)

    async def list_llm_model_deployments(
        self,
        project_id: str,
        *,
        token: str,
        team_id: str | None = None,
        per_page: int = 100,
        cursor: str | None = None,
        page: int | None = None,
    ) -> ApiResult[DeploymentPage]:
        self.calls.append(("list", project_id, cursor, token, team_id))
        error = self.errors.get((project_id, None))
        if error is not None:
            raise error
        items = sorted(self.projects.get(project_id, {}).items())
        start = 0 if cursor is None else int(cursor)
        chunk = items[start : start + self.page_size]
        more = start + self.page_size < len(items)
        listing = DeploymentPage([body for _, body in chunk], more, str(start + self.page_size) if more else None)
        return ApiResult(listing, self.rate_limit)

    def count(self, kind: str) -> int:
        return sum(1 for call in self.calls if call[0] == kind)


class FakeKubernetes:
    def __init__(self) -> None:
        self.objects: dict[ResourceKey, dict[str, Any]] = {}
        self.patches: list[tuple[ResourceKey, dict[str, Any]]] = []
        #: Events created (an aggregated repeat only counts up in ``event_counts``).
        self.events: list[tuple[ResourceKey, Event]] = []
        self.event_counts: dict[str, int] = {}
        self.secrets: dict[tuple[str, str, str], str] = {}
        self.secret_reads = 0
        self.resource_version = 100
        self.patched = asyncio.Event()

    async def patch_status(
        self, key: ResourceKey, patch: Mapping[str, Any], *, uid: str | None = None, resource_version: str | None = None
    ) -> Mapping[str, Any]:
        if key not in self.objects or (uid is not None and self.objects[key]["metadata"]["uid"] != uid):
            raise ResourceGoneError(str(key))
        self.patches.append((key, dict(patch)))
        obj = self.objects[key]
        obj["status"] = apply_merge_patch(obj.get("status", {}), patch)
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        self.patched.set()
        return obj

    async def list_resource_uids(self, namespace: str | None) -> tuple[dict[ResourceKey, str], str] | None:
        found = {k: o["metadata"]["uid"] for k, o in self.objects.items() if namespace in (None, k.namespace)}
        return found, str(self.resource_version)

    async def create_event(self, key: ResourceKey, uid: str, event: Event, *, name: str, count: int,
                           first_timestamp: datetime, last_timestamp: datetime) -> bool:  # fmt: skip
        if name in self.event_counts:
            return False
        self.event_counts[name] = count
        self.events.append((key, event))
        return True

    async def patch_event(self, namespace: str, name: str, *, count: int, last_timestamp: datetime) -> bool:
        if name not in self.event_counts:
            return False
        self.event_counts[name] = count
        return True

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
    def __init__(self, *, default_token: str | None = "operator-token", interval: float = 60, **settings: Any) -> None:
        self.clock = Clock()
        self.northflank = FakeNorthflank()
        self.kube = FakeKubernetes()
        self.registry = Registry()
        self.credentials = CredentialResolver(
            self.kube,
            default_token=SecretStr(default_token) if default_token else None,
            cache_seconds=30,
            clock=self.clock,
        )
        self.poller = Controller(
            registry=self.registry,
            client=self.northflank,  # type: ignore[arg-type]
            credentials=self.credentials,
            kube=self.kube,  # type: ignore[arg-type]
            settings=OperatorSettings(poll_interval_seconds=interval, **settings),
            clock=self.clock,
            wall_clock=lambda: datetime.fromtimestamp(self.clock.now, UTC),
        )

    def add(self, name: str, *, deployment: str | None = None, status: dict[str, Any] | None = None,
            project: str = "proj", **spec: Any) -> ResourceKey:  # fmt: skip
        key = ResourceKey("ns", name)
        body = {
            "metadata": {
                "namespace": "ns",
                "name": name,
                "uid": f"uid-{name}",
                "generation": 1,
                "resourceVersion": "1",
            },
            "spec": {"projectId": project, "llmModelDeploymentId": deployment or name, **spec},
            "status": status or {},
        }
        self.kube.objects[key] = body
        self.registry.observe("ADDED", body)
        return key

    def change_spec(self, key: ResourceKey, **spec: Any) -> None:
        body = self.kube.objects[key]
        body["metadata"]["generation"] += 1
        self.kube.resource_version += 1
        body["metadata"]["resourceVersion"] = str(self.kube.resource_version)
        body["spec"] = body["spec"] | spec
        self.registry.observe("MODIFIED", body)

    async def settle(self) -> None:
        """Run the loop at the current fake time until it has nothing left to do now."""
        for _ in range(1000):
            await self.poller.step()
            await self.poller.drain()
            wake = self.poller.planner.next_wake()
            if not (wake is not None and wake <= self.clock.now) and not self.registry.has_pending:
                return
        raise AssertionError("the poll loop did not settle")

    async def advance(self, seconds: float, *, step: float = 1.0) -> None:
        """Let fake time pass, running the loop as it goes."""
        end = self.clock.now + seconds
        while self.clock.now < end:
            self.clock.now = min(end, self.clock.now + step)
            await self.settle()

    def status(self, key: ResourceKey) -> dict[str, Any]:
        return dict(self.kube.objects[key].get("status") or {})

    def condition(self, key: ResourceKey, kind: str) -> dict[str, Any]:
        return next((c for c in self.status(key).get("conditions", []) if c["type"] == kind), {})


# -- observing ------------------------------------------------------------------------------------


async def test_first_observation_writes_status_and_an_unchanged_one_writes_nothing() -> None:
    h = Harness()
    h.northflank.put("proj", "dep", status="running")
    key = h.add("dep")
    await h.advance(2)
    assert len(h.kube.patches) == 1
    assert h.status(key)["phase"] == "running"
    assert h.status(key)["effectivePollIntervalSeconds"] == 60
    assert [e.reason for _, e in h.kube.events] == ["PhaseChanged"]

    await h.advance(130)
    assert h.northflank.count("get") >= 3
    assert len(h.kube.patches) == 1, "an unchanged deployment must not be written again"


async def test_a_change_is_a_minimal_merge_patch() -> None:
    h = Harness()
    h.northflank.put("proj", "dep", status="starting")
    key = h.add("dep")
    await h.advance(2)
    h.northflank.put("proj", "dep", status="running")
    await h.advance(70)
    _, patch = h.kube.patches[-1]
    assert set(patch) == {"phase", "conditions", "lastSyncTime", "deployment"}
    assert patch["deployment"] == {"status": "running"}
    assert h.status(key)["phase"] == "running"


async def test_one_resource_in_a_project_is_a_get_and_many_are_one_listing() -> None:
    h = Harness()
    for i in range(30):
        h.northflank.put("big", f"d{i}")
    h.northflank.put("solo", "only")
    for i in range(30):
        h.add(f"r{i}", project="big", deployment=f"d{i}")
    h.add("only", project="solo")
    await h.advance(2)
    assert h.northflank.count("list") == 1, "thirty new resources of one project: one listing"
    assert [c[1] for c in h.northflank.calls if c[0] == "get"] == ["solo"]
    assert all(h.status(ResourceKey("ns", f"r{i}"))["phase"] == "running" for i in range(30))


async def test_several_resources_naming_one_deployment_are_observed_with_one_request() -> None:
    h = Harness()
    h.northflank.put("proj", "dep")
    keys = [h.add(name, deployment="dep") for name in ("a", "b", "c")]
    await h.advance(2)
    assert len(h.northflank.calls) == 1
    assert all(h.status(key)["phase"] == "running" for key in keys)


async def test_a_listing_follows_the_cursor_only_until_every_tracked_deployment_is_found() -> None:
    h = Harness()
    h.northflank.page_size = 2
    for i in range(6):
        h.northflank.put("proj", f"d{i}")
    h.add("a", deployment="d0")
    h.add("b", deployment="d3")
    await h.advance(2)
    assert [c[2] for c in h.northflank.calls] == [None, "2"], "pages 1 and 2 hold both; page 3 is not needed"


async def test_a_deployment_missing_from_a_complete_listing_is_confirmed_before_it_is_not_found() -> None:
    h = Harness()
    h.northflank.put("proj", "a")
    h.northflank.put("proj", "b")
    ka, kb = h.add("a"), h.add("b")
    await h.advance(2)
    del h.northflank.projects["proj"]["b"]
    h.northflank.calls.clear()
    await h.advance(65)
    kinds = [(c[0], c[2]) for c in h.northflank.calls]
    assert kinds[:2] == [("list", None), ("get", "b")], "a GET confirms before NotFound is said"
    assert h.condition(kb, "Ready")["reason"] == "NotFound"
    assert h.condition(ka, "Ready")["status"] == "True"


async def test_an_invalid_item_in_a_listing_fails_only_its_own_resource() -> None:
    h = Harness()
    h.northflank.put("proj", "good")
    h.northflank.put("proj", "bad")
    del h.northflank.projects["proj"]["bad"]["dns"]
    good, bad = h.add("good"), h.add("bad")
    await h.advance(2)
    assert h.condition(good, "Ready")["status"] == "True"
    synced = h.condition(bad, "Synced")
    assert (synced["status"], synced["reason"]) == ("False", "InvalidResponse")
    assert "dns" in synced["message"]


async def test_team_id_is_passed_through() -> None:
    h = Harness()
    h.northflank.put("proj", "dep")
    h.add("dep", teamId="team-a")
    await h.advance(2)
    assert h.northflank.calls[0][4] == "team-a"


# -- cadence --------------------------------------------------------------------------------------


async def test_per_resource_interval_wins_over_the_default() -> None:
    h = Harness(interval=60)
    h.northflank.put("proj", "dep")
    key = h.add("dep", pollIntervalSeconds=600)
    await h.advance(2)
    await h.advance(500, step=10)
    assert h.northflank.count("get") == 1
    await h.advance(200, step=10)
    assert h.northflank.count("get") == 2
    assert h.status(key)["effectivePollIntervalSeconds"] == 600


async def test_transitional_phases_are_observed_four_times_as_often() -> None:
    h = Harness(interval=60)
    h.northflank.put("proj", "dep", status="starting")
    h.add("dep")
    await h.advance(2)
    await h.advance(120, step=1)
    assert 8 <= h.northflank.count("get") <= 10


async def test_transient_errors_back_off_exponentially_up_to_the_interval() -> None:
    h = Harness(interval=30)
    h.northflank.put("proj", "dep")
    h.northflank.errors[("proj", "dep")] = ServerError("HTTP 500", status_code=500, rate_limit=PLENTY)
    h.add("dep")
    sent_at: list[float] = []
    for _second in range(120):
        await h.advance(1)
        if h.northflank.count("get") > len(sent_at):
            sent_at.append(h.clock.now)
    assert [round(b - a) for a, b in itertools.pairwise(sent_at)][:5] == [5, 10, 20, 30, 30]


async def test_a_new_resource_is_observed_at_once_and_one_observed_before_a_restart_within_its_interval() -> None:
    h = Harness(interval=600)
    h.northflank.put("proj", "old", status="running")
    h.northflank.put("other", "new", status="running")
    observed = {
        "observedGeneration": 1,
        "phase": "running",
        "conditions": [{"type": "Ready", "status": "True", "reason": "Running", "message": "",
                        "observedGeneration": 1, "lastTransitionTime": "2026-11-26T10:00:00Z"}],
    }  # fmt: skip
    h.add("old", status=observed)
    h.add("new", project="other")
    await h.advance(2)
    assert [c[2] for c in h.northflank.calls] == ["new"], "the restart does not re-poll everything at once"
    await h.advance(600, step=10)
    assert {c[2] for c in h.northflank.calls} == {"new", "old"}


async def test_a_spec_change_is_observed_at_once() -> None:
    h = Harness(interval=600)
    h.northflank.put("proj", "dep")
    key = h.add("dep")
    await h.advance(2)
    h.change_spec(key, pollIntervalSeconds=900)
    await h.advance(2)
    assert h.northflank.count("get") == 2
    assert h.status(key)["observedGeneration"] == 2
    assert h.status(key)["effectivePollIntervalSeconds"] == 900


async def test_an_overloaded_budget_stretches_the_interval_and_says_so() -> None:
    h = Harness(interval=60)
    h.northflank.rate_limit = RateLimit(limit=20, remaining=19, reset_seconds=3600)
    for i in range(5):
        h.northflank.put(f"p{i}", "dep")
        h.add(f"r{i}", project=f"p{i}", deployment="dep")
    await h.advance(3)
    await h.advance(1200, step=5)
    key = ResourceKey("ns", "r0")
    # 5 GETs a minute asked of 18 routine requests an hour: every interval stretches by the same factor.
    assert h.status(key)["effectivePollIntervalSeconds"] >= 60 * 5 * 60 / 18
    assert "stretches polling to every" in h.condition(key, "Synced")["message"]


# -- rate limits and staleness --------------------------------------------------------------------


async def test_a_429_holds_the_account_until_reset_and_turns_ready_unknown_on_the_clock() -> None:
    h = Harness(interval=10)
    h.northflank.put("p-a", "a")
    h.northflank.put("p-b", "b")
    a = h.add("a", project="p-a")
    b = h.add("b", project="p-b", pollIntervalSeconds=30)
    await h.advance(2)
    assert h.condition(b, "Ready")["status"] == "True"
    spent = RateLimit(limit=1000, remaining=0, reset_seconds=600)
    for project, deployment in (("p-a", "a"), ("p-b", "b")):
        h.northflank.errors[(project, deployment)] = RateLimitError("HTTP 429", status_code=429, rate_limit=spent)
    calls = len(h.northflank.calls)
    await h.advance(20)
    assert len(h.northflank.calls) == calls + 1, "one 429, then no request until the reset"
    assert h.condition(a, "Synced")["reason"] == "RateLimited"
    # No moment in the message: every window would otherwise rewrite every status it covers.
    assert "polling resumes when its window resets" in h.condition(a, "Synced")["message"]
    assert h.condition(b, "Synced")["status"] == "True", "a resource that only waits is not rewritten"

    await h.advance(15)  # a: 3 intervals of 10 s since its last success
    ready = h.condition(a, "Ready")
    assert (ready["status"], ready["reason"]) == ("Unknown", "StatusStale")
    assert "rate limit" in ready["message"]
    assert h.condition(b, "Ready")["status"] == "True", "b asked for 30 s: it is not stale yet"
    await h.advance(60)  # b: 3 intervals of 30 s
    assert h.condition(b, "Ready")["reason"] == "StatusStale"
    assert len(h.northflank.calls) == calls + 1, "staleness needs no request"
    assert [e.reason for _, e in h.kube.events if e.type == "Warning"] == ["RateLimited"]

    h.northflank.errors.clear()
    await h.advance(600, step=5)
    assert h.condition(a, "Ready")["status"] == "True"
    assert h.condition(b, "Ready")["status"] == "True"


async def test_other_credentials_are_not_held_by_someone_elses_rate_limit() -> None:
    h = Harness()
    h.kube.secrets[("ns", "other", "token")] = "other-token"
    h.northflank.put("p1", "a")
    h.northflank.put("p2", "b")
    spent = RateLimit(limit=1000, remaining=0, reset_seconds=1200)
    h.northflank.errors[("p1", "a")] = RateLimitError("HTTP 429", status_code=429, rate_limit=spent)
    h.add("a", project="p1")
    h.add("b", project="p2", credentialsSecretRef={"name": "other", "key": "token"})
    await h.advance(2)
    assert sorted(call[3] for call in h.northflank.calls) == ["operator-token", "other-token"]
    assert h.condition(ResourceKey("ns", "b"), "Ready")["status"] == "True"


async def test_secret_credentials_are_cached_and_dropped_after_a_401() -> None:
    h = Harness(default_token=None)
    h.kube.secrets[("ns", "nf", "token")] = "old-token"
    h.northflank.put("proj", "dep")
    h.northflank.errors[("proj", "dep")] = AuthenticationError("HTTP 401", status_code=401, rate_limit=RateLimit())
    key = h.add("dep", credentialsSecretRef={"name": "nf", "key": "token"})
    await h.advance(2)
    assert h.condition(key, "Synced")["reason"] == "AuthenticationFailed"

    h.kube.secrets[("ns", "nf", "token")] = "rotated-token"
    del h.northflank.errors[("proj", "dep")]
    await h.advance(65)  # the Secret is read again once its cache (30 s) has expired, at the next sweep
    assert [call[3] for call in h.northflank.calls] == ["old-token", "rotated-token"]
    assert h.status(key)["phase"] == "running"
    reads = h.kube.secret_reads
    await h.advance(20)
    assert h.kube.secret_reads == reads, "a good token is served from the cache"


async def test_missing_credentials_are_reported_without_calling_northflank() -> None:
    h = Harness(default_token=None)
    plain = h.add("dep")
    missing_secret = h.add("other", credentialsSecretRef={"name": "absent"})
    await h.advance(2)
    assert h.northflank.calls == []
    assert [h.condition(k, "Synced")["reason"] for k in (plain, missing_secret)] == [
        "CredentialsNotConfigured",
        "CredentialsNotFound",
    ]


async def test_an_invalid_spec_is_reported_not_polled() -> None:
    h = Harness()
    key = h.add("dep", deployment="../escape")
    await h.advance(2)
    assert h.northflank.calls == []
    synced = h.condition(key, "Synced")
    assert synced["reason"] == "InvalidSpec"
    assert "llmModelDeploymentId" in synced["message"]


async def test_a_deleted_resource_is_forgotten_and_nothing_is_kept_for_its_token() -> None:
    h = Harness()
    h.northflank.put("proj", "dep")
    key = h.add("dep")
    await h.advance(2)
    h.registry.observe("DELETED", h.kube.objects.pop(key))
    await h.advance(200, step=10)
    assert len(h.northflank.calls) == 1
    assert h.poller.planner.accounts() == []


async def test_a_resource_deleted_mid_poll_is_forgotten() -> None:
    h = Harness()
    h.northflank.put("proj", "dep")
    key = h.add("dep")
    del h.kube.objects[key]
    await h.advance(2)
    assert h.registry.get(key) is None


async def test_the_token_never_reaches_status_or_events() -> None:
    h = Harness(default_token="super-secret-operator-token")
    h.northflank.put("proj", "dep")
    h.northflank.errors[("proj", "dep")] = AuthenticationError(
        "Northflank answered with HTTP 401: invalid token", status_code=401, rate_limit=RateLimit()
    )
    h.add("dep")
    await h.advance(2)
    written = repr(h.kube.patches) + repr(h.kube.events)
    assert "super-secret-operator-token" not in written
    assert "AuthenticationFailed" in written


async def test_an_unexpected_error_ends_in_a_condition_and_polling_goes_on() -> None:
    h = Harness()
    h.northflank.put("proj", "dep")
    h.northflank.errors[("proj", "dep")] = RuntimeError("a bug")
    key = h.add("dep")
    await h.advance(2)
    assert h.condition(key, "Synced")["reason"] == "InternalError"
    del h.northflank.errors[("proj", "dep")]
    await h.advance(30)
    assert h.condition(key, "Ready")["status"] == "True"


async def test_run_loop_polls_and_sleeps_on_real_time() -> None:
    h = Harness(interval=60)
    h.northflank.put("proj", "good")
    loop = asyncio.get_running_loop()
    h.clock.source = loop.time
    key = h.add("good")
    task = asyncio.create_task(h.poller.run())
    try:
        async with asyncio.timeout(10):
            while h.status(key).get("phase") != "running":
                await h.kube.patched.wait()
                h.kube.patched.clear()
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


def test_a_credential_never_shows_its_token() -> None:
    credential = Credential.of("super-secret-token-value")
    assert "super-secret-token-value" not in repr(credential)
    assert credential.identity == Credential.of("super-secret-token-value").identity


async def test_a_confirmed_404_is_current_information_not_a_stale_one() -> None:
    h = Harness(interval=10)
    h.northflank.put("proj", "dep")
    key = h.add("dep")
    await h.advance(2)
    del h.northflank.projects["proj"]["dep"]
    await h.advance(100)
    ready = h.condition(key, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NotFound"), "re-confirmed every interval, never stale"


async def test_a_failed_listing_reports_only_on_the_resources_it_was_to_observe() -> None:
    h = Harness(interval=60)
    h.northflank.page_size = 20  # five pages: listing every 15 s would cost more than one GET
    for i in range(100):
        h.northflank.put("proj", f"d{i}", status="starting" if i == 0 else "running")
        h.add(f"r{i}", deployment=f"d{i}")
    await h.advance(2)
    await h.advance(20)  # d0 (starting) now has GETs of its own, the rest are listed
    h.northflank.errors[("proj", None)] = ServerError("HTTP 500", status_code=500, rate_limit=PLENTY)
    await h.advance(160)  # shown once the last success is two intervals old (one before Ready goes stale)
    assert h.condition(ResourceKey("ns", "r1"), "Synced")["reason"] == "ServerError"
    fast = ResourceKey("ns", "r0")
    assert h.northflank.count("get") >= 3
    assert not any(key == fast and "ServerError" in repr(patch) for key, patch in h.kube.patches), (
        "a resource observed by its own GETs is not told that the listing failed"
    )
    assert h.condition(fast, "Synced")["status"] == "True"


# -- GitOps: expectedPhase, refresh and pause annotations -----------------------------------------

REFRESH = "northflank-llm-operator.dev/reconcile-requested-at"
PAUSE = "northflank-llm-operator.dev/paused"


def annotate(h: Harness, key: ResourceKey, **annotations: str | None) -> None:
    """Set (a value) or remove (None) annotations, as ``kubectl annotate`` does: no new generation."""
    body = h.kube.objects[key]
    current = dict(body["metadata"].get("annotations") or {})
    for name, value in annotations.items():
        name = {"refresh": REFRESH, "paused": PAUSE}[name]
        if value is None:
            current.pop(name, None)
        else:
            current[name] = value
    body["metadata"]["annotations"] = current
    h.kube.resource_version += 1
    body["metadata"]["resourceVersion"] = str(h.kube.resource_version)
    h.registry.observe("MODIFIED", body)


async def test_expected_paused_is_ready_when_paused() -> None:
    h = Harness()
    h.northflank.put("proj", "dep", status="paused")
    key = h.add("dep", expectedPhase="paused")
    await h.advance(2)
    ready = h.condition(key, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "PausedAsExpected")
    h.northflank.put("proj", "dep", status="running")
    await h.advance(65)
    assert h.condition(key, "Ready")["reason"] == "UnexpectedPhase"


async def test_a_refresh_request_is_observed_at_once_and_recorded() -> None:
    h = Harness(interval=3600)
    h.northflank.put("proj", "dep", status="starting")
    key = h.add("dep", pollIntervalSeconds=3600)
    await h.advance(2)
    h.northflank.put("proj", "dep", status="running")
    await h.advance(60)
    gets = h.northflank.count("get")
    annotate(h, key, refresh="2026-11-26T10:00:00Z")
    await h.advance(2)
    assert h.northflank.count("get") == gets + 1, "observed within the batch delay, not the hour"
    assert h.status(key)["lastHandledReconcileAt"] == "2026-11-26T10:00:00Z"
    assert h.status(key)["phase"] == "running"
    budget = h.poller.planner.budget(next(iter(h.poller.planner.accounts())))
    assert budget is not None
    assert budget.urgent_tokens < budget.reserve, "paid from the reserve"

    await h.advance(60)
    assert h.northflank.count("get") == gets + 1, "the same value is not handled twice"
    annotate(h, key, refresh="again")
    await h.advance(2)
    assert h.northflank.count("get") == gets + 2
    assert h.status(key)["lastHandledReconcileAt"] == "again"


async def test_a_refresh_is_not_settled_by_an_answer_to_a_request_sent_before_it() -> None:
    h = Harness(interval=60)
    h.northflank.put("proj", "dep")
    key = h.add("dep")
    await h.advance(2)
    h.northflank.gate = asyncio.Event()
    h.clock.now += 65
    await h.poller.step()  # the routine GET is now in flight, waiting at the gate
    await asyncio.sleep(0)
    assert h.northflank.count("get") == 2
    annotate(h, key, refresh="r1")
    await h.poller.step()
    h.northflank.gate.set()
    await h.poller.drain()
    assert "lastHandledReconcileAt" not in h.status(key), "that answer was asked for before the refresh"
    await h.advance(2)
    assert h.northflank.count("get") == 3
    assert h.status(key)["lastHandledReconcileAt"] == "r1"


async def test_a_paused_resource_sends_nothing_keeps_its_observation_and_resumes_at_once() -> None:
    h = Harness(interval=10)
    h.northflank.put("proj", "dep", status="running")
    h.northflank.put("other", "witness", status="running")
    key = h.add("dep")
    h.add("witness", project="other")
    await h.advance(2)
    observed = h.status(key)
    annotate(h, key, paused="true")
    await h.advance(1)
    synced = h.condition(key, "Synced")
    assert (synced["status"], synced["reason"]) == ("False", "ReconcilePaused")
    assert ("Normal", "ReconcilePaused") in [(e.type, e.reason) for k, e in h.kube.events if k == key]
    assert h.condition(key, "Ready")["status"] == "True", "the last observation is still current"
    assert {k: observed[k] for k in ("phase", "dns", "deployment")} == {
        k: h.status(key)[k] for k in ("phase", "dns", "deployment")
    }

    h.northflank.calls.clear()
    await h.advance(40)
    assert [c[2] for c in h.northflank.calls if c[1] == "proj"] == [], "paused: zero requests"
    assert len([c for c in h.northflank.calls if c[1] == "other"]) >= 3, "the others go on"
    ready = h.condition(key, "Ready")
    assert (ready["status"], ready["reason"]) == ("Unknown", "StatusStale"), "stale by the normal rule"
    assert "paused" in ready["message"]

    h.northflank.put("proj", "dep", status="paused")
    annotate(h, key, paused=None)
    await h.advance(2)
    assert [c[1] for c in h.northflank.calls if c[1] == "proj"] == ["proj"], "resumed at once"
    assert h.condition(key, "Synced")["status"] == "True"
    assert h.status(key)["phase"] == "paused"
    assert "ReconcileResumed" in [e.reason for k, e in h.kube.events if k == key]


async def test_a_resource_created_paused_is_never_requested() -> None:
    h = Harness()
    h.northflank.put("proj", "dep")
    key = h.add("dep")
    annotate(h, key, paused="true")
    await h.advance(120)
    assert h.northflank.calls == []
    assert h.condition(key, "Synced")["reason"] == "ReconcilePaused"
    assert h.condition(key, "Ready")["status"] == "Unknown"


async def test_a_resource_paused_before_a_restart_still_turns_stale_on_the_clock() -> None:
    observed = {
        "observedGeneration": 1,
        "phase": "running",
        "conditions": [{"type": "Ready", "status": "True", "reason": "Running", "message": "",
                        "observedGeneration": 1, "lastTransitionTime": "2026-11-26T10:00:00Z"}],
    }  # fmt: skip
    restarted = Harness(interval=10)
    key = restarted.add("dep", status=observed)
    annotate(restarted, key, paused="true")
    await restarted.advance(25)
    assert restarted.condition(key, "Ready")["status"] == "True", "not stale before 3 intervals of 10 s"
    await restarted.advance(10)
    assert restarted.northflank.calls == []
    ready = restarted.condition(key, "Ready")
    assert (ready["status"], ready["reason"]) == ("Unknown", "StatusStale")


async def test_a_pause_annotation_that_means_nothing_is_a_warning_event_once() -> None:
    h = Harness()
    h.northflank.put("proj", "dep")
    key = h.add("dep")
    body = h.kube.objects[key]
    body["metadata"]["annotations"] = {PAUSED_ANNOTATION: "perhaps"}
    body["metadata"]["resourceVersion"] = "50"
    h.registry.observe("MODIFIED", body)
    await h.advance(3)
    warnings = [e for k, e in h.kube.events if k == key and e.reason == "InvalidPauseAnnotation"]
    assert len(warnings) == 1
    assert "perhaps" in warnings[0].message
    assert h.northflank.count("get") >= 1, "a value that means nothing pauses nothing"
    body["metadata"]["resourceVersion"] = "51"
    h.registry.observe("MODIFIED", body)
    await h.advance(3)
    assert len([e for k, e in h.kube.events if e.reason == "InvalidPauseAnnotation"]) == 1


async def test_stopping_is_not_held_by_a_worker_whose_cancel_was_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.11's wait_for swallows a cancel when the call it awaits finishes at the same moment;
    the worker then went back to its queue and the stop (after a lost Lease too) waited for it forever."""
    h = Harness(interval=60)
    h.northflank.put("proj", "good")
    h.clock.source = asyncio.get_running_loop().time
    h.add("good")
    reconciling = asyncio.Event()

    async def reconcile_swallowing_the_cancel(_key: ResourceKey) -> float | None:
        reconciling.set()
        with contextlib.suppress(asyncio.CancelledError):  # what wait_for does on 3.11 in that race
            await asyncio.sleep(3600)
        return None

    monkeypatch.setattr(h.poller.reconciler, "reconcile", reconcile_swallowing_the_cancel)
    task = asyncio.create_task(h.poller.run())
    async with asyncio.timeout(10):
        await reconciling.wait()
    task.cancel()
    stopped_within = 3 * STOP_GRACE_SECONDS
    done, _ = await asyncio.wait({task}, timeout=stopped_within)
    assert done, f"the controller did not stop within {stopped_within:g}s"
    assert task.cancelled()
