"""Typed payloads of the control API and the seed file.

These models describe the simulator's own knobs, not Northflank objects: deployments stay plain JSON
dictionaries so a test can store anything, including values the contract does not (yet) allow.
Unknown keys are rejected, so a typo in a test fails loudly instead of being ignored.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

DEFAULT_RATE_LIMIT = 1000
"""Requests per window: Northflank's documented default account rate limit."""

DEFAULT_RATE_LIMIT_WINDOW_SECONDS = 3600.0
"""Northflank's window is one hour from the first request."""


AI_MODEL_PERMISSIONS = {
    action: f"Project > AiModels > General > {action}" for action in ("Read", "Create", "Update", "Delete")
}
"""The permissions the official clients name for the LLM model deployment routes (``requiredPermissions``)."""


class ControlModel(BaseModel):
    """Base for control payloads: camelCase on the wire, snake_case in Python, no unknown keys."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        frozen=True,
    )


class TokenGrant(ControlModel):
    """What an API token may reach.

    A ``team`` token stands for one team and may use the plain ``/v1/projects/...`` routes. An ``org``
    token spans several teams and, as on Northflank, must name the team in the path.
    """

    scope: Literal["team", "org"] = "team"
    team_id: str | None = Field(default=None, min_length=1)
    team_ids: list[str] | None = Field(default=None, min_length=1)
    projects: list[str] | None = None
    """Project allow-list, like an API role limited to chosen projects; ``None`` allows every project."""
    permissions: list[str] | None = None
    """The role's permissions, e.g. ``["Project > AiModels > General > Read"]``; ``None`` grants every
    LLM model deployment permission (read, create, update, delete)."""

    @model_validator(mode="after")
    def _teams_match_scope(self) -> TokenGrant:
        if self.scope == "team" and (self.team_id is None or self.team_ids is not None):
            raise ValueError('a "team" token needs "teamId" and no "teamIds"')
        if self.scope == "org" and (self.team_ids is None or self.team_id is not None):
            raise ValueError('an "org" token needs "teamIds" and no "teamId"')
        return self

    @property
    def teams(self) -> list[str]:
        """Every team the token may act for."""
        return [self.team_id] if self.team_id is not None else list(self.team_ids or [])

    def allows_project(self, project_id: str) -> bool:
        return self.projects is None or project_id in self.projects

    def granted_permissions(self) -> list[str]:
        """What ``GET /v1/auth`` reports and the routes check."""
        return list(self.permissions) if self.permissions is not None else list(AI_MODEL_PERMISSIONS.values())


class ProjectBody(ControlModel):
    team_id: str = Field(min_length=1)


class RateLimitConfig(ControlModel):
    """Budget per token; the window is compressible so tests need not wait an hour."""

    limit: int = Field(default=DEFAULT_RATE_LIMIT, ge=1)
    window_seconds: float = Field(default=DEFAULT_RATE_LIMIT_WINDOW_SECONDS, gt=0)
    retry_after_header: bool = False
    """Northflank documents no ``Retry-After``; off by default so clients cannot come to rely on it."""


class DripSpec(ControlModel):
    """A slow body: ``chunkBytes`` bytes, then a pause of ``intervalSeconds``, until the body is sent."""

    chunk_bytes: int = Field(default=1, ge=1)
    interval_seconds: float = Field(default=1.0, ge=0)


class FaultSpec(ControlModel):
    """A scripted misbehaviour for matching ``/v1`` requests.

    A fault with a ``status`` answers instead of the API; one without delays the request by
    ``latency_seconds`` and then lets the API answer normally, padded, gzip-compressed or dripped as
    ``pad_bytes``, ``gzip`` and ``drip`` say (e.g. every answer about one project, slowly).
    """

    method: str = "GET"
    """HTTP method to match, or ``*`` for any."""
    path: str | None = None
    """Regular expression searched in the request path."""
    project_id: str | None = None
    deployment_id: str | None = None
    status: int | None = Field(default=None, ge=100, le=599)
    json_body: Any = Field(default=None, alias="json")
    """Served verbatim as JSON when given (even ``null``)."""
    body: str | None = None
    """Served verbatim as text, e.g. truncated JSON or a proxy's HTML page."""
    content_type: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    latency_seconds: float = Field(default=0.0, ge=0)
    times: int | None = Field(default=None, ge=1)
    """How many matching requests the fault applies to; ``None`` keeps it until removed."""
    count_against_rate_limit: bool = True
    """Whether the faulted response spends rate-limit budget and carries the rate-limit headers."""
    deep_json_depth: int | None = Field(default=None, ge=1, le=10_000_000)
    """Serve ``{"data": [[[...]]]}`` nested this deep (valid JSON a recursive parser cannot read)."""
    huge_number_digits: int | None = Field(default=None, ge=1, le=10_000_000)
    """Replace every ``"__HUGE_NUMBER__"`` string (quotes included) in the body with a number of this
    many digits, e.g. a port beyond int64 inside an otherwise valid deployment."""
    fresh_values: bool = False
    """Replace every ``__FRESH__`` in the body with a string no other response carried, e.g. a page
    cursor that never repeats (a listing that never ends)."""
    pad_bytes: int = Field(default=0, ge=0, le=16 * 1024**3)
    """Append this many spaces (valid trailing JSON whitespace) to the body; generated as it is sent,
    so a multi-gigabyte body costs the simulator no memory."""
    gzip: bool = False
    """Send the body gzip-compressed with ``Content-Encoding: gzip``; with ``padBytes`` a
    decompression bomb (1 GiB of spaces is about 1 MiB on the wire)."""
    drip: DripSpec | None = None
    """Send the body (as it goes on the wire, after compression) slowly, a few bytes at a time."""
    hold: Literal["request", "answer"] | None = None
    """Hold matching requests until the fault is released (``POST /_simulator/faults/{id}/release``) or
    removed: ``request`` before the API processes it (a client that hung up meanwhile has its request
    dropped, never processed: logged with status 499); ``answer`` after the API processed it, before the
    answer is sent. ``GET /_simulator/held`` lists what is held (crash tests kill the client then)."""

    @field_validator("method")
    @classmethod
    def _upper_method(cls, method: str) -> str:
        return method.upper()

    @field_validator("path")
    @classmethod
    def _path_compiles(cls, path: str | None) -> str | None:
        if path is not None:
            try:
                re.compile(path)
            except re.error as error:
                raise ValueError(f"invalid regular expression: {error}") from error
        return path

    @model_validator(mode="after")
    def _has_an_effect(self) -> FaultSpec:
        if self.has_json_body and self.body is not None:
            raise ValueError('give either "json" or "body", not both')
        if self.deep_json_depth is not None and (self.has_json_body or self.body is not None):
            raise ValueError('"deepJsonDepth" generates the body: give no "json" or "body"')
        generated = self.deep_json_depth is not None or self.huge_number_digits is not None
        if self.status is None and generated:
            raise ValueError('a generated body needs a "status"')
        if self.status is None and (self.has_json_body or self.body is not None):
            raise ValueError('a response body needs a "status"')
        # Without a status, padding, gzip and drip apply to the API's own answer (a slow project).
        if self.status is None and self.latency_seconds == 0 and not self.streamed and self.hold is None:
            raise ValueError('a fault needs a "status", a "latencySeconds", a "drip", "padBytes", "gzip" or "hold"')
        if self.hold is not None and self.status is not None:
            raise ValueError('a "hold" holds the API\'s own processing or answer: give no "status"')
        return self

    @property
    def has_json_body(self) -> bool:
        return "json_body" in self.model_fields_set

    @property
    def streamed(self) -> bool:
        """Whether the answer is generated while it is sent rather than built up front."""
        return bool(self.pad_bytes) or self.gzip or self.drip is not None

    def matches(self, method: str, path: str, project_id: str | None, deployment_id: str | None) -> bool:
        return (
            self.method in ("*", method)
            and (self.path is None or re.search(self.path, path) is not None)
            and (self.project_id is None or self.project_id == project_id)
            and (self.deployment_id is None or self.deployment_id == deployment_id)
        )


class ScriptStep(ControlModel):
    """One timed change; its delay counts from the previous step."""

    after_seconds: float = Field(ge=0)
    status: str | None = None
    patch: dict[str, Any] | None = None
    delete: bool = False
    """Remove the deployment, as when Northflank finishes ``deleting``."""

    @model_validator(mode="after")
    def _does_one_thing(self) -> ScriptStep:
        changes = self.status is not None or self.patch is not None
        if self.delete and changes:
            raise ValueError('a "delete" step cannot also change fields')
        if not self.delete and not changes:
            raise ValueError('a step needs "status", "patch" or "delete"')
        return self

    def changes(self) -> dict[str, Any]:
        """The shallow patch this step applies (``status`` wins over ``patch.status``)."""
        merged = dict(self.patch or {})
        if self.status is not None:
            merged["status"] = self.status
        return merged


class Script(ControlModel):
    steps: list[ScriptStep] = Field(min_length=1)

    @model_validator(mode="after")
    def _delete_is_last(self) -> Script:
        if any(step.delete for step in self.steps[:-1]):
            raise ValueError('only the last step may "delete"')
        return self


class SeedToken(TokenGrant):
    token: str = Field(min_length=1)


class SeedProject(ControlModel):
    id: str = Field(min_length=1)
    team_id: str = Field(min_length=1)


class Seed(ControlModel):
    """The starting state, loaded from ``--seed`` and restored by ``POST /_simulator/reset``."""

    tokens: list[SeedToken] = Field(default_factory=list)
    projects: list[SeedProject] = Field(default_factory=list)
    deployments: list[dict[str, Any]] = Field(default_factory=list)
    """Partial deployment objects; each needs ``projectId`` and ``id``, the rest gets defaults."""
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)

    @field_validator("deployments")
    @classmethod
    def _deployments_are_addressed(cls, deployments: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for index, deployment in enumerate(deployments):
            for key in ("projectId", "id"):
                if not isinstance(deployment.get(key), str) or not deployment[key]:
                    raise ValueError(f'deployment {index} needs a non-empty string "{key}"')
        return deployments


class HostileItem(ControlModel):
    """One deployment served with a hostile value in place of one of its fields.

    ``field`` is a dotted path into the deployment (``description``, ``spec.extra``); the value is a
    string of ``text_bytes`` bytes or objects nested ``depth`` deep (``{"d": {"d": ... {}}}``, generated
    as text: ``json.dumps`` cannot write 10,000 levels). With ``listing_only`` the single GET still
    serves the deployment as it is, so a fallback from listings to GETs can be shown to work.
    """

    field: str = Field(default="description", pattern=r"^[^.]+(\.[^.]+)*$")
    text_bytes: int | None = Field(default=None, ge=0, le=1024**3)
    depth: int | None = Field(default=None, ge=1, le=10_000_000)
    listing_only: bool = False

    @model_validator(mode="after")
    def _one_value(self) -> HostileItem:
        if (self.text_bytes is None) == (self.depth is None):
            raise ValueError('give either "textBytes" or "depth"')
        return self


class SpendBody(ControlModel):
    """Requests someone else spends of a token's current window, at once."""

    requests: int = Field(ge=1, le=10_000_000)


class SpenderSpec(ControlModel):
    """Someone else spending ``fraction`` of every window of a token, evenly over the window."""

    fraction: float = Field(gt=0, le=1)


# Write requests (create and update), as the official clients type them.


class _RequestModel(BaseModel):
    """Base for ``/v1`` request bodies: camelCase, no unknown keys, no coercion ("8" is not 8).

    The shapes are the official clients' (npm ``@northflank/js-client`` 0.9.5, PyPI ``northflank``
    2.1.0); the documented constraints (name patterns, integer sizes, port range) come from
    Northflank's reference pages, which the clients do not check.
    """

    model_config = ConfigDict(alias_generator=to_camel, validate_by_alias=True, extra="forbid", strict=True)

    #: Fields the clients type as nullable; every other field may be left out but not sent as null.
    nullable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        for name in sorted(self.model_fields_set - self.nullable):
            if getattr(self, name) is None:
                raise ValueError(f'"{to_camel(name)}" cannot be null')
        return self


DEPLOYMENT_NAME_PATTERN = r"^[a-zA-Z0-9]+((-|\s)[a-zA-Z0-9]+)*$"
_TAG_PATTERN = r"^[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*$"
_PORT_NAME_PATTERN = r"^[a-zA-Z][a-zA-Z0-9-]*$"
_STORAGE_CLASS_PATTERN = r"^[a-zA-Z](-?[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*)?$"


class GpuConfigurationRequest(_RequestModel):
    gpu_type: str | None = None
    gpu_count: int | None = Field(default=None, ge=1)
    timesliced: bool | None = None


class GpuRequest(_RequestModel):
    enabled: bool | None = None
    configuration: GpuConfigurationRequest | None = None


class StorageRequest(_RequestModel):
    nullable = frozenset({"shm_size"})
    access_mode: Literal["ReadWriteMany"] | None = None
    storage_class: str | None = Field(default=None, min_length=3, max_length=39, pattern=_STORAGE_CLASS_PATTERN)
    storage_size: int | None = Field(default=None, ge=1)
    """Required on create (see :class:`CreateConfigurationRequest`), optional on update."""
    shm_size: int | None = Field(default=None, ge=0)


class NodeConfigurationRequest(_RequestModel):
    gpu: GpuRequest | None = None
    storage: StorageRequest | None = None


class ParallelismRequest(_RequestModel):
    tensor_parallelism: int | None = Field(default=None, ge=1)
    pipeline_parallelism: int | None = Field(default=None, ge=1)
    expert_parallelism: int | None = Field(default=None, ge=1)


class SequenceLengthRequest(_RequestModel):
    max_model_length: int | Literal["auto"] | None = None
    max_input_length: int | None = Field(default=None, ge=1)
    max_output_length: int | None = Field(default=None, ge=1)


class BatchingRequest(_RequestModel):
    max_num_seqs: int | None = Field(default=None, ge=1)
    max_num_batched_tokens: int | None = Field(default=None, ge=1)


class WorkerConfigRequest(_RequestModel):
    replicas: int | None = Field(default=None, ge=0)
    parallelism_config: ParallelismRequest | None = None
    sequence_length_config: SequenceLengthRequest | None = None
    batching_config: BatchingRequest | None = None
    enable_chunked_prefill: bool | None = None
    enable_prefix_caching: bool | None = None
    enforce_eager: bool | None = None
    enable_async_scheduling: bool | None = None
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    trust_remote_code: bool | None = None
    data_type: Literal["auto", "float16", "bfloat16"] | None = None
    kv_cache_data_type: Literal["fp8", "fp8_e5m2", "fp8_e4m3"] | None = None
    quantization: Literal["fp8", "awq", "gptq", "int4"] | None = None


class ArchitectureRequest(_RequestModel):
    type: Literal["aggregated"] | None = None
    worker_config: WorkerConfigRequest | None = None


class ConfigurationRequest(_RequestModel):
    name: str | None = None
    engine: Literal["vllm"] | None = None
    revision: str | None = None
    node_configuration: NodeConfigurationRequest | None = None
    architecture: ArchitectureRequest | None = None


class CreateConfigurationRequest(ConfigurationRequest):
    @model_validator(mode="after")
    def _storage_size_given(self) -> CreateConfigurationRequest:
        storage = self.node_configuration.storage if self.node_configuration is not None else None
        if storage is not None and storage.storage_size is None:
            raise ValueError('"nodeConfiguration.storage.storageSize" is required on create')
        return self


class PortRequest(_RequestModel):
    name: str = Field(min_length=1, max_length=8, pattern=_PORT_NAME_PATTERN)
    internal_port: int = Field(ge=1, le=65535)
    public: bool | None = None
    domains: list[str] | None = None
    disable_nf_domain: bool | None = None
    protocol: Literal["HTTP", "HTTP/2", "TCP", "UDP"]


Tag = Annotated[str, Field(min_length=3, max_length=100, pattern=_TAG_PATTERN)]


class CreateSpecRequest(_RequestModel):
    type: Literal["custom"]
    configuration: CreateConfigurationRequest


class UpdateSpecRequest(_RequestModel):
    configuration: ConfigurationRequest | None = None


class CreateDeploymentRequest(_RequestModel):
    """``POST /v1/projects/{projectId}/llm-model-deployments``."""

    name: str = Field(min_length=3, max_length=100, pattern=DEPLOYMENT_NAME_PATTERN)
    description: str | None = Field(default=None, max_length=1024)
    tags: list[Tag] | None = None
    ports: list[PortRequest] | None = None
    spec: CreateSpecRequest


class UpdateDeploymentRequest(_RequestModel):
    """``POST /v1/projects/{projectId}/llm-model-deployments/{llmModelDeploymentId}``: every field optional."""

    name: str | None = Field(default=None, min_length=3, max_length=100, pattern=DEPLOYMENT_NAME_PATTERN)
    description: str | None = Field(default=None, max_length=1024)
    tags: list[Tag] | None = None
    ports: list[PortRequest] | None = None
    spec: UpdateSpecRequest | None = None


def request_json(request: BaseModel) -> dict[str, Any]:
    """A validated request body back as JSON: only what the caller sent, camelCase."""
    body: dict[str, Any] = request.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return body


class Lifecycle(ControlModel):
    """How fast writes move a deployment through its statuses (``PUT /_simulator/lifecycle``).

    A create goes ``pending`` → ``provisioning`` → ``starting`` → ``running``, an update through
    ``starting`` → ``running``, a delete through ``deleting`` → gone; one step every ``stepSeconds``.
    """

    step_seconds: float = Field(default=1.0, ge=0)
    update_mode: Literal["merge", "replace"] = "merge"
    """How an update's ``spec.configuration`` meets the stored one: Northflank does not document
    whether it merges or replaces, so tests can try both."""
