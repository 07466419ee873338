"""Typed models of Northflank's LLM model deployment responses.

Constraints come verbatim from the reference page the project mirrors (GET
/v1/projects/{projectId}/llm-model-deployments/{llmModelDeploymentId}). Unknown fields are kept,
not rejected: the schema has drifted before, and a newer field must not break observation.
``status`` is deliberately a plain string: an unknown value is reported, not refused.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_validator,
)


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
    """DNS configuration of the deployment. ``base`` is mirrored, never read: its documented pattern is
    checked leniently (a recorded deviation), as neither official client checks it."""

    base: str
    zone: str


class Port(_ApiModel):
    """One port of the deployment. ``id`` and ``name`` are only mirrored: their documented patterns are
    checked leniently, like ``dns.base`` (a real port named ``http_1`` must not hide the deployment)."""

    id: str
    name: str
    internal_port: int = Field(alias="internalPort")
    protocol: str
    public: bool
    dns: str | None = None
    disable_nf_domain: bool | None = Field(default=None, alias="disableNfDomain")


class DeploymentConfiguration(_ApiModel):
    """Details of the latest deployment configuration (newer than the reference page; optional)."""

    id: str
    created_at: str | None = Field(default=None, alias="createdAt")


#: Fields the operator mirrors verbatim into status.deployment but never reasons about: their
#: documented constraints are checked, and a violation is reported, not fatal (a relaxed rule at
#: Northflank must not turn a whole fleet InvalidResponse). The type is what the CRD's status schema
#: needs; a value of another type is left out of status and reported.
_LENIENT: dict[str, tuple[TypeAdapter[Any], TypeAdapter[Any]]] = {
    "name": (TypeAdapter(str), TypeAdapter(Name)),
    "description": (TypeAdapter(str), TypeAdapter(Description)),
    "tags": (TypeAdapter(list[str]), TypeAdapter(list[Tag])),
    "entityType": (TypeAdapter(str), TypeAdapter(Literal["user", "team", "org"])),
    "createdAt": (TypeAdapter(str), TypeAdapter(str)),
    "updatedAt": (TypeAdapter(str), TypeAdapter(str)),
}


#: Documented patterns of nested strings the operator only mirrors, checked after the shape is valid.
_LENIENT_NESTED: tuple[tuple[str, TypeAdapter[Any]], ...] = (
    ("id", TypeAdapter(PortId)),
    ("name", TypeAdapter(PortName)),
)
_DNS_BASE: TypeAdapter[Any] = TypeAdapter(DnsBase)


def _nested_deviations(model: LLMModelDeployment) -> list[str]:
    deviations: list[str] = []
    checks = [(f"ports[{index}].{key}", adapter, getattr(port, key)) for index, port in enumerate(model.ports)
              for key, adapter in _LENIENT_NESTED]  # fmt: skip
    checks.append(("dns.base", _DNS_BASE, model.dns.base))
    for where, adapter, value in checks:
        try:
            adapter.validate_python(value)
        except ValidationError as exc:
            deviations.append(f"{where}: {_first_error(exc)} (kept as sent)")
    return deviations


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


class LLMModelDeployment(_ApiModel):
    """The ``data`` object of the GET response (the list endpoint returns the same shape per item).

    Strict where the operator's status and conditions depend on a value (``id`` and the other ids,
    ``status``, the shapes of ``dns``, ``ports`` and ``spec``); lenient elsewhere, including the
    documented patterns of ``ports[].id``, ``ports[].name`` and ``dns.base``, which neither official
    client checks: see ``contract_deviations``.
    """

    name: str | None = None
    description: str | None = None
    tags: list[str] | None = None
    spec: dict[str, Any]
    id: str
    project_id: str = Field(alias="projectId")
    entity_id: str = Field(alias="entityId")
    entity_type: str | None = Field(default=None, alias="entityType")
    creator_id: str = Field(alias="creatorId")
    dns: Dns
    ports: list[Port]
    status: str
    deployment_configuration: DeploymentConfiguration | None = Field(default=None, alias="deploymentConfiguration")
    created_at: str | None = Field(default=None, alias="createdAt")
    updated_at: str | None = Field(default=None, alias="updatedAt")
    _deviations: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _lenient_fields(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> LLMModelDeployment:
        deviations: list[str] = []
        if isinstance(data, dict):
            data = dict(data)
            if "name" not in data:
                deviations.append("name: Field required")
            if "entityType" not in data and "entity_type" not in data:
                deviations.append("entityType: Field required")
            for key, (shape, documented) in _LENIENT.items():
                if key not in data or data[key] is None:
                    continue
                try:
                    shape.validate_python(data[key], strict=True)
                except ValidationError as exc:
                    deviations.append(f"{key}: {_first_error(exc)} (left out of status)")
                    del data[key]
                    continue
                try:
                    documented.validate_python(data[key])
                except ValidationError as exc:
                    deviations.append(f"{key}: {_first_error(exc)} (kept as sent)")
        model = handler(data)
        assert isinstance(model, LLMModelDeployment)
        model._deviations = (*deviations, *_nested_deviations(model))
        return model

    @property
    def contract_deviations(self) -> tuple[str, ...]:
        """Where Northflank's answer breaks the documented contract in fields the operator does not use."""
        return self._deviations

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
    #: Never read (the items are counted instead), so not held to a shape: the clients type it ``number``.
    count: Any = None


class LLMModelDeploymentList(_ApiModel):
    llm_model_deployments: list[dict[str, Any]] = Field(alias="llmModelDeployments")


class ListLLMModelDeploymentsResponse(_ApiModel):
    """Envelope of the list endpoint. Items stay raw so one bad item cannot hide the others."""

    data: LLMModelDeploymentList
    pagination: Pagination
