"""The `agent` command line: check, preview, push, run and keygen.

Every command is one entry in COMMANDS (name -> (add its arguments, run it)); a new command is a
new entry. Errors print one line on stderr and end with the exit code of the AgentError class;
nothing prints a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from agents._check import CHECK_DESCRIPTION, add_check_arguments, run_check
from agents._config import load_config
from agents._keygen import KEYGEN_DESCRIPTION, add_keygen_arguments, run_keygen
from agents._log import configure_logging
from agents._pipeline import PushSummary, push
from agents._preview import PREVIEW_DESCRIPTION, add_preview_arguments, run_preview
from agents._service import run_service
from agents._spool_cmd import SPOOL_DESCRIPTION, add_spool_arguments, run_spool
from agents.errors import AgentError, TransientPushError

PROG = "agent"

DESCRIPTION = """\
The data-sharing agent: reads your agency's records, keeps only the fields the dataset
contract names, pseudonymises identifiers with the consortium linkage key (which never leaves
this machine), coarsens dates and ages, seals every batch to the gateway's public key, signs it
with your agency's key, and pushes it to the gateway over mutual TLS.

examples:
  agent check --config agent-health.toml    is everything in place? (keys, certificates, gateway)
  agent preview --config agent-health.toml  exactly what would leave this machine, and what not
  agent push --config agent-health.toml     send what is new in the source, once
  agent run --config agent-health.toml      keep sending what is new, on a schedule
  agent push --help                         the options of one command, and the config format
"""

EXIT_CODES = """\
exit codes:
  0  done                           3  the source cannot be read
  1  internal error                 4  the gateway refused (its reason is printed)
  2  config, key or contract error  5  the gateway stayed unreachable after retries
"""

PUSH_DESCRIPTION = """\
Read the source named in the config, map every record to the dataset contract (fetched from
the gateway and cached in state_dir), and push sealed, signed batches to the gateway.

A record that does not fit (missing identifier, bad date, value outside the contract) is not
sent: its line number, field and reason are kept in <state_dir> and listed in
<state_dir>/rejects.csv, and the run goes on.

Nothing is lost and nothing is sent twice: every sealed batch is first written to a spool in
<state_dir> and leaves it only when the gateway acknowledges it; the position in the source moves
on with it. A run that was killed, or that stopped because the gateway stayed unreachable, is
simply run again: it resends the spool, then reads on from where it stopped. A second run over an
export that has only grown sends only the new records; an export that was rewritten is refused
(exit 3) unless you say --from-start.

At the end one line sums up the run (your own local figures; nothing is sent about them):
  read N, sent N, rejected N, batches N (stored N, duplicate N)[, N resent from the spool]

config file (TOML; relative paths are read from the config's folder):
  [agent]    agency, dataset, batch_size, state_dir
  [gateway]  address, server_name, ca, cert, key, hpke_public_key, timeout_s, retries
  [keys]     linkage_key, signing_key, signing_key_id   (files readable by their owner only)
  [source]   type = "csv", path, delimiter, encoding
  [fields.<name>]  one per contract column, plus subject and event_date, each with a transform:
             pseudonymise (columns), date (column, format), age_band (column, format),
             map (column, map), lookup (column, file), number (column),
             hours_between (columns, format)

examples:
  agent push --config /etc/datashare/agent-health.toml
  agent push --config agent-health.toml --json > last-run.json
  agent push --config agent-health.toml --quiet        # for cron: silent unless it fails
"""


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        required=True,
        type=Path,
        metavar="FILE",
        help="the agent's TOML config; relative paths inside it are read from its folder "
        "(example: --config agent-health.toml)",
    )


def _add_push(parser: argparse.ArgumentParser) -> None:
    _add_config(parser)
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the summary as one JSON object on stdout instead of a sentence (example: --json "
        'prints {"read": 20000, "sent": 19996, ...})',
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar and no summary sentence; errors still go to stderr, and --json still "
        "prints (example: --quiet in a cron job)",
    )
    _add_logging(parser, default_format="text", default_level="warning")
    parser.add_argument(
        "--from-start",
        action="store_true",
        help="read the source from its beginning, not from where the last run stopped: for an export "
        "that was replaced by a different file. Batches the gateway already holds come back as "
        "duplicates; records that moved to other batches are sent again (example: --from-start)",
    )


def _run_push(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, args.log_format)
    config = load_config(args.config)
    show_progress = not args.quiet and sys.stderr.isatty()
    with _ProgressBar(enabled=show_progress) as bar:
        summary = push(config, progress=bar if show_progress else None, from_start=args.from_start)
    _report(summary, as_json=args.json, quiet=args.quiet)
    return 0


RUN_DESCRIPTION = """\
Service mode: push what is new in the source, wait [run] interval_s (or --interval), repeat,
until SIGTERM or SIGINT (then it finishes the batch in hand, waits for the gateway's answers and
exits 0). This is what the systemd unit in deploy/agent runs.

Each cycle is an incremental `agent push`: batches left in the spool are resent first, then the
source is read on from where the last cycle stopped. When the gateway is unreachable or the
source cannot be read for now, the cycle is retried later (backoff from 5 s up to the interval);
nothing is lost meanwhile. A refusal retrying cannot fix (exit 4) or a config problem (exit 2)
stops the service with that exit code.

One line per event goes to stderr: JSON by default here (for journald and log shippers), or
text with --log-format text. Lines carry counts and batch ids only, never record content.

examples:
  agent run --config /etc/datashare/agent.toml
  agent run --config agent-health.toml --interval 60 --log-format text
  agent run --config agent-health.toml --once        # one cycle, then exit (for a cron job)
"""


def _add_run(parser: argparse.ArgumentParser) -> None:
    _add_config(parser)
    parser.add_argument(
        "--interval",
        type=_positive_seconds,
        metavar="SECONDS",
        help="seconds between cycles, instead of [run] interval_s from the config (example: --interval 300)",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="run one cycle and exit; unlike push, a gateway outage is logged and exits 5 without a "
        "traceback (example: --once)",
    )
    _add_logging(parser, default_format="json", default_level="info")


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of seconds") from None
    if not 1 <= value <= 7 * 86400:
        raise argparse.ArgumentTypeError("must be from 1 to 604800 seconds")
    return value


def _add_logging(parser: argparse.ArgumentParser, *, default_format: str, default_level: str) -> None:
    parser.add_argument(
        "--log-format",
        choices=("json", "text"),
        default=default_format,
        help=f"how event lines on stderr look (default {default_format}; example: --log-format text)",
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=default_level,
        help=f"the least important events shown (default {default_level}; debug adds one line per "
        "batch; example: --log-level warning)",
    )


def _run_run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, args.log_format)
    config = load_config(args.config)
    report = run_service(config, interval_s=args.interval, max_cycles=1 if args.once else None)
    if args.once and report.failed_cycles:
        return TransientPushError.exit_code
    return 0


def _report(summary: PushSummary, *, as_json: bool, quiet: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(summary.as_dict(), sort_keys=False) + "\n")
    elif not quiet:
        sys.stdout.write(summary.line() + "\n")


COMMANDS: dict[
    str, tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
] = {
    "check": (
        "check config, keys, certificates, source and gateway before leaving the agent running",
        CHECK_DESCRIPTION,
        add_check_arguments,
        run_check,
    ),
    "preview": (
        "show exactly what would leave: the first records and a column-by-column table",
        PREVIEW_DESCRIPTION,
        add_preview_arguments,
        run_preview,
    ),
    "push": ("send a source to the gateway once", PUSH_DESCRIPTION, _add_push, _run_push),
    "run": ("keep sending what is new, on a schedule (service mode)", RUN_DESCRIPTION, _add_run, _run_run),
    "spool": (
        "what waits to be sent; rewind refused batches to send them again",
        SPOOL_DESCRIPTION,
        add_spool_arguments,
        run_spool,
    ),
    "keygen": (
        "make a new signing key (first enrolment or rotation)",
        KEYGEN_DESCRIPTION,
        add_keygen_arguments,
        run_keygen,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    for name, (summary, description, add_arguments, _run) in COMMANDS.items():
        sub = commands.add_parser(
            name,
            help=summary,
            description=description,
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        return exc.code if isinstance(exc.code, int) else 2
    run = COMMANDS[args.command][3]
    try:
        return run(args)
    except AgentError as exc:
        sys.stderr.write(f"{PROG}: error: {exc.message}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        sys.stderr.write(f"{PROG}: internal error: {type(exc).__name__}\n")
        return 1


class _ProgressBar:
    """A rich progress bar on stderr (only used when stderr is a terminal)."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled

    def __enter__(self) -> Self:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]push"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("starting", total=1.0)
        return self

    def update(self, summary: PushSummary, fraction: float | None) -> None:
        if not self.enabled:
            return
        description = f"read {summary.read}, sent {summary.sent}, rejected {summary.rejected}"
        if fraction is None:
            self._progress.update(self._task, description=description)
        else:
            self._progress.update(self._task, completed=fraction, description=description)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.enabled:
            self._progress.stop()


if __name__ == "__main__":
    sys.exit(main())
