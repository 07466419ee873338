"""Credentials as a real operator process sees them (issue 7, items 7, 9 and 11): a rotating token
file, a token the HTTP library would refuse (every library logging at DEBUG), and Secret reads the
API server fails for a while."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from northflank_api_simulator.control import SimulatorControl
from tests.controlplane.controlplane import ControlPlane
from tests.simulator.fixtures import RunningSimulator, open_account
from tests.support.api_proxy import faulty_api_proxy
from tests.support.cluster import PROJECT, Cluster, conditions_by_type, delete_all_resources
from tests.support.operator_process import OperatorStarter
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

TEAM = "team-rotation"
FIRST = "nf-rotation-first-token"
SECOND = "nf-rotation-second-token"


@pytest.fixture
def cleanup(control_plane: ControlPlane, namespace: str) -> Iterator[None]:
    yield
    delete_all_resources(control_plane, namespace)


@pytest.fixture
def nf(simulator: RunningSimulator) -> SimulatorControl:
    return open_account(simulator, team=TEAM, projects=[PROJECT])


def _write_atomically(path: Path, content: str) -> None:
    """As the kubelet updates a mounted Secret: a new file renamed into place."""
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(content)
    os.replace(temporary, path)


def test_a_rotated_token_file_is_used_without_a_restart(
    control_plane: ControlPlane,
    nf: SimulatorControl,
    namespace: str,
    tmp_path: Path,
    cleanup: None,
    start_operator: OperatorStarter,
) -> None:
    first_id = nf.add_token(FIRST, team_id=TEAM)
    token_file = tmp_path / "token"
    token_file.write_text(FIRST + "\n")  # a Secret written from a file keeps its newline
    nf.put_deployment(PROJECT, "rotating", status="running")
    with start_operator(
        api_token=None,
        poll_interval_seconds=2.0,
        extra_env={
            "NORTHFLANK_API_TOKEN_FILE": str(token_file),
            "NORTHFLANK_LLM_OPERATOR_CREDENTIALS_CACHE_SECONDS": "1",
        },
    ) as operator:
        cluster = Cluster(control_plane, namespace, operator)
        cluster.apply("rotating", "rotating")
        cluster.wait_condition("rotating", "Ready", "True")

        second_id = nf.add_token(SECOND, team_id=TEAM)
        _write_atomically(token_file, SECOND + "\n")
        nf.revoke_token(FIRST)
        process_before = operator.process.pid

        def used_second() -> bool:
            return any(row["tokenId"] == second_id and row["status"] == 200 for row in nf.stats())

        wait_for(used_second, timeout=30, message="a successful poll with the rotated token")
        status = cluster.wait_condition("rotating", "Synced", "True")
        assert conditions_by_type(status)["Ready"]["status"] == "True"
        assert operator.process.pid == process_before
        operator.assert_alive()
    assert first_id != second_id
    log = operator.log()
    assert FIRST not in log
    assert SECOND not in log


def test_an_unusable_token_is_credentials_invalid_and_never_logged_at_debug(
    control_plane: ControlPlane,
    nf: SimulatorControl,
    namespace: str,
    tmp_path: Path,
    cleanup: None,
    start_operator: OperatorStarter,
) -> None:
    """A control character inside the token: before, h11 refused the header and httpcore's DEBUG line
    printed the whole Bearer value; every poll failed as ConnectionFailed."""
    token = "nf-\x01-debug-leak-token"
    nf.put_deployment(PROJECT, "refused", status="running")
    with start_operator(
        api_token=token,
        poll_interval_seconds=2.0,
        debug=True,
    ) as operator:
        cluster = Cluster(control_plane, namespace, operator)
        cluster.apply("refused", "refused")
        status = cluster.wait_condition("refused", "Synced", "False", "CredentialsInvalid")
        message = conditions_by_type(status)["Synced"]["message"]
        assert "NORTHFLANK_API_TOKEN" in message
        assert "printable ASCII" in message
        assert conditions_by_type(status)["Stalled"]["status"] == "True"
    log = operator.log()
    assert "DEBUG" in log or "debug" in log.lower()  # the libraries did log at DEBUG
    assert "debug-leak-token" not in log
    assert not nf.requests(), "an unusable token must not be sent at all"


#: Only Secret reads fail: GET /api/v1/namespaces/NS/secrets/NAME.
_SECRET_READ = r"/api/v1/namespaces/[^/]+/secrets/[^/]+"


def test_a_secret_read_the_api_server_fails_is_transient_not_stalled(
    control_plane: ControlPlane,
    nf: SimulatorControl,
    namespace: str,
    tmp_path: Path,
    cleanup: None,
    start_operator: OperatorStarter,
) -> None:
    """Issue 7, item 11, on the real API server behind a front that answers 503 to Secret reads only:
    a resource whose Secret cannot be read now waits as transient (no Stalled), one that read its token
    before keeps polling with it, and both are Ready once the API server answers again."""
    nf.add_token(FIRST, team_id=TEAM)
    nf.put_deployment(PROJECT, "known", status="running")
    nf.put_deployment(PROJECT, "newcomer", status="running")
    secret_ref = {"name": "team-token", "key": "token"}
    for secret in ("team-token", "newcomer-token"):
        control_plane.kubectl("create", "secret", "generic", secret, "-n", namespace, f"--from-literal=token={FIRST}")
    with (
        faulty_api_proxy(control_plane, tmp_path) as proxy,
        start_operator(
            kubeconfig=proxy.kubeconfig(tmp_path),
            api_token=None,
            poll_interval_seconds=2.0,
            extra_env={"NORTHFLANK_LLM_OPERATOR_CREDENTIALS_CACHE_SECONDS": "1"},
        ) as operator,
    ):
        cluster = Cluster(control_plane, namespace, operator)
        cluster.apply("known", "known", credentialsSecretRef=secret_ref)
        cluster.wait_condition("known", "Ready", "True")

        proxy.fail("GET", _SECRET_READ, 503)
        # A Secret this operator has never read: there is no earlier token to fall back on.
        cluster.apply("newcomer", "newcomer", credentialsSecretRef={"name": "newcomer-token", "key": "token"})
        status = cluster.wait_condition("newcomer", "Synced", "False", "CredentialsUnavailable")
        conditions = conditions_by_type(status)
        assert "Stalled" not in conditions or conditions["Stalled"]["status"] != "True", conditions
        assert proxy.refused > 0
        # The resource that read its token before keeps being observed with it meanwhile.
        # (Only "known" is planned: the newcomer has no token, so every request now is known's.)
        polls_before = sum(row["count"] for row in nf.stats() if row["status"] == 200)
        wait_for(
            lambda: sum(row["count"] for row in nf.stats() if row["status"] == 200) >= polls_before + 2,
            timeout=30, message="the known resource still polled while Secret reads fail",
        )  # fmt: skip
        assert conditions_by_type(cluster.get("known")["status"])["Ready"]["status"] == "True"

        proxy.heal()
        cluster.wait_condition("newcomer", "Ready", "True")
        operator.assert_alive()
