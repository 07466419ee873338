"""The operator's one settings object, read from the environment once at start-up."""

from __future__ import annotations

from pydantic import AliasChoices, Field, HttpUrl, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from . import selector
from .planner import PlannerConfig

DEFAULT_API_BASE_URL = "https://api.northflank.com"


class OperatorSettings(BaseSettings):
    """Operator-wide settings.

    The Northflank token and base URL use the variable names Northflank's official SDKs use, so an
    environment that already works with the SDK or CLI works here too. Operator-specific knobs carry
    the ``NORTHFLANK_LLM_OPERATOR_`` prefix.
    """

    model_config = SettingsConfigDict(env_prefix="NORTHFLANK_LLM_OPERATOR_", extra="ignore", frozen=True)

    api_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("NORTHFLANK_API_TOKEN", "NF_API_TOKEN"),
        description="Default Northflank API token for resources without spec.credentialsSecretRef.",
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
    max_concurrent_requests: int = Field(
        default=4, ge=1, le=64, description="Northflank requests in flight at once, across all resources."
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
        )
