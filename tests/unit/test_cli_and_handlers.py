"""The console script's argument handling and the thin kopf handlers."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf
import pytest

from northflank_llm_operator import __version__, cli, handlers
from northflank_llm_operator.registry import Registry
from northflank_llm_operator.runtime import Runtime
from northflank_llm_operator.settings import OperatorSettings


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_run_requires_a_scope(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", "--standalone"])
    assert exited.value.code == 2
    assert "--namespace" in capsys.readouterr().err


def test_namespace_and_all_namespaces_are_exclusive() -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["run", "-n", "a", "-A"])


def test_repeatable_namespaces() -> None:
    args = cli.build_parser().parse_args(["run", "-n", "a", "--namespace", "b", "--standalone"])
    assert (args.namespaces, args.all_namespaces, args.standalone) == (["a", "b"], False, True)


def test_invalid_settings_exit_with_a_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NORTHFLANK_LLM_OPERATOR_POLL_INTERVAL_SECONDS", "0")
    monkeypatch.setenv("NORTHFLANK_API_TOKEN", "must-not-be-printed")
    assert cli.main(["run", "-A"]) == 2
    err = capsys.readouterr().err
    assert "poll_interval_seconds" in err
    assert "must-not-be-printed" not in err


def test_settings_use_the_sdk_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NORTHFLANK_API_TOKEN", "s3cr3t-value")
    monkeypatch.setenv("NORTHFLANK_API_BASE_URL", "http://127.0.0.1:8080")
    monkeypatch.setenv("NORTHFLANK_LLM_OPERATOR_POLL_INTERVAL_SECONDS", "15")
    settings = OperatorSettings()
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(settings)
    assert str(settings.api_base_url) == "http://127.0.0.1:8080/"
    assert settings.poll_interval_seconds == 15


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NORTHFLANK_API_TOKEN", "NF_API_TOKEN", "NORTHFLANK_API_BASE_URL", "NF_API_HOST"):
        monkeypatch.delenv(name, raising=False)
    settings = OperatorSettings()
    assert settings.api_token is None
    assert str(settings.api_base_url) == "https://api.northflank.com/"
    assert settings.poll_interval_seconds == 60


# kopf's decorators type the functions as handler protocols; the tests call them with just the kwargs used.
track: Any = handlers.track
probe: Any = handlers.tracked_resources


def fake_runtime(poller_task: asyncio.Task[Any] | None) -> Any:
    registry = Registry(time.monotonic)
    runtime = Runtime.__new__(Runtime)
    runtime.registry = registry
    runtime.poller_task = poller_task
    return runtime


async def test_event_handler_feeds_the_registry() -> None:
    runtime = fake_runtime(None)
    body = {"metadata": {"namespace": "ns", "name": "a", "uid": "u", "generation": 1, "resourceVersion": "5"}}
    await track(type=None, body=body, memo=kopf.Memo(runtime=runtime))
    assert len(runtime.registry) == 1
    await track(type="DELETED", body=body, memo=kopf.Memo(runtime=runtime))
    assert len(runtime.registry) == 0


async def test_liveness_probe_fails_once_the_poll_loop_is_gone() -> None:
    async def finished() -> None:
        return None

    task = asyncio.create_task(finished())
    await task
    with pytest.raises(kopf.PermanentError, match="poll loop"):
        await probe(memo=kopf.Memo(runtime=fake_runtime(task)))
    never = asyncio.create_task(asyncio.Event().wait())
    try:
        assert await probe(memo=kopf.Memo(runtime=fake_runtime(never))) == 0
    finally:
        never.cancel()


async def test_handlers_refuse_to_run_without_a_runtime() -> None:
    with pytest.raises(RuntimeError, match="runtime"):
        await probe(memo=kopf.Memo())


def test_the_routine_event_handler_success_line_is_dropped_and_nothing_else() -> None:
    drop = cli._DropRoutineSuccess()

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("kopf.objects", logging.INFO, __file__, 1, message, None, None)

    assert not drop.filter(record("Handler 'track' succeeded."))
    assert drop.filter(record("Handler 'track' failed with an exception. Will retry."))
    assert drop.filter(record("Handler 'login' succeeded."))
