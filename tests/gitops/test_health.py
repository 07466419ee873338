"""What Flux (kstatus) and Argo CD (our health.lua) make of the status the operator writes.

Every resource evaluated here is produced by the operator's real status mapping
(``compute_status``) from a short history of polls, wrapped in a complete ``LLMModelDeployment``.
The evaluators are the real ones, in one small Go program (``tests/gitops/evaluators``, built by
``tests/controlplane/build.sh gitops``): ``sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute`` and
``github.com/yuin/gopher-lua`` with the libraries Argo CD opens for a health check from argocd-cm.
No cluster is needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

import pytest
import yaml

from northflank_llm_operator.conditions import Condition
from northflank_llm_operator.management import ForProvider
from northflank_llm_operator.northflank import (
    APITimeoutError,
    InvalidResponseError,
    LLMModelDeployment,
    RateLimit,
)
from northflank_llm_operator.northflank.errors import error_class_for
from northflank_llm_operator.status import PAUSED, Failure, Observation, Outcome, Timing, compute_status
from northflank_llm_operator.writes import MANAGED, WriteDecision, Writing, overlay_status
from tests.controlplane.controlplane import BUILD_SCRIPT, ControlPlaneError, resolve_bin_dir
from tests.unit.payloads import full_deployment

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
EVALUATORS_SRC: Final = REPO_ROOT / "tests" / "gitops" / "evaluators"
ARGOCD_DIR: Final = REPO_ROOT / "charts" / "northflank-llm-operator" / "files" / "argocd"
HEALTH_LUA: Final = ARGOCD_DIR / "health.lua"
ARGOCD_CM: Final = ARGOCD_DIR / "argocd-cm.yaml"
ARGOCD_CM_KEY: Final = "resource.customizations.health.northflank-llm-operator.dev_LLMModelDeployment"
BINARY: Final = "gitops-evaluators"
BUILD_STAMP: Final = ".gitops-evaluators.build"

T0: Final = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
HEARTBEAT: Final = timedelta(minutes=10)
STALE_AFTER: Final = timedelta(seconds=90)


# ---------------------------------------------------------------------------------------------------
# the evaluators binary


def sources_hash() -> str:
    """The stamp build.sh records next to the binary: sha256 of go.mod + go.sum + main.go."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((EVALUATORS_SRC / name).read_bytes())
    return digest.hexdigest()


def _is_current(bin_dir: Path) -> bool:
    stamp = bin_dir / BUILD_STAMP
    return os.access(bin_dir / BINARY, os.X_OK) and stamp.is_file() and stamp.read_text().strip() == sources_hash()


def build_evaluators() -> Path:
    """The built evaluators; builds them (``build.sh gitops``, ~30 s cold) when missing or stale."""
    try:
        bin_dir = resolve_bin_dir(build=False)
    except ControlPlaneError as exc:
        raise RuntimeError(f"cannot locate the pinned tools: {exc}") from None
    if not _is_current(bin_dir):
        proc = subprocess.run(
            ["bash", str(BUILD_SCRIPT), "gitops"], capture_output=True, text=True, timeout=900, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"`{BUILD_SCRIPT} gitops` failed with exit code {proc.returncode}; "
                f"its output ends with:\n{proc.stderr[-3000:]}"
            )
        if not _is_current(bin_dir):
            raise RuntimeError(f"`{BUILD_SCRIPT} gitops` succeeded but {bin_dir / BINARY} is missing or not current")
    return bin_dir / BINARY


@dataclass(frozen=True)
class Verdict:
    status: str
    message: str


def evaluate(binary: Path, args: list[str], resource: dict[str, Any]) -> Verdict:
    proc = subprocess.run(
        [str(binary), *args], input=json.dumps(resource), capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, f"{binary.name} {' '.join(args)} failed: {proc.stderr}"
    answer = json.loads(proc.stdout)
    return Verdict(status=answer["status"], message=answer["message"])


# ---------------------------------------------------------------------------------------------------
# resources from the real status mapping


@dataclass(frozen=True)
class Poll:
    """One poll: what it found, when (seconds after T0) and the generation it saw."""

    outcome: Outcome
    at: float = 0
    generation: int = 1
    expected_phase: str = "running"
    for_provider: ForProvider | None = None  # spec.forProvider (management, issue 17)


def observed(phase: str) -> Observation:
    return Observation(LLMModelDeployment.model_validate(full_deployment(status=phase)))


def http_error(code: int) -> Failure:
    cls = error_class_for(code)
    path = "/v1/projects/llm-demo/llm-model-deployments/llama-3-8b"
    message = f"Northflank answered {path} with HTTP {code}: boom"
    return Failure.from_error(cls(message, status_code=code, rate_limit=RateLimit()))


INVALID_RESPONSE: Final = Failure.from_error(
    InvalidResponseError(
        "Northflank's response does not match the API contract: data.status: Field required",
        status_code=200,
        rate_limit=RateLimit(),
    )
)
TIMEOUT: Final = Failure.from_error(APITimeoutError("Northflank did not answer within 10s"))
# What the poller makes of a CredentialsError or a spec its model rejects (poller._observe).
CREDENTIALS_NOT_FOUND: Final = Failure(
    "CredentialsNotFound", "Secret 'northflank-team-two' does not exist in namespace 'models'.", transient=False
)
INVALID_SPEC: Final = Failure("InvalidSpec", "spec is invalid: pollIntervalSeconds: too small", transient=False)


def status_after(*polls: Poll) -> dict[str, Any]:
    status: dict[str, Any] = {}
    for poll in polls:
        timing = Timing(now=T0 + timedelta(seconds=poll.at), heartbeat=HEARTBEAT, stale_after=STALE_AFTER)
        status = compute_status(
            status, poll.outcome, generation=poll.generation, timing=timing, expected_phase=poll.expected_phase,
            for_provider=poll.for_provider,
        ).status  # fmt: skip
    return status


def resource(
    status: dict[str, Any] | None,
    generation: int,
    *,
    spec: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A complete LLMModelDeployment as the API server returns it; ``spec`` and ``metadata`` add fields."""
    obj: dict[str, Any] = {
        "apiVersion": "northflank-llm-operator.dev/v1alpha1",
        "kind": "LLMModelDeployment",
        "metadata": {
            "name": "llama-3-8b",
            "namespace": "models",
            "uid": "0b6f7c1e-3c1a-4f51-9a53-2f1f0c7d9e01",
            "resourceVersion": "4242",
            "generation": generation,
            "creationTimestamp": "2026-11-26T09:59:58Z",
        },
        "spec": {"projectId": "llm-demo", "llmModelDeploymentId": "llama-3-8b", **(spec or {})},
    }
    obj["metadata"].update(metadata or {})
    if status is not None:
        obj["status"] = status
    return obj


@dataclass(frozen=True)
class Scenario:
    id: str
    status: dict[str, Any] | None  # None: the operator has not written status yet
    kstatus: str
    argocd: str
    argocd_message: str  # a substring of Argo CD's health message
    generation: int = 1  # metadata.generation
    spec: dict[str, Any] | None = None  # fields beyond projectId and llmModelDeploymentId
    metadata: dict[str, Any] | None = None  # e.g. deletionTimestamp and finalizers

    def resource(self) -> dict[str, Any]:
        return resource(self.status, self.generation, spec=self.spec, metadata=self.metadata)


def first(phase: str, kstatus: str, argocd: str, message: str) -> Scenario:
    return Scenario(f"first observation: {phase}", status_after(Poll(observed(phase))), kstatus, argocd, message)


RUNNING: Final = Poll(observed("running"))
REPORTS = "Northflank reports the deployment as "

SCENARIOS: Final = [
    # kstatus calls a resource without status Current: it has no way to tell "no controller writes status
    # for this kind" from "the operator has not got to it yet" (kubernetes-sigs/cli-utils#632). Hence the
    # CRD defaults status to {observedGeneration: -1}, like Flux's own CRDs; this row is only reachable
    # for objects created before that default existed.
    Scenario("no status at all", None, "Current", "Progressing", "Waiting for the operator to observe generation 1"),
    Scenario(
        "no observation yet: the CRD's default status (observedGeneration -1)",
        {"observedGeneration": -1},
        "InProgress",
        "Progressing",
        "Waiting for the operator to observe generation 1",
    ),
    first("pending", "InProgress", "Progressing", REPORTS + "pending."),
    first("provisioning", "InProgress", "Progressing", REPORTS + "provisioning."),
    first("starting", "InProgress", "Progressing", REPORTS + "starting."),
    first("deleting", "InProgress", "Progressing", REPORTS + "deleting."),
    first("running", "Current", "Healthy", "The deployment is running."),
    first("paused", "InProgress", "Suspended", REPORTS + "paused; the expected phase is running."),
    first("crashed", "Failed", "Degraded", REPORTS + "crashed."),
    first("hibernating", "InProgress", "Unknown", "which this operator version does not know"),
    Scenario(
        "pending then running",
        status_after(Poll(observed("pending")), Poll(observed("running"), at=60)),
        "Current",
        "Healthy",
        "The deployment is running.",
    ),
    Scenario(
        "500 blip after running",
        status_after(RUNNING, Poll(http_error(500), at=30)),
        "Current",
        "Healthy",
        "Last poll failed (ServerError): Northflank answered",
    ),
    Scenario(
        "429 after running",
        status_after(RUNNING, Poll(http_error(429), at=30)),
        "Current",
        "Healthy",
        "Last poll failed (RateLimited)",
    ),
    Scenario(
        "500 blip while starting",
        status_after(Poll(observed("starting")), Poll(http_error(500), at=30)),
        "InProgress",
        "Progressing",
        REPORTS + "starting.",
    ),
    Scenario(
        "500 blip while paused",
        status_after(Poll(observed("paused")), Poll(http_error(500), at=30)),
        "InProgress",
        "Suspended",
        REPORTS + "paused;",
    ),
    Scenario(
        "expected paused and paused",
        status_after(Poll(observed("paused"), expected_phase="paused")),
        "Current",
        "Healthy",
        "The deployment is paused, as spec.expectedPhase asks.",
    ),
    Scenario(
        "expected paused but running",
        status_after(Poll(observed("running"), expected_phase="paused")),
        "InProgress",
        "Degraded",
        REPORTS + "running; the expected phase is paused.",
    ),
    Scenario(
        "expected paused while starting",
        status_after(Poll(observed("starting"), expected_phase="paused")),
        "InProgress",
        "Progressing",
        REPORTS + "starting.",
    ),
    Scenario(
        "reconcile paused by annotation after running",
        status_after(RUNNING, Poll(PAUSED, at=30)),
        "Current",
        "Healthy",
        "The deployment is running. Polling is paused by the annotation",
    ),
    Scenario(
        "reconcile paused by annotation, then stale",
        status_after(RUNNING, Poll(PAUSED, at=30), Poll(PAUSED, at=STALE_AFTER.total_seconds() + 1)),
        "InProgress",
        "Unknown",
        "No successful poll since 2026-11-26T10:00:00Z",
    ),
    Scenario(
        "stale observation (500s past staleAfter)",
        status_after(RUNNING, Poll(http_error(500), at=30), Poll(http_error(500), at=STALE_AFTER.total_seconds() + 1)),
        "InProgress",
        "Unknown",
        "No successful poll since 2026-11-26T10:00:00Z",
    ),
    Scenario(
        "401 after running",
        status_after(RUNNING, Poll(http_error(401), at=30)),
        "Failed",
        "Degraded",
        "with HTTP 401",
    ),
    Scenario(
        "403 after running",
        status_after(RUNNING, Poll(http_error(403), at=30)),
        "Failed",
        "Degraded",
        "with HTTP 403",
    ),
    Scenario(
        "404 after deleting",
        status_after(Poll(observed("deleting")), Poll(http_error(404), at=30)),
        "Failed",
        "Degraded",
        "with HTTP 404",
    ),
    Scenario("404 before any observation", status_after(Poll(http_error(404))), "Failed", "Degraded", "with HTTP 404"),
    Scenario(
        "invalid response before any observation",
        status_after(Poll(INVALID_RESPONSE)),
        "InProgress",
        "Unknown",
        "Not observed yet: Northflank's response does not match the API contract",
    ),
    Scenario(
        "timeout before any observation",
        status_after(Poll(TIMEOUT)),
        "InProgress",
        "Unknown",
        "Not observed yet: Northflank did not answer",
    ),
    Scenario(
        "credentials Secret missing",
        status_after(Poll(CREDENTIALS_NOT_FOUND)),
        "Failed",
        "Degraded",
        "Secret 'northflank-team-two' does not exist",
    ),
    Scenario("invalid spec", status_after(Poll(INVALID_SPEC)), "Failed", "Degraded", "spec is invalid"),
    Scenario(
        "recovered after 401",
        status_after(RUNNING, Poll(http_error(401), at=30), Poll(observed("running"), at=60)),
        "Current",
        "Healthy",
        "The deployment is running.",
    ),
    Scenario(
        "generation bump not yet observed",
        status_after(RUNNING),
        "InProgress",
        "Progressing",
        "Waiting for the operator to observe generation 2",
        generation=2,
    ),
    Scenario(
        "generation bump not yet observed while crashed",
        status_after(Poll(observed("crashed"))),
        "InProgress",
        "Progressing",
        "Waiting for the operator to observe generation 2",
        generation=2,
    ),
    Scenario(
        "generation bump observed",
        status_after(RUNNING, Poll(observed("running"), at=30, generation=2)),
        "Current",
        "Healthy",
        "The deployment is running.",
        generation=2,
    ),
]


# ---------------------------------------------------------------------------------------------------
# management (issue 17)
#
# Every status comes from the operator's own code: status.drift and UpToDate from compute_status with
# spec.forProvider, the Managed condition and the write reasons of Reconciling and Stalled from the
# write overlay (writes.overlay_status) with the conditions plan_write decides.

#: What full_deployment() reports, as a manifest would ask for it: no drift.
FOR_PROVIDER: Final = {
    "description": "A deployment for DeepSeek V3 model",
    "tags": ["llm", "gpu-heavy"],
    "spec": {"type": "custom", "configuration": {"engine": "vllm", "name": "deepseek-ai/DeepSeek-V3"}},
}
#: The same with a tag Northflank does not report: drift at ``tags``.
FOR_PROVIDER_DRIFTED: Final = {**FOR_PROVIDER, "tags": ["llm", "gpu-heavy", "chat"]}
DRIFTED_MESSAGE: Final = "The deployment differs from spec.forProvider at tags (status.drift)."
DELETE_FINALIZER: Final = "northflank-llm-operator.dev/delete-at-northflank"
DELETING: Final = {"deletionTimestamp": "2026-11-26T10:01:00Z", "finalizers": [DELETE_FINALIZER]}


def observe(for_provider: dict[str, Any]) -> dict[str, Any]:
    return {"managementPolicies": ["Observe"], "forProvider": for_provider}


def manage_all(for_provider: dict[str, Any]) -> dict[str, Any]:
    return {"managementPolicies": ["*"], "adoptExisting": True, "forProvider": for_provider}


def polled(phase: str, for_provider: dict[str, Any], *, at: float = 0, generation: int = 1) -> Poll:
    return Poll(observed(phase), at=at, generation=generation, for_provider=ForProvider.model_validate(for_provider))


ConditionStatus = Literal["True", "False", "Unknown"]


def managed(
    status: dict[str, Any], value: ConditionStatus, reason: str, message: str, *, writing: Writing | None = None
) -> dict[str, Any]:
    """``status`` as the write overlay leaves it once plan_write decided Managed ``value``/``reason``
    (and a write in progress, ``writing``)."""
    condition = Condition(MANAGED, value, reason, message)
    moment = max(c["lastTransitionTime"] for c in status["conditions"])
    return overlay_status(
        status, managed=condition, writing=writing, stalled=WriteDecision(managed=condition).stalled,
        management=None, generation=status["observedGeneration"],
        now=datetime.fromisoformat(moment.replace("Z", "+00:00")),
    )  # fmt: skip


CREATED: Final[tuple[ConditionStatus, str, str]] = ("True", "Created", "Created at Northflank by this resource.")
ADOPTED: Final[tuple[ConditionStatus, str, str]] = (
    "True",
    "Adopted",
    "Adopted (spec.adoptExisting); managed by this resource.",
)


def not_managed(reason: str, message: str, kstatus: str) -> Scenario:
    """Managed=False: the resource asks for writes that the operator will not send."""
    status = managed(status_after(polled("running", FOR_PROVIDER_DRIFTED)), "False", reason, message)
    return Scenario(f"managed: {reason}", status, kstatus, "Degraded", message, spec=manage_all(FOR_PROVIDER_DRIFTED))


MANAGEMENT_SCENARIOS: Final = [
    Scenario(
        "observe: up to date",
        status_after(polled("running", FOR_PROVIDER)),
        "Current",
        "Healthy",
        "The deployment is running.",
        spec=observe(FOR_PROVIDER),
    ),
    Scenario(
        "observe: drifted",
        status_after(polled("running", FOR_PROVIDER_DRIFTED)),
        "Current",
        "Healthy",
        "The deployment is running. Drifted: " + DRIFTED_MESSAGE,
        spec=observe(FOR_PROVIDER_DRIFTED),
    ),
    Scenario(
        "observe: drifted, last poll failed",
        status_after(
            polled("running", FOR_PROVIDER_DRIFTED),
            Poll(http_error(500), at=30, for_provider=ForProvider.model_validate(FOR_PROVIDER_DRIFTED)),
        ),
        "Current",
        "Healthy",
        "with HTTP 500: boom Drifted: " + DRIFTED_MESSAGE,
        spec=observe(FOR_PROVIDER_DRIFTED),
    ),
    Scenario(
        "observe: drifted while starting",
        status_after(polled("starting", FOR_PROVIDER_DRIFTED)),
        "InProgress",
        "Progressing",
        REPORTS + "starting.",
        spec=observe(FOR_PROVIDER_DRIFTED),
    ),
    Scenario(
        "managed: creating, Northflank reports pending",
        managed(status_after(polled("pending", FOR_PROVIDER)), *CREATED, writing="Creating"),
        "InProgress",
        "Progressing",
        "Creating the deployment at Northflank.",
        spec=manage_all(FOR_PROVIDER),
    ),
    Scenario(
        "managed: created and running",
        managed(status_after(polled("pending", FOR_PROVIDER), polled("running", FOR_PROVIDER, at=60)), *CREATED),
        "Current",
        "Healthy",
        "The deployment is running.",
        spec=manage_all(FOR_PROVIDER),
    ),
    Scenario(
        "managed: updating while still running the old configuration",
        managed(status_after(polled("running", FOR_PROVIDER_DRIFTED)), *ADOPTED, writing="Updating"),
        "InProgress",
        "Progressing",
        "Updating the deployment at Northflank.",
        spec=manage_all(FOR_PROVIDER_DRIFTED),
    ),
    Scenario(
        "managed: updating, Northflank reports starting",
        managed(
            status_after(polled("running", FOR_PROVIDER), polled("starting", FOR_PROVIDER, at=30)),
            *ADOPTED,
            writing="Updating",
        ),
        "InProgress",
        "Progressing",
        "Updating the deployment at Northflank.",
        spec=manage_all(FOR_PROVIDER),
    ),
    Scenario(
        "managed: drifted, update not converging",
        managed(
            status_after(polled("running", FOR_PROVIDER_DRIFTED)),
            "False",
            "UpdateNotConverging",
            "The update for generation 1 was sent; tags still differ.",
        ),
        "Failed",
        "Degraded",
        "The update for generation 1 was sent; tags still differ.",
        spec=manage_all(FOR_PROVIDER_DRIFTED),
    ),
    # The manifest or the installation must change: Stalled too, so kstatus says Failed as Argo CD says Degraded.
    not_managed(
        "ManagementDisabled", "The operator is not enabled for management; nothing is sent to Northflank.", "Failed"
    ),
    not_managed("PermissionDenied", "The token lacks the permission Project > AiModels > General > Update.", "Failed"),
    not_managed("Conflict", "models/llama-other manages the same deployment.", "Failed"),
    not_managed(
        "NotAdopted", "The deployment exists and this resource did not create it; set adoptExisting.", "Failed"
    ),
    not_managed("InvalidName", "spec.forProvider.name 'Llama 3' does not slug to llama-3-8b.", "Failed"),
    # Retried: Degraded while it fails, but not Stalled.
    not_managed(
        "WriteFailed", "POST .../llama-3-8b answered HTTP 400: spec.configuration.engine is invalid", "Current"
    ),
    Scenario(
        "managed: deleting, Northflank reports deleting",
        managed(
            status_after(polled("running", FOR_PROVIDER), polled("deleting", FOR_PROVIDER, at=30, generation=2)),
            "True",
            "Adopted",
            "Being deleted at Northflank.",
            writing="Deleting",
        ),
        "Terminating",
        "Progressing",
        "Deleting the deployment at Northflank.",
        generation=2,
        spec=manage_all(FOR_PROVIDER),
        metadata=DELETING,
    ),
]
SCENARIOS.extend(MANAGEMENT_SCENARIOS)


def summary(status: dict[str, Any] | None) -> str:
    """The part of a status the evaluators read, for failure messages."""
    if status is None:
        return "none"
    conditions = [f"{c['type']}={c['status']} ({c['reason']})" for c in status.get("conditions", [])]
    return f"phase={status.get('phase')} observedGeneration={status.get('observedGeneration')} {conditions}"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_gitops_tools_read_the_status(evaluators: Path, scenario: Scenario) -> None:
    obj = scenario.resource()
    kstatus = evaluate(evaluators, ["kstatus"], obj)
    argocd = evaluate(evaluators, ["argocd-health", str(HEALTH_LUA)], obj)
    assert (kstatus.status, argocd.status) == (scenario.kstatus, scenario.argocd), (
        f"kstatus: {kstatus}\nArgo CD: {argocd}\nstatus: {summary(scenario.status)}"
    )
    assert scenario.argocd_message in argocd.message, argocd


def test_scenarios_cover_every_phase() -> None:
    phases = {s.status.get("phase") for s in SCENARIOS if s.status is not None}
    assert phases >= {"pending", "provisioning", "starting", "running", "paused", "crashed", "deleting", "unknown"}


# ---------------------------------------------------------------------------------------------------
# the Lua file and the argocd-cm snippet


def test_argocd_cm_snippet_embeds_health_lua_verbatim() -> None:
    snippet = yaml.safe_load(ARGOCD_CM.read_text())
    assert (snippet["apiVersion"], snippet["kind"], snippet["metadata"]["name"]) == ("v1", "ConfigMap", "argocd-cm")
    assert snippet["data"] == {ARGOCD_CM_KEY: HEALTH_LUA.read_text()}, (
        f"{ARGOCD_CM.name}'s {ARGOCD_CM_KEY} is not {HEALTH_LUA.name}; paste the file in again"
    )


def test_health_lua_needs_no_library_argo_cd_keeps_closed() -> None:
    """Argo CD opens only base, table and a reduced os for argocd-cm health checks (no useOpenLibs)."""
    code = "\n".join(line.split("--", 1)[0] for line in HEALTH_LUA.read_text().splitlines())
    assert not re.findall(r"\b(?:string|math|io|os|coroutine|debug|require)\b", code)


def test_harness_opens_only_argo_cd_sandbox_libraries(evaluators: Path, tmp_path: Path) -> None:
    script = tmp_path / "probe.lua"
    script.write_text(
        "local closed = string == nil and math == nil and io == nil and debug == nil\n"
        "local hs = {}\n"
        'if closed and table ~= nil and ipairs ~= nil then hs.status = "Healthy" else hs.status = "Degraded" end\n'
        "hs.message = tostring(obj.metadata.generation)\n"
        "return hs\n"
    )
    assert evaluate(evaluators, ["argocd-health", str(script)], resource(None, 7)) == Verdict("Healthy", "7")
