"""Writes to Northflank's LLM model deployments: create, update, delete, and the token's permissions.

Only constructed when the installation enables management (``--enable-management``); the read client
(:class:`~.client.NorthflankClient`) stays GET-only. Both share one request path
(:class:`~.client.ApiTransport`): the same token checks, Lease fence, deadline, typed errors,
redaction and rate-limit headers. It knows nothing of Kubernetes or kopf.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from .client import (
    DEFAULT_DEADLINE_SECONDS,
    DEFAULT_MAX_RESPONSE_BYTES,
    ApiTransport,
    RequestObserver,
    path_segment,
    project_path,
)
from .errors import InvalidResponseError, PermissionDeniedError
from .ratelimit import RateLimit

WriteAction = Literal["Create", "Update", "Delete"]


def ai_model_permission(action: WriteAction) -> str:
    """The permission a write needs, as Northflank names it (the clients' ``requiredPermissions``)."""
    return f"Project > AiModels > General > {action}"


@dataclass(frozen=True)
class Permissions:
    """What ``GET /v1/auth`` says a token may do."""

    granted: frozenset[str]
    #: The projects a token limited to chosen projects may touch (None: every project).
    projects: frozenset[str] | None = None

    def missing(self, action: WriteAction, project_id: str) -> str | None:
        """The permission (or project access) the token lacks for ``action`` on ``project_id``, or None."""
        needed = ai_model_permission(action)
        if needed not in self.granted:
            return needed
        if self.projects is not None and project_id not in self.projects:
            return f"{needed} (the token is limited to other projects than {project_id})"
        return None

    @classmethod
    def from_auth(cls, data: Any) -> Permissions:
        """From the ``data`` of ``GET /v1/auth``: the union of the org, team and project scopes."""
        if not isinstance(data, Mapping):
            raise ValueError("data is not an object")
        scopes = data.get("permissions")
        granted: set[str] = set()
        if isinstance(scopes, Mapping):
            for scope in ("orgScope", "teamScope", "projectScope"):
                granted.update(_strings(scopes.get(scope)))
        restrictions = data.get("projectRestrictions")
        projects: frozenset[str] | None = None
        if isinstance(restrictions, Mapping) and restrictions.get("enabled") is True:
            projects = frozenset(_strings(restrictions.get("projects")))
        return cls(frozenset(granted), projects)


def _strings(value: Any) -> Iterable[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _token_key(token: str) -> str:
    # The cache never holds the token itself, only a digest of it.
    return hashlib.sha256(token.encode()).hexdigest()


class NorthflankWriter:
    """Create, update and delete LLM model deployments; read a token's permissions (cached)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_seconds: float = 10.0,
        deadline_seconds: float = DEFAULT_DEADLINE_SECONDS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: RequestObserver | None = None,
        may_send: Callable[[], bool] | None = None,
    ) -> None:
        self._api = ApiTransport(
            base_url,
            timeout_seconds=timeout_seconds,
            deadline_seconds=deadline_seconds,
            max_response_bytes=max_response_bytes,
            transport=transport,
            observer=observer,
            may_send=may_send,
        )
        self._permissions: dict[str, Permissions] = {}

    async def aclose(self) -> None:
        await self._api.aclose()

    async def __aenter__(self) -> NorthflankWriter:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    def cached_permissions(self, token: str) -> Permissions | None:
        return self._permissions.get(_token_key(token))

    def forget_permissions(self, token: str) -> None:
        self._permissions.pop(_token_key(token), None)

    async def permissions(self, token: str) -> tuple[Permissions, RateLimit | None]:
        """``GET /v1/auth``, once per token: later calls answer from the cache (no rate limit then)
        until a write answers 403 or :meth:`forget_permissions` is called."""
        cached = self.cached_permissions(token)
        if cached is not None:
            return cached, None
        body, rate_limit, status_code = await self._api.request("GET", "/v1/auth", token=token, endpoint="auth")
        try:
            permissions = Permissions.from_auth(body.get("data") if isinstance(body, Mapping) else None)
        except ValueError as exc:
            raise InvalidResponseError(
                f"Northflank's answer to /v1/auth does not match the API contract: {exc}",
                status_code=status_code,
                rate_limit=rate_limit,
            ) from None
        self._permissions[_token_key(token)] = permissions
        return permissions, rate_limit

    async def create_llm_model_deployment(
        self, project_id: str, body: Mapping[str, Any], *, token: str, team_id: str | None = None
    ) -> RateLimit:
        """``POST /v1/projects/{projectId}/llm-model-deployments``. The answer's body is undocumented
        and not read: a GET says what was created."""
        path = f"{project_path(project_id, team_id)}/llm-model-deployments"
        return await self._write("POST", path, token, "create", body)

    async def update_llm_model_deployment(
        self, project_id: str, deployment_id: str, body: Mapping[str, Any], *, token: str, team_id: str | None = None
    ) -> RateLimit:
        """``POST /v1/projects/{projectId}/llm-model-deployments/{id}``; a GET says what became of it."""
        return await self._write(
            "POST", self._deployment_path(project_id, deployment_id, team_id), token, "update", body
        )

    async def delete_llm_model_deployment(
        self, project_id: str, deployment_id: str, *, token: str, team_id: str | None = None
    ) -> RateLimit:
        """``DELETE /v1/projects/{projectId}/llm-model-deployments/{id}``; GET answers 404 once it is gone."""
        return await self._write("DELETE", self._deployment_path(project_id, deployment_id, team_id), token, "delete")

    @staticmethod
    def _deployment_path(project_id: str, deployment_id: str, team_id: str | None) -> str:
        return (
            f"{project_path(project_id, team_id)}/llm-model-deployments/"
            f"{path_segment(deployment_id, what='llmModelDeploymentId')}"
        )

    async def _write(
        self,
        method: Literal["POST", "DELETE"],
        path: str,
        token: str,
        endpoint: str,
        body: Mapping[str, Any] | None = None,
    ) -> RateLimit:
        try:
            _, rate_limit, _ = await self._api.request(
                method, path, token=token, endpoint=endpoint, json_body=body, read_body=False
            )
        except PermissionDeniedError:
            # The token's role may have changed: ask /v1/auth again before the next write.
            self.forget_permissions(token)
            raise
        return rate_limit
