"""Kubernetes writes and reads the poller needs outside kopf's handler cycle.

kopf has no public API to patch an object from a background task, so status, Events and Secrets
go through the official client. Its calls block, so each runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from .credentials import CredentialsError
from .resource import API_VERSION, GROUP, KIND, PLURAL, VERSION, ResourceKey
from .status import Event

T = TypeVar("T")

COMPONENT = "northflank-llm-operator"
_MAX_EVENT_MESSAGE = 1024
_REQUEST_TIMEOUT_SECONDS = 30


class ResourceGoneError(Exception):
    """The resource was deleted while it was being polled."""


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

    def __init__(self, api_client: Any, *, instance: str, max_concurrent_calls: int = 16) -> None:
        self._api = api_client
        self._custom = kubernetes.client.CustomObjectsApi(api_client)
        # Events and Secrets go through the plain ApiClient: kubernetes.client.CoreV1Api is one huge
        # generated module that alone adds about 70 MiB to the process for two calls.
        self._instance = instance
        # The client blocks; its own worker threads keep a burst of status writes (a listing of a
        # hundred changed deployments) from queueing behind asyncio's small default pool.
        self._executor = ThreadPoolExecutor(max_workers=max_concurrent_calls, thread_name_prefix="kubernetes")

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def patch_status(self, key: ResourceKey, patch: Mapping[str, Any]) -> Mapping[str, Any]:
        """Merge-patch the status subresource; returns the object as the API server stored it."""

        def call() -> Mapping[str, Any]:
            result = self._custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                key.namespace,
                PLURAL,
                key.name,
                {"status": dict(patch)},
                field_manager=COMPONENT,
                _content_type="application/merge-patch+json",
                _request_timeout=_REQUEST_TIMEOUT_SECONDS,
            )
            if not isinstance(result, Mapping):
                raise TypeError(f"unexpected status patch response: {type(result).__name__}")
            return result

        try:
            return await self._call(call)
        except ApiException as exc:
            if exc.status == 404:
                raise ResourceGoneError(str(key)) from None
            raise

    def _core_v1(self, method: str, path: str, path_params: dict[str, str], body: Any = None) -> Any:
        """One call to the core/v1 API, answered as plain JSON (dicts), errors as ApiException."""
        request = self._api.param_serialize(
            method=method,
            resource_path=path,
            path_params=path_params,
            header_params={"Accept": "application/json", "Content-Type": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(*request, _request_timeout=_REQUEST_TIMEOUT_SECONDS)
        response.read()
        return self._api.response_deserialize(response, {"200": "object", "201": "object"}).data

    async def record_event(self, key: ResourceKey, uid: str, event: Event) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{key.name}.", "namespace": key.namespace},
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
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self._call(
            self._core_v1, "POST", "/api/v1/namespaces/{namespace}/events", {"namespace": key.namespace}, body
        )

    async def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        """The decoded value of one key of a Secret, or CredentialsError saying what is wrong."""
        try:
            secret = await self._call(
                self._core_v1,
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
