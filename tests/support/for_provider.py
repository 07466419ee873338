"""Hypothesis strategies for spec.forProvider, drawn from the CRD's own schema (so whatever the API
server accepts is what the tests generate), and the GET answer Northflank would give for it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "llmmodeldeployments.northflank-llm-operator.dev.yaml"

#: Short, plain values keep generation fast; the shape is the CRD's.
_NARROW: dict[str, dict[str, Any]] = {
    "name": {"pattern": r"^[a-z][a-z0-9]{0,6}$"},
    "description": {"maxLength": 12},
    "tags": {"maxItems": 3, "uniqueItems": True},
    "ports": {"maxItems": 3},
    "domains": {"maxItems": 1},
    "internalPort": {"maximum": 65535},
}


def crd_for_provider_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_PATH.read_text())
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["forProvider"]
    return schema


def _json_schema(schema: dict[str, Any], key: str = "") -> dict[str, Any]:
    """The CRD's structural schema as plain JSON Schema (nullable, int-or-string, list types)."""
    out: dict[str, Any] = {}
    for name, value in schema.items():
        if name.startswith("x-kubernetes") or name in ("description", "nullable", "default"):
            continue
        if name == "properties":
            out[name] = {k: _json_schema(v, k) for k, v in value.items()}
        elif name == "items":
            out[name] = _json_schema(value, key)
        elif name == "anyOf":
            out[name] = [_json_schema(v, key) for v in value]
        else:
            out[name] = value
    if schema.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer", "minimum": 0, "maximum": 100_000}, {"const": "auto"}]
    if schema.get("nullable"):
        out["type"] = [out["type"], "null"]
    if out.get("type") == "object":
        out["additionalProperties"] = False
    if out.get("type") == "string" and "enum" not in out and "pattern" not in out:
        out.setdefault("pattern", r"^[a-z0-9]{1,6}$")
    if out.get("type") in ("integer", ["integer", "null"]):
        out.setdefault("maximum", 100_000)
    if out.get("type") == "number":
        out.update(minimum=0, maximum=1)
    out.update(_NARROW.get(key, {}) if out.get("type") in ("array", "string", "integer") else {})
    return out


FOR_PROVIDER_JSON_SCHEMA = _json_schema(crd_for_provider_schema())


@st.composite
def for_provider_manifests(draw: st.DrawFn, *, with_spec: bool = False) -> dict[str, Any]:
    """A spec.forProvider as a manifest would hold it (port names unique, as the list map requires)."""
    schema = FOR_PROVIDER_JSON_SCHEMA
    if with_spec:
        schema = {**schema, "required": ["spec"]}
    manifest = draw(from_schema(schema))
    assert isinstance(manifest, dict)
    if "ports" in manifest:
        unique: dict[str, Any] = {}
        for port in manifest["ports"]:
            unique.setdefault(port["name"], port)
        manifest["ports"] = list(unique.values())
    return manifest


def as_observed(body: dict[str, Any]) -> dict[str, Any]:
    """What a GET would answer after ``body`` (a create body) was applied: Northflank's own fields
    added, port domains gone (GET never returns them), some configuration defaults filled in."""
    observed = copy.deepcopy(body)
    observed.update(id=body.get("name", "x"), projectId="default-project", status="running", dns={"base": "b"})
    for index, port in enumerate(observed.get("ports", [])):
        port.pop("domains", None)
        port.update(id=f"p{index}", dns=f"{port['name']}--x.code.run")
    if "spec" in observed:
        observed["spec"]["configuration"].setdefault("revision", "main")
    return observed
