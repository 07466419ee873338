"""The Argo CD folder is current, passes Argo CD's own test procedure, and the chart ships the same check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.gitops.argocd_folder import FOLDER, HEALTH_LUA, HEALTH_TEST, folder_contents
from tests.gitops.test_health import HEALTH_LUA as CHART_HEALTH_LUA
from tests.gitops.test_health import SCENARIOS, evaluate


def test_the_folder_has_argo_cds_layout() -> None:
    assert FOLDER.parts[-3:] == ("resource_customizations", "northflank-llm-operator.dev", "LLMModelDeployment")
    assert {p.name for p in FOLDER.iterdir()} == {"health.lua", "health_test.yaml", "testdata"}
    tests = yaml.safe_load(HEALTH_TEST.read_text())["tests"]
    assert all(set(case) == {"healthStatus", "inputPath"} for case in tests)
    assert all(set(case["healthStatus"]) == {"status", "message"} for case in tests)
    listed = {case["inputPath"] for case in tests}
    assert listed == {f"testdata/{p.name}" for p in (FOLDER / "testdata").iterdir()}, "every testdata file has a case"
    assert len(tests) == len(SCENARIOS)


def test_the_charts_health_check_is_the_folders() -> None:
    assert CHART_HEALTH_LUA.read_bytes() == HEALTH_LUA.read_bytes(), (
        "charts/.../files/argocd/health.lua and the contrib folder's health.lua differ; copy one onto the other"
    )


def test_the_testdata_are_what_the_status_mapping_produces_now(evaluators: Path) -> None:
    expected = folder_contents(evaluators)
    stale = sorted(path for path, text in expected.items() if not (FOLDER / path).is_file() or
                   (FOLDER / path).read_text() != text)  # fmt: skip
    assert stale == [], f"regenerate with `uv run python -m tests.gitops.argocd_folder`: {stale}"


def _cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = yaml.safe_load(HEALTH_TEST.read_text())["tests"]
    return cases


@pytest.mark.parametrize("case", _cases(), ids=[c["inputPath"] for c in _cases()])
def test_argo_cds_test_cases_pass_in_the_lua_engine(evaluators: Path, case: dict[str, Any]) -> None:
    """What Argo CD's util/lua test does with the folder: run health.lua on each input, compare exactly."""
    obj = yaml.safe_load((FOLDER / case["inputPath"]).read_text())
    verdict = evaluate(evaluators, ["argocd-health", str(HEALTH_LUA)], json.loads(json.dumps(obj)))
    assert {"status": verdict.status, "message": verdict.message} == case["healthStatus"]
