"""One source of truth (issue 7, item 18): the hand-kept twins are compared field by field, generically,
so a field added later to one side (or a bound changed) fails here until the other side follows.

* the CRD's spec schema and the pydantic spec model (types, bounds, patterns, defaults, required);
* the operator's settings and the chart (every setting is a chart value with the same default and
  bounds, unless listed below with the reason);
* the condition reasons the code can write and the README's list of them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import northflank_llm_operator
from northflank_llm_operator import resource
from northflank_llm_operator.northflank import errors
from northflank_llm_operator.settings import OperatorSettings

REPO = Path(__file__).resolve().parents[2]
CRD_PATH = REPO / "crds" / f"{resource.PLURAL}.{resource.GROUP}.yaml"
CHART = REPO / "charts" / "northflank-llm-operator"
PACKAGE = Path(northflank_llm_operator.__file__).parent

#: Schema keywords both sides must agree on.
_COMPARED = ("type", "minLength", "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum",
             "exclusiveMaximum", "default", "required")  # fmt: skip

#: Spec keywords that deliberately differ between the CRD and the spec model, and why.
SPEC_DIFFERS = {
    ("spec.expectedPhase", "default"): "no CRD default, so a manifest that leaves it out is not rewritten by the "
    "API server (no GitOps diff); the model reads the missing field as running",
}
#: Settings that are deliberately not plain chart values, and why.
NOT_CHART_VALUES = {
    "api_token": "a secret: the chart passes it from a Secret (northflank.apiToken / existingSecret), never as a value",
    "api_token_file": "the path where the chart mounts the token Secret; set by the chart, not a value",
    "metrics_bind_address": "made by the chart from metrics.enabled and metrics.port",
    "metrics_secure": "passed as --metrics-secure / --no-metrics-secure from metrics.secure: the chart is secure by "
    "default (as controller-runtime's scaffolding), the operator out of a cluster serves plain HTTP unless asked",
    "metrics_cert_dir": "the path where the chart mounts metrics.certSecret; set by the chart, not a value",
    "leader_elect": "turned on by the chart when leaderElection.enabled or replicaCount > 1",
    "leader_election_id": "made by the chart from the release name (one Lease per release)",
    "leader_election_namespace": "the release namespace, set by the chart",
}
#: Bounds that deliberately differ between the settings and the chart's schema, and why.
BOUNDS_DIFFER = {
    ("poll_interval_seconds", "minimum"): "the operator polls every second in tests and the demo; installs "
    "(the chart) keep the CRD's minimum of 10 s",
    ("request_timeout_seconds", "minimum"): "the chart takes whole seconds (integer, minimum 1); the operator "
    "also takes fractions (> 0)",
    ("request_timeout_seconds", "exclusiveMinimum"): "see minimum",
    ("status_heartbeat_seconds", "type"): "whole seconds in the chart",
    ("poll_interval_seconds", "type"): "whole seconds in the chart",
    ("request_timeout_seconds", "type"): "whole seconds in the chart",
    ("request_deadline_seconds", "minimum"): "the chart takes whole seconds (integer, minimum 1); the operator "
    "also takes fractions (> 0)",
    ("request_deadline_seconds", "exclusiveMinimum"): "see minimum",
    ("request_deadline_seconds", "type"): "whole seconds in the chart",
}


def _unwrap(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """A pydantic property schema without Optional's anyOf and with $refs resolved."""
    if "anyOf" in schema:
        branches = [s for s in schema["anyOf"] if s.get("type") != "null"] or [schema]
        if len(branches) > 1:
            # int | Literal["auto"]: the CRD's x-kubernetes-int-or-string, which has no type either.
            return {"anyOf": branches}
        (schema,) = branches
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _compare_objects(crd: dict[str, Any], model: dict[str, Any], defs: dict[str, Any], path: str) -> list[str]:
    problems = []
    crd_props, model_props = crd.get("properties", {}), model.get("properties", {})
    for name in sorted(crd_props.keys() | model_props.keys()):
        where = f"{path}.{name}"
        if name not in model_props or name not in crd_props:
            problems.append(f"{where}: only in the {'CRD' if name in crd_props else 'model'}")
            continue
        left, right = crd_props[name], _unwrap(model_props[name], defs)
        for key in _COMPARED:
            if key == "required":
                continue
            if left.get(key) != right.get(key) and (where, key) not in SPEC_DIFFERS:
                problems.append(f"{where}: {key} is {left.get(key)!r} in the CRD, {right.get(key)!r} in the model")
        if left.get("type") == "object":
            problems.extend(_compare_objects(left, right, defs, where))
        if left.get("type") == "array" and left["items"].get("type") == "object":
            problems.extend(_compare_objects(left["items"], _unwrap(right["items"], defs), defs, f"{where}[]"))
    if sorted(crd.get("required", [])) != sorted(model.get("required", [])):
        problems.append(f"{path}: required {crd.get('required')} in the CRD, {model.get('required')} in the model")
    return problems


def test_the_crd_spec_schema_and_the_spec_model_agree_on_every_field() -> None:
    crd = yaml.safe_load(CRD_PATH.read_text())
    (version,) = crd["spec"]["versions"]
    spec_schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    model = resource.LLMModelDeploymentSpec.model_json_schema(by_alias=True)
    assert _compare_objects(spec_schema, model, model.get("$defs", {}), "spec") == []


def _chart_paths() -> dict[str, str]:
    """Environment variable -> the chart value it comes from, read from the Deployment template."""
    template = (CHART / "templates" / "deployment.yaml").read_text()
    found: dict[str, str] = {}
    for match in re.finditer(r"- name: (\w+)\n\s+value: \{\{ \.Values\.([\w.]+)", template):
        found[match[1]] = match[2]
    for match in re.finditer(r"\{\{- with \.Values\.([\w.]+) \}\}\n\s+- name: (\w+)", template):
        found[match[2]] = match[1]
        _GUARDED.add(match[2])
    return found


#: Variables the template sets only when their value is not empty (``with``): empty means "not set".
_GUARDED: set[str] = set()


def _env_name(field: str) -> str:
    info = OperatorSettings.model_fields[field]
    alias = info.validation_alias
    choices = getattr(alias, "choices", None)
    if choices:
        return str(choices[0])
    return f"{OperatorSettings.model_config.get('env_prefix', '')}{field.upper()}"


def _lookup(tree: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        tree = tree["properties"][part] if "properties" in tree else tree[part]
    return tree


@pytest.mark.parametrize("field", sorted(OperatorSettings.model_fields))
def test_every_setting_is_a_chart_value_with_the_same_default_and_bounds(field: str) -> None:
    paths = _chart_paths()
    env = _env_name(field)
    if field in NOT_CHART_VALUES:
        assert env not in paths or field == "api_token", f"{field} is a chart value after all; drop its exception"
        return
    assert env in paths, f"setting {field} ({env}) is not a chart value; add one, or list it with a reason"
    path = paths[env]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = __import__("json").loads((CHART / "values.schema.json").read_text())
    chart_default = _lookup(values, path)
    built_in = OperatorSettings.model_fields[field].default
    name = env if getattr(OperatorSettings.model_fields[field].validation_alias, "choices", None) else field
    if env in _GUARDED and not chart_default:
        from_chart = built_in  # not passed at all: the operator's own default applies, by construction
    else:
        from_chart = getattr(OperatorSettings(**{name: chart_default}), field) if chart_default != "" else None
    assert from_chart == built_in, f"{field}: the chart's default {chart_default!r} is not the operator's {built_in!r}"

    settings_schema = OperatorSettings.model_json_schema(by_alias=False)["properties"][field]
    settings_schema = _unwrap(settings_schema, {})
    chart_schema = _lookup(schema, path)
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "type"):
        if (field, key) in BOUNDS_DIFFER:
            continue
        mine, theirs = settings_schema.get(key), chart_schema.get(key)
        if key == "type" and {mine, theirs} <= {"number", "integer"} and mine == "number":
            # The chart takes whole numbers where the operator takes any: fine when the bounds match.
            continue
        assert mine == theirs, f"{field}: {key} is {mine!r} in the settings, {theirs!r} in the chart's schema"


def test_the_exceptions_are_still_needed() -> None:
    fields = set(OperatorSettings.model_fields)
    assert set(NOT_CHART_VALUES) <= fields
    assert {field for field, _ in BOUNDS_DIFFER} <= fields


def _reasons_in_code() -> set[str]:
    """Every condition reason the operator can write, found in its source and error classes."""
    reasons: set[str] = set()
    stack: list[type[errors.NorthflankError]] = [errors.NorthflankError]
    while stack:
        cls = stack.pop()
        reasons.add(cls.reason)
        stack.extend(cls.__subclasses__())
    patterns = (
        r'CredentialsError\(\s*"([A-Z]\w+)"',
        r'Failure\(\s*"([A-Z]\w+)"',
        r'Condition\(\s*\w+,\s*"\w+",\s*"([A-Z]\w+)"',
    )
    for source in PACKAGE.rglob("*.py"):
        text = source.read_text()
        # Named reasons: the status mapping's constants.
        named = (r'^([A-Z_]+) = "([A-Z]\w+)"$',) if source.name == "status.py" else ()
        for pattern in (*patterns, *named):
            for match in re.finditer(pattern, text, re.MULTILINE):
                reasons.add(match.groups()[-1])
    reasons.discard("NorthflankError")  # the abstract base; every raised error is a subclass
    return {r for r in reasons if r not in ("Ready", "Synced", "Reconciling", "Stalled")}


def test_the_readme_names_every_condition_reason_the_code_can_write() -> None:
    section = (REPO / "README.md").read_text().split("### Conditions", 1)[1].split("\n## ", 1)[0]
    missing = sorted(reason for reason in _reasons_in_code() if f"`{reason}`" not in section)
    assert missing == [], f"the README's Conditions section misses {missing}"
