"""``northflank-llm-operator import`` against the simulator as a real server: every page, clear errors."""

from __future__ import annotations

import yaml

from tests.simulator.fixtures import RunningSimulator
from tests.support.importing import run_import

TOKEN = "import-token"
TEAM = "team-import"
PROJECT = "big-project"


def seed(simulator: RunningSimulator, count: int) -> None:
    control = simulator.control
    control.add_token(TOKEN, team_id=TEAM)
    control.put_project(PROJECT, team_id=TEAM)
    for i in range(count):
        control.put_deployment(PROJECT, f"model-{i:03d}", name=f"Model {i:03d}", status="running")


def test_import_lists_every_page_and_prints_one_manifest_each(simulator: RunningSimulator) -> None:
    seed(simulator, 150)
    result = run_import(simulator.base_url, TOKEN, "--project", PROJECT, "--namespace", "models")
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    assert len(documents) == 150
    assert [d["metadata"]["name"] for d in documents] == sorted(f"model-{i:03d}" for i in range(150))
    assert "page 1: 100 deployments so far" in result.stderr, "progress goes to standard error"
    assert "listed 150 deployments in 2 pages" in result.stderr
    assert TOKEN not in result.stdout + result.stderr
    lists = [r for r in simulator.control.requests(path_contains="/llm-model-deployments") if r["method"] == "GET"]
    assert len(lists) == 2, "two pages of 100, one request each"


def test_a_bad_token_is_a_clear_error(simulator: RunningSimulator) -> None:
    seed(simulator, 1)
    result = run_import(simulator.base_url, "not-a-token", "--project", PROJECT)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "rejected the token (HTTP 401)" in result.stderr


def test_an_unknown_project_is_a_clear_error(simulator: RunningSimulator) -> None:
    seed(simulator, 1)
    result = run_import(simulator.base_url, TOKEN, "--project", "no-such-project")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "project 'no-such-project' does not exist for this token (HTTP 404)" in result.stderr


def test_a_spent_budget_is_a_clear_error(simulator: RunningSimulator) -> None:
    seed(simulator, 1)
    simulator.control.set_rate_limit(1, 3600)
    assert run_import(simulator.base_url, TOKEN, "--project", PROJECT).returncode == 0
    result = run_import(simulator.base_url, TOKEN, "--project", PROJECT)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "request budget for this token is spent (HTTP 429); it resets in" in result.stderr


def test_no_token_at_all_is_a_usage_error(simulator: RunningSimulator) -> None:
    result = run_import(simulator.base_url, None, "--project", PROJECT)
    assert result.returncode == 2
    assert "NORTHFLANK_API_TOKEN" in result.stderr
