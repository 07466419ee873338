"""Run the real operator (``northflank-llm-operator run``) as a subprocess for integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A currently free loopback port (for kopf's liveness endpoint)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    liveness_url: str | None = None
    metrics_url: str | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def assert_alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"operator exited with {self.process.returncode}:\n{self.log()[-4000:]}")


@contextmanager
def run_operator(
    *,
    kubeconfig: Path,
    namespaces: list[str] | None,
    api_base_url: str,
    api_token: str | None,
    log_path: Path,
    poll_interval_seconds: float = 1.0,
    extra_env: dict[str, str] | None = None,
    liveness_port: int | None = None,
    metrics_port: int | None = None,
    extra_args: Iterable[str] = (),
    debug: bool = False,
) -> Iterator[OperatorProcess]:
    """Start the operator, yield it, and stop it with SIGTERM (SIGKILL after a deadline).

    ``debug`` runs it with ``--debug``: every library logs at DEBUG (token-leak tests)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NORTHFLANK_", "NF_"))}
    env.update(
        KUBECONFIG=str(kubeconfig),
        NORTHFLANK_API_BASE_URL=api_base_url,
        NORTHFLANK_LLM_OPERATOR_POLL_INTERVAL_SECONDS=str(poll_interval_seconds),
        NORTHFLANK_LLM_OPERATOR_REQUEST_TIMEOUT_SECONDS="5",
        PYTHONUNBUFFERED="1",
    )
    if api_token is not None:
        env["NORTHFLANK_API_TOKEN"] = api_token
    env.update(extra_env or {})
    scope = ["-A"] if namespaces is None else [arg for ns in namespaces for arg in ("-n", ns)]
    # The installed console script, exactly as users and the container run it.
    console_script = Path(sys.executable).with_name("northflank-llm-operator")
    command = [str(console_script), "run", "--standalone", "--debug" if debug else "--verbose", *scope]
    if liveness_port is not None:
        command.append(f"--liveness=http://127.0.0.1:{liveness_port}/healthz")
    if metrics_port is not None:
        command.append(f"--metrics-bind-address=127.0.0.1:{metrics_port}")
    command.extend(extra_args)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    liveness_url = f"http://127.0.0.1:{liveness_port}/healthz" if liveness_port is not None else None
    metrics_url = f"http://127.0.0.1:{metrics_port}" if metrics_port is not None else None
    handle = OperatorProcess(process, log_path, liveness_url, metrics_url)
    try:
        yield handle
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@contextmanager
def run_operator_for_module(
    *,
    kubeconfig: Path,
    api_base_url: str,
    log_path: Path,
    api_token: str,
    poll_interval_seconds: float,
    other_secrets: Iterable[str] = (),
    liveness: bool = False,
    metrics_port: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[OperatorProcess]:
    """The operator a test module shares (all namespaces), and afterwards proof that no token it saw
    reached its log, whatever happened in the tests."""
    with run_operator(
        kubeconfig=kubeconfig,
        namespaces=None,
        api_base_url=api_base_url,
        api_token=api_token,
        log_path=log_path,
        poll_interval_seconds=poll_interval_seconds,
        liveness_port=free_port() if liveness else None,
        metrics_port=metrics_port,
        extra_env=extra_env,
    ) as process:
        yield process
    log = log_path.read_text(errors="replace")
    for secret in (api_token, *other_secrets):
        assert secret not in log, "a token reached the operator's log"


#: ``run_operator`` for one test's namespace, with the API server and simulator filled in (``start_operator``).
OperatorStarter = Callable[..., AbstractContextManager[OperatorProcess]]
#: ``run_operator_for_module`` with the session's API server and simulator filled in (``start_module_operator``).
ModuleOperatorStarter = Callable[..., AbstractContextManager[OperatorProcess]]
