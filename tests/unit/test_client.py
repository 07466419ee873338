"""The Northflank client against scripted HTTP responses (httpx.MockTransport, no network)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from northflank_llm_operator.northflank import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InvalidResponseError,
    NorthflankClient,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from tests.unit.payloads import SEED_PAGE_EXAMPLE, full_deployment

TOKEN = "nf-secret-token-value"
RATE_HEADERS = {"x-ratelimit-limit": "1000", "x-ratelimit-remaining": "998", "x-ratelimit-reset": "3541"}

Handler = Callable[[httpx.Request], httpx.Response]


def client_with(handler: Handler, base_url: str = "https://api.example.test") -> NorthflankClient:
    return NorthflankClient(base_url, transport=httpx.MockTransport(handler))


def ok(body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(200, json=body, headers=RATE_HEADERS | (headers or {}))


def error(status: int, message: str = "Something went wrong", **extra: Any) -> httpx.Response:
    envelope = {"error": {"status": status, "message": message, "id": "err-123", **extra}}
    return httpx.Response(status, json=envelope, headers=RATE_HEADERS)


async def test_get_sends_bearer_token_and_parses_the_envelope() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok({"data": full_deployment()})

    async with client_with(handler) as client:
        result = await client.get_llm_model_deployment("default-project", "deepseek-v3-deployment", token=TOKEN)

    assert result.data.id == "deepseek-v3-deployment"
    assert seen[0].method == "GET"
    assert seen[0].url.path == "/v1/projects/default-project/llm-model-deployments/deepseek-v3-deployment"
    assert seen[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert seen[0].headers["user-agent"].startswith("northflank-llm-operator/")


async def test_rate_limit_headers_are_surfaced_on_success() -> None:
    async with client_with(lambda _: ok({"data": full_deployment()})) as client:
        result = await client.get_llm_model_deployment("p", "d", token=TOKEN)
    assert (result.rate_limit.limit, result.rate_limit.remaining, result.rate_limit.reset_seconds) == (1000, 998, 3541)
    assert not result.rate_limit.exhausted


async def test_missing_or_garbled_rate_limit_headers_are_unknown_not_errors() -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": full_deployment()}, headers={"x-ratelimit-remaining": "lots"})

    async with client_with(handler) as client:
        result = await client.get_llm_model_deployment("p", "d", token=TOKEN)
    assert result.rate_limit.limit is None
    assert result.rate_limit.remaining is None
    assert result.rate_limit.wait_seconds() is None


async def test_team_id_switches_to_the_team_scoped_route() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return ok({"data": full_deployment()})

    async with client_with(handler) as client:
        await client.get_llm_model_deployment("proj", "dep", token=TOKEN, team_id="team-a")
    assert paths == ["/v1/teams/team-a/projects/proj/llm-model-deployments/dep"]


async def test_base_url_with_a_path_prefix_is_kept() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return ok({"data": full_deployment()})

    async with client_with(handler, base_url="http://127.0.0.1:9/northflank/") as client:
        await client.get_llm_model_deployment("proj", "dep", token=TOKEN)
    assert paths == ["/northflank/v1/projects/proj/llm-model-deployments/dep"]


@pytest.mark.parametrize(
    ("project_id", "encoded"),
    [
        ("a/b", "a%2Fb"),
        ("a?b=c", "a%3Fb%3Dc"),
        ("a#b", "a%23b"),
        ("a b", "a%20b"),
        ("..%2F", "..%252F"),
        ("ünï", "%C3%BCn%C3%AF"),
    ],
)
async def test_path_parameters_are_percent_encoded(project_id: str, encoded: str) -> None:
    raw_paths: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        raw_paths.append(request.url.raw_path)
        return ok({"data": full_deployment()})

    async with client_with(handler) as client:
        await client.get_llm_model_deployment(project_id, "dep", token=TOKEN)
    assert raw_paths == [f"/v1/projects/{encoded}/llm-model-deployments/dep".encode()]


@pytest.mark.parametrize("bad", ["", ".", ".."])
async def test_dot_segments_are_refused_before_any_request(bad: str) -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        raise AssertionError("no request may be sent")

    async with client_with(handler) as client:
        with pytest.raises(ValueError, match="path segment"):
            await client.get_llm_model_deployment("proj", bad, token=TOKEN)


@pytest.mark.parametrize(
    ("status", "error_type", "reason"),
    [
        (400, BadRequestError, "BadRequest"),
        (401, AuthenticationError, "AuthenticationFailed"),
        (403, PermissionDeniedError, "PermissionDenied"),
        (404, NotFoundError, "NotFound"),
        (409, ConflictError, "Conflict"),
        (418, APIStatusError, "UnexpectedStatus"),
        (429, RateLimitError, "RateLimited"),
        (500, ServerError, "ServerError"),
        (503, ServerError, "ServerError"),
    ],
)
async def test_error_envelope_becomes_a_typed_error(status: int, error_type: type[Exception], reason: str) -> None:
    async with client_with(lambda _: error(status, "Deployment not reachable", details={"k": "v"})) as client:
        with pytest.raises(error_type) as raised:
            await client.get_llm_model_deployment("proj", "dep", token=TOKEN)
    exc = raised.value
    assert type(exc) is error_type
    assert isinstance(exc, APIStatusError)
    assert exc.status_code == status
    assert exc.reason == reason
    assert exc.error_id == "err-123"
    assert exc.details == {"k": "v"}
    assert "Deployment not reachable" in exc.message
    assert f"HTTP {status}" in exc.message
    assert exc.rate_limit.remaining == 998


async def test_rate_limit_error_tells_how_long_to_wait() -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        headers = {"x-ratelimit-limit": "1000", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "42"}
        return httpx.Response(429, json={"error": {"message": "Too many requests"}}, headers=headers)

    async with client_with(handler) as client:
        with pytest.raises(RateLimitError) as raised:
            await client.get_llm_model_deployment("proj", "dep", token=TOKEN)
    assert raised.value.rate_limit.exhausted
    assert raised.value.rate_limit.wait_seconds() == 42
    assert raised.value.transient


async def test_retry_after_extends_the_wait() -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "10", "retry-after": "30"}
        return httpx.Response(429, text="slow down", headers=headers)

    async with client_with(handler) as client:
        with pytest.raises(RateLimitError) as raised:
            await client.get_llm_model_deployment("proj", "dep", token=TOKEN)
    assert raised.value.rate_limit.wait_seconds() == 30


async def test_error_without_envelope_uses_the_body_text() -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html><body>Bad gateway from the proxy</body></html>")

    async with client_with(handler) as client:
        with pytest.raises(ServerError) as raised:
            await client.get_llm_model_deployment("proj", "dep", token=TOKEN)
    assert "Bad gateway from the proxy" in raised.value.message
    assert raised.value.rate_limit.limit is None


async def test_long_error_bodies_are_truncated() -> None:
    async with client_with(lambda _: httpx.Response(500, text="x" * 10_000)) as client:
        with pytest.raises(ServerError) as raised:
            await client.get_llm_model_deployment("proj", "dep", token=TOKEN)
    assert len(raised.value.message) < 500


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        "\u00ff".encode("latin-1"),
    ],
)
async def test_malformed_success_body_is_an_invalid_response(body: bytes) -> None:
    async with client_with(lambda _: httpx.Response(200, content=body, headers=RATE_HEADERS)) as client:
        with pytest.raises(InvalidResponseError) as raised:
            await client.get_llm_model_deployment("proj", "dep", token=TOKEN)
    assert "not JSON" in raised.value.message
    assert raised.value.rate_limit.remaining == 998


@pytest.mark.parametrize("body", [[], {"items": []}, {"data": None}, {"data": "running"}])
async def test_wrong_envelope_is_an_invalid_response(body: Any) -> None:
    async with client_with(lambda _: ok(body)) as client:
        with pytest.raises(InvalidResponseError, match="does not match the API contract"):
            await client.get_llm_model_deployment("proj", "dep", token=TOKEN)


async def test_seed_page_example_explains_what_is_missing() -> None:
    async with client_with(lambda _: ok(SEED_PAGE_EXAMPLE)) as client:
        with pytest.raises(InvalidResponseError) as raised:
            await client.get_llm_model_deployment("default-project", "deepseek-v3-deployment", token=TOKEN)
    assert "data.id: Field required" in raised.value.message
    assert "and 1 more" in raised.value.message  # entityType is lenient: a deviation, not a failure


async def test_timeout_and_connection_errors_are_typed() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with client_with(timeout) as client:
        with pytest.raises(APITimeoutError) as raised_timeout:
            await client.get_llm_model_deployment("proj", "dep", token=TOKEN)
    async with client_with(refused) as client:
        with pytest.raises(APIConnectionError) as raised_refused:
            await client.get_llm_model_deployment("proj", "dep", token=TOKEN)
    assert raised_timeout.value.reason == "Timeout"
    assert raised_refused.value.reason == "ConnectionFailed"
    assert type(raised_refused.value) is APIConnectionError


async def test_redirects_are_not_followed_so_the_token_stays_put() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(302, headers={"location": "https://elsewhere.example/steal"})

    async with client_with(handler) as client:
        with pytest.raises(APIStatusError):
            await client.get_llm_model_deployment("proj", "dep", token=TOKEN)
    assert len(requests) == 1


async def test_the_token_never_appears_in_error_messages() -> None:
    def echo_auth(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"message": "bad token"}})

    async with client_with(echo_auth) as client:
        with pytest.raises(AuthenticationError) as raised:
            await client.get_llm_model_deployment("proj", "dep", token=TOKEN)
    assert TOKEN not in str(raised.value)
    assert TOKEN not in repr(raised.value.__dict__)


async def test_list_walks_pages_with_the_cursor() -> None:
    cursors: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        cursors.append(cursor)
        assert request.url.params["per_page"] == "100"
        if cursor is None:
            return ok(
                {
                    "data": {"llmModelDeployments": [full_deployment(id="a")]},
                    "pagination": {"hasNextPage": True, "cursor": "next-1", "count": 1},
                }
            )
        return ok(
            {
                "data": {"llmModelDeployments": [full_deployment(id="b")]},
                "pagination": {"hasNextPage": False, "count": 1},
            }
        )

    async with client_with(handler) as client:
        first = await client.list_llm_model_deployments("proj", token=TOKEN)
        second = await client.list_llm_model_deployments("proj", token=TOKEN, cursor=first.data.cursor)
    assert [item["id"] for item in first.data.items + second.data.items] == ["a", "b"]
    assert (first.data.has_next_page, second.data.has_next_page, second.data.cursor) == (True, False, None)
    assert cursors == [None, "next-1"]


async def test_list_page_size_is_bounded_by_the_documented_maximum() -> None:
    async with client_with(lambda _: ok({})) as client:
        with pytest.raises(ValueError, match="per_page"):
            await client.list_llm_model_deployments("proj", token=TOKEN, per_page=101)


def test_rate_limit_parsing_is_robust() -> None:
    from northflank_llm_operator.northflank import RateLimit

    parsed = RateLimit.from_headers(
        {"x-ratelimit-limit": " 1000 ", "x-ratelimit-remaining": "-1", "x-ratelimit-reset": "2.5"}
    )
    assert (parsed.limit, parsed.remaining, parsed.reset_seconds) == (1000, None, 2.5)
    assert json.dumps(parsed.__dict__)  # plain data, safe to log


@pytest.mark.parametrize(
    ("pagination", "items", "more"),
    [
        ({"hasNextPage": True, "cursor": "c1", "count": 1}, 1, True),  # every client goes on
        ({"hasNextPage": False, "count": 1}, 1, False),  # the documented end: every client stops
        # The disagreeing cases. JS continues while a cursor is present, Python while either is:
        ({"hasNextPage": False, "cursor": "c1", "count": 1}, 1, True),  # both clients go on: so do we
        ({"hasNextPage": True, "count": 1}, 1, True),  # JS would stop and miss the rest; go on by page number
        # An empty page ends the listing even with a cursor (nothing after it; no endless walk).
        ({"hasNextPage": False, "cursor": "c1", "count": 0}, 0, False),
    ],
)
async def test_the_paging_rule_follows_both_official_clients(
    pagination: dict[str, Any], items: int, more: bool
) -> None:
    body = {"data": {"llmModelDeployments": [full_deployment(id="a")][:items]}, "pagination": pagination}
    async with client_with(lambda _: ok(body)) as client:
        page = (await client.list_llm_model_deployments("proj", token=TOKEN)).data
    assert page.has_more is more


async def test_the_client_only_ever_reads_from_northflank() -> None:
    """Observing is read-only: every request the operator's client can send is a GET. A write method
    added later must come with its own opt-in (and fails here until this test says so)."""
    methods: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        methods.append(request.method)
        if request.url.path.endswith("/llm-model-deployments"):
            body = {"data": {"llmModelDeployments": []}, "pagination": {"hasNextPage": False, "count": 0}}
        else:
            body = {"data": full_deployment()}
        return httpx.Response(200, json=body)

    public = {name for name in vars(NorthflankClient) if not name.startswith("_")}
    assert public == {"get_llm_model_deployment", "list_llm_model_deployments", "aclose"}
    async with NorthflankClient("https://api.example", transport=httpx.MockTransport(answer)) as client:
        await client.get_llm_model_deployment("proj", "dep", token="tok-123456789")
        await client.list_llm_model_deployments("proj", token="tok-123456789")
    assert methods == ["GET", "GET"]
