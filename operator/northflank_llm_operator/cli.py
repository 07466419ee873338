"""``northflank-llm-operator``: run the operator, or the Northflank API simulator for local work."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

import kopf
import pydantic

from . import __version__, process, redaction
from .management import Policy
from .manifests import DEFAULT_MANAGEMENT_POLICIES, check_policies
from .resource import MIN_POLL_INTERVAL_SECONDS
from .settings import OperatorSettings

_LOG_FORMATS = {"plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL, "json": kopf.LogFormat.JSON}


class _DropRoutineSuccess(logging.Filter):
    """Drops kopf's "Handler 'track' succeeded." line, logged at INFO for every watch event.

    The event handler only feeds the registry, and every status write echoes back as an event, so the
    line would otherwise dominate the log without saying anything. Failures are still logged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Handler 'track' succeeded."


def _poll_interval(text: str) -> int:
    value = int(text)
    if not MIN_POLL_INTERVAL_SECONDS <= value <= 86400:
        raise argparse.ArgumentTypeError(f"must be between {MIN_POLL_INTERVAL_SECONDS} and 86400 seconds")
    return value


def _percent(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError("must be between 0 and 100")
    return value


def _policies(text: str) -> tuple[Policy, ...]:
    try:
        return check_policies(text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="northflank-llm-operator", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run",
        help="run the operator against the current kubeconfig (or in-cluster credentials)",
        description="Mirror Northflank LLM model deployments into LLMModelDeployment status.",
    )
    scope = run.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "-n", "--namespace", dest="namespaces", action="append", metavar="NS",
        help="watch this namespace (repeatable; kopf globs like 'team-*' need namespace list RBAC)",
    )  # fmt: skip
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    run.add_argument("--standalone", action="store_true", help="do not coordinate with other replicas (peering)")
    run.add_argument("--liveness", metavar="URL", help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument(
        "--selector", "-l", metavar="SELECTOR",
        help="only track resources whose labels match this label selector, e.g. 'shard=a' or 'shard in (a,b)' "
        "(overrides NORTHFLANK_LLM_OPERATOR_LABEL_SELECTOR; '' tracks every resource)",
    )  # fmt: skip
    run.add_argument(
        "--metrics-bind-address", metavar="HOST:PORT",
        help="serve Prometheus metrics at /metrics and readiness at /readyz, e.g. ':8081' "
        "(overrides NORTHFLANK_LLM_OPERATOR_METRICS_BIND_ADDRESS; unset: not served)",
    )  # fmt: skip
    run.add_argument(
        "--metrics-per-resource-series", action=argparse.BooleanOptionalAction, default=None,
        help="export series per resource; --no-metrics-per-resource-series keeps only the counts by phase "
        "and condition, for large fleets (overrides NORTHFLANK_LLM_OPERATOR_METRICS_PER_RESOURCE_SERIES)",
    )  # fmt: skip
    run.add_argument(
        "--metrics-secure", action=argparse.BooleanOptionalAction, default=None,
        help="serve /metrics over HTTPS, only to bearer tokens the API server allows 'get' on /metrics "
        "(TokenReview + SubjectAccessReview); --no-metrics-secure: plain HTTP "
        "(overrides NORTHFLANK_LLM_OPERATOR_METRICS_SECURE; default: plain HTTP)",
    )  # fmt: skip
    run.add_argument(
        "--metrics-cert-dir", metavar="DIR",
        help="tls.crt and tls.key for --metrics-secure (default: a self-signed certificate made at start-up)",
    )  # fmt: skip
    run.add_argument(
        "--leader-elect", action=argparse.BooleanOptionalAction, default=None,
        help="elect a leader through a Lease so that several replicas can run; only the leader polls "
        "(overrides NORTHFLANK_LLM_OPERATOR_LEADER_ELECT)",
    )  # fmt: skip
    run.add_argument(
        "--enable-management", action=argparse.BooleanOptionalAction, default=None,
        help="allow resources with write policies (Create, Update, Delete, *) to create, update and delete "
        "Northflank deployments (overrides NORTHFLANK_LLM_OPERATOR_ENABLE_MANAGEMENT; default: observe only)",
    )  # fmt: skip
    run.add_argument("--leader-election-id", metavar="NAME", help="name of the leader election Lease")
    run.add_argument(
        "--leader-election-namespace", metavar="NS", help="namespace of the Lease (default: the pod's namespace)"
    )
    run.add_argument("--log-format", choices=sorted(_LOG_FORMATS), default="full")
    verbosity = run.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true")
    verbosity.add_argument("-d", "--debug", action="store_true")
    verbosity.add_argument("-q", "--quiet", action="store_true")

    importer = commands.add_parser(
        "import",
        help="print LLMModelDeployment manifests for a project's existing deployments (YAML on stdout)",
        description="List a Northflank project's LLM model deployments (NORTHFLANK_API_TOKEN or "
        "NORTHFLANK_API_TOKEN_FILE, NORTHFLANK_API_BASE_URL) and print one LLMModelDeployment manifest per "
        "deployment, ready to commit.",
    )
    importer.add_argument("--project", required=True, metavar="PROJECT_ID", help="the Northflank project's id")
    importer.add_argument("--team", metavar="TEAM_ID", help="the team, for an organisation-scoped token (spec.teamId)")
    importer.add_argument("--namespace", metavar="NS", help="metadata.namespace of every manifest (default: none)")
    importer.add_argument(
        "--credentials-secret", metavar="NAME", help="spec.credentialsSecretRef.name (default: the operator's token)"
    )
    importer.add_argument(
        "--poll-interval", type=_poll_interval, metavar="SECONDS",
        help="spec.pollIntervalSeconds, 10-86400 (default: the operator's)",
    )  # fmt: skip
    importer.add_argument(
        "--expected-phase-from-current", action="store_true",
        help="set spec.expectedPhase to each deployment's current phase (running or paused)",
    )  # fmt: skip
    importer.add_argument(
        "--manage", action="store_true",
        help="also write spec.forProvider from what is running (name, description, tags, ports, spec) and "
        "spec.managementPolicies, so that applying the output shows no drift and sends nothing",
    )  # fmt: skip
    importer.add_argument(
        "--management-policies", type=_policies, metavar="POLICIES",
        help="with --manage: comma-separated spec.managementPolicies, a set that includes Observe, or '*' "
        "(default: Observe,Update; adoptExisting is set when they include Update or Delete)",
    )  # fmt: skip
    importer.add_argument(
        "--reserve", type=_percent, default=10.0, metavar="PERCENT",
        help="stop, printing nothing, before the token's hourly Northflank budget falls below this share "
        "(x-ratelimit-remaining), so an operator polling with the same token keeps working (default: 10)",
    )  # fmt: skip

    commands.add_parser(
        "simulator",
        help="run the Northflank API simulator (arguments after 'simulator' go to it; see 'simulator --help')",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulator"]:
        from northflank_api_simulator.cli import main as simulator_main  # only needed for local work

        exit_code: int = simulator_main(argv[1:])
        return exit_code
    args = build_parser().parse_args(argv)
    if args.command == "import":
        return import_project(args)
    return run(args)


def import_project(args: argparse.Namespace) -> int:
    from .importing import run_import
    from .manifests import ImportOptions

    if args.management_policies is not None and not args.manage:
        print("northflank-llm-operator import: --management-policies needs --manage", file=sys.stderr)
        return 2
    try:
        settings = OperatorSettings()
    except pydantic.ValidationError as exc:
        print(f"northflank-llm-operator: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    options = ImportOptions(
        project_id=args.project,
        team_id=args.team,
        namespace=args.namespace,
        credentials_secret=args.credentials_secret,
        poll_interval_seconds=args.poll_interval,
        expected_phase_from_current=args.expected_phase_from_current,
        management_policies=(args.management_policies or DEFAULT_MANAGEMENT_POLICIES) if args.manage else None,
    )
    return asyncio.run(run_import(options, settings, sys.stdout, sys.stderr, reserve_fraction=args.reserve / 100))


def run(args: argparse.Namespace) -> int:
    redaction.install()  # before any library logs: no token reaches the log at any level
    kopf.configure(debug=args.debug, verbose=args.verbose, quiet=args.quiet, log_format=_LOG_FORMATS[args.log_format])
    if not args.debug:
        # httpx logs every request at INFO and httpcore every socket step at DEBUG; the poll loop
        # would drown the operator's own messages.
        for chatty in ("httpx", "httpcore"):
            logging.getLogger(chatty).setLevel(logging.WARNING)
        logging.getLogger("kopf.objects").addFilter(_DropRoutineSuccess())
    # A flag, when given, wins over the environment (init arguments come first in pydantic-settings).
    flags = {
        "label_selector": args.selector,
        "metrics_bind_address": args.metrics_bind_address,
        "metrics_per_resource_series": args.metrics_per_resource_series,
        "metrics_secure": args.metrics_secure,
        "metrics_cert_dir": args.metrics_cert_dir,
        "leader_elect": args.leader_elect,
        "enable_management": args.enable_management,
        "leader_election_id": args.leader_election_id,
        "leader_election_namespace": args.leader_election_namespace,
    }
    try:
        settings = OperatorSettings(**{name: value for name, value in flags.items() if value is not None})
    except pydantic.ValidationError as exc:
        print(f"northflank-llm-operator: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    options = process.WatchOptions(
        namespaces=tuple(args.namespaces or ()),
        clusterwide=args.all_namespaces,
        standalone=args.standalone,
        liveness_endpoint=args.liveness,
    )
    return asyncio.run(process.operate(options, settings))


if __name__ == "__main__":
    sys.exit(main())
