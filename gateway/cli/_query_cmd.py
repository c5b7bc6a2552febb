"""``gateway datasets`` and ``gateway query``: the analyst's commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import grpc
from rich.console import Console

from gateway._pb import query_pb2, query_pb2_grpc
from gateway._settings import ClientProfile
from gateway._tls import client_channel
from gateway.cli._chart import chart_data, check_chart_option, draw_chart
from gateway.cli._client import parse_filter, parse_measure, parse_months
from gateway.cli._render import datasets_doc, print_datasets, print_result, result_csv, result_json

TIMEOUT_S = 60.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agreement", required=True, help="data-sharing agreement id, e.g. ag-2026-001")
    p.add_argument(
        "--purpose",
        required=True,
        help="purpose of the question, one the agreement names, e.g. overdose-prevention",
    )
    p.add_argument("--dataset", required=True, help="dataset to count in, e.g. ed_visits")
    p.add_argument(
        "--measure",
        action="append",
        default=[],
        metavar="MEASURE",
        help="subjects (distinct people, the default), records, sum:FIELD or mean:FIELD; repeatable, "
        "e.g. --measure subjects --measure sum:length_of_stay_hours",
    )
    p.add_argument(
        "--group-by",
        action="append",
        default=[],
        metavar="DIM",
        help="dimension to group by, or month/quarter/year; repeatable,\n"
        "e.g. --group-by district --group-by month",
    )
    p.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="DIM=V1,V2",
        help="keep only these values of a dimension; repeatable and ANDed, e.g. --filter sex=F,M",
    )
    p.add_argument(
        "--months",
        metavar="FIRST:LAST",
        help="inclusive month range, e.g. 2024-01:2025-06 (required with a time group-by)",
    )
    p.add_argument(
        "--link-dataset",
        metavar="DATASET",
        help="count only people who also appear in this dataset near the event, e.g. police_incidents",
    )
    p.add_argument(
        "--link-days-before",
        type=int,
        default=0,
        metavar="N",
        help="window start, days before the event (default 0)",
    )
    p.add_argument(
        "--link-days-after",
        type=int,
        default=0,
        metavar="N",
        help="window end, days after the event (default 0)",
    )
    p.add_argument(
        "--link-filter",
        action="append",
        default=[],
        metavar="DIM=V1,V2",
        help="filter on the linked dataset, e.g. --link-filter incident_type=drugs",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "--json",
        action="store_true",
        help="print the result as JSON: cells, total, disclosure terms and decision id;\n"
        "a withheld value is null",
    )
    out.add_argument(
        "--csv",
        action="store_true",
        help="print CSV: a header, then one row per cell (no total row); a withheld value is an\n"
        "empty field, never 0, e.g. --csv > districts.csv",
    )
    p.add_argument(
        "--chart",
        type=Path,
        metavar="FILE",
        help="also draw the result into FILE (.png or .svg): a line over time when grouped by\n"
        "month/quarter/year (a line per value of a second dimension), bars otherwise;\n"
        "withheld cells are gaps, e.g. --group-by month --group-by district --chart trend.png",
    )


def build_request(args: argparse.Namespace) -> query_pb2.AggregateRequest:
    request = query_pb2.AggregateRequest(
        agreement_id=args.agreement,
        purpose=args.purpose,
        dataset=args.dataset,
        measures=[parse_measure(m) for m in (args.measure or ["subjects"])],
        group_by=args.group_by,
        filters=[parse_filter(f) for f in args.filter],
    )
    if args.months:
        request.months.CopyFrom(parse_months(args.months))
    if args.link_dataset:
        request.link.CopyFrom(
            query_pb2.Link(
                dataset=args.link_dataset,
                days_before=max(args.link_days_before, 0),
                days_after=max(args.link_days_after, 0),
                filters=[parse_filter(f, "--link-filter") for f in args.link_filter],
            )
        )
    return request


def query(args: argparse.Namespace, console: Console) -> int:
    request = build_request(args)
    if args.chart is not None:
        check_chart_option(args.chart, request.group_by)
    try:
        with client_channel(ClientProfile.from_file(args.client)) as channel:
            result = query_pb2_grpc.QueryStub(channel).Aggregate(request, timeout=TIMEOUT_S)
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.PERMISSION_DENIED:
            raise
        print_refusal(Console(stderr=True), args.agreement, exc.details() or "")
        return 3
    if args.json:
        sys.stdout.write(result_json(result) + "\n")
    elif args.csv:
        sys.stdout.write(result_csv(result))
    else:
        print_result(console, result)
    if args.chart is not None:
        draw_chart(chart_data(result, args.dataset), args.chart)
        if not (args.json or args.csv):  # stdout stays clean for scripts
            console.print(f"chart written to {args.chart}")
    return 0


def print_refusal(err: Console, agreement: str, details: str) -> None:
    """The policy's reasons, one a line: they say what to change, and carry no figures."""
    err.print(f"gateway: refused under agreement {agreement}:", markup=False)
    for reason in [r.strip() for r in details.split("; ") if r.strip()] or ["denied by policy"]:
        err.print(f"  - {reason}", markup=False)


def datasets(args: argparse.Namespace, console: Console) -> int:
    with client_channel(ClientProfile.from_file(args.client)) as channel:
        response = query_pb2_grpc.QueryStub(channel).ListDatasets(
            query_pb2.ListDatasetsRequest(), timeout=TIMEOUT_S
        )
    if args.json:
        sys.stdout.write(json.dumps(datasets_doc(response.datasets), indent=2) + "\n")
    else:
        print_datasets(console, response.datasets)
    return 0
