"""The chart against the real kube-apiserver: server-side validation of every combination, the install /
upgrade / uninstall lifecycle with the CRD, the operator's RBAC as the API server decides it, and the
operator running out of cluster with nothing but the chart's ServiceAccount token.

There is no kubelet or controller-manager: Deployments never get pods, so nothing here waits for one
(no ``helm --wait``, no ``helm test``). The CRD is cluster-scoped and shared with the rest of the
session; tests that let the chart own it hand it over the documented way and put it back afterwards.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.chart import (
    CHART_DIR,
    COMBINATIONS,
    CRD_FILE_NAME,
    CRD_NAME,
    CRD_SOURCE,
    GROUP,
    PLURAL,
    WATCH_A,
    WATCH_B,
    with_namespaces,
)
from tests.controlplane.controlplane import BUILD_SCRIPT, ControlPlane, ControlPlaneError, resolve_bin_dir
from tests.controlplane.fixtures import TEST_NAMESPACE_LABEL
from tests.simulator.fixtures import RunningSimulator
from tests.support.cluster import DEFAULT_COLUMNS, WIDE_COLUMNS, parse_table
from tests.support.kube_api import can_i, wait_established
from tests.support.operator_process import free_port, run_operator
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.helm]

CR = f"{PLURAL}.{GROUP}"
E2E_DEADLINE = 30.0


# ---------------------------------------------------------------------------------------------------
# helpers


def _create_namespace(plane: ControlPlane, prefix: str, labels: dict[str, str] | None = None) -> str:
    name = f"{prefix}-{secrets.token_hex(3)}"
    manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {TEST_NAMESPACE_LABEL: "true", **(labels or {})}},
    }
    plane.kubectl("create", "-f", "-", input=json.dumps(manifest))
    return name


def _server_version(plane: ControlPlane) -> str:
    """What the API server reports; `helm template` otherwise assumes its compiled-in default."""
    version: str = json.loads(plane.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    return version


def _release_name() -> str:
    return f"nf{secrets.token_hex(3)}"


def _fullname(release: str) -> str:
    return f"{release}-northflank-llm-operator"


def _service_account(release: str, namespace: str) -> str:
    return f"system:serviceaccount:{namespace}:{_fullname(release)}"


def _exists(plane: ControlPlane, *args: str) -> bool:
    proc = plane.kubectl("get", *args, "-o", "name", check=False)
    if proc.returncode == 0:
        return True
    assert "NotFound" in proc.stderr, proc.stderr
    return False


def _crd(plane: ControlPlane) -> dict[str, Any]:
    crd: dict[str, Any] = json.loads(plane.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    return crd


def _hand_crd_to(plane: ControlPlane, release: str, namespace: str) -> None:
    """Let a release adopt the session's CRD (created by kubectl or an earlier release), as the README says."""
    if not _exists(plane, "crd", CRD_NAME):
        return
    plane.kubectl("label", "crd", CRD_NAME, "--overwrite", "app.kubernetes.io/managed-by=Helm")
    plane.kubectl(
        "annotate", "crd", CRD_NAME, "--overwrite",
        f"meta.helm.sh/release-name={release}", f"meta.helm.sh/release-namespace={namespace}",
    )  # fmt: skip


def _restore_crd(plane: ControlPlane) -> None:
    """Put the CRD back exactly as crds/ has it, whatever a test release did to it."""
    plane.kubectl("replace" if _exists(plane, "crd", CRD_NAME) else "create", "-f", str(CRD_SOURCE))
    wait_established(plane, CRD_NAME)


class Releases:
    """Installs releases for one test and uninstalls whatever is left at the end."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.installed: list[tuple[str, str]] = []

    def install(self, release: str, namespace: str, values: dict[str, Any], chart: Path = CHART_DIR) -> str:
        proc = self.plane.helm(
            "install", release, str(chart), "--namespace", namespace, "--values", "-", input=json.dumps(values)
        )
        self.installed.append((release, namespace))
        return proc.stdout

    def cleanup(self) -> None:
        for release, namespace in self.installed:
            self.plane.helm("uninstall", release, "--namespace", namespace, "--ignore-not-found", check=False)


@pytest.fixture
def releases(control_plane: ControlPlane) -> Iterator[Releases]:
    tracker = Releases(control_plane)
    yield tracker
    tracker.cleanup()


def _can_i(
    plane: ControlPlane, user: str, verb: str, resource: str, namespace: str | None, subresource: str = ""
) -> bool:
    """``kubectl auth can-i`` as the impersonated user, asked with one SelfSubjectAccessReview (no fork)."""
    return can_i(plane, user, verb, resource, namespace, subresource=subresource)


def _assert_access(plane: ControlPlane, user: str, expected: list[tuple[str, str, str | None, bool]]) -> None:
    """Check every (verb, resource, namespace, allowed) and report all mismatches at once."""
    wrong = []
    for verb, resource, namespace, allowed in expected:
        resource_name, _, subresource = resource.partition("/")
        if _can_i(plane, user, verb, resource_name, namespace, subresource) != allowed:
            wrong.append(f"{verb} {resource} in {namespace or 'all namespaces'}: expected {'yes' if allowed else 'no'}")
    assert wrong == [], "\n".join(wrong)


def _denied_everywhere(namespace: str) -> list[tuple[str, str, str | None, bool]]:
    """What the operator must never be able to do, whatever the scope."""
    return [
        ("patch", CR, namespace, False),  # the spec belongs to users
        ("update", CR, namespace, False),
        ("create", CR, namespace, False),
        ("delete", CR, namespace, False),
        ("deletecollection", CR, namespace, False),
        ("update", f"{CR}/status", namespace, False),  # status is written with patch only
        ("delete", "events", namespace, False),
        ("list", "secrets", namespace, False),  # get one named Secret, never enumerate them
        ("watch", "secrets", namespace, False),
        ("create", "secrets", namespace, False),
        ("delete", "secrets", namespace, False),
        ("list", "pods", namespace, False),
        ("get", "pods", namespace, False),
        ("list", "configmaps", namespace, False),
        ("get", "configmaps", namespace, False),
        ("create", "pods", namespace, False),
        ("list", "namespaces", None, False),
        ("get", "customresourcedefinitions.apiextensions.k8s.io", None, False),
        ("list", "clusterkopfpeerings.kopf.dev", None, False),
    ]


# ---------------------------------------------------------------------------------------------------
# every combination passes the API server's validation


@pytest.fixture(scope="module")
def monitoring_crds(control_plane: ControlPlane) -> None:
    """prometheus-operator's ServiceMonitor and PrometheusRule CRDs (pinned; ``build.sh monitoring-crds``),
    so the API server checks the chart's monitoring objects against the schemas the real operator uses.
    They stay installed: cluster-scoped and inert, and applying them again changes nothing."""
    try:
        directory = resolve_bin_dir(build=False).parent / "monitoring-crds"
    except ControlPlaneError as exc:
        pytest.fail(f"cannot locate the pinned tools: {exc}")
    files = sorted(directory.glob("monitoring.coreos.com_*.yaml"))
    if len(files) != 2:
        pytest.fail(f"prometheus-operator CRDs missing in {directory}: run `bash {BUILD_SCRIPT} monitoring-crds`")
    args = [arg for path in files for arg in ("-f", str(path))]
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=chart-tests", *args)
    wait_established(control_plane, "servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com")


@pytest.fixture(scope="module")
def dry_run_namespaces(control_plane: ControlPlane, monitoring_crds: None) -> tuple[str, dict[str, str]]:
    """A release namespace and the two watched namespaces, shared by the dry runs (which change nothing)."""
    # The release namespace enforces the restricted Pod Security Standard: the test Pod is admitted only
    # if it complies, and the Deployment's pod template would draw a warning if it did not.
    restricted = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn")}
    release_namespace = _create_namespace(control_plane, "chart-dry-run", restricted)
    mapping = {
        WATCH_A: _create_namespace(control_plane, "watch-a"),
        WATCH_B: _create_namespace(control_plane, "watch-b"),
    }
    return release_namespace, mapping


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_every_combination_passes_server_side_dry_run(
    control_plane: ControlPlane, dry_run_namespaces: tuple[str, dict[str, str]], combination: str
) -> None:
    release_namespace, mapping = dry_run_namespaces
    values = with_namespaces(COMBINATIONS[combination], mapping)
    rendered = control_plane.helm(
        "template", _release_name(), str(CHART_DIR), "--namespace", release_namespace, "--values", "-",
        "--kube-version", _server_version(control_plane), input=json.dumps(values),
    ).stdout  # fmt: skip
    assert rendered.strip()
    proc = control_plane.kubectl(
        "apply", "--server-side", "--force-conflicts", "--dry-run=server", "--field-manager=chart-dry-run",
        "-f", "-", input=rendered, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    applied = proc.stdout.splitlines()
    assert len(applied) == len([doc for doc in yaml.safe_load_all(rendered) if doc])
    assert all(line.endswith("(server dry run)") for line in applied), applied


def test_the_dry_run_rejects_a_field_the_monitoring_schema_does_not_know(
    control_plane: ControlPlane, dry_run_namespaces: tuple[str, dict[str, str]]
) -> None:
    """The check above can fail: a ServiceMonitor with a misspelt endpoint field is refused, not pruned."""
    release_namespace, _ = dry_run_namespaces
    values = COMBINATIONS["monitoring"]
    rendered = control_plane.helm(
        "template", _release_name(), str(CHART_DIR), "--namespace", release_namespace, "--values", "-",
        "--show-only", "templates/servicemonitor.yaml", input=json.dumps(values),
    ).stdout  # fmt: skip
    monitor = yaml.safe_load(rendered)
    monitor["spec"]["endpoints"][0]["scrapeTimeOut"] = monitor["spec"]["endpoints"][0].pop("scrapeTimeout")
    proc = control_plane.kubectl(
        "apply", "--server-side", "--dry-run=server", "--field-manager=chart-dry-run", "-f", "-",
        input=json.dumps(monitor), check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "scrapeTimeOut" in proc.stderr, proc.stderr


def test_install_rejects_unknown_values(control_plane: ControlPlane, namespace: str) -> None:
    proc = control_plane.helm(
        "install", _release_name(), str(CHART_DIR), "--namespace", namespace, "--set", "replicaCount=abc",
        "--set", "northflank.tokken=x", check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "replicaCount" in proc.stderr
    assert "tokken" in proc.stderr


# ---------------------------------------------------------------------------------------------------
# lifecycle: install, upgrade with a changed CRD, uninstall keeps the CRD and the resources


def _chart_with_extra_printer_column(tmp_path: Path) -> Path:
    chart = tmp_path / "northflank-llm-operator"
    shutil.copytree(CHART_DIR, chart)
    crd_copy = chart / "files" / "crds" / CRD_FILE_NAME
    text = crd_copy.read_text()
    marker = "      additionalPrinterColumns:\n"
    assert text.count(marker) == 1
    column = "        - name: Team\n          type: string\n          priority: 1\n          jsonPath: .spec.teamId\n"
    crd_copy.write_text(text.replace(marker, marker + column))
    return chart


def _printer_columns(plane: ControlPlane) -> list[str]:
    return [column["name"] for column in _crd(plane)["spec"]["versions"][0]["additionalPrinterColumns"]]


def test_install_upgrade_uninstall_manages_the_crd_and_keeps_resources(
    control_plane: ControlPlane, namespace: str, releases: Releases, tmp_path: Path
) -> None:
    plane = control_plane
    release = _release_name()
    fullname = _fullname(release)
    original_columns = [
        c["name"] for c in yaml.safe_load(CRD_SOURCE.read_text())["spec"]["versions"][0]["additionalPrinterColumns"]
    ]
    _hand_crd_to(plane, release, namespace)
    try:
        notes = releases.install(release, namespace, {"northflank": {"existingSecret": "northflank-api-token"}})
        assert "kubectl get llmd" in notes
        assert "kubectl wait --for=condition=Ready llmd/my-model" in notes
        assert "kubectl create secret generic northflank-api-token" in notes
        assert "rollout restart" not in notes, "a rotated existing Secret is read without a restart"
        assert "elect a leader" not in notes, "one replica without leaderElection.enabled: no Lease"

        crd = _crd(plane)
        assert crd["metadata"]["labels"]["app.kubernetes.io/instance"] == release
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        wait_established(plane, CRD_NAME)
        assert _printer_columns(plane) == original_columns
        for kind in ("deployment", "serviceaccount", "service"):
            assert _exists(plane, kind, fullname, "-n", namespace), kind
        for kind in ("clusterrole", "clusterrolebinding"):
            assert _exists(plane, kind, fullname), kind
        assert _exists(plane, "clusterrole", f"{fullname}-view")
        assert _exists(plane, "clusterrole", f"{fullname}-edit")

        resource = {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "LLMModelDeployment",
            "metadata": {"name": "survivor", "namespace": namespace},
            "spec": {"projectId": "proj", "llmModelDeploymentId": "model"},
        }
        plane.kubectl("create", "-f", "-", input=json.dumps(resource))
        # The chart's CRD prints every column for a resource no operator has observed yet.
        [never] = parse_table(plane.kubectl("get", "llmd", "-n", namespace, "-o", "wide").stdout, WIDE_COLUMNS)
        assert never == {
            **{column: "" for column in WIDE_COLUMNS},
            "NAME": "survivor", "AGE": never["AGE"], "PROJECT": "proj", "DEPLOYMENT": "model",
        }  # fmt: skip
        assert never["AGE"]
        [short] = parse_table(plane.kubectl("get", "llmd", "-n", namespace).stdout, DEFAULT_COLUMNS)
        assert {k: v for k, v in short.items() if k != "AGE"} == {k: never[k] for k in DEFAULT_COLUMNS if k != "AGE"}

        # A chart whose CRD gained a printer column: `helm upgrade` must change the CRD in the cluster
        # (Helm never upgrades CRDs from a chart's crds/ directory; this chart templates it).
        changed = _chart_with_extra_printer_column(tmp_path)
        plane.helm("upgrade", release, str(changed), "--namespace", namespace, "--reuse-values")
        assert _printer_columns(plane) == ["Team", *original_columns]
        wide = plane.kubectl("get", "llmd", "survivor", "-n", namespace, "-o", "wide").stdout
        assert "TEAM" in wide.splitlines()[0]

        # Uninstall: the release's objects go, the CRD and every resource stay.
        uninstall = plane.helm("uninstall", release, "--namespace", namespace)
        assert "kept due to the resource policy" in uninstall.stdout + uninstall.stderr
        assert _exists(plane, "crd", CRD_NAME)
        assert _exists(plane, "llmd", "survivor", "-n", namespace)
        assert not _exists(plane, "deployment", fullname, "-n", namespace)
        assert not _exists(plane, "clusterrole", fullname)
        assert not _exists(plane, "clusterrole", f"{fullname}-view")
    finally:
        # Left behind, the resource would be polled by every operator later tests run with -A.
        plane.kubectl("delete", "llmd", "survivor", "--namespace", namespace, "--ignore-not-found", check=False)
        _restore_crd(plane)
    assert _printer_columns(plane) == original_columns


# ---------------------------------------------------------------------------------------------------
# RBAC as the API server sees it, for the chart's ServiceAccount


def test_namespaced_scope_grants_exactly_the_watched_namespaces(
    control_plane: ControlPlane, namespace: str, releases: Releases, crd_installed: object
) -> None:
    plane = control_plane
    watched_a = _create_namespace(plane, "watched-a")
    watched_b = _create_namespace(plane, "watched-b")
    unwatched = _create_namespace(plane, "unwatched")
    release = _release_name()
    releases.install(release, namespace, {"watchNamespaces": [watched_a, watched_b], "crds": {"enabled": False}})
    sa = _service_account(release, namespace)

    expected: list[tuple[str, str, str | None, bool]] = []
    for ns in (watched_a, watched_b):
        expected += [
            ("get", CR, ns, True),
            ("list", CR, ns, True),
            ("watch", CR, ns, True),
            ("patch", f"{CR}/status", ns, True),
            ("create", "events", ns, True),
            ("patch", "events", ns, True),
            ("get", "secrets", ns, True),
            *_denied_everywhere(ns),
        ]
    expected += [
        # Nothing outside the watched namespaces, the release namespace included.
        ("get", "secrets", unwatched, False),
        ("list", CR, unwatched, False),
        ("patch", f"{CR}/status", unwatched, False),
        ("create", "events", unwatched, False),
        ("get", "secrets", namespace, False),
        ("list", CR, None, False),  # no cluster-wide list
        ("get", "secrets", None, False),
    ]
    _assert_access(plane, sa, expected)


def test_cluster_scope_grants_every_namespace_and_nothing_more(
    control_plane: ControlPlane, namespace: str, releases: Releases, crd_installed: object
) -> None:
    plane = control_plane
    elsewhere = _create_namespace(plane, "elsewhere")
    release = _release_name()
    releases.install(release, namespace, {"crds": {"enabled": False}})
    sa = _service_account(release, namespace)
    _assert_access(
        plane,
        sa,
        [
            ("list", CR, None, True),
            ("watch", CR, None, True),
            ("get", CR, elsewhere, True),
            ("patch", f"{CR}/status", elsewhere, True),
            ("create", "events", elsewhere, True),
            ("get", "secrets", elsewhere, True),
            *_denied_everywhere(elsewhere),
        ],
    )


def test_secret_access_can_be_turned_off(
    control_plane: ControlPlane, namespace: str, releases: Releases, crd_installed: object
) -> None:
    plane = control_plane
    elsewhere = _create_namespace(plane, "elsewhere")
    release = _release_name()
    releases.install(
        release,
        namespace,
        {"crds": {"enabled": False}, "rbac": {"secretAccess": False}, "northflank": {"existingSecret": "tok"}},
    )
    sa = _service_account(release, namespace)
    _assert_access(
        plane,
        sa,
        [
            ("get", "secrets", elsewhere, False),
            ("get", "secrets", namespace, False),
            ("list", CR, None, True),
            ("patch", f"{CR}/status", elsewhere, True),
        ],
    )


def test_leader_election_may_change_only_its_own_lease(
    control_plane: ControlPlane, namespace: str, releases: Releases, crd_installed: object
) -> None:
    plane = control_plane
    release = _release_name()
    notes = releases.install(release, namespace, {"crds": {"enabled": False}, "replicaCount": 2})
    assert f"kubectl get lease {_fullname(release)} -n {namespace}" in notes, "the notes say how to find the leader"
    sa = _service_account(release, namespace)
    lease = f"leases.coordination.k8s.io/{_fullname(release)}"
    other = "leases.coordination.k8s.io/someone-elses-lease"
    wrong = [
        f"{verb} {what}: expected {'yes' if allowed else 'no'}"
        for verb, what, where, allowed in [
            ("get", lease, namespace, True),
            ("update", lease, namespace, True),
            ("create", "leases.coordination.k8s.io", namespace, True),  # create cannot name its object
            ("get", other, namespace, False),
            ("update", other, namespace, False),
            ("delete", lease, namespace, False),
            ("list", "leases.coordination.k8s.io", namespace, False),
            ("get", lease, "default", False),
        ]
        if _can_i(plane, sa, verb, what, where) != allowed
    ]
    assert wrong == []
    assert _exists(plane, "poddisruptionbudget", _fullname(release), "-n", namespace)


# ---------------------------------------------------------------------------------------------------
# end to end: the operator with only the chart's ServiceAccount token


def _kubectl_with(plane: ControlPlane, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The pinned kubectl with another identity's kubeconfig (the fixture's wrapper always uses the admin's)."""
    return subprocess.run(
        [str(plane.bin_dir / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _helm_test_command(plane: ControlPlane, release: str, namespace: str) -> list[str]:
    """The command of the release's `helm test` Pod, as Helm stored it in the release."""
    manifest = plane.helm("get", "hooks", release, "--namespace", namespace).stdout
    (pod,) = [doc for doc in yaml.safe_load_all(manifest) if doc and doc["kind"] == "Pod"]
    command: list[str] = pod["spec"]["containers"][0]["command"]
    return command


def _service_account_kubeconfig(plane: ControlPlane, namespace: str, account: str, path: Path) -> Path:
    token = plane.kubectl("create", "token", account, "--namespace", namespace, "--duration=30m").stdout.strip()
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", token), "not a JWT"
    admin = json.loads(plane.kubeconfig.read_text())
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [
            {"name": account, "context": {"cluster": cluster["name"], "user": account, "namespace": namespace}}
        ],
        "current-context": account,
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


def test_operator_syncs_end_to_end_with_only_the_charts_service_account(
    control_plane: ControlPlane,
    namespace: str,
    releases: Releases,
    crd_installed: object,
    simulator: RunningSimulator,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    plane = control_plane
    watched = _create_namespace(plane, "e2e-watched")
    unwatched = _create_namespace(plane, "e2e-unwatched")
    release = _release_name()
    # No operator-wide token: the resource names its own Secret, which needs the chart's `get secrets`.
    releases.install(release, namespace, {"watchNamespaces": [watched], "crds": {"enabled": False}})

    api_token = f"nf-e2e-{secrets.token_hex(8)}"
    simulator.control.add_token(api_token, team_id="team-e2e")
    simulator.control.put_project("proj-e2e", team_id="team-e2e")
    served = simulator.control.put_deployment("proj-e2e", "model-e2e", status="running")
    for ns in (watched, unwatched):
        plane.kubectl("create", "secret", "generic", "nf-token", "--namespace", ns, f"--from-literal=token={api_token}")

    kubeconfig = _service_account_kubeconfig(plane, namespace, _fullname(release), tmp_path / "sa-kubeconfig")
    # The minted token really is the ServiceAccount, and the API server really refuses it elsewhere.
    who = _kubectl_with(plane, kubeconfig, "auth", "whoami", "-o", "json").stdout
    assert json.loads(who)["status"]["userInfo"]["username"] == _service_account(release, namespace)
    denied = _kubectl_with(plane, kubeconfig, "get", "secret", "nf-token", "--namespace", unwatched)
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr

    resource = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "LLMModelDeployment",
        "metadata": {"name": "e2e", "namespace": watched},
        "spec": {
            "projectId": "proj-e2e",
            "llmModelDeploymentId": "model-e2e",
            "credentialsSecretRef": {"name": "nf-token", "key": "token"},
        },
    }
    plane.kubectl("create", "-f", "-", input=json.dumps(resource))
    # Left behind, the resource would be polled by every operator later tests run with -A.
    request.addfinalizer(
        lambda: plane.kubectl("delete", "llmd", "e2e", "--namespace", watched, "--ignore-not-found", check=False)
    )

    log_path = tmp_path / "operator.log"
    liveness_port = free_port()
    with run_operator(
        kubeconfig=kubeconfig,
        namespaces=[watched],
        api_base_url=simulator.base_url,
        api_token=None,
        log_path=log_path,
        poll_interval_seconds=1.0,
        liveness_port=liveness_port,
    ) as operator:

        def synced() -> dict[str, Any] | None:
            operator.assert_alive()
            body = json.loads(plane.kubectl("get", "llmd", "e2e", "--namespace", watched, "-o", "json").stdout)
            status: dict[str, Any] = body.get("status") or {}
            ready: dict[str, Any] = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
            return status if status.get("phase") == "running" and ready.get("status") == "True" else None

        try:
            status = wait_for(synced, timeout=E2E_DEADLINE, message="phase running and Ready=True")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- operator log ---\n{operator.log()[-6000:]}") from None

        def events() -> list[dict[str, Any]]:
            listing = plane.kubectl(
                "get", "events", "--namespace", watched, "--field-selector", "involvedObject.name=e2e", "-o", "json"
            )
            items: list[dict[str, Any]] = json.loads(listing.stdout)["items"]
            return items

        wait_for(events, timeout=E2E_DEADLINE, message="an Event about the resource")
        [row] = parse_table(plane.kubectl("get", "llmd", "e2e", "-n", watched, "-o", "wide").stdout, WIDE_COLUMNS)
        assert row["INTERVAL(S)"].isdigit(), "the budget may stretch the 1 s interval"
        varying = ("LAST CHANGE", "AGE", "INTERVAL(S)")
        assert {column: row[column] for column in WIDE_COLUMNS if column not in varying} == {
            "NAME": "e2e", "READY": "True", "PHASE": "running", "REASON": "Running",
            "MODEL": served["spec"]["configuration"]["name"], "GPU": "h200-141 × 8", "ENGINE": "vllm",
            "REPLICAS": "1", "URL": "https://" + served["ports"][0]["dns"], "PROJECT": "proj-e2e",
            "DEPLOYMENT": "model-e2e", "EXPECTED": "",
            "MESSAGE": "The deployment is running.",
        }  # fmt: skip

        # The chart's `helm test` Pod runs this very script; here it runs against the real operator.
        probe = _helm_test_command(plane, release, namespace)
        probe[-1] = f"http://127.0.0.1:{liveness_port}/healthz"
        assert probe[0] == "python"
        result = subprocess.run([sys.executable, *probe[1:]], capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert " 200 " in result.stdout

    assert status["deployment"]["id"] == served["id"]
    log = log_path.read_text(errors="replace")
    # Least privilege is enough: the operator never hit a permission it does not have ...
    # (kopf and the kubernetes client both name a 403 "Forbidden"; a bare "403" would also match
    # timestamps and byte counts in the debug log.)
    assert "Forbidden" not in log, log[-6000:]
    # ... and never wrote the API token anywhere it can be read back.
    assert api_token not in log
    assert base64.b64encode(api_token.encode()).decode() not in log


def test_management_may_patch_the_resources_and_read_only_its_own_crd(
    control_plane: ControlPlane, namespace: str, releases: Releases, crd_installed: object
) -> None:
    plane = control_plane
    elsewhere = _create_namespace(plane, "elsewhere")
    release = _release_name()
    releases.install(release, namespace, {"crds": {"enabled": False}, "management": {"enabled": True}})
    sa = _service_account(release, namespace)
    # Metadata (the create markers, the finalizer) is written with a merge patch; nothing else widens.
    _assert_access(plane, sa, [
        ("patch", CR, elsewhere, True),
        ("update", CR, elsewhere, False),
        ("delete", CR, elsewhere, False),
        ("create", CR, elsewhere, False),
        ("list", "customresourcedefinitions.apiextensions.k8s.io", None, False),
    ])  # fmt: skip
    crds = "customresourcedefinitions.apiextensions.k8s.io"
    assert can_i(plane, sa, "get", f"{crds}/llmmodeldeployments.northflank-llm-operator.dev", None)
    assert not can_i(plane, sa, "get", f"{crds}/leases.coordination.k8s.io", None)


def test_management_creates_and_deletes_with_only_the_charts_service_account(
    control_plane: ControlPlane,
    namespace: str,
    releases: Releases,
    crd_installed: object,
    simulator: RunningSimulator,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """The chart's RBAC with management.enabled is enough for the whole write path: the create markers, the
    finalizer, reading the CRD before a delete, and releasing the finalizer."""
    plane = control_plane
    watched = _create_namespace(plane, "manage-watched")
    release = _release_name()
    releases.install(release, namespace, {"watchNamespaces": [watched], "crds": {"enabled": False},
                                          "management": {"enabled": True}})  # fmt: skip
    api_token = f"manage-chart-{secrets.token_hex(8)}"
    simulator.control.add_token(api_token, team_id="team-manage")
    simulator.control.put_project("proj-manage", team_id="team-manage")
    simulator.control.set_lifecycle(0.3)
    plane.kubectl(
        "create", "secret", "generic", "nf-token", "--namespace", watched, f"--from-literal=token={api_token}"
    )
    kubeconfig = _service_account_kubeconfig(plane, namespace, _fullname(release), tmp_path / "sa-kubeconfig")
    resource = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "LLMModelDeployment",
        "metadata": {"name": "made", "namespace": watched},
        "spec": {
            "projectId": "proj-manage",
            "llmModelDeploymentId": "made",
            "credentialsSecretRef": {"name": "nf-token", "key": "token"},
            "managementPolicies": ["*"],
            "forProvider": {"spec": {"configuration": {"engine": "vllm", "name": "Qwen/Qwen3-0.6B"}}},
        },
    }
    plane.kubectl("create", "-f", "-", input=json.dumps(resource))

    def strip_finalizers() -> None:
        patch = json.dumps({"metadata": {"finalizers": None}})
        plane.kubectl("patch", "llmd", "made", "-n", watched, "--type=merge", "-p", patch, check=False)
        plane.kubectl("delete", "llmd", "made", "--namespace", watched, "--ignore-not-found", check=False)

    request.addfinalizer(strip_finalizers)

    def read() -> dict[str, Any]:
        result = plane.kubectl("get", "llmd", "made", "--namespace", watched, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else {}

    with run_operator(kubeconfig=kubeconfig, namespaces=[watched], api_base_url=simulator.base_url, api_token=None,
                      log_path=tmp_path / "operator.log", poll_interval_seconds=1.0,
                      extra_env={"NORTHFLANK_LLM_OPERATOR_ENABLE_MANAGEMENT": "true"}) as operator:  # fmt: skip

        def owned() -> bool:
            operator.assert_alive()
            metadata = read().get("metadata", {})
            return "northflank-llm-operator.dev/delete-at-northflank" in metadata.get("finalizers", []) and (
                "northflank-llm-operator.dev/external-create-succeeded" in metadata.get("annotations", {})
            )

        try:
            wait_for(owned, timeout=E2E_DEADLINE, message="created, confirmed and the finalizer added")
            assert simulator.control.get_deployment("proj-manage", "made")["id"] == "made"
            plane.kubectl("delete", "llmd", "made", "--namespace", watched, "--wait=false")
            wait_for(lambda: not read(), timeout=E2E_DEADLINE, message="deleted at Northflank, then released")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- operator log ---\n{operator.log()[-6000:]}") from None
    deleted = [r for r in simulator.control.requests(path_contains="/made") if r["method"] == "DELETE"]
    assert [r["status"] for r in deleted] == [200]
    assert "Forbidden" not in operator.log()
