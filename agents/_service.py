"""Service mode (`agent run`): push what is new, wait, repeat — until SIGTERM or SIGINT.

Each cycle is one incremental push (agents/_pipeline.py): the spool is resent, then the source is
read from where the last cycle stopped. What a cycle does about trouble:

- gateway unreachable, busy or too slow after the client's retries (TransientPushError), the
  source unreadable for now (SourceError: the export is missing, the database is down), or the
  state held by a manual `agent push` running beside the service (StateBusyError):
  log a warning and try again after a backoff (doubling from 5 s up to interval_s, with jitter);
  nothing is lost, the spool and the read position wait;
- a refusal retrying cannot fix (PermanentPushError), a config, key or contract problem
  (ConfigError), or a source whose already-read part changed (SourceChangedError: a rewritten
  export, a repeated watermark): log an error and exit with its code, so the service manager shows it (the
  systemd unit does not restart on those exit codes);
- SIGTERM/SIGINT: stop after the batch being read, wait for the batches on the wire, exit 0.
"""

from __future__ import annotations

import random
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import FrameType

from agents._config import AgentConfig
from agents._log import get_logger
from agents._pipeline import PushSummary, push
from agents._push import GatewayClient
from agents.errors import AgentError, SourceChangedError, SourceError, StateBusyError, TransientPushError

FIRST_BACKOFF_S = 5.0


@dataclass
class ServiceReport:
    cycles: int = 0
    failed_cycles: int = 0
    sent: int = 0
    rejected: int = 0


def run_service(
    config: AgentConfig,
    *,
    stop: threading.Event | None = None,
    interval_s: float | None = None,
    max_cycles: int | None = None,
    install_signal_handlers: bool = True,
    rng: random.Random | None = None,
) -> ServiceReport:
    """Run push cycles every `interval_s` (default: [run] interval_s) until `stop` is set."""
    stop = stop or threading.Event()
    interval = interval_s if interval_s is not None else config.run.interval_s
    rng = rng or random.SystemRandom()
    log = get_logger()
    if install_signal_handlers:
        _stop_on_signals(stop)
    report = ServiceReport()
    backoff = FIRST_BACKOFF_S
    log.info("service.started", dataset=config.agent.dataset, interval_s=interval)
    while not stop.is_set():
        report.cycles += 1
        try:
            summary = push(
                config, stop=stop, client_factory=partial(GatewayClient, sleep=_interruptible(stop))
            )
        except SourceChangedError as exc:
            log.error("service.failed", error=exc.message, exit_code=exc.exit_code)  # noqa: TRY400 - no traceback in the log, by design
            raise
        except (TransientPushError, SourceError, StateBusyError) as exc:
            report.failed_cycles += 1
            wait = rng.uniform(backoff / 2, backoff)
            backoff = min(backoff * 2, max(interval, FIRST_BACKOFF_S))
            log.warning(
                "cycle.retry_later", error=exc.message, exit_code=exc.exit_code, wait_s=round(wait, 1)
            )
        except AgentError as exc:
            log.error("service.failed", error=exc.message, exit_code=exc.exit_code)  # noqa: TRY400 - no traceback in the log, by design
            raise
        else:
            backoff = FIRST_BACKOFF_S
            wait = interval
            _count(report, summary)
            log.info("cycle.finished", **summary.as_dict())
        if max_cycles is not None and report.cycles >= max_cycles:
            break
        stop.wait(wait)
    log.info("service.stopped", cycles=report.cycles, failed_cycles=report.failed_cycles)
    return report


def _count(report: ServiceReport, summary: PushSummary) -> None:
    report.sent += summary.sent
    report.rejected += summary.rejected


def _interruptible(stop: threading.Event) -> Callable[[float], None]:
    """A retry sleep that a stop request cuts short."""

    def sleep(seconds: float) -> None:
        stop.wait(seconds)

    return sleep


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        get_logger().info("service.stopping", signal=signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)
