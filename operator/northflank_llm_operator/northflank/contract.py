"""What Northflank documents about the API this operator mirrors, in one place (shared/northflank/api-facts.md)."""

from __future__ import annotations

from .models import DeploymentStatus

#: The rate-limit window is a fixed hour from the first request (§3); no announced reset or wait is
#: trusted beyond it.
DOCUMENTED_HOUR_SECONDS = 3600.0
#: The default budget of requests per window and token (§3), assumed until a response says otherwise.
DOCUMENTED_LIMIT = 1000
#: The largest page the list endpoint returns (``per_page`` max, §4).
PAGE_SIZE = 100
#: Phases in which Northflank is still moving the deployment (§6): observed sooner, and Reconciling.
TRANSITIONAL_PHASES: frozenset[str] = frozenset(
    {DeploymentStatus.PENDING, DeploymentStatus.PROVISIONING, DeploymentStatus.STARTING, DeploymentStatus.DELETING}
)
