"""metav1.Condition handling that keeps lastTransitionTime when a condition's status did not change."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

ConditionStatus = Literal["True", "False", "Unknown"]

READY = "Ready"
SYNCED = "Synced"
RECONCILING = "Reconciling"
STALLED = "Stalled"
#: Only with spec.forProvider: whether the deployment matches it.
UP_TO_DATE = "UpToDate"
#: Only with write policies (issue 17).
MANAGED = "Managed"

#: metav1.Condition allows 32768 characters; messages are cut well before that.
MAX_MESSAGE_CHARS = 4096

# Order in which conditions are written, so an unchanged set compares equal to what is stored.
_ORDER = (READY, SYNCED, RECONCILING, STALLED, UP_TO_DATE, MANAGED)


@dataclass(frozen=True)
class Condition:
    """A desired condition, before transition bookkeeping."""

    type: str
    status: ConditionStatus
    reason: str
    message: str


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with second precision, as metav1.Time serialises."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def find(conditions: Iterable[Mapping[str, Any]], condition_type: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == condition_type), None)


def merge_conditions(
    existing: Sequence[Mapping[str, Any]],
    desired: Iterable[Condition],
    *,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """The full new condition list: ``desired`` conditions, each keeping its old lastTransitionTime
    when its status is unchanged. Conditions not in ``desired`` are dropped (Reconciling and
    Stalled are only present while true, as Flux's controllers do)."""
    merged = []
    for condition in desired:
        previous = find(existing, condition.type)
        transition = (
            previous["lastTransitionTime"]
            if previous is not None
            and previous.get("status") == condition.status
            and isinstance(previous.get("lastTransitionTime"), str)
            else format_time(now)
        )
        merged.append(
            {
                "type": condition.type,
                "status": condition.status,
                "observedGeneration": generation,
                "lastTransitionTime": transition,
                "reason": condition.reason,
                "message": condition.message[:MAX_MESSAGE_CHARS],
            }
        )
    merged.sort(key=lambda c: _ORDER.index(c["type"]) if c["type"] in _ORDER else len(_ORDER))
    return merged
