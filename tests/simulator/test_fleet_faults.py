"""Faults a fleet meets (issue 14): slow projects, hostile list items, someone else spending the budget."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from northflank_api_simulator.control import SimulatorControlError
from tests.simulator.fixtures import RunningSimulator
from tests.support.waiting import wait_for

SLOW = "/v1/projects/slow/llm-model-deployments"
FAST = "/v1/projects/fast/llm-model-deployments"
TEN_MB = 10 * 1024 * 1024


@pytest.fixture
def client(simulator: RunningSimulator) -> Iterator[httpx.Client]:
    control = simulator.control
    control.add_token("token", team_id="team-a")
    for project in ("slow", "fast"):
        control.put_project(project, team_id="team-a")
        for deployment in ("a", "b", "c"):
            control.put_deployment(project, deployment, status="running")
    with simulator.api("token") as client:
        yield client


def timed_get(client: httpx.Client, path: str) -> tuple[httpx.Response, float, float]:
    """The answer, the seconds until its headers, and until its last byte."""
    started = time.monotonic()
    with client.stream("GET", path) as response:
        headers_after = time.monotonic() - started
        response.read()
    return response, headers_after, time.monotonic() - started


# -- slow projects ----------------------------------------------------------------------------------


def test_every_answer_about_a_slow_project_trickles_in_and_no_other(
    simulator: RunningSimulator, client: httpx.Client
) -> None:
    fault_id = simulator.control.slow_project("slow", bytes_per_second=2_000)
    for path in (f"{SLOW}/a", SLOW):
        response, headers_after, elapsed = timed_get(client, path)
        assert response.status_code == 200
        assert response.headers["x-ratelimit-limit"] == "1000"
        chunks = math.ceil(len(response.content) / 200)  # 200 bytes every 0.1 s
        assert chunks >= 5, "the body is large enough to show the drip"
        assert elapsed >= (chunks - 1) * 0.1
        assert headers_after < elapsed
    assert [item["id"] for item in response.json()["data"]["llmModelDeployments"]] == ["a", "b", "c"]
    assert json.loads(timed_get(client, f"{SLOW}/b")[0].content)["data"] == simulator.control.get_deployment(
        "slow", "b"
    )
    for path in (f"{FAST}/a", FAST):
        _, _, elapsed = timed_get(client, path)
        assert elapsed < 0.4, "another project answers at once"
    logged = simulator.control.requests()
    assert [entry["faultId"] for entry in logged] == [fault_id, fault_id, fault_id, None, None]
    wait_for(lambda: simulator.control.in_flight() == 0, timeout=5, message="every answer to end")


def test_a_slow_project_can_take_seconds_before_its_first_byte(
    simulator: RunningSimulator, client: httpx.Client
) -> None:
    simulator.control.slow_project("slow", first_byte_seconds=0.6)
    response, headers_after, _ = timed_get(client, SLOW)
    assert response.status_code == 200
    assert headers_after >= 0.6
    assert len(response.json()["data"]["llmModelDeployments"]) == 3
    assert timed_get(client, FAST)[1] < 0.4


def test_a_slow_project_beats_a_per_read_timeout(simulator: RunningSimulator, client: httpx.Client) -> None:
    full = len(client.get(f"{SLOW}/a").content)
    simulator.control.slow_project("slow", bytes_per_second=20)
    received = 0
    # A read timeout never fires (two bytes every 0.1 s): only an overall deadline ends such a request.
    with simulator.api("token", timeout=0.3) as impatient, impatient.stream("GET", f"{SLOW}/a") as response:
        started = time.monotonic()
        for chunk in response.iter_raw():
            received += len(chunk)
            if time.monotonic() - started > 1.0:
                break
    assert 0 < received <= 20 * 1.5 + 2
    assert received < full
    assert client.get(f"{FAST}/a").status_code == 200


# -- hostile list items -----------------------------------------------------------------------------


def listing(client: httpx.Client, project: str = "slow") -> httpx.Response:
    response = client.get(f"/v1/projects/{project}/llm-model-deployments")
    assert response.status_code == 200
    return response


def test_one_item_with_a_ten_megabyte_description(simulator: RunningSimulator, client: httpx.Client) -> None:
    simulator.control.make_hostile("slow", "b", text_bytes=TEN_MB)
    page = listing(client).json()
    items = page["data"]["llmModelDeployments"]
    assert [item["id"] for item in items] == ["a", "b", "c"]
    assert items[1]["description"] == "x" * TEN_MB
    assert {k: v for k, v in items[1].items() if k != "description"} == {
        k: v for k, v in simulator.control.get_deployment("slow", "b").items() if k != "description"
    }
    assert items[0] == simulator.control.get_deployment("slow", "a")
    assert page["pagination"] == {"hasNextPage": False, "count": 3}
    assert len(client.get(f"{SLOW}/b").json()["data"]["description"]) == TEN_MB
    assert len(listing(client, "fast").content) < 10_000, "other projects are not touched"


def test_an_item_nested_ten_thousand_deep_only_in_the_listing(
    simulator: RunningSimulator, client: httpx.Client
) -> None:
    simulator.control.make_hostile("slow", "b", field="spec.extra", depth=10_000, listing_only=True)
    response = listing(client)
    with pytest.raises(RecursionError):
        json.loads(response.content)  # the whole page is unreadable to a recursive parser
    assert response.content.count(b'{"d": ') == 9_999
    # The single GET still serves the deployment as it is: a fallback to GETs works.
    assert client.get(f"{SLOW}/b").json()["data"] == simulator.control.get_deployment("slow", "b")
    assert client.get(f"{SLOW}/a").status_code == 200


def test_a_spec_nested_64_deep_keeps_its_other_fields(simulator: RunningSimulator, client: httpx.Client) -> None:
    simulator.control.make_hostile("slow", "c", field="spec.extra", depth=64)
    item = client.get(f"{SLOW}/c").json()["data"]
    assert listing(client).json()["data"]["llmModelDeployments"][2] == item
    value: Any = item["spec"].pop("extra")
    assert item == simulator.control.get_deployment("slow", "c")
    depth = 0
    while isinstance(value, dict):
        depth += 1
        value = value.get("d")
    assert depth == 64


def test_a_hostile_item_is_cleared_by_hand_or_with_its_deployment(
    simulator: RunningSimulator, client: httpx.Client
) -> None:
    control = simulator.control
    control.make_hostile("slow", "a", depth=10_000)
    control.clear_hostile("slow", "a")
    listing(client).json()
    control.make_hostile("slow", "a", depth=10_000)
    control.delete_deployment("slow", "a")
    control.put_deployment("slow", "a")
    assert [item["id"] for item in listing(client).json()["data"]["llmModelDeployments"]] == ["a", "b", "c"]
    with pytest.raises(SimulatorControlError) as missing:
        control.clear_hostile("slow", "a")
    assert missing.value.status_code == 404


@pytest.mark.parametrize(
    ("deployment", "options", "status"),
    [
        ("nope", {"depth": 3}, 404),
        ("a", {}, 400),
        ("a", {"depth": 3, "text_bytes": 3}, 400),
        ("a", {"depth": 3, "field": "spec..x"}, 400),
    ],
)
def test_hostile_items_are_checked(
    simulator: RunningSimulator, client: httpx.Client, deployment: str, options: dict[str, Any], status: int
) -> None:
    with pytest.raises(SimulatorControlError) as refused:
        simulator.control.make_hostile("slow", deployment, **options)
    assert refused.value.status_code == status


# -- someone else spending the budget ---------------------------------------------------------------


def test_someone_else_spends_part_of_the_window(simulator: RunningSimulator, client: httpx.Client) -> None:
    assert client.get(f"{FAST}/a").headers["x-ratelimit-remaining"] == "999"
    assert simulator.control.spend("token", 300) == {"spent": 300, "remaining": 699, "resetSeconds": 3600}
    assert client.get(f"{FAST}/a").headers["x-ratelimit-remaining"] == "698"
    assert simulator.control.spend("token", 5_000)["spent"] == 698, "never beyond the limit"
    assert client.get(f"{FAST}/a").status_code == 429
    assert [row["count"] for row in simulator.control.stats()] == [2, 1], "spending is no /v1 request"
    with pytest.raises(SimulatorControlError) as unknown:
        simulator.control.spend("stranger", 1)
    assert unknown.value.status_code == 404


def test_a_background_spender_spends_a_share_of_every_window(simulator: RunningSimulator, client: httpx.Client) -> None:
    control = simulator.control
    control.set_rate_limit(200, 2.0)  # 100 requests of each 2-second window for the spender
    control.start_spender("token", 0.5)

    def remaining() -> int:
        return int(client.get(f"{FAST}/a").headers["x-ratelimit-remaining"])

    # Ten requests of its own per window at most: the rest of the drop is the spender's.
    wait_for(lambda: remaining() < 150, timeout=10, interval=0.2, message="the budget to drop by someone else's use")
    wait_for(lambda: control.spender("token")["spent"] > 120, timeout=15, message="a second window's share")
    control.stop_spender("token")
    with pytest.raises(SimulatorControlError):
        control.spender("token")
    control.start_spender("token", 1.0)
    control.reset()
    with pytest.raises(SimulatorControlError) as gone:
        control.spender("token")
    assert gone.value.status_code == 404, "reset stops every spender"


def test_spenders_are_checked(simulator: RunningSimulator, client: httpx.Client) -> None:
    for fraction in (0, 1.5):
        with pytest.raises(SimulatorControlError) as refused:
            simulator.control.start_spender("token", fraction)
        assert refused.value.status_code == 400
    with pytest.raises(SimulatorControlError) as unknown:
        simulator.control.start_spender("stranger", 0.5)
    assert unknown.value.status_code == 404
