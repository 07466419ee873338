"""Static chart tests: `helm lint --strict` and `helm template` for every documented combination of values,
with assertions on the rendered objects. No cluster; each helm call takes well under a second."""

from __future__ import annotations

import base64
import functools
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.chart import (
    CHART_DIR,
    COMBINATIONS,
    CRD_NAME,
    CRD_SOURCE,
    EDIT_PERMISSIONS,
    FULLNAME,
    MANAGEMENT_PERMISSIONS,
    METRICS_AUTH_PERMISSIONS,
    OPERATOR_PERMISSIONS,
    RELEASE,
    RELEASE_NAMESPACE,
    SECRET_PERMISSIONS,
    SENTINEL_TOKEN,
    VIEW_PERMISSIONS,
    WATCH_A,
    WATCH_B,
    Helm,
    Manifests,
    permissions,
    walk,
)

CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
STANDARD_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
}


@pytest.fixture(scope="module")
def render(helm: Helm) -> Any:
    """Render each combination once per module."""
    return functools.cache(lambda name: helm.render(COMBINATIONS[name]))


# ---------------------------------------------------------------------------------------------------
# lint and render every combination


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_lint_strict_passes(helm: Helm, combination: str) -> None:
    proc = helm.lint(COMBINATIONS[combination])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_every_object_is_labelled_and_placed(render: Any, combination: str) -> None:
    manifests: Manifests = render(combination)
    assert manifests.objects
    watched = set(COMBINATIONS[combination].get("watchNamespaces", []))
    for obj in manifests.objects:
        meta = obj["metadata"]
        where = f"{obj['kind']}/{meta['name']}"
        assert set(meta["labels"]) >= STANDARD_LABELS, where
        assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE, where
        assert len(meta["name"]) <= 63 or obj["kind"] == "CustomResourceDefinition", where
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in meta, where
        elif obj["kind"] in ("Role", "RoleBinding") and meta["name"].endswith("-leader-election"):
            assert meta["namespace"] == RELEASE_NAMESPACE, where  # the Lease lives with the operator
        elif obj["kind"] in ("Role", "RoleBinding"):
            assert meta["namespace"] in watched, where
        else:
            assert meta["namespace"] == RELEASE_NAMESPACE, where


def test_default_renders_the_expected_objects(render: Any) -> None:
    assert render("default").kinds() == sorted(
        [
            "ClusterRole",  # operator
            "ClusterRole",  # -view
            "ClusterRole",  # -edit
            "ClusterRole",  # -metrics-reader (metrics.secure)
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "Deployment",
            "Pod",  # helm test hook
            "Service",
            "ServiceAccount",
        ]
    )


def test_bring_your_own_renders_only_the_operator(render: Any) -> None:
    manifests: Manifests = render("bring-your-own")
    assert manifests.kinds() == ["CustomResourceDefinition", "Deployment"]
    pod = manifests.pod_spec()
    assert pod["serviceAccountName"] == "operator-sa"
    assert manifests.deployment()["spec"]["replicas"] == 0
    assert "livenessProbe" not in manifests.container()


# ---------------------------------------------------------------------------------------------------
# the Deployment


def test_deployment_runs_one_standalone_operator_with_liveness_and_readiness_probes(render: Any) -> None:
    manifests: Manifests = render("default")
    spec = manifests.deployment()["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert spec["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "northflank-llm-operator",
        "app.kubernetes.io/instance": RELEASE,
    }
    container = manifests.container()
    assert container["image"] == "ghcr.io/northflank-llm-operator/northflank-llm-operator:0.1.0"
    assert "command" not in container  # the image's ENTRYPOINT is northflank-llm-operator
    assert container["args"] == [
        "run",
        "--standalone",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--metrics-bind-address=:8081",
        "--metrics-secure",
        "--log-format=json",
        "--all-namespaces",
    ]
    assert container["ports"] == [
        {"name": "healthz", "containerPort": 8080, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 8081, "protocol": "TCP"},
    ]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    # Ready: the watch runs and this replica can lead (tests/chart/test_chart_monitoring.py has the rest).
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics", "scheme": "HTTPS"}
    assert "startupProbe" not in container
    # Sized for 10,000 resources with headroom (README "Sizing"; values.yaml says how).
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "768Mi"},
    }
    assert manifests.pod_spec()["automountServiceAccountToken"] is True
    assert manifests.pod_spec()["serviceAccountName"] == FULLNAME


def test_settings_reach_the_operator_as_environment(render: Any) -> None:
    env = render("everything").env()
    assert {name: item.get("value") for name, item in env.items()} == {
        "NORTHFLANK_API_TOKEN_FILE": "/var/run/secrets/northflank/token",
        "NORTHFLANK_API_BASE_URL": "https://nf.example.com",
        "NORTHFLANK_LLM_OPERATOR_POLL_INTERVAL_SECONDS": "120",
        "NORTHFLANK_LLM_OPERATOR_REQUEST_TIMEOUT_SECONDS": "20",
        "NORTHFLANK_LLM_OPERATOR_ENABLE_MANAGEMENT": "false",
        "NORTHFLANK_LLM_OPERATOR_DEFAULT_TOKEN_NAMESPACES": "platform,ops",
        "NORTHFLANK_LLM_OPERATOR_DEFAULT_TOKEN_DENIED_NAMESPACES": "tenant-a",
        "NORTHFLANK_LLM_OPERATOR_REQUEST_DEADLINE_SECONDS": "45",
        "NORTHFLANK_LLM_OPERATOR_MAX_RESPONSE_BYTES": "8388608",
        "NORTHFLANK_LLM_OPERATOR_STATUS_HEARTBEAT_SECONDS": "900",
        "NORTHFLANK_LLM_OPERATOR_BUDGET_RESERVE_FRACTION": "0.2",
        "NORTHFLANK_LLM_OPERATOR_MAX_CONCURRENT_REQUESTS": "2",
        "NORTHFLANK_LLM_OPERATOR_STALE_AFTER_INTERVALS": "3",
        "NORTHFLANK_LLM_OPERATOR_BATCH_DELAY_SECONDS": "1",
        "NORTHFLANK_LLM_OPERATOR_TRANSITIONAL_SPEEDUP": "4",
        "NORTHFLANK_LLM_OPERATOR_CREDENTIALS_CACHE_SECONDS": "30",
        "NORTHFLANK_LLM_OPERATOR_RESYNC_SECONDS": "300",
        "NORTHFLANK_LLM_OPERATOR_SHUTDOWN_TIMEOUT_SECONDS": "20",
        "NORTHFLANK_LLM_OPERATOR_METRICS_PER_RESOURCE_SERIES": "false",
        "NORTHFLANK_LLM_OPERATOR_LABEL_SELECTOR": "shard in (a, b), !example.com/legacy",
        "HTTPS_PROXY": "http://proxy.example.com:3128",
    }
    defaults = render("default").env()
    assert defaults["NORTHFLANK_API_BASE_URL"]["value"] == "https://api.northflank.com"
    assert defaults["NORTHFLANK_LLM_OPERATOR_POLL_INTERVAL_SECONDS"]["value"] == "60"
    assert defaults["NORTHFLANK_LLM_OPERATOR_REQUEST_TIMEOUT_SECONDS"]["value"] == "10"
    assert defaults["NORTHFLANK_LLM_OPERATOR_STATUS_HEARTBEAT_SECONDS"]["value"] == "0"
    assert defaults["NORTHFLANK_LLM_OPERATOR_BUDGET_RESERVE_FRACTION"]["value"] == "0.1"
    assert defaults["NORTHFLANK_LLM_OPERATOR_MAX_CONCURRENT_REQUESTS"]["value"] == "4"


def test_the_chart_defaults_are_the_operators_defaults_and_every_variable_is_read(
    render: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chart speaks the operator's language: each variable it sets is a setting the operator reads."""
    from northflank_llm_operator.settings import OperatorSettings

    rendered = {name: item["value"] for name, item in render("default").env().items() if "value" in item}
    for name in list(os.environ):
        if name.startswith(("NORTHFLANK_", "NF_")):
            monkeypatch.delenv(name)
    built_in = OperatorSettings().model_dump()
    for name, value in rendered.items():
        monkeypatch.setenv(name, value)
    from_chart = OperatorSettings().model_dump()
    assert from_chart == built_in, "a chart default differs from the operator's own default"
    for name, item in render("everything").env().items():
        if "value" in item:
            monkeypatch.setenv(name, item["value"])
    changed = {k for k, v in OperatorSettings().model_dump().items() if v != built_in[k]}
    assert changed == {
        "api_base_url",
        "poll_interval_seconds",
        "request_timeout_seconds",
        "request_deadline_seconds",
        "max_response_bytes",
        "api_token_file",
        "default_token_namespaces",
        "default_token_denied_namespaces",
        "status_heartbeat_seconds",
        "budget_reserve_fraction",
        "max_concurrent_requests",
        "label_selector",
        "metrics_per_resource_series",
    }, "a variable the chart sets is not read by the operator"


def test_label_selector_is_passed_only_when_set(render: Any, helm: Helm) -> None:
    assert "NORTHFLANK_LLM_OPERATOR_LABEL_SELECTOR" not in render("default").env()
    assert "NORTHFLANK_LLM_OPERATOR_LABEL_SELECTOR" not in helm.render({"labelSelector": ""}).env()
    assert render("shard").env()["NORTHFLANK_LLM_OPERATOR_LABEL_SELECTOR"] == {
        "name": "NORTHFLANK_LLM_OPERATOR_LABEL_SELECTOR",
        "value": "shard=a",
    }
    # The README's example: --set splits on the first '=' only, and a comma needs a backslash.
    for set_arg, expected in (
        ("labelSelector=shard=b", "shard=b"),
        ("labelSelector=shard in (a\\,b)", "shard in (a,b)"),
    ):
        env = helm.render(None, "--set", set_arg).env()
        assert env["NORTHFLANK_LLM_OPERATOR_LABEL_SELECTOR"]["value"] == expected


def test_the_operator_accepts_the_selectors_the_chart_passes(render: Any) -> None:
    """What the chart renders is what the operator parses (a bad selector would stop it at start-up)."""
    from northflank_llm_operator.selector import parse

    assert parse(render("shard").env()["NORTHFLANK_LLM_OPERATOR_LABEL_SELECTOR"]["value"]).matches({"shard": "a"})
    everything = parse(render("everything").env()["NORTHFLANK_LLM_OPERATOR_LABEL_SELECTOR"]["value"])
    assert everything.matches({"shard": "b"})
    assert not everything.matches({"shard": "b", "example.com/legacy": "true"})


def test_a_shard_watches_its_namespaces_and_leaves_the_crd_to_another_release(render: Any) -> None:
    manifests: Manifests = render("shard")
    assert manifests.container()["args"][-1] == f"--namespace={WATCH_A}"
    assert not manifests.of_kind("CustomResourceDefinition")
    # Cluster-wide only the reviews metrics.secure needs.
    assert [b["roleRef"]["name"] for b in manifests.of_kind("ClusterRoleBinding")] == [f"{FULLNAME}-metrics-auth"]
    assert [role["metadata"]["namespace"] for role in manifests.of_kind("Role")] == [WATCH_A]


def test_everything_reaches_the_pod(render: Any) -> None:
    manifests: Manifests = render("everything")
    values = COMBINATIONS["everything"]
    pod = manifests.pod_spec()
    container = manifests.container()
    assert container["image"] == f"registry.example.com/mirror/northflank-llm-operator:0.1.0-rc.1@sha256:{'a' * 64}"
    assert container["imagePullPolicy"] == "Always"
    assert container["args"][4:] == [
        "--metrics-secure", "--log-format=plain", "--verbose", "--all-namespaces", "--log-refkey=x"
    ]  # fmt: skip
    assert pod["imagePullSecrets"] == values["imagePullSecrets"]
    for key in ("priorityClassName", "nodeSelector", "tolerations", "affinity", "topologySpreadConstraints"):
        assert pod[key] == values[key], key
    assert pod["terminationGracePeriodSeconds"] == 60
    assert {"name": "ca-bundle", "configMap": {"name": "corporate-ca"}} in pod["volumes"]
    assert container["volumeMounts"][2:] == values["extraVolumeMounts"]  # after /tmp and the token file
    # Helm merges user maps into the defaults: the default CPU limit stays unless set to null.
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "200Mi"},
        "limits": {"cpu": "1", "memory": "400Mi"},
    }
    template_meta = manifests.deployment()["spec"]["template"]["metadata"]
    assert template_meta["annotations"] == {"example.com/scrape": "false"}
    assert template_meta["labels"]["example.com/tier"] == "control"
    assert manifests.one("ServiceAccount")["metadata"]["annotations"] == {"example.com/role": "reader"}
    service = manifests.one("Service")
    assert service["spec"]["ports"][0]["port"] == 9000
    assert service["metadata"]["annotations"] == {"example.com/internal": "true"}
    assert all(
        obj["metadata"]["name"].startswith("nf-operator")
        for obj in manifests.objects
        if obj["kind"] != "CustomResourceDefinition"
    )
    for obj in manifests.objects:
        assert obj["metadata"]["labels"]["team"] == "platform", obj["kind"]


def test_labels_cannot_break_the_selector(helm: Helm) -> None:
    """commonLabels / podLabels may add labels but never replace the selector labels."""
    hostile = {"app.kubernetes.io/name": "other", "app.kubernetes.io/instance": "other"}
    manifests = helm.render({"commonLabels": hostile, "podLabels": hostile})
    deployment = manifests.deployment()
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/name": "northflank-llm-operator", "app.kubernetes.io/instance": RELEASE}
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert manifests.one("Service")["spec"]["selector"] == selector


def test_long_release_names_are_truncated_to_63_characters(helm: Helm) -> None:
    release = "a-very-long-release-name-that-goes-on-and-on-and-on-x"  # Helm's maximum: 53 characters
    assert len(release) == 53
    manifests = helm.render(None, release=release)
    names = {obj["kind"] + "/" + obj["metadata"]["name"] for obj in manifests.objects}
    for name in names:
        assert len(name.split("/", 1)[1]) <= 63, name
    view = [n for n in names if n.startswith("ClusterRole/") and n.endswith("-view")]
    edit = [n for n in names if n.startswith("ClusterRole/") and n.endswith("-edit")]
    assert len(view) == len(edit) == 1  # the suffix survives truncation, so the names stay distinct


def test_tag_defaults_to_app_version_and_digest_pins(helm: Helm) -> None:
    digest = "sha256:" + "0" * 64
    assert helm.render({"image": {"tag": "9.9.9"}}).container()["image"].endswith(":9.9.9")
    pinned = helm.render({"image": {"digest": digest}}).container()["image"]
    assert pinned == f"ghcr.io/northflank-llm-operator/northflank-llm-operator:0.1.0@{digest}"


def test_log_levels_map_to_cli_flags(helm: Helm) -> None:
    def flags(level: str) -> list[str]:
        args = helm.render({"operator": {"logLevel": level}}).container()["args"]
        return [arg for arg in args if arg in ("--verbose", "--quiet", "--debug")]

    assert flags("info") == []
    assert flags("debug") == ["--verbose"]
    assert flags("warning") == ["--quiet"]


# ---------------------------------------------------------------------------------------------------
# security


@pytest.mark.parametrize("combination", ["default", "everything", "bring-your-own"])
def test_pod_meets_the_restricted_pod_security_standard(render: Any, combination: str) -> None:
    manifests: Manifests = render(combination)
    pod = manifests.pod_spec()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork")
    assert not pod.get("hostPID")
    assert not pod.get("hostIPC")
    context = manifests.container()["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 65532
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not context.get("privileged")
    # The read-only root filesystem needs a writable /tmp.
    tmp = next(volume for volume in pod["volumes"] if volume["name"] == "tmp")
    assert "emptyDir" in tmp
    assert {"name": "tmp", "mountPath": "/tmp"} in manifests.container()["volumeMounts"]  # noqa: S108 -- the container's /tmp mount


def test_test_pod_is_a_small_restricted_hook(render: Any) -> None:
    (pod,) = render("default").hooks()
    assert pod["kind"] == "Pod"
    annotations = pod["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "test"
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    (container,) = spec["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["limits"]["memory"] == "64Mi"
    assert container["command"][-1] == f"http://{FULLNAME}.{RELEASE_NAMESPACE}.svc:8080/healthz"
    service = render("default").one("Service")
    assert service["spec"]["ports"][0] == {"name": "healthz", "port": 8080, "targetPort": "healthz", "protocol": "TCP"}


# ---------------------------------------------------------------------------------------------------
# the API token


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_no_token_literal_and_no_configmap(render: Any, combination: str) -> None:
    manifests: Manifests = render(combination)
    # Settings reach the operator as environment variables; the only ConfigMap is the Grafana dashboard.
    assert [cm["metadata"]["name"] for cm in manifests.of_kind("ConfigMap")] in ([], [f"{FULLNAME}-dashboard"])
    for name, item in manifests.env().items():
        if ("TOKEN" in name or "SECRET" in name) and "NAMESPACES" not in name:
            # The token only ever arrives as a mounted Secret file, never as a value.
            assert item == {"name": "NORTHFLANK_API_TOKEN_FILE", "value": "/var/run/secrets/northflank/token"}, item
    encoded = base64.b64encode(SENTINEL_TOKEN.encode()).decode()
    for obj in manifests.objects:
        text = json.dumps(obj)
        assert SENTINEL_TOKEN not in text, f"token in clear text in {obj['kind']}"
        if obj["kind"] != "Secret":
            assert encoded not in text, f"token in {obj['kind']}"


def test_created_secret_holds_the_token_and_the_pod_references_it(render: Any) -> None:
    manifests: Manifests = render("created-secret")
    secret = manifests.one("Secret")
    name = f"{FULLNAME}-api-token"
    assert secret["metadata"]["name"] == name
    assert secret["type"] == "Opaque"
    assert secret["data"] == {"token": base64.b64encode(SENTINEL_TOKEN.encode()).decode()}
    assert_token_file_mounted(manifests, name, "token")
    # The mounted file is re-read when it changes; a chart-managed token also rolls the pod, so that
    # `helm upgrade` takes effect at once.
    checksum = manifests.deployment()["spec"]["template"]["metadata"]["annotations"]["checksum/api-token"]
    assert len(checksum) == 64


def assert_token_file_mounted(manifests: Manifests, secret: str, key: str) -> None:
    env = manifests.env()
    assert "NORTHFLANK_API_TOKEN" not in env
    assert env["NORTHFLANK_API_TOKEN_FILE"]["value"] == "/var/run/secrets/northflank/token"
    volume = next(v for v in manifests.pod_spec()["volumes"] if v["name"] == "api-token")
    assert volume["secret"] == {"secretName": secret, "defaultMode": 0o400, "items": [{"key": key, "path": "token"}]}
    container = manifests.pod_spec()["containers"][0]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "api-token")
    assert mount == {"name": "api-token", "mountPath": "/var/run/secrets/northflank", "readOnly": True}


def test_existing_secret_is_referenced_and_not_created(render: Any) -> None:
    manifests: Manifests = render("existing-secret")
    assert not manifests.of_kind("Secret")
    assert_token_file_mounted(manifests, "northflank-api-token", "api-token")
    assert "annotations" not in manifests.deployment()["spec"]["template"]["metadata"]


def test_without_any_token_the_operator_gets_no_token_variable(render: Any) -> None:
    manifests: Manifests = render("default")
    assert not manifests.of_kind("Secret")
    assert "NORTHFLANK_API_TOKEN" not in manifests.env()
    assert "NORTHFLANK_API_TOKEN_FILE" not in manifests.env()
    assert not [v for v in manifests.pod_spec()["volumes"] if v["name"] == "api-token"]


def test_tenancy_values_reach_the_operator(helm: Helm) -> None:
    manifests: Manifests = helm.render(
        {"northflank": {"defaultTokenNamespaces": ["platform", "ops"], "defaultTokenDeniedNamespaces": ["tenant-a"]}}
    )
    env = manifests.env()
    assert env["NORTHFLANK_LLM_OPERATOR_DEFAULT_TOKEN_NAMESPACES"]["value"] == "platform,ops"
    assert env["NORTHFLANK_LLM_OPERATOR_DEFAULT_TOKEN_DENIED_NAMESPACES"]["value"] == "tenant-a"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"northflank": {"apiToken": "x", "existingSecret": "y"}},
            "northflank.apiToken and northflank.existingSecret are mutually exclusive",
        ),
        ({"rbac": {"secretAccess": False}}, "rbac.secretAccess=false needs an operator-wide token"),
    ],
)
def test_contradictory_values_fail_with_a_message(helm: Helm, values: dict[str, Any], message: str) -> None:
    proc = helm.template(values)
    assert proc.returncode != 0
    assert message in proc.stderr


# ---------------------------------------------------------------------------------------------------
# RBAC


def _bound_operator_rules(manifests: Manifests, role_kind: str, binding_kind: str) -> dict[str | None, Any]:
    """{namespace: rules} of the roles bound to the operator's ServiceAccount, checking the bindings."""
    result: dict[str | None, Any] = {}
    roles = {(r["metadata"].get("namespace"), r["metadata"]["name"]): r for r in manifests.of_kind(role_kind)}
    for binding in manifests.of_kind(binding_kind):
        namespace = binding["metadata"].get("namespace")
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": RELEASE_NAMESPACE}]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": FULLNAME}
        result[namespace] = roles[(namespace, FULLNAME)]["rules"]
    return result


@pytest.mark.parametrize(
    ("combination", "secrets"),
    [("default", True), ("secret-access-off", False), ("existing-secret", True), ("crds-disabled", True)],
)
def test_cluster_scope_rbac_is_exactly_what_the_operator_needs(render: Any, combination: str, secrets: bool) -> None:
    manifests: Manifests = render(combination)
    assert not manifests.of_kind("Role")
    assert not manifests.of_kind("RoleBinding")
    bound = _bound_operator_rules(manifests, "ClusterRole", "ClusterRoleBinding")
    assert list(bound) == [None]
    expected = OPERATOR_PERMISSIONS | METRICS_AUTH_PERMISSIONS | (SECRET_PERMISSIONS if secrets else frozenset())
    assert permissions(bound[None]) == expected
    assert manifests.container()["args"][-1] == "--all-namespaces"


def test_plain_http_metrics_need_no_reviews(helm: Helm) -> None:
    manifests = helm.render({"metrics": {"secure": False}})
    bound = _bound_operator_rules(manifests, "ClusterRole", "ClusterRoleBinding")
    assert permissions(bound[None]) == OPERATOR_PERMISSIONS | SECRET_PERMISSIONS
    assert not [r for r in manifests.of_kind("ClusterRole") if "metrics" in r["metadata"]["name"]]


@pytest.mark.parametrize(
    ("combination", "namespaces", "secrets"),
    [("watch-namespaces", [WATCH_A, WATCH_B], True), ("namespaced-secret-access-off", [WATCH_A], False)],
)
def test_namespaced_scope_rbac_is_a_role_per_watched_namespace(
    render: Any, combination: str, namespaces: list[str], secrets: bool
) -> None:
    manifests: Manifests = render(combination)
    # Cluster-wide for the operator only the reviews of metrics.secure; the rest are user-facing roles.
    assert sorted(r["metadata"]["name"] for r in manifests.of_kind("ClusterRole")) == [
        f"{FULLNAME}-edit",
        f"{FULLNAME}-metrics-auth",
        f"{FULLNAME}-metrics-reader",
        f"{FULLNAME}-view",
    ]
    assert permissions(manifests.one("ClusterRole", f"{FULLNAME}-metrics-auth")["rules"]) == METRICS_AUTH_PERMISSIONS
    [binding] = manifests.of_kind("ClusterRoleBinding")
    assert binding["roleRef"]["name"] == f"{FULLNAME}-metrics-auth"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": RELEASE_NAMESPACE}]
    bound = _bound_operator_rules(manifests, "Role", "RoleBinding")
    assert sorted(str(namespace) for namespace in bound) == sorted(namespaces)
    expected = OPERATOR_PERMISSIONS | (SECRET_PERMISSIONS if secrets else frozenset())
    for rules in bound.values():
        assert permissions(rules) == expected
    args = manifests.container()["args"]
    assert "--all-namespaces" not in args
    assert [arg for arg in args if arg.startswith("--namespace")] == [f"--namespace={ns}" for ns in namespaces]


def test_aggregated_roles_give_users_read_and_write_but_not_status(render: Any) -> None:
    manifests: Manifests = render("default")
    view = manifests.one("ClusterRole", f"{FULLNAME}-view")
    edit = manifests.one("ClusterRole", f"{FULLNAME}-edit")
    assert permissions(view["rules"]) == VIEW_PERMISSIONS
    assert permissions(edit["rules"]) == EDIT_PERMISSIONS
    aggregate = "rbac.authorization.k8s.io/aggregate-to-"
    assert {k: v for k, v in view["metadata"]["labels"].items() if k.startswith(aggregate)} == {
        f"{aggregate}view": "true",
        f"{aggregate}edit": "true",
        f"{aggregate}admin": "true",
    }
    assert {k: v for k, v in edit["metadata"]["labels"].items() if k.startswith(aggregate)} == {
        f"{aggregate}edit": "true",
        f"{aggregate}admin": "true",
    }
    off = render("bring-your-own")
    assert not off.of_kind("ClusterRole")


def test_rbac_helper_rejects_widened_rules() -> None:
    """The comparison the RBAC tests rely on notices every way a rule could be widened."""
    base = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
    assert permissions([base]) == SECRET_PERMISSIONS
    assert permissions([{**base, "verbs": ["get", "list"]}]) != SECRET_PERMISSIONS
    for widened in ({**base, "verbs": ["*"]}, {**base, "resources": ["*"]}, {**base, "resourceNames": ["x"]}):
        with pytest.raises(AssertionError):
            permissions([widened])


# ---------------------------------------------------------------------------------------------------
# the CRD


def _source_crd() -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(CRD_SOURCE.read_text())
    return crd


def test_crd_is_rendered_from_the_single_source_with_only_metadata_added(render: Any) -> None:
    rendered = render("default").one("CustomResourceDefinition", CRD_NAME)
    source = _source_crd()
    assert rendered["spec"] == source["spec"]
    assert {k: v for k, v in rendered.items() if k != "metadata"} == {
        k: v for k, v in source.items() if k != "metadata"
    }
    assert rendered["metadata"]["name"] == CRD_NAME
    assert source["metadata"]["labels"].items() <= rendered["metadata"]["labels"].items()
    assert set(rendered["metadata"]) == {"name", "labels", "annotations"}
    assert rendered["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_crd_keep_and_enabled_toggles(render: Any) -> None:
    not_kept = render("crds-not-kept").one("CustomResourceDefinition", CRD_NAME)
    assert "helm.sh/resource-policy" not in not_kept["metadata"].get("annotations", {})
    assert not render("crds-disabled").of_kind("CustomResourceDefinition")


def test_chart_has_no_crds_directory() -> None:
    """Helm would install a crds/ directory before the templates and then refuse the templated CRD."""
    assert not (CHART_DIR / "crds").exists()


def test_kube_version_constraint_is_enforced(helm: Helm) -> None:
    proc = helm.run("template", RELEASE, str(CHART_DIR), "--kube-version", "1.27.9")
    assert proc.returncode != 0
    assert ">=1.28.0-0" in proc.stderr


def test_no_value_renders_a_nil_or_empty_key(render: Any) -> None:
    """Catches template slips such as `annotations:` rendered with nothing under it."""
    for name in sorted(COMBINATIONS):
        for obj in render(name).objects:
            for path, value in walk(obj):
                if path and path[0] == "spec" and obj["kind"] == "CustomResourceDefinition":
                    continue  # `subresources.status: {}` is meaningful there
                assert value is not None, f"{name}: {obj['kind']} {'.'.join(map(str, path))} is null"


def test_packaged_chart_renders_the_crd_and_leaves_out_sources(helm: Helm, tmp_path: Path) -> None:
    """`helm package` keeps files/crds/ (read with .Files.Get) and drops the README template."""
    proc = helm.run("package", str(CHART_DIR), "--destination", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    (archive,) = tmp_path.glob("northflank-llm-operator-*.tgz")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert f"northflank-llm-operator/files/crds/{CRD_SOURCE.name}" in names
    assert "northflank-llm-operator/values.schema.json" in names
    assert "northflank-llm-operator/README.md" in names
    assert "northflank-llm-operator/README.md.gotmpl" not in names
    packaged = helm.render(None, chart=archive)
    assert packaged.one("CustomResourceDefinition", CRD_NAME)["spec"] == _source_crd()["spec"]


# ---------------------------------------------------------------------------------------------------
# management


def test_management_is_off_by_default_and_adds_nothing(render: Any) -> None:
    manifests: Manifests = render("default")
    env = {e["name"]: e.get("value") for e in manifests.container()["env"]}
    assert env["NORTHFLANK_LLM_OPERATOR_ENABLE_MANAGEMENT"] == "false"
    assert not [r for r in manifests.of_kind("ClusterRole") if r["metadata"]["name"].endswith("-management")]


@pytest.mark.parametrize(("combination", "kind", "binding"), [
    ("management", "ClusterRole", "ClusterRoleBinding"), ("namespaced-management", "Role", "RoleBinding"),
])  # fmt: skip
def test_management_passes_the_flag_and_may_patch_metadata_and_read_only_its_crd(
    render: Any, combination: str, kind: str, binding: str
) -> None:
    assert {b["roleRef"]["name"] for b in render(combination).of_kind(binding)} >= {FULLNAME}
    manifests: Manifests = render(combination)
    env = {e["name"]: e.get("value") for e in manifests.container()["env"]}
    assert env["NORTHFLANK_LLM_OPERATOR_ENABLE_MANAGEMENT"] == "true"
    operator_roles = [r for r in manifests.of_kind(kind) if r["metadata"]["name"] == FULLNAME]
    assert operator_roles
    for role in operator_roles:
        extra = permissions(role["rules"]) - OPERATOR_PERMISSIONS - SECRET_PERMISSIONS - METRICS_AUTH_PERMISSIONS
        assert extra == MANAGEMENT_PERMISSIONS
    role = manifests.one("ClusterRole", f"{FULLNAME}-management")
    assert role["rules"] == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "resourceNames": [CRD_NAME],
            "verbs": ["get"],
        }
    ]
    bound = manifests.one("ClusterRoleBinding", f"{FULLNAME}-management")
    assert bound["roleRef"]["name"] == f"{FULLNAME}-management"
    assert bound["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": RELEASE_NAMESPACE}]
