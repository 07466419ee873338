"""The LLMModelDeployment custom resource: API coordinates and the typed spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .management import ForProvider, Policy

GROUP = "northflank-llm-operator.dev"
VERSION = "v1alpha1"
PLURAL = "llmmodeldeployments"
KIND = "LLMModelDeployment"
API_VERSION = f"{GROUP}/{VERSION}"

# Mirrors the CRD's patterns: the API server refuses a malformed id before the operator sees it;
# the operator checks again because a resource may predate a stricter CRD.
_ID_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$"
MIN_POLL_INTERVAL_SECONDS = 10
# A DNS subdomain, as Kubernetes names Secrets.
_SECRET_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"  # noqa: S105 - a pattern, not a secret

#: Any new value makes the operator observe the resource at once; the value handled last is
#: recorded in status.lastHandledReconcileAt (the Flux / Crossplane convention).
RECONCILE_REQUESTED_AT_ANNOTATION = f"{GROUP}/reconcile-requested-at"
#: true (also True, yes, 1, on) stops every Northflank request for the resource until it goes away.
PAUSED_ANNOTATION = f"{GROUP}/paused"

#: Management (issue 17): written BEFORE a create is sent, and once a GET confirmed it (Crossplane's scheme).
CREATE_PENDING_ANNOTATION = f"{GROUP}/external-create-pending"
CREATE_SUCCEEDED_ANNOTATION = f"{GROUP}/external-create-succeeded"
#: Only while Delete is among the policies, management is enabled and the deployment is owned.
DELETE_FINALIZER = f"{GROUP}/delete-at-northflank"

ExpectedPhase = Literal["running", "paused"]


class SecretKeyRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=253, pattern=_SECRET_NAME_PATTERN)
    key: str = Field(default="token", min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class LLMModelDeploymentSpec(BaseModel):
    """``spec`` of an LLMModelDeployment."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    project_id: str = Field(alias="projectId", min_length=1, max_length=100, pattern=_ID_PATTERN)
    llm_model_deployment_id: str = Field(
        alias="llmModelDeploymentId", min_length=1, max_length=100, pattern=_ID_PATTERN
    )
    team_id: str | None = Field(default=None, alias="teamId", min_length=1, max_length=100, pattern=_ID_PATTERN)
    credentials_secret_ref: SecretKeyRef | None = Field(default=None, alias="credentialsSecretRef")
    poll_interval_seconds: int | None = Field(
        default=None, alias="pollIntervalSeconds", ge=MIN_POLL_INTERVAL_SECONDS, le=86400
    )
    #: The phase in which the deployment counts as Ready; a deliberately paused one is not broken.
    expected_phase: ExpectedPhase = Field(default="running", alias="expectedPhase")
    #: Unset means [Observe]: only observe (management.Policies reads it). The CRD checks the combination.
    management_policies: list[Policy] | None = Field(default=None, alias="managementPolicies", min_length=1)
    #: May this resource update or delete a deployment it did not create? Unset means no.
    adopt_existing: bool | None = Field(default=None, alias="adoptExisting")
    #: The desired deployment; drift against it is shown in every mode.
    for_provider: ForProvider | None = Field(default=None, alias="forProvider")


@dataclass(frozen=True, order=True)
class ResourceKey:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"
