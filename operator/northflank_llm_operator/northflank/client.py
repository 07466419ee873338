"""Async client for the read side of Northflank's LLM model deployment API.

It knows nothing of Kubernetes or kopf. One instance (one connection pool) serves the whole
process; the token is passed per call because each resource may use its own credentials.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar
from urllib.parse import quote

import httpx
import pydantic

from northflank_llm_operator import __version__

from .errors import (
    APIConnectionError,
    APITimeoutError,
    InvalidResponseError,
    error_class_for,
)
from .models import (
    GetLLMModelDeploymentResponse,
    ListLLMModelDeploymentsResponse,
    LLMModelDeployment,
)
from .ratelimit import RateLimit

T = TypeVar("T")

USER_AGENT = f"northflank-llm-operator/{__version__}"
_MAX_ERROR_TEXT = 300
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class ApiResult(Generic[T]):
    """A parsed success response and the rate-limit headers that came with it."""

    data: T
    rate_limit: RateLimit


@dataclass(frozen=True)
class DeploymentPage:
    """One page of the list endpoint."""

    items: list[dict[str, Any]]
    has_next_page: bool
    cursor: str | None


Endpoint = Literal["get", "list"]


class RequestObserver(Protocol):
    """Told about every request (metrics hook in here; the client itself knows nothing of them)."""

    def request_finished(self, endpoint: str, status_code: int | None, seconds: float) -> None:
        """``status_code`` is None when no HTTP answer came (timeout, connection error)."""
        ...


def path_segment(value: str, *, what: str) -> str:
    """Percent-encode one path parameter so no id can change the request path."""
    if value in ("", ".", ".."):
        raise ValueError(f"{what} {value!r} cannot be used as a path segment")
    return quote(value, safe="")


def project_path(project_id: str, team_id: str | None) -> str:
    """``/v1/projects/{id}``, or its ``/v1/teams/{teamId}/...`` twin organisation tokens need."""
    path = f"/projects/{path_segment(project_id, what='projectId')}"
    if team_id is not None:
        path = f"/teams/{path_segment(team_id, what='teamId')}{path}"
    return f"/v1{path}"


class NorthflankClient:
    """Typed GET access to LLM model deployments."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_seconds: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        self._observer = observer
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout_seconds),
            transport=transport,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            # Redirects would forward the bearer token to wherever they point; the API never redirects.
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> NorthflankClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def get_llm_model_deployment(
        self, project_id: str, deployment_id: str, *, token: str, team_id: str | None = None
    ) -> ApiResult[LLMModelDeployment]:
        """``GET /v1/projects/{projectId}/llm-model-deployments/{llmModelDeploymentId}``."""
        path = (
            f"{project_path(project_id, team_id)}/llm-model-deployments/"
            f"{path_segment(deployment_id, what='llmModelDeploymentId')}"
        )
        body, rate_limit, status_code = await self._get(path, token=token, endpoint="get")
        envelope = _validate(GetLLMModelDeploymentResponse, body, status_code, rate_limit)
        return ApiResult(envelope.data, rate_limit)

    async def list_llm_model_deployments(
        self,
        project_id: str,
        *,
        token: str,
        team_id: str | None = None,
        per_page: int = MAX_PAGE_SIZE,
        cursor: str | None = None,
        page: int | None = None,
    ) -> ApiResult[DeploymentPage]:
        """One page of ``GET /v1/projects/{projectId}/llm-model-deployments``: the page after
        ``cursor`` (the documented way), or page number ``page`` when a response gave no cursor."""
        if not 1 <= per_page <= MAX_PAGE_SIZE:
            raise ValueError(f"per_page must be between 1 and {MAX_PAGE_SIZE}")
        params: dict[str, str | int] = {"per_page": per_page}
        if cursor is not None:
            params["cursor"] = cursor
        elif page is not None:
            params["page"] = page
        path = f"{project_path(project_id, team_id)}/llm-model-deployments"
        body, rate_limit, status_code = await self._get(path, token=token, params=params, endpoint="list")
        envelope = _validate(ListLLMModelDeploymentsResponse, body, status_code, rate_limit)
        listing = DeploymentPage(
            items=envelope.data.llm_model_deployments,
            has_next_page=envelope.pagination.has_next_page,
            cursor=envelope.pagination.cursor,
        )
        return ApiResult(listing, rate_limit)

    async def _get(
        self, path: str, *, token: str, endpoint: Endpoint, params: dict[str, str | int] | None = None
    ) -> tuple[Any, RateLimit, int]:
        started = time.monotonic()
        try:
            response = await self._http.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
        except httpx.TimeoutException as exc:
            self._observe(endpoint, None, started)
            raise APITimeoutError(f"Northflank did not answer {path} in time ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            self._observe(endpoint, None, started)
            raise APIConnectionError(f"could not reach Northflank for {path}: {type(exc).__name__}") from None
        self._observe(endpoint, response.status_code, started)

        rate_limit = RateLimit.from_headers(response.headers)
        if not response.is_success:
            raise _status_error(response, path, rate_limit)
        try:
            return response.json(), rate_limit, response.status_code
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InvalidResponseError(
                f"Northflank answered {path} with HTTP {response.status_code} but the body is not JSON: "
                f"{_snippet(response.text)}",
                status_code=response.status_code,
                rate_limit=rate_limit,
            ) from None

    def _observe(self, endpoint: Endpoint, status_code: int | None, started: float) -> None:
        if self._observer is not None:
            self._observer.request_finished(endpoint, status_code, time.monotonic() - started)


ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)


def _validate(model: type[ModelT], body: Any, status_code: int, rate_limit: RateLimit) -> ModelT:
    try:
        return model.model_validate(body)
    except pydantic.ValidationError as exc:
        raise InvalidResponseError(
            f"Northflank's response does not match the API contract: {summarize_validation_error(exc)}",
            status_code=status_code,
            rate_limit=rate_limit,
        ) from None


def summarize_validation_error(exc: pydantic.ValidationError, *, limit: int = 5) -> str:
    """``data.id: Field required; data.dns.base: String should match pattern ...`` (first few)."""
    parts = []
    for error in exc.errors()[:limit]:
        location = ".".join(str(part) for part in error["loc"]) or "body"
        parts.append(f"{location}: {error['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def _status_error(response: httpx.Response, path: str, rate_limit: RateLimit) -> Exception:
    error_id: str | None = None
    details: Any = None
    upstream_message: str | None = None
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message_value = error.get("message")
        upstream_message = message_value if isinstance(message_value, str) else None
        id_value = error.get("id")
        error_id = id_value if isinstance(id_value, str) else None
        details = error.get("details")
    if upstream_message is None:
        upstream_message = _snippet(response.text) or response.reason_phrase
    message = f"Northflank answered {path} with HTTP {response.status_code}: {_snippet(upstream_message)}"
    cls = error_class_for(response.status_code)
    return cls(message, status_code=response.status_code, rate_limit=rate_limit, error_id=error_id, details=details)


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ERROR_TEXT else text[: _MAX_ERROR_TEXT - 1] + "…"
