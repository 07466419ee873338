"""``northflank-llm-operator``: run the operator, or the Northflank API simulator for local work."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

import kopf
import pydantic

from . import __version__, redaction
from .settings import OperatorSettings

logger = logging.getLogger("northflank_llm_operator")

_LOG_FORMATS = {"plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL, "json": kopf.LogFormat.JSON}


class _DropRoutineSuccess(logging.Filter):
    """Drops kopf's "Handler 'track' succeeded." line, logged at INFO for every watch event.

    The event handler only feeds the registry, and every status write echoes back as an event, so the
    line would otherwise dominate the log without saying anything. Failures are still logged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Handler 'track' succeeded."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="northflank-llm-operator", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run",
        help="run the operator against the current kubeconfig (or in-cluster credentials)",
        description="Mirror Northflank LLM model deployments into LLMModelDeployment status.",
    )
    scope = run.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "-n", "--namespace", dest="namespaces", action="append", metavar="NS",
        help="watch this namespace (repeatable; kopf globs like 'team-*' need namespace list RBAC)",
    )  # fmt: skip
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    run.add_argument("--standalone", action="store_true", help="do not coordinate with other replicas (peering)")
    run.add_argument("--liveness", metavar="URL", help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument(
        "--selector", "-l", metavar="SELECTOR",
        help="only track resources whose labels match this label selector, e.g. 'shard=a' or 'shard in (a,b)' "
        "(overrides NORTHFLANK_LLM_OPERATOR_LABEL_SELECTOR; '' tracks every resource)",
    )  # fmt: skip
    run.add_argument("--log-format", choices=sorted(_LOG_FORMATS), default="full")
    verbosity = run.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true")
    verbosity.add_argument("-d", "--debug", action="store_true")
    verbosity.add_argument("-q", "--quiet", action="store_true")

    commands.add_parser(
        "simulator",
        help="run the Northflank API simulator (arguments after 'simulator' go to it; see 'simulator --help')",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulator"]:
        from northflank_api_simulator.cli import main as simulator_main  # only needed for local work

        exit_code: int = simulator_main(argv[1:])
        return exit_code
    args = build_parser().parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    redaction.install()  # before any library logs: no token reaches the log at any level
    kopf.configure(debug=args.debug, verbose=args.verbose, quiet=args.quiet, log_format=_LOG_FORMATS[args.log_format])
    if not args.debug:
        # httpx logs every request at INFO and httpcore every socket step at DEBUG; the poll loop
        # would drown the operator's own messages.
        for chatty in ("httpx", "httpcore"):
            logging.getLogger(chatty).setLevel(logging.WARNING)
        logging.getLogger("kopf.objects").addFilter(_DropRoutineSuccess())
    try:
        # The flag, when given, wins over the environment (init arguments come first in pydantic-settings).
        settings = OperatorSettings() if args.selector is None else OperatorSettings(label_selector=args.selector)
    except pydantic.ValidationError as exc:
        print(f"northflank-llm-operator: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    return asyncio.run(_operate(args, settings))


async def _operate(args: argparse.Namespace, settings: OperatorSettings) -> int:
    from . import handlers
    from .runtime import Runtime

    runtime = Runtime.create(settings)
    # Created before kopf starts, so kopf leaves it alone at exit; if it dies, kopf is told to stop.
    poller_task = runtime.start()
    stop_flag: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def stop_operator(_: object) -> None:
        if not stop_flag.done():
            stop_flag.set_result(None)

    poller_task.add_done_callback(stop_operator)
    logger.info(
        "Mirroring LLM model deployments from %s (default poll interval %gs, %s)",
        settings.api_base_url,
        settings.poll_interval_seconds,
        "operator-wide token set" if settings.has_default_token else "no operator-wide token",
    )
    if settings.label_selector is not None:
        logger.info("Tracking only resources whose labels match %r", settings.label_selector)
    try:
        await kopf.operator(
            registry=handlers.registry,
            memo=kopf.Memo(runtime=runtime),
            clusterwide=args.all_namespaces,
            namespaces=args.namespaces or (),
            standalone=args.standalone,
            liveness_endpoint=args.liveness,
            stop_flag=stop_flag,
        )
    finally:
        crashed = poller_task.done() and not poller_task.cancelled() and poller_task.exception() is not None
        if crashed:
            logger.error("The poll loop stopped", exc_info=poller_task.exception())
        await runtime.close()
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
