"""``hold`` faults: a write held before it is processed (dropped when its client hangs up) or after
(processed, the answer held), and the held list crash tests watch."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from northflank_api_simulator.control import SimulatorControl, SimulatorControlError
from tests.simulator.fixtures import RunningSimulator, open_account
from tests.simulator.test_writes import DEPLOYMENTS, PROJECT, create_body
from tests.support.waiting import wait_for

TOKEN = "manage-hold-token"


@pytest.fixture
def control(simulator: RunningSimulator) -> SimulatorControl:
    control = open_account(simulator, team="team-h", projects=[PROJECT], token=TOKEN)
    control.set_lifecycle(0)
    return control


def send_and_hang_up(simulator: RunningSimulator, body: bytes) -> socket.socket:
    """Send a create by hand on a raw socket (the test then closes it, like a killed process)."""
    url = urlsplit(simulator.base_url)
    sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 80))
    request = (
        f"POST {DEPLOYMENTS} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    sock.sendall(request)
    return sock


def created(simulator: RunningSimulator) -> list[str]:
    with simulator.api(TOKEN) as api:
        return [d["id"] for d in api.get(DEPLOYMENTS).json()["data"]["llmModelDeployments"]]


def test_a_request_held_before_processing_is_dropped_when_its_client_hangs_up(
    simulator: RunningSimulator, control: SimulatorControl
) -> None:
    fault = control.add_fault(method="POST", path="/llm-model-deployments$", hold="request")
    sock = send_and_hang_up(simulator, httpx.Request("POST", "http://x", json=create_body()).read())
    held = wait_for(control.held, timeout=5, message="the create held")
    assert held == [{"faultId": fault, "method": "POST", "path": DEPLOYMENTS, "stage": "request"}]
    sock.close()
    wait_for(lambda: not control.held(), timeout=5, message="the held request dropped")
    control.release_fault(fault)
    assert created(simulator) == []
    assert [r["status"] for r in control.requests(path_contains=DEPLOYMENTS) if r["method"] == "POST"] == [499]


def test_a_released_request_is_processed(simulator: RunningSimulator, control: SimulatorControl) -> None:
    fault = control.add_fault(method="POST", path="/llm-model-deployments$", hold="request", times=1)
    sock = send_and_hang_up(simulator, httpx.Request("POST", "http://x", json=create_body()).read())
    wait_for(control.held, timeout=5, message="the create held")
    control.release_fault(fault)
    assert sock.recv(12).startswith(b"HTTP/1.1 200")
    sock.close()
    assert created(simulator) == ["my-model"]


def test_an_answer_held_after_processing_leaves_the_deployment_created(
    simulator: RunningSimulator, control: SimulatorControl
) -> None:
    fault = control.add_fault(method="POST", path="/llm-model-deployments$", hold="answer")
    sock = send_and_hang_up(simulator, httpx.Request("POST", "http://x", json=create_body()).read())
    held = wait_for(control.held, timeout=5, message="the answer held")
    assert held[0]["stage"] == "answer"
    assert created(simulator) == ["my-model"]  # processed before the answer was held
    sock.close()
    wait_for(lambda: not control.held(), timeout=5, message="the hung-up answer given up")
    control.remove_fault(fault)


def test_a_hold_is_released_by_removing_the_fault_and_needs_no_status(control: SimulatorControl) -> None:
    with pytest.raises(SimulatorControlError):
        control.add_fault(method="POST", status=500, hold="request")
    with pytest.raises(SimulatorControlError):
        control.release_fault("fault-999")
    start = time.monotonic()
    fault = control.add_fault(method="POST", hold="answer")
    control.remove_fault(fault)
    assert time.monotonic() - start < 5
