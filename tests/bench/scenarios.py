"""``make bench-scenarios``: issue 14's four fleet scenarios, in-process on a fake clock.

``make bench`` runs the real operator process against a real kube-apiserver and the simulator, which
takes minutes per compressed hour and cannot reach N = 5,000 on a 2-core machine. These scenarios run
the real :class:`~northflank_llm_operator.controller.Controller` (observer, planner, work queue,
reconciler, status mapping) against in-memory Northflank and Kubernetes fakes
(:mod:`tests.support.fleet`) for several fake hours each:

* **shared account**: someone else spends 70 % of each window (evenly, or all at its start): the
  operator's requests are evenly spread (largest gap <= 3x the mean) and no status turns StatusStale;
* **flaky edge**: 10 % of requests answer 502 at N = 2,000: at most 1 Event per resource per 10
  minutes and at most 1.1 status writes per upstream change;
* **one transitional**: at N = 5,000 one deployment goes ``starting`` and back: at most 2 status
  writes in total for the resources that did not change;
* **slow projects**: 4 projects whose answers take 30 s: every other resource's staleness p95 within
  10 % of the same run without the slow projects (both runs are made here, side by side).

A Markdown table on stdout, JSON in ``.tmp/bench/scenarios-<timestamp>.json``; the exit code is 1 when
a bound is not met. ``tests/unit/test_bench_scenarios.py`` runs each at a small N (with the budget
scaled down as much, so the planner is as pressed) and asserts the same bounds.

    uv run python -m tests.bench.scenarios                       # the issue's N
    uv run python -m tests.bench.scenarios --small               # the unit test's sizes
    uv run python -m tests.bench.scenarios --only flaky-edge
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import logging
import math
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from northflank_llm_operator.resource import ResourceKey
from northflank_llm_operator.settings import OperatorSettings
from tests.support.fleet import Fleet, SharedWindow

REPO: Final = Path(__file__).resolve().parents[2]
OUT_DIR: Final = REPO / ".tmp" / "bench"
HOUR: Final = 3600.0
BUDGET: Final = 1000  # requests per hour and account (Northflank's documented default)


@dataclass(frozen=True)
class Change:
    """An upstream phase change, ``offset`` seconds into the measured window."""

    offset: float
    project: str
    deployment: str
    phase: str


@dataclass(frozen=True)
class Scenario:
    name: str
    #: Resources (each names its own deployment), spread evenly over ``projects`` projects.
    n: int
    projects: int
    hours: float
    budget: int = BUDGET
    #: Seconds before the measured window (every resource gets its first status, the budget is learned).
    warmup: float = 900.0
    others_share: float = 0.0
    others_burst: bool = False
    flaky_share: float = 0.0
    #: Extra projects of one deployment each whose answers take this long (0: none).
    slow_projects: int = 0
    slow_seconds: float = 0.0
    changes_per_hour: float = 0.0
    #: One deployment goes transitional (``starting``) at this offset into the window, running 10 min later.
    transitional_at: float | None = None
    seed: int = 7
    bounds: dict[str, float] = field(default_factory=dict)


def full_scenarios() -> list[Scenario]:
    """At the N of issue 14's "Done when"."""
    return [
        # 20 projects of 10: 1,200 listings/h wanted, 300 left by the other client (200 above the reserve).
        Scenario(
            "shared-account",
            n=200,
            projects=20,
            hours=3,
            warmup=HOUR,
            others_share=0.7,
            changes_per_hour=20,
            bounds={"gap_over_mean": 3.0, "status_stale": 0},
        ),
        Scenario(
            "shared-account-burst",
            n=200,
            projects=20,
            hours=3,
            warmup=HOUR,
            others_share=0.7,
            others_burst=True,
            changes_per_hour=20,
            bounds={"gap_over_mean": 3.0, "status_stale": 0},
        ),
        Scenario(
            "flaky-edge",
            n=2000,
            projects=20,
            hours=3,
            flaky_share=0.1,
            changes_per_hour=240,
            bounds={"events_per_10min": 1, "writes_per_change": 1.1},
        ),
        Scenario(
            "one-transitional", n=5000, projects=50, hours=2, transitional_at=1800, bounds={"writes_to_unchanged": 2}
        ),
        Scenario(
            "slow-projects",
            n=1000,
            projects=10,
            hours=3,
            slow_projects=4,
            slow_seconds=30,
            changes_per_hour=240,
            bounds={"p95_vs_baseline": 0.10},
        ),
    ]


def small_scenarios() -> list[Scenario]:
    """The unit test's sizes: N divided by ten or more and the budget with it, so the planner is as
    pressed (the same stretch) as at the issue's N."""
    scaled: list[Scenario] = []
    for s in full_scenarios():
        if s.name.startswith("shared-account"):
            scaled.append(replace(s, n=20, projects=20, hours=2))
        elif s.name == "flaky-edge":
            scaled.append(replace(s, n=200, projects=4, budget=150, hours=2, changes_per_hour=24))
        elif s.name == "one-transitional":
            scaled.append(replace(s, n=500, projects=5, budget=100, hours=1))
        elif s.name == "slow-projects":
            scaled.append(replace(s, n=100, projects=1, hours=1.5, changes_per_hour=60))
    return scaled


def _projects(s: Scenario) -> dict[str, int]:
    sizes = {f"p{i:02d}": s.n // s.projects + (1 if i < s.n % s.projects else 0) for i in range(s.projects)}
    sizes.update({f"slow{i}": 1 for i in range(s.slow_projects)})
    return sizes


def _changes(s: Scenario, rng: random.Random) -> list[Change]:
    """Random phase toggles (running <-> paused) of the fast projects' deployments; a deployment changes
    again only after 30 minutes, so each change is seen on its own."""
    total = round(s.changes_per_hour * s.hours)
    window = s.hours * HOUR
    targets = [(p, f"d{i}") for p, size in _projects(s).items() if not p.startswith("slow") for i in range(size)]
    phase: dict[tuple[str, str], str] = defaultdict(lambda: "running")
    last: dict[tuple[str, str], float] = {}
    changes: list[Change] = []
    for offset in sorted(rng.uniform(0, window * 0.95) for _ in range(total)):
        for _ in range(100):
            target = rng.choice(targets)
            if offset - last.get(target, -math.inf) >= 1800:
                break
        else:
            continue
        last[target] = offset
        phase[target] = "paused" if phase[target] == "running" else "running"
        changes.append(Change(offset, target[0], target[1], phase[target]))
    if s.transitional_at is not None:
        project, deployment = next(iter(_projects(s))), "d0"
        changes += [Change(s.transitional_at, project, deployment, "starting"),
                    Change(s.transitional_at + 600, project, deployment, "running")]  # fmt: skip
    return sorted(changes, key=lambda c: c.offset)


async def simulate(s: Scenario, *, slow: bool = True) -> dict[str, Any]:
    """Run ``s`` and measure it (``slow=False``: the same run with the slow projects answering at once)."""
    wall_start = time.perf_counter()
    fleet = Fleet(
        settings=OperatorSettings(),
        limiter=SharedWindow(limit=s.budget, others_share=s.others_share, burst=s.others_burst),
        flaky_share=s.flaky_share,
        slow_projects={f"slow{i}": s.slow_seconds for i in range(s.slow_projects)} if slow else {},
        seed=s.seed,
    )
    try:
        for project, size in _projects(s).items():
            for i in range(size):
                fleet.add(project, f"d{i}")
        start = fleet.clock.now
        await fleet.run_until(start + s.warmup)
        unseen = [k for k, o in fleet.kube.objects.items() if "phase" not in o.get("status", {})]
        t0 = fleet.clock.now
        changes = _changes(s, random.Random(s.seed))
        for change in changes:
            await fleet.run_until(t0 + change.offset)
            fleet.northflank.set_phase(change.project, change.deployment, change.phase)
        t1 = t0 + s.hours * HOUR
        await fleet.run_until(t1)
        result = measure(s, fleet, t0, t1, changes)
    finally:
        await fleet.close()
    result["first_status_missing_after_warmup"] = len(unseen)
    result["wall_seconds"] = round(time.perf_counter() - wall_start, 1)
    return result


def measure(s: Scenario, fleet: Fleet, t0: float, t1: float, changes: list[Change]) -> dict[str, Any]:
    hours = (t1 - t0) / HOUR
    calls = [c for c in fleet.northflank.calls if t0 <= c.at < t1]
    times = [c.at for c in calls]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    writes = [w for w in fleet.kube.writes if t0 <= w.at < t1]
    events = [(at, key, e) for at, key, e in fleet.kube.events if t0 <= at < t1]

    keys_of: dict[tuple[str, str], list[ResourceKey]] = defaultdict(list)
    for key, target in fleet.target_of.items():
        keys_of[target].append(key)
    changed = {key for c in changes for key in keys_of[(c.project, c.deployment)]}

    # Staleness of each change: the first write showing the new phase, before the next change of it.
    shown: dict[ResourceKey, list[tuple[float, str]]] = defaultdict(list)
    for w in writes:
        if isinstance(w.patch.get("phase"), str):
            shown[w.key].append((w.at, w.patch["phase"]))
    staleness: dict[str, list[float | None]] = {"all": [], "fast": []}
    for c in changes:
        at = t0 + c.offset
        for key in keys_of[(c.project, c.deployment)]:
            seen = [t for t, phase in shown[key] if t >= at and phase == c.phase]
            value = seen[0] - at if seen else None
            staleness["all"].append(value)
            if not c.project.startswith("slow"):
                staleness["fast"].append(value)

    # Events as the reconciler records them, and the Event objects created once the EventCorrelator
    # (client-go's aggregation: the same Event within 10 minutes is a count patch) has seen them.
    emitted: dict[ResourceKey, list[float]] = defaultdict(list)
    for at, key, _ in events:
        emitted[key].append(at)
    created: dict[ResourceKey, list[float]] = defaultdict(list)
    for at, key, _ in fleet.kube.created_events:
        if t0 <= at < t1:
            created[key].append(at)

    stale = sum(1 for w in writes if _says_stale(w.patch))
    observed = [v for v in staleness["fast"] if v is not None]
    return {
        "scenario": s.name,
        "n": s.n + s.slow_projects,
        "budget": s.budget,
        "hours": s.hours,
        "requests_per_hour": round(len(calls) / hours, 1),
        "429_per_hour": round(sum(1 for c in calls if c.outcome == "429") / hours, 1),
        "502_per_hour": round(sum(1 for c in calls if c.outcome == "502") / hours, 1),
        "largest_gap_s": round(max(gaps), 1) if gaps else None,
        "mean_gap_s": round(statistics.fmean(gaps), 1) if gaps else None,
        "gap_over_mean": round(max(gaps) / statistics.fmean(gaps), 2) if gaps else None,
        "status_stale": stale,
        "resources_ever_stale": len({w.key for w in writes if _says_stale(w.patch)}),
        "events": len(events),
        "events_created": sum(len(v) for v in created.values()),
        "events_per_10min": max((_max_in_window(ts, 600.0) for ts in created.values()), default=0),
        "events_emitted_per_10min": max((_max_in_window(ts, 600.0) for ts in emitted.values()), default=0),
        "upstream_changes": len(changes),
        "status_writes": len(writes),
        "writes_per_change": round(len(writes) / len(changes), 3) if changes else None,
        "writes_to_unchanged": sum(1 for w in writes if w.key not in changed),
        "staleness_s": {
            "p50": _percentile(observed, 0.5),
            "p95": _percentile(observed, 0.95),
            "max": max(observed, default=None),
            "unobserved": sum(1 for v in staleness["fast"] if v is None),
        },
        "reported_stretch": fleet.controller.planner.reported_stretch(_account(fleet)),
    }


def _account(fleet: Fleet) -> str:
    accounts = fleet.controller.planner.accounts()
    return accounts[0] if accounts else ""


def _says_stale(patch: dict[str, Any]) -> bool:
    conditions = patch.get("conditions")
    return isinstance(conditions, list) and any(
        c.get("type") == "Ready" and c.get("reason") == "StatusStale" for c in conditions if isinstance(c, dict)
    )


def _max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


def _percentile(values: Sequence[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)], 1)


async def run(s: Scenario) -> dict[str, Any]:
    result = await simulate(s)
    if s.slow_projects:
        baseline = await simulate(s, slow=False)
        result["baseline"] = {k: baseline[k] for k in ("staleness_s", "requests_per_hour", "wall_seconds")}
        p95, base = result["staleness_s"]["p95"], baseline["staleness_s"]["p95"]
        result["p95_vs_baseline"] = round(p95 / base, 3) if p95 is not None and base else None
    result["bounds"] = s.bounds
    result["violations"] = violations(result, s.bounds)
    return result


def violations(result: dict[str, Any], bounds: dict[str, float]) -> list[str]:
    """The bounds ``result`` does not meet, in words."""
    failed = []
    for name, bound in bounds.items():
        value = result.get(name)
        if name == "p95_vs_baseline":
            ok = value is not None and abs(value - 1.0) <= bound
            shown = f"p95 {value}x the run without slow projects (bound: within {bound:.0%})"
        else:
            ok = value is not None and value <= bound
            shown = f"{name} = {value} (bound: <= {bound:g})"
        if not ok:
            failed.append(shown)
    return failed


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{value:.0f}"
    return str(value)


def markdown(results: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| scenario | N | requests/h | largest gap / mean | StatusStale | Events per resource per 10 min, max "
        "(aggregated; emitted) "
        "| writes per upstream change | writes to unchanged resources | staleness p95 (s) | p95 vs baseline "
        "| bounds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        verdict = "met" if not r["violations"] else "**not met**: " + "; ".join(r["violations"])
        lines.append(
            f"| {r['scenario']} | {r['n']} | {_fmt(r['requests_per_hour'], 0)} | {_fmt(r['gap_over_mean'])} "
            f"| {r['status_stale']} | {r['events_per_10min']} ({r['events_emitted_per_10min']}) "
            f"| {_fmt(r['writes_per_change'])} "
            f"| {r['writes_to_unchanged']} | {_fmt(r['staleness_s']['p95'], 0)} | {_fmt(r.get('p95_vs_baseline'))} "
            f"| {verdict} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="the unit test's sizes (seconds, not minutes)")
    parser.add_argument("--only", action="append", default=[], help="run only this scenario (repeatable)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="where to write the JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, *, say: Callable[[str], None] = print) -> int:
    args = parse_args(argv)
    # The reconciler logs every Event it records: thousands per scenario. Errors still show.
    logging.getLogger("northflank_llm_operator").setLevel(logging.ERROR)
    scenarios = small_scenarios() if args.small else full_scenarios()
    if args.only:
        unknown = set(args.only) - {s.name for s in scenarios}
        if unknown:
            say(f"unknown scenario(s): {', '.join(sorted(unknown))}")
            return 2
        scenarios = [s for s in scenarios if s.name in args.only]
    results = []
    for s in scenarios:
        say(f"scenario {s.name}: N = {s.n}, {s.hours:g} fake hours ...")
        result = asyncio.run(run(s))
        say(f"  done in {result['wall_seconds']} s; {'; '.join(result['violations']) or 'bounds met'}")
        results.append(result)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.out / f"scenarios-{stamp}.json"
    payload = {"scenarios": [asdict(s) for s in scenarios], "results": results}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    say("")
    say(markdown(results))
    say(f"\nJSON: {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 1 if any(r["violations"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
