"""Management (issue 17), the pure part: policies, the desired deployment (``spec.forProvider``), drift
between it and what Northflank reports, and the bodies of the create and update requests.

No I/O. The request bodies follow the official clients' request types (CreateLlmModelDeploymentRequest,
UpdateLlmModelDeploymentRequest; tests/contract checks them against the committed schemas).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Policy(StrEnum):
    OBSERVE = "Observe"
    CREATE = "Create"
    UPDATE = "Update"
    DELETE = "Delete"
    ALL = "*"


@dataclass(frozen=True)
class Policies:
    """spec.managementPolicies as a value: ``*`` means Create, Update and Delete (and Observe)."""

    values: frozenset[Policy] = frozenset({Policy.OBSERVE})

    @classmethod
    def from_spec(cls, values: Iterable[str] | None) -> Policies:
        """Unset or empty means ``[Observe]``; an unknown name raises ValueError (the CRD refuses it)."""
        parsed = frozenset(Policy(value) for value in values or ())
        return cls(parsed or frozenset({Policy.OBSERVE}))

    def _allows(self, policy: Policy) -> bool:
        return policy in self.values or Policy.ALL in self.values

    @property
    def creates(self) -> bool:
        return self._allows(Policy.CREATE)

    @property
    def updates(self) -> bool:
        return self._allows(Policy.UPDATE)

    @property
    def deletes(self) -> bool:
        return self._allows(Policy.DELETE)

    @property
    def writes(self) -> bool:
        return self.creates or self.updates or self.deletes


#: Counts and sizes: whole numbers (the clients type them as number; the API documents integers).
Count = Annotated[int, Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, alias_generator=to_camel)


class GpuConfiguration(_Model):
    gpu_type: str | None = None
    gpu_count: Count | None = None
    timesliced: bool | None = None


class Gpu(_Model):
    enabled: bool | None = None
    configuration: GpuConfiguration | None = None


class Storage(_Model):
    access_mode: Literal["ReadWriteMany"] | None = None
    storage_class: str | None = None
    #: Megabytes.
    storage_size: Count
    shm_size: Count | None = None


class NodeConfiguration(_Model):
    gpu: Gpu | None = None
    storage: Storage | None = None


class ParallelismConfig(_Model):
    tensor_parallelism: Count | None = None
    pipeline_parallelism: Count | None = None
    expert_parallelism: Count | None = None


class SequenceLengthConfig(_Model):
    max_model_length: Count | Literal["auto"] | None = None
    max_input_length: Count | None = None
    max_output_length: Count | None = None


class BatchingConfig(_Model):
    max_num_seqs: Count | None = None
    max_num_batched_tokens: Count | None = None


class WorkerConfig(_Model):
    replicas: Count | None = None
    parallelism_config: ParallelismConfig | None = None
    sequence_length_config: SequenceLengthConfig | None = None
    batching_config: BatchingConfig | None = None
    enable_chunked_prefill: bool | None = None
    enable_prefix_caching: bool | None = None
    enforce_eager: bool | None = None
    enable_async_scheduling: bool | None = None
    gpu_memory_utilization: float | None = None
    trust_remote_code: bool | None = None
    data_type: Literal["auto", "float16", "bfloat16"] | None = None
    kv_cache_data_type: Literal["fp8", "fp8_e5m2", "fp8_e4m3"] | None = None
    quantization: Literal["fp8", "awq", "gptq", "int4"] | None = None


class Architecture(_Model):
    type: Literal["aggregated"] | None = None
    worker_config: WorkerConfig | None = None


class Configuration(_Model):
    name: str | None = None
    engine: Literal["vllm"] | None = None
    revision: str | None = None
    node_configuration: NodeConfiguration | None = None
    architecture: Architecture | None = None


class DeploymentSpec(_Model):
    type: Literal["custom"] = "custom"
    configuration: Configuration


class Port(_Model):
    name: str = Field(min_length=1)
    internal_port: int = Field(ge=1, le=65535)
    protocol: Literal["HTTP", "HTTP/2", "TCP", "UDP"]
    public: bool | None = None
    domains: list[str] | None = None
    disable_nf_domain: bool | None = None


class ForProvider(_Model):
    """spec.forProvider: the desired deployment. Only the fields set here are owned and compared."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = None
    tags: list[str] | None = None
    ports: list[Port] | None = None
    spec: DeploymentSpec | None = None

    def wire(self) -> dict[str, Any]:
        """The fields the manifest sets, as the API spells them."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


@dataclass(frozen=True)
class Drift:
    """One difference: ``path`` like ``spec.configuration.engine``, ``ports[http].public`` or ``tags``."""

    path: str
    desired: Any
    observed: Any


def slug(name: str) -> str:
    """Northflank's id for a name: lowercase, every run of other characters one ``-``, trimmed."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def compute_drift(for_provider: ForProvider, observed: Mapping[str, Any]) -> list[Drift]:
    """Differences between what ``for_provider`` sets and ``observed`` (the GET answer's ``data``).

    ``name`` is not compared: it is the deployment's identity (the id is its slug) and no update can
    change it; a name that does not slug to the id is reported as InvalidName instead.
    """
    desired = for_provider.wire()
    drift: list[Drift] = []
    if "description" in desired:
        _compare("description", desired["description"], observed.get("description", ""), drift)
    if "tags" in desired:
        seen = observed.get("tags", [])
        # Tags are a set at Northflank: the order they come back in is no change.
        if not (isinstance(seen, list) and sorted(map(str, seen)) == sorted(desired["tags"])):
            drift.append(Drift("tags", desired["tags"], seen))
    if "ports" in desired:
        drift.extend(_port_drift(desired["ports"], observed.get("ports")))
    if "spec" in desired:
        _compare("spec", desired["spec"], observed.get("spec"), drift)
    return drift


def _port_drift(desired: list[dict[str, Any]], observed: Any) -> list[Drift]:
    seen = {p.get("name"): p for p in observed if isinstance(p, Mapping)} if isinstance(observed, list) else {}
    drift: list[Drift] = []
    for port in desired:
        path = f"ports[{port['name']}]"
        actual = seen.pop(port["name"], None)
        if actual is None:
            drift.append(Drift(path, port, None))
            continue
        for key, value in port.items():
            # GET never returns a port's domains: a desired value cannot be compared, so it is not.
            if key in ("name", "domains"):
                continue
            if not _same(value, actual.get(key)):
                drift.append(Drift(f"{path}.{key}", value, actual.get(key)))
    # forProvider owns the whole list: a port only Northflank has is drift too (an update removes it).
    for name, actual in seen.items():
        shown = {k: v for k, v in actual.items() if k in _PORT_KEYS}
        drift.append(Drift(f"ports[{name}]", None, shown))
    return drift


_PORT_KEYS = ("name", "internalPort", "protocol", "public", "disableNfDomain")


def _compare(path: str, desired: Any, observed: Any, drift: list[Drift]) -> None:
    """Recurse into objects the manifest sets (an absent object reports its leaves); anything else is
    compared whole."""
    if isinstance(desired, Mapping) and (observed is None or isinstance(observed, Mapping)):
        for key, value in desired.items():
            _compare(f"{path}.{key}", value, (observed or {}).get(key), drift)
    elif not _same(desired, observed):
        drift.append(Drift(path, desired, observed))


def _same(desired: Any, observed: Any) -> bool:
    # JSON numbers compare as numbers (8000 == 8000.0), but a boolean is never a number.
    if isinstance(desired, bool) or isinstance(observed, bool):
        return type(desired) is type(observed) and desired == observed
    if isinstance(desired, int | float) and isinstance(observed, int | float):
        return desired == observed
    if isinstance(desired, Mapping) and isinstance(observed, Mapping):
        return desired.keys() == observed.keys() and all(_same(v, observed[k]) for k, v in desired.items())
    if isinstance(desired, list) and isinstance(observed, list):
        return len(desired) == len(observed) and all(_same(a, b) for a, b in zip(desired, observed, strict=True))
    return type(desired) is type(observed) and bool(desired == observed)


def create_body(for_provider: ForProvider, deployment_id: str) -> dict[str, Any]:
    """The POST body creating the deployment: everything forProvider sets; the name defaults to the id.

    Raises ValueError without ``spec`` (the CRD already refuses Create without it)."""
    if for_provider.spec is None:
        raise ValueError("forProvider.spec is required to create a deployment")
    body = for_provider.wire()
    body["name"] = for_provider.name or deployment_id
    body["spec"] = {"type": for_provider.spec.type, **body["spec"]}
    return body


def update_body(for_provider: ForProvider, drift: Sequence[Drift]) -> dict[str, Any]:
    """The POST body correcting ``drift``: only what the resource owns, and never ``name``.

    The whole configuration when any of it drifted (right whether Northflank merges or replaces); the
    update request has no ``spec.type``. Ports, the whole list, only when forProvider sets them, so
    custom domains configured elsewhere are never wiped by a manifest that does not mention ports."""
    desired = for_provider.wire()
    paths = [d.path for d in drift]
    body: dict[str, Any] = {}
    if "description" in desired and "description" in paths:
        body["description"] = desired["description"]
    if "tags" in desired and "tags" in paths:
        body["tags"] = desired["tags"]
    if "ports" in desired and any(p.startswith("ports[") for p in paths):
        body["ports"] = desired["ports"]
    if "spec" in desired and any(p == "spec" or p.startswith("spec.") for p in paths):
        body["spec"] = {"configuration": desired["spec"]["configuration"]}
    return body
