"""``make bench``: this operator against the usual kopf design, at scale, inside one Northflank budget.

A script, not a test (pytest does not collect it). For each N it starts a real kube-apiserver + etcd on
loopback and the Northflank API simulator with a *compressed* hour (default factor 20: the budget is
1000 requests per 180 s, and the 60 s poll interval becomes 3 s), seeds N running deployments over P
projects, creates N ``LLMModelDeployment`` resources, and then runs, one after the other, each design
with its own token, namespace and fresh rate-limit window:

* ``operator``: ``northflank-llm-operator run --standalone -n NS`` (the working tree's version);
* ``baseline``: ``kopf run --standalone -n NS tests/bench/baseline_operator.py`` (a timer per resource).

After a warm-up (until every resource shows a first observed phase, or a deadline) comes the measured
window (default one compressed hour), during which random deployments change phase at Northflank
(running -> paused, and back later) on the same schedule for both designs. It reports:

* upstream requests per compressed hour (budget 1000) and 429s, from the simulator's ``/_simulator/stats``;
* staleness of each change (upstream change -> phase visible in the resource, seen through a watch):
  p50 / p95 / max, as real-hour-equivalent seconds (compressed seconds x factor), next to the physical
  limit for that budget: a full refresh needs R = sum over projects of ceil(N_p / 100) LIST requests, so
  no design can beat max(R / 1000 per hour, poll interval);
* status writes per upstream change (``apiserver_request_total``, resource llmmodeldeployments,
  subresource status, verbs PATCH/UPDATE/APPLY, as a difference over the measured window);
* operator RSS and CPU per 1,000 resources (``/proc``, the process and its children);
* time from operator start until every resource has its first status.

Results: ``.tmp/bench/results-<timestamp>.json``, a Markdown table on stdout, ``.tmp/bench/staleness.png``
(``--publish`` copies it to ``tests/bench/staleness.png``). Everything started is stopped at the end,
also on Ctrl-C or an error. All traffic stays on loopback; tokens are never printed.

    uv run --group bench python -m tests.bench.run_bench --n 100 --duration-hours 0.2   # a quick look
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import os
import random
import re
import shlex
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Final

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch

from northflank_api_simulator.control import SimulatorControl
from tests.controlplane.controlplane import ControlPlane
from tests.demo.run_demo import wait_for_file

REPO: Final = Path(__file__).resolve().parents[2]
OUT_DIR: Final = REPO / ".tmp" / "bench"
BASELINE_FILE: Final = Path(__file__).resolve().with_name("baseline_operator.py")
PUBLISHED_PLOT: Final = Path(__file__).resolve().with_name("staleness.png")
CONSOLE_SCRIPT: Final = Path(sys.executable).with_name("northflank-llm-operator")

GROUP, VERSION, PLURAL = "northflank-llm-operator.dev", "v1alpha1", "llmmodeldeployments"
REAL_HOUR: Final = 3600.0
BUDGET: Final = 1000  # requests per hour and account (api-facts §3)
PER_PAGE_MAX: Final = 100  # list endpoint page size (api-facts §4)
REAL_POLL_INTERVAL: Final = 60.0  # the operator's default, compressed like the hour
TEAM: Final = "bench-team"
DESIGNS: Final = ("operator", "baseline")
CHANGE_RATE: Final = 0.02  # of N per (real-equivalent) 5 minutes
MIN_CHANGES: Final = 36
STOP_TIMEOUT: Final = 20.0
SAMPLE_EVERY: Final = 1.0  # seconds between RSS samples


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------------------------------------
# the workload


@dataclass(frozen=True)
class Change:
    offset: float  # compressed seconds after the start of the measured window
    project: str
    name: str  # deployment id == resource name
    phase: str


@dataclass(frozen=True)
class Workload:
    n: int
    projects: dict[str, list[str]]  # project id -> deployment ids

    @property
    def deployments(self) -> list[tuple[str, str]]:
        return [(project, name) for project, names in self.projects.items() for name in names]

    @property
    def full_refresh_requests(self) -> int:
        """R: LIST requests needed to see every deployment once."""
        return sum(math.ceil(len(names) / PER_PAGE_MAX) for names in self.projects.values())


def make_workload(n: int, projects: int | None) -> Workload:
    count = projects if projects is not None else max(10, math.ceil(n / 500))
    spread: dict[str, list[str]] = {f"bench-p{j:02d}": [] for j in range(count)}
    keys = list(spread)
    for i in range(n):
        spread[keys[i % count]].append(f"model-{i:05d}")
    return Workload(n, spread)


def make_schedule(workload: Workload, *, duration: float, factor: float, limit: float, seed: int) -> list[Change]:
    """About 2% of N per (real) 5 minutes, at least MIN_CHANGES: pairs running -> paused -> running.

    Each pair uses its own deployment; the way back comes ``gap`` later, and nothing changes in the last
    few refresh periods, so every change has time to show up in a design that keeps up.
    """
    rng = random.Random(seed * 1_000_003 + workload.n)
    wanted = max(MIN_CHANGES, round(CHANGE_RATE * workload.n * duration * factor / 300.0))
    tail = min(duration / 4, max(3 * limit, 3 * REAL_POLL_INTERVAL / factor))
    gap = max(3 * limit, duration / 4)
    latest_start = max(0.0, duration - tail - gap)
    pairs = min(math.ceil(wanted / 2), workload.n)
    chosen = rng.sample(workload.deployments, pairs)
    changes: list[Change] = []
    for project, name in chosen:
        start = rng.uniform(0, latest_start)
        changes.append(Change(start, project, name, "paused"))
        changes.append(Change(start + gap, project, name, "running"))
    return sorted(changes, key=lambda change: change.offset)


def physical_limit(workload: Workload, factor: float) -> float:
    """The best possible worst-case staleness (compressed seconds) within the budget."""
    real = max(workload.full_refresh_requests * REAL_HOUR / BUDGET, REAL_POLL_INTERVAL)
    return real / factor


# ------------------------------------------------------------------------------------------------
# processes


@contextlib.contextmanager
def background(command: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        yield process
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pids: Sequence[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15)
    return total


def rss_bytes(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


# ------------------------------------------------------------------------------------------------
# Kubernetes side


def new_api_client(kubeconfig: Path) -> Any:
    return k8s_config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]


def new_watch() -> Any:
    return k8s_watch.Watch()  # type: ignore[no-untyped-call]


class PhaseWatcher(threading.Thread):
    """Watches one namespace's resources; remembers when each one's ``status.phase`` changed."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        super().__init__(name=f"watch {namespace}", daemon=True)
        self._api = k8s.CustomObjectsApi(api_client)
        self._namespace = namespace
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.history: dict[str, list[tuple[float, str]]] = {}
        self.first_status: dict[str, float] = {}
        self.restarts = 0
        self.synced = threading.Event()
        # What each status write changed, while ``counting``: explains a status-writes-per-change figure.
        self.counting = False
        self.write_causes: collections.Counter[str] = collections.Counter()
        self.write_examples: dict[str, list[dict[str, Any]]] = {}  # a few of each cause, before and after
        self._last_status: dict[str, dict[str, Any]] = {}

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=15)

    def observed_count(self) -> int:
        with self._lock:
            return len(self.first_status)

    def first_seen(self, name: str, phase: str, after: float) -> float | None:
        with self._lock:
            for seen, value in self.history.get(name, []):
                if seen >= after and value == phase:
                    return seen
        return None

    def _record(self, obj: dict[str, Any], now: float) -> None:
        name = obj["metadata"]["name"]
        status = obj.get("status") or {}
        phase = status.get("phase")
        if not phase:
            return
        with self._lock:
            previous = self._last_status.get(name)
            self._last_status[name] = status
            if self.counting and previous is not None and previous != status:
                cause = status_change(previous, status)
                self.write_causes[cause] += 1
                examples = self.write_examples.setdefault(cause, [])
                if len(examples) < 3:
                    examples.append({"name": name, "before": previous, "after": status})
            if phase != "unknown" and name not in self.first_status:
                self.first_status[name] = now
            history = self.history.setdefault(name, [])
            if not history or history[-1][1] != phase:
                history.append((now, phase))

    def run(self) -> None:
        resource_version: str | None = None
        while not self._stopping.is_set():
            try:
                if resource_version is None:
                    listing: Any = self._api.list_namespaced_custom_object(GROUP, VERSION, self._namespace, PLURAL)
                    now = time.monotonic()
                    for item in listing["items"]:
                        self._record(item, now)
                    resource_version = listing["metadata"]["resourceVersion"]
                    self.synced.set()
                stream = new_watch().stream(
                    self._api.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self._namespace,
                    PLURAL,
                    resource_version=resource_version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=5,
                    _request_timeout=30,
                )
                for event in stream:
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        resource_version = None
                        break
                    resource_version = obj["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._record(obj, time.monotonic())
                    if self._stopping.is_set():
                        break
            except Exception:  # an expired resourceVersion (410) or a dropped connection: list again
                resource_version = None
                self.restarts += 1
                self._stopping.wait(0.5)


def status_change(before: dict[str, Any], after: dict[str, Any]) -> str:
    """What one status write changed, as a stable signature: top-level keys, and for conditions the
    type and the parts of it that changed (``conditions.Synced.message``)."""
    changed: list[str] = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) == after.get(key):
            continue
        if key != "conditions":
            changed.append(key)
            continue
        old = {c.get("type"): c for c in before.get(key) or []}
        new = {c.get("type"): c for c in after.get(key) or []}
        for kind in sorted(set(old) | set(new), key=str):
            parts = [part for part in ("status", "reason", "message")
                     if (old.get(kind) or {}).get(part) != (new.get(kind) or {}).get(part)]  # fmt: skip
            if parts:
                changed.append(f"conditions.{kind}.{'/'.join(parts)}")
    return " + ".join(changed) or "lastTransitionTime only"


def create_resources(api_client: Any, namespace: str, workload: Workload) -> None:
    core = k8s.CoreV1Api(api_client)
    with contextlib.suppress(k8s.ApiException):
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    custom = k8s.CustomObjectsApi(api_client)

    def create(item: tuple[str, str]) -> None:
        project, name = item
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "LLMModelDeployment",
            "metadata": {"name": name},
            "spec": {"projectId": project, "llmModelDeploymentId": name},
        }
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, workload.deployments))


def delete_resources(api_client: Any, namespace: str) -> None:
    with contextlib.suppress(Exception):
        k8s.CustomObjectsApi(api_client).delete_collection_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, _request_timeout=300
        )


def apiserver_writes(plane: ControlPlane) -> dict[str, float]:
    """Cumulative write requests to llmmodeldeployments, from the API server's own metrics."""
    context = ssl.create_default_context(cafile=str(plane.ca_file))
    request = urllib.request.Request(f"{plane.server}/metrics")  # noqa: S310 -- loopback https
    request.add_header("Authorization", f"Bearer {plane.admin_token}")
    with urllib.request.urlopen(request, timeout=30, context=context) as response:  # noqa: S310
        text = response.read().decode()
    totals = {"status": 0.0, "main": 0.0}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{") or 'resource="llmmodeldeployments"' not in line:
            continue
        verb = re.search(r'verb="([A-Z]+)"', line)
        if verb is None or verb.group(1) not in ("PATCH", "UPDATE", "APPLY"):
            continue
        key = "status" if 'subresource="status"' in line else "main"
        totals[key] += float(line.rsplit(" ", 1)[1])
    return totals


# ------------------------------------------------------------------------------------------------
# one design at one N


@dataclass
class Bench:
    plane: ControlPlane
    api_client: Any
    nf: SimulatorControl
    base_url: str
    factor: float
    duration: float  # compressed seconds of the measured window
    warmup_deadline: float  # compressed seconds
    retry_delay: float | None
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def interval(self) -> float:
        return REAL_POLL_INTERVAL / self.factor

    @property
    def window(self) -> float:
        return REAL_HOUR / self.factor


def seed_simulator(bench: Bench, workload: Workload, token: str) -> str:
    """A fresh simulated Northflank: N running deployments, one token, a fresh budget window."""
    nf = bench.nf
    nf.reset()
    token_id = nf.add_token(token, team_id=TEAM)
    for project, names in workload.projects.items():
        nf.put_project(project, team_id=TEAM)
        for name in names:
            nf.put_deployment(project, name, status="running")
    nf.set_rate_limit(BUDGET, bench.window)
    return token_id


def token_counts(nf: SimulatorControl, token_id: str) -> dict[str, int]:
    counts = {"total": 0, "ok": 0, "429": 0, "other_errors": 0, "get": 0, "list": 0}
    for row in nf.stats():
        if row["tokenId"] != token_id:
            continue
        count = int(row["count"])
        counts["total"] += count
        if row["status"] == 429:
            counts["429"] += count
        elif int(row["status"]) < 400:
            counts["ok"] += count
        else:
            counts["other_errors"] += count
        if row["route"] in ("get", "list"):
            counts[row["route"]] += count
    return counts


def design_command(design: str, namespace: str) -> list[str]:
    if design == "operator":
        return [str(CONSOLE_SCRIPT), "run", "--standalone", "-n", namespace]
    return [sys.executable, "-m", "kopf", "run", "--standalone", "-n", namespace, str(BASELINE_FILE)]


def percentile(values: Sequence[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def run_design(bench: Bench, design: str, workload: Workload, schedule: list[Change]) -> dict[str, Any]:
    n = workload.n
    namespace = f"bench-{design}-{n}"
    token = f"bench-{design}-{n}-{os.urandom(6).hex()}"  # the simulator's, not a Northflank token
    say(f"N={n} {design}: seeding the simulator and creating {n} resources in namespace {namespace}")
    token_id = seed_simulator(bench, workload, token)
    started = time.monotonic()
    create_resources(bench.api_client, namespace, workload)
    say(f"N={n} {design}: created in {time.monotonic() - started:.1f} s")
    env = {k: v for k, v in bench.env.items() if not k.startswith(("NORTHFLANK_", "NF_"))}
    env |= {
        "NORTHFLANK_API_BASE_URL": bench.base_url,
        "NORTHFLANK_API_TOKEN": token,
        "NORTHFLANK_LLM_OPERATOR_POLL_INTERVAL_SECONDS": f"{bench.interval:g}",
        "PYTHONUNBUFFERED": "1",
    }
    if bench.retry_delay is not None:
        env["BASELINE_RETRY_DELAY_SECONDS"] = f"{bench.retry_delay:g}"
    watcher = PhaseWatcher(new_api_client(bench.plane.kubeconfig), namespace)
    watcher.start()
    try:
        if not watcher.synced.wait(60):
            raise SystemExit("the watch never listed the namespace")
        log = bench.workdir / f"{design}-{n}.log"
        with background(design_command(design, namespace), log, env) as process:
            result = measure(bench, design, workload, schedule, process, watcher, token_id, log)
    finally:
        watcher.stop()
        say(f"N={n} {design}: stopped; deleting its resources")
        delete_resources(bench.api_client, namespace)
    causes = ", ".join(f"{count}x {cause}" for cause, count in list(result["status_write_causes"].items())[:6])
    say(f"N={n} {design}: status writes in the window changed: {causes or 'nothing'}")
    return result


def measure(
    bench: Bench,
    design: str,
    workload: Workload,
    schedule: list[Change],
    process: subprocess.Popen[bytes],
    watcher: PhaseWatcher,
    token_id: str,
    log: Path,
) -> dict[str, Any]:
    n = workload.n

    def check_alive() -> None:
        if process.poll() is not None:
            raise SystemExit(f"{design} exited with {process.returncode}:\n{log.read_text(errors='replace')[-4000:]}")

    # Warm-up: until every resource shows an observed phase, or the deadline.
    start = time.monotonic()
    writes_at_start = apiserver_writes(bench.plane)
    deadline = start + bench.warmup_deadline
    rss_warmup = 0
    while watcher.observed_count() < n and time.monotonic() < deadline:
        check_alive()
        rss_warmup = max(rss_warmup, rss_bytes(process_tree(process.pid)))
        time.sleep(0.25)
    observed = watcher.observed_count()
    first_all = max(watcher.first_status.values()) - start if observed == n else None
    say(
        f"N={n} {design}: first status for {observed}/{n} resources"
        + (f" after {first_all:.1f} s" if first_all is not None else f" by the deadline ({bench.warmup_deadline:g} s)")
    )

    # The measured window.
    pids = process_tree(process.pid)
    counts_before = token_counts(bench.nf, token_id)
    writes_before = apiserver_writes(bench.plane)
    cpu_before = cpu_seconds(pids)
    window_start = time.monotonic()
    applied: list[dict[str, Any]] = []
    rss_samples: list[int] = []
    next_sample = window_start
    pending = list(schedule)
    say(f"N={n} {design}: measuring for {bench.duration:g} s with {len(schedule)} upstream changes")
    watcher.counting = True
    while (now := time.monotonic()) < window_start + bench.duration:
        check_alive()
        if now >= next_sample:
            pids = process_tree(process.pid)
            rss_samples.append(rss_bytes(pids))
            next_sample = now + SAMPLE_EVERY
        while pending and window_start + pending[0].offset <= time.monotonic():
            change = pending.pop(0)
            before = time.monotonic()
            bench.nf.patch_deployment(change.project, change.name, status=change.phase)
            after = time.monotonic()
            applied.append({"change": change, "t0": (before + after) / 2})
        wake = min(next_sample, window_start + bench.duration)
        if pending:
            wake = min(wake, window_start + pending[0].offset)
        time.sleep(max(0.0, min(0.5, wake - time.monotonic())))
    window = time.monotonic() - window_start
    watcher.counting = False
    cpu_after = cpu_seconds(process_tree(process.pid) or pids)
    writes_after = apiserver_writes(bench.plane)
    counts_after = token_counts(bench.nf, token_id)

    changes = []
    for entry in applied:
        done: Change = entry["change"]
        seen = watcher.first_seen(done.name, done.phase, entry["t0"])
        changes.append(
            {
                "offset": round(entry["t0"] - window_start, 3),
                "project": done.project,
                "name": done.name,
                "phase": done.phase,
                "staleness": round(seen - entry["t0"], 3) if seen is not None else None,
            }
        )
    stale = [c["staleness"] for c in changes if c["staleness"] is not None]
    requests = {key: counts_after[key] - counts_before[key] for key in counts_after}
    per_hour = bench.window / window
    status_writes = writes_after["status"] - writes_before["status"]
    cpu = cpu_after - cpu_before
    rss_max = max(rss_samples, default=0)
    thousands = n / 1000
    return {
        "design": design,
        "n": n,
        "window_seconds": round(window, 2),
        "requests": requests,
        "requests_total_run": counts_after,
        "requests_per_hour": round(requests["total"] * per_hour, 1),
        "ok_requests_per_hour": round(requests["ok"] * per_hour, 1),
        "429_per_hour": round(requests["429"] * per_hour, 1),
        "changes": changes,
        "changes_count": len(changes),
        "unobserved": sum(1 for c in changes if c["staleness"] is None),
        "staleness_seconds": {
            "p50": statistics.median(stale) if stale else None,
            "p95": percentile(stale, 0.95),
            "max": max(stale, default=None),
        },
        "status_writes": status_writes,
        "status_writes_warmup": writes_before["status"] - writes_at_start["status"],
        "main_resource_writes": writes_after["main"] - writes_before["main"],
        "status_writes_per_change": round(status_writes / len(changes), 2) if changes else None,
        # What the writes the watch saw in the window changed (most common first).
        "status_write_causes": dict(watcher.write_causes.most_common(20)),
        "status_write_examples": {
            cause: watcher.write_examples[cause] for cause, _ in watcher.write_causes.most_common(20)
        },
        "cpu_seconds": round(cpu, 2),
        "cpu_percent_of_core": round(100 * cpu / window, 2),
        "cpu_percent_of_core_per_1000": round(100 * cpu / window / thousands, 2),
        "rss_max_mib": round(rss_max / 2**20, 1),
        "rss_max_mib_per_1000": round(rss_max / 2**20 / thousands, 1),
        "rss_warmup_max_mib": round(rss_warmup / 2**20, 1),
        "first_status_all_seconds": round(first_all, 2) if first_all is not None else None,
        "first_status_observed": observed,
        "watch_restarts": watcher.restarts,
    }


# ------------------------------------------------------------------------------------------------
# reporting


def fmt(value: float | None, factor: float = 1.0, digits: int = 0) -> str:
    return "-" if value is None else f"{value * factor:.{digits}f}"


def markdown(results: list[dict[str, Any]], factor: float) -> str:
    lines = [
        "| N | design | requests/h (budget 1000) | 429s/h | staleness p50 / p95 / max (s) | physical limit (s) "
        "| unobserved | status writes / change | RSS MiB (per 1k) | CPU % core per 1k | all first status (s) |",
        "|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        s = r["staleness_seconds"]
        staleness = " / ".join(fmt(s[key], factor) for key in ("p50", "p95", "max"))
        first = (
            fmt(r["first_status_all_seconds"], factor)
            if r["first_status_all_seconds"] is not None
            else f"{r['first_status_observed']}/{r['n']} by deadline"
        )
        lines.append(
            f"| {r['n']} | {r['design']} | {r['requests_per_hour']:.0f} | {r['429_per_hour']:.0f} | {staleness} "
            f"| {fmt(r['physical_limit_seconds'], factor)} | {r['unobserved']}/{r['changes_count']} "
            f"| {fmt(r['status_writes_per_change'], digits=1)} "
            f"| {r['rss_max_mib']:.0f} ({r['rss_max_mib_per_1000']:.0f}) "
            f"| {r['cpu_percent_of_core_per_1000']:.1f} | {first} |"
        )
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], factor: float, path: Path) -> bool:
    try:
        import matplotlib  # optional: only with the bench dependency group

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        say("matplotlib is not installed (uv sync --group bench); no plot")
        return False
    sizes = sorted({r["n"] for r in results})
    figure, axes = pyplot.subplots(1, len(sizes), figsize=(6.5 * len(sizes), 4.5), squeeze=False)
    colours = {"operator": "tab:blue", "baseline": "tab:red"}
    for axis, n in zip(axes[0], sizes, strict=True):
        for r in (r for r in results if r["n"] == n):
            seen = [c for c in r["changes"] if c["staleness"] is not None]
            missed = [c for c in r["changes"] if c["staleness"] is None]
            colour = colours.get(r["design"], "gray")
            axis.scatter(
                [c["offset"] * factor / 60 for c in seen],
                [c["staleness"] * factor for c in seen],
                s=12,
                alpha=0.7,
                color=colour,
                label=r["design"],
            )
            if missed:  # never shown: drawn at the time that was left, a lower bound of their staleness
                axis.scatter(
                    [c["offset"] * factor / 60 for c in missed],
                    [(r["window_seconds"] - c["offset"]) * factor for c in missed],
                    s=24,
                    marker="x",
                    color=colour,
                    label=f"{r['design']}: never shown ({len(missed)}; at >= time left)",
                )
            limit = r["physical_limit_seconds"] * factor
        axis.axhline(limit, color="black", linestyle="--", linewidth=1, label=f"physical limit ({limit:.0f} s)")
        axis.set_yscale("log")
        axis.set_title(f"N = {n}")
        axis.set_xlabel("time of the upstream change (real-equivalent minutes into the window)")
        axis.set_ylabel("staleness (real-equivalent seconds, log)")
        axis.legend(loc="best", fontsize="small", framealpha=0.8)
        axis.grid(alpha=0.3)
    figure.suptitle(f"Staleness of upstream phase changes, budget {BUDGET}/h (time compressed x{factor:g})")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return True


# ------------------------------------------------------------------------------------------------
# main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, action="append", help="resources (repeatable; default 100 and 1000)")
    parser.add_argument("--projects", type=int, help="projects to spread them over (default max(10, N/500))")
    parser.add_argument("--factor", type=float, default=20.0, help="time compression (default %(default)g)")
    parser.add_argument(
        "--duration-hours", type=float, default=1.0, help="measured window, compressed hours (default %(default)g)"
    )
    parser.add_argument(
        "--warmup-hours",
        type=float,
        default=1.0,
        help="deadline for every resource's first status, compressed hours (default %(default)g)",
    )
    parser.add_argument("--designs", default=",".join(DESIGNS), help="comma-separated, run in this order")
    parser.add_argument(
        "--baseline-retry-seconds", type=float, help="the baseline's delay after a 429 (default: half the interval)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed of the change schedule")
    parser.add_argument("--publish", action="store_true", help=f"also copy the plot to {PUBLISHED_PLOT}")
    args = parser.parse_args(argv)
    args.n = args.n or [100, 1000]
    args.designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    unknown = set(args.designs) - set(DESIGNS)
    if unknown:
        parser.error(f"unknown designs {sorted(unknown)}; choose from {DESIGNS}")
    if args.factor <= 0 or args.duration_hours <= 0 or args.warmup_hours <= 0:
        parser.error("--factor, --duration-hours and --warmup-hours must be positive")
    return args


def reproduce_command(argv: Sequence[str]) -> str:
    return "uv run --group bench python -m tests.bench.run_bench " + shlex.join(argv)


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = OUT_DIR / f"run-{stamp}"
    workdir.mkdir(parents=True, exist_ok=True)
    factor = args.factor
    say(
        f"time compression factor {factor:g}: one hour = {REAL_HOUR / factor:g} s, budget {BUDGET} per "
        f"{REAL_HOUR / factor:g} s, poll interval {REAL_POLL_INTERVAL / factor:g} s; N = {args.n}; "
        f"designs {args.designs}; logs in {workdir.relative_to(REPO)}"
    )
    for n in args.n:
        needed = n / BUDGET
        if "baseline" in args.designs and needed > args.warmup_hours:
            say(
                f"note: at N={n} the baseline needs at least {needed:g} compressed hours of budget to give every "
                f"resource a first status (one GET each); --warmup-hours {args.warmup_hours:g} stops waiting earlier "
                f"(use --warmup-hours {math.ceil(needed) + 1} for a complete warm-up)"
            )
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        say("starting the control plane (kube-apiserver + etcd on loopback)")
        plane = ControlPlane(workdir / "control-plane").start()
        stack.callback(plane.stop)
        plane.kubectl("apply", "-f", str(REPO / "crds"))
        plane.kubectl("wait", "--for=condition=established", f"crd/{PLURAL}.{GROUP}", "--timeout=60s")
        env = plane.env(os.environ)
        port_file = workdir / "simulator.url"
        simulator_cmd = [
            sys.executable,
            "-m",
            "northflank_api_simulator",
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--log-level",
            "WARNING",
        ]
        simulator_log = workdir / "simulator.log"
        simulator = stack.enter_context(background(simulator_cmd, simulator_log, env))
        base_url = wait_for_file(port_file, simulator, simulator_log)
        nf = stack.enter_context(SimulatorControl(base_url, timeout=60))
        nf.wait_healthy()
        api_client = new_api_client(plane.kubeconfig)
        bench = Bench(
            plane=plane,
            api_client=api_client,
            nf=nf,
            base_url=base_url,
            factor=factor,
            duration=args.duration_hours * REAL_HOUR / factor,
            warmup_deadline=args.warmup_hours * REAL_HOUR / factor + REAL_POLL_INTERVAL / factor,
            retry_delay=args.baseline_retry_seconds,
            workdir=workdir,
            env=env,
        )
        for n in args.n:
            workload = make_workload(n, args.projects)
            limit = physical_limit(workload, factor)
            schedule = make_schedule(workload, duration=bench.duration, factor=factor, limit=limit, seed=args.seed)
            say(
                f"N={n}: {len(workload.projects)} projects, R={workload.full_refresh_requests} requests per full "
                f"refresh, physical limit {limit * factor:g} real-equivalent s ({limit:g} s here)"
            )
            for design in args.designs:
                result = run_design(bench, design, workload, schedule)
                result |= {
                    "projects": len(workload.projects),
                    "full_refresh_requests": workload.full_refresh_requests,
                    "physical_limit_seconds": limit,
                }
                results.append(result)
                print(markdown([result], factor), flush=True)
    elapsed = time.monotonic() - started
    output = OUT_DIR / f"results-{stamp}.json"
    command = reproduce_command(argv)
    document = {
        "command": command,
        "factor": factor,
        "budget_per_hour": BUDGET,
        "compressed_hour_seconds": REAL_HOUR / factor,
        "poll_interval_seconds": REAL_POLL_INTERVAL / factor,
        "duration_hours": args.duration_hours,
        "warmup_hours": args.warmup_hours,
        "seed": args.seed,
        "elapsed_seconds": round(elapsed, 1),
        "git_head": _git_head(),
        "note": "seconds in results are compressed; multiply by factor for real-hour equivalents",
        "results": results,
    }
    output.write_text(json.dumps(document, indent=2, default=_json_default) + "\n")
    png = OUT_DIR / "staleness.png"
    plotted = plot(results, factor, png)
    if plotted and args.publish:
        shutil.copyfile(png, PUBLISHED_PLOT)
    print()
    print(f"Time compressed x{factor:g}; staleness, limits and first-status times in real-hour-equivalent seconds.")
    if args.duration_hours < 1:
        print(
            f"Requests/h extrapolated from a {args.duration_hours:g}-hour window: the budget is per fixed hour, so a "
            "short window can show more than 1000 successful requests per hour."
        )
    print()
    print(markdown(results, factor))
    print()
    print(f"Reproduce: {command}")
    print(f"Results: {output.relative_to(REPO)}" + (f"; plot: {png.relative_to(REPO)}" if plotted else ""))
    print(f"Took {elapsed / 60:.1f} minutes.")
    return 0


def _git_head() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        proc = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO, check=False)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=REPO, check=False)
        return proc.stdout.strip() + (" (+ uncommitted changes)" if dirty.stdout.strip() else "")
    return None


def _json_default(value: object) -> object:
    if isinstance(value, Change):
        return asdict(value)
    raise TypeError(type(value).__name__)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        sys.exit(130)
