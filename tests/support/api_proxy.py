"""A faulty front for the real kube-apiserver: everything is forwarded (watches streamed), except
the requests a test chooses to fail, so that the operator meets a real API server that has a bad
moment for one kind of call only (a Secret read answered 503, say).

The proxy is a subprocess (``python -m tests.support.api_proxy``), like the simulator: its TLS
connections upstream end with the process, never as unclosed sockets in the test session. Tests steer
it through ``/_proxy/`` routes, a prefix the Kubernetes API never uses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from aiohttp import web

from tests.controlplane.controlplane import ControlPlane

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Hop-by-hop and length headers aiohttp sets itself on the way out.
_SKIPPED_HEADERS = {"content-length", "transfer-encoding", "connection", "content-encoding", "host"}
_TOKEN_ENV = "API_PROXY_UPSTREAM_TOKEN"
_START_SECONDS = 30.0


class FaultyApiProxy:
    """Plain HTTP on loopback -> the control plane over TLS with the admin token."""

    def __init__(self, plane: ControlPlane, log_dir: Path) -> None:
        self._plane = plane
        self._log_dir = log_dir
        self._process: subprocess.Popen[bytes] | None = None
        self._control: httpx.Client | None = None
        self.port = 0

    def fail(self, method: str, path_pattern: str, status: int) -> None:
        """Answer ``status`` to every ``method`` request whose path matches ``path_pattern`` fully."""
        self._call("POST", "/_proxy/faults", {"method": method, "pathPattern": path_pattern, "status": status})

    def heal(self) -> None:
        self._call("DELETE", "/_proxy/faults")

    @property
    def refused(self) -> int:
        """How many requests a fault answered."""
        return int(self._call("GET", "/_proxy/stats")["refused"])

    def kubeconfig(self, directory: Path) -> Path:
        path = directory / "proxy-kubeconfig"
        path.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: proxy\n"
            f"clusters:\n- name: proxy\n  cluster:\n    server: http://127.0.0.1:{self.port}\n"
            "users:\n- name: proxy\n  user: {}\n"
            "contexts:\n- name: proxy\n  context:\n    cluster: proxy\n    user: proxy\n"
        )
        return path

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        assert self._control is not None, "the proxy is not running"
        response = self._control.request(method, path, json=body)
        response.raise_for_status()
        return response.json()

    def __enter__(self) -> FaultyApiProxy:
        port_file = self._log_dir / "api-proxy.port"
        log = (self._log_dir / "api-proxy.log").open("wb")
        env = {**os.environ, _TOKEN_ENV: self._plane.admin_token, "PYTHONPATH": str(REPO_ROOT)}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.api_proxy", "--upstream", self._plane.server,
             "--ca-file", str(self._plane.ca_file), "--port-file", str(port_file)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + _START_SECONDS
        while not port_file.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self._stop()
                raise RuntimeError(f"the API proxy did not start:\n{(self._log_dir / 'api-proxy.log').read_text()}")
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        self._control = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)
        return self

    def __exit__(self, *_: object) -> None:
        if self._control is not None:
            self._control.close()
        self._stop()

    def _stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)


@contextlib.contextmanager
def faulty_api_proxy(plane: ControlPlane, log_dir: Path) -> Iterator[FaultyApiProxy]:
    with FaultyApiProxy(plane, log_dir) as proxy:
        yield proxy


# -- the proxy process -----------------------------------------------------------------------------


class _Proxy:
    def __init__(self, upstream: str, token: str, session: aiohttp.ClientSession) -> None:
        self._upstream = upstream.rstrip("/")
        self._token = token
        self._session = session
        #: (method, path regex) -> HTTP status to answer instead of forwarding.
        self._faults: dict[tuple[str, re.Pattern[str]], int] = {}
        self._refused = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/_proxy/faults", self._add_fault)
        app.router.add_delete("/_proxy/faults", self._clear_faults)
        app.router.add_get("/_proxy/stats", self._stats)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        return app

    async def _add_fault(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._faults[(body["method"], re.compile(body["pathPattern"]))] = int(body["status"])
        return web.json_response({})

    async def _clear_faults(self, _: web.Request) -> web.Response:
        self._faults.clear()
        return web.json_response({})

    async def _stats(self, _: web.Request) -> web.Response:
        return web.json_response({"refused": self._refused})

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        for (method, pattern), status in list(self._faults.items()):
            if request.method == method and pattern.fullmatch(request.path):
                self._refused += 1
                refusal = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": status,
                           "message": "the test's proxy refused this call", "reason": "ServiceUnavailable"}  # fmt: skip
                return web.json_response(refusal, status=status)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _SKIPPED_HEADERS}
        headers["Authorization"] = f"Bearer {self._token}"
        payload = await request.read()
        upstream = f"{self._upstream}{request.rel_url}"
        async with self._session.request(request.method, upstream, headers=headers, data=payload or None) as answer:
            response = web.StreamResponse(status=answer.status)
            for key, value in answer.headers.items():
                if key.lower() not in _SKIPPED_HEADERS:
                    response.headers[key] = value
            if answer.headers.get("Content-Encoding"):
                response.headers["Content-Encoding"] = answer.headers["Content-Encoding"]
            # A watch streams until either side stops; the operator closing it mid-way is normal.
            with contextlib.suppress(ConnectionResetError, aiohttp.ClientError):
                await response.prepare(request)
                async for chunk in answer.content.iter_any():
                    await response.write(chunk)
            return response


async def _serve(upstream: str, ca_file: Path, port_file: Path, token: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    context = ssl.create_default_context(cafile=str(ca_file))
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        auto_decompress=False,
    ) as session:
        runner = web.AppRunner(_Proxy(upstream, token, session).app(), access_log=None, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        temporary = port_file.with_suffix(".tmp")
        temporary.write_text(str(port))
        temporary.rename(port_file)  # the port appears whole or not at all
        await stop.wait()
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", required=True, help="the kube-apiserver URL")
    parser.add_argument("--ca-file", type=Path, required=True)
    parser.add_argument("--port-file", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(_serve(args.upstream, args.ca_file, args.port_file, os.environ[_TOKEN_ENV]))


if __name__ == "__main__":
    main()
