"""Fixtures of the node tests: one real node per pytest session, started only when node tests run.

Where a node cannot start (no root, no namespaces, packages missing) the node tests are skipped with the
reason -- unless ``CI=true``: in CI a node test that cannot run fails, since CI machines can run it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from typing import NoReturn

import pytest

from tests.node.node import Node, NodeError, missing_packages, unavailable_reason

log = logging.getLogger(__name__)


def in_ci(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get("CI", "").lower() in {"1", "true", "yes"}


def cannot_run(reason: str, environ: Mapping[str, str] = os.environ) -> NoReturn:
    """Skip (by hand) or fail (under CI=true) the node tests, with the reason."""
    if in_ci(environ):
        pytest.fail(f"node tests cannot run under CI=true: {reason}", pytrace=False)
    pytest.skip(f"node tests skipped: {reason}")


@pytest.fixture(scope="session")
def node(request: pytest.FixtureRequest) -> Iterator[Node]:
    """A started node (control plane in node mode, kubelet & co., containerd, CNI, CoreDNS, images)."""
    reason = unavailable_reason()
    if reason is None and missing_packages():
        reason = f"missing {', '.join(missing_packages())} (tests/node/setup.sh installs them; make test runs it)"
    if reason is not None:
        cannot_run(reason)
    started = Node()
    try:
        try:
            started.start()
        except NodeError as exc:
            pytest.fail(f"the node did not start: {exc}", pytrace=False)
        log.info("node timings: %s", started.timings)
        yield started
    finally:
        # Also after a failed or half-way start (and an atexit hook covers a killed session).
        started.stop()
