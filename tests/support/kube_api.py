"""The local API server over HTTP from the test process: one kept-alive connection per control plane.

Waits poll resources many times a second; forking kubectl for each poll cost ~0.1-0.2 s of CPU per
call (a Go binary starting, reading the kubeconfig and discovery) and about a core in total on a
2-core machine. kubectl stays where the tests prove something about kubectl itself (apply, printing).
"""

from __future__ import annotations

import atexit
import ssl
from functools import partial
from typing import Any

import httpx

from tests.controlplane.controlplane import ControlPlane
from tests.support.waiting import wait_for

CRD_GROUP = "northflank-llm-operator.dev"
CRD_VERSION = "v1alpha1"
CRD_PLURAL = "llmmodeldeployments"

_clients: dict[tuple[str, str, str | None], httpx.Client] = {}


def client(plane: ControlPlane, *, impersonate: str | None = None) -> httpx.Client:
    """The admin's client for ``plane`` (``impersonate``: as that user, the way ``kubectl --as`` does it).

    Kept for the session (closed at exit), so no test leaves a socket behind for the leak check."""
    key = (plane.server, plane.admin_token, impersonate)
    found = _clients.get(key)
    if found is None:
        headers = {"Authorization": f"Bearer {plane.admin_token}"}
        if impersonate is not None:
            headers["Impersonate-User"] = impersonate
        context = ssl.create_default_context(cafile=str(plane.ca_file))
        found = _clients[key] = httpx.Client(base_url=plane.server, headers=headers, verify=context, timeout=10.0)
    return found


@atexit.register
def _close_all() -> None:
    for open_client in _clients.values():
        open_client.close()
    _clients.clear()


def get_json(plane: ControlPlane, path: str, **params: str) -> dict[str, Any]:
    """GET ``path`` as the admin; an HTTP error status raises ``httpx.HTTPStatusError``."""
    response = client(plane).get(path, params=params)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def llmd_path(namespace: str, name: str | None = None) -> str:
    base = f"/apis/{CRD_GROUP}/{CRD_VERSION}/namespaces/{namespace}/{CRD_PLURAL}"
    return f"{base}/{name}" if name else base


def can_i(
    plane: ControlPlane, user: str, verb: str, resource: str, namespace: str | None, *, subresource: str = ""
) -> bool:
    """``kubectl auth can-i VERB RESOURCE [--subresource=S] --as=USER`` as one SelfSubjectAccessReview
    over HTTP, impersonated exactly as kubectl does it (the API server adds a ServiceAccount's groups).

    ``resource`` reads as kubectl reads it: ``plural[.group][/name]``; a plural without a dot is the
    core group (``events`` is core/v1 Events, as kubectl resolves it); ``namespace`` None: all namespaces."""
    kind, _, name = resource.partition("/")
    plural, _, group = kind.partition(".")
    attributes = {"verb": verb, "resource": plural, "group": group, "namespace": namespace or ""}
    if name:
        attributes["name"] = name
    if subresource:
        attributes["subresource"] = subresource
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes},
    }
    response = client(plane, impersonate=user).post(
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", json=review
    )
    response.raise_for_status()
    return bool(response.json()["status"].get("allowed", False))


def crd_established(plane: ControlPlane, name: str) -> bool:
    """Whether the API server serves the CRD ``name`` (its Established condition is True)."""
    crd = get_json(plane, f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def wait_established(plane: ControlPlane, *names: str, timeout: float = 60) -> None:
    """Wait until every CRD in ``names`` is Established.

    Not `kubectl wait --for=condition=established`: it fails at once ("accessor error: <nil>") when it
    reads a CRD so new that the API server has not written any condition yet (seen in 1 of 6 runs)."""
    for name in names:
        wait_for(partial(crd_established, plane, name), timeout=timeout, message=f"CRD {name} Established")
