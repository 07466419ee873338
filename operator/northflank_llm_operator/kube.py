"""Kubernetes writes and reads the poller needs outside kopf's handler cycle.

kopf has no public API to patch an object from a background task, so status, Events and Secrets
go through the official client. Its calls block, so each runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from .conditions import format_time
from .credentials import CredentialsError
from .leader import FencedError, LeaseFence
from .metrics import AccessVerdict
from .resource import API_VERSION, GROUP, KIND, PLURAL, VERSION, ResourceKey
from .status import Event

T = TypeVar("T")

COMPONENT = "northflank-llm-operator"
_MAX_EVENT_MESSAGE = 1024
_REQUEST_TIMEOUT_SECONDS = 30
# The worker thread's own timeout should fire first; this bounds the wait for the thread itself.
_CALL_DEADLINE_SECONDS = _REQUEST_TIMEOUT_SECONDS + 5


class ResourceGoneError(Exception):
    """The resource that was polled is gone (deleted, or deleted and re-created under the same name)."""


class StatusConflictError(Exception):
    """The object changed since it was read; ``current`` is the object as it is now (same uid)."""

    def __init__(self, current: Mapping[str, Any]) -> None:
        super().__init__("the object changed since it was read")
        self.current = current


class StatusRejectedError(Exception):
    """The API server refused the status itself (schema, integer range, size): not worth retrying as is."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def _refused_status(exc: ApiException) -> StatusRejectedError | None:
    """Whether an error answer to a status patch means "this status can never be stored"."""
    body = str(exc.body or "")
    message = body
    try:
        parsed = json.loads(body)
        if isinstance(parsed, Mapping) and isinstance(parsed.get("message"), str):
            message = parsed["message"]
    except ValueError:
        pass
    message = message[:300]
    if exc.status in (400, 413, 422):
        return StatusRejectedError(exc.status, message)
    if exc.status == 500 and ("too large" in body or "exceeded" in body or "limit" in body):
        return StatusRejectedError(exc.status, message)  # etcd's size limit
    return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def load_api_client() -> Any:
    """In-cluster credentials when running in a pod, else the current kubeconfig context."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return kubernetes.client.ApiClient(configuration)


class KubernetesGateway:
    """Status patches, Events and Secret reads for LLMModelDeployment resources."""

    def __init__(
        self, api_client: Any, *, instance: str, max_concurrent_calls: int = 16, fence: LeaseFence | None = None
    ) -> None:
        self._api = api_client
        # Status patches and Events are refused (FencedError, nothing sent) once the Lease may be lost;
        # reads are not fenced.
        self._fence = fence or LeaseFence.unfenced()
        self._custom = kubernetes.client.CustomObjectsApi(api_client)
        # Events and Secrets go through the plain ApiClient: kubernetes.client.CoreV1Api is one huge
        # generated module that alone adds about 70 MiB to the process for two calls.
        self._instance = instance
        # The client blocks; its own worker threads keep a burst of status writes (a listing of a
        # hundred changed deployments) from queueing behind asyncio's small default pool.
        self._executor = ThreadPoolExecutor(max_workers=max_concurrent_calls, thread_name_prefix="kubernetes")

    async def _call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # Every call has the client's request timeout; the deadline here also bounds a worker thread
        # that is stuck for any other reason, so no resource stays in flight forever.
        call = functools.partial(function, *args, **kwargs)
        future = asyncio.get_running_loop().run_in_executor(self._executor, call)
        return await asyncio.wait_for(future, _CALL_DEADLINE_SECONDS)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _check_fence(self, what: str) -> None:
        """Called in the worker thread right before the request: a write that queued behind others
        while the Lease was lost is refused too."""
        if not self._fence.permit():
            raise FencedError(f"not sending {what}: this replica no longer holds the leader election Lease")

    async def patch_status(
        self, key: ResourceKey, patch: Mapping[str, Any], *, uid: str | None = None, resource_version: str | None = None
    ) -> Mapping[str, Any]:
        """Merge-patch the status subresource; returns the object as the API server stored it.

        With ``resource_version`` the write is conditional (the API server compares it before applying
        the status), so it never lands on a different object of the same name: a re-created object has
        a newer resourceVersion. A conflict is told apart by the object's uid: ResourceGoneError when
        the object polled is gone, StatusConflictError with the current object when it merely changed.
        """
        body: dict[str, Any] = {"status": dict(patch)}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return await self._merge_patch(key, body, status=True, uid=uid)

    async def patch_metadata(
        self, key: ResourceKey, metadata: Mapping[str, Any], *, uid: str, resource_version: str
    ) -> Mapping[str, Any]:
        """Merge-patch the object's metadata (management's annotations and finalizer) at exactly the
        resourceVersion that was read; returns the stored object. Errors as :meth:`patch_status`."""
        body: dict[str, Any] = {"metadata": {**metadata, "resourceVersion": resource_version}}
        return await self._merge_patch(key, body, status=False, uid=uid)

    async def _merge_patch(
        self, key: ResourceKey, body: dict[str, Any], *, status: bool, uid: str | None
    ) -> Mapping[str, Any]:
        """One merge patch of the object (``status``: its status subresource), fenced, with the errors
        told apart: gone (404, or a 409 from an object re-created under the name), changed (409), or
        a status the API server will never take."""
        what = "status" if status else "metadata"
        patch = (
            self._custom.patch_namespaced_custom_object_status
            if status
            else self._custom.patch_namespaced_custom_object
        )

        def call() -> Mapping[str, Any]:
            self._check_fence(f"the {what} patch of {key}")
            result = patch(
                GROUP,
                VERSION,
                key.namespace,
                PLURAL,
                key.name,
                body,
                field_manager=COMPONENT,
                _content_type="application/merge-patch+json",
                _request_timeout=_REQUEST_TIMEOUT_SECONDS,
            )
            if not isinstance(result, Mapping):
                raise TypeError(f"unexpected {what} patch response: {type(result).__name__}")
            return result

        try:
            return await self._call(call)
        except ApiException as exc:
            if exc.status == 404:
                raise ResourceGoneError(str(key)) from None
            # A 409 only comes from the resourceVersion precondition.
            if exc.status == 409 and "resourceVersion" in body.get("metadata", {}):
                current = await self.read_resource(key)
                if current is None or (uid and current.get("metadata", {}).get("uid") != uid):
                    raise ResourceGoneError(str(key)) from None
                raise StatusConflictError(current) from None
            rejected = _refused_status(exc) if status else None
            if rejected is not None:
                raise rejected from None
            raise

    async def crd_deleting(self) -> bool:
        """Whether the LLMModelDeployment CRD is being deleted (or is gone): then the API server deletes
        every resource, and nothing may be deleted at Northflank because of it."""
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{PLURAL}.{GROUP}"
        try:
            crd = await self._call(self._json_call, "GET", path)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return bool(_mapping(_mapping(crd).get("metadata")).get("deletionTimestamp"))

    async def read_resource(self, key: ResourceKey) -> Mapping[str, Any] | None:
        """The object as stored now, or None when it does not exist."""

        def call() -> Mapping[str, Any]:
            result = self._custom.get_namespaced_custom_object(
                GROUP, VERSION, key.namespace, PLURAL, key.name, _request_timeout=_REQUEST_TIMEOUT_SECONDS
            )
            if not isinstance(result, Mapping):
                raise TypeError(f"unexpected response: {type(result).__name__}")
            return result

        try:
            return await self._call(call)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def list_resource_uids(self, namespace: str | None) -> tuple[dict[ResourceKey, str], str] | None:
        """Every LLMModelDeployment (of ``namespace``, or of all namespaces) by key with its uid, and the
        list's resourceVersion; metadata only, so a list of ten thousand stays small. None when the
        resource is not served (the CRD is missing)."""
        path = f"/apis/{GROUP}/{VERSION}/" + (f"namespaces/{namespace}/{PLURAL}" if namespace else PLURAL)
        metadata_only = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
        try:
            listing = await self._call(self._json_call, "GET", path, accept=metadata_only)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        found: dict[ResourceKey, str] = {}
        for item in listing.get("items") or [] if isinstance(listing, Mapping) else []:
            metadata = item.get("metadata") or {}
            found[ResourceKey(str(metadata.get("namespace", "")), str(metadata.get("name", "")))] = str(
                metadata.get("uid", "")
            )
        return found, str((listing.get("metadata") or {}).get("resourceVersion", ""))

    async def resource_served(self) -> bool:
        """Whether the API server serves LLMModelDeployments (the CRD exists and is established)."""
        try:
            discovery = await self._call(self._json_call, "GET", f"/apis/{GROUP}/{VERSION}")
        except ApiException as exc:
            if exc.status in (404, 503):
                return False
            raise
        resources = discovery.get("resources") if isinstance(discovery, Mapping) else None
        return any(isinstance(r, Mapping) and r.get("name") == PLURAL for r in resources or [])

    def _json_call(
        self,
        method: str,
        path: str,
        path_params: dict[str, str] | None = None,
        body: Any = None,
        *,
        accept: str = "application/json",
        content_type: str = "application/json",
    ) -> Any:
        """One call to the API server, answered as plain JSON (dicts), errors as ApiException."""
        request = self._api.param_serialize(
            method=method,
            resource_path=path,
            path_params=path_params,
            header_params={"Accept": accept, "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(*request, _request_timeout=_REQUEST_TIMEOUT_SECONDS)
        response.read()
        return self._api.response_deserialize(response, {"200": "object", "201": "object"}).data

    async def review_metrics_access(self, token: str) -> AccessVerdict:
        """Who ``token`` is (TokenReview) and whether it may ``get`` the non-resource URL ``/metrics``
        (SubjectAccessReview): the checks of controller-runtime's secure metrics endpoint."""
        review = await self._call(
            self._json_call,
            "POST",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}},
        )
        status = _mapping(_mapping(review).get("status"))
        user = _mapping(status.get("user"))
        username = user.get("username")
        if status.get("authenticated") is not True or not isinstance(username, str):
            return AccessVerdict(authenticated=False, allowed=False, detail="a token the API server does not know")
        spec: dict[str, Any] = {
            "user": username,
            "groups": [g for g in user.get("groups") or [] if isinstance(g, str)],
            "nonResourceAttributes": {"path": "/metrics", "verb": "get"},
        }
        if isinstance(user.get("uid"), str):
            spec["uid"] = user["uid"]
        if isinstance(user.get("extra"), Mapping):
            spec["extra"] = user["extra"]
        access = await self._call(
            self._json_call,
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            body={"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec},
        )
        allowed = _mapping(_mapping(access).get("status")).get("allowed") is True
        return AccessVerdict(authenticated=True, allowed=allowed, detail=repr(username)[:200])

    async def create_event(
        self,
        key: ResourceKey,
        uid: str,
        event: Event,
        *,
        name: str,
        count: int,
        first_timestamp: datetime,
        last_timestamp: datetime,
    ) -> bool:
        """Create an Event under the given name (see events.py); False when one of that name exists."""
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": key.namespace},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": key.name,
                "namespace": key.namespace,
                "uid": uid,
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message[:_MAX_EVENT_MESSAGE],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": format_time(first_timestamp),
            "lastTimestamp": format_time(last_timestamp),
            "count": count,
        }

        def call() -> Any:
            self._check_fence(f"the {event.reason} Event of {key}")
            return self._json_call("POST", "/api/v1/namespaces/{namespace}/events", {"namespace": key.namespace}, body)

        try:
            await self._call(call)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def patch_event(self, namespace: str, name: str, *, count: int, last_timestamp: datetime) -> bool:
        """Set an existing Event's count and lastTimestamp (one merge patch); False when it is gone."""

        def call() -> Any:
            self._check_fence(f"a count of Event {namespace}/{name}")
            return self._json_call(
                "PATCH",
                "/api/v1/namespaces/{namespace}/events/{name}",
                {"namespace": namespace, "name": name},
                {"count": count, "lastTimestamp": format_time(last_timestamp)},
                content_type="application/merge-patch+json",
            )

        try:
            await self._call(call)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        """The decoded value of one key of a Secret, or CredentialsError saying what is wrong."""
        try:
            secret = await self._call(
                self._json_call,
                "GET",
                "/api/v1/namespaces/{namespace}/secrets/{name}",
                {"namespace": namespace, "name": name},
            )
        except ApiException as exc:
            if exc.status == 404:
                raise CredentialsError(
                    "CredentialsNotFound", f"Secret {name!r} does not exist in namespace {namespace!r}."
                ) from None
            if exc.status == 403:
                raise CredentialsError(
                    "CredentialsForbidden",
                    f"The operator is not allowed to read Secret {name!r} in namespace {namespace!r}.",
                ) from None
            # 5xx and 429 are the API server's own trouble: retried soon, not Stalled. 401 or 400
            # will not go away by themselves.
            transient = exc.status is None or exc.status >= 500 or exc.status == 429
            raise CredentialsError(
                "CredentialsUnavailable",
                f"Reading Secret {name!r} failed with HTTP {exc.status}.",
                transient=transient,
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            # Timeouts, refused or reset connections: the API server did not answer.
            raise CredentialsError(
                "CredentialsUnavailable",
                f"Reading Secret {name!r} failed: the Kubernetes API server did not answer ({type(exc).__name__}).",
                transient=True,
            ) from None
        data = secret.get("data") if isinstance(secret, Mapping) else None
        encoded = data.get(key) if isinstance(data, Mapping) else None
        if encoded is None:
            raise CredentialsError("CredentialsNotFound", f"Secret {name!r} has no key {key!r}.")
        try:
            value = base64.b64decode(encoded, validate=True).decode().strip()
        except (binascii.Error, UnicodeDecodeError):
            raise CredentialsError("CredentialsInvalid", f"Key {key!r} of Secret {name!r} is not text.") from None
        if not value:
            raise CredentialsError("CredentialsInvalid", f"Key {key!r} of Secret {name!r} is empty.")
        return value
