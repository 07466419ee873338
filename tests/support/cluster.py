"""Drive ``LLMModelDeployment`` resources of one test namespace (integration tests): written with the
pinned kubectl (as users do), read and waited for over HTTP (kube_api: no process per poll)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tests.controlplane.controlplane import ControlPlane
from tests.support.kube_api import client, get_json, llmd_path
from tests.support.operator_process import OperatorProcess
from tests.support.waiting import wait_for

#: The project resources name unless a test says otherwise.
PROJECT = "llm-project"
# Polls run every second in the integration tests; a few intervals plus watch latency on a loaded 2-core box.
DEADLINE = 30.0
#: Seconds between two reads of a wait: each is one HTTP GET on a kept-alive connection.
POLL = 0.1
API_VERSION = "northflank-llm-operator.dev/v1alpha1"


def without_nulls(value: Any) -> Any:
    """A Northflank answer as the status mirrors it: without JSON nulls (the CRD has no nullable fields)."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value if v is not None]
    return value


def conditions_by_type(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions", [])}


#: ``kubectl get llmd`` headers, and ``-o wide``'s (the CRD's printer columns).
DEFAULT_COLUMNS = ["NAME", "READY", "PHASE", "REASON", "MODEL", "GPU", "LAST CHANGE", "AGE"]
WIDE_COLUMNS = [*DEFAULT_COLUMNS, "ENGINE", "REPLICAS", "URL", "PROJECT", "DEPLOYMENT", "EXPECTED", "INTERVAL(S)",
                "MESSAGE"]  # fmt: skip


def parse_table(text: str, headers: Iterable[str]) -> list[dict[str, str]]:
    """Rows of ``kubectl get``'s table as {header: cell}: cells start where their header starts (kubectl
    aligns them so), so a cell may hold spaces. ``headers`` are the expected headers, in order; a header
    missing from the output fails here."""
    lines = text.splitlines()
    header, names = lines[0], list(headers)
    assert header.split() == " ".join(names).split(), f"unexpected columns: {header!r}"
    starts: list[int] = []
    for name in names:
        found = header.find(name, starts[-1] + 1 if starts else 0)
        assert found >= 0, f"no {name!r} column in {header!r}"
        starts.append(found)
    ends = [*starts[1:], None]
    return [
        {name: line[start:end].strip() for name, start, end in zip(names, starts, ends, strict=True)}
        for line in lines[1:]
    ]


def delete_all_resources(plane: ControlPlane, namespace: str) -> None:
    """What a test leaves behind would be polled by the all-namespaces operators of later test modules
    (and spend their budget)."""
    response = client(plane).delete(llmd_path(namespace))  # kubectl delete --all --wait=false, one request
    if response.status_code != 404:  # --ignore-not-found
        response.raise_for_status()


@dataclass
class Cluster:
    plane: ControlPlane
    namespace: str
    operator: OperatorProcess

    def manifest(self, name: str, deployment_id: str, *, project: str = PROJECT, **spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": "LLMModelDeployment",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {"projectId": project, "llmModelDeploymentId": deployment_id, **spec},
        }

    def apply(self, name: str, deployment_id: str, **spec: Any) -> None:
        self.plane.kubectl("apply", "-f", "-", input=json.dumps(self.manifest(name, deployment_id, **spec)))

    def apply_all(self, manifests: Iterable[dict[str, Any]]) -> None:
        """Every manifest in one ``kubectl apply`` of a v1 List (one burst of watch events)."""
        listing = {"apiVersion": "v1", "kind": "List", "items": list(manifests)}
        self.plane.kubectl("apply", "-f", "-", input=json.dumps(listing))

    def get(self, name: str) -> dict[str, Any]:
        return get_json(self.plane, llmd_path(self.namespace, name))

    def get_all(self) -> dict[str, dict[str, Any]]:
        """Every resource of the namespace by name, read in one call."""
        items: list[dict[str, Any]] = get_json(self.plane, llmd_path(self.namespace))["items"]
        return {item["metadata"]["name"]: item for item in items}

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def condition(self, name: str, kind: str) -> dict[str, Any]:
        return next((c for c in self.status(name).get("conditions", []) if c["type"] == kind), {})

    def wait_status(
        self, name: str, check: Callable[[dict[str, Any]], bool], what: str, *, timeout: float = DEADLINE
    ) -> dict[str, Any]:
        def satisfied() -> dict[str, Any] | None:
            self.operator.assert_alive()
            status = self.status(name)
            return status if check(status) else None

        try:
            return wait_for(satisfied, timeout=timeout, message=f"{name}: {what}", interval=POLL)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlast status: {json.dumps(self.status(name), indent=1)}") from None

    def wait_phase(self, name: str, phase: str) -> dict[str, Any]:
        return self.wait_status(name, lambda status: status.get("phase") == phase, f"phase {phase}")

    def wait_condition(
        self, name: str, kind: str, status: str, reason: str | None = None, *, timeout: float = DEADLINE
    ) -> dict[str, Any]:
        def matches(current: dict[str, Any]) -> bool:
            found = conditions_by_type(current).get(kind, {})
            return found.get("status") == status and (reason is None or found.get("reason") == reason)

        return self.wait_status(name, matches, f"{kind}={status} ({reason or 'any reason'})", timeout=timeout)

    def wait_all_ready(self, names: Iterable[str], *, timeout: float = DEADLINE) -> dict[str, dict[str, Any]]:
        """Wait until every named resource is Ready=True (one listing per check); returns them all."""
        wanted = set(names)

        def not_ready(items: dict[str, dict[str, Any]]) -> list[str]:
            return sorted(
                name
                for name in wanted
                if conditions_by_type(items.get(name, {}).get("status") or {}).get("Ready", {}).get("status") != "True"
            )

        def all_ready() -> dict[str, dict[str, Any]] | None:
            self.operator.assert_alive()
            items = self.get_all()
            return items if not not_ready(items) else None

        try:
            return wait_for(all_ready, timeout=timeout, message=f"{len(wanted)} resources Ready=True", interval=POLL)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; not ready: {not_ready(self.get_all())}") from None

    def events(self, name: str) -> list[dict[str, Any]]:
        path = f"/api/v1/namespaces/{self.namespace}/events"
        items: list[dict[str, Any]] = get_json(self.plane, path, fieldSelector=f"involvedObject.name={name}")["items"]
        return items

    def wait_events(
        self, name: str, check: Callable[[list[dict[str, Any]]], bool], what: str, *, timeout: float = DEADLINE
    ) -> list[dict[str, Any]]:
        """The resource's Events once ``check`` holds them: the operator posts an Event just after the
        status patch it reports, so a read right after a status wait can come before it."""

        def satisfied() -> list[dict[str, Any]] | None:
            found = self.events(name)
            return found if check(found) else None

        return wait_for(satisfied, timeout=timeout, message=f"{name}: events {what}", interval=POLL)
