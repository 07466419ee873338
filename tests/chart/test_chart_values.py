"""Static tests of the chart's inputs: the values schema, the values documentation, the generated README
and the CRD copy."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.chart import CHART_DIR, CRD_CHART_COPY, CRD_SOURCE, REPO_ROOT, Helm

VALUES_FILE = CHART_DIR / "values.yaml"
SCHEMA_FILE = CHART_DIR / "values.schema.json"
README = CHART_DIR / "README.md"


def _values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(VALUES_FILE.read_text())
    return values


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
    return schema


# ---------------------------------------------------------------------------------------------------
# the schema rejects what it should, naming the key


@pytest.mark.parametrize(
    ("set_args", "named"),
    [
        (["--set", "unknownKey=1"], "unknownKey"),
        (["--set", "image.unknownKey=1"], "unknownKey"),
        (["--set", "securityContext.capabilities.unknownKey=1"], "unknownKey"),
        (["--set", "replicaCount=abc"], "replicaCount"),
        (["--set", "replicaCount=-1"], "replicaCount"),
        (["--set", "leaderElection.leaseName=Not_A_Name"], "leaseName"),
        (["--set", "leaderElection.leaseDurationSeconds=0"], "leaseDurationSeconds"),
        (["--set", "metrics.port=0"], "port"),
        (["--set", "metrics.serviceMonitor.interval=often"], "interval"),
        (["--set", "metrics.prometheusRule.budgetLowRatio=2"], "budgetLowRatio"),
        (["--set", "podDisruptionBudget.maxUnavailable=most"], "maxUnavailable"),
        (["--set", "crds.enabled=maybe"], "enabled"),
        (["--set", "rbac.secretAccess=1"], "secretAccess"),
        (["--set", "image.pullPolicy=Sometimes"], "pullPolicy"),
        (["--set", "image.digest=latest"], "digest"),
        (["--set", "operator.logFormat=xml"], "logFormat"),
        (["--set", "operator.pollIntervalSeconds=1"], "pollIntervalSeconds"),
        (["--set", "operator.maxConcurrentRequests=0"], "maxConcurrentRequests"),
        (["--set", "watchNamespaces[0]=Not_A_Namespace"], "watchNamespaces"),
        (["--set", "watchNamespaces={a,a}"], "watchNamespaces"),
        (["--set", "watchNamespaces=team-a"], "watchNamespaces"),
        (["--set", "resources.requests.cpu=lots"], "cpu"),
        (["--set", "podLabels.tier=1"], "tier"),
        (["--set", "northflank.apiBaseUrl=api.northflank.com"], "apiBaseUrl"),
        (["--set", "service.port=70000"], "port"),
        (["--set", "extraEnv[0].value=x"], "name"),
        (["--set", "labelSelector=1"], "labelSelector"),
        (["--set", "labelSelector.shard=a"], "labelSelector"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_schema_rejects_bad_values_naming_the_key(helm: Helm, set_args: list[str], named: str) -> None:
    proc = helm.template(None, *set_args)
    assert proc.returncode != 0, proc.stdout[:500]
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert named in proc.stderr


def test_lint_applies_the_schema_too(helm: Helm) -> None:
    proc = helm.lint(None, "--set", "unknownKey=1")
    assert proc.returncode != 0
    assert "unknownKey" in proc.stdout + proc.stderr


def _schema_objects(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if node.get("type") == "object" and "properties" in node:
        found.append((path or "<root>", node))
        for key, child in node["properties"].items():
            found.extend(_schema_objects(child, f"{path}.{key}" if path else key))
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            found.extend(_schema_objects(node[key], f"{path}[]"))
    return found


def test_every_schema_object_is_closed() -> None:
    """Every object the chart defines rejects unknown keys (only Kubernetes pass-through types are open)."""
    open_objects = [path for path, node in _schema_objects(_schema()) if node.get("additionalProperties") is not False]
    assert open_objects == []


def _compare(values: Any, schema: dict[str, Any], path: str, problems: list[str]) -> None:
    if not isinstance(values, dict) or "properties" not in schema:
        return
    properties = schema["properties"]
    for key, value in values.items():
        if key not in properties:
            problems.append(f"{path}{key}: in values.yaml, not in the schema")
        else:
            _compare(value, properties[key], f"{path}{key}.", problems)


def test_schema_and_values_yaml_describe_the_same_keys() -> None:
    problems: list[str] = []
    _compare(_values(), _schema(), "", problems)
    missing_in_values = sorted(set(_schema()["properties"]) - set(_values()) - {"global"})
    problems.extend(f"{key}: in the schema, not in values.yaml" for key in missing_in_values)
    assert problems == []


# ---------------------------------------------------------------------------------------------------
# documentation

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][\w.-]*):(?P<rest>.*)$")


def _undocumented_keys(text: str) -> list[str]:
    """Leaf keys of values.yaml without a helm-docs `# --` comment directly above them.

    A key whose children are all documented is a section and needs no comment of its own.
    """
    lines = text.splitlines()
    undocumented = []
    stack: list[tuple[int, str]] = []
    for number, line in enumerate(lines):
        match = _KEY.match(line)
        if not match:
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([key for _, key in stack] + [match["key"]])
        stack.append((indent, match["key"]))
        is_section = (
            not match["rest"].strip()
            and number + 1 < len(lines)
            and (
                len(lines[number + 1]) - len(lines[number + 1].lstrip()) > indent
                and not lines[number + 1].lstrip().startswith("- ")
            )
        )
        comment = []
        for previous in reversed(lines[:number]):
            if previous.strip().startswith("#"):
                comment.append(previous.strip())
            else:
                break
        documented = any(c.startswith("# --") for c in comment)
        if not documented and not is_section:
            undocumented.append(path)
    return undocumented


def test_every_value_has_a_helm_docs_comment() -> None:
    assert _undocumented_keys(VALUES_FILE.read_text()) == []


def test_undocumented_key_detection_works() -> None:
    text = "# -- documented\na: 1\nb: 2\nsection:\n  # -- inner\n  c: 3\n  d:\n    - x\n"
    assert _undocumented_keys(text) == ["b", "section.d"]


def test_readme_values_table_is_generated_and_current(helm_docs: Path, tmp_path: Path) -> None:
    """README.md equals what helm-docs makes from README.md.gotmpl + values.yaml right now."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART_DIR, chart)
    (chart / "README.md").unlink()
    proc = subprocess.run(
        [str(helm_docs), f"--chart-search-root={chart}", "--log-level=warning"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    expected = (chart / "README.md").read_text()
    assert README.read_text() == expected, (
        "charts/northflank-llm-operator/README.md is stale; regenerate it with\n"
        '  "$(tests/controlplane/build.sh helm-docs)/helm-docs" --chart-search-root=charts/northflank-llm-operator'
    )
    table = expected.split("## Values", 1)[1]
    for key in ("watchNamespaces", "labelSelector", "northflank.existingSecret", "crds.keep", "rbac.secretAccess"):
        assert f"| {key} |" in table


# ---------------------------------------------------------------------------------------------------
# the CRD copy


def test_chart_crd_copy_is_byte_identical_to_crds_dir() -> None:
    assert CRD_CHART_COPY.read_bytes() == CRD_SOURCE.read_bytes(), (
        f"{CRD_CHART_COPY.relative_to(REPO_ROOT)} drifted from {CRD_SOURCE.relative_to(REPO_ROOT)}; run\n"
        f"  cp {CRD_SOURCE.relative_to(REPO_ROOT)} {CRD_CHART_COPY.relative_to(REPO_ROOT)}"
    )


def test_chart_ships_every_crd_and_nothing_else() -> None:
    source = sorted(path.name for path in CRD_SOURCE.parent.glob("*.yaml"))
    copies = sorted(path.name for path in CRD_CHART_COPY.parent.iterdir())
    assert copies == source
