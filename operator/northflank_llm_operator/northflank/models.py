"""Typed models of Northflank's LLM model deployment responses.

Constraints come verbatim from the reference page the project mirrors (GET
/v1/projects/{projectId}/llm-model-deployments/{llmModelDeploymentId}). Unknown fields are kept,
not rejected: the schema has drifted before, and a newer field must not break observation.
``status`` is deliberately a plain string: an unknown value is reported, not refused.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class DeploymentStatus(StrEnum):
    """Status values the contract lists for an LLM model deployment."""

    PENDING = "pending"
    PROVISIONING = "provisioning"
    STARTING = "starting"
    CRASHED = "crashed"
    PAUSED = "paused"
    RUNNING = "running"
    DELETING = "deleting"


class _ApiModel(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


Name = Annotated[str, StringConstraints(min_length=3, max_length=100, pattern=r"^[a-zA-Z0-9]+((-|\s)[a-zA-Z0-9]+)*$")]
Description = Annotated[str, StringConstraints(max_length=1024)]
Tag = Annotated[str, StringConstraints(min_length=3, max_length=100, pattern=r"^[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*$")]
DnsBase = Annotated[str, StringConstraints(pattern=r"^([a-zA-Z0-9-]{2,}\.){2,}[a-zA-Z]{2,}$")]
PortId = Annotated[str, StringConstraints(pattern=r"^[a-z]-?[a-z0-9]+(-[a-z0-9]+)*$")]
PortName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z](-?[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*)?$")]


class Dns(_ApiModel):
    """DNS configuration of the deployment."""

    base: DnsBase
    zone: str


class Port(_ApiModel):
    """One port of the deployment."""

    id: PortId
    name: PortName
    internal_port: int = Field(alias="internalPort")
    protocol: str
    public: bool
    dns: str | None = None
    disable_nf_domain: bool | None = Field(default=None, alias="disableNfDomain")


class DeploymentConfiguration(_ApiModel):
    """Details of the latest deployment configuration (newer than the reference page; optional)."""

    id: str
    created_at: str | None = Field(default=None, alias="createdAt")


class LLMModelDeployment(_ApiModel):
    """The ``data`` object of the GET response (the list endpoint returns the same shape per item)."""

    name: Name
    description: Description | None = None
    tags: list[Tag] | None = None
    spec: dict[str, Any]
    id: str
    project_id: str = Field(alias="projectId")
    entity_id: str = Field(alias="entityId")
    entity_type: Literal["user", "team", "org"] = Field(alias="entityType")
    creator_id: str = Field(alias="creatorId")
    dns: Dns
    ports: list[Port]
    status: str
    deployment_configuration: DeploymentConfiguration | None = Field(default=None, alias="deploymentConfiguration")
    created_at: str | None = Field(default=None, alias="createdAt")
    updated_at: str | None = Field(default=None, alias="updatedAt")

    @property
    def known_status(self) -> DeploymentStatus | None:
        """The status as a contract value, or None when Northflank sent one this version does not know."""
        try:
            return DeploymentStatus(self.status)
        except ValueError:
            return None


class GetLLMModelDeploymentResponse(_ApiModel):
    """Envelope of the GET endpoint: ``{"data": {...}}``."""

    data: LLMModelDeployment


class Pagination(_ApiModel):
    has_next_page: bool = Field(alias="hasNextPage")
    cursor: str | None = None
    count: int


class LLMModelDeploymentList(_ApiModel):
    llm_model_deployments: list[dict[str, Any]] = Field(alias="llmModelDeployments")


class ListLLMModelDeploymentsResponse(_ApiModel):
    """Envelope of the list endpoint. Items stay raw so one bad item cannot hide the others."""

    data: LLMModelDeploymentList
    pagination: Pagination
