"""The operator process: kopf (run again whenever the CRD comes back), the leader election, the poll
loop, the metrics server and the shutdown deadline, wired together. ``cli.py`` parses arguments and
calls :func:`operate`.

With leader election a replica that loses the Lease exits non-zero, as controller-runtime's managers
do: Kubernetes restarts the Pod and it rejoins as a standby with fresh state. Until it exits, the
Lease fence (leader.py) refuses every write and Northflank request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf

from .leader import ElectionConfig, KubernetesLeaseStore, LeaderElector
from .settings import OperatorSettings

logger = logging.getLogger("northflank_llm_operator")

_SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


@dataclass(frozen=True)
class WatchOptions:
    """What kopf watches and serves (from the command line)."""

    #: The namespaces (kopf globs allowed); ignored with ``clusterwide``.
    namespaces: Sequence[str] = ()
    clusterwide: bool = False
    #: Do not coordinate with other replicas through kopf's peering.
    standalone: bool = False
    #: kopf's liveness endpoint, e.g. ``http://0.0.0.0:8080/healthz``.
    liveness_endpoint: str | None = None


async def operate(options: WatchOptions, settings: OperatorSettings) -> int:
    """Run the operator until SIGTERM (0), a crash of the poll loop or the election (1), or the loss of
    the leader election Lease (1)."""
    from .runtime import Runtime

    runtime = Runtime.create(settings, resync_namespaces=None if options.clusterwide else list(options.namespaces))
    watchdog = ShutdownWatchdog(settings.shutdown_timeout_seconds)
    kopf_runs = _KopfRuns(options, runtime, watchdog)
    crashed: list[BaseException] = []

    def poller_done(task: asyncio.Task[None]) -> None:
        # A crashed loop stops the process (and the pod restarts); a loop we cancelled does not.
        if not task.cancelled() and task.exception() is not None:
            crashed.append(task.exception())  # type: ignore[arg-type]
            kopf_runs.stop()

    runtime.on_unserved = kopf_runs.stop_kopf  # the CRD went away: stop kopf, wait for the CRD, start again

    def lost_lease() -> None:
        # A shutdown that hangs must not keep a replica that lost the Lease alive, nor let it exit 0.
        # Its fence is closed and the Lease is someone else's: there is nothing left to finish, so it
        # gets a short deadline (controller-runtime exits at once).
        watchdog.arm(exit_code=1, cause="losing the leader election Lease", within=LOST_LEASE_EXIT_SECONDS)
        kopf_runs.stop()

    leadership = Leadership(runtime, settings, kopf_runs.ready, kopf_runs.stop, poller_done, on_lost=lost_lease)
    kopf_runs.on_ready = leadership.take_signals
    kopf_runs.on_stopped = leadership.resume_polling
    if not settings.leader_elect:
        # The only replica leads from the start; created before kopf starts, so kopf leaves it alone at exit.
        runtime.metrics.set_leading(True)
        runtime.start().add_done_callback(poller_done)
    metrics_server = None
    if settings.metrics_bind_address is not None:
        from .metrics import MetricsAuthorizer, MetricsServer, tls_context

        secure = settings.metrics_secure
        metrics_server = MetricsServer(
            runtime.metrics,
            ready=leadership.readiness,
            authorizer=MetricsAuthorizer(runtime.gateway) if secure else None,
            ssl_context=tls_context(settings.metrics_cert_dir) if secure else None,
        )
        await metrics_server.start(settings.metrics_bind_address)
    # Both created before kopf starts, so kopf leaves them alone at exit.
    campaign = asyncio.create_task(leadership.run(), name="leadership")
    campaign.add_done_callback(lambda task: None if task.cancelled() else poller_done(task))
    logger.info(
        "Mirroring LLM model deployments from %s (default poll interval %gs, %s)",
        settings.api_base_url,
        settings.poll_interval_seconds,
        "operator-wide token set" if settings.has_default_token else "no operator-wide token",
    )
    if settings.label_selector is not None:
        logger.info("Tracking only resources whose labels match %r", settings.label_selector)
    try:
        await kopf_runs.run()
    finally:
        if crashed:
            logger.error("Stopping after an unexpected error in the poll loop or the leader election",
                         exc_info=crashed[0])  # fmt: skip
        await leadership.step_down()
        campaign.cancel()
        await asyncio.wait({campaign}, timeout=settings.shutdown_timeout_seconds / 4)
        if metrics_server is not None:
            await metrics_server.stop()
        await runtime.close(grace=settings.shutdown_timeout_seconds)
        leadership.close()
    return 1 if crashed or leadership.lost_lease else 0


class _KopfRuns:
    """kopf, run again each time the CRD comes back, until the operator is asked to stop."""

    def __init__(self, options: WatchOptions, runtime: Any, watchdog: ShutdownWatchdog) -> None:
        self._options = options
        self._runtime = runtime
        self._watchdog = watchdog
        self._stopping = asyncio.Event()
        self._kopf_stop: asyncio.Future[None] | None = None
        #: Set while kopf's watch runs (the leader election campaigns only then: a warm registry).
        self.ready = asyncio.Event()
        #: Called each time kopf is running (it installs its own signal handlers on every start).
        self.on_ready: Callable[[], None] = lambda: None
        #: Called each time kopf stopped because the CRD is gone (it cancels every task started while it ran).
        self.on_stopped: Callable[[], None] = lambda: None

    def stop_kopf(self) -> None:
        if self._kopf_stop is not None and not self._kopf_stop.done():
            self._kopf_stop.set_result(None)

    def stop(self, *_: object) -> None:
        self._stopping.set()
        self.stop_kopf()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            # Outside kopf's run, SIGTERM is ours to handle (kopf installs its own while it runs).
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
                self._watchdog.chain(sig)
            if not await _wait_until_served(self._runtime, self._stopping):
                return
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            self._kopf_stop = loop.create_future()
            self.ready.clear()
            announce = asyncio.create_task(self._announce_ready())
            try:
                if not await _run_kopf(
                    self._options, self._runtime, self._watchdog, self._kopf_stop, self._stopping, self.ready
                ):
                    return
            finally:
                announce.cancel()
            # Stopped because the CRD is gone (or kopf failed for that reason): start over.
            self.ready.clear()
            self._runtime.served = False
            self._runtime.registry.clear()
            self.on_stopped()

    async def _announce_ready(self) -> None:
        await self.ready.wait()
        self.on_ready()


class Leadership:
    """Polls while this replica leads: always without leader election, else while it holds the Lease.
    Once the Lease is lost it calls ``on_lost`` (the process exits) and never campaigns again."""

    def __init__(
        self,
        runtime: Any,
        settings: OperatorSettings,
        kopf_ready: asyncio.Event,
        stop_operator: Callable[[], None],
        poller_done: Callable[[asyncio.Task[None]], None],
        *,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self._runtime = runtime
        self._settings = settings
        self._kopf_ready = kopf_ready
        self._stop_operator = stop_operator
        self._poller_done = poller_done
        self._elector: LeaderElector | None = None
        self._store: KubernetesLeaseStore | None = None
        self._stepped_down = False
        self._campaign: asyncio.Task[Any] | None = None
        self._on_lost = on_lost or stop_operator
        #: Set once the Lease was lost (the process then exits non-zero).
        self.lost_lease = False

    async def run(self) -> None:
        if not self._settings.leader_elect:
            return  # nothing to campaign for: operate() started the poll loop
        self._campaign = asyncio.current_task()
        namespace = self._settings.leader_election_namespace or _pod_namespace()
        if namespace is None:
            raise RuntimeError("--leader-elect needs --leader-election-namespace when not running in a pod")
        self._store = KubernetesLeaseStore(
            self._runtime.kubernetes_api, namespace=namespace, name=self._settings.leader_election_id,
            timeout_seconds=min(5.0, self._settings.leader_election_renew_deadline_seconds / 2),
        )  # fmt: skip
        self._elector = LeaderElector(
            self._store,
            f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}",
            ElectionConfig(
                lease_duration=self._settings.leader_election_lease_duration_seconds,
                renew_deadline=self._settings.leader_election_renew_deadline_seconds,
                retry_period=self._settings.leader_election_retry_period_seconds,
            ),
            on_started_leading=self._started,
            on_stopped_leading=self._stopped,
            fence=self._runtime.fence,
        )
        # Campaign only once kopf's watch runs, so a new leader starts from a warm registry.
        await self._kopf_ready.wait()
        logger.info("Campaigning for Lease %s/%s as %s", namespace, self._settings.leader_election_id,
                    self._elector.identity)  # fmt: skip
        await self._elector.run()
        # run() returns only once the Lease is lost (a graceful stop cancels it): polling has stopped
        # and the fence is closed. Exit rather than stand by with this state, as controller-runtime does.
        self._lose()

    def _lose(self) -> None:
        """The Lease is lost (not handed over): the process exits. Once only."""
        if self._stepped_down or self.lost_lease:
            return  # lost while a SIGTERM was handing it over anyway, or already on the way out
        self.lost_lease = True
        logger.error(
            "Exiting because the leader election Lease was lost; restarted, this replica rejoins as a "
            "standby (%d writes and Northflank requests refused after the renew deadline)",
            self._runtime.fence.refused,
        )
        self._on_lost()

    def take_signals(self) -> None:
        """With leader election, SIGTERM hands the Lease over first, then lets kopf stop as usual.
        Called each time kopf starts: kopf installs its own handlers then, replacing ours."""
        if not self._settings.leader_elect:
            return
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, lambda: asyncio.ensure_future(self._graceful_stop()))

    def resume_polling(self) -> None:
        """kopf, stopping because the CRD is gone, cancelled the poll loop a leader started while it
        ran. The leader still holds the Lease, so no one else would poll: start it again (it idles
        until the CRD is back and the watch fills the registry, as without leader election)."""
        if (
            self._runtime.leading
            and not self._stepped_down
            and (self._runtime.poller_task is None or self._runtime.poller_task.done())
        ):
            self._runtime.start().add_done_callback(self._poller_done)

    async def _started(self) -> None:
        self._runtime.start().add_done_callback(self._poller_done)
        self._runtime.leading = True
        self._runtime.metrics.set_leading(True)

    async def _stopped(self) -> None:
        self._runtime.leading = False
        self._runtime.metrics.set_leading(False)
        # A loss arms the exit deadline before anything that could hang: stopping the poll loop once
        # waited forever on a worker whose cancel Python 3.11's wait_for had swallowed.
        self._lose()
        await self._runtime.stop_polling(LOST_LEASE_EXIT_SECONDS if self.lost_lease else None)

    async def _graceful_stop(self) -> None:
        logger.info("Stopping: handing the leader election Lease over first")
        await self.step_down()
        self._stop_operator()

    async def step_down(self) -> None:
        """Stop polling, then release the Lease (never the other way round: no write after release)."""
        if self._stepped_down:
            return
        self._stepped_down = True
        self._runtime.leading = False
        if self._campaign is not None and self._campaign is not asyncio.current_task():
            # First stop campaigning, or the free Lease would be taken right back.
            self._campaign.cancel()
            await asyncio.gather(self._campaign, return_exceptions=True)
        await self._runtime.stop_polling()
        if self._elector is not None:
            await self._elector.release()

    def readiness(self) -> tuple[bool, str]:
        if not self._kopf_ready.is_set():
            return False, "the watch is not running yet"
        if self._runtime.leading and (self._runtime.poller_task is None or self._runtime.poller_task.done()):
            return False, "leading, but the poll loop is not running"
        if self._elector is not None and not self._elector.reachable():
            return False, "the leader election Lease cannot be read or written"
        if self._elector is not None:
            return True, "leading" if self._elector.leading else f"standing by (leader: {self._elector.holder})"
        return True, "leading (no leader election)"

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def _pod_namespace() -> str | None:
    try:
        return Path(_SERVICE_ACCOUNT_NAMESPACE).read_text().strip() or None
    except OSError:
        return None


async def _run_kopf(
    options: WatchOptions, runtime: Any, watchdog: ShutdownWatchdog, kopf_stop: asyncio.Future[None],
    stopping: asyncio.Event, kopf_ready: asyncio.Event,
) -> bool:  # fmt: skip
    """Run kopf until it stops; True when it stopped because the CRD is gone (run it again later)."""
    from . import handlers

    runtime.served = True
    try:
        await kopf.operator(
            registry=handlers.registry,
            memo=kopf.Memo(runtime=runtime, watchdog=watchdog),
            clusterwide=options.clusterwide,
            namespaces=options.namespaces,
            standalone=options.standalone,
            liveness_endpoint=options.liveness_endpoint,
            stop_flag=kopf_stop,
            ready_flag=kopf_ready,
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


#: How long a replica that lost the Lease may take to stop cleanly before it exits anyway. Measured:
#: about a second; a scrape or Kubernetes call in flight could otherwise hold it for the full
#: shutdown timeout (seen once in eight loaded runs of the paused-leader test).
LOST_LEASE_EXIT_SECONDS = 3.0
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
        self.exit_code = 0
        self._cause = "SIGTERM"
        self._timer: threading.Timer | None = None
        self._deadline = math.inf
        self._seconds = timeout

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
        """Re-chain whenever someone (kopf, once its startup is done) installs a handler of its own,
        until the deadline is armed. It must end then on its own: kopf waits up to 5 s at exit for
        tasks started after it (its "hung tasks"), which made every stop, a lost Lease's too, 5 s slower."""
        while not self.signalled:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.chain(sig)
            await asyncio.sleep(_RECHAIN_SECONDS)

    def arm(self, exit_code: int = 0, cause: str = "SIGTERM", *, within: float | None = None) -> None:
        """Start the deadline (``within`` seconds, default ``timeout``; an earlier one replaces a later
        one); ``exit_code`` is what the process ends with if it passes (the highest asked)."""
        if exit_code > self.exit_code:
            self.exit_code, self._cause = exit_code, cause
        self.signalled = True
        seconds = self.timeout if within is None else min(within, self.timeout)
        deadline = time.monotonic() + seconds
        if self._timer is not None and deadline >= self._deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._deadline, self._seconds = deadline, seconds
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        logger.error("Did not stop within %gs of %s; exiting now", self._seconds, self._cause)
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        os._exit(self.exit_code)
