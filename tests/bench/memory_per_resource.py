"""Memory the operator keeps per resource, by component, measured with tracemalloc (``make bench-memory``).

It builds what the running operator holds for N resources (default 10,000 over 20 projects): the
registry's view of each object (spec and the status it last wrote, as the API server returns it),
the observer's attachments and observation cache, the planner's groups, targets and heaps, the work
queue's stale deadlines and the reconciler's record of what it wrote. The
whole-process RSS at that scale, kopf's watch included, is measured end to end by ``make bench``.
"""

from __future__ import annotations

import argparse
import copy
import gc
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from pydantic import SecretStr

from northflank_llm_operator.controller import Controller
from northflank_llm_operator.credentials import CredentialResolver
from northflank_llm_operator.northflank import LLMModelDeployment
from northflank_llm_operator.registry import Registry
from northflank_llm_operator.resource import LLMModelDeploymentSpec
from northflank_llm_operator.settings import OperatorSettings
from northflank_llm_operator.status import Observation, Timing, compute_status
from tests.unit.payloads import full_deployment


def resource_body(index: int, project: str, status: dict[str, Any]) -> dict[str, Any]:
    name = f"model-{index:05d}"
    return {
        "apiVersion": "northflank-llm-operator.dev/v1alpha1",
        "kind": "LLMModelDeployment",
        "metadata": {
            "name": name,
            "namespace": "fleet",
            "uid": f"6c1f2a4e-0000-4000-8000-{index:012d}",
            "generation": 1,
            "resourceVersion": str(1000 + index),
        },
        "spec": {"projectId": project, "llmModelDeploymentId": name},
        # Each watch event brings its own copy of the object.
        "status": copy.deepcopy(status),
    }


def measure(what: str, build: Callable[[], object], count: int) -> tuple[object, int]:
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    print(f"{what:<48} {used / 1e6:8.1f} MB  {used / count / 1e3:6.2f} KB per resource")
    return kept, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--projects", type=int, default=20)
    args = parser.parse_args()
    n, projects = args.n, args.projects
    now = datetime.now(UTC)
    timing = Timing(now=now, heartbeat=timedelta(0), stale_after=timedelta(minutes=3), effective_interval=60)

    def statuses() -> list[dict[str, Any]]:
        out = []
        for i in range(n):
            deployment = LLMModelDeployment.model_validate(full_deployment(id=f"model-{i:05d}"))
            out.append(compute_status({}, Observation(deployment), generation=1, timing=timing).status)
        return out

    tracemalloc.start()
    print(f"{n} resources over {projects} projects")
    written, _ = measure("statuses as written (transient input)", statuses, n)
    assert isinstance(written, list)

    def registry(statuses: list[dict[str, Any]] = written) -> Registry:
        reg = Registry()
        for i, status in enumerate(statuses):
            reg.observe(None, resource_body(i, f"project-{i % projects}", status))
        reg.take_pending()
        return reg

    kept_registry, registry_bytes = measure("registry (spec + last written status)", registry, n)
    written.clear()
    gc.collect()

    assert isinstance(kept_registry, Registry)

    def observer() -> Controller:
        # The observer (planner, attachments, one cached observation per target), the work queue (a
        # stale deadline per key) and the reconciler's record of what it wrote: what a steady fleet holds.
        settings = OperatorSettings()
        token = SecretStr("bench-token-0123456789")
        credentials = CredentialResolver(cast(Any, None), default_token=token, cache_seconds=30)
        controller = Controller(registry=kept_registry, client=cast(Any, None), credentials=credentials,
                                kube=cast(Any, None), settings=settings, events=cast(Any, object()))  # fmt: skip
        for resource in kept_registry:
            body = full_deployment(id=resource.key.name)
            observation = Observation(LLMModelDeployment.model_validate(body))  # each target keeps its own
            spec = LLMModelDeploymentSpec.model_validate(resource.spec)
            controller.observer.attach(resource.key, resource.uid, resource.generation, spec,
                                       observed_before=True, refresh=None, handled_refresh=None)  # fmt: skip
            attachment = controller.observer._resources[resource.key].attachment
            assert attachment is not None
            controller.observer._store(attachment.group, [attachment.deployment_id], observation, sent=1)
            controller.reconciler._applied[resource.key] = (resource.uid, 1)
            controller.queue.add_after(resource.key, 180.0)
        controller.planner.next_request()
        return controller

    _, observer_bytes = measure("observer, queue, reconciler (+ planner)", observer, n)
    total = registry_bytes + observer_bytes
    print(f"{'total kept by the operator':<48} {total / 1e6:8.1f} MB  {total / n / 1e3:6.2f} KB per resource")
    assert kept_registry is not None


if __name__ == "__main__":
    main()
