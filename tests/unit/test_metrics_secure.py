"""``--metrics-secure``: HTTPS, and /metrics only for tokens the API server allows (issue 16, part 4)."""

from __future__ import annotations

import ssl

import httpx
import pytest

from northflank_llm_operator import cli
from northflank_llm_operator.metrics import (
    AccessVerdict,
    MetricsAuthorizer,
    MetricsServer,
    OperatorMetrics,
    self_signed_certificate,
    tls_context,
)
from northflank_llm_operator.settings import OperatorSettings

ALLOWED = AccessVerdict(authenticated=True, allowed=True, detail="'system:serviceaccount:monitoring:prometheus'")
DENIED = AccessVerdict(authenticated=True, allowed=False, detail="'system:serviceaccount:default:default'")
UNKNOWN = AccessVerdict(authenticated=False, allowed=False, detail="a token the API server does not know")


class Reviewer:
    def __init__(self) -> None:
        self.verdicts = {"prometheus-token": ALLOWED, "other-token": DENIED}
        self.calls: list[str] = []
        self.fail = False

    async def review_metrics_access(self, token: str) -> AccessVerdict:
        self.calls.append(token)
        if self.fail:
            raise ConnectionError("API server unreachable")
        return self.verdicts.get(token, UNKNOWN)


async def test_the_api_server_decides_who_reads_metrics() -> None:
    authorizer = MetricsAuthorizer(Reviewer())
    assert await authorizer.check(None) == (401, "Unauthorized: a bearer token is required")
    assert (await authorizer.check("Basic dXNlcjpwYXNz"))[0] == 401
    assert (await authorizer.check("Bearer "))[0] == 401
    assert (await authorizer.check("Bearer nobody-knows-me"))[0] == 401
    assert (await authorizer.check("Bearer other-token"))[0] == 403
    assert await authorizer.check("Bearer prometheus-token") == (200, "OK")
    assert (await authorizer.check("bearer prometheus-token"))[0] == 200


async def test_verdicts_are_cached_briefly_and_failures_not_at_all() -> None:
    reviewer, now = Reviewer(), [0.0]
    authorizer = MetricsAuthorizer(reviewer, clock=lambda: now[0], allowed_ttl=60, denied_ttl=10)
    for _ in range(3):
        assert (await authorizer.check("Bearer prometheus-token"))[0] == 200
        assert (await authorizer.check("Bearer other-token"))[0] == 403
    assert reviewer.calls == ["prometheus-token", "other-token"]
    now[0] = 11  # the denial expired, the grant not yet: a new grant shows within seconds
    reviewer.verdicts["other-token"] = ALLOWED
    assert (await authorizer.check("Bearer other-token"))[0] == 200
    now[0] = 61  # a revoked grant ends within a minute
    reviewer.verdicts["prometheus-token"] = DENIED
    assert (await authorizer.check("Bearer prometheus-token"))[0] == 403
    reviewer.fail = True
    assert (await authorizer.check("Bearer third-token"))[0] == 500
    assert (await authorizer.check("Bearer third-token"))[0] == 500
    assert reviewer.calls[-2:] == ["third-token", "third-token"], "a failed review is asked again"


async def test_the_cache_does_not_grow_without_bound() -> None:
    reviewer = Reviewer()
    authorizer = MetricsAuthorizer(reviewer, max_entries=10)
    for i in range(50):
        await authorizer.check(f"Bearer token-{i}")
    assert len(authorizer._cache) <= 10


def test_the_self_signed_certificate_serves_tls() -> None:
    cert, key = self_signed_certificate("operator-pod")
    assert cert.startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY" in key
    context = tls_context(None, hostname="operator-pod")
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


async def test_the_secure_endpoint_serves_https_and_checks_tokens() -> None:
    metrics = OperatorMetrics(leader_election_id="x", process_metrics=False)
    server = MetricsServer(
        metrics,
        ready=lambda: (True, "leading"),
        authorizer=MetricsAuthorizer(Reviewer()),
        ssl_context=tls_context(None),
    )
    await server.start("127.0.0.1:0")
    try:
        base = f"https://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(verify=False) as http:  # noqa: S501 - the certificate is self-signed
            assert (await http.get(f"{base}/metrics")).status_code == 401
            assert (
                await http.get(f"{base}/metrics", headers={"Authorization": "Bearer other-token"})
            ).status_code == 403
            allowed = await http.get(f"{base}/metrics", headers={"Authorization": "Bearer prometheus-token"})
            assert allowed.status_code == 200
            assert "leader_election_master_status" in allowed.text
            assert (await http.get(f"{base}/readyz")).status_code == 200, "the kubelet's probe sends no token"
        with pytest.raises(httpx.HTTPError):
            async with httpx.AsyncClient() as plain:
                await plain.get(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        await server.stop()


def test_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not OperatorSettings().metrics_secure, "plain HTTP unless asked"
    monkeypatch.setenv("NORTHFLANK_LLM_OPERATOR_METRICS_SECURE", "true")
    assert OperatorSettings().metrics_secure
    args = cli.build_parser().parse_args(["run", "-A", "--no-metrics-secure", "--metrics-cert-dir", "/certs"])
    assert (args.metrics_secure, args.metrics_cert_dir) == (False, "/certs")
