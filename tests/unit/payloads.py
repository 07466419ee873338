"""Northflank response bodies used across unit tests."""

from __future__ import annotations

import copy
from typing import Any

# A complete object per the contract (every required field, plausible optional ones).
_FULL: dict[str, Any] = {
    "name": "deepseek-v3-deployment",
    "description": "A deployment for DeepSeek V3 model",
    "tags": ["llm", "gpu-heavy"],
    "spec": {
        "type": "custom",
        "configuration": {
            "engine": "vllm",
            "name": "deepseek-ai/DeepSeek-V3",
            "nodeConfiguration": {"storage": {"storageClass": "nvme", "storageSize": 6144}},
        },
    },
    "id": "deepseek-v3-deployment",
    "projectId": "default-project",
    "entityId": "team-one",
    "entityType": "team",
    "creatorId": "user-1",
    "dns": {"base": "deepseek-v3-deployment--default-project--abcd.code.run", "zone": "code.run"},
    "ports": [
        {
            "id": "p01",
            "name": "http",
            "internalPort": 8000,
            "protocol": "HTTP",
            "public": True,
            "dns": "http--deepseek-v3-deployment--default-project--abcd.code.run",
        }
    ],
    "status": "running",
    "createdAt": "2026-11-26T10:00:00.000Z",
    "updatedAt": "2026-11-26T10:05:00.000Z",
}

# The reference page's own "Example response": it omits most required fields.
SEED_PAGE_EXAMPLE: dict[str, Any] = {
    "data": {
        "name": "deepseek-v3-deployment",
        "description": "A deployment for DeepSeek V3 model",
        "spec": {"configuration": {"nodeConfiguration": {"storage": {"storageClass": "nvme", "storageSize": 6144}}}},
        "projectId": "default-project",
    }
}


def full_deployment(**overrides: Any) -> dict[str, Any]:
    """A deep copy of a valid object with top-level fields replaced."""
    body = copy.deepcopy(_FULL)
    body.update(overrides)
    return body
