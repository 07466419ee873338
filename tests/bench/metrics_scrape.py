"""What one ``/metrics`` scrape costs at fleet size (``make bench-metrics``).

For each N (default 100, 1,000 and 10,000 resources over 20 projects) and with per-resource series on
and off, a fresh process builds what the running operator holds (the registry with each resource's
last written status, the poller's attachments and the planner, as ``make bench-memory`` does), serves
``/metrics`` from the operator's own :class:`~northflank_llm_operator.metrics.MetricsServer`, and
scrapes it over HTTP from another thread while a ticker on the event loop measures how late it wakes
(every 10 ms). A late tick is a pause of everything else on the loop: kopf's watch, the Lease renewal,
the poll loop. Reported per configuration: scrape wall time (median of the scrapes), response bytes,
the longest loop stall during any scrape and over as long without one (the machine's noise floor),
and the process RSS before the scrapes and its peak after.
Run against an older checkout (per-resource series on), the same script measures what came before.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from pydantic import SecretStr

from northflank_llm_operator.credentials import CredentialResolver
from northflank_llm_operator.metrics import MetricsServer, OperatorMetrics
from northflank_llm_operator.northflank import LLMModelDeployment, NorthflankClient, RateLimit
from northflank_llm_operator.registry import Registry
from northflank_llm_operator.resource import LLMModelDeploymentSpec
from northflank_llm_operator.runtime import Runtime
from northflank_llm_operator.settings import OperatorSettings
from northflank_llm_operator.status import Observation, Timing, compute_status
from tests.bench.memory_per_resource import resource_body
from tests.unit.payloads import full_deployment

TICK = 0.010


def memory_kib(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def build_runtime(n: int, projects: int, per_resource_series: bool) -> Runtime:
    """The operator's pieces for N attached resources, without Kubernetes or Northflank behind them."""
    settings = OperatorSettings()
    kwargs: dict[str, Any] = {} if per_resource_series else {"per_resource_series": False}
    metrics = OperatorMetrics(leader_election_id="bench", **kwargs)
    now = datetime.now(UTC)
    timing = Timing(now=now, heartbeat=timedelta(0), stale_after=timedelta(minutes=3), effective_interval=60)
    registry = Registry()
    for i in range(n):
        deployment = LLMModelDeployment.model_validate(full_deployment(id=f"model-{i:05d}"))
        status = compute_status({}, Observation(deployment), generation=1, timing=timing).status
        registry.observe(None, resource_body(i, f"project-{i % projects}", status))
    registry.take_pending()
    # No Kubernetes client, gateway or Secret resolver is used before the poll loop runs.
    credentials = CredentialResolver(cast(Any, None), default_token=SecretStr("bench-token-0123456789"),
                                     cache_seconds=30)  # fmt: skip
    runtime = Runtime(settings, registry, NorthflankClient("http://nf.invalid"), None, cast(Any, None),
                      credentials, metrics)  # fmt: skip
    # Attached as the reconciler does it, each with a current observation.
    observer = runtime.poller.observer
    for resource in registry:
        spec = LLMModelDeploymentSpec.model_validate(resource.spec)
        observer.attach(resource.key, resource.uid, resource.generation, spec, observed_before=True, refresh=None,
                        handled_refresh=None)  # fmt: skip
    metrics.observe_resources(runtime, accounts_in_use=lambda: runtime.poller.planner.accounts())
    metrics.set_leading(True)
    for account in runtime.poller.planner.accounts():
        metrics.rate_limit_seen(account, RateLimit(limit=1000, remaining=700, reset_seconds=1800))
    return runtime


async def measure(n: int, projects: int, per_resource_series: bool, scrapes: int) -> dict[str, Any]:
    runtime = build_runtime(n, projects, per_resource_series)
    runtime.poller_task = asyncio.create_task(asyncio.sleep(3600))  # "the poll loop runs"
    server = MetricsServer(runtime.metrics, ready=lambda: (True, "ok"))
    await server.start("127.0.0.1:0")
    url = f"http://127.0.0.1:{server.port}/metrics"
    rss_before = memory_kib("VmRSS")
    ticks: list[tuple[float, float]] = []

    async def ticker() -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(TICK)
            ticks.append((started, time.perf_counter()))

    def scrape() -> tuple[float, int]:
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=120) as response:
            size = len(response.read())
        return time.perf_counter() - started, size

    ticking = asyncio.create_task(ticker())
    await asyncio.to_thread(scrape)  # warm-up, not measured: the worker threads exist from then on
    times: list[float] = []
    sizes: list[int] = []
    windows: list[tuple[float, float]] = []
    quiet: list[tuple[float, float]] = []
    for _ in range(scrapes):
        await asyncio.sleep(5 * TICK)  # the tick a scrape delayed has come in
        # As long again without a scrape: how late the loop wakes anyway on this machine (noise floor).
        opened = time.perf_counter()
        await asyncio.sleep(times[-1] if times else 0.5)
        quiet.append((opened, time.perf_counter()))
        await asyncio.sleep(5 * TICK)
        opened = time.perf_counter()
        seconds, size = await asyncio.to_thread(scrape)
        windows.append((opened, time.perf_counter()))
        times.append(seconds)
        sizes.append(size)

    def longest_stall(spans: list[tuple[float, float]]) -> float:
        """How much later than asked the loop woke, at worst, over the ticks that overlapped ``spans``."""
        late = [woke - started - TICK for started, woke in ticks for opened, closed in spans
                if started < closed and woke > opened]  # fmt: skip
        return max(late, default=0.0)

    stall, idle_stall = longest_stall(windows), longest_stall(quiet)
    ticking.cancel()
    runtime.poller_task.cancel()
    await server.stop()
    await runtime.northflank.aclose()
    return {
        "n": n,
        "per_resource_series": per_resource_series,
        "scrape_ms": round(statistics.median(times) * 1000, 1),
        "bytes": max(sizes),
        "max_loop_stall_ms": round(stall * 1000, 1),
        "idle_loop_stall_ms": round(idle_stall * 1000, 1),
        "rss_mib": round(rss_before / 1024, 1),
        "peak_rss_mib": round(memory_kib("VmHWM") / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, action="append", help="resources (repeatable; default 100, 1000, 10000)")
    parser.add_argument("--projects", type=int, default=20)
    parser.add_argument("--scrapes", type=int, default=5)
    parser.add_argument("--series", choices=("on", "off", "both"), default="both", help="per-resource series")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = args.n or [100, 1000, 10_000]
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.series]
    if args.child:
        result = asyncio.run(measure(sizes[0], args.projects, modes[0], args.scrapes))
        print(json.dumps(result))
        return
    print("| N | per-resource series | scrape ms (median) | bytes | longest loop stall ms "
          "| same, no scrape | RSS MiB | peak RSS MiB |", flush=True)  # fmt: skip
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for n, on in [(n, on) for n in sizes for on in modes]:
        # A fresh process per configuration: its RSS and peak are that configuration's alone.
        command = [sys.executable, "-m", "tests.bench.metrics_scrape", "--child", "--n", str(n), "--projects",
                   str(args.projects), "--scrapes", str(args.scrapes), "--series", "on" if on else "off"]  # fmt: skip
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        cells = [r["n"], "on" if on else "off", r["scrape_ms"], f"{r['bytes']:,}", r["max_loop_stall_ms"],
                 r["idle_loop_stall_ms"], r["rss_mib"], r["peak_rss_mib"]]  # fmt: skip
        print("| " + " | ".join(str(cell) for cell in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
