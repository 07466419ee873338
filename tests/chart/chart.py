"""Rendering and inspecting the Helm chart in tests: paths, value combinations, expected RBAC, a Helm runner.

Shared by the static tests (``helm lint`` / ``helm template``, no cluster) and the integration tests
(``kubectl apply --dry-run=server``, ``helm install``) so both exercise exactly the same combinations.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
CHART_DIR: Final = REPO_ROOT / "charts" / "northflank-llm-operator"
CRD_FILE_NAME: Final = "llmmodeldeployments.northflank-llm-operator.dev.yaml"
CRD_SOURCE: Final = REPO_ROOT / "crds" / CRD_FILE_NAME
CRD_CHART_COPY: Final = CHART_DIR / "files" / "crds" / CRD_FILE_NAME
CRD_NAME: Final = "llmmodeldeployments.northflank-llm-operator.dev"
GROUP: Final = "northflank-llm-operator.dev"
PLURAL: Final = "llmmodeldeployments"

# The Kubernetes version the pinned control plane runs; static renders use the same capabilities.
KUBE_VERSION: Final = "1.34.4"
RELEASE: Final = "nfllm"
RELEASE_NAMESPACE: Final = "nfllm-system"
FULLNAME: Final = "nfllm-northflank-llm-operator"

# A fake token with a marker that cannot occur by chance, to find every place the chart puts it.
SENTINEL_TOKEN: Final = "nf-sentinel-token-3f9c1a7e5b"

# ---------------------------------------------------------------------------------------------------
# Value combinations. Each is documented in the chart README / values.yaml; WATCH_A and WATCH_B are
# placeholders the integration tests replace with namespaces that exist in the cluster.

WATCH_A: Final = "team-a"
WATCH_B: Final = "team-b"

COMBINATIONS: Final[dict[str, dict[str, Any]]] = {
    "default": {},
    "watch-namespaces": {"watchNamespaces": [WATCH_A, WATCH_B]},
    # One shard of several (README "Sharding"): its namespace, its labels, and the CRD left to another release.
    "shard": {"watchNamespaces": [WATCH_A], "labelSelector": "shard=a", "crds": {"enabled": False}},
    "existing-secret": {"northflank": {"existingSecret": "northflank-api-token", "existingSecretKey": "api-token"}},
    "created-secret": {"northflank": {"apiToken": SENTINEL_TOKEN}},
    "crds-disabled": {"crds": {"enabled": False}},
    "management": {"management": {"enabled": True}},
    "namespaced-management": {"watchNamespaces": [WATCH_A], "management": {"enabled": True}},
    # Two replicas electing a leader (README "High availability").
    "ha": {"replicaCount": 2},
    # Every monitoring object; the server-side dry run installs prometheus-operator's CRDs for them.
    "monitoring": {
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}},
            "prometheusRule": {"enabled": True, "additionalAlertLabels": {"team": "platform"}},
            "dashboard": {"enabled": True},
        },
    },
    "crds-not-kept": {"crds": {"keep": False}},
    "secret-access-off": {
        "rbac": {"secretAccess": False},
        "northflank": {"existingSecret": "northflank-api-token"},
    },
    "namespaced-secret-access-off": {
        "watchNamespaces": [WATCH_A],
        "rbac": {"secretAccess": False},
        "northflank": {"existingSecret": "northflank-api-token"},
    },
    "bring-your-own": {
        "rbac": {"create": False, "aggregateToView": False, "aggregateToEdit": False},
        "serviceAccount": {"create": False, "name": "operator-sa"},
        "service": {"enabled": False},
        "tests": {"enabled": False},
        "livenessProbe": {"enabled": False},
        "replicaCount": 0,
    },
    "everything": {
        "fullnameOverride": "nf-operator",
        "commonLabels": {"team": "platform", "cost-center": "ml"},
        "image": {
            "repository": "registry.example.com/mirror/northflank-llm-operator",
            "tag": "0.1.0-rc.1",
            "digest": "sha256:" + "a" * 64,
            "pullPolicy": "Always",
        },
        "imagePullSecrets": [{"name": "registry-credentials"}],
        "northflank": {
            "apiBaseUrl": "https://nf.example.com",
            "existingSecret": "nf",
            "existingSecretKey": "t",
            "defaultTokenNamespaces": ["platform", "ops"],
            "defaultTokenDeniedNamespaces": ["tenant-a"],
        },
        "labelSelector": "shard in (a, b), !example.com/legacy",
        "metrics": {"perResourceSeries": False},
        "operator": {
            "pollIntervalSeconds": 120,
            "requestTimeoutSeconds": 20,
            "requestDeadlineSeconds": 45,
            "maxResponseBytes": 8388608,
            "statusHeartbeatSeconds": 900,
            "budgetReserveFraction": 0.2,
            "maxConcurrentRequests": 2,
            "logFormat": "plain",
            "logLevel": "debug",
            "extraArgs": ["--log-refkey=x"],
        },
        "serviceAccount": {"annotations": {"example.com/role": "reader"}},
        "podAnnotations": {"example.com/scrape": "false"},
        "podLabels": {"example.com/tier": "control"},
        "priorityClassName": "platform-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}
                    ]
                }
            }
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "northflank-llm-operator"}},
            }
        ],
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy.example.com:3128"}],
        "extraVolumes": [{"name": "ca-bundle", "configMap": {"name": "corporate-ca"}}],
        "extraVolumeMounts": [{"name": "ca-bundle", "mountPath": "/etc/ssl/corporate", "readOnly": True}],
        "service": {"port": 9000, "annotations": {"example.com/internal": "true"}},
        "resources": {"requests": {"cpu": "100m", "memory": "200Mi"}, "limits": {"memory": "400Mi"}},
        "terminationGracePeriodSeconds": 60,
    },
}


def with_namespaces(values: Mapping[str, Any], mapping: Mapping[str, str]) -> dict[str, Any]:
    """``values`` with the placeholder namespaces replaced (deep copy through JSON)."""
    text = json.dumps(values)
    for placeholder, real in mapping.items():
        text = text.replace(json.dumps(placeholder), json.dumps(real))
    result: dict[str, Any] = json.loads(text)
    return result


# ---------------------------------------------------------------------------------------------------
# Expected RBAC: the operator's permissions, as (apiGroup, resource, verb) triples. Any widening of the
# chart's rules (a verb, a resource, a wildcard) makes the comparison fail.

OPERATOR_PERMISSIONS: Final = frozenset(
    {
        (GROUP, PLURAL, "get"),
        (GROUP, PLURAL, "list"),
        (GROUP, PLURAL, "watch"),
        (GROUP, f"{PLURAL}/status", "patch"),
        ("", "events", "create"),
        ("", "events", "patch"),
    }
)
SECRET_PERMISSIONS: Final = frozenset({("", "secrets", "get")})
#: management.enabled: the resources' metadata (the create-attempt annotations and the finalizer).
MANAGEMENT_PERMISSIONS: Final = frozenset({(GROUP, PLURAL, "patch")})
#: metrics.secure (the default): who a scraper is, and whether it may get /metrics.
METRICS_AUTH_PERMISSIONS: Final = frozenset(
    {("authentication.k8s.io", "tokenreviews", "create"), ("authorization.k8s.io", "subjectaccessreviews", "create")}
)
VIEW_PERMISSIONS: Final = frozenset({(GROUP, PLURAL, verb) for verb in ("get", "list", "watch")})
EDIT_PERMISSIONS: Final = frozenset({(GROUP, PLURAL, verb) for verb in ("create", "update", "patch", "delete")})


def permissions(rules: Iterable[Mapping[str, Any]]) -> frozenset[tuple[str, str, str]]:
    """Flatten RBAC rules into triples. Rules the chart must never use fail loudly instead."""
    triples: set[tuple[str, str, str]] = set()
    for rule in rules:
        unexpected = set(rule) - {"apiGroups", "resources", "verbs"}
        assert not unexpected, f"rule uses {sorted(unexpected)} (resourceNames/nonResourceURLs?): {rule}"
        for part in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[part], f"wildcard in {part}: {rule}"
        triples.update((g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"])
    return frozenset(triples)


# ---------------------------------------------------------------------------------------------------
# Rendered manifests


@dataclass(frozen=True)
class Manifests:
    """The objects one ``helm template`` produced, with small lookups for assertions."""

    objects: tuple[dict[str, Any], ...]
    text: str = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> Manifests:
        objects = tuple(doc for doc in yaml.safe_load_all(text) if doc)
        return cls(objects, text)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [obj for obj in self.of_kind(kind) if name is None or obj["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, got {[o['metadata']['name'] for o in found]}"
        return found[0]

    def kinds(self) -> list[str]:
        return sorted(obj["kind"] for obj in self.objects)

    def hooks(self) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if "helm.sh/hook" in obj["metadata"].get("annotations", {})]

    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    def pod_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.deployment()["spec"]["template"]["spec"]
        return spec

    def container(self) -> dict[str, Any]:
        containers = self.pod_spec()["containers"]
        assert [c["name"] for c in containers] == ["operator"]
        container: dict[str, Any] = containers[0]
        return container

    def env(self) -> dict[str, dict[str, Any]]:
        return {item["name"]: item for item in self.container().get("env", [])}


# ---------------------------------------------------------------------------------------------------
# Helm


@dataclass(frozen=True)
class Helm:
    """The pinned helm binary with private cache/config/data homes; never touches a cluster."""

    binary: Path
    home: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_") and k != "KUBECONFIG"}
        env.update(
            HELM_CACHE_HOME=str(self.home / "cache"),
            HELM_CONFIG_HOME=str(self.home / "config"),
            HELM_DATA_HOME=str(self.home / "data"),
            # No cluster: anything that tries to reach one fails fast instead of finding ~/.kube/config.
            KUBECONFIG=str(self.home / "no-kubeconfig"),
        )
        return env

    def run(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=60,
            check=False,
        )

    def template(
        self,
        values: Mapping[str, Any] | None = None,
        *extra: str,
        chart: Path = CHART_DIR,
        release: str = RELEASE,
        namespace: str = RELEASE_NAMESPACE,
    ) -> subprocess.CompletedProcess[str]:
        """``helm template``; values go in through stdin as one values file (JSON is valid YAML)."""
        return self.run(
            "template", release, str(chart), "--namespace", namespace, "--kube-version", KUBE_VERSION,
            *values_args(values), *extra, input=json.dumps(values or {}),
        )  # fmt: skip

    def render(self, values: Mapping[str, Any] | None = None, *extra: str, **kwargs: Any) -> Manifests:
        proc = self.template(values, *extra, **kwargs)
        assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
        return Manifests.parse(proc.stdout)

    def lint(self, values: Mapping[str, Any] | None = None, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run(
            "lint", str(CHART_DIR), "--strict", "--kube-version", KUBE_VERSION, "--namespace", RELEASE_NAMESPACE,
            *values_args(values), *extra, input=json.dumps(values or {}),
        )  # fmt: skip


def values_args(values: Mapping[str, Any] | None) -> list[str]:
    return ["--values", "-"] if values else []


def walk(node: Any, path: Sequence[str | int] = ()) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every (path, value) in a nested structure, containers included."""
    yield tuple(path), node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*path, index))
