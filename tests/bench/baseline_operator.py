"""The usual kopf design, as a baseline for ``make bench``: one ``@kopf.timer`` per resource.

Every tick GETs ``/v1/projects/{projectId}/llm-model-deployments/{id}`` and patches the status
(phase, dns, ports, a Ready condition, ``lastSyncTime = now``), as a typical operator does. A 429 is
logged and turned into :class:`kopf.TemporaryError` (kopf retries after a short delay): no shared budget
awareness. Not part of the product; run it as::

    kopf run --standalone -n NAMESPACE tests/bench/baseline_operator.py

Environment: ``NORTHFLANK_API_BASE_URL``, ``NORTHFLANK_API_TOKEN``,
``NORTHFLANK_LLM_OPERATOR_POLL_INTERVAL_SECONDS`` (the timer interval, default 60) and
``BASELINE_RETRY_DELAY_SECONDS`` (delay after a 429 or a transport error, default half the interval).

One ``httpx.AsyncClient`` per process with no connection limit: with httpx's default pool (100
connections) 1000 concurrent timers wedged it for good under 429 storms (every request then ended in
``PoolTimeout``), which would measure an httpx pool problem instead of the design.

Two deviations from defaults, in the baseline's favour (less CPU on a small machine): Kubernetes Events
for handler successes are off (``posting.level = WARNING``), so the local API server is not flooded with
one Event per tick, and httpx's per-request INFO log line is off.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from typing import Any

import httpx
import kopf

GROUP, VERSION, PLURAL = "northflank-llm-operator.dev", "v1alpha1", "llmmodeldeployments"
BASE_URL = os.environ.get("NORTHFLANK_API_BASE_URL", "https://api.northflank.com").rstrip("/")
INTERVAL = float(os.environ.get("NORTHFLANK_LLM_OPERATOR_POLL_INTERVAL_SECONDS", "60"))
RETRY_DELAY = float(os.environ.get("BASELINE_RETRY_DELAY_SECONDS", str(INTERVAL / 2)))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_client: httpx.AsyncClient | None = None


@kopf.on.startup()
async def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _client  # one client per process, as a typical operator keeps it
    settings.posting.level = logging.WARNING
    logging.getLogger("httpx").setLevel(logging.WARNING)
    token = os.environ.get("NORTHFLANK_API_TOKEN", "")
    _client = httpx.AsyncClient(
        base_url=BASE_URL,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10.0,
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
    )


@kopf.on.cleanup()
async def _cleanup(**_: Any) -> None:
    if _client is not None:
        await _client.aclose()


@kopf.timer(GROUP, VERSION, PLURAL, interval=INTERVAL)
async def poll(spec: kopf.Spec, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
    path = f"/v1/projects/{spec['projectId']}/llm-model-deployments/{spec['llmModelDeploymentId']}"
    assert _client is not None
    try:
        response = await _client.get(path)
    except httpx.TransportError as error:
        raise kopf.TemporaryError(f"Northflank unreachable: {error!r}", delay=RETRY_DELAY) from error
    if response.status_code == 429:
        logger.warning("Northflank rate limit hit (429); retrying in %.1f s", RETRY_DELAY)
        raise kopf.TemporaryError("rate limited by Northflank", delay=RETRY_DELAY)
    if response.status_code >= 400:
        raise kopf.TemporaryError(f"Northflank answered {response.status_code}", delay=RETRY_DELAY)
    data: dict[str, Any] = response.json()["data"]
    phase = str(data.get("status", "unknown"))
    running = phase == "running"
    patch.status["phase"] = phase
    patch.status["dns"] = data.get("dns")
    patch.status["ports"] = data.get("ports")
    patch.status["lastSyncTime"] = _now()
    patch.status["conditions"] = [
        {
            "type": "Ready",
            "status": "True" if running else "False",
            "reason": "Running" if running else phase.capitalize() or "Unknown",
            "message": f"Northflank reports {phase}",
            "lastTransitionTime": _now(),
        }
    ]
