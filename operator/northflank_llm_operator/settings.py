"""The operator's one settings object, read from the environment once at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, HttpUrl, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from . import selector
from .planner import PlannerConfig

DEFAULT_API_BASE_URL = "https://api.northflank.com"


class OperatorSettings(BaseSettings):
    """Operator-wide settings.

    The Northflank token and base URL use the variable names Northflank's official SDKs use, so an
    environment that already works with the SDK or CLI works here too. Operator-specific knobs carry
    the ``NORTHFLANK_LLM_OPERATOR_`` prefix.
    """

    # hide_input_in_errors: a refused value (a token, a URL with a password) is never echoed back.
    model_config = SettingsConfigDict(
        env_prefix="NORTHFLANK_LLM_OPERATOR_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    api_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("NORTHFLANK_API_TOKEN", "NF_API_TOKEN"),
        description="Default Northflank API token for resources without spec.credentialsSecretRef.",
    )
    api_token_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("NORTHFLANK_API_TOKEN_FILE"),
        description=(
            "File holding the operator-wide token (a mounted Secret); re-read when it changes, so a "
            "rotated token needs no restart. Replaces NORTHFLANK_API_TOKEN."
        ),
    )
    default_token_namespaces: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        default=None,
        description=(
            "Comma-separated namespaces whose resources may use the operator-wide token; unset: every "
            "namespace. Elsewhere a resource must name its own Secret."
        ),
    )
    default_token_denied_namespaces: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Comma-separated namespaces whose resources may not use the operator-wide token.",
    )
    api_base_url: HttpUrl = Field(
        default=HttpUrl(DEFAULT_API_BASE_URL),
        validation_alias=AliasChoices("NORTHFLANK_API_BASE_URL", "NF_API_HOST"),
        description="Northflank API base URL; point it at the simulator for local runs.",
    )
    poll_interval_seconds: float = Field(
        default=60.0,
        # Below the chart's and the CRD's minimum (10) on purpose: tests and the demo poll every second.
        ge=1.0,
        le=86400.0,
        description="Seconds between observations of a resource that sets no spec.pollIntervalSeconds.",
    )
    request_timeout_seconds: float = Field(default=10.0, gt=0.0, le=300.0)
    request_deadline_seconds: float = Field(
        default=30.0,
        gt=0.0,
        le=600.0,
        description=(
            "Deadline for a whole Northflank request, headers and body: a body that trickles in "
            "never holds a request slot longer than this."
        ),
    )
    max_response_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=64 * 1024,
        le=256 * 1024 * 1024,
        description="Largest Northflank response body read (after decompression); larger is InvalidResponse.",
    )
    max_concurrent_requests: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Northflank requests in flight at once for one project (account, team, project): a project "
        "whose answers are slow holds only its own slots.",
    )
    status_heartbeat_seconds: float = Field(
        default=0.0,
        ge=0.0,
        le=86400.0,
        description=(
            "Re-stamp status.lastSyncTime on an unchanged observation at most this often; 0 (the "
            "default) never does, so only a change writes status. Freshness is carried by the Ready "
            "condition, which turns Unknown (StatusStale) on a clock."
        ),
    )
    stale_after_intervals: float = Field(
        default=3.0,
        ge=1.0,
        description="Ready turns Unknown once no poll has succeeded for this many poll intervals.",
    )
    budget_reserve_fraction: float = Field(
        default=0.1,
        ge=0.0,
        le=0.5,
        description=(
            "Share of each account's Northflank request budget kept for new resources, spec changes "
            "and NotFound confirmations; routine polling is paced over the rest."
        ),
    )
    batch_delay_seconds: float = Field(
        default=1.0,
        ge=0.0,
        le=60.0,
        description=("New resources are observed this soon, together with others of their project arriving meanwhile."),
    )
    transitional_speedup: float = Field(
        default=4.0,
        ge=1.0,
        le=60.0,
        description=(
            "Deployments that are pending, provisioning, starting or deleting are observed this many "
            "times more often (never more often than every 10 s unless the interval itself is shorter)."
        ),
    )
    credentials_cache_seconds: float = Field(
        default=30.0,
        ge=0.0,
        description="How long a token read from a Secret is reused before the Secret is read again.",
    )
    resync_seconds: float = Field(
        default=300.0,
        ge=1.0,
        le=86400.0,
        description=(
            "Every this many seconds the operator lists its resources from the API server and forgets "
            "those that are gone (a deletion missed in a watch gap), and checks that the CRD is served."
        ),
    )
    shutdown_timeout_seconds: float = Field(
        default=20.0,
        gt=0.0,
        le=3600.0,
        description=(
            "After SIGTERM the process exits within this many seconds whatever it is doing; keep it "
            "below the pod's terminationGracePeriodSeconds (30 by default)."
        ),
    )
    label_selector: str | None = Field(
        default=None,
        description=(
            "Only track resources whose labels match this Kubernetes label selector (sharding); unset or "
            "empty tracks every resource in the watched namespaces."
        ),
    )

    metrics_bind_address: str | None = Field(
        default=None,
        description=(
            "Serve Prometheus metrics at /metrics (and readiness at /readyz) on this HOST:PORT, e.g. "
            "':8081'; unset serves nothing."
        ),
    )
    metrics_per_resource_series: bool = Field(
        default=True,
        description=(
            "Export series per resource (status conditions, phase, observation age, poll interval by "
            "namespace and name); off, only the counts by phase and by condition are exported, which "
            "keeps a scrape small for fleets of thousands."
        ),
    )
    metrics_secure: bool = Field(
        default=False,
        description=(
            "Serve /metrics over HTTPS and only to bearer tokens the API server allows get on the "
            "non-resource URL /metrics (TokenReview and SubjectAccessReview, as controller-runtime's "
            "--metrics-secure); false serves plain HTTP to anyone who can reach the port."
        ),
    )
    metrics_cert_dir: Path | None = Field(
        default=None,
        description=(
            "Directory holding tls.crt and tls.key for --metrics-secure (a mounted Secret); unset: a "
            "self-signed certificate made at start-up."
        ),
    )
    enable_management: bool = Field(
        default=False,
        description=(
            "Let resources whose spec.managementPolicies include Create, Update, Delete or * write to "
            "Northflank; off (the default), such resources say ManagementDisabled and nothing is sent."
        ),
    )
    leader_elect: bool = Field(
        default=False,
        description=(
            "Elect a leader through a coordination.k8s.io Lease so that several replicas can run: only "
            "the leader polls Northflank and writes status, the others keep their watch warm."
        ),
    )
    leader_election_id: str = Field(
        default="northflank-llm-operator",
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="Name of the leader election Lease (also the name label of leader_election_master_status).",
    )
    leader_election_namespace: str | None = Field(
        default=None,
        description="Namespace of the Lease; default: the pod's own namespace (required out of cluster).",
    )
    leader_election_lease_duration_seconds: float = Field(
        default=15.0, gt=0.0, le=3600.0, description="A standby takes over once the leader has not renewed this long."
    )
    leader_election_renew_deadline_seconds: float = Field(
        default=10.0,
        gt=0.0,
        le=3600.0,
        description="The leader stops writing and exits when it could not renew for this long.",
    )
    leader_election_retry_period_seconds: float = Field(
        default=2.0, gt=0.0, le=600.0, description="Seconds between attempts to take or renew the Lease."
    )

    @field_validator("metrics_bind_address")
    @classmethod
    def _check_bind_address(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from .metrics import parse_bind_address

        parse_bind_address(value)
        return value.strip()

    @model_validator(mode="after")
    def _check_election_timings(self) -> OperatorSettings:
        if not (
            self.leader_election_retry_period_seconds
            < self.leader_election_renew_deadline_seconds
            < self.leader_election_lease_duration_seconds
        ):
            raise ValueError("leader election needs retry period < renew deadline < lease duration")
        return self

    @field_validator("api_token")
    @classmethod
    def _strip_token(cls, value: SecretStr | None) -> SecretStr | None:
        """``kubectl create secret --from-file`` keeps the file's trailing newline; Secret values are
        stripped the same way. What is left is checked (printable ASCII) when it is first used."""
        if value is None:
            return None
        stripped = value.get_secret_value().strip()
        return SecretStr(stripped) if stripped else None

    @field_validator("api_base_url")
    @classmethod
    def _no_userinfo(cls, value: HttpUrl) -> HttpUrl:
        # httpx would send user:password as Basic auth next to the token, and logs would show it.
        if value.username is not None or value.password is not None:
            raise ValueError(
                "NORTHFLANK_API_BASE_URL must not contain user:password@ credentials; the API token "
                "(NORTHFLANK_API_TOKEN) is the only credential"
            )
        return value

    @field_validator("default_token_namespaces", "default_token_denied_namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _one_token_source(self) -> OperatorSettings:
        if self.api_token is not None and self.api_token_file is not None:
            raise ValueError("set NORTHFLANK_API_TOKEN or NORTHFLANK_API_TOKEN_FILE, not both")
        return self

    @property
    def has_default_token(self) -> bool:
        return self.api_token is not None or self.api_token_file is not None

    @field_validator("label_selector")
    @classmethod
    def _parse_label_selector(cls, value: str | None) -> str | None:
        """A bad selector is a start-up error; an empty one means no selector."""
        if value is None or not value.strip():
            return None
        selector.parse(value)
        return value.strip()

    def planner_config(self) -> PlannerConfig:
        return PlannerConfig(
            reserve_fraction=self.budget_reserve_fraction,
            batch_delay_seconds=self.batch_delay_seconds,
            transitional_speedup=self.transitional_speedup,
            max_in_flight_per_group=self.max_concurrent_requests,
        )
