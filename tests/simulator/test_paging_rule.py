"""The paging rule where Northflank's two official clients disagree, end to end through ``import``.

JS 0.9.5 continues while ``pagination.cursor`` is present, Python 2.1.0 while ``hasNextPage`` or a
cursor is: this project goes on in both cases (see ``DeploymentPage.has_more``).
"""

from __future__ import annotations

import yaml

from northflank_api_simulator.pagination import encode_cursor
from tests.simulator.fixtures import RunningSimulator, open_account
from tests.support.importing import run_import

TOKEN = "paging-token"
PROJECT = "paged"
LIST_PATH = f"/v1/projects/{PROJECT}/llm-model-deployments$"


def imported_ids(simulator: RunningSimulator) -> list[str]:
    result = run_import(simulator.base_url, TOKEN, "--project", PROJECT)
    assert result.returncode == 0, result.stderr
    return sorted(d["spec"]["llmModelDeploymentId"] for d in yaml.safe_load_all(result.stdout))


def test_a_last_page_that_still_carries_a_cursor_is_followed(simulator: RunningSimulator) -> None:
    control = open_account(simulator, team="team-p", projects=[PROJECT], token=TOKEN)
    first = control.put_deployment(PROJECT, "model-a", status="running")
    control.put_deployment(PROJECT, "model-b", status="running")
    page = {"llmModelDeployments": [first]}
    pagination = {"hasNextPage": False, "cursor": encode_cursor("model-a"), "count": 1}
    control.add_fault(status=200, path=LIST_PATH, times=1, json_body={"data": page, "pagination": pagination})
    assert imported_ids(simulator) == ["model-a", "model-b"]


def test_a_page_that_says_more_without_a_cursor_is_followed_by_page_number(simulator: RunningSimulator) -> None:
    control = open_account(simulator, team="team-p", projects=[PROJECT], token=TOKEN)
    for index in range(101):
        control.put_deployment(PROJECT, f"model-{index:03d}", status="running")
    with simulator.api(TOKEN) as api:
        first_page = api.get(f"/v1/projects/{PROJECT}/llm-model-deployments", params={"per_page": 100}).json()
    del first_page["pagination"]["cursor"]
    control.add_fault(status=200, path=LIST_PATH, times=1, json_body=first_page)
    assert imported_ids(simulator) == [f"model-{index:03d}" for index in range(101)]
    pages = [r["query"] for r in control.requests(path_contains="/llm-model-deployments") if r["method"] == "GET"]
    assert pages[-1] == {"per_page": "100", "page": "2"}
