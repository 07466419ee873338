"""The local demo: a real kube-apiserver, the Northflank API simulator, the operator, and the
sample resources from crds/examples/, with ``kubectl get llmd`` printed as the phases move.

Run it with ``make demo``. Everything it starts runs on loopback and is stopped at the end.
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
from collections.abc import Iterator
from pathlib import Path

from northflank_api_simulator.control import SimulatorControl
from tests.controlplane.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "crds" / "examples"
NAMESPACE = "llm-demo"
PROJECT = "llm-demo"
TEAM = "demo-team"
OPERATOR_TOKEN = "demo-operator-token"  # the simulator's, not a real Northflank token
CONSOLE_SCRIPT = Path(sys.executable).with_name("northflank-llm-operator")

# What the simulated Northflank does to each deployment, step by step (seconds after the previous).
SCRIPTS = {
    "llama-3-8b": [(4, "provisioning"), (4, "starting"), (4, "running")],
    "qwen-2-7b": [(6, "provisioning"), (10, "starting"), (10, "running")],  # polled every 10 s
    "mistral-7b": [(3, "provisioning"), (4, "starting"), (4, "crashed")],
}
FINAL = {"llama-3-8b": "running", "qwen-2-7b": "running", "mistral-7b": "crashed"}


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for the phases to settle")
    parser.add_argument("--keep", action="store_true", help="leave everything running until Ctrl-C")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="nfllm-demo-"))
    say(f"Starting a real kube-apiserver + etcd on loopback (state in {workdir})")
    plane = ControlPlane(workdir / "control-plane").start()
    try:
        return run(plane, workdir, args)
    finally:
        plane.stop()


def run(plane: ControlPlane, workdir: Path, args: argparse.Namespace) -> int:
    env = plane.env(os.environ)
    print(plane.kubectl("version").stdout)

    say("Installing the CRD from crds/")
    plane.kubectl("apply", "-f", str(REPO / "crds"))
    plane.kubectl("wait", "--for=condition=established", "crd/llmmodeldeployments.northflank-llm-operator.dev")

    say("Starting the Northflank API simulator")
    simulator_log, port_file = workdir / "simulator.log", workdir / "simulator.url"
    simulator_cmd = [str(CONSOLE_SCRIPT), "simulator", "--port", "0", "--port-file", str(port_file)]
    with background(simulator_cmd, simulator_log, env) as simulator:
        base_url = wait_for_file(port_file, simulator, simulator_log)
        nf = SimulatorControl(base_url)
        nf.add_token(OPERATOR_TOKEN, team_id=TEAM)
        nf.add_token("demo-team-two-token", team_id=TEAM)
        nf.add_token("demo-org-token", scope="org", team_ids=[TEAM])
        nf.put_project(PROJECT, team_id=TEAM)
        for deployment in SCRIPTS:
            nf.put_deployment(PROJECT, deployment, status="pending")
        print(f"simulator at {base_url}; deployments {', '.join(SCRIPTS)} are pending")

        say(f"Applying the sample resources from crds/examples/ into namespace {NAMESPACE}")
        plane.kubectl("create", "namespace", NAMESPACE)
        for secret, token in (("northflank-team-two", "demo-team-two-token"), ("northflank-org", "demo-org-token")):
            plane.kubectl("create", "secret", "generic", secret, "-n", NAMESPACE, f"--from-literal=token={token}")
        plane.kubectl("apply", "-n", NAMESPACE, "-f", str(EXAMPLES))

        say("Starting the operator: northflank-llm-operator run --standalone -n llm-demo")
        operator_env = env | {
            "NORTHFLANK_API_BASE_URL": base_url,
            "NORTHFLANK_API_TOKEN": OPERATOR_TOKEN,
            "NORTHFLANK_LLM_OPERATOR_POLL_INTERVAL_SECONDS": "2",
        }
        operator_cmd = [str(CONSOLE_SCRIPT), "run", "--standalone", "-n", NAMESPACE]
        with background(operator_cmd, workdir / "operator.log", operator_env) as operator:
            say("Northflank moves the deployments along; watching kubectl get llmd")
            for deployment, steps in SCRIPTS.items():
                nf.run_script(PROJECT, deployment, [{"afterSeconds": d, "status": s} for d, s in steps])
            settled = watch(plane, operator, args.timeout)

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
                    operator.wait()
    say("Stopped the operator, the simulator and the control plane")
    return 0 if settled else 1


def watch(plane: ControlPlane, operator: subprocess.Popen[bytes], timeout: float) -> bool:
    """Print the table every time it changes; True once every resource reached its final phase."""
    deadline = time.monotonic() + timeout
    shown = ""
    while time.monotonic() < deadline:
        if operator.poll() is not None:
            raise SystemExit(f"the operator exited with {operator.returncode}")
        table = plane.kubectl("get", "llmd", "-n", NAMESPACE).stdout
        rows = "\n".join(line.rsplit(None, 2)[0] if "LAST CHANGE" not in line else line for line in table.splitlines())
        if rows != shown:
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
