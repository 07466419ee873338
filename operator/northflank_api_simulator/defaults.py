"""Fill in a deployment the way Northflank would return it.

Tests usually create a deployment with just an id (and perhaps a status); everything the contract marks
as required must still be present and match the documented patterns, so the operator is exercised with
realistic objects.
"""

from __future__ import annotations

import copy
import hashlib
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

DEFAULT_TEAM_ID = "default-team"
"""Team of projects created implicitly by putting a deployment into them."""

DEFAULT_CREATOR_ID = "user-sim"
DNS_ZONE = "code.run"
INITIAL_STATUS = "pending"

_DNS_LABEL_PART_LENGTH = 22
"""Room for ``http--<id>--<project>--<hash>`` inside one 63-character DNS label."""

_DEFAULT_SPEC: dict[str, Any] = {
    "type": "custom",
    "configuration": {
        "engine": "vllm",
        "name": "deepseek-ai/DeepSeek-V3",
        "revision": "main",
        "nodeConfiguration": {
            "gpu": {
                "enabled": True,
                "configuration": {"gpuType": "h200-141", "gpuCount": 8, "timesliced": False},
            },
            "storage": {
                "accessMode": "ReadWriteMany",
                "storageClass": "nvme",
                "storageSize": 6144,
                "shmSize": None,
            },
        },
        "architecture": {
            "type": "aggregated",
            "workerConfig": {
                "replicas": 1,
                "parallelismConfig": {"tensorParallelism": 8, "pipelineParallelism": 1, "expertParallelism": 1},
                "sequenceLengthConfig": {"maxModelLength": "auto"},
                "batchingConfig": {"maxNumSeqs": 256, "maxNumBatchedTokens": 8192},
                "enableChunkedPrefill": True,
                "enablePrefixCaching": True,
                "enforceEager": False,
                "enableAsyncScheduling": False,
                "gpuMemoryUtilization": 0.9,
                "trustRemoteCode": True,
                "dataType": "auto",
                "quantization": "fp8",
            },
        },
    },
}


def timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds, as in Northflank's examples (``2021-01-20T11:19:53.175Z``)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _dns_label_part(value: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")
    return slug[:_DNS_LABEL_PART_LENGTH].strip("-") or "x"


def dns_base(project_id: str, deployment_id: str) -> str:
    """A stable, contract-valid host name such as ``deepseek--inference--1a2b3c4d.code.run``."""
    digest = hashlib.sha256(f"{project_id}/{deployment_id}".encode()).hexdigest()[:8]
    return f"{_dns_label_part(deployment_id)}--{_dns_label_part(project_id)}--{digest}.{DNS_ZONE}"


def default_spec() -> dict[str, Any]:
    """A realistic vLLM spec (a fresh copy each time, so callers may change it)."""
    return copy.deepcopy(_DEFAULT_SPEC)


def new_deployment_configuration(created_at: str) -> dict[str, str]:
    """A new "latest deployment configuration", as a spec change produces."""
    return {"id": uuid.uuid4().hex[:24], "createdAt": created_at}


def _default_ports(dns: object) -> list[dict[str, Any]]:
    port: dict[str, Any] = {
        "id": "p01",
        "name": "http",
        "internalPort": 8000,
        "protocol": "HTTP",
        "public": True,
        "disableNfDomain": False,
    }
    base = dns.get("base") if isinstance(dns, Mapping) else None
    if isinstance(base, str):
        port["dns"] = f"http--{base}"
    return [port]


def complete_deployment(
    fields: Mapping[str, Any],
    *,
    project_id: str,
    deployment_id: str,
    team_id: str,
    now: str,
) -> dict[str, Any]:
    """Return ``fields`` with every missing top-level field defaulted; given fields are kept verbatim."""
    for key, expected in (("id", deployment_id), ("projectId", project_id)):
        if key in fields and fields[key] != expected:
            raise ValueError(f'"{key}" is {fields[key]!r} but the path says {expected!r}')
    given = copy.deepcopy(dict(fields))
    dns = given.get("dns", {"base": dns_base(project_id, deployment_id), "zone": DNS_ZONE})
    deployment: dict[str, Any] = {
        "name": deployment_id,
        "spec": default_spec(),
        "id": deployment_id,
        "projectId": project_id,
        "entityId": team_id,
        "entityType": "team",
        "creatorId": DEFAULT_CREATOR_ID,
        "dns": dns,
        "ports": _default_ports(dns),
        "status": INITIAL_STATUS,
        "deploymentConfiguration": new_deployment_configuration(now),
        "createdAt": now,
        "updatedAt": now,
    }
    deployment.update(given)
    return deployment
