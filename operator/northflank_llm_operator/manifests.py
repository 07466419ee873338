"""LLMModelDeployment manifests for a project's existing deployments (``northflank-llm-operator import``).

Pure: list items in, manifests and their YAML out. The output is meant to be committed, so it is
deterministic: the same listing always gives byte-identical YAML, whatever order the pages came in.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pydantic
import yaml

from .northflank.client import summarize_validation_error
from .resource import API_VERSION, GROUP, KIND, LLMModelDeploymentSpec

PROJECT_LABEL = f"{GROUP}/project-id"
DEPLOYMENT_LABEL = f"{GROUP}/deployment-id"
#: Names are DNS-1123 labels (what most tooling assumes of a name), so at most 63 characters.
MAX_NAME = 63
_SUFFIX = 5
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
#: Northflank phases that carry over into spec.expectedPhase with --expected-phase-from-current.
_STEADY_PHASES = ("running", "paused")


@dataclass(frozen=True)
class ImportOptions:
    project_id: str
    team_id: str | None = None
    namespace: str | None = None
    credentials_secret: str | None = None
    poll_interval_seconds: int | None = None
    expected_phase_from_current: bool = False


@dataclass(frozen=True)
class Note:
    """Something the user should know about one deployment (printed on standard error)."""

    deployment: str
    message: str


def kubernetes_name(text: str) -> str:
    """A DNS-1123 label from free text: lower case, runs of anything else become one '-'."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:MAX_NAME].rstrip("-")


def _suffixed(base: str, deployment_id: str, length: int) -> str:
    digest = hashlib.sha256(deployment_id.encode()).hexdigest()[:length]
    return f"{base[: MAX_NAME - length - 1].rstrip('-')}-{digest}"


def manifest_name(deployment_id: str, *, suffix: int = _SUFFIX) -> str:
    """The manifest's name, from the deployment's immutable id alone (never its display name, which can
    be changed at Northflank): the id itself when it is a DNS-1123 label, else its slug with a short
    digest of the id (ids may carry upper case or be longer than 63 characters)."""
    if len(deployment_id) <= MAX_NAME and _DNS_LABEL.fullmatch(deployment_id):
        return deployment_id
    return _suffixed(kubernetes_name(deployment_id) or "deployment", deployment_id, suffix)


def assign_names(deployment_ids: Iterable[str]) -> dict[str, str]:
    """Kubernetes names for deployment ids: :func:`manifest_name` of each, so a rename at Northflank
    or a deployment arriving later never renames a manifest. Should a suffixed name equal another
    id (ids are distinct, their slugs almost never collide), the suffixed one gets a longer digest."""
    ids = sorted(set(deployment_ids))
    exact = {d for d in ids if manifest_name(d) == d}
    names: dict[str, str] = {d: d for d in exact}
    taken = set(exact)
    for deployment_id in ids:
        if deployment_id in names:
            continue
        length = _SUFFIX
        candidate = manifest_name(deployment_id, suffix=length)
        while candidate in taken:
            length += 1  # astronomically rare; still deterministic
            candidate = manifest_name(deployment_id, suffix=length)
        names[deployment_id] = candidate
        taken.add(candidate)
    return names


def build_manifests(items: Iterable[Any], options: ImportOptions) -> tuple[list[dict[str, Any]], list[Note]]:
    """One manifest per listed deployment (sorted by name), and notes on the ones left out or changed."""
    notes: list[Note] = []
    found: dict[str, Mapping[str, Any]] = {}
    for item in items:
        deployment_id = item.get("id") if isinstance(item, Mapping) else None
        if not isinstance(deployment_id, str) or not deployment_id:
            notes.append(Note("?", "a listed item has no id; left out"))
            continue
        found.setdefault(deployment_id, item)  # a page boundary that moved may repeat an item
    specs: dict[str, dict[str, Any]] = {}
    for deployment_id, item in sorted(found.items()):
        spec = _spec(deployment_id, item, options, notes)
        try:
            LLMModelDeploymentSpec.model_validate(spec)
        except pydantic.ValidationError as exc:
            notes.append(Note(deployment_id, f"cannot be mirrored ({summarize_validation_error(exc)}); left out"))
            continue
        specs[deployment_id] = spec
    names = assign_names(specs)
    manifests = [_manifest(names[d], d, spec, options) for d, spec in specs.items()]
    manifests.sort(key=lambda m: str(m["metadata"]["name"]))
    return manifests, notes


def _spec(deployment_id: str, item: Mapping[str, Any], options: ImportOptions, notes: list[Note]) -> dict[str, Any]:
    spec: dict[str, Any] = {"projectId": options.project_id, "llmModelDeploymentId": deployment_id}
    if options.team_id is not None:
        spec["teamId"] = options.team_id
    if options.credentials_secret is not None:
        spec["credentialsSecretRef"] = {"name": options.credentials_secret}
    if options.poll_interval_seconds is not None:
        spec["pollIntervalSeconds"] = options.poll_interval_seconds
    if options.expected_phase_from_current:
        phase = item.get("status")
        if phase in _STEADY_PHASES:
            spec["expectedPhase"] = phase
        else:
            notes.append(
                Note(deployment_id, f"is {phase!r}, not running or paused: expectedPhase left unset (running)")
            )
    return spec


def _manifest(name: str, deployment_id: str, spec: dict[str, Any], options: ImportOptions) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if options.namespace is not None:
        metadata["namespace"] = options.namespace
    labels = {PROJECT_LABEL: options.project_id, DEPLOYMENT_LABEL: deployment_id}
    # Ids may be longer than a label value may be; the spec names the deployment either way.
    metadata["labels"] = {k: v for k, v in labels.items() if len(v) <= MAX_NAME and _LABEL_VALUE.match(v)}
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}


def render(manifests: Iterable[Mapping[str, Any]]) -> str:
    """Multi-document YAML, keys in manifest order (apiVersion, kind, metadata, spec)."""
    return "".join(
        "---\n" + yaml.safe_dump(dict(m), sort_keys=False, default_flow_style=False, allow_unicode=True)
        for m in manifests
    )
