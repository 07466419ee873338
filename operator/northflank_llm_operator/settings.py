"""The operator's one settings object, read from the environment once at start-up."""

from __future__ import annotations

from pydantic import AliasChoices, Field, HttpUrl, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

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
        ge=1.0,
        le=86400.0,
        description="Seconds between observations of a resource that sets no spec.pollIntervalSeconds.",
    )
    request_timeout_seconds: float = Field(default=10.0, gt=0.0, le=300.0)
    max_concurrent_requests: int = Field(
        default=4, ge=1, le=64, description="Northflank requests in flight at once, across all resources."
    )
    status_heartbeat_seconds: float = Field(
        default=600.0,
        ge=1.0,
        description=(
            "An unchanged observation is re-stamped into status.lastSyncTime at most this often, so "
            "a steady deployment costs no Kubernetes writes between heartbeats."
        ),
    )
    stale_after_intervals: float = Field(
        default=3.0,
        ge=1.0,
        description="Ready turns Unknown once no poll has succeeded for this many poll intervals.",
    )
    credentials_cache_seconds: float = Field(
        default=30.0,
        ge=0.0,
        description="How long a token read from a Secret is reused before the Secret is read again.",
    )
