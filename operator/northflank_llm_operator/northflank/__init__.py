"""Northflank API client: typed models, errors and rate-limit headers. Imports nothing of kopf."""

from .client import ApiResult, DeploymentPage, NorthflankClient
from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    FencedError,
    InvalidResponseError,
    InvalidTokenError,
    NorthflankError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TLSError,
)
from .models import DeploymentStatus, LLMModelDeployment
from .ratelimit import RateLimit

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "ApiResult",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "DeploymentPage",
    "DeploymentStatus",
    "FencedError",
    "InvalidResponseError",
    "InvalidTokenError",
    "LLMModelDeployment",
    "NorthflankClient",
    "NorthflankError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimit",
    "RateLimitError",
    "ServerError",
    "TLSError",
]
