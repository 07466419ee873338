"""The per-token rate limit over HTTP, with a compressed window."""

from __future__ import annotations

import httpx
import pytest

from tests.simulator.fixtures import RunningSimulator
from tests.simulator.test_api import assert_error
from tests.support.waiting import wait_for

ROUTE = "/v1/projects/inference/llm-model-deployments"


@pytest.fixture(autouse=True)
def setup(simulator: RunningSimulator) -> None:
    simulator.control.add_token("token", team_id="team-a")
    simulator.control.add_token("other", team_id="team-a")
    simulator.control.put_project("inference", team_id="team-a")


def budget(response: httpx.Response) -> tuple[int, int, int]:
    headers = response.headers
    return (
        int(headers["x-ratelimit-limit"]),
        int(headers["x-ratelimit-remaining"]),
        int(headers["x-ratelimit-reset"]),
    )


def test_budget_counts_down_refuses_and_recovers(simulator: RunningSimulator) -> None:
    simulator.control.set_rate_limit(5, 1.5)
    with simulator.api("token") as client:
        answers = [client.get(ROUTE) for _ in range(5)]
        assert [response.status_code for response in answers] == [200] * 5
        assert [budget(response)[:2] for response in answers] == [(5, 4), (5, 3), (5, 2), (5, 1), (5, 0)]
        assert all(0 <= budget(response)[2] <= 2 for response in answers)

        refused = client.get(ROUTE)
        assert_error(refused, 429)
        assert budget(refused)[:2] == (5, 0)
        assert "retry-after" not in refused.headers
        assert_error(client.get(ROUTE), 429)  # refusals spend nothing, the next is refused the same way

        def answered() -> httpx.Response | None:
            response = client.get(ROUTE)
            return response if response.status_code == 200 else None

        recovered = wait_for(answered, timeout=5, message="a fresh window")
        assert budget(recovered)[:2] == (5, 4)

    statuses = [entry["status"] for entry in simulator.control.requests()]
    assert statuses[:7] == [200] * 5 + [429] * 2


def test_errors_spend_budget_too(simulator: RunningSimulator) -> None:
    simulator.control.set_rate_limit(2, 60)
    with simulator.api("token") as client:
        assert budget(client.get("/v1/projects/missing/llm-model-deployments"))[1] == 1
        assert budget(client.get(ROUTE))[1] == 0
        assert_error(client.get(ROUTE), 429)


def test_tokens_have_separate_budgets(simulator: RunningSimulator) -> None:
    simulator.control.set_rate_limit(1, 60)
    with simulator.api("token") as first, simulator.api("other") as second:
        assert first.get(ROUTE).status_code == 200
        assert first.get(ROUTE).status_code == 429
        assert second.get(ROUTE).status_code == 200


def test_retry_after_header_on_request(simulator: RunningSimulator) -> None:
    simulator.control.set_rate_limit(1, 30, retry_after_header=True)
    with simulator.api("token") as client:
        assert "retry-after" not in client.get(ROUTE).headers
        refused = client.get(ROUTE)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == refused.headers["x-ratelimit-reset"]
    assert 29 <= int(refused.headers["retry-after"]) <= 30


def test_reset_restores_the_budget(simulator: RunningSimulator) -> None:
    simulator.control.set_rate_limit(1, 3600)
    with simulator.api("token") as client:
        client.get(ROUTE)
        assert client.get(ROUTE).status_code == 429
        simulator.control.reset_rate_limit()
        assert budget(client.get(ROUTE)) == (1, 0, 3600)


def test_default_is_northflanks_documented_limit(simulator: RunningSimulator) -> None:
    with simulator.api("token") as client:
        assert budget(client.get(ROUTE)) == (1000, 999, 3600)
