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

from .management import ForProvider, Policies, Policy, slug
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
    #: ``import --manage``: spec.managementPolicies of every manifest, and a forProvider from what runs.
    management_policies: tuple[Policy, ...] | None = None


#: ``import --manage``'s default policies: Observe plus Update. An imported manifest shows no drift,
#: so it sends nothing until someone changes it in Git (or at Northflank, corrected once). Without
#: Create a deployment deleted at Northflank is not silently re-created; without Delete, deleting or
#: pruning the resource (an Argo CD app removed by mistake) orphans the deployment instead of deleting it.
DEFAULT_MANAGEMENT_POLICIES = (Policy.OBSERVE, Policy.UPDATE)
#: The port fields a create/update request takes that GET also returns (GET never returns ``domains``).
_PORT_FIELDS = ("name", "internalPort", "protocol", "public", "disableNfDomain")


def check_policies(values: Iterable[str]) -> tuple[Policy, ...]:
    """The policies in canonical order; ValueError for a combination the CRD refuses (``*`` alone, or a
    set that includes Observe)."""
    names = list(dict.fromkeys(v.strip() for v in values if v.strip()))
    try:
        chosen = {Policy(name) for name in names}
    except ValueError:
        raise ValueError(f"policies are {', '.join(p.value for p in Policy)}; got {', '.join(names)}") from None
    if Policy.ALL in chosen and len(chosen) > 1:
        raise ValueError('"*" stands alone (it means every policy)')
    if chosen and Policy.ALL not in chosen and Policy.OBSERVE not in chosen:
        raise ValueError('the policies must include Observe (the operator always observes), or be "*"')
    if not chosen:
        raise ValueError("name at least one policy")
    return tuple(p for p in Policy if p in chosen)


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
    if options.management_policies is not None:
        policies = Policies.from_spec(options.management_policies)
        spec["managementPolicies"] = [p.value for p in options.management_policies]
        if policies.updates or policies.deletes:
            spec["adoptExisting"] = True  # the deployment exists and this resource did not create it
        spec["forProvider"] = for_provider(deployment_id, item, notes)
    return spec


def for_provider(deployment_id: str, item: Mapping[str, Any], notes: list[Note]) -> dict[str, Any]:
    """spec.forProvider from a deployment as Northflank reports it (a GET or listing item), such that
    :func:`~northflank_llm_operator.management.compute_drift` finds nothing against that same answer.

    What a request can set and GET returns: ``name`` (only when it slugs to the id, else the resource
    would say InvalidName), ``description``, ``tags``, ``ports`` (without ``domains``, which GET never
    returns) and ``spec`` (type and configuration; JSON nulls left out, as the CRD stores no null). A
    field the request types do not know is left out and named in a note; so is a top-level field whose
    value they refuse (it is then neither compared nor sent).
    """
    desired: dict[str, Any] = {}
    name = item.get("name")
    if isinstance(name, str) and name:
        if slug(name) == deployment_id:
            desired["name"] = name
        else:
            notes.append(
                Note(deployment_id, f"is named {name!r}, which does not slug to its id: forProvider.name left out")
            )
    for key in ("description", "tags"):
        if key in item and item[key] is not None:
            desired[key] = item[key]
    if isinstance(desired.get("tags"), list):
        desired["tags"] = list(dict.fromkeys(desired["tags"]))  # the CRD keeps tags as a set
    ports = item.get("ports")
    if isinstance(ports, list):
        desired["ports"] = [
            {k: port[k] for k in _PORT_FIELDS if port.get(k) is not None} if isinstance(port, Mapping) else port
            for port in ports
        ]
    observed_spec = item.get("spec")
    if isinstance(observed_spec, Mapping):
        desired["spec"] = _without_nulls({k: observed_spec[k] for k in ("type", "configuration") if k in observed_spec})
    return _valid_for_provider(deployment_id, desired, notes)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _valid_for_provider(deployment_id: str, desired: dict[str, Any], notes: list[Note]) -> dict[str, Any]:
    """``desired`` as ForProvider accepts it: unknown fields removed, refused top-level fields left out."""
    while True:
        try:
            ForProvider.model_validate(desired)
        except pydantic.ValidationError as exc:
            errors = exc.errors()
        else:
            return desired
        unknown = [e["loc"] for e in errors if e["type"] == "extra_forbidden"]
        if unknown:
            for location in unknown:
                _remove(desired, location)
            where = ", ".join(".".join(map(str, loc)) for loc in unknown)
            notes.append(Note(deployment_id, f"reports fields no request can set ({where}): left out of forProvider"))
            continue
        field = str(errors[0]["loc"][0]) if errors[0]["loc"] else ""
        if field not in desired:  # not a field's fault; cannot happen for a mapping, but never loop
            return {}
        reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors if e["loc"][:1] == (field,))
        notes.append(Note(deployment_id, f"forProvider.{field} left out ({reasons}): it is neither compared nor sent"))
        desired.pop(field, None)


def _remove(document: Any, location: tuple[int | str, ...]) -> None:
    *parents, last = location
    for part in parents:
        document = document[part]
    del document[last]


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
