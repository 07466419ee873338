"""Which Northflank token a resource polls with.

A resource either names a Secret in its own namespace (spec.credentialsSecretRef) or uses the
operator-wide token. Secret values are cached briefly so a thousand resources sharing one Secret do
not read it a thousand times per interval, and dropped on a 401 so a rotated token is picked up at
once. Tokens live only in memory; a credential is identified elsewhere by an opaque digest.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import SecretStr

from .resource import LLMModelDeploymentSpec


class SecretReader(Protocol):
    async def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        """The decoded value, or CredentialsError saying what is wrong with the Secret."""
        ...


class CredentialsError(Exception):
    """No usable token for a resource; ``reason`` becomes the condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Credential:
    token: str = field(repr=False)
    #: Opaque, stable identity of the token (a digest) for rate-limit bookkeeping; never the token.
    identity: str

    @classmethod
    def of(cls, token: str) -> Credential:
        return cls(token=token, identity=hashlib.sha256(token.encode()).hexdigest()[:16])


class CredentialResolver:
    def __init__(
        self,
        reader: SecretReader,
        *,
        default_token: SecretStr | None,
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self._default = Credential.of(default_token.get_secret_value()) if default_token else None
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[tuple[str, str, str], tuple[float, Credential]] = {}

    async def resolve(self, namespace: str, spec: LLMModelDeploymentSpec) -> Credential:
        ref = spec.credentials_secret_ref
        if ref is None:
            if self._default is None:
                raise CredentialsError(
                    "CredentialsNotConfigured",
                    "The resource sets no spec.credentialsSecretRef and the operator has no NORTHFLANK_API_TOKEN.",
                )
            return self._default
        cache_key = (namespace, ref.name, ref.key)
        cached = self._cache.get(cache_key)
        now = self._clock()
        if cached is not None and now - cached[0] < self._cache_seconds:
            return cached[1]
        try:
            value = await self._reader.read_secret_value(namespace, ref.name, ref.key)
        except CredentialsError:
            self._cache.pop(cache_key, None)
            raise
        credential = Credential.of(value)
        self._cache[cache_key] = (now, credential)
        return credential

    def forget(self, namespace: str, spec: LLMModelDeploymentSpec) -> None:
        """Drop a cached Secret value (after a 401), so the next poll reads the Secret again."""
        ref = spec.credentials_secret_ref
        if ref is not None:
            self._cache.pop((namespace, ref.name, ref.key), None)
