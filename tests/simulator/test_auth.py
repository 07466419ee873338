"""Authentication and token scope: 401 for unknown callers, 403 outside a token's reach."""

from __future__ import annotations

import pytest

from tests.simulator.fixtures import RunningSimulator
from tests.simulator.test_api import assert_error

PLAIN = "/v1/projects/{project}/llm-model-deployments/model"
TEAM = "/v1/teams/{team}/projects/{project}/llm-model-deployments/model"


@pytest.fixture(autouse=True)
def two_teams(simulator: RunningSimulator) -> None:
    for project, team in (("alpha", "team-a"), ("beta", "team-a"), ("gamma", "team-b")):
        simulator.control.put_project(project, team_id=team)
        simulator.control.put_deployment(project, "model")


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}],
)
def test_unknown_callers_get_401_without_rate_limit_headers(
    simulator: RunningSimulator, headers: dict[str, str]
) -> None:
    with simulator.api() as client:
        response = client.get(PLAIN.format(project="alpha"), headers=headers)
    assert_error(response, 401)
    assert not any(name.startswith("x-ratelimit") for name in response.headers)


def test_org_token_needs_the_team_scoped_route(simulator: RunningSimulator) -> None:
    simulator.control.add_token("org", scope="org", team_ids=["team-a", "team-b"])
    with simulator.api("org") as client:
        assert_error(client.get(PLAIN.format(project="alpha")), 403, "team-scoped route")
        assert_error(client.get("/v1/projects/alpha/llm-model-deployments"), 403, "team-scoped route")
        assert client.get(TEAM.format(team="team-a", project="alpha")).status_code == 200
        assert client.get(TEAM.format(team="team-b", project="gamma")).status_code == 200
        assert_error(client.get(TEAM.format(team="team-c", project="alpha")), 403, "team-c")
        assert_error(client.get(TEAM.format(team="team-b", project="alpha")), 404, "project")


def test_team_token_stays_in_its_team(simulator: RunningSimulator) -> None:
    simulator.control.add_token("team-a", team_id="team-a")
    with simulator.api("team-a") as client:
        assert client.get(PLAIN.format(project="alpha")).status_code == 200
        assert client.get(TEAM.format(team="team-a", project="alpha")).status_code == 200
        assert_error(client.get(PLAIN.format(project="gamma")), 404, "project")
        assert_error(client.get(TEAM.format(team="team-b", project="gamma")), 403, "team-b")


def test_project_allow_list(simulator: RunningSimulator) -> None:
    simulator.control.add_token("alpha-only", team_id="team-a", projects=["alpha"])
    with simulator.api("alpha-only") as client:
        assert client.get(PLAIN.format(project="alpha")).status_code == 200
        assert_error(client.get(PLAIN.format(project="beta")), 403, "beta")
        assert_error(client.get("/v1/projects/beta/llm-model-deployments"), 403, "beta")


def test_revoked_token_gets_401(simulator: RunningSimulator) -> None:
    simulator.control.add_token("short-lived", team_id="team-a")
    with simulator.api("short-lived") as client:
        assert client.get(PLAIN.format(project="alpha")).status_code == 200
        simulator.control.revoke_token("short-lived")
        assert_error(client.get(PLAIN.format(project="alpha")), 401)


def test_rescoping_a_token_takes_effect(simulator: RunningSimulator) -> None:
    simulator.control.add_token("token", team_id="team-a")
    simulator.control.add_token("token", team_id="team-b")
    with simulator.api("token") as client:
        assert client.get(PLAIN.format(project="gamma")).status_code == 200
        assert_error(client.get(PLAIN.format(project="alpha")), 404)
