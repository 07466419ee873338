"""The operator's Northflank client against a hostile upstream: the simulator's fault controls over
real HTTP (slow bodies, oversized and compressed bodies, TLS failures, escape sequences)."""

from __future__ import annotations

import asyncio
import resource
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from northflank_llm_operator import northflank
from northflank_llm_operator.northflank import APITimeoutError, InvalidResponseError, NorthflankClient, ServerError
from tests.simulator.fixtures import RunningSimulator

TOKEN = "hardening-token"
PROJECT = "inference"
ROUTE = f"/v1/projects/{PROJECT}/llm-model-deployments"


@pytest.fixture
def deployment(simulator: RunningSimulator) -> dict[str, object]:
    simulator.control.add_token(TOKEN, team_id="team-a")
    simulator.control.put_project(PROJECT, team_id="team-a")
    return simulator.control.put_deployment(PROJECT, "model", status="running")


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


async def test_a_slow_drip_body_ends_at_the_overall_deadline(
    simulator: RunningSimulator, deployment: dict[str, object]
) -> None:
    # Each byte arrives well within the read timeout; only an overall deadline can stop this.
    simulator.control.add_fault(
        status=200, json_body={"data": deployment}, drip_chunk_bytes=1, drip_interval_seconds=0.2
    )
    async with NorthflankClient(simulator.base_url, timeout_seconds=1.0, deadline_seconds=1.5) as client:
        started = time.monotonic()
        with pytest.raises(APITimeoutError) as raised:
            await client.get_llm_model_deployment(PROJECT, "model", token=TOKEN)
        elapsed = time.monotonic() - started
    assert 1.4 <= elapsed < 3.0
    assert "1.5s request deadline" in raised.value.message
    assert raised.value.transient


async def test_an_oversized_plain_body_is_refused_not_read_whole(
    simulator: RunningSimulator, deployment: dict[str, object]
) -> None:
    # 50 MB of valid JSON (trailing whitespace): read whole and parsed before the fix.
    simulator.control.add_fault(status=200, json_body={"data": deployment}, pad_bytes=50 * 1024 * 1024)
    async with NorthflankClient(simulator.base_url) as client:
        with pytest.raises(InvalidResponseError) as raised:
            await client.get_llm_model_deployment(PROJECT, "model", token=TOKEN)
    assert "larger than 4194304 bytes" in raised.value.message  # the default limit, 4 MiB
    assert raised.value.rate_limit.remaining is not None  # the headers still count for the budget


async def test_a_gzip_bomb_stops_at_the_limit_after_decompression(
    simulator: RunningSimulator, deployment: dict[str, object]
) -> None:
    # 256 MiB of spaces, about 256 KiB on the wire. Before the fix httpx inflated all of it.
    simulator.control.add_fault(status=200, json_body={"data": deployment}, pad_bytes=256 * 1024**2, gzip=True)
    before = _max_rss_bytes()
    async with NorthflankClient(simulator.base_url) as client:
        with pytest.raises(InvalidResponseError) as raised:
            await client.get_llm_model_deployment(PROJECT, "model", token=TOKEN)
    grown = _max_rss_bytes() - before
    assert "after decompression" in raised.value.message
    assert grown < 64 * 1024**2, f"peak RSS grew by {grown / 1024**2:.0f} MiB"


async def test_a_compressed_body_within_the_limit_is_read(
    simulator: RunningSimulator, deployment: dict[str, object]
) -> None:
    simulator.control.add_fault(status=200, json_body={"data": deployment}, pad_bytes=100_000, gzip=True)
    async with NorthflankClient(simulator.base_url, max_response_bytes=200_000) as client:
        result = await client.get_llm_model_deployment(PROJECT, "model", token=TOKEN)
    assert result.data.id == "model"


async def test_slow_bodies_do_not_hold_every_request_slot(
    simulator: RunningSimulator, deployment: dict[str, object]
) -> None:
    """Four dripping answers in flight at once all end at the deadline, so a fifth request runs."""
    simulator.control.add_fault(
        status=200, json_body={"data": deployment}, drip_chunk_bytes=1, drip_interval_seconds=0.5, times=4
    )
    async with NorthflankClient(simulator.base_url, timeout_seconds=2.0, deadline_seconds=1.0) as client:
        slow = [client.get_llm_model_deployment(PROJECT, "model", token=TOKEN) for _ in range(4)]
        results = await asyncio.wait_for(asyncio.gather(*slow, return_exceptions=True), timeout=5)
        assert all(isinstance(r, APITimeoutError) for r in results)
        fresh = await client.get_llm_model_deployment(PROJECT, "model", token=TOKEN)
    assert fresh.data.status == "running"


async def test_escape_sequences_in_upstream_errors_are_stripped(simulator: RunningSimulator) -> None:
    simulator.control.add_token(TOKEN, team_id="team-a")
    hostile = "\x1b[31mred\x1b[0m \x1b]0;title\x07bell\x07 \u202eevil\r\nFAKE LOG LINE"
    simulator.control.add_fault(status=503, json_body={"error": {"message": hostile}}, headers={"Retry-After": "1e9"})
    async with NorthflankClient(simulator.base_url) as client:
        with pytest.raises(ServerError) as raised:
            await client.get_llm_model_deployment(PROJECT, "model", token=TOKEN)
    message = raised.value.message
    assert all(c.isprintable() for c in message), repr(message)
    assert "red" in message
    assert "FAKE LOG LINE" in message
    assert raised.value.retry_after_seconds == 3600.0  # capped at the documented window


@pytest.mark.parametrize(
    ("header", "expected"),
    [("1000000000", 3600.0), ("inf", 3600.0), ("1e400", 3600.0), ("-5", None), ("soon", None), ("nan", None)],
)
def test_absurd_rate_limit_waits_are_capped_at_the_documented_window(header: str, expected: float | None) -> None:
    from northflank_llm_operator.northflank import RateLimit

    parsed = RateLimit.from_headers({"x-ratelimit-reset": header, "retry-after": header})
    assert (parsed.reset_seconds, parsed.retry_after_seconds, parsed.wait_seconds()) == (expected,) * 3


# -- TLS ---------------------------------------------------------------------------------------


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a certificate for another host signed by it, and a self-signed certificate."""
    d = tmp_path_factory.mktemp("tls")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
             "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"),
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=elsewhere.example",
             "-keyout", str(d / "other.key"), "-out", str(d / "other.csr"))  # fmt: skip
    (d / "ext").write_text("subjectAltName=DNS:elsewhere.example\n")
    _openssl("x509", "-req", "-in", str(d / "other.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
             "-CAcreateserial", "-days", "2", "-extfile", str(d / "ext"), "-out", str(d / "other.pem"))  # fmt: skip
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", str(d / "self.key"), "-out", str(d / "self.pem"))  # fmt: skip
    return d


async def _tls_server(cert: Path, key: Path) -> AsyncIterator[str]:
    app = web.Application()
    runner = web.AppRunner(app)
    await runner.setup()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("name", "trust", "expected"),
    [
        ("self", None, "self-signed certificate"),
        ("other", "ca.pem", "mismatch, certificate is not valid for"),
    ],
)
async def test_tls_failures_name_the_certificate_problem(
    certificates: Path, name: str, trust: str | None, expected: str
) -> None:
    verify: ssl.SSLContext | bool = True
    if trust is not None:
        verify = ssl.create_default_context(cafile=str(certificates / trust))
    async for base_url in _tls_server(certificates / f"{name}.pem", certificates / f"{name}.key"):
        transport = httpx.AsyncHTTPTransport(verify=verify)
        async with NorthflankClient(base_url, transport=transport) as client:
            with pytest.raises(northflank.TLSError) as raised:
                await client.get_llm_model_deployment(PROJECT, "model", token=TOKEN)
    assert raised.value.reason == "TLSError"
    assert "TLS certificate verification failed" in raised.value.message
    assert expected in raised.value.message
