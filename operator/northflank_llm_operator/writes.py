"""Management (issue 17), the decisions: what to write to Northflank next for one resource, and what
its status says about it. Pure: no I/O, no clock; the reconciler executes the one step returned.

One step per pass (level-triggered): record the create attempt, create, confirm it, add the
finalizer, update, delete, release the finalizer, or nothing. Every write is followed by a GET (the
observer's), and nothing is decided from an observation older than the last write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Literal

from .conditions import RECONCILING, STALLED, Condition, merge_conditions
from .management import Drift, ForProvider, Policies, compute_drift, create_body, slug, update_body
from .northflank.writer import Permissions, WriteAction
from .resource import CREATE_PENDING_ANNOTATION, CREATE_SUCCEEDED_ANNOTATION, DELETE_FINALIZER
from .status import Event

__all__ = ["CREATE_PENDING_ANNOTATION", "CREATE_SUCCEEDED_ANNOTATION", "DELETE_FINALIZER"]

MANAGED = "Managed"
# Managed reasons (the design's names).
CREATED, ADOPTED = "Created", "Adopted"
MANAGEMENT_DISABLED = "ManagementDisabled"
PERMISSION_DENIED = "PermissionDenied"
CONFLICT = "Conflict"
NOT_ADOPTED = "NotAdopted"
INVALID_NAME = "InvalidName"
UPDATE_NOT_CONVERGING = "UpdateNotConverging"
WRITE_FAILED = "WriteFailed"
#: The deployment does not exist and Create is not among the policies (nothing to manage).
NOT_FOUND = "NotFound"
ORPHANED = "Orphaned"
#: Managed=False reasons that no retry fixes: the manifest or the installation must change. They set
#: Stalled=True too, so kstatus (Flux's health checks, `kstatus`-based waits) reports Failed, as Argo
#: CD's Degraded does. WriteFailed is retried and NotFound is the observation's own Stalled.
STALLING_REASONS = frozenset(
    {UPDATE_NOT_CONVERGING, MANAGEMENT_DISABLED, PERMISSION_DENIED, CONFLICT, NOT_ADOPTED, INVALID_NAME}
)

Writing = Literal["Creating", "Updating", "Deleting"]
_WRITING_REASONS = ("Creating", "Updating", "Deleting")


class Step(Enum):
    NOTHING = "nothing"
    MARK_CREATE_PENDING = "mark-create-pending"
    CREATE = "create"
    MARK_CREATED = "mark-created"
    ADD_FINALIZER = "add-finalizer"
    UPDATE = "update"
    DELETE = "delete"
    RELEASE_FINALIZER = "release-finalizer"


@dataclass(frozen=True)
class Seen:
    """The newest observation not older than the last write: the GET data, absent (404), or unknown."""

    state: Literal["exists", "absent", "unknown"]
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def phase(self) -> str | None:
        status = self.data.get("status")
        return status if isinstance(status, str) else None


UNKNOWN = Seen("unknown")
ABSENT = Seen("absent")


@dataclass(frozen=True)
class WriteInputs:
    policies: Policies
    #: The installation's switch (--enable-management).
    enabled: bool
    adopt_existing: bool
    for_provider: ForProvider | None
    project_id: str
    deployment_id: str
    seen: Seen
    create_pending: bool = False
    create_succeeded: bool = False
    #: A create of this resource answered 409 (the deployment exists: it was this resource's attempt).
    create_conflicted: bool = False
    has_finalizer: bool = False
    #: The resource has a deletionTimestamp.
    being_deleted: bool = False
    #: The CRD itself is being deleted (or is gone): nothing is deleted at Northflank then.
    crd_deleting: bool = False
    #: Another resource that manages the same deployment and came first (namespace/name).
    conflict_with: str | None = None
    #: The token's permissions (None: not known; no write is decided without them).
    permissions: Permissions | None = None
    generation: int = 0
    #: status.management.updatedGeneration / updateRequestedAt.
    updated_generation: int | None = None
    update_requested_at: str | None = None
    #: The reconcile-requested-at annotation's value.
    refresh: str | None = None
    #: A write was sent and no observation since has answered it.
    awaiting: Writing | None = None
    #: The last write's error message, shown until a later write succeeds.
    write_error: str | None = None


@dataclass(frozen=True)
class WriteDecision:
    step: Step = Step.NOTHING
    #: The Managed condition; None: leave it as it is (nothing new is known).
    managed: Condition | None = None
    #: Reconciling=True with this reason while a write is in progress.
    writing: Writing | None = None
    #: The request body of a create or an update.
    body: Mapping[str, Any] | None = None
    drift: Sequence[Drift] = ()
    events: Sequence[Event] = ()

    @property
    def stalled(self) -> bool:
        return self.managed is not None and self.managed.status == "False" and self.managed.reason in STALLING_REASONS


def _managed(status: Literal["True", "False"], reason: str, message: str) -> Condition:
    return Condition(MANAGED, status, reason, message)


def _missing(inputs: WriteInputs, action: WriteAction) -> Condition | None:
    assert inputs.permissions is not None
    missing = inputs.permissions.missing(action, inputs.project_id)
    if missing is None:
        return None
    return _managed(
        "False", PERMISSION_DENIED, f"The Northflank token lacks the permission {missing}; nothing is sent."
    )


def plan_write(inputs: WriteInputs) -> WriteDecision:
    """The next step for one resource, and what its Managed condition says."""
    if inputs.being_deleted:
        return _plan_delete(inputs)
    if not inputs.policies.writes:
        # Observe: nothing is ever written, except taking back a finalizer an earlier spec asked for.
        return WriteDecision(Step.RELEASE_FINALIZER if inputs.has_finalizer else Step.NOTHING)
    if not inputs.enabled:
        disabled = _managed("False", MANAGEMENT_DISABLED, "The operator is not enabled for management "
                            "(--enable-management); nothing is sent to Northflank.")  # fmt: skip
        return WriteDecision(Step.RELEASE_FINALIZER if inputs.has_finalizer else Step.NOTHING, disabled)
    if inputs.conflict_with is not None:
        message = f"{inputs.conflict_with} already manages this deployment; this resource sends nothing."
        return WriteDecision(Step.NOTHING, _managed("False", CONFLICT, message))
    name = inputs.for_provider.name if inputs.for_provider is not None else None
    if name is not None and slug(name) != inputs.deployment_id:
        message = (f"forProvider.name {name!r} makes the id {slug(name)!r} at Northflank, not "
                   f"llmModelDeploymentId {inputs.deployment_id!r}; nothing is sent.")  # fmt: skip
        return WriteDecision(Step.NOTHING, _managed("False", INVALID_NAME, message))
    if inputs.awaiting is not None:
        return WriteDecision(Step.NOTHING, None, inputs.awaiting)
    if inputs.seen.state == "unknown" or inputs.permissions is None:
        return WriteDecision(Step.NOTHING)
    if inputs.seen.state == "absent":
        return _plan_create(inputs)
    return _plan_existing(inputs)


def _failed_or(inputs: WriteInputs, condition: Condition) -> Condition:
    if inputs.write_error is not None:
        return _managed("False", WRITE_FAILED, inputs.write_error)
    return condition


def _plan_create(inputs: WriteInputs) -> WriteDecision:
    if not inputs.policies.creates:
        message = "The deployment does not exist at Northflank, and Create is not among the managementPolicies."
        return WriteDecision(Step.NOTHING, _managed("False", NOT_FOUND, message))
    denied = _missing(inputs, "Create")
    if denied is not None:
        return WriteDecision(Step.NOTHING, denied)
    if inputs.for_provider is None or inputs.for_provider.spec is None:
        message = "forProvider.spec is required to create the deployment; nothing is sent."
        return WriteDecision(Step.NOTHING, _managed("False", WRITE_FAILED, message))
    creating = _failed_or(inputs, _managed("True", CREATED, "The deployment is being created at Northflank."))
    if not inputs.create_pending:
        # Recorded on the resource first: a crash between here and the answer cannot lose the attempt.
        return WriteDecision(Step.MARK_CREATE_PENDING, creating, "Creating")
    # A create recorded earlier and not confirmed: send it (again). Ids are slugs of names, so a
    # create that did reach Northflank answers 409 and nothing is created twice.
    body = create_body(inputs.for_provider, inputs.deployment_id)
    return WriteDecision(Step.CREATE, creating, "Creating", body)


def _plan_existing(inputs: WriteInputs) -> WriteDecision:
    created = inputs.create_succeeded or inputs.create_pending or inputs.create_conflicted
    if created and not inputs.create_succeeded:
        # The GET confirmed what this resource's create attempt made.
        return WriteDecision(Step.MARK_CREATED, _managed("True", CREATED, "Created at Northflank by this resource."))
    if not created and not inputs.adopt_existing:
        message = ("The deployment exists at Northflank and was not created by this resource; set "
                   "spec.adoptExisting: true to manage it.")  # fmt: skip
        return WriteDecision(Step.RELEASE_FINALIZER if inputs.has_finalizer else Step.NOTHING,
                             _managed("False", NOT_ADOPTED, message))  # fmt: skip
    owned = (_managed("True", CREATED, "Created at Northflank by this resource.") if created
             else _managed("True", ADOPTED, "Adopted (spec.adoptExisting); managed by this resource."))  # fmt: skip
    if inputs.policies.deletes and not inputs.has_finalizer:
        return WriteDecision(Step.ADD_FINALIZER, _failed_or(inputs, owned))
    if not inputs.policies.deletes and inputs.has_finalizer:
        return WriteDecision(Step.RELEASE_FINALIZER, _failed_or(inputs, owned))
    drift = compute_drift(inputs.for_provider, inputs.seen.data) if inputs.for_provider is not None else []
    if not drift or not inputs.policies.updates:
        return WriteDecision(Step.NOTHING, owned, drift=drift)
    asked_again = inputs.refresh is not None and inputs.refresh != inputs.update_requested_at
    if inputs.updated_generation == inputs.generation and not asked_again:
        paths = ", ".join(d.path for d in drift[:3]) + (f" and {len(drift) - 3} more" if len(drift) > 3 else "")
        message = (f"The update for generation {inputs.generation} was sent and Northflank still differs "
                   f"({paths}); not resent until the spec changes or the reconcile-requested-at annotation "
                   "is set.")  # fmt: skip
        return WriteDecision(Step.NOTHING, _failed_or(inputs, _managed("False", UPDATE_NOT_CONVERGING, message)),
                             drift=drift)  # fmt: skip
    denied = _missing(inputs, "Update")
    if denied is not None:
        return WriteDecision(Step.NOTHING, denied, drift=drift)
    body = update_body(inputs.for_provider, drift) if inputs.for_provider is not None else {}
    if not body:
        return WriteDecision(Step.NOTHING, owned, drift=drift)
    return WriteDecision(Step.UPDATE, _failed_or(inputs, owned), "Updating", body, drift)


def _plan_delete(inputs: WriteInputs) -> WriteDecision:
    if not inputs.has_finalizer:
        return WriteDecision(Step.NOTHING)
    if not inputs.enabled or inputs.crd_deleting:
        why = ("the operator is not enabled for management" if not inputs.enabled
               else "the LLMModelDeployment CRD is being deleted")  # fmt: skip
        event = Event("Warning", ORPHANED, f"Deployment {inputs.deployment_id} was left at Northflank: {why}.")
        return WriteDecision(Step.RELEASE_FINALIZER, events=[event])
    created = inputs.create_succeeded or inputs.create_pending or inputs.create_conflicted
    if not inputs.policies.deletes or not (created or inputs.adopt_existing):
        return WriteDecision(Step.RELEASE_FINALIZER)
    if inputs.awaiting == "Deleting" or inputs.seen.state == "unknown":
        return WriteDecision(Step.NOTHING, None, "Deleting")
    if inputs.seen.state == "absent":
        return WriteDecision(Step.RELEASE_FINALIZER)
    if inputs.seen.phase == "deleting":
        return WriteDecision(Step.NOTHING, None, "Deleting")
    if inputs.permissions is None:
        return WriteDecision(Step.NOTHING, None, "Deleting")
    denied = _missing(inputs, "Delete")
    if denied is not None:
        return WriteDecision(Step.NOTHING, denied)
    deleting = _failed_or(inputs, _managed("True", CREATED if created else ADOPTED, "Being deleted at Northflank."))
    return WriteDecision(Step.DELETE, deleting, "Deleting")


# -- status --------------------------------------------------------------------------------------


def overlay_status(
    status: Mapping[str, Any],
    *,
    managed: Condition | None,
    writing: Writing | None,
    stalled: bool,
    management: Mapping[str, Any] | None,
    generation: int,
    now: datetime,
) -> dict[str, Any]:
    """``status`` with the Managed condition, Reconciling (while writing) and Stalled (not converging),
    and ``status.management``. ``managed`` None keeps the Managed condition already there."""
    existing = [c for c in status.get("conditions", []) if isinstance(c, Mapping)]
    desired: list[Condition] = []
    for stored in existing:
        kind, reason = stored.get("type"), stored.get("reason")
        if kind == MANAGED:
            continue
        # Reconciling and Stalled of an earlier write go once it is over; the observation's own stay.
        if kind == RECONCILING and (writing or reason in _WRITING_REASONS):
            continue
        # A write in progress is not stalled (a 404 before a create, for one): kstatus would call it Failed.
        if kind == STALLED and (stalled or writing or reason in STALLING_REASONS):
            continue
        desired.append(Condition(str(kind), stored.get("status", "Unknown"), str(stored.get("reason", "")),
                                 str(stored.get("message", ""))))  # fmt: skip
    previous = next((c for c in existing if c.get("type") == MANAGED), None)
    if managed is None and previous is not None:
        managed = Condition(MANAGED, previous.get("status", "Unknown"), str(previous.get("reason", "")),
                            str(previous.get("message", "")))  # fmt: skip
    if writing is not None:
        desired.append(Condition(RECONCILING, "True", writing, f"{writing} the deployment at Northflank."))
    if stalled and managed is not None:
        desired.append(Condition(STALLED, "True", managed.reason, managed.message))
    if managed is not None:
        desired.append(managed)
    new = dict(status)
    conditions = merge_conditions(existing, desired, generation=generation, now=now)
    # Conditions kept from before keep their own observedGeneration.
    before = {c.get("type"): c for c in existing}
    for condition in conditions:
        old = before.get(condition["type"])
        if old is not None and condition["type"] != MANAGED and _same_condition(old, condition):
            condition["observedGeneration"] = old.get("observedGeneration", condition["observedGeneration"])
    new["conditions"] = conditions
    if management:
        new["management"] = dict(management)
    return new


def _same_condition(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return all(old.get(k) == new.get(k) for k in ("status", "reason", "message"))
