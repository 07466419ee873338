"""The console script's argument handling and the thin kopf handlers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf
import pydantic
import pytest

from northflank_llm_operator import __version__, cli, handlers, process
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


def test_label_selector_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NORTHFLANK_LLM_OPERATOR_LABEL_SELECTOR", raising=False)
    assert OperatorSettings().label_selector is None
    monkeypatch.setenv("NORTHFLANK_LLM_OPERATOR_LABEL_SELECTOR", " shard in (a,b) ")
    assert OperatorSettings().label_selector == "shard in (a,b)"
    monkeypatch.setenv("NORTHFLANK_LLM_OPERATOR_LABEL_SELECTOR", "  ")
    assert OperatorSettings().label_selector is None  # empty: no selector, every resource


def test_a_bad_label_selector_is_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NORTHFLANK_LLM_OPERATOR_LABEL_SELECTOR", "shard in a")
    with pytest.raises(pydantic.ValidationError, match="expected '\\(' after 'in'/'notin'"):
        OperatorSettings()


def test_run_refuses_to_start_with_a_bad_selector(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NORTHFLANK_LLM_OPERATOR_LABEL_SELECTOR", raising=False)
    assert cli.main(["run", "-A", "--selector", "shard=a b"]) == 2
    err = capsys.readouterr().err
    assert "label_selector" in err
    assert "invalid label selector 'shard=a b': expected ',' or the end, found 'b' at position 9" in err
    monkeypatch.setenv("NORTHFLANK_LLM_OPERATOR_LABEL_SELECTOR", "!!")
    assert cli.main(["run", "-A"]) == 2
    assert "invalid label selector '!!'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "argv", "expected"),
    [
        (None, [], None),
        ("shard=a", [], "shard=a"),
        (None, ["--selector", "shard=b"], "shard=b"),
        ("shard=a", ["--selector", "shard=b"], "shard=b"),  # the flag wins
        ("shard=a", ["-l", "shard in (c)"], "shard in (c)"),
        ("shard=a", ["--selector="], None),  # an explicit empty flag lifts the environment's selector
    ],
)
def test_the_selector_flag_overrides_the_environment(
    monkeypatch: pytest.MonkeyPatch, env: str | None, argv: list[str], expected: str | None
) -> None:
    if env is None:
        monkeypatch.delenv("NORTHFLANK_LLM_OPERATOR_LABEL_SELECTOR", raising=False)
    else:
        monkeypatch.setenv("NORTHFLANK_LLM_OPERATOR_LABEL_SELECTOR", env)
    started: list[OperatorSettings] = []

    async def operate(options: Any, settings: OperatorSettings) -> int:
        started.append(settings)
        return 0

    monkeypatch.setattr(process, "operate", operate)
    assert cli.main(["run", "-A", *argv]) == 0
    assert [settings.label_selector for settings in started] == [expected]


@pytest.mark.parametrize(
    ("env", "argv", "expected"),
    [
        (None, [], True),
        ("false", [], False),
        ("false", ["--metrics-per-resource-series"], True),  # the flag wins
        (None, ["--no-metrics-per-resource-series"], False),
    ],
)
def test_per_resource_series_follow_the_flag_then_the_environment(
    monkeypatch: pytest.MonkeyPatch, env: str | None, argv: list[str], expected: bool
) -> None:
    if env is None:
        monkeypatch.delenv("NORTHFLANK_LLM_OPERATOR_METRICS_PER_RESOURCE_SERIES", raising=False)
    else:
        monkeypatch.setenv("NORTHFLANK_LLM_OPERATOR_METRICS_PER_RESOURCE_SERIES", env)
    started: list[OperatorSettings] = []

    async def operate(args: Any, settings: OperatorSettings) -> int:
        started.append(settings)
        return 0

    monkeypatch.setattr(process, "operate", operate)
    assert cli.main(["run", "-A", *argv]) == 0
    assert [settings.metrics_per_resource_series for settings in started] == [expected]


# kopf's decorators type the functions as handler protocols; the tests call them with just the kwargs used.
track: Any = handlers.track
probe: Any = handlers.tracked_resources


def fake_runtime(poller_task: asyncio.Task[Any] | None, registry: Any = None, label_selector: str | None = None) -> Any:
    runtime: Any = Runtime.__new__(Runtime)
    runtime.settings = OperatorSettings(label_selector=label_selector)
    runtime.registry = Registry() if registry is None else registry
    runtime.poller_task = poller_task
    return runtime


async def test_event_handler_feeds_the_registry() -> None:
    runtime = fake_runtime(None)
    body = {"metadata": {"namespace": "ns", "name": "a", "uid": "u", "generation": 1, "resourceVersion": "5"}}
    await track(type=None, body=body, memo=kopf.Memo(runtime=runtime))
    assert len(runtime.registry) == 1
    await track(type="DELETED", body=body, memo=kopf.Memo(runtime=runtime))
    assert len(runtime.registry) == 0


class RecordingRegistry:
    """Stands in for the registry: records what the handler tells it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, str]] = []

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        self.calls.append((event_type, body["metadata"]["name"]))

    def __len__(self) -> int:
        return len(self.calls)


def labelled(name: str, labels: dict[str, str] | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"namespace": "ns", "name": name, "uid": f"uid-{name}", "generation": 1}
    if labels is not None:
        metadata["labels"] = labels
    return {"metadata": metadata}


async def test_without_a_selector_every_event_reaches_the_registry_unchanged() -> None:
    recorder = RecordingRegistry()
    memo = kopf.Memo(runtime=fake_runtime(None, registry=recorder))
    for event_type, labels in ((None, None), ("ADDED", {"shard": "b"}), ("MODIFIED", {}), ("DELETED", None)):
        await track(type=event_type, body=labelled("a", labels), memo=memo)
    assert recorder.calls == [(None, "a"), ("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]


async def test_a_selector_turns_events_of_non_matching_resources_into_deletions() -> None:
    recorder = RecordingRegistry()
    memo = kopf.Memo(runtime=fake_runtime(None, registry=recorder, label_selector="shard=a"))
    await track(type=None, body=labelled("mine", {"shard": "a", "team": "ml"}), memo=memo)
    await track(type="MODIFIED", body=labelled("mine", {"shard": "a"}), memo=memo)
    await track(type=None, body=labelled("theirs", {"shard": "b"}), memo=memo)
    await track(type="ADDED", body=labelled("unlabelled", None), memo=memo)
    await track(type="MODIFIED", body=labelled("empty-labels", {}), memo=memo)
    await track(type="DELETED", body=labelled("mine", {"shard": "a"}), memo=memo)
    assert recorder.calls == [
        (None, "mine"),
        ("MODIFIED", "mine"),
        ("DELETED", "theirs"),
        ("DELETED", "unlabelled"),
        ("DELETED", "empty-labels"),
        ("DELETED", "mine"),
    ]


async def test_a_resource_relabelled_out_of_the_shard_is_dropped_and_back_in_is_tracked_again() -> None:
    runtime = fake_runtime(None, label_selector="shard in (a, b), !paused")
    memo = kopf.Memo(runtime=runtime)
    await track(type=None, body=labelled("m", {"shard": "a"}), memo=memo)
    assert len(runtime.registry) == 1
    await track(type="MODIFIED", body=labelled("m", {"shard": "a", "paused": "true"}), memo=memo)
    assert len(runtime.registry) == 0
    await track(type="MODIFIED", body=labelled("m", {"shard": "c"}), memo=memo)
    assert len(runtime.registry) == 0
    await track(type="MODIFIED", body=labelled("m", {"shard": "b"}), memo=memo)
    assert len(runtime.registry) == 1


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
