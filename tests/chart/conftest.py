"""Chart-local fixtures: the pinned helm, helm-docs and promtool binaries (no cluster needed)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.chart.chart import Helm
from tests.controlplane.controlplane import BUILD_SCRIPT, ControlPlaneError, resolve_bin_dir


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """The pinned helm from tests/controlplane/build.sh, with throw-away Helm home directories."""
    try:
        bin_dir = resolve_bin_dir(build=False)
    except ControlPlaneError as exc:
        pytest.fail(f"cannot locate the pinned tools: {exc}")
    binary = bin_dir / "helm"
    if not os.access(binary, os.X_OK):
        pytest.fail(f"helm is not built in {bin_dir}: run `bash {BUILD_SCRIPT} helm` first")
    return Helm(binary=binary, home=tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def helm_docs() -> Path:
    """The pinned helm-docs; ``build.sh helm-docs`` is a no-op when it is already built (and ~1 min cold)."""
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "helm-docs"], capture_output=True, text=True, timeout=600, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"`{BUILD_SCRIPT} helm-docs` failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    binary = Path(proc.stdout.strip().splitlines()[-1]) / "helm-docs"
    if not os.access(binary, os.X_OK):
        pytest.fail(f"{binary} missing after `{BUILD_SCRIPT} helm-docs`")
    return binary


@pytest.fixture(scope="session")
def promtool() -> Path:
    """The pinned promtool (``build.sh promtool``; ``make tools`` builds it)."""
    try:
        bin_dir = resolve_bin_dir(build=False)
    except ControlPlaneError as exc:
        pytest.fail(f"cannot locate the pinned tools: {exc}")
    binary = bin_dir / "promtool"
    if not os.access(binary, os.X_OK):
        pytest.fail(f"promtool is not built in {bin_dir}: run `bash {BUILD_SCRIPT} promtool` first")
    return binary
