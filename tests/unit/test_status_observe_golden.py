"""Observe mode without forProvider is byte-for-byte the status from before management (issue 17).

``golden/observe_status.json`` was written by this file's ``write_golden`` running on the code before
management existed (commit e20c1ee)::

    git archive e20c1ee operator/northflank_llm_operator | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old/operator uv run python -c 'import tests.unit.test_status_observe_golden as t; t.write_golden()'

The test replays the same sequences through today's compute_status (without forProvider) and compares
every status, patch and event, serialised, to those bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from northflank_llm_operator.northflank import LLMModelDeployment
from northflank_llm_operator.status import PAUSED, Failure, Observation, Timing, compute_staleness, compute_status
from tests.unit.payloads import full_deployment

GOLDEN = Path(__file__).parent / "golden" / "observe_status.json"
T0 = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)


def _timing(seconds: float) -> Timing:
    return Timing(
        now=T0 + timedelta(seconds=seconds),
        heartbeat=timedelta(minutes=10),
        stale_after=timedelta(seconds=90),
        effective_interval=30.0,
    )


def _observe(status: str = "running", **overrides: Any) -> Observation:
    return Observation(LLMModelDeployment.model_validate(full_deployment(status=status, **overrides)))


SERVER_ERROR = Failure("ServerError", "Northflank answered with HTTP 500: boom", transient=True)
UNAUTHORIZED = Failure("AuthenticationFailed", "Northflank answered with HTTP 401: bad token", transient=False)
NOT_FOUND = Failure("NotFound", "Northflank answered with HTTP 404: gone", transient=False, not_found=True)

#: (seconds, outcome or "stale", expected phase, handled reconcile-at), one sequence per resource.
_SEQUENCES: dict[str, list[tuple[float, Any, str, str | None]]] = {
    "lifecycle": [
        (0, _observe("pending"), "running", None),
        (30, _observe("provisioning"), "running", None),
        (60, _observe("starting"), "running", None),
        (90, _observe("running"), "running", None),
        (120, _observe("running"), "running", None),
        (900, _observe("running"), "running", "2026-11-26T10:15:00Z"),
        (930, _observe("crashed"), "running", None),
    ],
    "errors": [
        (0, _observe("running"), "running", None),
        (30, SERVER_ERROR, "running", None),
        (200, "stale", "running", None),
        (230, SERVER_ERROR, "running", None),
        (260, UNAUTHORIZED, "running", None),
        (290, _observe("running", description="changed"), "running", None),
        (320, NOT_FOUND, "running", None),
        (350, PAUSED, "running", None),
    ],
    "paused": [
        (0, _observe("paused"), "paused", None),
        (30, _observe("running", tags=["x"], ports=[]), "paused", None),
        (60, _observe("deleting"), "running", None),
        (90, _observe("surprising"), "running", None),
    ],
    "never-observed": [
        (0, UNAUTHORIZED, "running", None),
        (30, PAUSED, "running", None),
        (60, NOT_FOUND, "running", None),
    ],
}


def _replay() -> Iterator[dict[str, Any]]:
    for name, steps in _SEQUENCES.items():
        current: dict[str, Any] = {}
        for seconds, outcome, expected, handled in steps:
            if outcome == "stale":
                update = compute_staleness(current, generation=2, timing=_timing(seconds))
            else:
                update = compute_status(current, outcome, generation=2, timing=_timing(seconds),
                                        expected_phase=expected, handled_reconcile_at=handled)  # fmt: skip
            yield {
                "sequence": name,
                "at": seconds,
                "status": update.status,
                "patch": update.patch,
                "events": [asdict(e) for e in update.events],
            }
            current = update.status


def _serialised() -> str:
    return json.dumps(list(_replay()), indent=1, sort_keys=False, ensure_ascii=False) + "\n"


def write_golden() -> None:
    GOLDEN.write_text(_serialised())


def test_observe_without_for_provider_is_byte_for_byte_the_status_before_management() -> None:
    assert _serialised() == GOLDEN.read_text()


def test_for_provider_none_is_the_default() -> None:
    """The reconciler passes for_provider=None for every resource without forProvider."""
    for step in _replay():
        assert "drift" not in step["status"]
        assert all(c["type"] != "UpToDate" for c in step["status"].get("conditions", []))
