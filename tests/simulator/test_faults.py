"""Injected faults: canned answers, malformed bodies, latency, matching and expiry."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from northflank_api_simulator.control import SimulatorControlError
from tests.simulator.fixtures import RunningSimulator
from tests.support.waiting import wait_for

ROUTE = "/v1/projects/inference/llm-model-deployments"
ENVELOPE = {"error": {"status": 503, "message": "Service unavailable", "id": "fault-envelope"}}


@pytest.fixture
def client(simulator: RunningSimulator) -> Iterator[httpx.Client]:
    simulator.control.add_token("token", team_id="team-a")
    simulator.control.put_project("inference", team_id="team-a")
    simulator.control.put_deployment("inference", "model", status="running")
    with simulator.api("token") as client:
        yield client


def test_status_and_json_body_for_a_number_of_times(simulator: RunningSimulator, client: httpx.Client) -> None:
    fault_id = simulator.control.add_fault(status=503, json_body=ENVELOPE, times=2)
    answers = [client.get(ROUTE) for _ in range(3)]
    assert [response.status_code for response in answers] == [503, 503, 200]
    assert answers[0].json() == ENVELOPE
    assert answers[0].headers["content-type"].startswith("application/json")
    assert [response.headers["x-ratelimit-remaining"] for response in answers] == ["999", "998", "997"]
    assert [entry["faultId"] for entry in simulator.control.requests()] == [fault_id, fault_id, None]


def test_schema_violating_data_is_served_verbatim(simulator: RunningSimulator, client: httpx.Client) -> None:
    simulator.control.add_fault(status=200, json_body={"data": {"id": 5, "status": None}}, deployment_id="model")
    assert client.get(f"{ROUTE}/model").json() == {"data": {"id": 5, "status": None}}


def test_malformed_json(simulator: RunningSimulator, client: httpx.Client) -> None:
    simulator.control.add_fault(status=200, body='{"data": {"id": ', content_type="application/json")
    response = client.get(ROUTE)
    assert response.headers["content-type"] == "application/json"
    assert response.text == '{"data": {"id": '
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_html_from_a_proxy_with_extra_headers(simulator: RunningSimulator, client: httpx.Client) -> None:
    html = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    simulator.control.add_fault(
        status=502, body=html, content_type="text/html", headers={"Server": "nginx", "x-ratelimit-remaining": "7"}
    )
    response = client.get(ROUTE)
    assert (response.status_code, response.text, response.headers["content-type"]) == (502, html, "text/html")
    assert response.headers["server"] == "nginx"
    assert response.headers["x-ratelimit-remaining"] == "7"  # the fault's own headers win


def test_fault_outside_the_rate_limit(simulator: RunningSimulator, client: httpx.Client) -> None:
    simulator.control.add_fault(status=500, body="boom", count_against_rate_limit=False, times=1)
    faulted = client.get(ROUTE)
    assert faulted.status_code == 500
    assert "x-ratelimit-remaining" not in faulted.headers
    assert client.get(ROUTE).headers["x-ratelimit-remaining"] == "999"


def test_faults_apply_before_authentication(simulator: RunningSimulator) -> None:
    simulator.control.add_fault(status=504, body="gateway timeout")
    with simulator.api() as anonymous:
        response = anonymous.get(ROUTE)
    assert (response.status_code, response.text) == (504, "gateway timeout")
    assert "x-ratelimit-limit" not in response.headers


def test_latency_only_fault_falls_through(simulator: RunningSimulator, client: httpx.Client) -> None:
    simulator.control.add_fault(latency_seconds=0.4, times=1)
    started = time.monotonic()
    slow = client.get(f"{ROUTE}/model")
    elapsed = time.monotonic() - started
    assert slow.status_code == 200
    assert slow.json()["data"]["status"] == "running"
    assert elapsed >= 0.4
    started = time.monotonic()
    client.get(f"{ROUTE}/model")
    assert time.monotonic() - started < 0.4


def test_latency_lets_a_client_time_out(simulator: RunningSimulator) -> None:
    simulator.control.add_token("token", team_id="team-a")
    simulator.control.add_fault(latency_seconds=1.0, status=200, json_body={"data": {}}, times=1)
    with simulator.api("token", timeout=0.2) as impatient, pytest.raises(httpx.ReadTimeout):
        impatient.get("/v1/auth")


def test_matching_by_path_project_deployment_and_method(simulator: RunningSimulator, client: httpx.Client) -> None:
    simulator.control.put_deployment("inference", "other")
    simulator.control.add_fault(status=500, json_body={}, deployment_id="model")
    simulator.control.add_fault(status=501, json_body={}, method="POST")
    simulator.control.add_fault(status=502, json_body={}, path=r"^/v1/auth$")
    simulator.control.add_fault(status=503, json_body={}, project_id="elsewhere")
    assert client.get(f"{ROUTE}/model").status_code == 500
    assert client.get(f"{ROUTE}/other").status_code == 200
    assert client.get(ROUTE).status_code == 200
    assert client.get("/v1/auth").status_code == 502
    simulator.control.add_token("manage-token", team_id="team-a")  # a POST is a write attempt
    with simulator.api("manage-token") as writer:
        assert writer.post(ROUTE).status_code == 501


def test_first_matching_fault_wins(simulator: RunningSimulator, client: httpx.Client) -> None:
    simulator.control.add_fault(status=500, json_body={}, times=1)
    simulator.control.add_fault(status=502, json_body={})
    assert [client.get(ROUTE).status_code for _ in range(2)] == [500, 502]


def test_removing_faults(simulator: RunningSimulator, client: httpx.Client) -> None:
    first = simulator.control.add_fault(status=500, json_body={})
    simulator.control.add_fault(status=502, json_body={})
    simulator.control.remove_fault(first)
    assert client.get(ROUTE).status_code == 502
    simulator.control.clear_faults()
    assert client.get(ROUTE).status_code == 200
    with pytest.raises(SimulatorControlError) as refused:
        simulator.control.remove_fault(first)
    assert refused.value.status_code == 404


def test_invalid_fault_is_refused(simulator: RunningSimulator) -> None:
    with pytest.raises(SimulatorControlError) as refused:
        simulator.control.add_fault(body="no status")
    assert refused.value.status_code == 400
    assert "status" in refused.value.body


def test_deep_json_is_generated(simulator: RunningSimulator, client: httpx.Client) -> None:
    simulator.control.add_fault(status=200, deep_json_depth=50_000)
    response = client.get(ROUTE)
    assert response.headers["content-type"].startswith("application/json")
    assert response.content == b'{"data": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"


def test_huge_numbers_replace_the_placeholder(simulator: RunningSimulator, client: httpx.Client) -> None:
    simulator.control.add_fault(
        status=200, json_body={"data": {"ports": [{"internalPort": "__HUGE_NUMBER__"}]}}, huge_number_digits=30
    )
    assert client.get(ROUTE).json() == {"data": {"ports": [{"internalPort": int("9" * 30)}]}}


def test_fresh_values_never_repeat(simulator: RunningSimulator, client: httpx.Client) -> None:
    simulator.control.add_fault(
        status=200, json_body={"pagination": {"hasNextPage": True, "cursor": "c-__FRESH__"}}, fresh_values=True
    )
    cursors = [client.get(ROUTE).json()["pagination"]["cursor"] for _ in range(3)]
    assert len(set(cursors)) == 3
    assert all(c.startswith("c-fresh-") for c in cursors)


def test_padding_is_trailing_whitespace(simulator: RunningSimulator, client: httpx.Client) -> None:
    simulator.control.add_fault(status=200, json_body={"data": {}}, pad_bytes=3 * 1024 * 1024 + 5)
    response = client.get(ROUTE)
    assert len(response.content) == len(b'{"data": {}}') + 3 * 1024 * 1024 + 5
    assert response.json() == {"data": {}}
    assert response.headers["x-ratelimit-remaining"] == "999"


def test_gzip_bomb_is_small_on_the_wire(simulator: RunningSimulator, client: httpx.Client) -> None:
    simulator.control.add_fault(status=200, json_body={"data": {}}, pad_bytes=64 * 1024 * 1024, gzip=True)
    with client.stream("GET", ROUTE) as response:
        assert response.headers["content-encoding"] == "gzip"
        wire = sum(len(chunk) for chunk in response.iter_raw())
        # Streamed raw bytes are still compressed: about a thousandth of what they inflate to.
    assert wire < 1024 * 1024
    again = simulator.control.add_fault(status=200, json_body={"data": {}}, pad_bytes=1000, gzip=True)
    assert client.get(ROUTE).json() == {"data": {}}
    assert again


def test_drip_sends_headers_at_once_and_the_body_slowly(simulator: RunningSimulator, client: httpx.Client) -> None:
    simulator.control.add_fault(status=200, json_body={"data": {}}, drip_chunk_bytes=2, drip_interval_seconds=0.1)
    started = time.monotonic()
    with client.stream("GET", ROUTE) as response:
        headers_after = time.monotonic() - started
        assert simulator.control.in_flight() == 1  # counted until the last byte is sent
        body = response.read()
    elapsed = time.monotonic() - started
    assert body == b'{"data": {}}'
    assert headers_after < 0.5
    assert elapsed >= 0.5  # six 2-byte chunks, 0.1 s apart
    wait_for(lambda: simulator.control.in_flight() == 0, timeout=5, message="the drip to end")


def test_a_client_may_hang_up_during_a_streamed_body(simulator: RunningSimulator, client: httpx.Client) -> None:
    simulator.control.add_fault(status=200, json_body={"data": {}}, pad_bytes=8 * 1024**3, gzip=True, times=1)
    with client.stream("GET", ROUTE) as response:
        assert next(response.iter_raw())
    assert client.get(f"{ROUTE}/model").status_code == 200  # the simulator serves on


def test_any_status_and_headers(simulator: RunningSimulator, client: httpx.Client) -> None:
    simulator.control.add_fault(status=418, json_body={}, headers={"x-ratelimit-reset": "1e9", "Retry-After": "inf"})
    response = client.get(ROUTE)
    assert (response.status_code, response.headers["x-ratelimit-reset"], response.headers["retry-after"]) == (
        418,
        "1e9",
        "inf",
    )


def test_generated_bodies_need_a_status(simulator: RunningSimulator) -> None:
    # A drip without a status slows the API's own answer (below); a generated body replaces it.
    with pytest.raises(SimulatorControlError) as refused:
        simulator.control.add_fault(latency_seconds=1, deep_json_depth=10)
    assert refused.value.status_code == 400
