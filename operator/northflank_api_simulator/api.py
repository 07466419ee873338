"""The Northflank routes, served as Northflank documents them.

Routes (JSON, ``Authorization: Bearer <token>``)::

    GET /v1/auth
    GET /v1/projects/{projectId}/llm-model-deployments?per_page=&page=&cursor=
    GET /v1/projects/{projectId}/llm-model-deployments/{llmModelDeploymentId}
    GET /v1/teams/{teamId}/projects/{projectId}/llm-model-deployments?per_page=&page=&cursor=
    GET /v1/teams/{teamId}/projects/{projectId}/llm-model-deployments/{llmModelDeploymentId}
    POST /v1/projects/{projectId}/llm-model-deployments                              (create)
    POST /v1/projects/{projectId}/llm-model-deployments/{llmModelDeploymentId}       (update)
    DELETE /v1/projects/{projectId}/llm-model-deployments/{llmModelDeploymentId}
    (and the three write routes' /v1/teams/{teamId}/... twins)

Every ``/v1`` request goes through, in order: an injected fault (which may delay it and may answer
instead of the API), authentication (401, no rate-limit headers because the caller is unknown), the
per-token rate limit (429), then routing and scope checks (403/404/400). Every answer to a known token
carries ``x-ratelimit-limit``, ``x-ratelimit-remaining`` and ``x-ratelimit-reset``, and every request
is written to the request log.

Writes validate their body as the official clients type it (plus the documented name and port
constraints: 400 otherwise), need the token's ``Project > AiModels > General > Create/Update/Delete``
permission (403), answer ``{"data": <the object>}`` (``{"data": {}}`` for a delete), and move the
deployment through its lifecycle on the simulator's clock (see ``SimulatorState.create_deployment``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import zlib
from collections.abc import Iterable, Iterator
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

from northflank_api_simulator.hostile import listing_response, single_response
from northflank_api_simulator.models import (
    AI_MODEL_PERMISSIONS,
    CreateDeploymentRequest,
    FaultSpec,
    UpdateDeploymentRequest,
    request_json,
)
from northflank_api_simulator.pagination import (
    PER_PAGE_DEFAULT,
    PER_PAGE_MAX,
    InvalidCursorError,
    encode_cursor,
    select_page,
)
from northflank_api_simulator.state import (
    DeploymentDeletingError,
    DeploymentExistsError,
    HeldRequest,
    Project,
    SimulatorState,
    TokenRecord,
)
from northflank_api_simulator.web_support import STATE, ApiError, error_response, read_model, response_for_exception

logger = logging.getLogger(__name__)

SIMULATED_ORG_ID = "sim-org"
"""Entity id ``GET /v1/auth`` reports for organisation-scoped tokens."""

_TOKEN: Final = web.RequestKey("token_record", TokenRecord)

_PROJECT_ROUTE = "/projects/{projectId}/llm-model-deployments"
_DEPLOYMENT_ROUTE = _PROJECT_ROUTE + "/{llmModelDeploymentId}"


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/auth", _get_auth, allow_head=False)
    for prefix in ("/v1", "/v1/teams/{teamId}"):
        app.router.add_get(prefix + _PROJECT_ROUTE, _list_deployments, allow_head=False)
        app.router.add_get(prefix + _DEPLOYMENT_ROUTE, _get_deployment, allow_head=False)
        app.router.add_post(prefix + _PROJECT_ROUTE, _create_deployment)
        app.router.add_post(prefix + _DEPLOYMENT_ROUTE, _update_deployment)
        app.router.add_delete(prefix + _DEPLOYMENT_ROUTE, _delete_deployment)


@web.middleware
async def northflank_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply faults, authentication, the rate limit and the request log to ``/v1`` requests."""
    if request.path != "/v1" and not request.path.startswith("/v1/"):
        return await handler(request)
    state = request.app[STATE]
    state.in_flight += 1
    try:
        return await _serve_v1(request, handler, state)
    finally:
        state.in_flight -= 1


async def _serve_v1(request: web.Request, handler: Handler, state: SimulatorState) -> web.StreamResponse:
    token = _bearer_token(request)
    record = state.token(token) if token is not None else None
    fault = state.faults.take(
        request.method,
        request.path,
        request.match_info.get("projectId"),
        request.match_info.get("llmModelDeploymentId"),
    )
    if fault is not None and fault.spec.latency_seconds > 0:
        await asyncio.sleep(fault.spec.latency_seconds)
    if fault is not None and fault.spec.hold == "request" and await _hold(request, state, fault.id, "request"):
        # The client hung up while its request was held: it is never processed (a crash before sending).
        dropped = web.Response(status=499)
        state.record_request(method=request.method, path=request.path, query=dict(request.query),
                             token_known=record is not None, status=499, fault_id=fault.id,
                             token_id=record.auth_id if record is not None else None,
                             route=_route_kind(request), token=token if record is not None else None)  # fmt: skip
        return dropped
    if fault is not None and fault.spec.status is not None:
        charge_to = token if record is not None and fault.spec.count_against_rate_limit else None
        canned = _fault_response(state, fault.spec, fault.spec.status, charge_to)
        response: web.StreamResponse = canned
        if fault.spec.streamed:
            response = await _stream_fault_body(request, fault.spec, canned)
    else:
        response = await _answer(request, handler, state, token, record)
        if fault is not None and fault.spec.streamed and isinstance(response, web.Response):
            response = await _stream_fault_body(request, fault.spec, response)  # a slow project
        if fault is not None and fault.spec.hold == "answer":
            await _hold(request, state, fault.id, "answer")  # processed: the answer waits (a crash after sending)
    state.record_request(
        method=request.method,
        path=request.path,
        query=dict(request.query),
        token_known=record is not None,
        status=response.status,
        fault_id=fault.id if fault is not None else None,
        token_id=record.auth_id if record is not None else None,
        route=_route_kind(request),
        token=token if record is not None else None,
    )
    return response


async def _hold(request: web.Request, state: SimulatorState, fault_id: str, stage: str) -> bool:
    """Hold ``request`` until its fault is released; True when the client hung up meanwhile."""

    def client_gone() -> bool:
        transport = request.transport
        return transport is None or transport.is_closing()

    return await state.faults.hold(fault_id, HeldRequest(fault_id, request.method, request.path, stage), client_gone)


_WRITE_KINDS: Final = {("POST", False): "create", ("POST", True): "update", ("DELETE", True): "delete"}


def _route_kind(request: web.Request) -> str:
    """``get``, ``list``, ``create``, ``update``, ``delete``, ``auth`` or ``other``: how the request
    log's counters group requests."""
    if "projectId" in request.match_info and request.method in ("POST", "DELETE"):
        return _WRITE_KINDS.get((request.method, "llmModelDeploymentId" in request.match_info), "other")
    if "llmModelDeploymentId" in request.match_info:
        return "get"
    if "projectId" in request.match_info:
        return "list"
    return "auth" if request.path == "/v1/auth" else "other"


def _bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


_HUGE_NUMBER_PLACEHOLDER = b'"__HUGE_NUMBER__"'
_FRESH_PLACEHOLDER = b"__FRESH__"
_fresh_values = itertools.count(1)
_STREAM_CHUNK = 64 * 1024


def _fault_response(state: SimulatorState, spec: FaultSpec, status: int, charge_to: str | None) -> web.Response:
    headers: dict[str, str] = {}
    if charge_to is not None:
        headers.update(state.rate_limiter.charge(charge_to).headers())
    if spec.deep_json_depth is not None:
        depth = spec.deep_json_depth
        body = b'{"data": ' + b"[" * depth + b"]" * depth + b"}"
        response = web.Response(body=body, status=status, headers=headers, content_type="application/json")
    elif spec.has_json_body:
        response = web.json_response(spec.json_body, status=status, headers=headers)
    else:
        headers["Content-Type"] = "text/plain; charset=utf-8"
        response = web.Response(body=(spec.body or "").encode(), status=status, headers=headers)
    if spec.huge_number_digits is not None and isinstance(response.body, bytes):
        response.body = response.body.replace(_HUGE_NUMBER_PLACEHOLDER, b"9" * spec.huge_number_digits)
    if spec.fresh_values and isinstance(response.body, bytes):
        response.body = response.body.replace(_FRESH_PLACEHOLDER, f"fresh-{next(_fresh_values)}".encode())
    if spec.content_type is not None:
        response.headers["Content-Type"] = spec.content_type
    response.headers.update(spec.headers)
    return response


def _body_pieces(prefix: bytes, pad_bytes: int) -> Iterator[bytes]:
    yield prefix
    spaces = b" " * _STREAM_CHUNK
    while pad_bytes > 0:
        piece = spaces[: min(pad_bytes, _STREAM_CHUNK)]
        pad_bytes -= len(piece)
        yield piece


def _gzipped(pieces: Iterable[bytes]) -> Iterator[bytes]:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: gzip framing
    for piece in pieces:
        out = compressor.compress(piece)
        if out:
            yield out
    yield compressor.flush()


def _in_chunks(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    for piece in pieces:
        for start in range(0, len(piece), size):
            yield piece[start : start + size]


async def _stream_fault_body(request: web.Request, spec: FaultSpec, canned: web.Response) -> web.StreamResponse:
    """Send ``canned`` (status, headers, body) as a stream: padded, gzip-compressed and/or dripped.

    Everything is generated as it is written, so a client that stops reading (or hangs up) stops
    the simulator too, and a gigabyte body costs no memory here.
    """
    response = web.StreamResponse(status=canned.status, headers=canned.headers)
    response.headers.pop("Content-Length", None)
    prefix = canned.body if isinstance(canned.body, bytes) else b""
    pieces: Iterable[bytes] = _body_pieces(prefix, spec.pad_bytes)
    if spec.gzip:
        response.headers["Content-Encoding"] = "gzip"
        pieces = _gzipped(pieces)
    if spec.drip is not None:
        pieces = _in_chunks(pieces, spec.drip.chunk_bytes)
    try:
        await response.prepare(request)
        first = True
        for piece in pieces:
            if spec.drip is not None and not first:
                await asyncio.sleep(spec.drip.interval_seconds)
            first = False
            if piece:
                await response.write(piece)
        await response.write_eof()
    except (ConnectionError, asyncio.CancelledError) as error:
        logger.info("client hung up during a streamed fault body (%s)", type(error).__name__)
        if isinstance(error, asyncio.CancelledError):
            raise
    return response


async def _answer(
    request: web.Request,
    handler: Handler,
    state: SimulatorState,
    token: str | None,
    record: TokenRecord | None,
) -> web.StreamResponse:
    if token is None or record is None:
        message = "Invalid API token." if token else "Missing API token: send 'Authorization: Bearer <token>'."
        return error_response(401, message)
    limit = state.rate_limiter.charge(token)
    if not limit.allowed:
        headers = limit.headers()
        if state.rate_limiter.config.retry_after_header:
            headers["Retry-After"] = str(limit.reset_seconds)
        message = f"Rate limit exceeded: try again in {limit.reset_seconds} seconds."
        return error_response(429, message, headers=headers)
    request[_TOKEN] = record
    try:
        response = await handler(request)
    except (ApiError, web.HTTPException) as error:
        if isinstance(error, web.HTTPException) and error.status < 400:
            raise
        response = response_for_exception(error)
    except Exception:
        logger.exception("unexpected error serving %s %s", request.method, request.path)
        response = error_response(500, "Internal simulator error.")
    response.headers.update(limit.headers())
    return response


def _project(request: web.Request) -> Project:
    """The project the request names, after the token's team and project scope are checked."""
    grant = request[_TOKEN].grant
    project_id = request.match_info["projectId"]
    team_in_path = request.match_info.get("teamId")
    if team_in_path is None:
        if grant.team_id is None:
            raise ApiError(
                403,
                "This API token is scoped to an organisation: use the team-scoped route "
                f"/v1/teams/{{teamId}}/projects/{project_id}/... instead.",
            )
        team_id = grant.team_id
    elif team_in_path in grant.teams:
        team_id = team_in_path
    else:
        raise ApiError(403, f"This API token has no access to team {team_in_path}.")
    if not grant.allows_project(project_id):
        raise ApiError(403, f"This API token has no access to project {project_id}.")
    _require_permission(request)
    project = request.app[STATE].project(project_id)
    if project is None or project.team_id != team_id:
        raise ApiError(404, f"Project {project_id} not found.")
    return project


async def _get_auth(request: web.Request) -> web.Response:
    record = request[_TOKEN]
    grant = record.grant
    data: dict[str, Any] = {
        "tokenKind": "api",
        "id": record.auth_id,
        "entityId": grant.team_id if grant.team_id is not None else SIMULATED_ORG_ID,
        "entityType": grant.scope,
        "createdAt": record.created_at,
    }
    data.update(_auth_details(record))
    return web.json_response({"data": data})


async def _get_deployment(request: web.Request) -> web.Response:
    project = _project(request)
    deployment_id = request.match_info["llmModelDeploymentId"]
    deployment = request.app[STATE].deployment(project.id, deployment_id)
    if deployment is None:
        raise ApiError(404, f"LLM model deployment {deployment_id} not found.")
    hostile = request.app[STATE].hostile_items.get((project.id, deployment_id))
    if hostile is not None and not hostile.listing_only:
        return single_response(deployment, hostile)
    return web.json_response({"data": deployment})


async def _list_deployments(request: web.Request) -> web.Response:
    project = _project(request)
    per_page = _int_query(request, "per_page", PER_PAGE_DEFAULT, maximum=PER_PAGE_MAX)
    page_number = _int_query(request, "page", 1)
    cursor = request.query.get("cursor") or None
    deployments = request.app[STATE].deployments(project.id)
    try:
        page = select_page(
            [deployment["id"] for deployment in deployments], per_page=per_page, page=page_number, cursor=cursor
        )
    except InvalidCursorError as error:
        raise ApiError(400, "Invalid cursor.", {"cursor": cursor}) from error
    items = deployments[page.start : page.stop]
    pagination: dict[str, Any] = {"hasNextPage": page.has_next_page, "count": len(items)}
    if page.has_next_page:
        pagination["cursor"] = encode_cursor(items[-1]["id"])
    hostile = request.app[STATE].hostile_in(project.id)
    if hostile:
        return listing_response(items, hostile, pagination)
    return web.json_response({"data": {"llmModelDeployments": items}, "pagination": pagination})


def _int_query(request: web.Request, name: str, default: int, *, maximum: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    value = int(raw) if re.fullmatch(r"[0-9]{1,9}", raw) else 0
    if value < 1 or (maximum is not None and value > maximum):
        bounds = f"between 1 and {maximum}" if maximum is not None else "at least 1"
        raise ApiError(400, f"Query parameter {name} must be an integer {bounds}.", {name: raw})
    return value


# Token permissions and the write routes


def _auth_details(record: TokenRecord) -> dict[str, Any]:
    """The rest of ``GET /v1/auth`` as the Python client types it: ``entityUid``, ``permissions`` and,
    for a token limited to chosen projects, ``projectRestrictions``."""
    grant = record.grant
    details: dict[str, Any] = {
        "entityUid": f"uid-{grant.team_id or SIMULATED_ORG_ID}",
        "scope": "role",
        "permissions": {"orgScope": [], "teamScope": [], "projectScope": grant.granted_permissions()},
    }
    if grant.projects is not None:
        details["projectRestrictions"] = {"enabled": True, "projects": list(grant.projects), "restrictionMode": "in"}
    return details


def _require_permission(request: web.Request) -> None:
    """403 unless the token's role grants what the route needs (the clients' ``requiredPermissions``)."""
    if request.method == "GET":
        action = "Read"
    elif request.method == "DELETE":
        action = "Delete"
    else:
        action = "Update" if "llmModelDeploymentId" in request.match_info else "Create"
    permission = AI_MODEL_PERMISSIONS[action]
    if permission not in request[_TOKEN].grant.granted_permissions():
        raise ApiError(403, f"This API token lacks the permission {permission}.", {"permission": permission})


def _deployment_id(request: web.Request) -> str:
    return request.match_info["llmModelDeploymentId"]


async def _create_deployment(request: web.Request) -> web.Response:
    project = _project(request)
    body = request_json(await read_model(request, CreateDeploymentRequest))
    try:
        deployment = request.app[STATE].create_deployment(project.id, body, creator_id=request[_TOKEN].auth_id)
    except DeploymentExistsError as error:
        message = f"An LLM model deployment with the same derived identifier {error} already exists."
        raise ApiError(409, message, {"id": str(error)}) from error
    return web.json_response({"data": deployment})


async def _update_deployment(request: web.Request) -> web.Response:
    project = _project(request)
    body = request_json(await read_model(request, UpdateDeploymentRequest))
    deployment_id = _deployment_id(request)
    try:
        deployment = request.app[STATE].update_deployment(project.id, deployment_id, body)
    except DeploymentDeletingError as error:
        raise ApiError(409, f"LLM model deployment {deployment_id} is being deleted.") from error
    if deployment is None:
        raise ApiError(404, f"LLM model deployment {deployment_id} not found.")
    return web.json_response({"data": deployment})


async def _delete_deployment(request: web.Request) -> web.Response:
    project = _project(request)
    deployment_id = _deployment_id(request)
    if not request.app[STATE].request_delete(project.id, deployment_id):
        raise ApiError(404, f"LLM model deployment {deployment_id} not found.")
    return web.json_response({"data": {}})
