"""Which Northflank token a resource polls with.

A resource either names a Secret in its own namespace (spec.credentialsSecretRef) or uses the
operator-wide token (NORTHFLANK_API_TOKEN, or a mounted file named by NORTHFLANK_API_TOKEN_FILE that
is re-read when it changes, so a rotated Secret needs no restart). An installation may forbid the
operator-wide token in chosen namespaces, or allow it only in a list of them. Secret values are
cached briefly so a thousand resources sharing one Secret do not read it a thousand times per
interval, and dropped on a 401 so a rotated token is picked up at once. Tokens live only in memory;
a credential is identified elsewhere by an opaque digest.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydantic import SecretStr

from . import redaction
from .northflank.errors import token_problem
from .resource import LLMModelDeploymentSpec

logger = logging.getLogger(__name__)

#: Which operator-wide variable a message names.
_ENV_SOURCE = "the operator-wide token (NORTHFLANK_API_TOKEN)"
_FILE_SOURCE = "the operator-wide token file (NORTHFLANK_API_TOKEN_FILE)"


class SecretReader(Protocol):
    async def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        """The decoded value, or CredentialsError saying what is wrong with the Secret."""
        ...


class CredentialsError(Exception):
    """No usable token for a resource; ``reason`` becomes the condition reason.

    ``transient``: retrying later may succeed without anyone acting (the API server failed or timed
    out reading the Secret), so the resource is not Stalled.
    """

    def __init__(self, reason: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.transient = transient


@dataclass(frozen=True)
class Credential:
    token: str = field(repr=False)
    #: Opaque, stable identity of the token (a digest) for rate-limit bookkeeping; never the token.
    identity: str

    @classmethod
    def of(cls, token: str) -> Credential:
        redaction.register_secret(token)
        return cls(token=token, identity=hashlib.sha256(token.encode()).hexdigest()[:16])


#: Reads of a file that keeps changing under the reader before giving up until the next check.
_READ_ATTEMPTS = 3


def _fingerprint(path: Path) -> tuple[int, int, int, int, int]:
    """What changes when a file is written or swapped (stat follows a Secret volume's symlinks)."""
    info = path.stat()
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns


def _read_when_still(path: Path) -> str | None:
    """The file's text, read while nothing wrote it; None when it kept changing during every read."""
    for _ in range(_READ_ATTEMPTS):
        before = _fingerprint(path)
        raw = path.read_bytes()  # bytes: the length must compare with st_size (no newline translation)
        after = _fingerprint(path)
        if before == after and len(raw) == after[2]:
            return raw.decode("utf-8")
    logger.warning("%s kept changing while it was read; it is read again at the next check", _FILE_SOURCE)
    return None


def read_token_file(path: Path) -> str:
    """The token in ``path``, read as the operator reads NORTHFLANK_API_TOKEN_FILE (complete, stripped,
    format-checked), for one-shot commands; CredentialsError says what is wrong without quoting it."""
    try:
        content = _read_when_still(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialsError(
            "CredentialsUnavailable", f"Cannot read {_FILE_SOURCE} ({type(exc).__name__})."
        ) from None
    if content is None:
        raise CredentialsError("CredentialsUnavailable", f"{_FILE_SOURCE[0].upper()}{_FILE_SOURCE[1:]} kept changing.")
    return _checked(content.strip(), _FILE_SOURCE).token


def _checked(token: str, what: str) -> Credential:
    """The credential for an already stripped token, or CredentialsInvalid naming what is wrong."""
    problem = token_problem(token)
    if problem is not None:
        raise CredentialsError("CredentialsInvalid", f"{what[0].upper()}{what[1:]} {problem}.")
    return Credential.of(token)


#: A Secret key a resource reads its token from: (namespace, Secret name, key).
SecretId = tuple[str, str, str]


def secret_id_of(namespace: str, spec: LLMModelDeploymentSpec) -> SecretId | None:
    ref = spec.credentials_secret_ref
    return (namespace, ref.name, ref.key) if ref is not None else None


#: How soon a Secret read that the API server failed (5xx, timeout) is tried again.
TRANSIENT_RETRY_SECONDS = 5.0


class CredentialResolver:
    def __init__(
        self,
        reader: SecretReader,
        *,
        default_token: SecretStr | None,
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        default_token_file: Path | None = None,
        default_token_namespaces: Collection[str] | None = None,
        default_token_denied_namespaces: Collection[str] = (),
    ) -> None:
        self._reader = reader
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[SecretId, tuple[float, Credential]] = {}
        #: What is wrong with a Secret whose last read failed (and no token was read before).
        self._problems: dict[SecretId, tuple[float, CredentialsError]] = {}
        self._allowed = frozenset(default_token_namespaces) if default_token_namespaces is not None else None
        self._denied = frozenset(default_token_denied_namespaces)
        self._token_file = default_token_file
        self._file_content: str | None = None
        self._default: Credential | CredentialsError | None = None
        if default_token_file is not None:
            self.refresh_default()
        elif default_token is not None:
            try:
                # Validated once: a token with a newline or non-ASCII in it is reported, never sent.
                self._default = _checked(default_token.get_secret_value().strip(), _ENV_SOURCE)
            except CredentialsError as exc:
                self._default = exc

    def refresh_default(self) -> bool:
        """Re-read the operator-wide token file; True when what it yields changed (a rotation).

        Only a complete file is used: a read during which the file changed is repeated, and a content
        that fails the format check (a file truncated before the new token is written) is ignored,
        keeping the last good token, until the file changes again.
        """
        if self._token_file is None:
            return False
        try:
            content = _read_when_still(self._token_file)
        except (OSError, UnicodeDecodeError) as exc:
            if self._file_content is None and isinstance(self._default, CredentialsError):
                return False
            self._file_content = None
            # A Secret volume is swapped atomically; a failure here is the file's own problem.
            self._default = CredentialsError(
                "CredentialsUnavailable",
                f"Cannot read {_FILE_SOURCE} ({type(exc).__name__}).",
                transient=isinstance(exc, OSError),
            )
            return True
        if content is None or content == self._file_content:
            return False  # still being written (try at the next check), or unchanged
        self._file_content = content
        previous = self._default
        try:
            self._default = _checked(content.strip(), _FILE_SOURCE)
        except CredentialsError as exc:
            if isinstance(previous, Credential):
                logger.warning("%s; the token read before stays in use, and this content is ignored until "
                               "it changes again", exc.message.rstrip("."))  # fmt: skip
                return False
            self._default = exc
        changed = not (
            isinstance(previous, Credential)
            and isinstance(self._default, Credential)
            and previous.identity == self._default.identity
        )
        if changed and previous is not None:
            logger.info("The operator-wide token file changed; its resources are observed with the new token")
        return changed

    def default_allowed(self, namespace: str) -> bool:
        """Whether resources in ``namespace`` may use the operator-wide token (tenancy setting)."""
        if namespace in self._denied:
            return False
        return self._allowed is None or namespace in self._allowed

    async def resolve(self, namespace: str, spec: LLMModelDeploymentSpec) -> Credential:
        ref = spec.credentials_secret_ref
        if ref is None:
            return self._resolve_default(namespace)
        cache_key = (namespace, ref.name, ref.key)
        cached = self._cache.get(cache_key)
        now = self._clock()
        if cached is not None and now - cached[0] < self._cache_seconds:
            return cached[1]
        try:
            value = await self._reader.read_secret_value(namespace, ref.name, ref.key)
            credential = _checked(value, f"key {ref.key!r} of Secret {ref.name!r}")
        except CredentialsError as exc:
            if exc.transient and cached is not None:
                # The API server failed to answer: keep polling with the last token read.
                logger.warning("Re-reading Secret %s/%s failed (%s); using the token read before",
                               namespace, ref.name, exc.message)  # fmt: skip
                return cached[1]
            self._cache.pop(cache_key, None)
            raise
        self._cache[cache_key] = (now, credential)
        return credential

    def peek(self, namespace: str, spec: LLMModelDeploymentSpec) -> Credential | None:
        """The credential without any I/O: the operator-wide token, or a Secret's last read value
        (however old: a re-read refreshes it in the background). None when the Secret was never read
        (or its last read failed): :meth:`read` it. Raises CredentialsError for a known problem."""
        secret = secret_id_of(namespace, spec)
        if secret is None:
            return self._resolve_default(namespace)
        cached = self._cache.get(secret)
        if cached is not None:
            return cached[1]
        known = self._problems.get(secret)
        if known is not None:
            failed_at, problem = known
            # A read the API server failed is tried again soon; a missing Secret after the cache time.
            retry = TRANSIENT_RETRY_SECONDS if problem.transient else self._cache_seconds
            if self._clock() - failed_at < retry:
                raise CredentialsError(problem.reason, problem.message, transient=problem.transient)
        return None

    async def read(self, secret: SecretId) -> bool:
        """Read one Secret now and remember what it holds or what is wrong with it. A transient
        failure keeps the token read before. True when what resources get from it changed."""
        namespace, name, key = secret
        before = self._outcome(secret)
        cached = self._cache.get(secret)
        try:
            value = await self._reader.read_secret_value(namespace, name, key)
            credential = _checked(value, f"key {key!r} of Secret {name!r}")
        except CredentialsError as exc:
            if exc.transient and cached is not None:
                logger.warning("Re-reading Secret %s/%s failed (%s); using the token read before",
                               namespace, name, exc.message)  # fmt: skip
                self._cache[secret] = (self._clock(), cached[1])  # tried: due again after the cache time
                return False
            self._cache.pop(secret, None)
            if cached is not None:
                self._release(cached[1])
            self._problems[secret] = (self._clock(), exc)
            return self._outcome(secret) != before
        self._problems.pop(secret, None)
        self._cache[secret] = (self._clock(), credential)
        if cached is not None and cached[1].identity != credential.identity:
            self._release(cached[1])
        return self._outcome(secret) != before

    def _outcome(self, secret: SecretId) -> tuple[str | None, tuple[str, str] | None]:
        cached, known = self._cache.get(secret), self._problems.get(secret)
        return (cached[1].identity if cached else None, (known[1].reason, known[1].message) if known else None)

    def due(self, secrets: Collection[SecretId]) -> list[SecretId]:
        """Of ``secrets``, those whose last read is older than the cache time (or never succeeded)."""
        now = self._clock()
        return [s for s in secrets if (c := self._cache.get(s)) is None or now - c[0] >= self._cache_seconds]

    def retain(self, secrets: Collection[SecretId]) -> None:
        """Forget every Secret not in ``secrets`` (no resource reads it any more) and its token."""
        keep = set(secrets)
        for secret in [s for s in self._cache if s not in keep]:
            self._release(self._cache.pop(secret)[1])
        for secret in [s for s in self._problems if s not in keep]:
            del self._problems[secret]

    def forget_secret(self, secret: SecretId) -> None:
        """Drop a Secret's cached value (after a 401): the next use reads it again."""
        cached = self._cache.pop(secret, None)
        self._problems.pop(secret, None)
        if cached is not None:
            self._release(cached[1])

    def _release(self, credential: Credential) -> None:
        if all(c.identity != credential.identity for _, c in self._cache.values()) and not (
            isinstance(self._default, Credential) and self._default.identity == credential.identity
        ):
            redaction.unregister_secret(credential.token)

    def _resolve_default(self, namespace: str) -> Credential:
        if not self.default_allowed(namespace):
            # Says only what this installation allows here; nothing about any other namespace.
            raise CredentialsError(
                "CredentialsNotConfigured",
                f"This installation does not let resources in namespace {namespace!r} use the operator-wide "
                "token; set spec.credentialsSecretRef to a Secret in this namespace.",
            )
        if self._default is None:
            raise CredentialsError(
                "CredentialsNotConfigured",
                "The resource sets no spec.credentialsSecretRef and the operator has no NORTHFLANK_API_TOKEN.",
            )
        if isinstance(self._default, CredentialsError):
            problem = self._default  # a fresh exception each time: no traceback piles up on one object
            raise CredentialsError(problem.reason, problem.message, transient=problem.transient)
        return self._default

    def forget(self, namespace: str, spec: LLMModelDeploymentSpec) -> None:
        """Drop a cached Secret value (after a 401), so the next poll reads the Secret again."""
        ref = spec.credentials_secret_ref
        if ref is not None:
            self._cache.pop((namespace, ref.name, ref.key), None)
            self._problems.pop((namespace, ref.name, ref.key), None)
        else:
            self.refresh_default()
