"""The metrics and leader election flags reach the one settings object; a standby passes liveness."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from northflank_llm_operator import cli, handlers, process
from northflank_llm_operator.runtime import Runtime
from northflank_llm_operator.settings import OperatorSettings


def settings_for(monkeypatch: pytest.MonkeyPatch, *argv: str) -> OperatorSettings:
    started: list[OperatorSettings] = []

    async def operate(options: Any, settings: OperatorSettings) -> int:
        started.append(settings)
        return 0

    monkeypatch.setattr(process, "operate", operate)
    assert cli.main(["run", "-A", *argv]) == 0
    return started[0]


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NORTHFLANK_LLM_OPERATOR_METRICS_BIND_ADDRESS", "127.0.0.1:9999")
    monkeypatch.setenv("NORTHFLANK_LLM_OPERATOR_LEADER_ELECT", "true")
    monkeypatch.setenv("NORTHFLANK_LLM_OPERATOR_LEADER_ELECTION_ID", "from-env")
    from_env = settings_for(monkeypatch)
    assert from_env.metrics_bind_address == "127.0.0.1:9999"
    assert from_env.leader_elect is True
    assert from_env.leader_election_id == "from-env"
    flagged = settings_for(
        monkeypatch, "--metrics-bind-address=:8081", "--no-leader-elect", "--leader-election-id=from-flag",
        "--leader-election-namespace=ops",
    )  # fmt: skip
    assert flagged.metrics_bind_address == ":8081"
    assert flagged.leader_elect is False
    assert flagged.leader_election_id == "from-flag"
    assert flagged.leader_election_namespace == "ops"


def test_defaults_serve_nothing_and_elect_nobody(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("METRICS_BIND_ADDRESS", "LEADER_ELECT", "LEADER_ELECTION_ID"):
        monkeypatch.delenv(f"NORTHFLANK_LLM_OPERATOR_{name}", raising=False)
    settings = settings_for(monkeypatch)
    assert settings.metrics_bind_address is None
    assert settings.leader_elect is False
    assert (settings.leader_election_lease_duration_seconds, settings.leader_election_renew_deadline_seconds,
            settings.leader_election_retry_period_seconds) == (15, 10, 2)  # fmt: skip


@pytest.mark.parametrize("argv", [["--metrics-bind-address=8081"], ["--leader-election-id=Not_A_Name"]])
def test_bad_values_stop_the_start_with_exit_code_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert cli.main(["run", "-A", *argv]) == 2
    assert "invalid settings" in capsys.readouterr().err


async def test_a_standby_without_a_poll_loop_is_alive() -> None:
    runtime: Any = Runtime.__new__(Runtime)
    runtime.settings = OperatorSettings()
    runtime.registry = []
    runtime.poller_task = None
    runtime.leading = False
    probe: Any = handlers.tracked_resources
    assert await probe(memo=kopf.Memo(runtime=runtime)) == 0
    runtime.leading = True
    with pytest.raises(kopf.PermanentError, match="poll loop"):
        await probe(memo=kopf.Memo(runtime=runtime))


def test_management_is_off_unless_the_flag_or_the_environment_enables_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NORTHFLANK_LLM_OPERATOR_ENABLE_MANAGEMENT", raising=False)
    assert settings_for(monkeypatch).enable_management is False
    assert settings_for(monkeypatch, "--enable-management").enable_management is True
    monkeypatch.setenv("NORTHFLANK_LLM_OPERATOR_ENABLE_MANAGEMENT", "true")
    assert settings_for(monkeypatch).enable_management is True
    assert settings_for(monkeypatch, "--no-enable-management").enable_management is False
