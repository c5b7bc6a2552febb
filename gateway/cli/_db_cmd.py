"""``gateway db upgrade|current``: the store's schema revision against this gateway's migrations."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from gateway.store import MigrationState


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", required=True, type=Path, help="gateway settings TOML, e.g. ./pki/gateway.toml"
    )


def run(args: argparse.Namespace, console: Console) -> int:
    from gateway._settings import GatewaySettings
    from gateway.store import database_revision, upgrade_database

    settings = GatewaySettings.from_file(args.config)
    url, connection = settings.store_url, settings.store.connection
    if args.db_command == "upgrade":
        before, after = upgrade_database(url, connection)
        if before.at_head:
            console.print(f"store: already at revision {after.current} (head)", markup=False)
        else:
            console.print(f"store: upgraded ({_where(before)}) to revision {after.current}", markup=False)
        return 0
    state = database_revision(url, connection)
    if state.at_head:
        console.print(f"store: at revision {state.current} (head)", markup=False)
    else:
        console.print(
            f"store: {_where(state)}; this gateway's head is revision {state.head} "
            f"(run `gateway db upgrade --config {args.config}`)",
            markup=False,
        )
    return 0


def _where(state: MigrationState) -> str:
    if state.current is not None:
        return f"at revision {state.current}"
    return "empty" if state.empty else "made before migrations"
