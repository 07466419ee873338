"""Root conftest: registers the shared fixture plugins (the lead keeps this list)."""

import gc
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.controlplane.fixtures", "tests.simulator.fixtures"]


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """A socket or transport left in a reference cycle is only reported (as an unclosed-resource
    warning, an error here) when the garbage collector reaches it: without this, in whichever later
    test happens to collect, a flake far from its cause. Collected here, it fails the test that leaked it."""
    yield
    gc.collect()
