"""Where a node cannot start, node tests skip with the reason by hand and fail under CI=true."""

from __future__ import annotations

import pytest

from tests.node.conftest import cannot_run


def test_without_ci_a_node_test_that_cannot_run_is_skipped_with_the_reason() -> None:
    with pytest.raises(pytest.skip.Exception, match="need root"):
        cannot_run("the node tests need root", {})


@pytest.mark.parametrize("value", ["true", "1", "TRUE"])
def test_under_ci_a_node_test_that_cannot_run_fails(value: str) -> None:
    with pytest.raises(pytest.fail.Exception, match="cannot run under CI=true: no namespaces"):
        cannot_run("no namespaces", {"CI": value})
