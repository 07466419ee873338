"""The suite-wide check that Observe mode writes nothing (issue 17): the simulator's write ledger, and
a whole pytest session that proves a write from an observe-only token fails the run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from northflank_api_simulator.state import SimulatorState
from tests.simulator.fixtures import (
    RunningSimulator,
    assert_only_managing_tokens_wrote,
    observe_mode_writes,
    open_account,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
ROUTE = "/v1/projects/inference/llm-model-deployments"
CREATE = {"name": "My Model", "spec": {"type": "custom", "configuration": {"engine": "vllm"}}}


def test_the_write_ledger_names_the_token_and_outlives_resets() -> None:
    state = SimulatorState()
    for method, route in (("GET", "get"), ("POST", "create"), ("DELETE", "delete")):
        state.record_request(
            method=method, path=ROUTE, query={}, token_known=True, status=200, fault_id=None,
            token_id="token-1", route=route, token="observe-token",
        )  # fmt: skip
    state.record_request(
        method="POST", path=ROUTE, query={}, token_known=False, status=401, fault_id=None, route="create", token=None
    )
    state.reset()
    assert state.request_stats() == []
    assert state.write_stats() == [
        {"token": "observe-token", "method": "DELETE", "route": "delete", "status": 200, "count": 1},
        {"token": "observe-token", "method": "POST", "route": "create", "status": 200, "count": 1},
        {"token": "unknown", "method": "POST", "route": "create", "status": 401, "count": 1},
    ]


def test_only_tokens_not_named_manage_are_offending() -> None:
    rows = [
        {"token": "manage-writer", "method": "POST", "route": "create", "status": 200, "count": 3},
        {"token": "observer", "method": "POST", "route": "update", "status": 200, "count": 1},
        {"token": "unknown", "method": "DELETE", "route": "delete", "status": 401, "count": 2},
    ]
    assert observe_mode_writes(rows) == [
        "observer: POST update (HTTP 200) x1",
        "unknown: DELETE delete (HTTP 401) x2",
    ]


def test_the_check_reads_the_running_simulator(simulator: RunningSimulator) -> None:
    """Through the real control route: only the managing token's writes pass. The offending token is
    made and used in a simulator of its own, so this session's check stays clean."""
    open_account(simulator, team="team-a", projects=["inference"], token="manage-self-test")
    with simulator.api("manage-self-test") as api:
        assert api.post(ROUTE, json=CREATE).status_code == 200
    simulator.control.reset()  # the ledger survives it
    assert_only_managing_tokens_wrote(simulator.control)
    assert {(r["token"], r["route"]) for r in simulator.control.writes()} >= {("manage-self-test", "create")}


SESSION_CONFTEST = 'pytest_plugins = ["tests.simulator.fixtures"]\n'
SESSION_TESTS = textwrap.dedent(
    f"""
    from tests.simulator.fixtures import open_account

    CREATE = {CREATE!r}
    ROUTE = {ROUTE!r}


    def test_a_managing_test_writes(simulator):
        open_account(simulator, team="team-a", projects=["inference"], token="manage-writer")
        with simulator.api("manage-writer") as api:
            assert api.post(ROUTE, json=CREATE).status_code == 200


    def test_an_observe_mode_test_writes_by_mistake(simulator):
        open_account(simulator, team="team-a", projects=["inference"], token="observer")
        with simulator.api("observer") as api:
            assert api.post(ROUTE + "/my-model", json={{"description": "x"}}).status_code == 404
            assert api.delete(ROUTE + "/my-model").status_code == 404


    def test_a_later_test_resets_the_simulator(simulator):
        pass
    """
)


def run_session(tmp_path: Path, tests: str) -> subprocess.CompletedProcess[str]:
    """A whole pytest session with the simulator fixtures, in a folder of its own."""
    (tmp_path / "conftest.py").write_text(SESSION_CONFTEST)
    (tmp_path / "test_session.py").write_text(tests)
    operator_dir = REPO_ROOT / "operator"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(operator_dir)])}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q", "--rootdir", str(tmp_path),
         str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False,
    )  # fmt: skip


def test_a_session_in_which_an_observe_mode_token_wrote_fails(tmp_path: Path) -> None:
    result = run_session(tmp_path, SESSION_TESTS)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "3 passed, 1 error" in result.stdout, result.stdout
    assert "ERROR at teardown of test_a_later_test_resets_the_simulator" in result.stdout
    assert "observer: POST update (HTTP 404) x1" in result.stdout
    assert "observer: DELETE delete (HTTP 404) x1" in result.stdout
    assert "manage-writer:" not in result.stdout, "a managing token's writes are allowed"


def test_a_session_in_which_only_managing_tokens_wrote_passes(tmp_path: Path) -> None:
    only_managing = SESSION_TESTS.split("def test_an_observe_mode_test_writes_by_mistake")[0]
    result = run_session(tmp_path, only_managing)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
