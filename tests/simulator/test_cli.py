"""The command line: start-up state from flags and a seed file, port file, clean shutdown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import northflank_api_simulator
from northflank_api_simulator.control import SimulatorControl
from tests.simulator.fixtures import assert_only_managing_tokens_wrote
from tests.support.waiting import wait_for

ROUTE = "/v1/projects/inference/llm-model-deployments"


def start(tmp_path: Path, *flags: str) -> subprocess.Popen[str]:
    package_root = Path(northflank_api_simulator.__file__).resolve().parent.parent
    return subprocess.Popen(
        [sys.executable, "-m", "northflank_api_simulator", "--port-file", str(tmp_path / "url"), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(package_root)},
    )


def base_url(process: subprocess.Popen[str], tmp_path: Path) -> str:
    port_file = tmp_path / "url"
    wait_for(lambda: port_file.exists() or process.poll() is not None, timeout=15, message="the port file")
    assert process.poll() is None, process.communicate()
    return port_file.read_text().strip()


@pytest.fixture
def seed_file(tmp_path: Path) -> Path:
    seed = {
        "tokens": [{"token": "org", "scope": "org", "teamIds": ["team-a"]}],
        "projects": [{"id": "inference", "teamId": "team-a"}],
        "deployments": [{"projectId": "inference", "id": "model", "status": "running"}],
        "rateLimit": {"limit": 50, "windowSeconds": 60},
    }
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(seed))
    return path


@pytest.fixture
def seeded(tmp_path: Path, seed_file: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = start(tmp_path, "--seed", str(seed_file), "--token", "team:team-a", "--rate-limit", "3")
    try:
        url = base_url(process, tmp_path)
        yield process, url
        if process.poll() is None:  # the signal tests stop it themselves
            with SimulatorControl(url) as control:
                assert_only_managing_tokens_wrote(control)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_flags_and_seed_make_the_start_up_state(seeded: tuple[subprocess.Popen[str], str]) -> None:
    _, url = seeded
    with httpx.Client(base_url=url, headers={"Authorization": "Bearer team"}) as team:
        response = team.get(f"{ROUTE}/model")
    assert response.json()["data"]["status"] == "running"
    assert response.headers["x-ratelimit-limit"] == "3"  # the flag wins over the seed's 50
    assert response.headers["x-ratelimit-reset"] == "60"  # the seed's window stays
    with httpx.Client(base_url=url, headers={"Authorization": "Bearer org"}) as org:
        assert org.get("/v1/teams/team-a/projects/inference/llm-model-deployments/model").status_code == 200


def test_reset_restores_the_start_up_state(seeded: tuple[subprocess.Popen[str], str]) -> None:
    _, url = seeded
    with SimulatorControl(url) as control:
        control.delete_deployment("inference", "model")
        control.revoke_token("team")
        control.reset()
        assert control.get_deployment("inference", "model")["status"] == "running"
    with httpx.Client(base_url=url, headers={"Authorization": "Bearer team"}) as team:
        assert team.get(f"{ROUTE}/model").status_code == 200


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_it_cleanly(
    seeded: tuple[subprocess.Popen[str], str], signal_number: signal.Signals, tmp_path: Path
) -> None:
    process, url = seeded
    process.send_signal(signal_number)
    stdout, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert stdout.strip() == url
    assert "Traceback" not in stderr
    assert not (tmp_path / "url").exists()


def test_a_taken_port_is_reported(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        process = start(tmp_path, "--port", str(taken.getsockname()[1]))
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 1
    assert "cannot serve" in stderr
    assert "Traceback" not in stderr


def test_invalid_seed_is_a_usage_error(tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"tokens": [{"token": "t", "scope": "team"}]}))
    process = start(tmp_path, "--seed", str(seed))
    _, stderr = process.communicate(timeout=15)
    assert process.returncode == 2
    assert "teamId" in stderr
