"""``kubectl get llmd`` and ``-o wide`` on the real API server: every column for a running, a paused, an
annotation-paused and a never-observed resource (issue 16, part 2)."""

from __future__ import annotations

import copy

import pytest

from northflank_api_simulator.defaults import default_spec
from tests.controlplane.controlplane import ControlPlane
from tests.simulator.fixtures import RunningSimulator, open_account
from tests.support.cluster import DEFAULT_COLUMNS, PROJECT, WIDE_COLUMNS, Cluster, parse_table
from tests.support.operator_process import OperatorStarter

pytestmark = pytest.mark.integration

TOKEN = "nf-columns-token"
DEFAULT = DEFAULT_COLUMNS
WIDE = WIDE_COLUMNS


def test_every_column_renders_for_running_paused_and_never_observed_resources(
    start_operator: OperatorStarter, simulator: RunningSimulator, namespace: str, control_plane: ControlPlane
) -> None:
    nf = open_account(simulator, team="team-columns", projects=[PROJECT], token=TOKEN)
    spec = default_spec()
    spec["configuration"]["name"] = "meta-llama/Llama-3.1-8B-Instruct"
    spec["configuration"]["nodeConfiguration"]["gpu"]["configuration"].update(gpuType="h100-80", gpuCount=2)
    spec["configuration"]["architecture"]["workerConfig"]["replicas"] = 3
    running = nf.put_deployment(PROJECT, "llama", status="running", spec=spec)
    paused_spec = copy.deepcopy(spec)
    paused_spec["configuration"]["nodeConfiguration"]["gpu"] = {"enabled": False}
    nf.put_deployment(PROJECT, "qwen", status="paused", spec=paused_spec)
    nf.put_deployment(PROJECT, "held", status="running")
    # Only resources labelled shard=a are the operator's: "never" is never observed.
    with start_operator(api_token=TOKEN, extra_args=["--selector", "shard=a"]) as operator:
        cluster = Cluster(control_plane, namespace, operator)
        mine = {"shard": "a"}
        manifests = [
            cluster.manifest("llama", "llama"),
            cluster.manifest("qwen", "qwen", expectedPhase="paused"),
            cluster.manifest("held", "held"),
            cluster.manifest("never", "llama"),
        ]
        for manifest in manifests[:3]:
            manifest["metadata"]["labels"] = mine
        manifests[2]["metadata"]["annotations"] = {"northflank-llm-operator.dev/paused": "Yes"}
        cluster.apply_all(manifests)
        cluster.wait_condition("llama", "Ready", "True", "Running")
        cluster.wait_condition("qwen", "Ready", "True", "PausedAsExpected")
        cluster.wait_condition("held", "Synced", "False", "ReconcilePaused")

        default_text = cluster.plane.kubectl("get", "llmd", "-n", namespace).stdout
        table = {row["NAME"]: row for row in parse_table(default_text, DEFAULT)}
        wide_text = cluster.plane.kubectl("get", "llmd", "-n", namespace, "-o", "wide").stdout
        wide = {row["NAME"]: row for row in parse_table(wide_text, WIDE)}

    print(f"\n{wide_text}")
    url = "https://" + running["ports"][0]["dns"]
    assert {k: v for k, v in wide["llama"].items() if k not in ("LAST CHANGE", "AGE")} == {
        "NAME": "llama", "READY": "True", "PHASE": "running", "REASON": "Running",
        "MODEL": "meta-llama/Llama-3.1-8B-Instruct", "GPU": "h100-80 × 2", "ENGINE": "vllm", "REPLICAS": "3",
        "URL": url, "PROJECT": PROJECT, "DEPLOYMENT": "llama", "EXPECTED": "", "INTERVAL(S)": "1",
        "MESSAGE": "The deployment is running.",
    }  # fmt: skip
    assert {k: wide["qwen"][k] for k in ("READY", "PHASE", "REASON", "GPU", "EXPECTED", "MESSAGE")} == {
        "READY": "True", "PHASE": "paused", "REASON": "PausedAsExpected", "GPU": "none", "EXPECTED": "paused",
        "MESSAGE": "The deployment is paused, as spec.expectedPhase asks.",
    }  # fmt: skip
    # Paused by the annotation before any observation: nothing observed, the reason says why.
    # (kubectl prints a field the object lacks as an empty cell.)
    held = wide["held"]
    assert (held["PHASE"], held["READY"], held["MODEL"], held["GPU"]) == ("unknown", "Unknown", "", "")
    assert held["REASON"] == "ReconcilePaused"
    never = wide["never"]
    assert {k: v for k, v in never.items() if k not in ("NAME", "AGE", "PROJECT", "DEPLOYMENT")} == {
        k: "" for k in WIDE if k not in ("NAME", "AGE", "PROJECT", "DEPLOYMENT")
    }
    for name, row in table.items():
        timeless = [k for k in DEFAULT if k not in ("LAST CHANGE", "AGE")]  # the two reads are moments apart
        assert {k: row[k] for k in timeless} == {k: wide[name][k] for k in timeless}, "wide starts with the default"
        assert row["AGE"]
    assert table["llama"]["LAST CHANGE"]
