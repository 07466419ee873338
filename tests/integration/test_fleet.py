"""The poll loop observes fleets, not single resources: proven against the real API server and the simulator.

Resources of one project that share a token are one group, observed with one listing of the project;
a lone resource is observed with a GET; new resources are batched; a deployment missing from a listing is
confirmed with a GET before anyone is told NotFound; staleness is judged on a clock even while the
credential's budget is held; and an unchanged fleet costs no Kubernetes writes. Every claim about
Northflank traffic is checked in the simulator's request log.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from northflank_api_simulator.control import SimulatorControl
from tests.simulator.fixtures import RunningSimulator, open_account
from tests.support.cluster import DEADLINE, PROJECT, Cluster, conditions_by_type
from tests.support.operator_process import ModuleOperatorStarter, OperatorProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

OPERATOR_TOKEN = "nf-fleet-operator-token"
TEAM = "team-fleet"
OTHER_PROJECT = "solo-project"
LISTING = f"/v1/projects/{PROJECT}/llm-model-deployments"
FIRST_PAGE = {"per_page": "100"}
#: The operator-wide interval (seconds) this module's operator runs with.
INTERVAL = 1
STALE_AFTER_INTERVALS = 3


@pytest.fixture(scope="module")
def operator(start_module_operator: ModuleOperatorStarter) -> Iterator[OperatorProcess]:
    with start_module_operator(api_token=OPERATOR_TOKEN, poll_interval_seconds=float(INTERVAL)) as process:
        yield process


@pytest.fixture
def nf(simulator: RunningSimulator) -> SimulatorControl:
    return open_account(simulator, team=TEAM, projects=[PROJECT, OTHER_PROJECT], token=OPERATOR_TOKEN)


# -- reading the simulator's request log ------------------------------------------------------------


def listings(log: list[dict[str, Any]], project: str = PROJECT) -> list[dict[str, Any]]:
    path = f"/v1/projects/{project}/llm-model-deployments"
    return [entry for entry in log if entry["path"] == path]


def gets(log: list[dict[str, Any]], deployment_id: str | None = None, project: str = PROJECT) -> list[dict[str, Any]]:
    prefix = f"/v1/projects/{project}/llm-model-deployments/"
    return [
        entry
        for entry in log
        if entry["path"].startswith(prefix) and deployment_id in (None, entry["path"].removeprefix(prefix))
    ]


def at(entry: dict[str, Any]) -> datetime:
    """When the simulator answered a logged request."""
    return datetime.fromisoformat(str(entry["time"]).replace("Z", "+00:00"))


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def describe(log: list[dict[str, Any]]) -> str:
    return "\n".join(f"{e['time']} {e['method']} {e['path']} {e['query']} -> {e['status']}" for e in log)


def ready_of(item: dict[str, Any]) -> dict[str, Any]:
    return conditions_by_type(item.get("status") or {}).get("Ready", {})


# -- 1. groups: one listing per project, a GET for a lone resource, batching ------------------------


def test_a_burst_of_new_resources_costs_one_listing_and_a_lone_resource_one_get(
    cluster: Cluster, nf: SimulatorControl
) -> None:
    deployments = [f"model-{i:02d}" for i in range(30)]
    for deployment in deployments:
        nf.put_deployment(PROJECT, deployment, status="running")
    nf.put_deployment(OTHER_PROJECT, "solo", status="running")
    # A long interval keeps routine observations out of the log while the burst is judged.
    spec: dict[str, Any] = {"pollIntervalSeconds": 60}
    manifests = [cluster.manifest(d, d, **spec) for d in deployments]
    # Resources naming a deployment that others name too are observed with it, at no extra cost.
    manifests += [cluster.manifest(f"model-00-alias-{n}", "model-00", **spec) for n in (1, 2)]
    manifests += [cluster.manifest(f"solo-{n}", "solo", project=OTHER_PROJECT, **spec) for n in ("a", "b")]
    names = [m["metadata"]["name"] for m in manifests]

    cluster.apply_all(manifests)  # 34 resources in one kubectl apply (a v1 List)
    items = cluster.wait_all_ready(names)

    log = nf.requests()
    listed = listings(log)
    # One listing observes the whole burst; two if the apply straddled the 1 s batch delay.
    assert 1 <= len(listed) <= 2, describe(log)
    assert all(entry["query"] == FIRST_PAGE and entry["status"] == 200 for entry in listed), describe(log)
    assert gets(log) == [], f"no resource of a listed project is observed with a GET:\n{describe(log)}"
    # The lone deployment of the other project: one GET, however many resources name it, and no listing.
    assert [e["path"] for e in gets(log, project=OTHER_PROJECT)] == [
        f"/v1/projects/{OTHER_PROJECT}/llm-model-deployments/solo"
    ]
    assert listings(log, OTHER_PROJECT) == []
    # Nothing else was asked about these projects (other tests' leftovers in other namespaces aside).
    ours = [e for e in log if e["path"].startswith((f"/v1/projects/{PROJECT}/", f"/v1/projects/{OTHER_PROJECT}/"))
            or e["path"] == f"/v1/projects/{PROJECT}/llm-model-deployments"]  # fmt: skip
    assert len(ours) == len(listed) + 1, describe(log)

    for name in names:
        status = items[name]["status"]
        assert status["phase"] == "running"
        assert status["effectivePollIntervalSeconds"] == 60
    assert items["model-00-alias-1"]["status"]["deployment"] == items["model-00"]["status"]["deployment"]


def test_a_project_longer_than_one_page_is_listed_page_by_page_with_the_cursor(
    cluster: Cluster, nf: SimulatorControl
) -> None:
    for i in range(150):
        nf.put_deployment(PROJECT, f"page-{i:03d}", status="running")
    tracked = ["page-000", "page-075", "page-149"]  # the last one is on the second page
    cluster.apply_all(cluster.manifest(d, d, pollIntervalSeconds=60) for d in tracked)
    cluster.wait_all_ready(tracked)

    log = nf.requests()
    listed = listings(log)
    assert len(listed) >= 2, describe(log)
    first, second = listed[0], listed[1]
    assert first["query"] == FIRST_PAGE
    assert second["query"].get("per_page") == "100"
    assert second["query"].get("cursor"), f"the second page is asked for with the cursor:\n{describe(log)}"
    assert "page" not in second["query"]
    assert gets(log) == [], describe(log)


def test_a_resource_that_joins_while_its_project_is_being_listed_costs_no_get(
    cluster: Cluster, nf: SimulatorControl
) -> None:
    for deployment in ("early-a", "early-b", "late"):
        nf.put_deployment(PROJECT, deployment, status="running")
    # Every listing takes 3 s (the request timeout is 5 s), so most of the time one is in flight.
    nf.add_fault(latency_seconds=3, path=r"/llm-model-deployments$")
    cluster.apply_all(cluster.manifest(d, d) for d in ("early-a", "early-b"))
    cluster.wait_all_ready(["early-a", "early-b"])
    # The next listing starts about one interval after the first one answered and stays in flight
    # for 3 s: join in the middle of it.
    first_answer = at(listings(nf.requests())[0])
    wait_for(
        lambda: datetime.now(UTC) >= first_answer + timedelta(seconds=INTERVAL + 1.5),
        timeout=DEADLINE,
        message="the middle of the second listing",
    )
    cluster.apply("late", "late")
    cluster.wait_condition("late", "Ready", "True")

    log = nf.requests()
    # The listing in flight when "late" joined did contain it (it exists at Northflank): nothing is
    # missing, so there is nothing to confirm with a GET; the next listing observes it.
    assert gets(log) == [], describe(log)
    assert "missing from a listing" not in cluster.operator.log()


# -- 2. a deployment missing from a complete listing is confirmed with a GET -------------------------


def test_a_deployment_missing_from_a_listing_is_confirmed_with_a_get_before_it_is_not_found(
    cluster: Cluster, nf: SimulatorControl
) -> None:
    for deployment in ("kept", "gone"):
        nf.put_deployment(PROJECT, deployment, status="running")
    cluster.apply_all(cluster.manifest(d, d) for d in ("kept", "gone"))
    cluster.wait_all_ready(["kept", "gone"])
    assert gets(nf.requests()) == [], "two resources of a project are observed by listing it"

    before = len(nf.requests())
    nf.delete_deployment(PROJECT, "gone")
    not_found = cluster.wait_condition("gone", "Ready", "False", "NotFound")

    log = nf.requests()
    after = log[before:]
    confirmations = gets(after, "gone")
    assert confirmations, f"a GET confirms the absence:\n{describe(after)}"
    confirmation = confirmations[0]
    assert confirmation["status"] == 404
    # The absence was first seen in a complete listing, then confirmed by the GET.
    earlier = after[: after.index(confirmation)]
    assert any(e["path"] == LISTING and e["status"] == 200 for e in earlier), describe(after)
    assert gets(earlier, "gone") == []
    # ... and the condition follows the GET, not the listing (second precision, as metav1.Time).
    ready = conditions_by_type(not_found)["Ready"]
    assert parse_time(ready["lastTransitionTime"]) >= at(confirmation).replace(microsecond=0)
    assert conditions_by_type(not_found)["Synced"]["reason"] == "NotFound"
    # The other resource is untouched and still observed by listing only.
    assert ready_of(cluster.get("kept"))["status"] == "True"
    assert gets(log, "kept") == []


# -- 3. the rate-limit hold, and staleness on a clock while it lasts ------------------------------

#: The simulator's window while the budget is spent: long enough to watch Ready turn stale inside it,
#: short enough for the hold to end within the test.
WINDOW_SECONDS = 25
#: The window of the test that only checks the hold itself: an operator poll is rejected about an
#: interval after the window begins, which leaves a hold of several intervals to send nothing in.
SHORT_WINDOW_SECONDS = 8


@dataclass(frozen=True)
class Hold:
    """The operator's poll of ``held`` was rejected with 429 because someone else spent the window."""

    mark: int  # index of the first request log entry of the spent window
    rejection: dict[str, Any]  # the operator's request that got the 429
    last_success: datetime  # when the operator's last poll before it succeeded
    window_reset: datetime  # when the simulator's window resets

    def operators(self, log: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The operator's requests since the window began (the test spends it with /v1/auth)."""
        return [e for e in log[self.mark :] if e["path"] != "/v1/auth"]


def spend_the_window_under_the_operator(
    cluster: Cluster, nf: SimulatorControl, window_seconds: int = WINDOW_SECONDS
) -> Hold:
    nf.put_deployment(PROJECT, "held", status="running")
    cluster.apply("held", "held")
    good = cluster.wait_condition("held", "Ready", "True")
    assert good["effectivePollIntervalSeconds"] == INTERVAL

    # Right after one of the operator's polls the next one is about an interval away: spend the new
    # window in that gap, as someone else sharing the account would, so that the operator's next poll
    # is rejected (its own pacing would never run into the limit).
    polls = len(gets(nf.requests(), "held"))
    wait_for(lambda: len(gets(nf.requests(), "held")) > polls, timeout=DEADLINE, message="a poll", interval=0.01)
    mark = len(nf.requests())
    nf.set_rate_limit(3, window_seconds)
    with httpx.Client(base_url=nf.base_url, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}) as other:
        for _attempt in range(4):
            if other.get("/v1/auth").status_code == 429:
                break

    def rejected() -> dict[str, Any] | None:
        log = nf.requests()
        return next((e for e in log[mark:] if e["path"] != "/v1/auth" and e["status"] == 429), None)

    rejection = wait_for(rejected, timeout=10, message="the operator's poll rejected with 429")
    log = nf.requests()
    window = log[mark:]
    before_rejection = log[: log.index(rejection)]
    return Hold(
        mark=mark,
        rejection=rejection,
        last_success=max(at(e) for e in before_rejection if e["status"] == 200 and e["path"] != "/v1/auth"),
        window_reset=at(window[0]) + timedelta(seconds=window_seconds),  # it began with its first request
    )


def restore_the_budget_and_recover(cluster: Cluster, nf: SimulatorControl, hold: Hold) -> None:
    """A big budget again; the operator probes once its hold ends (the window's reset) and recovers."""
    nf.set_rate_limit(100_000, 3600)
    until_reset = (hold.window_reset - datetime.now(UTC)).total_seconds()
    cluster.wait_condition("held", "Synced", "True", timeout=max(until_reset, 0) + DEADLINE)
    cluster.wait_condition("held", "Ready", "True")


def test_a_rate_limited_credential_sends_nothing_until_the_reset_and_then_recovers(
    cluster: Cluster, nf: SimulatorControl
) -> None:
    hold = spend_the_window_under_the_operator(cluster, nf, window_seconds=SHORT_WINDOW_SECONDS)
    limited = cluster.wait_condition("held", "Synced", "False", "RateLimited")
    assert "rate limit" in conditions_by_type(limited)["Synced"]["message"]
    assert "spent" in conditions_by_type(limited)["Synced"]["message"]

    restore_the_budget_and_recover(cluster, nf, hold)

    # Nothing was sent with the held credentials between the 429 and the window's reset; then one probe.
    requests = hold.operators(nf.requests())
    after_rejection = requests[requests.index(hold.rejection) + 1 :]
    early = [e for e in after_rejection if at(e) < hold.window_reset]
    assert early == [], f"requests during the hold (the window resets at {hold.window_reset}):\n{describe(early)}"
    assert after_rejection, "the operator probes again after the reset"
    assert after_rejection[0]["status"] == 200
    assert cluster.status("held")["effectivePollIntervalSeconds"] == INTERVAL


def test_ready_turns_stale_on_time_while_the_rate_limit_holds_every_request(
    cluster: Cluster, nf: SimulatorControl
) -> None:
    hold = spend_the_window_under_the_operator(cluster, nf)
    try:
        # Staleness is judged on a clock: no request is needed (none may be sent) for Ready to say
        # that the observation is no longer current. Wait no longer than the hold itself.
        until_reset = (hold.window_reset - datetime.now(UTC)).total_seconds()
        stale = cluster.wait_condition("held", "Ready", "Unknown", "StatusStale", timeout=max(until_reset - 1, 1))
        seen_stale = datetime.now(UTC)
        effective = stale["effectivePollIntervalSeconds"]
        due = hold.last_success + timedelta(seconds=STALE_AFTER_INTERVALS * effective + 4)
        assert seen_stale <= due, f"stale at {seen_stale}, due by {due} (effective interval {effective}s)"
        assert seen_stale < hold.window_reset, "Ready turns stale while the budget is held, not after"
        message = conditions_by_type(stale)["Ready"]["message"]
        assert "rate limit" in message, message
        assert "spent" in message, message
        synced = conditions_by_type(stale)["Synced"]
        assert (synced["status"], synced["reason"]) == ("False", "RateLimited")
    finally:
        # The module's operator outlives this test: leave it with a big budget, recovered.
        restore_the_budget_and_recover(cluster, nf, hold)


# -- 4. an unchanged fleet costs no status writes ---------------------------------------------------


def test_an_unchanged_fleet_is_listed_every_interval_without_a_single_status_write(
    cluster: Cluster, nf: SimulatorControl
) -> None:
    names = [f"fleet-{i:02d}" for i in range(20)]
    for name in names:
        nf.put_deployment(PROJECT, name, status="running")
    cluster.apply_all(cluster.manifest(name, name) for name in names)
    cluster.wait_all_ready(names)

    before = cluster.get_all()
    listed = len(listings(nf.requests()))
    wait_for(
        lambda: len(listings(nf.requests())) >= listed + 4,
        timeout=DEADLINE,
        message="four more listings of the project",
    )
    after = cluster.get_all()

    versions = {name: before[name]["metadata"]["resourceVersion"] for name in names}
    assert {name: after[name]["metadata"]["resourceVersion"] for name in names} == versions
    log = nf.requests()
    assert gets(log) == [], describe(log)
    assert all(e["query"] == FIRST_PAGE for e in listings(log))
    # 5. the budget suffices: every resource is observed at the interval it asks for.
    assert {after[name]["status"]["effectivePollIntervalSeconds"] for name in names} == {INTERVAL}


# -- 5. the effective interval is the requested one when the budget suffices -------------------------


def test_the_effective_interval_is_the_requested_one_when_the_budget_suffices(
    cluster: Cluster, nf: SimulatorControl
) -> None:
    nf.put_deployment(PROJECT, "default-interval", status="running")
    nf.put_deployment(OTHER_PROJECT, "own-interval", status="running")
    cluster.apply("default-interval", "default-interval")
    manifest = cluster.manifest("own-interval", "own-interval", project=OTHER_PROJECT, pollIntervalSeconds=10)
    cluster.apply_all([manifest])

    assert cluster.wait_condition("default-interval", "Ready", "True")["effectivePollIntervalSeconds"] == INTERVAL
    assert cluster.wait_condition("own-interval", "Ready", "True")["effectivePollIntervalSeconds"] == 10
    synced = conditions_by_type(cluster.status("own-interval"))["Synced"]
    assert "stretches" not in synced["message"]
