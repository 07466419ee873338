"""The root conftest's leak check: a socket a test leaves in a reference cycle fails that very test,
also with the session's start-up objects frozen out of the garbage collector's walk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.controlplane.fixtures import REPO_ROOT

LEAKY_MODULE = """
import gc
import socket


def test_leaks_a_socket_in_a_cycle():
    sock = socket.socket()
    holder = [sock]
    holder.append(holder)  # only the garbage collector frees this, and with it the open socket


def test_after_the_leak():
    assert gc.get_freeze_count() > 0  # the session froze its start-up objects
"""


def test_a_socket_leaked_in_a_cycle_fails_the_test_that_leaked_it(tmp_path: Path) -> None:
    (tmp_path / "test_leaky.py").write_text(LEAKY_MODULE)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nfilterwarnings = error\nasyncio_default_fixture_loop_scope = function\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "operator")])}
    # The repository's root conftest as a plugin: its hooks and autouse fixture, nothing else of the suite.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.conftest",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rA",
            "test_leaky.py",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "ERROR test_leaky.py::test_leaks_a_socket_in_a_cycle" in output, output
    assert "Exception ignored in: <socket.socket" in output, output
    # The leaking test errs in its teardown (its body passed); the next test is not blamed.
    assert "PASSED test_leaky.py::test_after_the_leak" in output, output
    assert "2 passed, 1 error" in output, output
