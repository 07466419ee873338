"""Pieces shared by the Northflank routes and the control routes.

Every error the simulator produces uses Northflank's error envelope (the shape Northflank's own API
overview shows and both official SDKs parse)::

    {"error": {"status": 404, "message": "...", "id": "<uuid>", "details": {...}}}
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any, Final, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from northflank_api_simulator.state import SimulatorState

STATE: Final = web.AppKey("simulator_state", SimulatorState)

ModelT = TypeVar("ModelT", bound=BaseModel)


class ApiError(Exception):
    """Raised by handlers to answer with the error envelope."""

    def __init__(self, status: int, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


def error_response(
    status: int,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    error: dict[str, Any] = {"status": status, "message": message, "id": str(uuid.uuid4())}
    if details is not None:
        error["details"] = dict(details)
    return web.json_response({"error": error}, status=status, headers=headers)


def response_for_exception(exception: ApiError | web.HTTPException) -> web.Response:
    """Turn a handler's :class:`ApiError`, or aiohttp's own 404/405/413, into the envelope."""
    if isinstance(exception, ApiError):
        return error_response(exception.status, exception.message, exception.details)
    headers = {"Allow": exception.headers["Allow"]} if "Allow" in exception.headers else None
    return error_response(exception.status, exception.reason, headers=headers)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; an empty body counts as ``{}``."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise ApiError(400, f"The request body is not valid JSON: {error}") from error
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


async def read_model(request: web.Request, model: type[ModelT]) -> ModelT:
    """Validate the request body against ``model``; failures become a 400 with pydantic's errors."""
    body = await read_json_object(request)
    try:
        return model.model_validate(body)
    except ValidationError as error:
        details = {"errors": json.loads(error.json(include_url=False, include_input=False))}
        raise ApiError(400, f"Invalid {model.__name__} payload.", details) from error
