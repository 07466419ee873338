"""Fixtures the integration modules share; each module that runs one operator for all its tests
defines ``operator`` (module scope) with ``start_module_operator`` and its own options."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.controlplane.controlplane import ControlPlane
from tests.simulator.fixtures import RunningSimulator
from tests.support.cluster import Cluster, delete_all_resources
from tests.support.operator_process import (
    ModuleOperatorStarter,
    OperatorProcess,
    OperatorStarter,
    run_operator,
    run_operator_for_module,
)


@pytest.fixture(scope="module")
def start_module_operator(
    control_plane: ControlPlane,
    crd_installed: object,
    simulator_process: RunningSimulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> ModuleOperatorStarter:
    """``run_operator_for_module`` against this session's API server (with the CRD) and simulator."""
    return functools.partial(
        run_operator_for_module,
        kubeconfig=control_plane.kubeconfig,
        api_base_url=simulator_process.base_url,
        log_path=tmp_path_factory.mktemp("operator") / "operator.log",
    )


@pytest.fixture
def cluster(control_plane: ControlPlane, namespace: str, operator: OperatorProcess) -> Iterator[Cluster]:
    """The test's namespace, watched by the module's ``operator``; emptied afterwards."""
    yield Cluster(control_plane, namespace, operator)
    delete_all_resources(control_plane, namespace)


@pytest.fixture
def start_operator(
    control_plane: ControlPlane,
    crd_installed: object,
    namespace: str,
    simulator: RunningSimulator,
    tmp_path: Path,
) -> OperatorStarter:
    """``run_operator`` for this test's namespace against the session's API server and (reset)
    simulator, logging to ``tmp_path / "operator.log"``; any of those can be given again to override."""
    return functools.partial(
        run_operator,
        kubeconfig=control_plane.kubeconfig,
        namespaces=[namespace],
        api_base_url=simulator.base_url,
        log_path=tmp_path / "operator.log",
    )


@pytest.fixture(autouse=True)
def _no_resources_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """Delete the test's LLMModelDeployments when it ends. Its namespace outlives it (this control plane
    runs no namespace controller), and a module operator watching every namespace of this API server
    would otherwise go on polling them, spending the budget that later modules' operators share."""
    yield
    plane, namespace = request.node.funcargs.get("control_plane"), request.node.funcargs.get("namespace")
    if isinstance(plane, ControlPlane) and isinstance(namespace, str):
        delete_all_resources(plane, namespace)
