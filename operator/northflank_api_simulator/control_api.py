"""The control API: how tests and demos script the simulated Northflank.

It is unauthenticated, so bind the simulator to loopback (the default). JSON in and out; errors use the
same envelope as the Northflank routes. Camel-case keys throughout, like Northflank's own.

``POST /_simulator/reset``
    Forget everything (tokens, projects, deployments, scripts, faults, request log, rate-limit
    counters) and restore the start-up state from ``--token``, ``--rate-limit*`` and ``--seed``.
``PUT /_simulator/tokens/{token}``
    Register or re-scope a token: ``{"scope": "team", "teamId": "t"}`` or
    ``{"scope": "org", "teamIds": ["t1", "t2"]}``, optionally ``"projects": ["p1"]`` (allow-list).
    A re-scoped token keeps its rate-limit window. The answer adds the token's public ``"id"``
    (as ``GET /v1/auth`` reports it), which ``/_simulator/stats`` uses instead of the token.
``DELETE /_simulator/tokens/{token}``
    Revoke: the token gets 401 from then on. 404 if unknown.
``PUT /_simulator/projects/{projectId}``
    Create a project or move it to a team: ``{"teamId": "t"}``.
``PUT /_simulator/projects/{projectId}/deployments/{deploymentId}``
    Create or replace a deployment from a partial object; missing fields get realistic defaults
    (status ``pending``). Creates the project in ``default-team`` if needed. Returns the full object.
    Given values are stored verbatim, not checked against the contract, so a test can serve a status
    or field Northflank may add later.
``PATCH /_simulator/projects/{projectId}/deployments/{deploymentId}``
    Shallow-merge top-level fields, e.g. ``{"status": "running"}``; bumps ``updatedAt``, and a new
    ``spec`` gets a new ``deploymentConfiguration``. Returns the full object.
``GET`` / ``DELETE /_simulator/projects/{projectId}/deployments/{deploymentId}``
    Read or remove a deployment (removal also stops its script). 404 if unknown.
``POST /_simulator/projects/{projectId}/deployments/{deploymentId}/script``
    ``{"steps": [{"afterSeconds": 2, "status": "provisioning"}, {"afterSeconds": 3, "patch": {...}},
    {"afterSeconds": 1, "delete": true}]}``: applied in the background, each delay counted from the
    previous step. Replaces the deployment's running script. Answers 202.
``PUT /_simulator/projects/{projectId}/deployments/{deploymentId}/hostile``
    Serve the deployment with a hostile value at a dotted ``field`` (default ``description``):
    ``{"textBytes": 10485760}`` (a string that long) or ``{"field": "spec.extra", "depth": 10000}``
    (objects nested that deep, written as text), in listings and, unless ``"listingOnly": true``, in
    its single GET. ``DELETE`` the same path to serve it normally again (404 if it was not hostile).
    Removing the deployment removes this too.
``POST /_simulator/projects/{projectId}/deployments/{deploymentId}/ui-update``
    Change a deployment the way a person in Northflank's UI would, without the public API (no rate
    limit, no request log): the body is a public update request (validated the same way) and the
    deployment rolls out the same way (new deployment configuration, ``starting``, ``running``).
``GET`` / ``PUT /_simulator/lifecycle``
    ``{"stepSeconds": 1.0, "updateMode": "merge"}``: how long each lifecycle step of a write takes,
    and whether an update's ``spec.configuration`` is merged into the stored one or replaces it.
``POST /_simulator/faults``
    Add a fault (see :class:`~northflank_api_simulator.models.FaultSpec`), e.g.
    ``{"status": 503, "body": "<html>bad gateway</html>", "times": 2}``; answers 201 ``{"id": "fault-1"}``.
    Any status (100-599) and any ``headers`` (e.g. ``{"x-ratelimit-reset": "1e9"}``, ``Retry-After``)
    can be served. Hostile bodies: ``"deepJsonDepth": 100000`` (``{"data": [[[...]]]}``),
    ``"hugeNumberDigits": 40`` (each ``"__HUGE_NUMBER__"`` string in ``json``/``body`` becomes a
    40-digit number), ``"freshValues": true`` (each ``__FRESH__`` becomes a value no other response had,
    e.g. a cursor of a listing that never ends), ``"padBytes": 52428800`` (trailing spaces, generated while sending),
    ``"gzip": true`` (``Content-Encoding: gzip``; with ``padBytes`` a decompression bomb) and
    ``"drip": {"chunkBytes": 1, "intervalSeconds": 2}`` (a slow body after prompt headers).
    Without ``status``, ``latencySeconds``, ``padBytes``, ``gzip`` and ``drip`` apply to the API's own
    answer: ``{"projectId": "p", "latencySeconds": 5, "drip": {"chunkBytes": 10, "intervalSeconds": 1}}``
    makes every answer about project ``p`` (GETs and listings) start late and trickle in.
``DELETE /_simulator/faults`` and ``DELETE /_simulator/faults/{faultId}``
    Remove all faults, or one (404 if unknown or already used up); requests they hold go on.
``POST /_simulator/faults/{faultId}/release`` / ``GET /_simulator/held``
    Let the requests a ``"hold": "request"`` or ``"hold": "answer"`` fault keeps waiting go on; list the
    requests held now: ``{"held": [{"faultId", "method", "path", "stage"}]}`` (a crash test kills the
    client while one is held: a held request whose client hung up is dropped, never processed).
``GET /_simulator/requests`` / ``DELETE /_simulator/requests``
    The ``/v1`` request log, oldest first: ``{"requests": [{"time", "method", "path", "query",
    "tokenKnown", "status", "faultId"}]}``; or clear it.
``GET /_simulator/stats`` / ``DELETE /_simulator/stats``
    Counters of every ``/v1`` request since the last reset, never truncated (unlike the log):
    ``{"requests": [{"tokenId": "token-1", "route": "get", "status": 200, "count": 42}]}`` with
    ``route`` one of ``get``, ``list``, ``create``, ``update``, ``delete``, ``auth``, ``other`` and
    ``tokenId`` ``"unknown"`` for unknown
    tokens (the token itself is never shown), and ``inFlight``: requests received but not yet answered
    in full (a dripping body counts until its last byte); or reset the counters.
``GET /_simulator/writes``
    Every ``/v1`` request that is not a read (POST, PUT, PATCH, DELETE) since the simulator started,
    never reset (not by ``/_simulator/reset`` either): ``{"writes": [{"token", "method", "route",
    "status", "count"}]}``. Unlike the stats it names the token, so that a test suite can check at
    the end which of its tokens wrote; a token the simulator does not know is ``"unknown"``.
``PUT /_simulator/rate-limit``
    ``{"limit": 5, "windowSeconds": 2, "retryAfterHeader": false}``; also restarts every window.
``POST /_simulator/rate-limit/reset``
    Restart every token's window with a full budget.
``POST /_simulator/tokens/{token}/spend``
    ``{"requests": 300}``: someone else spends that many requests of the token's current window at once
    (never beyond its limit); answers ``{"spent", "remaining", "resetSeconds"}``. 404 for an unknown token.
``PUT /_simulator/tokens/{token}/spender``
    ``{"fraction": 0.7}``: someone else spends 70 % of each of the token's windows, evenly over the
    window, in the background (in a window it joins late, from then on). Replaces the token's spender.
``GET`` / ``DELETE /_simulator/tokens/{token}/spender``
    ``{"fraction", "spent"}`` (requests spent so far); or stop it. 404 if the token has none.
    Neither spending route is a ``/v1`` request: they are not in the request log or the stats.
``GET /_simulator/healthz``
    200 ``{"status": "ok"}`` once the server is serving.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from northflank_api_simulator.models import (
    FaultSpec,
    HostileItem,
    Lifecycle,
    ProjectBody,
    RateLimitConfig,
    Script,
    SpendBody,
    SpenderSpec,
    TokenGrant,
    UpdateDeploymentRequest,
    request_json,
)
from northflank_api_simulator.state import DeploymentDeletingError, SimulatorState
from northflank_api_simulator.web_support import STATE, ApiError, read_json_object, read_model

PREFIX = "/_simulator"

routes = web.RouteTableDef()

_DEPLOYMENT = PREFIX + "/projects/{projectId}/deployments/{deploymentId}"


def _state(request: web.Request) -> SimulatorState:
    return request.app[STATE]


def _deployment_address(request: web.Request) -> tuple[str, str]:
    return request.match_info["projectId"], request.match_info["deploymentId"]


def _ok() -> web.Response:
    return web.json_response({})


def _not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found.")


@routes.get(PREFIX + "/healthz", allow_head=False)
async def _healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.post(PREFIX + "/reset")
async def _reset(request: web.Request) -> web.Response:
    _state(request).reset()
    return _ok()


@routes.put(PREFIX + "/tokens/{token}")
async def _put_token(request: web.Request) -> web.Response:
    grant = await read_model(request, TokenGrant)
    record = _state(request).put_token(request.match_info["token"], grant)
    return web.json_response({**grant.model_dump(exclude_none=True), "id": record.auth_id})


@routes.delete(PREFIX + "/tokens/{token}")
async def _revoke_token(request: web.Request) -> web.Response:
    if not _state(request).revoke_token(request.match_info["token"]):
        raise _not_found("Token")
    return _ok()


@routes.put(PREFIX + "/projects/{projectId}")
async def _put_project(request: web.Request) -> web.Response:
    body = await read_model(request, ProjectBody)
    project = _state(request).put_project(request.match_info["projectId"], body.team_id)
    return web.json_response({"id": project.id, "teamId": project.team_id})


@routes.put(_DEPLOYMENT)
async def _put_deployment(request: web.Request) -> web.Response:
    fields = await read_json_object(request)
    try:
        deployment = _state(request).put_deployment(*_deployment_address(request), fields)
    except ValueError as error:
        raise ApiError(400, str(error)) from error
    return web.json_response(deployment)


@routes.patch(_DEPLOYMENT)
async def _patch_deployment(request: web.Request) -> web.Response:
    changes = await read_json_object(request)
    try:
        deployment = _state(request).patch_deployment(*_deployment_address(request), changes)
    except ValueError as error:
        raise ApiError(400, str(error)) from error
    if deployment is None:
        raise _not_found("Deployment")
    return web.json_response(deployment)


@routes.get(_DEPLOYMENT, allow_head=False)
async def _get_deployment(request: web.Request) -> web.Response:
    deployment = _state(request).deployment(*_deployment_address(request))
    if deployment is None:
        raise _not_found("Deployment")
    return web.json_response(deployment)


@routes.delete(_DEPLOYMENT)
async def _delete_deployment(request: web.Request) -> web.Response:
    if not _state(request).delete_deployment(*_deployment_address(request)):
        raise _not_found("Deployment")
    return _ok()


@routes.post(_DEPLOYMENT + "/script")
async def _run_script(request: web.Request) -> web.Response:
    script = await read_model(request, Script)
    state = _state(request)
    project_id, deployment_id = _deployment_address(request)
    if state.deployment(project_id, deployment_id) is None:
        raise _not_found("Deployment")
    state.start_script(project_id, deployment_id, script.steps)
    return web.json_response({"steps": len(script.steps)}, status=202)


@routes.post(PREFIX + "/faults")
async def _add_fault(request: web.Request) -> web.Response:
    spec = await read_model(request, FaultSpec)
    return web.json_response({"id": _state(request).faults.add(spec)}, status=201)


@routes.delete(PREFIX + "/faults")
async def _clear_faults(request: web.Request) -> web.Response:
    _state(request).faults.clear()
    return _ok()


@routes.delete(PREFIX + "/faults/{faultId}")
async def _remove_fault(request: web.Request) -> web.Response:
    if not _state(request).faults.remove(request.match_info["faultId"]):
        raise _not_found("Fault")
    return _ok()


@routes.post(PREFIX + "/faults/{faultId}/release")
async def _release_fault(request: web.Request) -> web.Response:
    if not _state(request).faults.release(request.match_info["faultId"]):
        raise _not_found("Fault")
    return _ok()


@routes.get(PREFIX + "/held", allow_head=False)
async def _held(request: web.Request) -> web.Response:
    held = [
        {"faultId": h.fault_id, "method": h.method, "path": h.path, "stage": h.stage}
        for h in _state(request).faults.held()
    ]
    return web.json_response({"held": held})


@routes.get(PREFIX + "/requests", allow_head=False)
async def _requests(request: web.Request) -> web.Response:
    logged: list[dict[str, Any]] = list(_state(request).request_log)
    return web.json_response({"requests": logged})


@routes.delete(PREFIX + "/requests")
async def _clear_requests(request: web.Request) -> web.Response:
    _state(request).request_log.clear()
    return _ok()


@routes.get(PREFIX + "/stats", allow_head=False)
async def _stats(request: web.Request) -> web.Response:
    state = _state(request)
    return web.json_response({"requests": state.request_stats(), "inFlight": state.in_flight})


@routes.delete(PREFIX + "/stats")
async def _clear_stats(request: web.Request) -> web.Response:
    _state(request).request_counts.clear()
    return _ok()


@routes.get(PREFIX + "/writes", allow_head=False)
async def _writes(request: web.Request) -> web.Response:
    return web.json_response({"writes": _state(request).write_stats()})


@routes.put(PREFIX + "/rate-limit")
async def _set_rate_limit(request: web.Request) -> web.Response:
    config = await read_model(request, RateLimitConfig)
    _state(request).rate_limiter.configure(config)
    return web.json_response(config.model_dump())


@routes.post(PREFIX + "/rate-limit/reset")
async def _reset_rate_limit(request: web.Request) -> web.Response:
    _state(request).rate_limiter.reset()
    return _ok()


@routes.put(_DEPLOYMENT + "/hostile")
async def _put_hostile(request: web.Request) -> web.Response:
    item = await read_model(request, HostileItem)
    state = _state(request)
    address = _deployment_address(request)
    if state.deployment(*address) is None:
        raise _not_found("Deployment")
    state.hostile_items[address] = item
    return web.json_response(item.model_dump())


@routes.delete(_DEPLOYMENT + "/hostile")
async def _delete_hostile(request: web.Request) -> web.Response:
    if _state(request).hostile_items.pop(_deployment_address(request), None) is None:
        raise _not_found("Hostile item")
    return _ok()


def _known_token(request: web.Request) -> str:
    token = request.match_info["token"]
    if _state(request).token(token) is None:
        raise _not_found("Token")
    return token


@routes.post(PREFIX + "/tokens/{token}/spend")
async def _spend(request: web.Request) -> web.Response:
    body = await read_model(request, SpendBody)
    spent, status = _state(request).rate_limiter.spend(_known_token(request), body.requests)
    return web.json_response({"spent": spent, "remaining": status.remaining, "resetSeconds": status.reset_seconds})


@routes.put(PREFIX + "/tokens/{token}/spender")
async def _put_spender(request: web.Request) -> web.Response:
    spec = await read_model(request, SpenderSpec)
    spender = _state(request).start_spender(_known_token(request), spec.fraction)
    return web.json_response({"fraction": spender.fraction, "spent": spender.spent})


@routes.get(PREFIX + "/tokens/{token}/spender", allow_head=False)
async def _get_spender(request: web.Request) -> web.Response:
    spender = _state(request).spender(request.match_info["token"])
    if spender is None:
        raise _not_found("Spender")
    return web.json_response({"fraction": spender.fraction, "spent": spender.spent})


@routes.delete(PREFIX + "/tokens/{token}/spender")
async def _delete_spender(request: web.Request) -> web.Response:
    if not _state(request).stop_spender(request.match_info["token"]):
        raise _not_found("Spender")
    return _ok()


@routes.post(_DEPLOYMENT + "/ui-update")
async def _ui_update(request: web.Request) -> web.Response:
    body = request_json(await read_model(request, UpdateDeploymentRequest))
    try:
        deployment = _state(request).update_deployment(*_deployment_address(request), body)
    except DeploymentDeletingError as error:
        raise ApiError(409, "The deployment is being deleted.") from error
    if deployment is None:
        raise _not_found("Deployment")
    return web.json_response(deployment)


@routes.get(PREFIX + "/lifecycle", allow_head=False)
async def _get_lifecycle(request: web.Request) -> web.Response:
    return web.json_response(_state(request).lifecycle.model_dump())


@routes.put(PREFIX + "/lifecycle")
async def _set_lifecycle(request: web.Request) -> web.Response:
    lifecycle = await read_model(request, Lifecycle)
    _state(request).lifecycle = lifecycle
    return web.json_response(lifecycle.model_dump())
