"""Command line: ``python -m northflank_api_simulator`` (also ``northflank-llm-operator simulator``).

Prints the base URL on stdout once serving (and writes it to ``--port-file``), then serves until
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import tempfile
from pathlib import Path

from pydantic import ValidationError

from northflank_api_simulator.defaults import DEFAULT_TEAM_ID
from northflank_api_simulator.models import RateLimitConfig, Seed, SeedToken
from northflank_api_simulator.server import run_server
from northflank_api_simulator.state import SimulatorState


def _parser(prog: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m northflank_api_simulator",
        description="Serve a simulated Northflank API for LLM model deployments, with a control API.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    parser.add_argument(
        "--token",
        action="append",
        default=[],
        metavar="TOKEN[:TEAM]",
        help=f"register a team-scoped API token (team defaults to {DEFAULT_TEAM_ID}); repeatable",
    )
    parser.add_argument("--rate-limit", type=int, metavar="N", help="requests per window and token (default 1000)")
    parser.add_argument(
        "--rate-limit-window", type=float, metavar="SECONDS", help="rate-limit window length (default 3600)"
    )
    parser.add_argument(
        "--retry-after-header",
        action="store_true",
        default=None,
        help="send Retry-After with 429 answers (Northflank documents none)",
    )
    parser.add_argument(
        "--port-file", type=Path, metavar="PATH", help="holds the base URL while serving (removed on exit)"
    )
    parser.add_argument("--seed", type=Path, metavar="FILE.json", help="starting state, restored on reset")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def _token_from_flag(flag: str) -> SeedToken:
    token, _, team_id = flag.partition(":")
    return SeedToken(token=token, scope="team", team_id=team_id or DEFAULT_TEAM_ID)


def _build_seed(args: argparse.Namespace) -> Seed:
    """The seed file's state, with ``--token`` and ``--rate-limit*`` flags layered on top."""
    seed = Seed.model_validate_json(args.seed.read_bytes()) if args.seed is not None else Seed()
    overrides = {
        key: value
        for key, value in (
            ("limit", args.rate_limit),
            ("window_seconds", args.rate_limit_window),
            ("retry_after_header", args.retry_after_header),
        )
        if value is not None
    }
    rate_limit = RateLimitConfig.model_validate({**seed.rate_limit.model_dump(by_alias=False), **overrides})
    tokens = [*seed.tokens, *(_token_from_flag(flag) for flag in args.token)]
    return seed.model_copy(update={"tokens": tokens, "rate_limit": rate_limit})


def _write_atomically(path: Path, text: str) -> None:
    """Readers polling for the file never see it half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as file:
        file.write(text)
    os.replace(file.name, path)


async def _serve(state: SimulatorState, args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)

    def announce(base_url: str) -> None:
        if args.port_file is not None:
            _write_atomically(args.port_file, base_url + "\n")
        print(base_url, flush=True)

    await run_server(state, host=args.host, port=args.port, stop=stop, on_ready=announce)


def main(argv: list[str] | None = None, *, prog: str | None = None) -> int:
    """Run the simulator until SIGTERM or SIGINT; returns the process exit code.

    ``prog`` names the command in help and errors when another CLI delegates here.
    """
    parser = _parser(prog)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        seed = _build_seed(args)
    except (OSError, ValidationError) as error:
        parser.error(f"invalid start-up state: {error}")
    if args.port_file is not None:
        # A file left by an earlier run would send whoever polls for it to a dead address.
        args.port_file.unlink(missing_ok=True)
    try:
        asyncio.run(_serve(SimulatorState(seed), args))
    except OSError as error:  # typically: the port is taken
        logging.getLogger(__name__).error("cannot serve on %s:%s: %s", args.host, args.port, error)
        return 1
    finally:
        if args.port_file is not None:
            args.port_file.unlink(missing_ok=True)
    return 0
