"""The Northflank writer (management only) against scripted HTTP responses (httpx.MockTransport)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from northflank_llm_operator.northflank import ConflictError, FencedError, NorthflankClient, PermissionDeniedError
from northflank_llm_operator.northflank.writer import NorthflankWriter, Permissions

TOKEN = "nf-writer-secret-token"
RATE_HEADERS = {"x-ratelimit-limit": "1000", "x-ratelimit-remaining": "990", "x-ratelimit-reset": "3000"}
AUTH = {
    "data": {
        "tokenKind": "api",
        "id": "tok-1",
        "entityId": "team-a",
        "entityType": "team",
        "permissions": {
            "orgScope": [],
            "teamScope": [],
            "projectScope": ["Project > AiModels > General > Read", "Project > AiModels > General > Create"],
        },
    }
}

Handler = Callable[[httpx.Request], httpx.Response]


class Seen:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.finished: list[tuple[str, int | None]] = []

    def request_finished(self, endpoint: str, status_code: int | None, seconds: float) -> None:
        self.finished.append((endpoint, status_code))


def writer_with(handler: Handler, seen: Seen, *, may_send: Callable[[], bool] | None = None) -> NorthflankWriter:
    def record(request: httpx.Request) -> httpx.Response:
        seen.requests.append(request)
        return handler(request)

    return NorthflankWriter(
        "https://api.example.test", transport=httpx.MockTransport(record), observer=seen, may_send=may_send
    )


def answer(status: int = 200, body: Any = None, *, text: str | None = None) -> httpx.Response:
    if text is not None:
        return httpx.Response(status, text=text, headers=RATE_HEADERS)
    return httpx.Response(status, json=body if body is not None else {"data": {}}, headers=RATE_HEADERS)


async def test_create_update_and_delete_send_their_routes_and_bodies() -> None:
    seen = Seen()
    async with writer_with(lambda _: answer(), seen) as writer:
        rate = await writer.create_llm_model_deployment("proj", {"name": "My Model"}, token=TOKEN)
        await writer.update_llm_model_deployment("proj", "my-model", {"description": "x"}, token=TOKEN)
        await writer.delete_llm_model_deployment("proj", "my-model", token=TOKEN, team_id="team-a")
    assert [(r.method, r.url.path) for r in seen.requests] == [
        ("POST", "/v1/projects/proj/llm-model-deployments"),
        ("POST", "/v1/projects/proj/llm-model-deployments/my-model"),
        ("DELETE", "/v1/teams/team-a/projects/proj/llm-model-deployments/my-model"),
    ]
    assert json.loads(seen.requests[0].content) == {"name": "My Model"}
    assert json.loads(seen.requests[1].content) == {"description": "x"}
    assert seen.requests[2].content == b""
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in seen.requests)
    assert (rate.limit, rate.remaining) == (1000, 990)
    assert seen.finished == [("create", 200), ("update", 200), ("delete", 200)]


async def test_the_create_answer_body_is_never_read() -> None:
    """The body of a create's answer is undocumented: whatever it is, only a GET says what exists."""
    seen = Seen()
    async with writer_with(lambda _: answer(text="<html>created</html>"), seen) as writer:
        rate = await writer.create_llm_model_deployment("proj", {"name": "m"}, token=TOKEN)
    assert rate.remaining == 990


async def test_a_taken_name_is_a_conflict_error_without_the_token() -> None:
    seen = Seen()
    conflict = {"error": {"status": 409, "message": "same derived identifier my-model already exists"}}
    async with writer_with(lambda _: answer(409, conflict), seen) as writer:
        with pytest.raises(ConflictError) as raised:
            await writer.create_llm_model_deployment("proj", {"name": "My Model"}, token=TOKEN)
    assert raised.value.status_code == 409
    assert raised.value.rate_limit.remaining == 990
    assert TOKEN not in raised.value.message
    assert "already exists" in raised.value.message


async def test_permissions_are_read_once_per_token_and_again_after_a_403() -> None:
    seen = Seen()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/auth":
            return answer(200, AUTH)
        return answer(403, {"error": {"status": 403, "message": "lacks the permission"}})

    async with writer_with(handler, seen) as writer:
        first, rate = await writer.permissions(TOKEN)
        again, cached_rate = await writer.permissions(TOKEN)
        await writer.permissions("another-token-value")
        with pytest.raises(PermissionDeniedError):
            await writer.update_llm_model_deployment("proj", "m", {"tags": []}, token=TOKEN)
        assert writer.cached_permissions(TOKEN) is None
        await writer.permissions(TOKEN)
    assert first is again
    assert rate is not None
    assert cached_rate is None
    assert first.missing("Create", "proj") is None
    assert first.missing("Update", "proj") == "Project > AiModels > General > Update"
    assert [r.url.path for r in seen.requests].count("/v1/auth") == 3
    assert ("auth", 200) in seen.finished


def test_project_restrictions_limit_what_a_token_may_write() -> None:
    data = {
        "permissions": {"projectScope": ["Project > AiModels > General > Delete"]},
        "projectRestrictions": {"enabled": True, "projects": ["a"], "restrictionMode": "in"},
    }
    permissions = Permissions.from_auth(data)
    assert permissions.missing("Delete", "a") is None
    assert permissions.missing("Delete", "b") is not None
    assert "b" in (permissions.missing("Delete", "b") or "")


async def test_a_fenced_writer_sends_nothing() -> None:
    seen = Seen()
    async with writer_with(lambda _: answer(), seen, may_send=lambda: False) as writer:
        with pytest.raises(FencedError):
            await writer.create_llm_model_deployment("proj", {"name": "m"}, token=TOKEN)
        with pytest.raises(FencedError):
            await writer.delete_llm_model_deployment("proj", "m", token=TOKEN)
    assert seen.requests == []


def test_the_read_client_has_no_write_methods() -> None:
    """Writes live in their own class, built only when management is enabled."""
    assert not {name for name in vars(NorthflankClient) if "create" in name or "delete" in name or "update" in name}
