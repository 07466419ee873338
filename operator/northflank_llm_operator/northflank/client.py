"""Async client for the read side of Northflank's LLM model deployment API.

It knows nothing of Kubernetes or kopf. One instance (one connection pool) serves the whole
process; the token is passed per call because each resource may use its own credentials.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar
from urllib.parse import quote

import httpx
import pydantic

from northflank_llm_operator import __version__

from .contract import PAGE_SIZE
from .errors import (
    APIConnectionError,
    APITimeoutError,
    FencedError,
    InvalidResponseError,
    InvalidTokenError,
    TLSError,
    clean_text,
    error_class_for,
    token_problem,
)
from .models import (
    GetLLMModelDeploymentResponse,
    ListLLMModelDeploymentsResponse,
    LLMModelDeployment,
)
from .ratelimit import RateLimit

T = TypeVar("T")

USER_AGENT = f"northflank-llm-operator/{__version__}"
_MAX_ERROR_TEXT = 300
MAX_PAGE_SIZE = PAGE_SIZE
DEFAULT_DEADLINE_SECONDS = 30.0
DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ApiResult(Generic[T]):
    """A parsed success response and the rate-limit headers that came with it."""

    data: T
    rate_limit: RateLimit


@dataclass(frozen=True)
class DeploymentPage:
    """One page of the list endpoint."""

    items: list[dict[str, Any]]
    has_next_page: bool
    cursor: str | None

    @property
    def has_more(self) -> bool:
        """Whether to ask for another page: the one paging rule of this project.

        Northflank's official clients disagree off the documented path. JS 0.9.5 continues while a
        ``cursor`` is present (and ignores ``hasNextPage``), Python 2.1.0 while ``hasNextPage`` or a
        cursor is. Going on whenever either says so never stops before either client would, so no
        deployment is missed: with ``hasNextPage`` and no cursor the next page is asked for by number
        (as Python does; JS would stop and miss the rest). The one exception is an empty page, which
        ends the listing even with a cursor: nothing can follow it, and an API that always hands out a
        cursor must not be walked forever.
        """
        return self.has_next_page or (self.cursor is not None and bool(self.items))


Endpoint = Literal["get", "list"]
#: The methods the transport sends; only the writer (management) ever uses the last two.
Method = Literal["GET", "POST", "DELETE"]


class RequestObserver(Protocol):
    """Told about every request (metrics hook in here; the client itself knows nothing of them)."""

    def request_finished(self, endpoint: str, status_code: int | None, seconds: float) -> None:
        """``status_code`` is None when no HTTP answer came (timeout, connection error)."""
        ...


def path_segment(value: str, *, what: str) -> str:
    """Percent-encode one path parameter so no id can change the request path."""
    if value in ("", ".", ".."):
        raise ValueError(f"{what} {value!r} cannot be used as a path segment")
    return quote(value, safe="")


def project_path(project_id: str, team_id: str | None) -> str:
    """``/v1/projects/{id}``, or its ``/v1/teams/{teamId}/...`` twin organisation tokens need."""
    path = f"/projects/{path_segment(project_id, what='projectId')}"
    if team_id is not None:
        path = f"/teams/{path_segment(team_id, what='teamId')}{path}"
    return f"/v1{path}"


class ApiTransport:
    """The one HTTP path to Northflank that the read client and the writer share: token checks, the
    Lease fence, the whole-request deadline, the bounded body, typed errors (their messages cleaned of
    control characters, never holding the token) and the rate-limit headers of every answer."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_seconds: float = 10.0,
        deadline_seconds: float = DEFAULT_DEADLINE_SECONDS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: RequestObserver | None = None,
        may_send: Callable[[], bool] | None = None,
    ) -> None:
        self._observer = observer
        self._may_send = may_send
        # httpx's timeout bounds each socket operation; a body dripping one byte per second never
        # trips it. The deadline bounds the whole request, headers and body.
        self._deadline = deadline_seconds
        self._max_bytes = max_response_bytes
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout_seconds),
            transport=transport,
            # Only encodings this client decodes itself, with a size limit (see _read_body).
            headers={"User-Agent": USER_AGENT, "Accept": "application/json", "Accept-Encoding": "gzip, deflate"},
            # Redirects would forward the bearer token to wherever they point; the API never redirects.
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: Method,
        path: str,
        *,
        token: str,
        endpoint: str,
        params: dict[str, str | int] | None = None,
        json_body: Mapping[str, Any] | None = None,
        read_body: bool = True,
    ) -> tuple[Any, RateLimit, int]:
        """Send one request; the parsed JSON body, the rate-limit headers and the status code, or a
        typed NorthflankError (FencedError when the Lease fence says no: nothing was sent).
        ``read_body`` False: a success's body is not parsed at all (None), e.g. an undocumented one."""
        problem = token_problem(token)
        if problem is not None:
            # Never handed to the HTTP library: it would refuse the header and log it whole.
            raise InvalidTokenError(f"The Northflank API token {problem}; no request was sent.")
        if self._may_send is not None and not self._may_send():
            raise FencedError(f"not sending {method} {path}: this replica no longer holds the leader election Lease")
        started = time.monotonic()
        status_code: int | None = None
        try:
            async with asyncio.timeout(self._deadline):
                async with self._http.stream(
                    method, path, params=params, json=json_body, headers={"Authorization": f"Bearer {token}"}
                ) as response:
                    status_code = response.status_code
                    rate_limit = RateLimit.from_headers(response.headers)
                    raw = await _read_body(response, self._max_bytes, path, rate_limit)
        except httpx.TimeoutException as exc:
            raise APITimeoutError(f"Northflank did not answer {path} in time ({type(exc).__name__})") from None
        except TimeoutError:
            raise APITimeoutError(
                f"Northflank did not finish answering {path} within the {self._deadline:g}s request deadline"
            ) from None
        except httpx.TransportError as exc:
            tls = _tls_problem(exc)
            if tls is not None:
                raise TLSError(f"could not reach Northflank for {path}: {tls}") from None
            raise APIConnectionError(f"could not reach Northflank for {path}: {type(exc).__name__}") from None
        finally:
            # Every request that was sent is counted, whatever became of its answer.
            self._observe(endpoint, status_code, started)

        charset = response.charset_encoding or "utf-8"
        if not response.is_success:
            raise _status_error(response, raw, charset, path, rate_limit)
        if not read_body:
            return None, rate_limit, response.status_code
        try:
            try:
                return json.loads(raw), rate_limit, response.status_code
            except RecursionError:
                # Nested deeper than the parser goes (a hostile field): the levels past what status
                # mirrors anyway are cut, so the rest of the answer still counts and the status mapping
                # says what was not mirrored.
                return json.loads(cut_below_depth(raw, MAX_JSON_DEPTH)), rate_limit, response.status_code
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InvalidResponseError(
                f"Northflank answered {path} with HTTP {response.status_code} but the body is not JSON: "
                f"{_snippet(raw.decode(charset, errors='replace'))}",
                status_code=response.status_code,
                rate_limit=rate_limit,
            ) from None

    def _observe(self, endpoint: str, status_code: int | None, started: float) -> None:
        if self._observer is not None:
            self._observer.request_finished(endpoint, status_code, time.monotonic() - started)


class NorthflankClient:
    """Typed GET access to LLM model deployments."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_seconds: float = 10.0,
        deadline_seconds: float = DEFAULT_DEADLINE_SECONDS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: RequestObserver | None = None,
        may_send: Callable[[], bool] | None = None,
    ) -> None:
        """``may_send`` is asked right before each request; when it says no, FencedError is raised and
        nothing is sent (the operator passes its leader election fence; ``import`` passes none)."""
        self._api = ApiTransport(
            base_url,
            timeout_seconds=timeout_seconds,
            deadline_seconds=deadline_seconds,
            max_response_bytes=max_response_bytes,
            transport=transport,
            observer=observer,
            may_send=may_send,
        )

    async def aclose(self) -> None:
        await self._api.aclose()

    async def __aenter__(self) -> NorthflankClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def get_llm_model_deployment(
        self, project_id: str, deployment_id: str, *, token: str, team_id: str | None = None
    ) -> ApiResult[LLMModelDeployment]:
        """``GET /v1/projects/{projectId}/llm-model-deployments/{llmModelDeploymentId}``."""
        path = (
            f"{project_path(project_id, team_id)}/llm-model-deployments/"
            f"{path_segment(deployment_id, what='llmModelDeploymentId')}"
        )
        body, rate_limit, status_code = await self._get(path, token=token, endpoint="get")
        envelope = _validate(GetLLMModelDeploymentResponse, body, status_code, rate_limit)
        return ApiResult(envelope.data, rate_limit)

    async def list_llm_model_deployments(
        self,
        project_id: str,
        *,
        token: str,
        team_id: str | None = None,
        per_page: int = MAX_PAGE_SIZE,
        cursor: str | None = None,
        page: int | None = None,
    ) -> ApiResult[DeploymentPage]:
        """One page of ``GET /v1/projects/{projectId}/llm-model-deployments``: the page after
        ``cursor`` (the documented way), or page number ``page`` when a response gave no cursor."""
        if not 1 <= per_page <= MAX_PAGE_SIZE:
            raise ValueError(f"per_page must be between 1 and {MAX_PAGE_SIZE}")
        params: dict[str, str | int] = {"per_page": per_page}
        if cursor is not None:
            params["cursor"] = cursor
        elif page is not None:
            params["page"] = page
        path = f"{project_path(project_id, team_id)}/llm-model-deployments"
        body, rate_limit, status_code = await self._get(path, token=token, params=params, endpoint="list")
        envelope = _validate(ListLLMModelDeploymentsResponse, body, status_code, rate_limit)
        listing = DeploymentPage(
            items=envelope.data.llm_model_deployments,
            has_next_page=envelope.pagination.has_next_page,
            cursor=envelope.pagination.cursor,
        )
        return ApiResult(listing, rate_limit)

    async def _get(
        self, path: str, *, token: str, endpoint: Endpoint, params: dict[str, str | int] | None = None
    ) -> tuple[Any, RateLimit, int]:
        # Observing only ever reads: this client sends GETs and nothing else.
        return await self._api.request("GET", path, token=token, endpoint=endpoint, params=params)


#: JSON deeper than this is cut before parsing (status mirrors 32 levels; Python's parser stops near 1,000).
MAX_JSON_DEPTH = 64


def cut_below_depth(raw: bytes, max_depth: int) -> bytes:
    """``raw`` JSON with every value nested deeper than ``max_depth`` replaced by ``null``.

    A byte scanner that knows strings and escapes; the bytes outside cut values are kept as they are.
    Only used when the parser gave up, so its pure-Python speed is paid on hostile answers only.
    """
    out = bytearray()
    depth = cut_at = 0  # cut_at: the depth at which the value being cut began (0: not cutting)
    in_string = escaped = False
    for byte in raw:
        keep = cut_at == 0
        if in_string:
            escaped, in_string = _string_step(byte, escaped)
        elif byte == _QUOTE:
            in_string = True
        elif byte in _OPENING:
            depth += 1
            if keep and depth > max_depth:
                cut_at, keep = depth, False
                out += b"null"
        elif byte in _CLOSING:
            depth -= 1
            if not keep and depth < cut_at:
                cut_at = 0
                continue
        if keep:
            out.append(byte)
    return bytes(out)


_QUOTE, _BACKSLASH = 0x22, 0x5C
_OPENING, _CLOSING = frozenset(b"[{"), frozenset(b"]}")


def _string_step(byte: int, escaped: bool) -> tuple[bool, bool]:
    """(escaped, still in the string) after ``byte`` inside a JSON string."""
    if escaped:
        return False, True
    return byte == _BACKSLASH, byte != _QUOTE


def _decoder_for(encoding: str) -> Any:
    """A zlib decompressor for the Content-Encoding, None for identity, ValueError for anything else."""
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    if encoding in ("", "identity"):
        return None
    raise ValueError(encoding)


async def _read_body(response: httpx.Response, limit: int, path: str, rate_limit: RateLimit) -> bytes:
    """The body, decompressed, or InvalidResponseError once it grows past ``limit`` bytes.

    Decompression is done here, not by httpx, so that the limit applies to the inflated size one
    bounded step at a time: a small gzip body cannot inflate into gigabytes of memory.
    """

    def invalid(what: str) -> InvalidResponseError:
        return InvalidResponseError(
            f"Northflank's answer to {path} {what}", status_code=response.status_code, rate_limit=rate_limit
        )

    too_large = (
        f"is larger than {limit} bytes; it was not read further (a proxy error, or a response this "
        "operator cannot hold)"
    )
    if response.is_stream_consumed:
        # Only an in-memory transport (tests) hands over a body already read and decoded.
        if len(response.content) > limit:
            raise invalid(too_large)
        return response.content
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    try:
        decoder = _decoder_for(encoding)
    except ValueError:
        raise invalid(f"uses an unsupported Content-Encoding {clean_text(encoding)[:40]!r}") from None
    if decoder is not None:
        too_large = too_large.replace("bytes;", "bytes after decompression;")
    declared = response.headers.get("content-length", "")
    if decoder is None and declared.isdigit() and int(declared) > limit:
        raise invalid(too_large)
    body = bytearray()
    try:
        async for chunk in response.aiter_raw():
            # With a decoder, at most one byte more than the limit is ever inflated from a chunk.
            body += chunk if decoder is None else decoder.decompress(chunk, limit + 1 - len(body))
            if len(body) > limit or (decoder is not None and decoder.unconsumed_tail):
                raise invalid(too_large)
        if decoder is not None:
            body += decoder.flush()  # bounded: all input is consumed, at most one window is pending
    except zlib.error:
        raise invalid(f"is not valid {encoding} data") from None
    if len(body) > limit:
        raise invalid(too_large)
    return bytes(body)


def _tls_problem(exc: BaseException) -> str | None:
    """Name a TLS failure (expired, self-signed, wrong host...) hidden in httpx's ConnectError chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            detail = current.verify_message or current.reason or "verification failed"
            return f"TLS certificate verification failed: {clean_text(str(detail))}"
        if isinstance(current, ssl.SSLError):
            return f"TLS handshake failed: {clean_text(str(current.reason or current))}"
        current = current.__cause__ or current.__context__
    return None


ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)


def _validate(model: type[ModelT], body: Any, status_code: int, rate_limit: RateLimit) -> ModelT:
    try:
        return model.model_validate(body)
    except pydantic.ValidationError as exc:
        raise InvalidResponseError(
            f"Northflank's response does not match the API contract: {summarize_validation_error(exc)}",
            status_code=status_code,
            rate_limit=rate_limit,
        ) from None


def summarize_validation_error(exc: pydantic.ValidationError, *, limit: int = 5) -> str:
    """``data.id: Field required; data.dns.base: String should match pattern ...`` (first few)."""
    parts = []
    for error in exc.errors()[:limit]:
        location = ".".join(str(part) for part in error["loc"]) or "body"
        parts.append(f"{location}: {error['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def _status_error(response: httpx.Response, raw: bytes, charset: str, path: str, rate_limit: RateLimit) -> Exception:
    error_id: str | None = None
    details: Any = None
    upstream_message: str | None = None
    text = raw.decode(charset, errors="replace")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message_value = error.get("message")
        upstream_message = message_value if isinstance(message_value, str) else None
        id_value = error.get("id")
        error_id = clean_text(id_value)[:100] if isinstance(id_value, str) else None
        details = error.get("details")
    if upstream_message is None:
        upstream_message = _snippet(text) or response.reason_phrase
    message = f"Northflank answered {path} with HTTP {response.status_code}: {_snippet(upstream_message)}"
    cls = error_class_for(response.status_code)
    return cls(message, status_code=response.status_code, rate_limit=rate_limit, error_id=error_id, details=details)


def _snippet(text: str) -> str:
    text = " ".join(clean_text(text).split())
    return text if len(text) <= _MAX_ERROR_TEXT else text[: _MAX_ERROR_TEXT - 1] + "…"
