"""Pure mapping from what a poll found to the resource's status. No I/O, no clock of its own.

The mapping keeps the last good observation on every error, explains each outcome in a condition
with a specific reason, and produces a status that compares equal to the stored one when nothing
changed, so the writer can skip the Kubernetes write.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from .conditions import (
    MAX_MESSAGE_CHARS,
    READY,
    RECONCILING,
    STALLED,
    SYNCED,
    UP_TO_DATE,
    Condition,
    find,
    format_time,
    merge_conditions,
)
from .management import Drift, ForProvider, compute_drift
from .northflank import DeploymentStatus, LLMModelDeployment, NorthflankError, NotFoundError

UNKNOWN_PHASE = "unknown"
#: Reasons of failures that happen inside the operator rather than at Northflank.
INTERNAL_ERROR = "InternalError"
STATUS_REJECTED = "StatusRejected"
# What a hostile or broken answer may put into status: deeper values, integers outside int64 (the
# API server refuses the patch with 422) and more bytes (etcd refuses objects over 1.5 MiB with a 500)
# are left out, and the Synced message says so.
MAX_MIRRORED_DEPTH = 32
MAX_MIRRORED_BYTES = 256 * 1024
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Status keys this operator owns; anything else in status (there should be nothing) is left alone.
OWNED_KEYS = (
    "phase",
    "observedGeneration",
    "lastSyncTime",
    "conditions",
    "dns",
    "ports",
    "deployment",
    "deploymentSpec",
    "effectivePollIntervalSeconds",
    "lastHandledReconcileAt",
    "nullFields",
    "gpu",
    "url",
    "drift",
)
#: status.drift holds at most this many differences, each value as JSON cut to this many characters.
MAX_DRIFT_ITEMS = 20
MAX_DRIFT_VALUE_CHARS = 256
MAX_DRIFT_PATH_CHARS = 1024
#: UpToDate's message names this many paths, then "and N more".
_DRIFT_PATHS_NAMED = 3
#: At most this many paths in status.nullFields (a hostile answer could be all nulls).
MAX_NULL_FIELDS = 100
#: Where each top-level field of Northflank's answer is mirrored in status.
_MIRRORED_AT = {"spec": "deploymentSpec", "dns": "dns", "ports": "ports"}
#: Keys whose change alone is no news about the deployment (lastSyncTime is not re-stamped for them).
_BOOKKEEPING_KEYS = ("lastSyncTime", "lastHandledReconcileAt")
#: Synced=False reason while the paused annotation is set.
RECONCILE_PAUSED = "ReconcilePaused"
_TRANSITIONAL = {
    DeploymentStatus.PENDING,
    DeploymentStatus.PROVISIONING,
    DeploymentStatus.STARTING,
    DeploymentStatus.DELETING,
}


@dataclass(frozen=True)
class Observation:
    """A successful poll: the validated deployment."""

    deployment: LLMModelDeployment

    @property
    def raw(self) -> dict[str, Any]:
        """The response's ``data`` object as Northflank sent it, unknown fields included."""
        return self.deployment.model_dump(mode="json", by_alias=True, exclude_unset=True)


@dataclass(frozen=True)
class Failure:
    """A failed poll, already reduced to what status needs to say about it."""

    reason: str
    message: str
    #: Retrying later may succeed without anyone acting (5xx, 429, timeouts, malformed bodies).
    transient: bool
    not_found: bool = False

    @classmethod
    def from_error(cls, error: NorthflankError) -> Failure:
        return cls(
            reason=error.reason,
            message=error.message,
            transient=error.transient,
            not_found=isinstance(error, NotFoundError),
        )


Outcome = Observation | Failure

#: What a paused resource's status says instead of a poll's outcome: transient, so Ready keeps the last
#: observation until the normal staleness rule turns it Unknown.
PAUSED = Failure(
    RECONCILE_PAUSED,
    "Polling is paused by the annotation northflank-llm-operator.dev/paused; the status shows the last "
    "observation. Remove the annotation to resume.",
    transient=True,
)


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to record on the resource."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class StatusUpdate:
    status: dict[str, Any]
    #: RFC 7386 merge patch from the stored status to ``status``; empty when nothing changed.
    patch: dict[str, Any]
    events: list[Event] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.patch)


@dataclass(frozen=True)
class Timing:
    """The clock-dependent inputs of the mapping."""

    now: datetime
    #: An unchanged observation re-stamps lastSyncTime this often; zero: never (only changes write).
    heartbeat: timedelta
    #: Ready turns Unknown (StatusStale) once the last successful observation is older than this.
    stale_after: timedelta
    #: When the deployment was last observed successfully (by this process, or the moment it
    #: started for a resource observed before it). status.lastSyncTime may lag behind it, so
    #: staleness is judged from whichever is later.
    last_success: datetime | None = None
    #: The interval the resource asks for, and the one the request budget lets the operator keep.
    requested_interval: float | None = None
    effective_interval: float | None = None


def compute_status(
    current: Mapping[str, Any],
    outcome: Outcome,
    *,
    generation: int,
    timing: Timing,
    expected_phase: str = DeploymentStatus.RUNNING.value,
    handled_reconcile_at: str | None = None,
    for_provider: ForProvider | None = None,
) -> StatusUpdate:
    """The status to write after ``outcome``, whether it differs from ``current``, and the events.

    ``expected_phase`` is the phase that counts as Ready (spec.expectedPhase); ``handled_reconcile_at``
    the reconcile-requested-at value this outcome answers, recorded in status.lastHandledReconcileAt.
    ``for_provider`` (spec.forProvider) adds status.drift and the UpToDate condition; without it the
    status is exactly what it was before management existed.
    """
    current_owned = {key: current[key] for key in OWNED_KEYS if key in current}
    if isinstance(outcome, Observation):
        new = _observed_status(current_owned, outcome, generation=generation, timing=timing, expected=expected_phase,
                               for_provider=for_provider)  # fmt: skip
    else:
        new = _failed_status(current_owned, outcome, generation=generation, timing=timing, for_provider=for_provider)
    if handled_reconcile_at is not None:
        new["lastHandledReconcileAt"] = handled_reconcile_at
    patch = merge_patch(current_owned, new)
    return StatusUpdate(status=new, patch=patch, events=_events(current_owned, new) if patch else [])


def phase_of(deployment: LLMModelDeployment) -> str:
    known = deployment.known_status
    return known.value if known is not None else UNKNOWN_PHASE


def _observed_status(
    current: Mapping[str, Any],
    observation: Observation,
    *,
    generation: int,
    timing: Timing,
    expected: str,
    for_provider: ForProvider | None,
) -> dict[str, Any]:
    deployment = observation.deployment
    omitted: list[str] = []
    nulls: list[str] = []
    raw = bounded(observation.raw, omitted, nulls=nulls)
    phase = phase_of(deployment)
    new: dict[str, Any] = {
        "phase": phase,
        "observedGeneration": generation,
        "dns": raw.get("dns"),
        "ports": raw.get("ports", []),
        "deployment": {k: v for k, v in raw.items() if k not in ("dns", "ports", "spec")},
        "deploymentSpec": raw.get("spec", {}),
    }
    # Summaries for kubectl's columns, which are JSONPath over the object and cannot join two fields.
    gpu, url = gpu_summary(new["deploymentSpec"]), first_public_url(new["ports"])
    if gpu is not None:
        new["gpu"] = gpu
    if url is not None:
        new["url"] = url
    note = f" Not mirrored (too deep, too large or out of int64 range): {', '.join(omitted[:10])}." if omitted else ""
    if nulls:
        new["nullFields"] = sorted(_status_path(path) for path in nulls)[:MAX_NULL_FIELDS]
    if "lastHandledReconcileAt" in current:
        new["lastHandledReconcileAt"] = current["lastHandledReconcileAt"]
    if timing.effective_interval is not None:
        new["effectivePollIntervalSeconds"] = math.ceil(timing.effective_interval)
    conditions = [
        _ready_from_phase(deployment, phase, expected),
        Condition(
            SYNCED,
            "True",
            "Observed",
            "The last poll of Northflank succeeded." + _stretch_note(timing) + _deviation_note(deployment) + note,
        ),
    ]
    known = deployment.known_status
    if known in _TRANSITIONAL:
        conditions.append(
            Condition(RECONCILING, "True", phase.capitalize(), f"Northflank reports the deployment as {phase}.")
        )
    if known is DeploymentStatus.CRASHED:
        conditions.append(Condition(STALLED, "True", "Crashed", "Northflank reports the deployment as crashed."))
    if for_provider is not None:
        drift = compute_drift(for_provider, observation.raw)
        new["drift"] = drift_status(drift)
        conditions.append(up_to_date(drift))
    new["conditions"] = merge_conditions(
        current.get("conditions", []), conditions, generation=generation, now=timing.now
    )
    new["lastSyncTime"] = _sync_time(current, new, timing)
    return new


_HTTP_PROTOCOLS = ("HTTP", "HTTP/2")


def _child(value: Any, *path: str) -> Any:
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def gpu_summary(spec: Any) -> str | None:
    """``h100-80 × 2`` from the deployment's spec (``configuration.nodeConfiguration.gpu``), ``none`` when
    GPUs are switched off, None when the spec does not say."""
    gpu = _child(spec, "configuration", "nodeConfiguration", "gpu")
    if not isinstance(gpu, Mapping):
        return None
    if gpu.get("enabled") is False:
        return "none"
    raw_type, raw_count = _child(gpu, "configuration", "gpuType"), _child(gpu, "configuration", "gpuCount")
    gpu_type = raw_type if isinstance(raw_type, str) and raw_type else None
    count = raw_count if isinstance(raw_count, int) and not isinstance(raw_count, bool) else None
    if count is not None:
        text = f"{gpu_type or 'gpu'} × {count}"
    elif gpu_type is not None:
        text = gpu_type
    else:
        return None
    return text + (" (timesliced)" if _child(gpu, "configuration", "timesliced") is True else "")


def first_public_url(ports: Any) -> str | None:
    """The first public port's DNS name, as ``https://…`` for an HTTP port (Northflank serves public HTTP
    ports over HTTPS); None when no public port has one."""
    for port in ports if isinstance(ports, list) else []:
        dns = port.get("dns") if isinstance(port, Mapping) else None
        if port.get("public") is True and isinstance(dns, str) and dns:
            protocol = port.get("protocol")
            return f"https://{dns}" if isinstance(protocol, str) and protocol.upper() in _HTTP_PROTOCOLS else dns
    return None


def _deviation_note(deployment: LLMModelDeployment, *, limit: int = 3) -> str:
    """A non-fatal contract deviation (a field the operator only mirrors breaks its documented rule)."""
    deviations = deployment.contract_deviations
    if not deviations:
        return ""
    listed = "; ".join(deviations[:limit])
    more = f"; and {len(deviations) - limit} more" if len(deviations) > limit else ""
    return f" Contract deviation in fields the operator only mirrors: {listed}{more}."


def _stretch_note(timing: Timing) -> str:
    requested, effective = timing.requested_interval, timing.effective_interval
    if requested is None or effective is None or math.ceil(effective) <= math.ceil(requested):
        return ""
    return (
        f" Northflank's request budget for these credentials stretches polling to every "
        f"{math.ceil(effective)}s (asked {math.ceil(requested)}s)."
    )


def _ready_from_phase(deployment: LLMModelDeployment, phase: str, expected: str) -> Condition:
    known = deployment.known_status
    if known is DeploymentStatus.RUNNING and expected == DeploymentStatus.RUNNING:
        return Condition(READY, "True", "Running", "The deployment is running.")
    if known is DeploymentStatus.PAUSED and expected == DeploymentStatus.PAUSED:
        return Condition(READY, "True", "PausedAsExpected", "The deployment is paused, as spec.expectedPhase asks.")
    if known in (DeploymentStatus.RUNNING, DeploymentStatus.PAUSED):
        # One of the two steady phases, but not the one asked for (paused keeps its reason of old).
        reason = "Paused" if known is DeploymentStatus.PAUSED else "UnexpectedPhase"
        return Condition(
            READY, "False", reason, f"Northflank reports the deployment as {phase}; the expected phase is {expected}."
        )
    if deployment.known_status is None:
        return Condition(
            READY,
            "False",
            "UnknownStatus",
            f"Northflank reports status {deployment.status!r}, which this operator version does not know.",
        )
    return Condition(READY, "False", phase.capitalize(), f"Northflank reports the deployment as {phase}.")


def _sync_time(current: Mapping[str, Any], new: Mapping[str, Any], timing: Timing) -> str:
    """Re-stamp lastSyncTime when the observation changed or the heartbeat is due, not on every poll."""
    previous = current.get("lastSyncTime")
    unchanged = all(current.get(key) == new.get(key) for key in new if key not in _BOOKKEEPING_KEYS)
    if unchanged and isinstance(previous, str):
        last = _parse_time(previous)
        if last is not None and last <= timing.now and (not timing.heartbeat or timing.now - last < timing.heartbeat):
            return previous
    return format_time(timing.now)


def drift_status(drift: list[Drift]) -> list[dict[str, str]]:
    """status.drift: the first differences, values as compact JSON (null: absent at that side)."""
    return [
        {
            "path": d.path[:MAX_DRIFT_PATH_CHARS],
            "desired": _compact_json(d.desired),
            "observed": _compact_json(d.observed),
        }
        for d in drift[:MAX_DRIFT_ITEMS]
    ]


def _compact_json(value: Any) -> str:
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        text = "(not representable as JSON)"  # a hostile answer: too deep, or NaN
    return text[:MAX_DRIFT_VALUE_CHARS]


def up_to_date(drift: list[Drift]) -> Condition:
    """UpToDate after a successful observation: drift is information, not a failure."""
    if not drift:
        return Condition(UP_TO_DATE, "True", "UpToDate", "The deployment matches spec.forProvider.")
    named = ", ".join(d.path for d in drift[:_DRIFT_PATHS_NAMED])
    more = f" and {len(drift) - _DRIFT_PATHS_NAMED} more" if len(drift) > _DRIFT_PATHS_NAMED else ""
    return Condition(
        UP_TO_DATE, "False", "Drifted", f"The deployment differs from spec.forProvider at {named}{more} (status.drift)."
    )


def _not_observed(message: str) -> Condition:
    return Condition(UP_TO_DATE, "Unknown", "NotObserved", message)


def _failed_status(
    current: Mapping[str, Any], failure: Failure, *, generation: int, timing: Timing, for_provider: ForProvider | None
) -> dict[str, Any]:
    # Everything observed before stays: an error is news about the poll, not about the deployment.
    new = dict(current)
    new.setdefault("phase", UNKNOWN_PHASE)
    new["observedGeneration"] = generation
    if timing.effective_interval is not None:
        new["effectivePollIntervalSeconds"] = math.ceil(timing.effective_interval)
    existing = current.get("conditions", [])
    conditions = [
        _ready_after_failure(current, failure, timing),
        Condition(SYNCED, "False", failure.reason, failure.message),
    ]
    if failure.transient:
        # A pause keeps everything the last observation said, a crash (Stalled) included.
        kept = (RECONCILING, STALLED) if failure.reason == RECONCILE_PAUSED else (RECONCILING,)
        for kind in kept:
            previous = find(existing, kind)
            if previous is not None:
                conditions.append(_as_condition(previous))
    else:
        conditions.append(Condition(STALLED, "True", failure.reason, failure.message))
    if for_provider is None:
        new.pop("drift", None)
    elif failure.not_found:
        new.pop("drift", None)
        conditions.append(_not_observed("The deployment does not exist at Northflank: nothing to compare."))
    else:
        # The last comparison stays with the last observation it was made on.
        previous = find(existing, UP_TO_DATE)
        conditions.append(
            _as_condition(previous)
            if previous is not None and "drift" in current
            else _not_observed(f"Not observed yet: {failure.message}")
        )
    new["conditions"] = merge_conditions(existing, conditions, generation=generation, now=timing.now)
    return new


def _ready_after_failure(current: Mapping[str, Any], failure: Failure, timing: Timing) -> Condition:
    if failure.not_found:
        return Condition(READY, "False", failure.reason, failure.message)
    if not failure.transient:
        return Condition(READY, "Unknown", failure.reason, f"Cannot observe the deployment: {failure.message}")
    previous = find(current.get("conditions", []), READY)
    last_sync = _last_success(current, timing)
    if previous is not None and last_sync is not None:
        if timing.now - last_sync < timing.stale_after:
            # A blip: keep showing the last good observation until it is actually stale.
            return _as_condition(previous)
        return Condition(
            READY,
            "Unknown",
            "StatusStale",
            f"No successful poll since {format_time(last_sync)}; last error: {failure.message}",
        )
    return Condition(READY, "Unknown", failure.reason, f"Not observed yet: {failure.message}")


def compute_staleness(
    current: Mapping[str, Any], *, generation: int, timing: Timing, cause: str | None = None
) -> StatusUpdate:
    """Judge staleness on the clock, without a poll: Ready turns Unknown (StatusStale) once the last
    successful observation is older than ``timing.stale_after``. Everything else stays as it is."""
    current_owned = {key: current[key] for key in OWNED_KEYS if key in current}
    existing = current_owned.get("conditions", [])
    ready = find(existing, READY)
    if ready is None or ready.get("status") == "Unknown" or "phase" not in current_owned:
        return StatusUpdate(status=current_owned, patch={})
    last = _last_success(current_owned, timing)
    if last is None or timing.now - last < timing.stale_after:
        return StatusUpdate(status=current_owned, patch={})
    message = (
        f"No successful observation since {format_time(last)}; one is planned every "
        f"{math.ceil(timing.effective_interval or 0)}s and the status counts as stale after "
        f"{math.ceil(timing.stale_after.total_seconds())}s."
    )
    if cause:
        message += f" {cause}"
    stale = Condition(READY, "Unknown", "StatusStale", message)
    others = [_as_condition(c) for c in existing if c.get("type") != READY]
    new = dict(current_owned)
    new["conditions"] = merge_conditions(
        existing, [stale, *others], generation=int(current_owned.get("observedGeneration", generation)), now=timing.now
    )
    patch = merge_patch(current_owned, new)
    return StatusUpdate(status=new, patch=patch, events=[])


def _last_success(current: Mapping[str, Any], timing: Timing) -> datetime | None:
    stored = _parse_time(current.get("lastSyncTime"))
    if stored is not None and stored > timing.now:
        stored = None  # a hand-edited time in the future must not turn staleness off
    known_times = [t for t in (stored, timing.last_success) if t is not None]
    return max(known_times, default=None)


def _as_condition(stored: Mapping[str, Any]) -> Condition:
    status = stored.get("status")
    return Condition(
        type=str(stored.get("type")),
        status=status if status in ("True", "False", "Unknown") else "Unknown",
        reason=str(stored.get("reason") or "Unknown"),
        message=str(stored.get("message") or ""),
    )


def _events(current: Mapping[str, Any], new: Mapping[str, Any]) -> list[Event]:
    events: list[Event] = []
    old_phase, new_phase = current.get("phase"), new.get("phase")
    if new_phase != old_phase and new_phase != UNKNOWN_PHASE:
        events.append(
            Event(
                "Warning" if new_phase == DeploymentStatus.CRASHED else "Normal",
                "PhaseChanged",
                f"Northflank reports the deployment as {new_phase} (was {old_phase or 'not observed'}).",
            )
        )
    if old_phase is not None and (current.get("dns"), current.get("ports")) != (new.get("dns"), new.get("ports")):
        events.append(Event("Normal", "EndpointsChanged", "The deployment's DNS or ports changed at Northflank."))
    old_synced = find(current.get("conditions", []), SYNCED)
    new_synced = find(new.get("conditions", []), SYNCED)
    if new_synced is not None and new_synced["status"] == "False":
        if old_synced is None or (old_synced["status"], old_synced["reason"]) != ("False", new_synced["reason"]):
            paused = new_synced["reason"] == RECONCILE_PAUSED  # asked for: no warning
            events.append(
                Event("Normal" if paused else "Warning", str(new_synced["reason"]), str(new_synced["message"]))
            )
    elif old_synced is not None and old_synced["status"] == "False":
        if old_synced.get("reason") == RECONCILE_PAUSED:
            events.append(Event("Normal", "ReconcileResumed", "Polling Northflank resumed."))
        else:
            events.append(Event("Normal", "SyncRecovered", "Polling Northflank succeeds again."))
    return events


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 merge patch turning ``old`` into ``new``: removed keys become null, lists are replaced."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        previous = old.get(key)
        if isinstance(value, Mapping) and isinstance(previous, Mapping):
            nested = merge_patch(previous, value)
            if nested:
                patch[key] = nested
        elif value != previous or key not in old:
            patch[key] = value
    return patch


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None  # a naive time cannot be compared with ours


def bounded(value: Any, omitted: list[str], *, path: str = "", nulls: list[str] | None = None) -> Any:
    """``value`` without JSON nulls, cut to what the API server accepts in status: at most
    MAX_MIRRORED_DEPTH levels, integers within int64, finite numbers, and at most MAX_MIRRORED_BYTES
    in all (keys are kept in order until the budget is spent). Paths left out are added to ``omitted``,
    paths of dropped object members that were null to ``nulls`` (a merge patch cannot store a null)."""
    budget = [MAX_MIRRORED_BYTES]
    result = _bounded(value, omitted, path, 0, budget, nulls if nulls is not None else [])
    return result if result is not _OMIT else {}


def _status_path(path: str) -> str:
    """``spec.configuration.x`` → ``deploymentSpec.configuration.x``; ``name`` → ``deployment.name``."""
    top = re.match(r"[^.\[]*", path)
    head = top.group(0) if top else path
    mirrored = _MIRRORED_AT.get(head)
    return mirrored + path[len(head) :] if mirrored is not None else f"deployment.{path}"


_OMIT = object()


def _bounded(value: Any, omitted: list[str], path: str, depth: int, budget: list[int], nulls: list[str]) -> Any:
    if depth > MAX_MIRRORED_DEPTH:
        omitted.append(path or "<root>")
        return _OMIT
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        budget[0] -= 2
        for key, item in value.items():
            if item is None:
                nulls.append(f"{path}.{key}" if path else str(key))
                continue
            child = _bounded(item, omitted, f"{path}.{key}" if path else str(key), depth + 1, budget, nulls)
            if child is not _OMIT:
                budget[0] -= len(str(key)) + 4
                out[str(key)] = child
        return out
    if isinstance(value, list):
        items: list[Any] = []
        budget[0] -= 2
        for index, item in enumerate(value):
            if item is None:
                continue
            child = _bounded(item, omitted, f"{path}[{index}]", depth + 1, budget, nulls)
            if child is not _OMIT:
                items.append(child)
        return items
    cost = _scalar_cost(value)
    if cost is None or cost > budget[0]:
        omitted.append(path)
        return _OMIT
    budget[0] -= cost
    return value


def _scalar_cost(value: Any) -> int | None:
    """Roughly the bytes a JSON scalar takes; None when it cannot be stored (beyond int64, not finite)."""
    if isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return 20 if INT64_MIN <= value <= INT64_MAX else None
    if isinstance(value, float):
        return 24 if math.isfinite(value) else None
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass")) + 2
    return None


def fallback_status(current: Mapping[str, Any], failure: Failure, *, generation: int, timing: Timing) -> StatusUpdate:
    """The small status written when the API server refused the real one: only the conditions (Ready
    Unknown, Synced False with ``failure``'s reason) and the phase, every other owned key removed."""
    current_owned = {key: current[key] for key in OWNED_KEYS if key in current}
    existing = current_owned.get("conditions", [])
    existing = existing if isinstance(existing, list) else []
    message = failure.message[:MAX_MESSAGE_CHARS]
    conditions = [
        Condition(READY, "Unknown", failure.reason, f"Cannot show the observation: {message}"),
        Condition(SYNCED, "False", failure.reason, message),
    ]
    new: dict[str, Any] = {
        "phase": UNKNOWN_PHASE,
        "observedGeneration": generation,
        "conditions": merge_conditions(
            [c for c in existing if isinstance(c, Mapping)], conditions, generation=generation, now=timing.now
        ),
    }
    patch = merge_patch(current_owned, new)
    return StatusUpdate(status=new, patch=patch, events=_events(current_owned, new) if patch else [])
