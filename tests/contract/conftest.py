"""Fixtures of the contract tests: the committed schemas, and the pinned npm packages that regenerate them."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.contract import regenerate


def load_schema(name: str) -> dict[str, Any]:
    """``strict.GetLlmModelDeployment`` and the like, from ``tests/contract/schemas``."""
    schema: dict[str, Any] = json.loads((regenerate.SCHEMAS / f"{name}.json").read_text())
    return schema


@pytest.fixture(scope="session")
def schema() -> Callable[[str], dict[str, Any]]:
    return load_schema


@pytest.fixture(scope="session")
def contract_packages() -> Path:
    """The pinned official client and schema generator, installed once into the cache.

    Outside CI a missing cache skips (``make tools`` installs it); in CI (``CI=true``) the fixture
    installs it, so the byte-identical check always runs there.
    """
    ready = regenerate.installed()
    if ready is not None:
        return ready
    if os.environ.get("CI") != "true":
        pytest.skip(f"the pinned npm packages are not installed in {regenerate.cache_dir()}: run make tools")
    if shutil.which("npm") is None:
        pytest.fail("CI needs Node.js and npm to regenerate the contract schemas")
    return regenerate.install()
