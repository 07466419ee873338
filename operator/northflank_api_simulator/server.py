"""The aiohttp application and a runner that serves it until told to stop."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from northflank_api_simulator import api, control_api
from northflank_api_simulator.state import SimulatorState
from northflank_api_simulator.web_support import STATE, ApiError, response_for_exception

logger = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_SECONDS = 2.0
"""How long in-flight requests (say, one held by a latency fault) may delay shutdown."""


@web.middleware
async def _error_envelope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every error outside ``/v1`` (which handles its own) with Northflank's envelope too."""
    try:
        return await handler(request)
    except ApiError as error:
        return response_for_exception(error)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return response_for_exception(error)


def create_app(state: SimulatorState | None = None) -> web.Application:
    """Build the simulator's application around ``state`` (a fresh, empty one by default)."""
    app = web.Application(middlewares=[_error_envelope_middleware, api.northflank_middleware])
    app[STATE] = state if state is not None else SimulatorState()
    api.add_routes(app)
    app.router.add_routes(control_api.routes)
    app.on_cleanup.append(_stop_scripts)
    return app


async def _stop_scripts(app: web.Application) -> None:
    await app[STATE].stop_scripts()


def _base_url(host: str, port: int) -> str:
    """A URL clients can use: a wildcard bind is reached through loopback."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"http://{host}:{port}"
    if address.is_unspecified:
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    return f"http://[{address}]:{port}" if address.version == 6 else f"http://{address}:{port}"


async def run_server(
    state: SimulatorState,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    stop: asyncio.Event,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until ``stop`` is set, then shut down cleanly (scripts cancelled, sockets closed).

    ``port`` 0 binds a free port; ``on_ready`` receives the base URL actually bound.
    """
    runner = web.AppRunner(create_app(state), shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = int(runner.addresses[0][1])
        base_url = _base_url(host, bound_port)
        logger.info("Northflank API simulator serving on %s", base_url)
        if on_ready is not None:
            on_ready(base_url)
        await stop.wait()
        logger.info("shutting down")
    finally:
        await runner.cleanup()
