"""Benchmark harness entry point.

python bench/run.py ingest --records 100000 [--backends sqlite,postgres] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_BACKENDS = ("sqlite", "postgres")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    ingest = commands.add_parser("ingest", help="bare pipeline vs real agent push (DESIGN §12)")
    ingest.add_argument("--records", type=int, required=True, help="about how many ED-visit rows to push")
    ingest.add_argument("--backends", default="sqlite,postgres", help="comma list of sqlite, postgres")
    ingest.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is shown")
    ingest.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in _BACKENDS]
    if unknown or not backends:
        print(f"--backends: choose from {', '.join(_BACKENDS)}", file=sys.stderr)
        return 2
    if args.records < 290 or args.repeat < 1:
        print("--records: at least 290; --repeat: at least 1", file=sys.stderr)
        return 2
    # `python bench/run.py` puts bench/ on the path, not the repo root that holds the packages
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench._ingest import print_result, run_ingest

    print_result(run_ingest(args.records, backends, args.repeat), as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
