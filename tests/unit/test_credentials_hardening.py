"""Token hygiene, the token file, the tenancy setting and transient Secret reads (issue 7, items 6-11)."""

from __future__ import annotations

import base64
import logging
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import kubernetes
import pytest
from aiohttp import web
from pydantic import SecretStr

from northflank_llm_operator import cli, northflank
from northflank_llm_operator.credentials import CredentialResolver, CredentialsError
from northflank_llm_operator.kube import KubernetesGateway
from northflank_llm_operator.northflank import NorthflankClient, NotFoundError
from northflank_llm_operator.resource import LLMModelDeploymentSpec
from northflank_llm_operator.settings import OperatorSettings
from tests.unit.test_controller import Harness

DEFAULT_SPEC = LLMModelDeploymentSpec.model_validate({"projectId": "p", "llmModelDeploymentId": "d"})
SECRET_SPEC = LLMModelDeploymentSpec.model_validate(
    {"projectId": "p", "llmModelDeploymentId": "d", "credentialsSecretRef": {"name": "nf"}}
)


class Reader:
    def __init__(self) -> None:
        self.values: dict[tuple[str, str, str], str] = {}
        self.error: CredentialsError | None = None

    async def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        if self.error is not None:
            raise self.error
        return self.values[(namespace, name, key)]


# -- settings -------------------------------------------------------------------------------------


def test_the_operator_wide_token_is_stripped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NORTHFLANK_API_TOKEN", "from-file-token\n")  # as --from-file leaves it
    settings = OperatorSettings()
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == "from-file-token"


def test_a_base_url_with_a_password_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NORTHFLANK_API_BASE_URL", "https://someone:hunter2-password@api.northflank.com")
    assert cli.main(["run", "-A"]) == 2
    err = capsys.readouterr().err
    assert "must not contain user:password@" in err
    assert "hunter2-password" not in err


def test_token_and_token_file_are_exclusive(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NORTHFLANK_API_TOKEN", "a-token-value")
    monkeypatch.setenv("NORTHFLANK_API_TOKEN_FILE", str(tmp_path / "token"))
    with pytest.raises(ValueError, match="not both"):
        OperatorSettings()


def test_tenancy_settings_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NORTHFLANK_LLM_OPERATOR_DEFAULT_TOKEN_NAMESPACES", "team-a, team-b,")
    monkeypatch.setenv("NORTHFLANK_LLM_OPERATOR_DEFAULT_TOKEN_DENIED_NAMESPACES", "tenant-x")
    settings = OperatorSettings()
    assert settings.default_token_namespaces == ("team-a", "team-b")
    assert settings.default_token_denied_namespaces == ("tenant-x",)


# -- token validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("two words", "contains whitespace"),
        ("tab\tinside", "printable ASCII"),
        ("naïve-token", "printable ASCII"),
        ("line\nbreak", "printable ASCII"),
    ],
)
async def test_an_unusable_operator_wide_token_is_credentials_invalid(token: str, problem: str) -> None:
    resolver = CredentialResolver(Reader(), default_token=SecretStr(token), cache_seconds=30)
    with pytest.raises(CredentialsError) as raised:
        await resolver.resolve("ns", DEFAULT_SPEC)
    assert raised.value.reason == "CredentialsInvalid"
    assert problem in raised.value.message
    assert "NORTHFLANK_API_TOKEN" in raised.value.message
    assert token not in raised.value.message
    assert not raised.value.transient


async def test_an_unusable_secret_value_is_credentials_invalid() -> None:
    reader = Reader()
    reader.values[("ns", "nf", "token")] = "bad token"
    resolver = CredentialResolver(reader, default_token=None, cache_seconds=30)
    with pytest.raises(CredentialsError) as raised:
        await resolver.resolve("ns", SECRET_SPEC)
    assert (raised.value.reason, raised.value.message) == (
        "CredentialsInvalid",
        "Key 'token' of Secret 'nf' contains whitespace.",
    )


async def test_the_client_refuses_to_send_an_unusable_token() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    async with NorthflankClient("https://api.example.test", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(northflank.InvalidTokenError) as raised:
            await client.get_llm_model_deployment("p", "d", token="tok\u00e9n")
    assert raised.value.reason == "CredentialsInvalid"
    assert not sent


async def test_no_library_logs_the_token_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """h11 refuses a header with a newline and httpcore logs the refusal, header value included, at
    DEBUG. Sent past the client's own check on purpose, that line must still not carry the token."""
    from northflank_llm_operator import redaction  # imported here: a new module, the file stays importable on old code

    redaction.install()
    token = "leaky-token-0123456789"
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "h11", "kubernetes", "urllib3"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    app = web.Application()
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as raw:
            with pytest.raises(httpx.LocalProtocolError):
                await raw.get("/x", headers={"Authorization": f"Bearer {token}\n"})
            logging.getLogger("httpcore.http11").debug("headers=%r", [(b"Authorization", f"Bearer {token}".encode())])
            logging.getLogger("kubernetes.client.rest").debug("response body: %s", {"Authorization": token})
        async with NorthflankClient(f"http://127.0.0.1:{port}") as client:
            with pytest.raises(NotFoundError):  # the empty server has no such route
                await client.get_llm_model_deployment("p", "d", token=token + "-valid")
    finally:
        await runner.cleanup()
        for name in ("httpx", "httpcore", "h11", "kubernetes", "urllib3"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    text = "\n".join(record.getMessage() + (record.exc_text or "") for record in caplog.records) + caplog.text
    assert "Authorization" in text or "Bearer" in text  # the lines were logged...
    assert token not in text  # ...but without the token


# -- the token file -------------------------------------------------------------------------------


def _write_atomically(path: Path, content: str) -> None:
    """As the kubelet updates a Secret volume: a new file swapped in by rename."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(content)
    os.replace(temporary, path)


async def test_the_token_file_is_read_stripped_and_re_read_when_it_changes(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    resolver = CredentialResolver(Reader(), default_token=None, cache_seconds=30, default_token_file=token_file)
    first = await resolver.resolve("ns", DEFAULT_SPEC)
    assert first.token == "first-token"
    assert not resolver.refresh_default()  # unchanged
    _write_atomically(token_file, "second-token\n")
    assert resolver.refresh_default()
    assert (await resolver.resolve("ns", DEFAULT_SPEC)).token == "second-token"
    token_file.unlink()
    assert resolver.refresh_default()
    with pytest.raises(CredentialsError) as raised:
        await resolver.resolve("ns", DEFAULT_SPEC)
    assert raised.value.reason == "CredentialsUnavailable"
    assert raised.value.transient


async def test_a_rotated_token_file_moves_its_resources_without_a_restart(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token")
    h = Harness(default_token=None)
    h.credentials = CredentialResolver(
        h.kube, default_token=None, cache_seconds=30, clock=h.clock, default_token_file=token_file
    )
    h.poller.observer.credentials = h.credentials
    h.northflank.put("proj", "dep", status="running")
    key = h.add("dep")
    await h.advance(2)
    assert h.status(key)["phase"] == "running"
    _write_atomically(token_file, "second-token")
    await h.advance(95)
    assert [call[3] for call in h.northflank.calls][-1] == "second-token"


# -- tenancy --------------------------------------------------------------------------------------


async def test_namespaces_may_be_denied_the_operator_wide_token() -> None:
    resolver = CredentialResolver(
        Reader(),
        default_token=SecretStr("operator-token"),
        cache_seconds=30,
        default_token_denied_namespaces=["tenant"],
    )
    assert (await resolver.resolve("platform", DEFAULT_SPEC)).token == "operator-token"
    with pytest.raises(CredentialsError) as raised:
        await resolver.resolve("tenant", DEFAULT_SPEC)
    assert raised.value.reason == "CredentialsNotConfigured"
    assert "namespace 'tenant'" in raised.value.message
    assert "spec.credentialsSecretRef" in raised.value.message
    assert "platform" not in raised.value.message


async def test_the_operator_wide_token_may_be_allowed_only_in_a_list() -> None:
    resolver = CredentialResolver(
        Reader(), default_token=SecretStr("operator-token"), cache_seconds=30, default_token_namespaces=["platform"]
    )
    assert (await resolver.resolve("platform", DEFAULT_SPEC)).token == "operator-token"
    with pytest.raises(CredentialsError, match="does not let resources in namespace 'other'"):
        await resolver.resolve("other", DEFAULT_SPEC)


# -- transient Secret reads -----------------------------------------------------------------------


async def test_a_transient_secret_read_failure_keeps_the_token_read_before() -> None:
    reader = Reader()
    reader.values[("ns", "nf", "token")] = "secret-token"
    clock = [0.0]
    resolver = CredentialResolver(reader, default_token=None, cache_seconds=30, clock=lambda: clock[0])
    assert (await resolver.resolve("ns", SECRET_SPEC)).token == "secret-token"
    clock[0] = 100.0
    reader.error = CredentialsError("CredentialsUnavailable", "HTTP 503", transient=True)
    assert (await resolver.resolve("ns", SECRET_SPEC)).token == "secret-token"
    resolver.forget("ns", SECRET_SPEC)
    with pytest.raises(CredentialsError) as raised:
        await resolver.resolve("ns", SECRET_SPEC)
    assert raised.value.transient


async def test_a_transient_secret_read_failure_is_not_stalled() -> None:
    h = Harness(default_token=None)

    async def failing(namespace: str, name: str, key: str) -> str:
        raise CredentialsError("CredentialsUnavailable", "Reading Secret 'nf' failed with HTTP 503.", transient=True)

    h.kube.read_secret_value = failing  # type: ignore[method-assign]
    h.northflank.put("proj", "dep", status="running")
    key = h.add("dep", credentialsSecretRef={"name": "nf"})
    await h.advance(2)
    assert (h.condition(key, "Synced")["status"], h.condition(key, "Synced")["reason"]) == (
        "False",
        "CredentialsUnavailable",
    )
    assert h.condition(key, "Stalled") == {}
    del h.kube.read_secret_value
    h.kube.secrets[("ns", "nf", "token")] = "secret-token"
    await h.advance(10)  # retried within seconds, not a whole interval
    assert h.status(key)["phase"] == "running"


@pytest.fixture
async def kube_api_stub() -> AsyncIterator[str]:
    """An HTTP server standing in for an overloaded API server: every Secret read answers 503."""

    async def overloaded(_: web.Request) -> web.Response:
        return web.json_response({"kind": "Status", "code": 503, "message": "etcdserver: leader changed"}, status=503)

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/{ns}/secrets/{name}", overloaded)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def _gateway(host: str) -> KubernetesGateway:
    configuration = kubernetes.client.Configuration()
    configuration.host = host
    configuration.retries = 0
    return KubernetesGateway(kubernetes.client.ApiClient(configuration), instance="test")


async def _secret_read_error(host: str) -> CredentialsError:
    """What a Secret read through a gateway to ``host`` raises."""
    gateway = _gateway(host)
    try:
        with pytest.raises(CredentialsError) as raised:
            await gateway.read_secret_value("ns", "nf", "token")
    finally:
        gateway.close()
    return raised.value


async def test_the_gateway_reports_an_api_server_5xx_as_transient(kube_api_stub: str) -> None:
    error = await _secret_read_error(kube_api_stub)
    assert (error.reason, error.transient) == ("CredentialsUnavailable", True)
    assert "HTTP 503" in error.message


async def test_the_gateway_reports_an_unreachable_api_server_as_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    error = await _secret_read_error(f"http://127.0.0.1:{port}")
    assert (error.reason, error.transient) == ("CredentialsUnavailable", True)
    assert "did not answer" in error.message


def test_every_registered_token_and_its_base64_form_are_redacted_longest_first() -> None:
    from northflank_llm_operator import redaction

    short, long = "nf-redact-abcdefgh", "nf-redact-abcdefgh-and-more"
    redaction.register_secret(short)
    redaction.register_secret(long)
    redaction.register_secret(short)  # a Secret re-read registers its token again: nothing changes
    encoded = base64.b64encode(long.encode()).decode()
    text = redaction.redact(f"data={encoded} token={long} old={short} tiny=abc")
    assert text == f"data={redaction.REDACTED} token={redaction.REDACTED} old={redaction.REDACTED} tiny=abc"


# -- a token file written in place (issue 16, part 4) ----------------------------------------------


def test_a_token_file_that_changes_during_the_read_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    resolver = CredentialResolver(Reader(), default_token=None, cache_seconds=30, default_token_file=token_file)
    # A writer truncates the file and writes the new token in two steps; the first read sees only the
    # first step, and the second step lands while that read is in flight.
    token_file.write_text("second-")
    real_read_bytes = Path.read_bytes
    reads: list[bytes] = []

    def racing_read_bytes(self: Path) -> bytes:
        content = real_read_bytes(self)
        reads.append(content)
        if len(reads) == 1:
            with self.open("a") as handle:
                handle.write("token\n")
        return content

    monkeypatch.setattr(Path, "read_bytes", racing_read_bytes)
    assert resolver.refresh_default()
    assert resolver._resolve_default("ns").token == "second-token"
    assert reads == [b"second-", b"second-token\n"]


def test_a_token_file_with_windows_line_ends_is_read(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_bytes(b"crlf-token\r\n")
    resolver = CredentialResolver(Reader(), default_token=None, cache_seconds=30, default_token_file=token_file)
    assert resolver._resolve_default("ns").token == "crlf-token"


def test_a_truncated_token_file_keeps_the_last_good_token_until_it_changes_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    resolver = CredentialResolver(Reader(), default_token=None, cache_seconds=30, default_token_file=token_file)
    token_file.write_text("")  # truncated: the writer has not written the new token yet
    with caplog.at_level(logging.WARNING):
        assert not resolver.refresh_default()
    assert resolver._resolve_default("ns").token == "first-token"
    assert "ignored until it changes again" in caplog.text
    assert not resolver.refresh_default(), "the same bad content is not looked at again"
    token_file.write_text("second-token\n")
    assert resolver.refresh_default()
    assert resolver._resolve_default("ns").token == "second-token"


def test_a_bad_token_file_with_no_good_token_before_is_reported(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("has space inside")
    resolver = CredentialResolver(Reader(), default_token=None, cache_seconds=30, default_token_file=token_file)
    with pytest.raises(CredentialsError) as raised:
        resolver._resolve_default("ns")
    assert raised.value.reason == "CredentialsInvalid"


def test_a_secret_volume_symlink_swap_is_followed(tmp_path: Path) -> None:
    # The kubelet's layout: token -> ..data/token, ..data -> ..<timestamp>; a rotation swaps ..data.
    first, second = tmp_path / "..2026_01", tmp_path / "..2026_02"
    for directory, token in ((first, "first-token"), (second, "second-token")):
        directory.mkdir()
        (directory / "token").write_text(token)
    (tmp_path / "..data").symlink_to(first.name)
    (tmp_path / "token").symlink_to("..data/token")
    resolver = CredentialResolver(Reader(), default_token=None, cache_seconds=30, default_token_file=tmp_path / "token")
    assert resolver._resolve_default("ns").token == "first-token"
    (tmp_path / "..data_tmp").symlink_to(second.name)
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    assert resolver.refresh_default()
    assert resolver._resolve_default("ns").token == "second-token"
