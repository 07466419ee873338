"""``northflank-llm-operator import`` against the simulator as a real server: every page, clear errors."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import yaml

from northflank_llm_operator.importing import MAX_PAGES
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


# -- safe to run against a real account (issue 16, part 3) ----------------------------------------

ENDLESS_PAGE = {
    "data": {"llmModelDeployments": []},
    "pagination": {"hasNextPage": True, "cursor": "cursor-__FRESH__", "count": 0},
}


def list_requests(simulator: RunningSimulator) -> list[dict[str, Any]]:
    return [r for r in simulator.control.requests(path_contains="/llm-model-deployments") if r["method"] == "GET"]


def test_a_listing_whose_cursors_never_end_stops_at_the_page_cap(simulator: RunningSimulator) -> None:
    seed(simulator, 1)
    simulator.control.add_fault(status=200, path="/llm-model-deployments$", json_body=ENDLESS_PAGE, fresh_values=True)
    result = run_import(simulator.base_url, TOKEN, "--project", PROJECT, timeout=120)
    assert result.returncode == 1
    assert result.stdout == "", "a listing that did not end prints no manifest"
    assert f"the listing did not end after {MAX_PAGES} pages" in result.stderr
    assert "documented maximum of 100 per page" in result.stderr
    sent = list_requests(simulator)
    assert len(sent) == MAX_PAGES
    assert all(r["query"].get("per_page") == "100" for r in sent)


def test_a_listing_without_cursors_that_never_ends_stops_at_the_page_cap(simulator: RunningSimulator) -> None:
    seed(simulator, 1)
    page = {"data": {"llmModelDeployments": []}, "pagination": {"hasNextPage": True, "count": 0}}
    simulator.control.add_fault(status=200, path="/llm-model-deployments$", json_body=page)
    result = run_import(simulator.base_url, TOKEN, "--project", PROJECT, timeout=120)
    assert result.returncode == 1
    assert f"the listing did not end after {MAX_PAGES} pages" in result.stderr
    assert len(list_requests(simulator)) == MAX_PAGES


def spend(simulator: RunningSimulator, requests: int) -> None:
    """Someone else (a running operator) spends the same token's budget."""
    with httpx.Client(base_url=simulator.base_url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        for _ in range(requests):
            assert http.get("/v1/auth").status_code == 200


def test_import_never_spends_the_account_below_the_reserve(simulator: RunningSimulator) -> None:
    seed(simulator, 250)  # three pages
    simulator.control.set_rate_limit(40, 3600)
    spend(simulator, 34)  # 6 left; the default reserve is 10 % of 40 = 4
    result = run_import(simulator.base_url, TOKEN, "--project", PROJECT)
    assert result.returncode == 1
    assert result.stdout == "", "an incomplete listing prints no manifest"
    assert "stopped after 2 of the listing's pages" in result.stderr
    assert "4 of 40 requests remain" in result.stderr
    assert "keeps 4 (10 %) for the operator" in result.stderr
    assert "resets in 3" in result.stderr
    assert "--reserve" in result.stderr
    assert len(list_requests(simulator)) == 2, "one more page would leave fewer than 4"


def test_the_reserve_can_be_changed(simulator: RunningSimulator) -> None:
    seed(simulator, 250)
    simulator.control.set_rate_limit(40, 3600)
    spend(simulator, 34)
    result = run_import(simulator.base_url, TOKEN, "--project", PROJECT, "--reserve", "0")
    assert result.returncode == 0, result.stderr
    assert len(list(yaml.safe_load_all(result.stdout))) == 250
    assert len(list_requests(simulator)) == 3


def names(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """Manifest name by deployment id."""
    assert result.returncode == 0, result.stderr
    return {d["spec"]["llmModelDeploymentId"]: d["metadata"]["name"] for d in yaml.safe_load_all(result.stdout)}


def test_names_survive_a_rename_at_northflank(simulator: RunningSimulator) -> None:
    control = simulator.control
    seed(simulator, 0)
    control.put_deployment(PROJECT, "llama-3-8b", name="Llama 3 8B", status="running")
    control.put_deployment(PROJECT, "qwen-2", name="Qwen 2", status="running")
    before = names(run_import(simulator.base_url, TOKEN, "--project", PROJECT))
    assert before == {"llama-3-8b": "llama-3-8b", "qwen-2": "qwen-2"}
    control.patch_deployment(PROJECT, "llama-3-8b", name="Production chat model")
    assert names(run_import(simulator.base_url, TOKEN, "--project", PROJECT)) == before


def test_names_survive_a_deployment_named_like_another(simulator: RunningSimulator) -> None:
    control = simulator.control
    seed(simulator, 0)
    control.put_deployment(PROJECT, "chat-model", name="Llama", status="running")
    before = names(run_import(simulator.base_url, TOKEN, "--project", PROJECT))
    control.put_deployment(PROJECT, "llama", name="Llama", status="running")
    after = names(run_import(simulator.base_url, TOKEN, "--project", PROJECT))
    assert after["chat-model"] == before["chat-model"] == "chat-model"
    assert after["llama"] == "llama"


def test_notes_escape_control_characters_from_upstream_ids(simulator: RunningSimulator) -> None:
    seed(simulator, 0)
    hostile = {
        "data": {"llmModelDeployments": [{"id": "evil\u001b[2J\u202e", "status": "running"}]},
        "pagination": {"hasNextPage": False, "count": 1},
    }
    simulator.control.add_fault(status=200, path="/llm-model-deployments$", json_body=hostile)
    result = run_import(simulator.base_url, TOKEN, "--project", PROJECT, "--expected-phase-from-current")
    assert result.returncode == 0, result.stderr
    assert "\u001b" not in result.stderr
    assert "\u202e" not in result.stderr
    assert "evil\\x1b[2J\\u202e" in result.stderr


def test_import_reads_the_token_file(simulator: RunningSimulator, tmp_path: Path) -> None:
    seed(simulator, 2)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    result = run_import(simulator.base_url, None, "--project", PROJECT, token_file=token_file)
    assert len(names(result)) == 2
    token_file.write_text("has whitespace inside\n")
    result = run_import(simulator.base_url, None, "--project", PROJECT, token_file=token_file)
    assert result.returncode == 2
    assert "NORTHFLANK_API_TOKEN_FILE" in result.stderr
    assert "whitespace" in result.stderr
    assert "has whitespace inside" not in result.stderr
