"""Request counters (``/_simulator/stats``): by token id, route kind and status, never truncated."""

from __future__ import annotations

import json

from northflank_api_simulator.state import SimulatorState
from tests.simulator.fixtures import RunningSimulator

SECRET = "eyJhbGciOiJIUzI1NiJ9.c3RhdHM.c2lnbmF0dXJl"


def test_stats_count_requests_by_token_id_route_and_status(simulator: RunningSimulator) -> None:
    token_id = simulator.control.add_token(SECRET, team_id="team-a")
    other_id = simulator.control.add_token("other", team_id="team-a")
    assert token_id != other_id
    simulator.control.put_project("inference", team_id="team-a")
    simulator.control.put_deployment("inference", "model")
    simulator.control.set_rate_limit(3, 60)
    with simulator.api(SECRET) as client:
        for _ in range(2):
            client.get("/v1/projects/inference/llm-model-deployments/model")
        client.get("/v1/projects/inference/llm-model-deployments", params={"per_page": 100})
        client.get("/v1/projects/inference/llm-model-deployments")  # over budget: 429
    with simulator.api("other") as client:
        client.get("/v1/auth")
        client.get("/v1/projects/inference/llm-model-deployments/missing")
    with simulator.api("wrong") as client:
        client.get("/v1/auth")

    stats = simulator.control.stats()
    assert stats == sorted(
        [
            {"tokenId": other_id, "route": "auth", "status": 200, "count": 1},
            {"tokenId": other_id, "route": "get", "status": 404, "count": 1},
            {"tokenId": token_id, "route": "get", "status": 200, "count": 2},
            {"tokenId": token_id, "route": "list", "status": 200, "count": 1},
            {"tokenId": token_id, "route": "list", "status": 429, "count": 1},
            {"tokenId": "unknown", "route": "auth", "status": 401, "count": 1},
        ],
        key=lambda row: (row["tokenId"], row["route"], row["status"]),
    )
    assert SECRET not in json.dumps(stats)
    with simulator.api(SECRET) as client:
        assert client.get("/v1/auth").status_code == 429
    assert simulator.control.requests()[-1]["status"] == 429

    simulator.control.clear_stats()
    assert simulator.control.stats() == []
    simulator.control.put_deployment("inference", "model")  # control calls are never counted
    assert simulator.control.stats() == []


def test_stats_outlive_the_bounded_request_log() -> None:
    state = SimulatorState(request_log_size=2)
    for status in (200, 200, 200, 429):
        state.record_request(
            method="GET", path="/v1/auth", query={}, token_known=True, status=status, fault_id=None,
            token_id="token-1", route="auth",
        )  # fmt: skip
    assert len(state.request_log) == 2
    assert state.request_stats() == [
        {"tokenId": "token-1", "route": "auth", "status": 200, "count": 3},
        {"tokenId": "token-1", "route": "auth", "status": 429, "count": 1},
    ]
    state.reset()
    assert state.request_stats() == []
