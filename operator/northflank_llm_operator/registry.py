"""In-memory view of the LLMModelDeployment resources the operator polls, fed by kopf's watch."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .resource import (
    CREATE_PENDING_ANNOTATION,
    CREATE_SUCCEEDED_ANNOTATION,
    DELETE_FINALIZER,
    PAUSED_ANNOTATION,
    RECONCILE_REQUESTED_AT_ANNOTATION,
    ResourceKey,
)
from .status import Event

#: Values of the paused annotation, compared case-insensitively after stripping (YAML's and most
#: tools' spellings of a boolean); anything else pauses nothing and earns a Warning Event.
_PAUSE_TRUE = ("true", "yes", "1", "on")
_PAUSE_FALSE = ("false", "no", "0", "off", "")
INVALID_PAUSE_ANNOTATION = "InvalidPauseAnnotation"


@dataclass
class TrackedResource:
    key: ResourceKey
    uid: str
    generation: int
    spec: Mapping[str, Any]
    #: The status as last seen from the API server (watch event or our own write's response).
    status: Mapping[str, Any]
    resource_version: str
    #: The reconcile-requested-at annotation (a refresh request), if set.
    reconcile_requested_at: str | None = None
    #: The paused annotation is true (true, yes, 1 or on, any case): no Northflank request for it.
    paused: bool = False
    #: The paused annotation's value (escaped) when it means neither true nor false, else None.
    pause_annotation_invalid: str | None = None
    #: Management: the create markers (annotation -> value), the finalizers, whether the object is being
    #: deleted (only kept while it carries the delete-at-Northflank finalizer), and its creationTimestamp.
    markers: Mapping[str, str] = field(default_factory=dict)
    finalizers: tuple[str, ...] = ()
    deleting: bool = False
    created_at: str = ""


def parse_pause_annotation(value: object) -> tuple[bool, str | None]:
    """Whether the paused annotation's value pauses, and the value (escaped for a message) when it
    means nothing. An absent annotation is ``(False, None)``."""
    if value is None:
        return False, None
    text = value if isinstance(value, str) else str(value)
    if text.strip().lower() in _PAUSE_TRUE:
        return True, None
    if text.strip().lower() in _PAUSE_FALSE:
        return False, None
    # repr() without its quotes: control characters from a hand-edited annotation stay visible and inert.
    return False, repr(text)[1:-1][:100]


def invalid_pause_event(value: str) -> Event:
    """The Warning Event for a paused annotation whose value means nothing."""
    return Event(
        "Warning",
        INVALID_PAUSE_ANNOTATION,
        f"The annotation {PAUSED_ANNOTATION} is '{value}', which means neither true (true, yes, 1, on) nor "
        "false (false, no, 0, off); polling goes on as if it were not set.",
    )


def _requests_of(metadata: Mapping[str, Any]) -> tuple[str | None, bool, str | None]:
    """What the resource's annotations ask of the operator: a refresh value, whether it is paused, and
    the pause value when it means nothing."""
    annotations = metadata.get("annotations")
    if not isinstance(annotations, Mapping):
        return None, False, None
    requested = annotations.get(RECONCILE_REQUESTED_AT_ANNOTATION)
    paused, invalid = parse_pause_annotation(annotations.get(PAUSED_ANNOTATION))
    return (requested if isinstance(requested, str) and requested else None), paused, invalid


_MARKERS = (CREATE_PENDING_ANNOTATION, CREATE_SUCCEEDED_ANNOTATION)


def _management_of(metadata: Mapping[str, Any]) -> tuple[dict[str, str], tuple[str, ...], bool]:
    annotations = metadata.get("annotations")
    annotations = annotations if isinstance(annotations, Mapping) else {}
    markers = {name: str(annotations[name]) for name in _MARKERS if name in annotations}
    finalizers = metadata.get("finalizers")
    kept = tuple(str(f) for f in finalizers) if isinstance(finalizers, list) else ()
    return markers, kept, bool(metadata.get("deletionTimestamp"))


def resource_version_order(first: str, second: str) -> int | None:
    """-1, 0 or 1 as ``first`` is older than, the same as or newer than ``second``; None when they
    cannot be compared. resourceVersions are opaque by contract; kube-apiserver's are etcd revisions,
    so they are compared as integers when both parse (the one comparison the operator makes)."""
    try:
        a, b = int(first), int(second)
    except ValueError:
        return None
    return (a > b) - (a < b)


def _newer(candidate: str, known: str) -> bool:
    """Whether a watch body is at least as new as what we hold (stops a late watch event from rolling
    back our own write); an incomparable one is taken."""
    return resource_version_order(candidate, known) != -1


def not_newer(resource_version: str, list_version: str) -> bool:
    """Whether an object at ``resource_version`` is covered by a listing at ``list_version``."""
    return resource_version_order(resource_version, list_version) in (-1, 0)


class Registry:
    """Which resources exist and what each asks for: a view of kopf's watch, nothing scheduled here.

    Keys of resources that appeared, changed their spec or went away collect in ``pending`` until the
    controller takes them (:meth:`take_pending`); ``changed`` wakes it.
    """

    def __init__(self) -> None:
        self._resources: dict[ResourceKey, TrackedResource] = {}
        #: Resources by the deployment they name (team, project, id): who else manages it, without a scan.
        self._by_deployment: dict[tuple[Any, Any, Any], set[ResourceKey]] = {}
        self._pending: set[ResourceKey] = set()
        self._pause_warnings: list[tuple[TrackedResource, Event]] = []
        self.changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._resources)

    def __iter__(self) -> Iterator[TrackedResource]:
        return iter(list(self._resources.values()))

    def get(self, key: ResourceKey) -> TrackedResource | None:
        return self._resources.get(key)

    def naming(self, team_id: str | None, project_id: str, deployment_id: str) -> list[TrackedResource]:
        """Every tracked resource whose spec names this deployment."""
        keys = self._by_deployment.get((team_id, project_id, deployment_id), set())
        return [self._resources[key] for key in sorted(keys)]

    def _put(self, resource: TrackedResource) -> None:
        old = self._resources.get(resource.key)
        if old is not None:
            self._unindex(old)
        self._resources[resource.key] = resource
        self._index(resource)

    def _drop(self, key: ResourceKey) -> TrackedResource | None:
        resource = self._resources.pop(key, None)
        if resource is not None:
            self._unindex(resource)
        return resource

    def _index(self, resource: TrackedResource) -> None:
        self._by_deployment.setdefault(_deployment_of(resource.spec), set()).add(resource.key)

    def _unindex(self, resource: TrackedResource) -> None:
        target = _deployment_of(resource.spec)
        keys = self._by_deployment.get(target)
        if keys is not None:
            keys.discard(resource.key)
            if not keys:
                del self._by_deployment[target]

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Apply one watch event (``None`` is kopf's initial listing)."""
        metadata = body.get("metadata", {})
        key = ResourceKey(namespace=metadata.get("namespace", ""), name=metadata.get("name", ""))
        markers, finalizers, deleting = _management_of(metadata)
        # A resource being deleted is forgotten at once, unless the operator must delete its deployment
        # at Northflank first (its finalizer): then it is followed until the finalizer is released.
        if event_type == "DELETED" or (deleting and DELETE_FINALIZER not in finalizers):
            if self._drop(key) is not None:
                self._mark(key)
            return
        uid = str(metadata.get("uid", ""))
        generation = int(metadata.get("generation") or 0)
        resource_version = str(metadata.get("resourceVersion", ""))
        existing = self._resources.get(key)
        requested, paused, invalid = _requests_of(metadata)
        if existing is None or existing.uid != uid:
            self._put(
                TrackedResource(
                    key=key,
                    uid=uid,
                    generation=generation,
                    spec=dict(body.get("spec") or {}),
                    status=dict(body.get("status") or {}),
                    resource_version=resource_version,
                    reconcile_requested_at=requested,
                    paused=paused,
                    markers=markers,
                    finalizers=finalizers,
                    deleting=deleting,
                    created_at=str(metadata.get("creationTimestamp", "")),
                )
            )
            self._warn_pause(self._resources[key], invalid)
            self._mark(key)
            return
        if not _newer(resource_version, existing.resource_version):
            return
        self._warn_pause(existing, invalid)
        existing.status = dict(body.get("status") or {})
        existing.resource_version = resource_version
        if (requested, paused) != (existing.reconcile_requested_at, existing.paused):
            # Annotations do not bump the generation, yet a refresh or a pause must reach the reconciler.
            existing.reconcile_requested_at, existing.paused = requested, paused
            self._mark(key)
        if (markers, finalizers, deleting) != (existing.markers, existing.finalizers, existing.deleting):
            existing.markers, existing.finalizers, existing.deleting = markers, finalizers, deleting
            self._mark(key)
        if generation != existing.generation:
            self._unindex(existing)
            existing.generation = generation
            existing.spec = dict(body.get("spec") or {})
            self._index(existing)
            self._mark(key)

    def _warn_pause(self, resource: TrackedResource, invalid: str | None) -> None:
        """Record the pause value's meaning; a new meaningless value queues one Warning."""
        if invalid is not None and invalid != resource.pause_annotation_invalid:
            self._pause_warnings.append((resource, invalid_pause_event(invalid)))
            self.changed.set()  # wakes the loop even when nothing else about the resource changed
        resource.pause_annotation_invalid = invalid

    def take_pause_warnings(self) -> list[tuple[TrackedResource, Event]]:
        """Warning Events for paused annotations that mean nothing, each once; the controller hands them
        to the reconciler, which records them on its next pass over the resource."""
        warnings, self._pause_warnings = self._pause_warnings, []
        return warnings

    def _mark(self, key: ResourceKey) -> None:
        self._pending.add(key)
        self.changed.set()

    def mark_pending(self, keys: Iterable[ResourceKey]) -> None:
        """Have the controller look at these again (credentials to re-resolve, a retry)."""
        for key in keys:
            if key in self._resources:
                self._mark(key)

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    def take_pending(self) -> list[ResourceKey]:
        pending, self._pending = self._pending, set()
        return sorted(pending)

    def record_written(self, key: ResourceKey, stored: Mapping[str, Any]) -> None:
        """Remember what the API server stored after our status write."""
        resource = self._resources.get(key)
        if resource is None:
            return
        metadata = stored.get("metadata", {})
        resource_version = str(metadata.get("resourceVersion", ""))
        if _newer(resource_version, resource.resource_version):
            resource.status = dict(stored.get("status") or {})
            resource.resource_version = resource_version

    def forget(self, key: ResourceKey, *, uid: str | None = None) -> None:
        """Drop ``key`` (only if it still is the object with ``uid``, when given)."""
        resource = self._resources.get(key)
        if resource is None or (uid is not None and resource.uid != uid):
            return
        self._drop(key)
        self._mark(key)

    def keys(self) -> list[ResourceKey]:
        return list(self._resources)

    def clear(self) -> None:
        """Forget everything (the resource type itself is gone)."""
        for key in list(self._resources):
            self.forget(key)


def _deployment_of(spec: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    return spec.get("teamId"), spec.get("projectId"), spec.get("llmModelDeploymentId")
