"""A small synchronous client for the simulator's control API, for tests and demos.

Every method maps to one route documented in :mod:`northflank_api_simulator.control_api` and raises
:class:`SimulatorControlError` when the simulator refuses the call, so a mistake in a test's setup
fails right there instead of showing up later as a puzzling assertion.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Literal, Self
from urllib.parse import quote

import httpx

_UNSET: Final = object()


class SimulatorControlError(RuntimeError):
    """The control API answered with a non-2xx status."""

    def __init__(self, method: str, path: str, status_code: int, body: str) -> None:
        super().__init__(f"{method} {path} -> {status_code}: {body}")
        self.status_code = status_code
        self.body = body


def _segment(value: str) -> str:
    return quote(value, safe="")


class SimulatorControl:
    """Drive a running simulator: tokens, projects, deployments, scripts, faults, rate limit, log."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url + "/_simulator", timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        response = self._http.request(method, path, json=body)
        if not response.is_success:
            raise SimulatorControlError(method, path, response.status_code, response.text)
        return response.json()

    def wait_healthy(self, timeout: float = 10.0) -> None:
        """Poll ``/healthz`` until it answers 200; :class:`TimeoutError` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._http.get("/healthz").status_code == 200:
                    return
                problem = "not healthy yet"
            except httpx.TransportError as error:
                problem = repr(error)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"simulator at {self.base_url} not healthy after {timeout}s: {problem}")
            time.sleep(0.05)

    def reset(self) -> None:
        """Back to the start-up state: no faults, scripts, log or spent budget."""
        self._call("POST", "/reset")

    # Tokens and projects

    def add_token(
        self,
        token: str,
        *,
        team_id: str | None = None,
        team_ids: Sequence[str] | None = None,
        scope: Literal["team", "org"] = "team",
        projects: Iterable[str] | None = None,
        permissions: Iterable[str] | None = None,
    ) -> str:
        """Register a token: ``scope="team"`` needs ``team_id``, ``scope="org"`` needs ``team_ids``.

        ``projects`` restricts the token to those projects (403 elsewhere); ``permissions`` to those role
        permissions (default: every ``Project > AiModels > General > ...`` permission). Returns the token's public id
        (what :meth:`stats` reports instead of the token).
        """
        body: dict[str, Any] = {"scope": scope}
        if team_id is not None:
            body["teamId"] = team_id
        if team_ids is not None:
            body["teamIds"] = list(team_ids)
        if projects is not None:
            body["projects"] = list(projects)
        if permissions is not None:
            body["permissions"] = list(permissions)
        token_id: str = self._call("PUT", f"/tokens/{_segment(token)}", body)["id"]
        return token_id

    def revoke_token(self, token: str) -> None:
        """The token gets 401 from now on."""
        self._call("DELETE", f"/tokens/{_segment(token)}")

    def put_project(self, project_id: str, *, team_id: str) -> None:
        """Create the project in ``team_id``, or move it there."""
        self._call("PUT", f"/projects/{_segment(project_id)}", {"teamId": team_id})

    # Deployments

    def _deployment_path(self, project_id: str, deployment_id: str) -> str:
        return f"/projects/{_segment(project_id)}/deployments/{_segment(deployment_id)}"

    def put_deployment(self, project_id: str, deployment_id: str, **fields: Any) -> dict[str, Any]:
        """Create or replace a deployment; ``fields`` are top-level JSON keys (camelCase), the rest
        gets defaults. Returns the full object as the API will serve it."""
        result: dict[str, Any] = self._call("PUT", self._deployment_path(project_id, deployment_id), fields)
        return result

    def patch_deployment(self, project_id: str, deployment_id: str, **fields: Any) -> dict[str, Any]:
        """Shallow-merge top-level fields (e.g. ``status="running"``); returns the full object."""
        result: dict[str, Any] = self._call("PATCH", self._deployment_path(project_id, deployment_id), fields)
        return result

    def delete_deployment(self, project_id: str, deployment_id: str) -> None:
        """Remove it: the API answers 404 for it from now on."""
        self._call("DELETE", self._deployment_path(project_id, deployment_id))

    def get_deployment(self, project_id: str, deployment_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", self._deployment_path(project_id, deployment_id))
        return result

    def run_script(self, project_id: str, deployment_id: str, steps: Sequence[Mapping[str, Any]]) -> None:
        """Apply timed changes in the background, e.g.
        ``[{"afterSeconds": 0.2, "status": "starting"}, {"afterSeconds": 0.3, "status": "running"}]``.

        A step has ``afterSeconds`` (counted from the previous step) and ``status``, ``patch`` (a
        shallow merge) or, last, ``"delete": True``. Replaces the deployment's running script.
        """
        path = self._deployment_path(project_id, deployment_id) + "/script"
        self._call("POST", path, {"steps": [dict(step) for step in steps]})

    def ui_update(self, project_id: str, deployment_id: str, **body: Any) -> dict[str, Any]:
        """Change a deployment as a person in Northflank's UI would: ``body`` is a public update request
        (``spec={"configuration": {...}}``, ``description=...``), applied without the public API."""
        path = self._deployment_path(project_id, deployment_id) + "/ui-update"
        result: dict[str, Any] = self._call("POST", path, body)
        return result

    def set_lifecycle(self, step_seconds: float, update_mode: Literal["merge", "replace"] = "merge") -> None:
        """Each lifecycle step of a public write (pending → provisioning → ...) takes ``step_seconds``."""
        self._call("PUT", "/lifecycle", {"stepSeconds": step_seconds, "updateMode": update_mode})

    # Faults

    def add_fault(
        self,
        *,
        status: int | None = None,
        json_body: object = _UNSET,
        body: str | None = None,
        method: str = "GET",
        path: str | None = None,
        project_id: str | None = None,
        deployment_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
        latency_seconds: float = 0.0,
        times: int | None = None,
        count_against_rate_limit: bool = True,
        deep_json_depth: int | None = None,
        huge_number_digits: int | None = None,
        fresh_values: bool = False,
        pad_bytes: int = 0,
        gzip: bool = False,
        drip_chunk_bytes: int | None = None,
        drip_interval_seconds: float = 1.0,
        hold: Literal["request", "answer"] | None = None,
    ) -> str:
        """Make matching ``/v1`` requests misbehave; returns the fault id.

        With ``status``, the simulator answers ``json_body`` (any JSON value, verbatim) or the raw text
        ``body`` instead of the API; with only ``latency_seconds`` it answers normally, late. ``path``
        is a regular expression searched in the request path; ``method="*"`` matches any method.
        ``times`` limits how many requests it applies to (``None``: until removed).

        Hostile bodies (all need ``status``): ``deep_json_depth`` serves ``{"data": [[[...]]]}``;
        ``huge_number_digits`` replaces each ``"__HUGE_NUMBER__"`` string in the body with a number
        that long; ``fresh_values`` replaces each ``__FRESH__`` with a value no other response had (a
        cursor that never repeats); ``pad_bytes`` appends that many spaces (valid JSON, generated while sending);
        ``gzip`` compresses the body (with ``pad_bytes``, a decompression bomb); ``drip_chunk_bytes``
        sends the body that many bytes at a time, ``drip_interval_seconds`` apart.
        """
        spec: dict[str, Any] = {
            "method": method,
            "latencySeconds": latency_seconds,
            "countAgainstRateLimit": count_against_rate_limit,
        }
        optional: dict[str, Any] = {
            "status": status,
            "body": body,
            "path": path,
            "projectId": project_id,
            "deploymentId": deployment_id,
            "headers": dict(headers) if headers is not None else None,
            "contentType": content_type,
            "times": times,
            "deepJsonDepth": deep_json_depth,
            "hugeNumberDigits": huge_number_digits,
            "freshValues": fresh_values or None,
            "padBytes": pad_bytes or None,
            "gzip": gzip or None,
            "hold": hold,
            "drip": (
                {"chunkBytes": drip_chunk_bytes, "intervalSeconds": drip_interval_seconds}
                if drip_chunk_bytes is not None
                else None
            ),
        }
        spec.update({key: value for key, value in optional.items() if value is not None})
        if json_body is not _UNSET:
            spec["json"] = json_body
        fault_id: str = self._call("POST", "/faults", spec)["id"]
        return fault_id

    def slow_project(
        self, project_id: str, *, bytes_per_second: float | None = None, first_byte_seconds: float = 0.0
    ) -> str:
        """Make every answer about ``project_id`` (GETs and listings, until the fault is removed) start
        ``first_byte_seconds`` late and/or trickle in at about ``bytes_per_second``; returns the fault id."""
        drip: dict[str, Any] = {}
        if bytes_per_second is not None:
            # Ten writes a second (at least a byte each): smooth enough, and cheap for the simulator.
            chunk = max(1, math.ceil(bytes_per_second / 10))
            drip = {"drip_chunk_bytes": chunk, "drip_interval_seconds": chunk / bytes_per_second}
        return self.add_fault(method="GET", project_id=project_id, latency_seconds=first_byte_seconds, **drip)

    def make_hostile(
        self,
        project_id: str,
        deployment_id: str,
        *,
        field: str = "description",
        text_bytes: int | None = None,
        depth: int | None = None,
        listing_only: bool = False,
    ) -> None:
        """Serve the deployment with a ``text_bytes`` long string, or objects nested ``depth`` deep, at
        the dotted ``field``; in listings only when ``listing_only`` (its single GET stays sound)."""
        body: dict[str, Any] = {"field": field, "listingOnly": listing_only}
        if text_bytes is not None:
            body["textBytes"] = text_bytes
        if depth is not None:
            body["depth"] = depth
        self._call("PUT", self._deployment_path(project_id, deployment_id) + "/hostile", body)

    def clear_hostile(self, project_id: str, deployment_id: str) -> None:
        self._call("DELETE", self._deployment_path(project_id, deployment_id) + "/hostile")

    def release_fault(self, fault_id: str) -> None:
        """Let the requests a ``hold`` fault keeps waiting go on."""
        self._call("POST", f"/faults/{_segment(fault_id)}/release")

    def held(self) -> list[dict[str, Any]]:
        """The requests ``hold`` faults keep waiting now: ``faultId``, ``method``, ``path``, ``stage``."""
        held: list[dict[str, Any]] = self._call("GET", "/held")["held"]
        return held

    def remove_fault(self, fault_id: str) -> None:
        self._call("DELETE", f"/faults/{_segment(fault_id)}")

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    # Request log and rate limit

    def requests(self, path_contains: str | None = None) -> list[dict[str, Any]]:
        """Logged ``/v1`` requests, oldest first, optionally only those whose path contains a string.

        Each has ``time``, ``method``, ``path``, ``query``, ``tokenKnown``, ``status`` and ``faultId``.
        """
        logged: list[dict[str, Any]] = self._call("GET", "/requests")["requests"]
        if path_contains is None:
            return logged
        return [entry for entry in logged if path_contains in entry["path"]]

    def clear_requests(self) -> None:
        self._call("DELETE", "/requests")

    def stats(self) -> list[dict[str, Any]]:
        """Counts of every ``/v1`` request since the last reset, never truncated like :meth:`requests`:
        rows ``{"tokenId", "route", "status", "count"}``, ``route`` one of get, list, create, update, delete,
        auth, other."""
        rows: list[dict[str, Any]] = self._call("GET", "/stats")["requests"]
        return rows

    def writes(self) -> list[dict[str, Any]]:
        """Every ``/v1`` request that is not a read since the simulator started (resets keep them): rows
        ``{"token", "method", "route", "status", "count"}``; ``token`` is ``"unknown"`` for a token the
        simulator does not know."""
        rows: list[dict[str, Any]] = self._call("GET", "/writes")["writes"]
        return rows

    def in_flight(self) -> int:
        """``/v1`` requests received and not yet answered in full (e.g. dripping bodies)."""
        count: int = self._call("GET", "/stats")["inFlight"]
        return count

    def clear_stats(self) -> None:
        self._call("DELETE", "/stats")

    def set_rate_limit(self, limit: int, window_seconds: float, retry_after_header: bool = False) -> None:
        """Give every token ``limit`` requests per ``window_seconds``; restarts all windows."""
        body = {"limit": limit, "windowSeconds": window_seconds, "retryAfterHeader": retry_after_header}
        self._call("PUT", "/rate-limit", body)

    def spend(self, token: str, requests: int) -> dict[str, Any]:
        """Someone else spends ``requests`` of the token's current window at once (never beyond its
        limit); returns ``{"spent", "remaining", "resetSeconds"}``."""
        result: dict[str, Any] = self._call("POST", f"/tokens/{_segment(token)}/spend", {"requests": requests})
        return result

    def start_spender(self, token: str, fraction: float) -> None:
        """Someone else spends ``fraction`` (0 < f <= 1) of each of the token's windows, evenly over it."""
        self._call("PUT", f"/tokens/{_segment(token)}/spender", {"fraction": fraction})

    def spender(self, token: str) -> dict[str, Any]:
        """``{"fraction", "spent"}``: the token's spender and how many requests it has spent."""
        result: dict[str, Any] = self._call("GET", f"/tokens/{_segment(token)}/spender")
        return result

    def stop_spender(self, token: str) -> None:
        self._call("DELETE", f"/tokens/{_segment(token)}/spender")

    def reset_rate_limit(self) -> None:
        """Give every token a fresh window with its full budget."""
        self._call("POST", "/rate-limit/reset")
