"""The local demo: a real kube-apiserver, the Northflank API simulator, the operator, and the
sample resources from crds/examples/, with ``kubectl get llmd`` printed as the phases move.

Run it with ``make demo``. Everything it starts runs on loopback and is stopped at the end.

``make demo IN_CLUSTER=1`` (``--in-cluster``) runs the operator the way users do instead: a real node
(tests/node: kubelet, containerd, the image built from the Dockerfile) and ``helm install`` of the chart;
the simulator then listens on the node's bridge address, where the operator Pod reaches it, and
``kubectl get pods`` is shown next to ``kubectl get llmd``. Needs root.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from northflank_api_simulator.control import SimulatorControl
from northflank_api_simulator.defaults import default_spec
from tests.controlplane.controlplane import ControlPlane
from tests.node.node import Node
from tests.support.kube_api import wait_established

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "crds" / "examples"
NAMESPACE = "llm-demo"
PROJECT = "llm-demo"
TEAM = "demo-team"
OPERATOR_TOKEN = "demo-operator-token"  # the simulator's, not a real Northflank token
CONSOLE_SCRIPT = Path(sys.executable).with_name("northflank-llm-operator")
CHART = REPO / "charts" / "northflank-llm-operator"
RELEASE, RELEASE_NAMESPACE = "nfllm", "nfllm-system"

# What the simulated Northflank does to each deployment, step by step (seconds after the previous).
SCRIPTS = {
    "llama-3-8b": [(4, "provisioning"), (4, "starting"), (4, "running")],
    "qwen-2-7b": [(6, "provisioning"), (10, "starting"), (10, "running")],  # polled every 10 s
    "mistral-7b": [(3, "provisioning"), (4, "starting"), (4, "crashed")],
}
FINAL = {"llama-3-8b": "running", "qwen-2-7b": "running", "mistral-7b": "crashed"}
# The model and GPUs each deployment runs (the simulator's default spec otherwise): type, count, replicas.
MODELS = {
    "llama-3-8b": ("meta-llama/Meta-Llama-3-8B-Instruct", "l4-24", 1, 2),
    "qwen-2-7b": ("Qwen/Qwen2-7B-Instruct", "a100-40", 1, 1),
    "mistral-7b": ("mistralai/Mistral-7B-Instruct-v0.3", "h100-80", 2, 1),
}


def demo_spec(deployment: str) -> dict[str, Any]:
    model, gpu_type, gpu_count, replicas = MODELS[deployment]
    spec = default_spec()
    configuration = spec["configuration"]
    configuration["name"] = model
    configuration["nodeConfiguration"]["gpu"]["configuration"].update(gpuType=gpu_type, gpuCount=gpu_count)
    configuration["architecture"]["workerConfig"]["replicas"] = replicas
    configuration["architecture"]["workerConfig"]["parallelismConfig"]["tensorParallelism"] = gpu_count
    return spec


def say(message: str) -> None:
    print(f"\n==> {message}", flush=True)


@contextlib.contextmanager
def background(command: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_for_file(path: Path, process: subprocess.Popen[bytes], log: Path, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{log.name} did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)
    return path.read_text().strip()


@contextlib.contextmanager
def local_operator(command: list[str], log: Path, env: dict[str, str]) -> Iterator[Callable[[], None]]:
    """The operator as a local process; yields a check that raises SystemExit once it has exited."""
    with background(command, log, env) as process:

        def check_alive() -> None:
            if process.poll() is not None:
                raise SystemExit(f"the operator exited with {process.returncode}")

        yield check_alive


@contextlib.contextmanager
def in_cluster_operator(plane: ControlPlane, image: str, base_url: str) -> Iterator[Callable[[], None]]:
    """``helm install`` the chart with the locally built image; yields a check that the Pod is still fine."""
    repository, tag = image.rsplit(":", 1)
    say(f"helm install {RELEASE} charts/northflank-llm-operator (image {image}), operator in a Pod")
    plane.kubectl("create", "namespace", RELEASE_NAMESPACE)
    plane.kubectl("create", "secret", "generic", "northflank-api-token", "-n", RELEASE_NAMESPACE,
                  f"--from-literal=token={OPERATOR_TOKEN}")  # fmt: skip
    plane.helm(
        "install", RELEASE, str(CHART), "-n", RELEASE_NAMESPACE,
        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
        "--set", f"northflank.apiBaseUrl={base_url}", "--set", "northflank.existingSecret=northflank-api-token",
        "--set", f"watchNamespaces={{{NAMESPACE}}}", "--set", "operator.pollIntervalSeconds=10",
        "--set", "crds.enabled=false",  # the demo applied crds/ already
        "--wait", "--timeout=180s", timeout=240,
    )  # fmt: skip
    print(plane.kubectl("get", "pods", "-n", RELEASE_NAMESPACE, "-o", "wide").stdout)

    def check_alive() -> None:
        pods = json.loads(plane.kubectl("get", "pods", "-n", RELEASE_NAMESPACE, "-o", "json").stdout)["items"]
        restarts = sum(c.get("restartCount", 0) for p in pods for c in p["status"].get("containerStatuses", []))
        if restarts:
            logs = plane.kubectl("logs", "-n", RELEASE_NAMESPACE, f"deployment/{RELEASE}-northflank-llm-operator",
                                 "--previous", check=False).stdout  # fmt: skip
            raise SystemExit(f"the operator Pod restarted {restarts} time(s):\n{logs[-3000:]}")

    try:
        yield check_alive
    finally:
        say("kubectl logs of the operator Pod (last lines)")
        logs = plane.kubectl("logs", "-n", RELEASE_NAMESPACE, f"deployment/{RELEASE}-northflank-llm-operator",
                             "--tail=5", check=False).stdout  # fmt: skip
        print(logs)
        plane.helm("uninstall", RELEASE, "-n", RELEASE_NAMESPACE, "--wait", check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for the phases to settle")
    parser.add_argument("--keep", action="store_true", help="leave everything running until Ctrl-C")
    parser.add_argument("--in-cluster", action="store_true", help="run the operator in a Pod from the chart")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="nfllm-demo-"))
    if args.in_cluster:
        say("Starting a real node: control plane, kubelet, containerd, CNI bridge, CoreDNS (needs root)")
        node = Node()
        try:
            node.start()
            print(f"node ready; image {node.image}; timings {node.timings}")
            return run(node.plane, workdir, args, node_image=node.image, node_address=node.plane.node_address)
        finally:
            node.stop()
    say(f"Starting a real kube-apiserver + etcd on loopback (state in {workdir})")
    plane = ControlPlane(workdir / "control-plane").start()
    try:
        return run(plane, workdir, args)
    finally:
        plane.stop()


def run(
    plane: ControlPlane,
    workdir: Path,
    args: argparse.Namespace,
    *,
    node_image: str | None = None,
    node_address: str | None = None,
) -> int:
    env = plane.env(os.environ)
    print(plane.kubectl("version").stdout)

    say("Installing the CRD from crds/")
    plane.kubectl("apply", "-f", str(REPO / "crds"))
    wait_established(plane, "llmmodeldeployments.northflank-llm-operator.dev")

    say("Starting the Northflank API simulator")
    simulator_log, port_file = workdir / "simulator.log", workdir / "simulator.url"
    simulator_cmd = [str(CONSOLE_SCRIPT), "simulator", "--port", "0", "--port-file", str(port_file)]
    if node_address is not None:  # where the operator Pod reaches it: the node's own bridge address
        simulator_cmd += ["--host", node_address]
    with background(simulator_cmd, simulator_log, env) as simulator:
        base_url = wait_for_file(port_file, simulator, simulator_log)
        nf = SimulatorControl(base_url)
        nf.add_token(OPERATOR_TOKEN, team_id=TEAM)
        nf.add_token("demo-team-two-token", team_id=TEAM)
        nf.add_token("demo-org-token", scope="org", team_ids=[TEAM])
        nf.put_project(PROJECT, team_id=TEAM)
        for deployment in SCRIPTS:
            nf.put_deployment(PROJECT, deployment, status="pending", spec=demo_spec(deployment))
        print(f"simulator at {base_url}; deployments {', '.join(SCRIPTS)} are pending")

        say(f"Applying the sample resources from crds/examples/ into namespace {NAMESPACE}")
        plane.kubectl("create", "namespace", NAMESPACE)
        for secret, token in (("northflank-team-two", "demo-team-two-token"), ("northflank-org", "demo-org-token")):
            plane.kubectl("create", "secret", "generic", secret, "-n", NAMESPACE, f"--from-literal=token={token}")
        plane.kubectl("apply", "-n", NAMESPACE, "-f", str(EXAMPLES))

        if node_image is None:
            say("Starting the operator: northflank-llm-operator run --standalone -n llm-demo")
            operator_env = env | {
                "NORTHFLANK_API_BASE_URL": base_url,
                "NORTHFLANK_API_TOKEN": OPERATOR_TOKEN,
                "NORTHFLANK_LLM_OPERATOR_POLL_INTERVAL_SECONDS": "2",
            }
            operator_cmd = [str(CONSOLE_SCRIPT), "run", "--standalone", "-n", NAMESPACE]
            operator = local_operator(operator_cmd, workdir / "operator.log", operator_env)
        else:
            operator = in_cluster_operator(plane, node_image, base_url)
        with operator as check_alive:
            say("Northflank moves the deployments along; watching kubectl get llmd")
            for deployment, steps in SCRIPTS.items():
                nf.run_script(PROJECT, deployment, [{"afterSeconds": d, "status": s} for d, s in steps])
            settled = watch(plane, check_alive, args.timeout, pods=node_image is not None)

            say("kubectl wait --for=condition=Ready llmd/llama-3-8b")
            print(plane.kubectl("wait", "--for=condition=Ready", "llmd/llama-3-8b", "-n", NAMESPACE).stdout)
            say("kubectl get llmd -o wide")
            print(plane.kubectl("get", "llmd", "-n", NAMESPACE, "-o", "wide").stdout)
            say("Events on mistral-7b")
            print(plane.kubectl("get", "events", "-n", NAMESPACE, "--field-selector",
                                "involvedObject.name=mistral-7b", "--sort-by=.lastTimestamp").stdout)  # fmt: skip
            if args.keep:
                say(f"Still running. KUBECONFIG={plane.kubeconfig}  (Ctrl-C to stop and clean up)")
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        check_alive()
                        time.sleep(1)
    say("Stopped the operator, the simulator and the control plane")
    return 0 if settled else 1


def watch(plane: ControlPlane, check_alive: Callable[[], None], timeout: float, *, pods: bool = False) -> bool:
    """Print the table every time it changes; True once every resource reached its final phase."""
    deadline = time.monotonic() + timeout
    shown = ""
    while time.monotonic() < deadline:
        check_alive()
        table = plane.kubectl("get", "llmd", "-n", NAMESPACE).stdout
        rows = "\n".join(line.rsplit(None, 2)[0] if "LAST CHANGE" not in line else line for line in table.splitlines())
        if rows != shown:
            if pods:  # the operator's own Pod, next to the resources it mirrors
                table = (
                    f"$ kubectl get pods -n {RELEASE_NAMESPACE}\n"
                    + plane.kubectl("get", "pods", "-n", RELEASE_NAMESPACE).stdout
                    + f"$ kubectl get llmd -n {NAMESPACE}\n"
                    + table
                )
            print(f"--- {time.strftime('%H:%M:%S')}\n{table}", flush=True)
            shown = rows
        items = json.loads(plane.kubectl("get", "llmd", "-n", NAMESPACE, "-o", "json").stdout)["items"]
        phases = {item["metadata"]["name"]: item.get("status", {}).get("phase") for item in items}
        if phases == FINAL:
            return True
        time.sleep(0.5)
    print(f"timed out after {timeout:g}s", file=sys.stderr)
    return False


if __name__ == "__main__":
    sys.exit(main())
