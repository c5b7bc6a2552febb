"""`agent spool status|rewind`: what waits to be sent, and the way out when the gateway refuses it.

A batch stays in the spool until the gateway acknowledges it, and every run resends the spool
first; so a batch the gateway refuses for good (sealed under a contract version it no longer
accepts, signed with a key it no longer enrols) stops every run with exit 4. `rewind` drops the
waiting batches and moves the read position back to the watermark: the next run reads those
records again and seals them under the current contract and key. The gateway holds nothing of
them (the watermark covers only acknowledged batches), and re-read batches keep their ids, so
nothing is lost or stored twice.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agents._config import load_config
from agents._contract import ensure_state_dir
from agents._state import AgentState
from agents.errors import ConfigError

SPOOL_DESCRIPTION = """\
Show what waits in the spool (sealed batches the gateway has not acknowledged yet) and how far
each source has been read and acknowledged; or, with `rewind`, drop the waiting batches so the
next run reads those records again and seals them with the current signing key and contract.
Use rewind only when the gateway refuses the spooled batches for good (exit 4: a retired signing
key, a contract version it no longer accepts) and the cause is fixed. Stop `agent run` first: the
spool belongs to one agent process at a time.

examples:
  agent spool status --config agent-health.toml
  agent spool status --config agent-health.toml --json
  agent spool rewind --config agent-health.toml --yes
"""


def add_spool_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=("status", "rewind"),
        help="status: what waits and where each source stands; rewind: drop the waiting batches and "
        "read them again next run (example: status)",
    )
    parser.add_argument(
        "--config",
        required=True,
        type=Path,
        metavar="FILE",
        help="the agent's TOML config (example: --config agent-health.toml)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object (example: --json)")
    parser.add_argument(
        "--yes", action="store_true", help="confirm rewind; without it rewind only says what it would do"
    )


def run_spool(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    ensure_state_dir(config.agent.state_dir)
    with AgentState(config.agent.state_dir) as state:
        batches, records = state.spooled_counts()
        if args.action == "rewind":
            if not args.yes:
                raise ConfigError(
                    f"rewind would drop {batches} waiting batches and read them again next run; "
                    "add --yes to do it"
                )
            dropped = state.rewind_to_watermark()
            result: dict[str, object] = {"dropped_batches": dropped[0], "dropped_records": dropped[1]}
            text = f"dropped {dropped[0]} batches ({dropped[1]} records); the next run reads them again"
        else:
            result = {
                "waiting_batches": batches,
                "waiting_records": records,
                "oldest": state.oldest_spooled_at(),
                "sources": [
                    {"source": name, "read": read, "acknowledged": mark}
                    for name, read, mark in state.sources()
                ],
            }
            text = f"{batches} batches ({records} records) wait in the spool"
            if batches:
                text += f", the oldest since {result['oldest']}"
            for name, read, mark in state.sources():
                text += f"\n  {name}: read to {_where(read)}, acknowledged to {_where(mark)}"
    sys.stdout.write((json.dumps(result) if args.json else text) + "\n")
    return 0


def _where(position: object) -> str:
    if not isinstance(position, dict):
        return "nothing yet"
    if "line" in position:
        return f"line {position['line']}"
    if "rows" in position:
        return f"row {position['rows']}"
    return "a saved position"
