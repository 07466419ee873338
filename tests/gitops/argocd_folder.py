"""The copy-ready Argo CD folder ``contrib/argocd/resource_customizations/<group>/<Kind>/``.

Laid out exactly as in Argo CD's repository: ``health.lua``, ``health_test.yaml`` (``tests:`` with
``healthStatus`` and ``inputPath``) and ``testdata/*.yaml``. The testdata are the resources of
tests/gitops/test_health.py's scenarios, whose statuses come from the operator's own status mapping;
the expected health status is each scenario's hand-written verdict, the expected message what the
check says for it (it must contain the scenario's hand-written message).

Regenerate after changing the status mapping or the check: ``uv run python -m tests.gitops.argocd_folder``.
tests/gitops/test_argocd_folder.py fails while the folder is not current.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Final

import yaml

from tests.gitops.test_health import REPO_ROOT, SCENARIOS, Scenario, build_evaluators, evaluate

FOLDER: Final = (
    REPO_ROOT / "contrib" / "argocd" / "resource_customizations" / "northflank-llm-operator.dev" / "LLMModelDeployment"
)
HEALTH_LUA: Final = FOLDER / "health.lua"
HEALTH_TEST: Final = FOLDER / "health_test.yaml"


def input_path(scenario: Scenario) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", scenario.id.lower()).strip("_")
    return f"testdata/{scenario.argocd.lower()}_{slug}.yaml"


def dump(value: object) -> str:
    return yaml.safe_dump(value, sort_keys=False, default_flow_style=False, width=120)


def folder_contents(evaluators: Path) -> dict[str, str]:
    """Every generated file of the folder (relative path -> text); health.lua is not generated."""
    files: dict[str, str] = {}
    tests = []
    for scenario in SCENARIOS:
        path = input_path(scenario)
        obj = scenario.resource()
        files[path] = dump(obj)
        verdict = evaluate(evaluators, ["argocd-health", str(HEALTH_LUA)], obj)
        if verdict.status != scenario.argocd or scenario.argocd_message not in verdict.message:
            raise AssertionError(f"{scenario.id}: the check says {verdict}, the scenario expects {scenario.argocd}")
        tests.append({"healthStatus": {"status": scenario.argocd, "message": verdict.message}, "inputPath": path})
    files["health_test.yaml"] = dump({"tests": tests})
    return files


def main() -> int:
    files = folder_contents(build_evaluators())
    for stale in (FOLDER / "testdata").glob("*.yaml"):
        if f"testdata/{stale.name}" not in files:
            stale.unlink()
    for relative, text in files.items():
        (FOLDER / relative).write_text(text)
    print(f"wrote {len(files)} files into {FOLDER.relative_to(REPO_ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
