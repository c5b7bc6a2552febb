"""``gateway`` command: argument parsing and dispatch. Each command returns an exit code:

0 success · 1 internal error · 2 bad configuration or usage · 3 refused by policy or identity ·
4 invalid request · 5 gateway or database unavailable."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

import grpc
from rich.console import Console

from gateway.cli import _audit_cmd, _db_cmd, _query_cmd
from gateway.cli._client import UsageError, describe_rpc_error
from gateway.errors import ConfigError, GatewayError

_F = argparse.RawDescriptionHelpFormatter


def _add(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_: str, epilog: str
) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help_, description=help_, epilog=epilog, formatter_class=_F)


def _client_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--client",
        required=True,
        type=Path,
        metavar="PROFILE",
        help="client profile TOML (address, CA, certificate, key), e.g. demo/clients/health-analyst.toml",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        formatter_class=_F,
        description="Privacy-preserving inter-agency data-sharing gateway.\n\n"
        "Agencies push pseudonymised, sealed batches; analysts get k-anonymised aggregates under\n"
        "data-sharing agreements written in Rego; auditors verify a hash-chained decision log.",
        epilog="examples:\n"
        "  gateway demo                      # everything end to end in a fresh folder\n"
        "  gateway init ./pki                # a development PKI and config files\n"
        "  gateway serve --config ./pki/gateway.toml\n"
        "  gateway query --client ./pki/clients/health-analyst.toml --agreement ag-2026-001 \\\n"
        "      --purpose overdose-prevention --dataset ed_visits --group-by district --group-by year \\\n"
        "      --months 2024-01:2025-12\n\n"
        "exit codes: 0 ok, 1 internal error, 2 configuration or usage, 3 refused, 4 invalid request,\n"
        "5 gateway or database unavailable",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _add(
        sub,
        "demo",
        "Run the whole path once: PKI, gateway, two agents, queries, audit.",
        "example:\n  gateway demo            # in a fresh temporary folder\n"
        "  gateway demo ./my-demo  # kept for a look afterwards",
    )
    p.add_argument("dir", nargs="?", type=Path, help="folder to work in (default: a fresh temporary folder)")
    p.add_argument("--people", type=int, default=6000, help="synthetic people to generate (default 6000)")
    p.add_argument("--seed", type=int, default=7, help="seed of the synthetic data (default 7)")

    p = _add(
        sub,
        "init",
        "Write a development PKI, keys and config files into DIR.",
        "example:\n  gateway init ./pki\n  gateway init ./pki --force --listen 127.0.0.1:6000",
    )
    p.add_argument("dir", type=Path, help="folder for the CA, certificates, keys and config files")
    p.add_argument("--force", action="store_true", help="overwrite existing keys and certificates")
    p.add_argument(
        "--trust-domain", default="datashare.local", help="SPIFFE trust domain (default datashare.local)"
    )
    p.add_argument(
        "--listen",
        default="127.0.0.1:50051",
        help="address the gateway will listen on (default 127.0.0.1:50051)",
    )

    p = _add(
        sub,
        "serve",
        "Run the gateway until interrupted (SIGINT/SIGTERM stop it cleanly).",
        "example:\n  gateway serve --config ./pki/gateway.toml",
    )
    p.add_argument(
        "--config", required=True, type=Path, help="gateway settings TOML, e.g. ./pki/gateway.toml"
    )

    p = _add(
        sub,
        "db",
        "Show or upgrade the store's schema revision (Alembic migrations).",
        "examples:\n  gateway db current --config ./pki/gateway.toml\n"
        "  gateway db upgrade --config ./pki/gateway.toml   # before starting a newer gateway\n\n"
        'With [store] migrate = "check" (the default on PostgreSQL) a gateway refuses to start on\n'
        'a store behind its head; with "auto" (the default on SQLite) it upgrades at start-up.',
    )
    db_sub = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    for name, help_ in (
        ("current", "Print the store's revision and this gateway's head."),
        ("upgrade", "Bring the store to this gateway's head, in one transaction."),
    ):
        _db_cmd.add_arguments(db_sub.add_parser(name, help=help_, description=help_, formatter_class=_F))

    p = _add(
        sub,
        "datasets",
        "List the datasets and agreements you may query, and how.",
        "For each agreement and dataset: purposes, dimensions and time grains to group by (and\n"
        "combinations never allowed together), measures, filters and their values, k, rounding,\n"
        "the cell cap, the query budget if any, and an example query.\n\n"
        "examples:\n  gateway datasets --client ./pki/clients/health-analyst.toml\n"
        "  gateway datasets --client ./pki/clients/health-analyst.toml --json | jq '.[].dataset'",
    )
    _client_option(p)
    p.add_argument("--json", action="store_true", help="print JSON (every term, all filter values) instead")

    p = _add(
        sub,
        "query",
        "Ask an aggregate question under an agreement.",
        "examples:\n"
        "  gateway query --client ./pki/clients/health-analyst.toml --agreement ag-2026-001 \\\n"
        "      --purpose overdose-prevention --dataset ed_visits --measure subjects \\\n"
        "      --group-by district --filter presentation=overdose --months 2025-01:2025-12\n"
        "  ... --link-dataset police_incidents --link-days-before 30   # people also known to police\n"
        "  ... --group-by month --group-by district --filter district=D01,D02 \\\n"
        "      --months 2024-01:2025-12 --chart trend.png            # a line per district over months\n"
        "  ... --group-by district --csv > by_district.csv             # for a spreadsheet or a script\n\n"
        "withheld cells read 'withheld' in the table, null in --json, an empty field in --csv and a\n"
        "gap in --chart: never zero. The table states k, the rounding and the decision id (quote it\n"
        "to an auditor). Exit codes: 0 answered, 2 bad option, 3 refused (the reasons are printed),\n"
        "4 invalid request (the field at fault is named), 5 gateway unavailable.",
    )
    _query_cmd.add_arguments(p)
    _client_option(p)

    p = _add(
        sub,
        "audit",
        "Review the decision log: list, verify, export, report; keep its signed head and checkpoints; prune.",
        "examples:\n  gateway audit verify --client ./pki/clients/auditor.toml\n"
        "  gateway audit list --client ./pki/clients/auditor.toml --agreement ag-2026-001 --outcome deny\n"
        "  gateway audit export --client ./pki/clients/auditor.toml > log.jsonl\n"
        "  gateway audit report --client ./pki/clients/auditor.toml --since 2026-11-01T00:00:00Z \\\n"
        "      --html report.html\n"
        "  gateway audit checkpoints --client ./pki/clients/auditor.toml --json > checkpoints.json\n"
        "  gateway audit verify --file log.jsonl --checkpoints checkpoints.json --pubkey audit.pub\n"
        "  gateway audit prune --config ./pki/gateway.toml --before 2025-01-01T00:00:00Z \\\n"
        "      --export 2024.jsonl\n"
        "exit codes: 0 ok, 2 bad option, 3 refused, 4 invalid, 5 unavailable, 6 the log fails verification",
    )
    audit_sub = p.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    for name, help_ in _audit_cmd.ACTIONS:
        ap = audit_sub.add_parser(name, help=help_, description=help_, formatter_class=_F)
        if name in _audit_cmd.OFFLINE:
            ap.add_argument("--client", type=Path, metavar="PROFILE", help="client profile TOML")
        else:
            _client_option(ap)
        _audit_cmd.add_arguments(name, ap)

    p = _add(
        sub,
        "policy",
        "Test and check a policy bundle (Rego modules and agreement data).",
        "examples:\n  gateway policy test\n  gateway policy check ./policies",
    )
    policy_sub = p.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    for name, help_ in (
        ("test", "Run every test_* rule of the bundle's *_test.rego files."),
        ("check", "Compile every module, validate the data files, print the revision."),
    ):
        pp = policy_sub.add_parser(name, help=help_, description=help_, formatter_class=_F)
        pp.add_argument("dir", nargs="?", type=Path, help="bundle folder (default: the shipped policies/)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console, err = Console(), Console(stderr=True)
    try:
        return _dispatch(args, console)
    except UsageError as exc:
        err.print(f"gateway: {exc}", markup=False)
        return 2
    except ConfigError as exc:
        err.print(f"gateway: configuration error: {exc.message}", markup=False)
        return 2
    except GatewayError as exc:
        err.print(f"gateway: {exc.message}", markup=False)
        return 5 if exc.code == grpc.StatusCode.UNAVAILABLE else 1
    except grpc.RpcError as exc:
        code, message = describe_rpc_error(exc)
        err.print(f"gateway: {message}", markup=False)
        return code
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, console: Console) -> int:
    commands: dict[str, Callable[[argparse.Namespace, Console], int]] = {
        "demo": _demo,
        "init": _init,
        "serve": _serve,
        "db": _db_cmd.run,
        "datasets": _query_cmd.datasets,
        "query": _query_cmd.query,
        "audit": _audit_cmd.run,
        "policy": _policy,
    }
    return commands[args.command](args, console)


def _init(args: argparse.Namespace, console: Console) -> int:
    from gateway.pki import init_dev_pki

    layout = init_dev_pki(
        args.dir,
        force=args.force,
        trust_domain=args.trust_domain,
        listen=args.listen,
        agent_configs=lambda lay: _write_agent_configs(lay.root, args.listen),
    )
    console.print(f"Development PKI and configuration written to {layout.root}")
    console.print(f"  gateway settings:  {layout.gateway_config}")
    console.print(
        f"  agent configs:     {layout.root / 'agent-metro-police.toml'}, {layout.root / 'agent-health.toml'}"
    )
    console.print(f"  client profiles:   {layout.root / 'clients'}")
    console.print("Keys are private to this folder (mode 0600). Never commit them.")
    return 0


def _write_agent_configs(root: Path, address: str) -> None:
    from gateway.demo import write_agent_configs

    write_agent_configs(root, root / "data", address=address)


def _serve(args: argparse.Namespace, console: Console) -> int:
    from gateway._settings import GatewaySettings
    from gateway.server import build_gateway, configure_logging

    settings = GatewaySettings.from_file(args.config)
    configure_logging(settings.log_level, settings.log_format)
    gateway = build_gateway(settings)  # start() serves /metrics when [observability] metrics_port is set
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # SIGHUP: load the policy bundle again now (it is also polled; see gateway/policy/_reload.py)
    signal.signal(signal.SIGHUP, lambda signum, frame: gateway.request_policy_reload())
    port = gateway.start()
    sys.stderr.write(f"gateway listening on port {port}\n")
    stop.wait()
    gateway.stop()
    return 0


def _policy(args: argparse.Namespace, console: Console) -> int:
    from gateway.policy import check_bundle, run_policy_tests
    from gateway.policy._locate import shipped_bundle_dir

    root = args.dir or shipped_bundle_dir()
    if args.policy_command == "test":
        return run_policy_tests(root, sys.stdout)
    return check_bundle(root, sys.stdout)


def _demo(args: argparse.Namespace, console: Console) -> int:
    from gateway.demo import run_demo

    code: int = run_demo(args.dir, console, people=args.people, seed=args.seed)
    return code
