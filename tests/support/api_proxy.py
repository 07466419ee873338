"""A faulty front for the real kube-apiserver: everything is forwarded (watches streamed), except
the requests a test chooses to fail, so that the operator meets a real API server that has a bad
moment for one kind of call only (a Secret read answered 503, say)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.controlplane.controlplane import ControlPlane

#: Hop-by-hop and length headers aiohttp sets itself on the way out.
_SKIPPED_HEADERS = {"content-length", "transfer-encoding", "connection", "content-encoding", "host"}


class FaultyApiProxy:
    """Plain HTTP on loopback -> the control plane over TLS with the admin token."""

    def __init__(self, plane: ControlPlane) -> None:
        self._plane = plane
        #: (method, path regex) -> HTTP status to answer instead of forwarding.
        self.faults: dict[tuple[str, re.Pattern[str]], int] = {}
        self.refused = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="faulty-api-proxy", daemon=True)
        self._stop: asyncio.Event | None = None
        self._failed: BaseException | None = None

    def fail(self, method: str, path_pattern: str, status: int) -> None:
        self.faults[(method, re.compile(path_pattern))] = status

    def heal(self) -> None:
        self.faults.clear()

    def kubeconfig(self, directory: Path) -> Path:
        path = directory / "proxy-kubeconfig"
        path.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: proxy\n"
            f"clusters:\n- name: proxy\n  cluster:\n    server: http://127.0.0.1:{self.port}\n"
            "users:\n- name: proxy\n  user: {}\n"
            "contexts:\n- name: proxy\n  context:\n    cluster: proxy\n    user: proxy\n"
        )
        return path

    def __enter__(self) -> FaultyApiProxy:
        self._thread.start()
        if not self._ready.wait(timeout=30) or self._failed is not None:
            raise RuntimeError(f"the API proxy did not start: {self._failed!r}")
        return self

    def __exit__(self, *_: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:
            self._failed = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        context = ssl.create_default_context(cafile=str(self._plane.ca_file))
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
        ) as session:
            app = web.Application()

            async def forward(request: web.Request) -> web.StreamResponse:
                return await self._forward(session, request)

            app.router.add_route("*", "/{tail:.*}", forward)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = runner.addresses[0][1]
            self._ready.set()
            await self._stop.wait()
            await runner.cleanup()

    async def _forward(self, session: aiohttp.ClientSession, request: web.Request) -> web.StreamResponse:
        for (method, pattern), status in list(self.faults.items()):
            if request.method == method and pattern.fullmatch(request.path):
                self.refused += 1
                refusal = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": status,
                           "message": "the test's proxy refused this call", "reason": "ServiceUnavailable"}  # fmt: skip
                return web.json_response(refusal, status=status)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _SKIPPED_HEADERS}
        headers["Authorization"] = f"Bearer {self._plane.admin_token}"
        upstream = f"{self._plane.server}{request.rel_url}"
        payload = await request.read()
        async with session.request(request.method, upstream, headers=headers, data=payload or None) as answer:
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


@contextlib.contextmanager
def faulty_api_proxy(plane: ControlPlane) -> Iterator[FaultyApiProxy]:
    with FaultyApiProxy(plane) as proxy:
        yield proxy
