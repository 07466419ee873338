"""pytest plugin: a real kube-apiserver + etcd for the test session (see controlplane.py).

Registered from the root ``tests/conftest.py`` (``pytest_plugins``). Fixtures:

* ``control_plane`` (session): a started :class:`ControlPlane`. When ``NFLLM_CONTROL_PLANE_DIR`` names a
  directory with a healthy plane (``make control-plane-up`` started it), that plane is reused and left
  running; otherwise (and on every pytest-xdist worker) one is started in a session temp dir and stopped
  at the end. Ports are free ones, so several workers' planes and simulators run side by side.
* ``crd_installed`` (session): the CRDs from ``crds/*.yaml`` applied and ``Established``.
* ``namespace`` (function): a fresh, uniquely named namespace. Never deleted: without a
  controller-manager a deleted namespace stays ``Terminating`` forever, so deleting buys nothing.

Everything that runs for longer than a blink has a deadline (``ControlPlane.ready_timeout``, kubectl's
``--timeout``); a cold build of the binaries does not fit into one test's timeout, so CI runs
``tests/controlplane/build.sh`` before pytest.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from tests.controlplane.controlplane import ControlPlane
from tests.support.kube_api import client, wait_established

__all__ = [
    "CONTROL_PLANE_DIR_ENV",
    "CRD_DIR",
    "CRD_NAME",
    "REPO_ROOT",
    "TEST_NAMESPACE_LABEL",
    "control_plane",
    "crd_installed",
    "namespace",
]

log = logging.getLogger(__name__)

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
CRD_DIR: Final = REPO_ROOT / "crds"
CRD_NAME: Final = "llmmodeldeployments.northflank-llm-operator.dev"
CONTROL_PLANE_DIR_ENV: Final = "NFLLM_CONTROL_PLANE_DIR"
TEST_NAMESPACE_LABEL: Final = "northflank-llm-operator.dev/test"
_FIELD_MANAGER: Final = "nfllm-tests"


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A running kube-apiserver + etcd: reused from ``$NFLLM_CONTROL_PLANE_DIR``, else started here."""
    external = os.environ.get(CONTROL_PLANE_DIR_ENV)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if external and worker:
        # The modules' operators watch all namespaces: two xdist workers on one plane would poll each
        # other's resources against their own simulators. Each worker starts its own plane.
        log.warning("%s is ignored under pytest-xdist (worker %s starts its own plane)", CONTROL_PLANE_DIR_ENV, worker)
        external = None
    if external:
        plane = ControlPlane(external)
        problem = plane.health_problem()
        if problem is None:
            log.info("reusing the control plane in %s (%s)", plane.dir, plane.server)
            yield plane  # someone else's: never stopped here
            return
        log.warning(
            "%s=%s has no healthy control plane (%s); starting one for this session",
            CONTROL_PLANE_DIR_ENV,
            external,
            problem,
        )
    plane = ControlPlane(tmp_path_factory.mktemp("control-plane"))
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def crd_installed(control_plane: ControlPlane) -> list[Path]:
    """Apply every ``crds/*.yaml`` (server-side, idempotent) and wait until the CRDs are Established."""
    files = sorted(CRD_DIR.glob("*.yaml"))
    if not files:
        pytest.fail(f"no CRD manifests in {CRD_DIR}")
    file_args = [arg for path in files for arg in ("-f", str(path))]
    control_plane.kubectl(
        "apply", "--server-side", "--force-conflicts", f"--field-manager={_FIELD_MANAGER}", *file_args
    )
    wait_established(control_plane, CRD_NAME)
    return files


def _namespace_name(test_name: str) -> str:
    """``t-<test name as a DNS label>-<random>``, at most 63 characters."""
    suffix = secrets.token_hex(3)
    base = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-") or "test"
    base = base[: 63 - len("t--") - len(suffix)].rstrip("-")
    return f"t-{base}-{suffix}"


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> str:
    """A new namespace for this test, labelled as a test namespace (and left behind, see module doc)."""
    name = _namespace_name(request.node.name)
    manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {TEST_NAMESPACE_LABEL: "true"},
            "annotations": {f"{TEST_NAMESPACE_LABEL}-id": request.node.nodeid[:1000]},
        },
    }
    # One request on a kept-alive connection rather than a kubectl process per test.
    client(control_plane).post("/api/v1/namespaces", json=manifest).raise_for_status()
    return name
