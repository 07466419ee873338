"""``northflank-llm-operator``: run the operator, or the Northflank API simulator for local work."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

import kopf
import pydantic

from . import __version__
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
    from .runtime import Runtime

    loop = asyncio.get_running_loop()
    watchdog = ShutdownWatchdog(settings.shutdown_timeout_seconds)
    runtime = Runtime.create(settings, resync_namespaces=None if args.all_namespaces else args.namespaces)
    # Created before kopf starts, so kopf leaves it alone at exit; if it dies, kopf is told to stop.
    poller_task = runtime.start()
    stopping = asyncio.Event()
    kopf_stop: asyncio.Future[None] | None = None

    def stop_kopf() -> None:
        if kopf_stop is not None and not kopf_stop.done():
            kopf_stop.set_result(None)

    def stop_everything(*_: object) -> None:
        stopping.set()
        stop_kopf()

    poller_task.add_done_callback(stop_everything)
    runtime.on_unserved = stop_kopf  # the CRD went away: stop kopf, wait for the CRD, start kopf again
    logger.info(
        "Mirroring LLM model deployments from %s (default poll interval %gs, %s)",
        settings.api_base_url,
        settings.poll_interval_seconds,
        "operator-wide token set" if settings.api_token else "no operator-wide token",
    )
    if settings.label_selector is not None:
        logger.info("Tracking only resources whose labels match %r", settings.label_selector)
    try:
        while not stopping.is_set():
            # Outside kopf's run, SIGTERM is ours to handle (kopf installs its own while it runs).
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop_everything)
                watchdog.chain(sig)
            if not await _wait_until_served(runtime, stopping):
                break
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            kopf_stop = loop.create_future()
            if not await _run_kopf(args, runtime, watchdog, kopf_stop, stopping):
                break
            # Stopped because the CRD is gone (or kopf failed for that reason): start over.
            runtime.served = False
            runtime.registry.clear()
    finally:
        crashed = poller_task.done() and not poller_task.cancelled() and poller_task.exception() is not None
        if crashed:
            logger.error("The poll loop stopped", exc_info=poller_task.exception())
        await runtime.close(grace=settings.shutdown_timeout_seconds)
    return 1 if crashed else 0


async def _run_kopf(
    args: argparse.Namespace, runtime: Any, watchdog: ShutdownWatchdog, kopf_stop: asyncio.Future[None],
    stopping: asyncio.Event,
) -> bool:  # fmt: skip
    """Run kopf until it stops; True when it stopped because the CRD is gone (run it again later)."""
    from . import handlers

    runtime.served = True
    try:
        await kopf.operator(
            registry=handlers.registry,
            memo=kopf.Memo(runtime=runtime, watchdog=watchdog),
            clusterwide=args.all_namespaces,
            namespaces=args.namespaces or (),
            standalone=args.standalone,
            liveness_endpoint=args.liveness,
            stop_flag=kopf_stop,
        )
    except Exception as exc:
        # kopf's watch fails with a 404 once the CRD is gone; the CRD may be back by the time we
        # look, so a 404 alone means "start over" (kopf exports no class for it: match by name).
        not_found = type(exc).__name__ == "APINotFoundError"
        if stopping.is_set() or (not not_found and await _served(runtime)):
            raise
        logger.error("kopf stopped: the LLMModelDeployment resource is not served (%s)", exc)
        return True
    if stopping.is_set() or watchdog.signalled:
        return False
    return kopf_stop.done() or not await _served(runtime)


async def _served(runtime: Any) -> bool:
    try:
        return bool(await runtime.gateway.resource_served())
    except Exception:
        logger.warning("Cannot tell whether the API server serves LLMModelDeployments", exc_info=True)
        return True  # an unreachable API server is kopf's to retry, not a missing CRD


async def _wait_until_served(runtime: Any, stopping: asyncio.Event) -> bool:
    """Wait (serving no liveness probe, so the kubelet sees the operator is not working) until the
    API server serves LLMModelDeployments; False when asked to stop meanwhile."""
    told = False
    while not stopping.is_set():
        if await _served(runtime):
            if told:
                logger.info("The LLMModelDeployment CRD is served again; resuming")
            return True
        if not told:
            logger.error("The API server does not serve LLMModelDeployments (is the CRD installed?); waiting for it")
            told = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), _CRD_RETRY_SECONDS)
    return False


_CRD_RETRY_SECONDS = 2.0
_RECHAIN_SECONDS = 0.5


class ShutdownWatchdog:
    """A hard deadline on shutdown that does not depend on the event loop.

    kopf reacts to SIGTERM inside the event loop, so a poll that keeps the loop busy (CPU-heavy
    parsing, a cancel swallowed by ``asyncio.wait_for`` on Python 3.11) could delay the exit past
    the pod's grace period. A Python-level signal handler runs in the main thread between bytecodes
    whatever the loop is doing; it starts a thread that ends the process once the deadline passes.
    The loop still learns of the signal through its wakeup fd, as before.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.signalled = False
        self._timer: threading.Timer | None = None

    def chain(self, sig: signal.Signals) -> None:
        """Put the deadline in front of whatever Python-level handler ``sig`` has now (asyncio's)."""
        previous = signal.getsignal(sig)
        if getattr(previous, "_shutdown_watchdog", None) is self:
            return

        def handler(signum: int, frame: Any) -> None:
            self.arm()
            if callable(previous):
                previous(signum, frame)

        handler._shutdown_watchdog = self  # type: ignore[attr-defined]
        signal.signal(sig, handler)

    async def keep_chained(self) -> None:
        """Re-chain whenever someone (kopf, once its startup is done) installs a handler of its own."""
        while True:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.chain(sig)
            await asyncio.sleep(_RECHAIN_SECONDS)

    def arm(self) -> None:
        self.signalled = True
        if self._timer is None:
            self._timer = threading.Timer(self.timeout, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def _expire(self) -> None:
        logger.error("Did not stop within %gs of SIGTERM; exiting now", self.timeout)
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
