"""The chart's monitoring and high-availability pieces: metrics port and probe, ServiceMonitor,
PrometheusRule (checked and unit-tested with the pinned promtool), the Grafana dashboard ConfigMap,
leader election flags, RollingUpdate, PodDisruptionBudget and Lease RBAC."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from northflank_llm_operator.metrics import PER_RESOURCE_FAMILIES, OperatorMetrics
from tests.chart.chart import CHART_DIR, FULLNAME, RELEASE_NAMESPACE, Helm, Manifests

PROMTOOL_TESTS = Path(__file__).parent / "promtool" / "alerts-test.yaml"
PROMTOOL_AGGREGATE_TESTS = Path(__file__).parent / "promtool" / "alerts-aggregate-test.yaml"
DASHBOARD = CHART_DIR / "files" / "dashboards" / "northflank-llm-operator.json"
MONITORING = {"metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True},
                          "dashboard": {"enabled": True}}}  # fmt: skip
HA = {"replicaCount": 2}


def test_metrics_are_served_and_probed_by_default(helm: Helm) -> None:
    manifests = helm.render(None)
    container = manifests.container()
    assert "--metrics-bind-address=:8081" in container["args"]
    assert "--metrics-secure" in container["args"], "HTTPS with TokenReview + SubjectAccessReview by default"
    assert {"name": "metrics", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics", "scheme": "HTTPS"}
    ports = {port["name"]: port for port in manifests.one("Service")["spec"]["ports"]}
    assert ports["metrics"]["targetPort"] == "metrics"
    # Monitoring objects are opt-in: their CRDs may not be installed.
    for kind in ("ServiceMonitor", "PrometheusRule", "ConfigMap", "PodDisruptionBudget", "Role"):
        assert not manifests.of_kind(kind), kind


def test_metrics_off_removes_port_probe_and_flag(helm: Helm) -> None:
    manifests = helm.render({"metrics": {"enabled": False}})
    container = manifests.container()
    assert not [arg for arg in container["args"] if arg.startswith("--metrics")]
    assert "readinessProbe" not in container
    assert [port["name"] for port in manifests.one("Service")["spec"]["ports"]] == ["healthz"]


def test_service_monitor_scrapes_the_metrics_port_of_this_release(helm: Helm) -> None:
    monitor_values = {"enabled": True, "labels": {"release": "kube-prometheus"}}
    manifests = helm.render({"metrics": {"serviceMonitor": monitor_values}})
    monitor = manifests.one("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert monitor["spec"]["selector"]["matchLabels"] == manifests.one("Service")["spec"]["selector"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [RELEASE_NAMESPACE]}
    assert monitor["spec"]["endpoints"] == [{
        "port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s", "scheme": "https",
        "bearerTokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token",
        "tlsConfig": {"insecureSkipVerify": True},
    }]  # fmt: skip


def test_secure_metrics_mount_a_given_certificate(helm: Helm) -> None:
    manifests = helm.render({"metrics": {"certSecret": "metrics-tls"}})
    reader = next(r for r in manifests.of_kind("ClusterRole") if r["metadata"]["name"].endswith("-metrics-reader"))
    assert reader["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
    container = manifests.container()
    assert "--metrics-cert-dir=/var/run/secrets/northflank-llm-operator/metrics-tls" in container["args"]
    volumes = {v["name"]: v for v in manifests.one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["metrics-tls"]["secret"]["secretName"] == "metrics-tls"


def test_plain_http_metrics_is_an_explicit_choice(helm: Helm) -> None:
    manifests = helm.render({"metrics": {"secure": False, "serviceMonitor": {"enabled": True}}})
    container = manifests.container()
    assert "--no-metrics-secure" in container["args"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert not [r for r in manifests.of_kind("ClusterRole") if "metrics" in r["metadata"]["name"]]
    assert "scheme" not in manifests.one("ServiceMonitor")["spec"]["endpoints"][0]


def test_service_monitor_without_a_service_fails_with_a_message(helm: Helm) -> None:
    proc = helm.template({"service": {"enabled": False}, "metrics": {"serviceMonitor": {"enabled": True}}})
    assert proc.returncode != 0
    assert "metrics.serviceMonitor.enabled needs" in proc.stderr


def exported_metric_names() -> set[str]:
    """Every family the operator exports (with its _total/_bucket/... sample names)."""
    metrics = OperatorMetrics(leader_election_id="x")
    names = set()
    for family in metrics.registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    names.update(PER_RESOURCE_FAMILIES)  # written as text at scrape time, not through the registry
    # Families whose samples only appear once something happened.
    names.update({
        "northflank_api_requests_total", "northflank_api_request_duration_seconds_bucket",
        "llmmodeldeployment_status_writes_total",
    })  # fmt: skip
    return names


def metric_names_in(expression: str) -> set[str]:
    functions = {"min", "max", "sum", "by", "increase", "rate", "absent", "histogram_quantile", "or", "le",
                 "label_values", "on", "group_left"}  # fmt: skip
    words = set(re.findall(r"\b([a-z_][a-z0-9_]*)\s*[{(\[]", expression))
    return {w for w in words if w not in functions and ("_" in w)}


def test_dashboard_ships_as_a_configmap_and_only_uses_exported_metrics(helm: Helm) -> None:
    manifests = helm.render(MONITORING)
    configmap = manifests.one("ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(configmap["data"]["northflank-llm-operator.json"])
    assert dashboard == json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "northflank-llm-operator"
    known = exported_metric_names()
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(expressions) >= 10
    used = set().union(*(metric_names_in(e) for e in expressions))
    assert used, expressions
    assert used <= known, used - known


def rules_of(manifests: Manifests) -> dict[str, Any]:
    return {"groups": manifests.one("PrometheusRule")["spec"]["groups"]}


def test_alert_rules_use_exported_metrics_and_are_scoped_to_the_release(helm: Helm) -> None:
    rules = rules_of(helm.render(MONITORING))["groups"][0]["rules"]
    assert [rule["alert"] for rule in rules] == [
        "NorthflankBudgetLow", "LLMModelDeploymentStale", "NorthflankCredentialRejected", "LLMOperatorNotLeading",
    ]  # fmt: skip
    known = exported_metric_names()
    for rule in rules:
        assert metric_names_in(rule["expr"]) <= known, rule["alert"]
        assert f'job="{FULLNAME}"' in rule["expr"], rule["alert"]


def promtool_run(promtool: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def write_rules(tmp_path: Path, manifests: Manifests, tests: Path = PROMTOOL_TESTS) -> Path:
    shutil.copy(tests, tmp_path / tests.name)
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rules_of(manifests), sort_keys=False))
    return rules


def test_promtool_checks_the_rules(helm: Helm, promtool: Path, tmp_path: Path) -> None:
    rules = write_rules(tmp_path, helm.render(MONITORING))
    proc = promtool_run(promtool, "check", "rules", str(rules), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 4 rules found" in proc.stdout + proc.stderr


def test_promtool_unit_tests_every_alert(helm: Helm, promtool: Path, tmp_path: Path) -> None:
    write_rules(tmp_path, helm.render(MONITORING))
    proc = promtool_run(promtool, "test", "rules", PROMTOOL_TESTS.name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tested = set(re.findall(r"alertname: (\w+)", PROMTOOL_TESTS.read_text()))
    assert tested == {"NorthflankBudgetLow", "LLMModelDeploymentStale", "NorthflankCredentialRejected",
                      "LLMOperatorNotLeading"}  # fmt: skip


@pytest.mark.parametrize(
    "change",
    [
        {"budgetLowRatio": 0.01},
        {"staleAfterIntervals": 20},
        {"credentialRejectedWindow": "1m"},
        {"notLeadingFor": "30m"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_the_alert_unit_tests_catch_a_changed_rule(
    helm: Helm, promtool: Path, tmp_path: Path, change: dict[str, Any]
) -> None:
    values = {"metrics": {"prometheusRule": {"enabled": True, **change}}}
    write_rules(tmp_path, helm.render(values))
    proc = promtool_run(promtool, "test", "rules", PROMTOOL_TESTS.name, cwd=tmp_path)
    assert proc.returncode != 0, "promtool's unit tests passed against a different rule"


def test_without_per_resource_series_the_stale_alert_counts_stale_resources(
    helm: Helm, promtool: Path, tmp_path: Path
) -> None:
    values = {"metrics": {"perResourceSeries": False, "prometheusRule": {"enabled": True}}}
    manifests = helm.render(values)
    assert manifests.env()["NORTHFLANK_LLM_OPERATOR_METRICS_PER_RESOURCE_SERIES"]["value"] == "false"
    rules = rules_of(manifests)["groups"][0]["rules"]
    (stale,) = [rule for rule in rules if rule["alert"] == "LLMModelDeploymentStale"]
    assert metric_names_in(stale["expr"]) == {"llmmodeldeployment_resources_by_condition"}
    assert metric_names_in(stale["expr"]) <= exported_metric_names()
    write_rules(tmp_path, manifests, PROMTOOL_AGGREGATE_TESTS)
    proc = promtool_run(promtool, "test", "rules", PROMTOOL_AGGREGATE_TESTS.name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The per-resource rule does not pass these tests: they test the aggregate one.
    write_rules(tmp_path, helm.render(MONITORING), PROMTOOL_AGGREGATE_TESTS)
    proc = promtool_run(promtool, "test", "rules", PROMTOOL_AGGREGATE_TESTS.name, cwd=tmp_path)
    assert proc.returncode != 0


# ---------------------------------------------------------------------------------------------------
# high availability


def test_more_than_one_replica_elects_a_leader_and_rolls(helm: Helm) -> None:
    manifests = helm.render(HA)
    deployment = manifests.deployment()["spec"]
    assert deployment["replicas"] == 2
    assert deployment["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    args = manifests.container()["args"]
    assert "--leader-elect" in args
    assert f"--leader-election-id={FULLNAME}" in args
    assert f"--leader-election-namespace={RELEASE_NAMESPACE}" in args
    env = {name: item["value"] for name, item in manifests.env().items() if "value" in item}
    assert env["NORTHFLANK_LLM_OPERATOR_LEADER_ELECTION_LEASE_DURATION_SECONDS"] == "15"
    assert env["NORTHFLANK_LLM_OPERATOR_LEADER_ELECTION_RENEW_DEADLINE_SECONDS"] == "10"
    assert env["NORTHFLANK_LLM_OPERATOR_LEADER_ELECTION_RETRY_PERIOD_SECONDS"] == "2"
    budget = manifests.one("PodDisruptionBudget")
    assert budget["spec"] == {"maxUnavailable": 1, "selector": deployment["selector"]}


def test_one_replica_recreates_without_election_unless_asked(helm: Helm) -> None:
    single = helm.render(None)
    assert single.deployment()["spec"]["strategy"] == {"type": "Recreate"}
    assert "--leader-elect" not in single.container()["args"]
    asked = helm.render({"leaderElection": {"enabled": True, "leaseName": "my-lease"}})
    assert asked.deployment()["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "--leader-election-id=my-lease" in asked.container()["args"]
    assert not asked.of_kind("PodDisruptionBudget")  # one pod: a PDB would block every drain


def test_lease_rbac_is_limited_to_the_one_lease(helm: Helm) -> None:
    manifests = helm.render(HA)
    role = manifests.one("Role")
    assert role["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert role["rules"] == [
        # create cannot be limited by name (the API server authorizes it before the object exists).
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [FULLNAME],
         "verbs": ["get", "update"]},
    ]  # fmt: skip
    binding = manifests.one("RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["name"] == FULLNAME
    assert not helm.render({**HA, "rbac": {"create": False}, "serviceAccount": {"create": False}}).of_kind("Role")


def test_the_operator_accepts_what_the_chart_passes_for_leader_election(helm: Helm) -> None:
    from northflank_llm_operator.cli import build_parser
    from northflank_llm_operator.settings import OperatorSettings

    manifests = helm.render({**HA, "leaderElection": {"leaseDurationSeconds": 30, "renewDeadlineSeconds": 20,
                                                      "retryPeriodSeconds": 4}})  # fmt: skip
    args = build_parser().parse_args(manifests.container()["args"])
    env = {name: item["value"] for name, item in manifests.env().items() if "value" in item}
    settings = OperatorSettings(
        leader_elect=args.leader_elect,
        leader_election_id=args.leader_election_id,
        leader_election_namespace=args.leader_election_namespace,
        metrics_bind_address=args.metrics_bind_address,
        leader_election_lease_duration_seconds=env["NORTHFLANK_LLM_OPERATOR_LEADER_ELECTION_LEASE_DURATION_SECONDS"],
        leader_election_renew_deadline_seconds=env["NORTHFLANK_LLM_OPERATOR_LEADER_ELECTION_RENEW_DEADLINE_SECONDS"],
        leader_election_retry_period_seconds=env["NORTHFLANK_LLM_OPERATOR_LEADER_ELECTION_RETRY_PERIOD_SECONDS"],
    )
    assert settings.leader_elect is True
    assert settings.leader_election_lease_duration_seconds == 30
    assert settings.metrics_bind_address == ":8081"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"leaderElection": {"renewDeadlineSeconds": 20}}, "renewDeadlineSeconds < leaseDurationSeconds"),
        ({"leaderElection": {"retryPeriodSeconds": 10}}, "retryPeriodSeconds < renewDeadlineSeconds"),
    ],
)
def test_inconsistent_election_timings_fail(helm: Helm, values: dict[str, Any], message: str) -> None:
    proc = helm.template(values)
    assert proc.returncode != 0
    assert message in proc.stderr
