"""The evaluators binary, shared by tests/gitops' modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gitops.test_health import build_evaluators


@pytest.fixture(scope="session")
def evaluators() -> Path:
    try:
        return build_evaluators()
    except RuntimeError as exc:
        pytest.fail(str(exc))
