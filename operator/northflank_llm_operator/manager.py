"""Management (issue 17), the executing part: for one resource with write policies, gather what the
pure decision (:func:`~.writes.plan_write`) needs, and carry out the one step it returns.

Called by the reconciler after the observation is mapped. Every Northflank write is admitted by the
planner (reserve, one per deployment per interval), sent by the :class:`~.northflank.writer.NorthflankWriter`
(fenced by the Lease like everything else), and followed by a prompt GET; until an observation made
after it arrives, nothing else is decided for that resource.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import pydantic

from .conditions import SYNCED, Condition, find, format_time
from .kube import ResourceGoneError, StatusConflictError
from .management import Policies
from .northflank import ConflictError, NorthflankError, NotFoundError, RateLimit, RateLimitError
from .northflank.writer import NorthflankWriter, Permissions
from .observer import Observer, View
from .planner import GroupKey
from .registry import Registry, TrackedResource
from .resource import (
    CREATE_PENDING_ANNOTATION,
    CREATE_SUCCEEDED_ANNOTATION,
    DELETE_FINALIZER,
    LLMModelDeploymentSpec,
    ResourceKey,
)
from .status import OWNED_KEYS, Event, Failure, Outcome, StatusUpdate, merge_patch
from .writes import (
    ABSENT,
    MANAGED,
    STALLING_REASONS,
    UNKNOWN,
    Seen,
    Step,
    WriteDecision,
    WriteInputs,
    Writing,
    overlay_status,
    plan_write,
)

logger = logging.getLogger(__name__)

Target = tuple[GroupKey, str, str]


class MetadataWriter(Protocol):
    """Management's Kubernetes side: the create markers and the finalizer, and the CRD's state."""

    async def patch_metadata(
        self, key: ResourceKey, metadata: Mapping[str, Any], *, uid: str, resource_version: str
    ) -> Mapping[str, Any]: ...

    async def crd_deleting(self) -> bool: ...


class MetadataConflict(Exception):
    """The resource changed since it was read: reconcile again (the reconciler's WriteRetry)."""


@dataclass
class _Writes:
    """What is remembered of one resource's writes in memory (the markers on the resource and
    status.management carry what must survive a restart)."""

    uid: str
    #: A write was sent and no answer to a later request has come yet.
    awaiting: Writing | None = None
    #: observer.requests_started when that write ended.
    after: int = 0
    #: A create of this resource answered 409.
    create_conflicted: bool = False
    #: The last write's error (Managed=False WriteFailed until a write succeeds).
    error: str | None = None
    #: The last decision's Reconciling and Stalled, laid over every status mapped until the next one.
    writing: Writing | None = None
    stalled: bool = False


@dataclass
class Manager:
    registry: Registry
    observer: Observer
    #: None: the installation is not enabled for management (nothing is ever sent).
    writer: NorthflankWriter | None
    metadata: MetadataWriter | None
    #: The reconciler's status write and Event recording.
    apply: Callable[[TrackedResource, StatusUpdate], Awaitable[None]]
    record: Callable[[TrackedResource, Event], Awaitable[None]]
    wall_clock: Callable[[], datetime]
    _writes: dict[ResourceKey, _Writes] = field(default_factory=dict)

    def forget(self, key: ResourceKey) -> None:
        self._writes.pop(key, None)

    def with_management(self, resource: TrackedResource, update: StatusUpdate, now: datetime) -> StatusUpdate:
        """A managed resource's mapped status keeps its Managed condition (and a write's Reconciling)."""
        if not _manages(resource):
            return update  # observing only: exactly today's status
        stored = find(resource.status.get("conditions", []), MANAGED)
        state = self._writes.get(resource.key)
        if state is not None and state.uid == resource.uid:
            writing, stalled = state.writing, state.stalled
        else:
            # Not decided yet by this process (it just started): keep what the status says.
            writing = None
            stalled = (
                stored is not None and stored.get("status") == "False" and stored.get("reason") in STALLING_REASONS
            )
        events = update.events
        if writing is None and not stalled and self._will_create(resource, update.status):
            # The deployment is absent and this resource creates it: that is progress, not a failure.
            # Without this the first mapping said Stalled/NotFound (kstatus: Failed, which ends a Flux
            # health check) and warned NotFound, a moment before the create decision replaced it.
            writing = "Creating"
            events = [e for e in events if e.reason != "NotFound"]
        mapped = dict(update.status)
        if stored is not None:
            # The mapping rebuilt the conditions without Managed: hand it back, with its transition time.
            mapped["conditions"] = [*mapped.get("conditions", []), dict(stored)]
        new = overlay_status(mapped, managed=_condition(stored) if stored is not None else None,
                             writing=writing, stalled=stalled, management=resource.status.get("management"),
                             generation=resource.generation, now=now)  # fmt: skip
        old = {k: resource.status[k] for k in (*OWNED_KEYS, "management") if k in resource.status}
        return StatusUpdate(new, merge_patch(old, new), events)

    def _will_create(self, resource: TrackedResource, status: Mapping[str, Any]) -> bool:
        """Whether the mapped ``status`` says the deployment is absent and this resource may create it
        (the decision that follows may still refuse: a missing permission, a conflict, a bad name)."""
        if self.writer is None or self.metadata is None or resource.deleting:
            return False
        synced = find(status.get("conditions", []), SYNCED)
        if synced is None or synced.get("reason") != "NotFound":
            return False
        try:
            return Policies.from_spec(resource.spec.get("managementPolicies")).creates
        except (ValueError, TypeError):
            return False

    async def manage(self, resource: TrackedResource, view: View, now: datetime) -> float | None:
        """Decide and carry out at most one write for ``resource``; returns when to look again."""
        if not _manages(resource):
            # Observing only (every pass of every default resource: checked before any parsing): no
            # write, no Managed condition, exactly today's behaviour.
            self._writes.pop(resource.key, None)
            return None
        try:
            spec = LLMModelDeploymentSpec.model_validate(resource.spec)
        except pydantic.ValidationError:
            return None  # InvalidSpec is in status already
        policies = Policies.from_spec(spec.management_policies)
        state = self._writes.get(resource.key)
        if state is None or state.uid != resource.uid:
            state = self._writes[resource.key] = _Writes(resource.uid)
        stored = view.outcome
        if state.awaiting is not None and stored is not None and stored.sent > state.after:
            state.awaiting = None  # observed after the write: decisions may use observations again
        target = self.observer.write_target(resource.key)
        permissions, wait = await self._permissions(target, state) if policies.writes else (None, None)
        inputs = await self._inputs(resource, spec, policies, state, stored, permissions)
        decision = plan_write(inputs)
        logger.debug("%s: management step %s (observed: %s)", resource.key, decision.step.value, inputs.seen.state)
        management: dict[str, Any] = {}
        again = await self._execute(resource, decision, target, state, management)
        state.writing, state.stalled = decision.writing, decision.stalled
        if self.registry.get(resource.key) is resource:
            await self._write_status(resource, decision, state, management, now)
        for event in decision.events:
            await self.record(resource, event)
        looks = [t for t in (wait, again) if t is not None]
        return min(looks) if looks else None

    async def _inputs(self, resource: TrackedResource, spec: LLMModelDeploymentSpec, policies: Policies,
                      state: _Writes, stored: Any, permissions: Permissions | None) -> WriteInputs:  # fmt: skip
        has_finalizer = DELETE_FINALIZER in resource.finalizers
        enabled = self.writer is not None and self.metadata is not None
        crd_deleting = False
        if resource.deleting and has_finalizer and enabled and self.metadata is not None:
            crd_deleting = await self.metadata.crd_deleting()
        return WriteInputs(
            policies=policies,
            enabled=enabled,
            adopt_existing=bool(spec.adopt_existing),
            for_provider=spec.for_provider,
            project_id=spec.project_id,
            deployment_id=spec.llm_model_deployment_id,
            seen=UNKNOWN if state.awaiting is not None else _seen(stored.outcome if stored is not None else None),
            create_pending=CREATE_PENDING_ANNOTATION in resource.markers,
            create_succeeded=CREATE_SUCCEEDED_ANNOTATION in resource.markers,
            create_conflicted=state.create_conflicted,
            has_finalizer=has_finalizer,
            being_deleted=resource.deleting,
            crd_deleting=crd_deleting,
            conflict_with=self._conflict_with(resource, spec) if policies.writes else None,
            permissions=permissions,
            generation=resource.generation,
            updated_generation=_management_field(resource, "updatedGeneration", int),
            update_requested_at=_management_field(resource, "updateRequestedAt", str),
            refresh=resource.reconcile_requested_at,
            awaiting=state.awaiting,
            write_error=state.error,
        )

    async def _permissions(self, target: Target | None, state: _Writes) -> tuple[Permissions | None, float | None]:
        """The token's permissions, read once per token (GET /v1/auth, admitted from the reserve)."""
        if self.writer is None or target is None:
            return None, None
        group, _, token = target
        cached = self.writer.cached_permissions(token)
        if cached is not None:
            return cached, None
        wait = self.observer.planner.admit_write(group, None)
        if wait is not None:
            return None, wait
        try:
            permissions, rate_limit = await self.writer.permissions(token)
        except NorthflankError as exc:
            self.observer.write_answered(group, exc.rate_limit, rejected=isinstance(exc, RateLimitError))
            state.error = f"Reading the token's permissions (GET /v1/auth) failed: {exc.message}"
            return None, self.observer.planner.config.first_retry_seconds
        self.observer.write_answered(group, rate_limit, rejected=False)
        return permissions, None

    async def _execute(self, resource: TrackedResource, decision: WriteDecision, target: Target | None,
                       state: _Writes, management: dict[str, Any]) -> float | None:  # fmt: skip
        """Carry out one step; returns when to look again (None: when notified)."""
        step = decision.step
        now = format_time(self.wall_clock())
        if step is Step.MARK_CREATE_PENDING:
            await self._patch(resource, {"annotations": {CREATE_PENDING_ANNOTATION: now}})
        elif step is Step.MARK_CREATED:
            await self._patch(resource, {"annotations": {CREATE_SUCCEEDED_ANNOTATION: now}})
        elif step is Step.ADD_FINALIZER:
            await self._patch(resource, {"finalizers": [*resource.finalizers, DELETE_FINALIZER]})
        elif step is Step.RELEASE_FINALIZER:
            await self._patch(resource, {"finalizers": [f for f in resource.finalizers if f != DELETE_FINALIZER]})
            return None
        elif step in (Step.CREATE, Step.UPDATE, Step.DELETE) and target is not None:
            return await self._send(resource, decision, target, state, management)
        else:
            return None
        return 0.0  # the metadata patch is the next observation of the resource: decide again at once

    async def _send(self, resource: TrackedResource, decision: WriteDecision, target: Target, state: _Writes,
                    management: dict[str, Any]) -> float | None:  # fmt: skip
        assert self.writer is not None
        group, deployment_id, token = target
        wait = self.observer.planner.admit_write(group, deployment_id)
        if wait is not None:
            return wait
        step, body = decision.step, decision.body or {}
        project, team = group.project_id, group.team_id
        rate_limit: RateLimit | None = None
        try:
            if step is Step.CREATE:
                rate_limit = await self.writer.create_llm_model_deployment(project, body, token=token, team_id=team)
            elif step is Step.UPDATE:
                rate_limit = await self.writer.update_llm_model_deployment(project, deployment_id, body, token=token,
                                                                           team_id=team)  # fmt: skip
            else:
                rate_limit = await self.writer.delete_llm_model_deployment(project, deployment_id, token=token,
                                                                           team_id=team)  # fmt: skip
        except NorthflankError as exc:
            self.observer.write_answered(group, exc.rate_limit, rejected=isinstance(exc, RateLimitError))
            expected = (step is Step.CREATE and isinstance(exc, ConflictError)) or (
                step is Step.DELETE and isinstance(exc, NotFoundError)
            )
            if not expected:
                state.error = f"{_REQUESTS[step]} failed: {exc.message}"
                logger.warning("%s: %s", resource.key, state.error)
                if step is Step.UPDATE and not exc.transient:
                    management["updatedGeneration"] = resource.generation  # refused: not resent for it
                return None if step is Step.UPDATE else self.observer.planner.config.first_retry_seconds
            # A 409 to this resource's create: its own earlier attempt exists (ids are slugs of names).
            state.create_conflicted = state.create_conflicted or step is Step.CREATE
        else:
            self.observer.write_answered(group, rate_limit, rejected=False)
            state.error = None
        if step is Step.UPDATE:
            management["updatedGeneration"] = resource.generation
            if resource.reconcile_requested_at is not None:
                management["updateRequestedAt"] = resource.reconcile_requested_at
        elif step is Step.DELETE:
            management["deleteRequestedAt"] = format_time(self.wall_clock())
        logger.info("%s: %s sent for deployment %s", resource.key, _REQUESTS[step], deployment_id)
        state.awaiting, state.after = decision.writing, self.observer.requests_started
        self.observer.confirm(resource.key)  # a prompt GET says what became of it
        return None

    async def _patch(self, resource: TrackedResource, metadata: Mapping[str, Any]) -> None:
        if self.metadata is None:
            return
        try:
            stored = await self.metadata.patch_metadata(resource.key, metadata, uid=resource.uid,
                                                        resource_version=resource.resource_version)  # fmt: skip
        except ResourceGoneError:
            self.registry.forget(resource.key, uid=resource.uid)
            return
        except StatusConflictError as exc:
            self.registry.observe("MODIFIED", exc.current)
            raise MetadataConflict(str(resource.key)) from None
        self.registry.observe("MODIFIED", stored)

    async def _write_status(self, resource: TrackedResource, decision: WriteDecision, state: _Writes,
                            management: Mapping[str, Any], now: datetime) -> None:  # fmt: skip
        current = resource.status
        merged = {**(current.get("management") or {}), **management}
        new = overlay_status(current, managed=decision.managed, writing=state.writing, stalled=decision.stalled,
                             management=merged, generation=resource.generation, now=now)  # fmt: skip
        patch = merge_patch(current, new)
        if patch:
            await self.apply(resource, StatusUpdate(new, patch))

    def _conflict_with(self, resource: TrackedResource, spec: LLMModelDeploymentSpec) -> str | None:
        """The resource managing the same deployment that came first (creationTimestamp, then name)."""
        mine = (spec.team_id, spec.project_id, spec.llm_model_deployment_id)
        rank = (resource.created_at, resource.key)
        first: tuple[str, ResourceKey] | None = None
        for other in self.registry.naming(*mine):
            theirs = other.spec
            if other.uid == resource.uid or other.deleting:
                continue
            try:
                if not Policies.from_spec(theirs.get("managementPolicies")).writes:
                    continue
            except ValueError:
                continue
            if (other.created_at, other.key) < rank and (first is None or (other.created_at, other.key) < first):
                first = (other.created_at, other.key)
        return str(first[1]) if first is not None else None


_REQUESTS = {
    Step.CREATE: "The create request (POST)",
    Step.UPDATE: "The update request (POST)",
    Step.DELETE: "The delete request (DELETE)",
}


def _manages(resource: TrackedResource) -> bool:
    """Whether the resource asks for writes (or still carries the finalizer of an earlier spec that did)."""
    if DELETE_FINALIZER in resource.finalizers:
        return True
    try:
        return Policies.from_spec(resource.spec.get("managementPolicies")).writes
    except (ValueError, TypeError):
        return False


def _seen(outcome: Outcome | None) -> Seen:
    if isinstance(outcome, Failure):
        return ABSENT if outcome.not_found else UNKNOWN
    if outcome is None:
        return UNKNOWN
    return Seen("exists", outcome.raw)


def _condition(stored: Mapping[str, Any]) -> Condition:
    return Condition(str(stored.get("type")), stored.get("status", "Unknown"), str(stored.get("reason", "")),
                     str(stored.get("message", "")))  # fmt: skip


def _management_field(resource: TrackedResource, name: str, kind: type[Any]) -> Any:
    management = resource.status.get("management")
    value = management.get(name) if isinstance(management, Mapping) else None
    return value if isinstance(value, kind) and not isinstance(value, bool) else None
