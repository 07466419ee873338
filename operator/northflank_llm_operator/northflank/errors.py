"""Typed errors of the Northflank client.

Every error carries a message fit for a Kubernetes condition: it names what failed and never
contains the token. ``reason`` is a CamelCase word the status mapping uses as condition reason.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, ClassVar

from .ratelimit import MAX_WAIT_SECONDS, RateLimit

# ANSI/VT escape sequences: CSI (colours, cursor moves), OSC (terminal titles, hyperlinks), others.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?|\x9b[0-?]*[ -/]*[@-~]")


def clean_text(text: str) -> str:
    """``text`` without escape sequences or control/format characters (each becomes a space), so an
    upstream message cannot recolour a terminal, forge log lines or hide text with bidi overrides."""
    text = _ESCAPES.sub("", text)
    return "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Cs") else c for c in text)


def token_problem(token: str) -> str | None:
    """What makes ``token`` unusable in an Authorization header, without quoting any of it."""
    if not token:
        return "is empty"
    if not token.isascii() or not token.isprintable():
        return "contains characters that are not printable ASCII"
    if any(c.isspace() for c in token):
        return "contains whitespace"
    return None


class FencedError(Exception):
    """A write or request refused before it was sent, because this replica may no longer act (its
    leader election Lease is or may be someone else's). Not a NorthflankError: Northflank never saw
    the request, so it says nothing about the deployment, the token or the budget."""


class NorthflankError(Exception):
    """Base class of everything the client raises."""

    reason: ClassVar[str] = "NorthflankError"
    #: Whether retrying the same request later can succeed without anyone changing anything.
    transient: ClassVar[bool] = True

    def __init__(self, message: str, *, rate_limit: RateLimit | None = None) -> None:
        message = clean_text(message)
        super().__init__(message)
        self.message = message
        #: The rate-limit headers of the response, when there was one.
        self.rate_limit = rate_limit


class APIConnectionError(NorthflankError):
    """The request did not get an HTTP response (DNS, refused connection, TLS, reset)."""

    reason = "ConnectionFailed"


class APITimeoutError(APIConnectionError):
    """No response within the request timeout, or not all of it within the request deadline."""

    reason = "Timeout"


class TLSError(APIConnectionError):
    """The TLS handshake failed: the message names the certificate problem (expired, wrong host...)."""

    reason = "TLSError"


class InvalidTokenError(NorthflankError):
    """The token cannot be sent at all (whitespace, control or non-ASCII characters)."""

    reason = "CredentialsInvalid"
    transient = False


class InvalidResponseError(NorthflankError):
    """Northflank answered, but the body does not match the documented contract."""

    reason = "InvalidResponse"
    rate_limit: RateLimit  # always known: there was a response

    def __init__(self, message: str, *, status_code: int, rate_limit: RateLimit) -> None:
        super().__init__(message, rate_limit=rate_limit)
        self.status_code = status_code


class APIStatusError(NorthflankError):
    """Northflank answered with a non-success status; the body's error envelope is parsed if present."""

    reason = "UnexpectedStatus"
    transient = False
    rate_limit: RateLimit  # always known: there was a response

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        rate_limit: RateLimit,
        error_id: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message, rate_limit=rate_limit)
        self.status_code = status_code
        self.error_id = error_id
        self.details = details


class BadRequestError(APIStatusError):
    reason = "BadRequest"


class AuthenticationError(APIStatusError):
    """401: the token is missing, malformed, expired or revoked."""

    reason = "AuthenticationFailed"


class PermissionDeniedError(APIStatusError):
    """403: the token is valid but its role does not allow reading this deployment."""

    reason = "PermissionDenied"


class NotFoundError(APIStatusError):
    """404: no such project or LLM model deployment (or it has finished deleting)."""

    reason = "NotFound"


class ConflictError(APIStatusError):
    reason = "Conflict"


class RateLimitError(APIStatusError):
    """429: the account's request budget is spent until ``rate_limit.reset_seconds`` from now."""

    reason = "RateLimited"
    transient = True


class ServerError(APIStatusError):
    """5xx: Northflank (or a proxy in front of it) failed."""

    reason = "ServerError"
    transient = True

    @property
    def retry_after_seconds(self) -> float | None:
        """A 502/503's ``Retry-After`` (capped at the documented one-hour window), if it sent one."""
        if self.status_code not in (502, 503) or self.rate_limit.retry_after_seconds is None:
            return None
        return min(self.rate_limit.retry_after_seconds, MAX_WAIT_SECONDS)


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitError,
}


def error_class_for(status_code: int) -> type[APIStatusError]:
    """The typed error for an HTTP status; unknown 4xx fall back to APIStatusError."""
    if status_code >= 500:
        return ServerError
    return _BY_STATUS.get(status_code, APIStatusError)
