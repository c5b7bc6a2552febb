"""Benchmark harness entry point.

python bench/run.py ingest --records 1000000 [--backends sqlite,postgres] [--repeat 3]
                           [--indexes ingest[,query]] [--json]
python bench/run.py indexes --records 1000000 [--backends sqlite,postgres] [--profiles ingest,query]
                            [--json]
python bench/run.py policy [--agreements 20] [--decisions 5000] [--repeat 3] [--bundle DIR] [--json]
python bench/run.py query [--records 1000000] [--backends sqlite,postgres] [--profiles ingest,query]
                          [--repeat 3] [--json]
python bench/run.py load [--seconds 60] [--fault-seconds 35] [--faults none,database,gateway,policy]
                         [--analysts 20] [--json]

``ingest`` (DESIGN §12): the bare pipeline and the real ``agent push`` of a CSV export into a
running gateway, records/s of each, their ratio, each process's CPU seconds and the agent's peak
RSS. Both paths run as two processes (client child, server here): see bench/_baseline.py.
``indexes``: what each store index profile costs at ingest and saves at query time.
``policy``: latency of the gateway's policy decisions (embedded engine) beside the bare regorus
call, with ``--agreements`` agreements loaded: see bench/_policy.py.
``query``: an analyst's aggregate end to end over gRPC (policy, disclosure control, audit) beside
the bare SQL GROUP BY on the same database, p50 of each and their ratio: see bench/_query.py.
``load``: two agents and twenty analysts against two gateway processes on a private PostgreSQL
cluster, undisturbed and with each fault: query latency, push rate, failures, recovery, and the
checks (records exact, audit chain valid, every answer audited): see bench/_load.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

_BACKENDS = ("sqlite", "postgres")
_PROFILES = ("ingest", "query")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    ingest = commands.add_parser("ingest", help="bare pipeline vs real agent push (DESIGN §12)")
    ingest.add_argument("--records", type=int, required=True, help="about how many ED-visit rows to push")
    ingest.add_argument("--backends", default="sqlite,postgres", help="comma list of sqlite, postgres")
    ingest.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is shown")
    ingest.add_argument("--indexes", default="ingest", help="store index profiles for the real push")
    ingest.add_argument("--json", action="store_true", help="print the results as JSON")
    indexes = commands.add_parser("indexes", help="ingest rate and query time of each index profile")
    indexes.add_argument("--records", type=int, required=True, help="ED-visit rows to store")
    indexes.add_argument("--backends", default="sqlite,postgres", help="comma list of sqlite, postgres")
    indexes.add_argument("--profiles", default="ingest,query", help="comma list of ingest, query")
    indexes.add_argument("--json", action="store_true", help="print the results as JSON")
    policy = commands.add_parser("policy", help="policy decision latency beside the bare engine call")
    policy.add_argument("--agreements", type=int, default=20, help="agreements in the bundle (1-500)")
    policy.add_argument("--decisions", type=int, default=5000, help="timed calls per decision kind")
    policy.add_argument("--repeat", type=int, default=3, help="rounds; each figure is their median")
    policy.add_argument("--bundle", type=Path, help="bundle to grow and measure (default: the shipped one)")
    policy.add_argument("--json", action="store_true", help="print the results as JSON")
    query = commands.add_parser("query", help="an aggregate over gRPC beside the bare SQL GROUP BY")
    query.add_argument("--records", type=int, default=1_000_000, help="ED-visit rows to store")
    query.add_argument("--backends", default="sqlite,postgres", help="comma list of sqlite, postgres")
    query.add_argument("--profiles", default="ingest,query", help="comma list of ingest, query")
    query.add_argument("--repeat", type=int, default=3, help="timed runs of each side; the p50 is shown")
    query.add_argument("--json", action="store_true", help="print the results as JSON")
    load = commands.add_parser("load", help="agents and analysts against two gateways, with faults")
    load.add_argument("--seconds", type=float, default=60.0, help="length of the undisturbed run")
    load.add_argument("--fault-seconds", type=float, default=35.0, help="length of each fault run")
    load.add_argument("--faults", default="none,database,gateway,policy", help="comma list of runs")
    load.add_argument("--analysts", type=int, default=20, help="analyst threads")
    load.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def _load(args: argparse.Namespace) -> int:
    from bench._load import FAULTS, LoadSettings, print_load, run_load
    from bench._pg_cluster import missing_binaries

    faults = _choices(args.faults, FAULTS, "--faults")
    if faults is None:
        return 2
    if (
        not 10 <= args.seconds <= 3600
        or not 10 <= args.fault_seconds <= 3600
        or not 1 <= args.analysts <= 200
    ):
        print("--seconds, --fault-seconds: 10 to 3600; --analysts: 1 to 200", file=sys.stderr)
        return 2
    missing = missing_binaries()
    if "policy" in faults and importlib.util.find_spec("opa_bindings") is None:
        missing = "the policy fault's OPA sidecar needs opa-golib-python-bindings (see the README)"
    if missing:
        print(f"load: {missing}", file=sys.stderr)
        return 2
    reports = []
    for fault in faults:
        seconds = args.seconds if fault == "none" else args.fault_seconds
        with tempfile.TemporaryDirectory(prefix=f"datashare-load-{fault}-") as root:
            reports.append(
                run_load(LoadSettings(fault=fault, seconds=seconds, analysts=args.analysts), Path(root))
            )
    print_load(reports, as_json=args.json)
    return 0


def _choices(text: str, allowed: tuple[str, ...], flag: str) -> list[str] | None:
    chosen = [c.strip() for c in text.split(",") if c.strip()]
    if not chosen or any(c not in allowed for c in chosen):
        print(f"{flag}: choose from {', '.join(allowed)}", file=sys.stderr)
        return None
    return chosen


def _policy(args: argparse.Namespace) -> int:
    if not 1 <= args.agreements <= 500 or args.decisions < 100 or args.repeat < 1:
        print("--agreements: from 1 to 500; --decisions: at least 100; --repeat: at least 1", file=sys.stderr)
        return 2
    from bench._policy import print_policy, run_policy
    from gateway.errors import ConfigError

    try:
        result = run_policy(args.agreements, args.decisions, args.bundle, args.repeat)
    except ConfigError as exc:  # the bundle does not load: say where, as the gateway would
        print(f"policy: {exc.message}", file=sys.stderr)
        return 1
    print_policy(result, as_json=args.json)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # `python bench/run.py` puts bench/ on the path, not the repo root that holds the packages
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    own = {"policy": _policy, "load": _load}.get(args.command)
    if own is not None:
        return own(args)
    backends = _choices(args.backends, _BACKENDS, "--backends")
    profiles = _choices(args.indexes if args.command == "ingest" else args.profiles, _PROFILES, "--indexes")
    if backends is None or profiles is None:
        return 2
    if args.records < 290 or getattr(args, "repeat", 1) < 1:
        print("--records: at least 290; --repeat: at least 1", file=sys.stderr)
        return 2
    if args.command == "query":
        from bench._query import print_query, run_query

        print_query(run_query(args.records, backends, profiles, args.repeat), as_json=args.json)
        return 0
    if args.command == "indexes":
        from bench._indexes import print_indexes, run_indexes

        print_indexes(run_indexes(args.records, backends, profiles), as_json=args.json)
        return 0
    from bench._ingest import print_result, run_ingest

    print_result(run_ingest(args.records, backends, args.repeat, profiles), as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
