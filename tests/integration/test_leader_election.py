"""Two (then three) operator processes with --leader-elect against one kube-apiserver and one simulator:
exactly one polls, a graceful stop hands over in seconds, a crash fails over within the lease duration,
and no status write is lost or repeated across a hand-over."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import time
from contextlib import AbstractContextManager, ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from northflank_api_simulator.control import SimulatorControl
from tests.controlplane.controlplane import ControlPlane
from tests.simulator.fixtures import RunningSimulator, open_account
from tests.support.cluster import PROJECT, Cluster
from tests.support.metrics import scrape
from tests.support.operator_process import OperatorProcess, OperatorStarter, free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

TOKEN = "nf-ha-token"
LEASE = "nf-llm-ha"
NAMES = ("alpha", "beta", "gamma")
#: What the issue asks for, with controller-runtime's default timings (lease 15 s, renew 10 s, retry 2 s).
GRACEFUL_HANDOVER_SECONDS = 5.0
CRASH_FAILOVER_SECONDS = 20.0


def leader_status(operator: OperatorProcess) -> float | None:
    try:
        return scrape(operator.metrics_url or "", timeout=2).value("leader_election_master_status", name=LEASE)
    except httpx.HTTPError:
        return None


def requests_sent(operator: OperatorProcess) -> float:
    return scrape(operator.metrics_url or "", timeout=2).total("northflank_api_requests_total")


def ready(operator: OperatorProcess) -> str | None:
    try:
        response = httpx.get(f"{operator.metrics_url}/readyz", timeout=2)
    except httpx.HTTPError:
        return None
    return response.text if response.status_code == 200 else None


def take_over(standby: OperatorProcess, since: float, *, timeout: float) -> tuple[float, float]:
    """Seconds from ``since`` until ``standby`` led (its Lease), and until it sent its first request."""
    moments: dict[str, float] = {}

    def progressed() -> bool:
        if "leading" not in moments and leader_status(standby) == 1:
            moments["leading"] = time.monotonic() - since
        if "leading" in moments and requests_sent(standby) > 0:
            moments["polling"] = time.monotonic() - since
        return "polling" in moments

    wait_for(progressed, timeout=timeout, message="the standby taking over", interval=0.1)
    return moments["leading"], moments["polling"]


def phase_changes(cluster: Cluster, name: str, to: str) -> int:
    return sum(1 for e in cluster.events(name) if e["reason"] == "PhaseChanged" and to in e["message"])


def at(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))


def test_one_leader_polls_and_hands_over_on_sigterm_and_sigkill(
    control_plane: ControlPlane,
    namespace: str,
    simulator: RunningSimulator,
    tmp_path: Path,
    start_operator: OperatorStarter,
) -> None:
    nf = open_account(simulator, team="team-ha", projects=[PROJECT], token=TOKEN)
    for name in NAMES:
        nf.put_deployment(PROJECT, name, status="running")

    def operator(log_name: str) -> AbstractContextManager[OperatorProcess]:
        return start_operator(
            api_token=TOKEN,
            log_path=tmp_path / f"{log_name}.log",
            poll_interval_seconds=1.0,
            metrics_port=free_port(),
            extra_args=["--leader-elect", f"--leader-election-id={LEASE}", f"--leader-election-namespace={namespace}"],
        )

    measured: dict[str, float] = {}
    with ExitStack() as stack:
        # Resources left behind would be polled by the all-namespaces operators of later test modules.
        stack.callback(control_plane.kubectl, "delete", "llmd", "--all", "-n", namespace, "--wait=false")
        first = stack.enter_context(operator("first"))
        wait_for(lambda: leader_status(first) == 1, timeout=60, message="the first replica leading")
        cluster = Cluster(control_plane, namespace, first)
        for name in NAMES:
            cluster.apply(name, name)
        cluster.wait_all_ready(NAMES)
        second = stack.enter_context(operator("second"))
        wait_for(lambda: leader_status(second) == 0 and ready(second), timeout=60, message="a ready standby")
        assert "standing by" in (ready(second) or "")

        # Exactly one polls: the standby sent nothing, and the simulator saw exactly the leader's requests.
        nf.clear_requests()
        wait_for(lambda: len(nf.requests(path_contains=PROJECT)) >= 6, timeout=30, message="a few polls")
        assert requests_sent(second) == 0
        listings = [e for e in nf.requests(path_contains=PROJECT) if e["path"].endswith("llm-model-deployments")]
        gaps = [(at(b) - at(a)).total_seconds() for a, b in itertools.pairwise(listings)]
        assert gaps, "no listing pairs"
        assert min(gaps) > 0.5, f"listings closer than one interval allows: {gaps}"
        assert sorted([leader_status(first) or 0, leader_status(second) or 0]) == [0, 1]

        versions = {name: cluster.get(name)["metadata"]["resourceVersion"] for name in NAMES}

        # A graceful stop releases the Lease: the standby polls within seconds.
        started = time.monotonic()
        first.process.send_signal(signal.SIGTERM)
        measured["sigterm"], measured["sigterm_first_poll"] = take_over(second, started, timeout=30)
        assert first.process.wait(timeout=30) == 0
        cluster.operator = second
        wait_for(lambda: requests_sent(second) >= 3, timeout=30, message="the new leader polling")
        # Nothing changed at Northflank, so nothing was written again (no duplicate across the hand-over).
        assert {name: cluster.get(name)["metadata"]["resourceVersion"] for name in NAMES} == versions
        assert scrape(second.metrics_url or "").value("llmmodeldeployment_status_writes_total") == 0
        # And a change is written once, by the new leader.
        nf.patch_deployment(PROJECT, "alpha", status="crashed")
        cluster.wait_phase("alpha", "crashed")
        wait_for(lambda: phase_changes(cluster, "alpha", "crashed") == 1, timeout=30, message="one PhaseChanged")

        third = stack.enter_context(operator("third"))
        wait_for(lambda: leader_status(third) == 0 and ready(third), timeout=60, message="a new ready standby")

        # A crash: the Lease expires, and a change made while nobody leads is not lost.
        started = time.monotonic()
        second.process.send_signal(signal.SIGKILL)
        nf.patch_deployment(PROJECT, "beta", status="paused")
        measured["sigkill"], measured["sigkill_first_poll"] = take_over(third, started, timeout=60)
        cluster.operator = third
        cluster.wait_phase("beta", "paused")
        wait_for(lambda: phase_changes(cluster, "beta", "paused") == 1, timeout=30, message="one PhaseChanged")
        assert phase_changes(cluster, "alpha", "crashed") == 1
        assert cluster.get("gamma")["metadata"]["resourceVersion"] == versions["gamma"]

        lease = json.loads(control_plane.kubectl("get", "lease", LEASE, "-n", namespace, "-o", "json").stdout)
        assert lease["spec"]["leaseTransitions"] >= 2
        assert lease["spec"]["leaseDurationSeconds"] == 15

    print("\nfail-over (lease, first poll):", {key: round(value, 2) for key, value in measured.items()})
    if results := os.environ.get("NFLLM_FAILOVER_RESULTS"):
        # README's figures: `NFLLM_FAILOVER_RESULTS=f.jsonl pytest tests/integration/test_leader_election.py`, repeated.
        with open(results, "a") as out:
            out.write(json.dumps(measured) + "\n")
    assert measured["sigterm"] <= GRACEFUL_HANDOVER_SECONDS
    assert measured["sigkill"] <= CRASH_FAILOVER_SECONDS
    # The new leader's first poll is spread over one effective interval (1 s, stretched to 4 s until the
    # first answer shows the budget: it starts from Northflank's documented 1000/h), so it comes soon after.
    assert measured["sigterm_first_poll"] - measured["sigterm"] <= 6
    assert measured["sigkill_first_poll"] - measured["sigkill"] <= 6
    for log_name in ("first", "second", "third"):
        assert TOKEN not in (tmp_path / f"{log_name}.log").read_text(errors="replace")


#: Short election timings for the paused-leader test (retry < renew deadline < lease), so it takes seconds.
FAST_ELECTION = {
    "NORTHFLANK_LLM_OPERATOR_LEADER_ELECTION_LEASE_DURATION_SECONDS": "6",
    "NORTHFLANK_LLM_OPERATOR_LEADER_ELECTION_RENEW_DEADLINE_SECONDS": "4",
    "NORTHFLANK_LLM_OPERATOR_LEADER_ELECTION_RETRY_PERIOD_SECONDS": "1",
}
#: How long the old leader may take to exit once it runs again (it must not write meanwhile either).
LOST_LEASE_EXIT_SECONDS = 10.0


def requests_by(nf: SimulatorControl, token_id: str) -> int:
    return sum(row["count"] for row in nf.stats() if row["tokenId"] == token_id)


def status_patches(control_plane: ControlPlane) -> float:
    """Every PATCH of an LLMModelDeployment's status the API server has answered (any code, any
    client), from its own request metrics: no-op and refused patches count too."""
    total = 0.0
    for family in text_string_to_metric_families(control_plane.kubectl("get", "--raw", "/metrics").stdout):
        for sample in family.samples:
            labels = sample.labels
            if (sample.name, labels.get("verb"), labels.get("resource"), labels.get("subresource")) == (
                "apiserver_request_total", "PATCH", "llmmodeldeployments", "status",
            ):  # fmt: skip
                total += sample.value
    return total


def test_a_paused_leader_that_lost_the_lease_neither_writes_nor_polls_and_exits(
    control_plane: ControlPlane,
    namespace: str,
    simulator: RunningSimulator,
    tmp_path: Path,
    start_operator: OperatorStarter,
) -> None:
    """Split brain: SIGSTOP the leader, let the standby take the Lease, SIGCONT the old one much later
    with nothing changed at Northflank. Each replica has its own token, so the simulator tells their
    requests apart; the old one must send no Northflank request and no status write, and exit non-zero."""
    old_token, new_token = "nf-fence-old", "nf-fence-new"
    nf = open_account(simulator, team="team-fence", projects=[PROJECT])
    old_id = nf.add_token(old_token, team_id="team-fence")
    nf.add_token(new_token, team_id="team-fence")
    for name in NAMES:
        nf.put_deployment(PROJECT, name, status="running")

    def operator(log_name: str, token: str) -> AbstractContextManager[OperatorProcess]:
        return start_operator(
            api_token=token,
            log_path=tmp_path / f"{log_name}.log",
            poll_interval_seconds=1.0,
            metrics_port=free_port(),
            extra_env=FAST_ELECTION,
            extra_args=["--leader-elect", f"--leader-election-id={LEASE}",
                        f"--leader-election-namespace={namespace}"],
        )  # fmt: skip

    with ExitStack() as stack:
        stack.callback(control_plane.kubectl, "delete", "llmd", "--all", "-n", namespace, "--wait=false")
        old = stack.enter_context(operator("old", old_token))
        # Whatever happens, never leave a stopped process behind (run_operator's SIGTERM would not reach it).
        stack.callback(lambda: None if old.process.poll() is not None else old.process.send_signal(signal.SIGCONT))
        wait_for(lambda: leader_status(old) == 1, timeout=60, message="the first replica leading")
        cluster = Cluster(control_plane, namespace, old)
        for name in NAMES:
            cluster.apply(name, name)
        cluster.wait_all_ready(NAMES)
        new = stack.enter_context(operator("new", new_token))
        wait_for(lambda: leader_status(new) == 0 and ready(new), timeout=60, message="a ready standby")

        paused_at = time.monotonic()
        old.process.send_signal(signal.SIGSTOP)
        take_over(new, paused_at, timeout=30)
        cluster.operator = new
        wait_for(lambda: requests_sent(new) >= 6, timeout=30, message="the new leader polling a few rounds")
        # The old leader stays paused well past its Lease and past the time its statuses would turn
        # stale on its own clock (3 polls of 1 s): that is what made it write on SIGCONT. The pause is
        # the scenario, not a wait for a result.
        time.sleep(max(0.0, paused_at + 12 - time.monotonic()))

        before = {name: item["metadata"]["resourceVersion"] for name, item in cluster.get_all().items()}
        events_before = {name: len(cluster.events(name)) for name in NAMES}
        new_writes_before = scrape(new.metrics_url or "").value("llmmodeldeployment_status_writes_total")
        patches_before = status_patches(control_plane)
        old_requests_before = requests_by(nf, old_id)
        resumed_at = time.monotonic()
        old.process.send_signal(signal.SIGCONT)
        with contextlib.suppress(AssertionError):  # judged below, after what it sent meanwhile
            wait_for(lambda: old.process.poll() is not None, timeout=LOST_LEASE_EXIT_SECONDS,
                     message="the old leader exiting")  # fmt: skip
        exited_after = time.monotonic() - resumed_at
        # Once it has exited (or after the deadline), what it sent is final.
        old_requests = requests_by(nf, old_id) - old_requests_before
        after = {name: item["metadata"]["resourceVersion"] for name, item in cluster.get_all().items()}
        changed = sorted(name for name in NAMES if after[name] != before[name])
        new_writes = scrape(new.metrics_url or "").value("llmmodeldeployment_status_writes_total")
        patches = status_patches(control_plane) - patches_before
        events_added = {name: len(cluster.events(name)) - events_before[name] for name in NAMES}

        print(f"\nold leader after SIGCONT: {old_requests} Northflank requests; status PATCHes at the API "
              f"server {patches:g} (the new leader's writes {new_writes_before:g} -> {new_writes:g}), status "
              f"changed on {changed}, events added {events_added}, exit code {old.process.poll()} after "
              f"{exited_after:.2f}s")  # fmt: skip
        assert old_requests == 0, f"the old leader sent {old_requests} Northflank requests after it lost the Lease"
        # Only the two replicas patch status here, and nothing changed at Northflank: any PATCH is the old
        # leader's (or the new leader's putting back what the old one flapped).
        assert patches == 0, f"{patches:g} status PATCHes reached the API server after SIGCONT"
        assert changed == [], f"status written after the Lease was lost: {changed}"
        assert new_writes == new_writes_before == 0
        assert events_added == dict.fromkeys(NAMES, 0)
        code = old.process.poll()
        assert code is not None, f"the old leader did not exit within {LOST_LEASE_EXIT_SECONDS:g}s of SIGCONT"
        assert code != 0
        assert "Lost the leader election Lease" in old.log()
        # How many the fence refused (poll work that came due during the pause and ran before the
        # election noticed): informative only, the assertions above are what must hold.
        print(next((line for line in old.log().splitlines() if "refused after the renew deadline" in line), ""))

        # The new leader is unaffected: it still leads, polls, and writes a change once.
        assert leader_status(new) == 1
        nf.patch_deployment(PROJECT, "alpha", status="crashed")
        cluster.wait_phase("alpha", "crashed")
        wait_for(lambda: phase_changes(cluster, "alpha", "crashed") == 1, timeout=30, message="one PhaseChanged")
    for log_name, token in (("old", old_token), ("new", new_token)):
        assert token not in (tmp_path / f"{log_name}.log").read_text(errors="replace")
