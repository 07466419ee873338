"""Pytest plugin: a real Northflank API simulator subprocess, shared by the session.

Registered from the root conftest (``pytest_plugins = ["tests.simulator.fixtures"]``).

``simulator_process`` (session) starts ``python -m northflank_api_simulator`` on a free port and stops it
at the end; ``simulator`` (function) resets it before each test. When a test using ``simulator`` fails,
the simulator's log lines written during that test are attached to the report.

Observing writes nothing (issue 17): before any simulator a test session started stops,
:func:`assert_only_managing_tokens_wrote` checks its write ledger (``GET /_simulator/writes``, which
resets do not clear), and a POST, PUT, PATCH or DELETE sent with a token whose name does not start with
:data:`MANAGING_TOKEN_PREFIX` fails the run, naming the token and the route. Tests that write (or let an
operator with management policies write) use such tokens; everything else is Observe mode.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import northflank_api_simulator
from northflank_api_simulator.control import SimulatorControl

# A deadline, not a wait: under make test several xdist workers start their planes and simulators at
# once on 2 cores, and the import alone took over 15 s there (load average 20).
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0

_log_offset = pytest.StashKey[int]()

#: Tokens of tests that may write at the simulator (create, update, delete): ``manage-...``.
MANAGING_TOKEN_PREFIX = "manage-"


class ObserveModeWrote(AssertionError):
    """A token that is not a managing one sent a write to the simulator."""


def observe_mode_writes(writes: Iterable[Mapping[str, Any]]) -> list[str]:
    """The write ledger's rows whose token is not a managing one, as ``token: METHOD route (status) xN``."""
    return [
        f"{row['token']}: {row['method']} {row['route']} (HTTP {row['status']}) x{row['count']}"
        for row in writes
        if not str(row["token"]).startswith(MANAGING_TOKEN_PREFIX)
    ]


def assert_only_managing_tokens_wrote(control: SimulatorControl) -> None:
    """ObserveModeWrote naming every token that wrote although it is not a ``manage-`` token."""
    offending = observe_mode_writes(control.writes())
    if offending:
        raise ObserveModeWrote(
            "resources in Observe mode must send no write to Northflank, but the simulator received writes "
            f"from tokens not named {MANAGING_TOKEN_PREFIX}*: " + "; ".join(offending)
        )


@dataclass(frozen=True)
class RunningSimulator:
    """A simulator subprocess: where it listens, how to drive it, where it logs."""

    base_url: str
    control: SimulatorControl
    log_path: Path

    def api(self, token: str | None = None, *, timeout: float = 10.0) -> httpx.Client:
        """An HTTP client for the simulated Northflank API, authenticated with ``token`` if given."""
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def log_text(self, since: int = 0) -> str:
        """The subprocess's combined output, from byte offset ``since``."""
        with self.log_path.open("rb") as log:
            log.seek(since)
            return log.read().decode(errors="replace")


def _wait_for_port_file(process: subprocess.Popen[bytes], port_file: Path, log_path: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if port_file.exists():
            return port_file.read_text().strip()
        if process.poll() is not None:
            pytest.fail(f"simulator exited with {process.returncode}:\n{log_path.read_text()}")
        time.sleep(0.05)
    pytest.fail(f"simulator did not start within {START_TIMEOUT_SECONDS}s:\n{log_path.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def simulator_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSimulator]:
    """One simulator for the whole session, as a real subprocess on a free loopback port."""
    directory = tmp_path_factory.mktemp("simulator")
    port_file = directory / "base-url"
    log_path = directory / "simulator.log"
    # The package's parent folder (operator/) must be importable however pytest itself found it.
    package_root = Path(northflank_api_simulator.__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(package_root), os.environ.get("PYTHONPATH")]))}
    command = [
        sys.executable,
        "-m",
        "northflank_api_simulator",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--port-file",
        str(port_file),
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        base_url = _wait_for_port_file(process, port_file, log_path)
        with SimulatorControl(base_url) as control:
            control.wait_healthy(timeout=START_TIMEOUT_SECONDS)
            yield RunningSimulator(base_url=base_url, control=control, log_path=log_path)
            assert_only_managing_tokens_wrote(control)  # an error at the session's end fails the run
    finally:
        _stop(process)


@pytest.fixture
def simulator(simulator_process: RunningSimulator, request: pytest.FixtureRequest) -> RunningSimulator:
    """The session's simulator, reset to its empty start-up state for this test."""
    simulator_process.control.reset()
    request.node.stash[_log_offset] = simulator_process.log_path.stat().st_size
    return simulator_process


def open_account(
    simulator: RunningSimulator,
    *,
    team: str,
    projects: Iterable[str],
    token: str | None = None,
    requests_per_hour: int = 100_000,
) -> SimulatorControl:
    """A team with its projects (and its token), on a budget no test meets unless it sets its own: the
    rate limit has tests of its own and must stay out of the others' way."""
    control = simulator.control
    if token is not None:
        control.add_token(token, team_id=team)
    for project in projects:
        control.put_project(project, team_id=team)
    control.set_rate_limit(requests_per_hour, 3600)
    return control


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and _log_offset in item.stash:
        funcargs = getattr(item, "funcargs", {})
        running = funcargs.get("simulator")
        if isinstance(running, RunningSimulator):
            report.sections.append(("simulator log", running.log_text(since=item.stash[_log_offset])))
    return report
