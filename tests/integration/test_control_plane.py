"""The local control plane is a real one: pinned, versioned, RBAC-enforcing, validating CRDs with CEL.

If one of these fails, every other integration test is suspect; they run in seconds.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from tests.controlplane.controlplane import ControlPlane
from tests.controlplane.fixtures import CRD_NAME

pytestmark = pytest.mark.integration

K8S_VERSION: Final = "v1.34.4"
HELM_VERSION: Final = "v3.22.0"
API_VERSION: Final = "northflank-llm-operator.dev/v1alpha1"


def cr(name: str, *, project_id: str = "my-project", deployment_id: str = "my-llm") -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "LLMModelDeployment",
        "metadata": {"name": name},
        "spec": {"projectId": project_id, "llmModelDeploymentId": deployment_id},
    }


def crd_field_description(field: str) -> str:
    crd = yaml.safe_load((Path(__file__).resolve().parents[2] / "crds" / f"{CRD_NAME}.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    description: str = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][field]["description"]
    return description


def words(text: str) -> str:
    return " ".join(text.split())


# --- the server itself --------------------------------------------------------------------------------


def test_version_is_the_pinned_stamped_build(control_plane: ControlPlane) -> None:
    version = json.loads(control_plane.kubectl("get", "--raw", "/version").stdout)
    assert version["gitVersion"] == K8S_VERSION  # not v0.0.0-master+$Format:%H$
    assert (version["major"], version["minor"]) == ("1", "34")
    client = json.loads(control_plane.kubectl("version", "--client", "-o", "json").stdout)
    assert client["clientVersion"]["gitVersion"] == K8S_VERSION


def test_readyz_is_ok(control_plane: ControlPlane) -> None:
    assert control_plane.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def test_env_points_plain_subprocesses_at_the_plane(control_plane: ControlPlane) -> None:
    proc = subprocess.run(
        ["kubectl", "get", "--raw", "/livez"],  # kubectl from PATH, cluster from KUBECONFIG
        env=control_plane.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert proc.stdout.strip() == "ok"


def test_python_client_verifies_tls_with_the_kubeconfig(control_plane: ControlPlane) -> None:
    kubernetes = pytest.importorskip("kubernetes")
    api_client = kubernetes.config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    with api_client:
        assert api_client.configuration.verify_ssl  # the CA from --cert-dir, never insecure-skip-tls-verify
        names = {ns.metadata.name for ns in kubernetes.client.CoreV1Api(api_client).list_namespace().items}
    assert {"default", "kube-system"} <= names


# --- authentication and RBAC ----------------------------------------------------------------------------


def test_rbac_denies_dev_and_allows_admin(control_plane: ControlPlane) -> None:
    impersonated = control_plane.kubectl("auth", "can-i", "list", "secrets", "--as=dev", check=False)
    assert (impersonated.returncode, impersonated.stdout.strip()) == (1, "no")

    as_dev = control_plane.kubectl("auth", "can-i", "list", "secrets", as_user="dev", check=False)
    assert (as_dev.returncode, as_dev.stdout.strip()) == (1, "no")

    admin = control_plane.kubectl("auth", "can-i", "list", "secrets", check=False)
    assert (admin.returncode, admin.stdout.strip()) == (0, "yes")

    forbidden = control_plane.kubectl("get", "secrets", "-n", "default", as_user="dev", check=False)
    assert forbidden.returncode != 0
    assert 'User "dev" cannot list resource "secrets"' in forbidden.stderr


def test_static_tokens_authenticate_admin_and_dev(control_plane: ControlPlane) -> None:
    admin = json.loads(control_plane.kubectl("auth", "whoami", "-o", "json").stdout)["status"]["userInfo"]
    dev = json.loads(control_plane.kubectl("auth", "whoami", "-o", "json", as_user="dev").stdout)
    assert admin["username"] == "admin"
    assert "system:masters" in admin["groups"]
    assert dev["status"]["userInfo"]["username"] == "dev"
    assert "system:masters" not in dev["status"]["userInfo"]["groups"]


def test_service_account_tokens_are_signed(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.kubectl("create", "serviceaccount", "probe", "-n", namespace)
    token = control_plane.kubectl("create", "token", "probe", "-n", namespace, "--duration=10m").stdout.strip()
    whoami = control_plane.kubectl("auth", "whoami", "-o", "json", f"--token={token}")
    username = json.loads(whoami.stdout)["status"]["userInfo"]["username"]
    assert username == f"system:serviceaccount:{namespace}:probe"


# --- the CRD ------------------------------------------------------------------------------------------


def test_crd_is_established_and_explained(control_plane: ControlPlane, crd_installed: list[Path]) -> None:
    established = control_plane.kubectl(
        "get", f"crd/{CRD_NAME}", "-o", 'jsonpath={.status.conditions[?(@.type=="Established")].status}'
    )
    assert established.stdout == "True"

    # The OpenAPI document behind `explain` is rebuilt asynchronously after the CRD is established.
    expected = words(crd_field_description("projectId"))
    deadline = time.monotonic() + 60
    while True:
        explain = control_plane.kubectl("explain", "llmmodeldeployment.spec.projectId", check=False)
        if explain.returncode == 0 and expected in words(explain.stdout):
            break
        assert time.monotonic() < deadline, f"explain never showed the description:\n{explain.stdout}{explain.stderr}"
        time.sleep(0.5)
    assert "FIELD: projectId <string>" in explain.stdout


@pytest.mark.parametrize(
    ("project_id", "complaint"),
    [
        pytest.param("../x", "should match", id="path-traversal"),
        pytest.param("team/project", "should match", id="slash"),
        pytest.param("-dash-first", "should match", id="leading-dash"),
        pytest.param("", "at least 1 chars long", id="empty"),
        pytest.param("a" * 101, "Too long: may not be more than 100", id="too-long"),
    ],
)
def test_malformed_project_id_is_rejected_by_the_api_server(
    control_plane: ControlPlane, crd_installed: list[Path], namespace: str, project_id: str, complaint: str
) -> None:
    created = control_plane.kubectl(
        "create", "-n", namespace, "-f", "-", input=json.dumps(cr("bad", project_id=project_id)), check=False
    )
    assert created.returncode != 0, created.stdout
    assert "spec.projectId" in created.stderr
    assert complaint in created.stderr
    assert control_plane.kubectl("get", "llmd", "-n", namespace, "-o", "name").stdout == ""


def test_project_id_is_immutable(control_plane: ControlPlane, crd_installed: list[Path], namespace: str) -> None:
    control_plane.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(cr("qwen")))

    patched = control_plane.kubectl(
        "patch",
        "llmd/qwen",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"projectId":"other-project"}}',
        check=False,
    )
    assert patched.returncode != 0
    assert "projectId is immutable" in patched.stderr
    current = control_plane.kubectl("get", "llmd/qwen", "-n", namespace, "-o", "jsonpath={.spec.projectId}")
    assert current.stdout == "my-project"

    # The rule is about projectId only: a mutable field still changes.
    control_plane.kubectl(
        "patch", "llmd/qwen", "-n", namespace, "--type=merge", "-p", '{"spec":{"pollIntervalSeconds":60}}'
    )
    # Server-side printing of additionalPrinterColumns works without any controller.
    header = control_plane.kubectl("get", "llmd", "-n", namespace, "-o", "wide").stdout.splitlines()[0]
    assert header.split()[:3] == ["NAME", "READY", "PHASE"]
    assert "PROJECT" in header.split()


# --- helm ---------------------------------------------------------------------------------------------


@pytest.mark.helm
def test_helm_is_pinned_and_sees_the_server_version(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    if not (control_plane.bin_dir / "helm").exists():
        pytest.skip(f"helm is not built yet in {control_plane.bin_dir}: run tests/controlplane/build.sh helm")
    assert control_plane.helm("version", "--template", "{{ .Version }}").stdout.strip() == HELM_VERSION

    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: probe\nversion: 0.1.0\nkubeVersion: '>=1.34.0-0 <1.35.0-0'\n"
    )
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
        "data:\n  kubeVersion: {{ .Capabilities.KubeVersion.Version | quote }}\n"
    )
    control_plane.helm("install", "probe", str(chart), "-n", namespace)  # never --wait: no controllers

    seen = control_plane.kubectl("get", "configmap/probe", "-n", namespace, "-o", "jsonpath={.data.kubeVersion}")
    assert seen.stdout == K8S_VERSION
    (release,) = json.loads(control_plane.helm("list", "-n", namespace, "-o", "json").stdout)
    assert release["status"] == "deployed"
