"""Keeping PostgreSQL's planner statistics up with ingest.

A dataset table starts empty and grows by COPY. Until it is analysed, the planner knows its size
(from its pages) but nothing of its columns: every IN list and month range gets a default
selectivity, a filtered side is estimated at a row or two, and joins become nested loops. In the
load run (tests/e2e/test_load_and_faults.py, 8,500 records) the release ledger's linked check
took 0.2 s that way, a nested loop over 3,058 x 232 pairs, inside the release turn every
analyst of the agreement waits for: answers queued past their 30 s deadline. Autovacuum analyses
a table only once a tenth of it has changed, and looks at most once a minute (its naptime): a new
deployment's first hours, or any bulk load, would be planned on guesses.

So a store that writes batches has a dataset table analysed once it holds rows, and again each
time it has stored as many rows in it as the table held when last analysed (each gateway process
counts its own batches: with several, analyses come a little later), but not within
REANALYSE_AFTER_S of its last analysis: a bulk load doubles a table every second or so, and
each ANALYZE samples 30,000 rows (~0.25 s of the server's CPU at 200k rows). Unspaced, a
1M-record push ran seven of them, beside the COPYs they slowed; an analysis held back runs
when its time comes, batch or no batch. Between analyses the planner
scales its row estimates by the table's pages; what goes stale is the columns' distributions,
which only a large share of new rows can move. A background thread does it on its own
connection, never inside a batch's transaction or a push's time, and passes over a table another
session is analysing (SKIP_LOCKED). SQLite's planner keeps its fixed estimates: nothing to do.
"""

from __future__ import annotations

import threading
import time

import structlog
from sqlalchemy import Table, text

from gateway.store._engine import Database

log = structlog.get_logger("gateway.store")

# Below this many changed rows a table is not analysed again: small tables are planned well
# enough on their first statistics, and each ANALYZE costs a sample read.
MIN_CHANGED_ROWS = 1_000
# A look at a table's counters at most this often, however many batches arrive.
LOOK_INTERVAL_S = 1.0
# A table already analysed is not analysed again sooner than this.
REANALYSE_AFTER_S = 5.0

_PLANNER_ROWS = text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:name)")


def needs_analysis(reltuples: float, changed: int) -> bool:
    """Whether a table whose planner row count is ``reltuples`` (-1: never analysed), with
    ``changed`` rows stored since this process last analysed it, should be analysed now."""
    if reltuples < 0:
        return True
    return changed >= max(MIN_CHANGED_ROWS, reltuples)


class PlannerStatistics:
    """Analyses dataset tables in the background as batches grow them (PostgreSQL only)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._guard = threading.Lock()
        # rows this process stored per table since it last analysed it. Not the server's own
        # n_mod_since_analyze: a backend reports its inserts up to a second after it commits, so
        # an ANALYZE run meanwhile is followed by the rows it already counted, reported as new
        self._stored: dict[Table, int] = {}
        self._due: set[Table] = set()
        self._analysed_at: dict[Table, float] = {}  # time.monotonic() of this process's last ANALYZE
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def stored(self, table: Table, rows: int) -> None:
        """Note that a batch of ``rows`` was stored in ``table``; never waits on the database."""
        if self._db.backend != "postgresql" or self._stop.is_set():
            return
        with self._guard:
            self._stored[table] = self._stored.get(table, 0) + rows
            self._due.add(table)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="planner-statistics", daemon=True)
                self._thread.start()
        self._wake.set()

    def close(self) -> None:
        """Stop the thread (an ANALYZE under way is waited for)."""
        self._stop.set()
        self._wake.set()
        with self._guard:
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._guard:  # a table held back is looked at again without waiting for a batch
                timeout = LOOK_INTERVAL_S if self._due else None
            self._wake.wait(timeout)
            self._wake.clear()
            with self._guard:
                due, self._due = self._due, set()
            for table in sorted(due, key=lambda t: t.name):
                if self._stop.is_set():
                    return
                if not self._refresh(table):
                    with self._guard:
                        self._due.add(table)
            self._stop.wait(LOOK_INTERVAL_S)

    def _refresh(self, table: Table) -> bool:
        """Analyse ``table`` if it needs it; False (look again later) when this process analysed it
        less than REANALYSE_AFTER_S ago."""
        with self._guard:
            ours = self._stored.get(table, 0)
            last = self._analysed_at.get(table)
        if last is not None and time.monotonic() - last < REANALYSE_AFTER_S:
            return False  # looked at once its time is up, not before: one look, as without spacing
        # an advisory chore: a failure is logged, and the table looked at again after its next batch
        try:
            with self._db.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT")
                name = conn.dialect.identifier_preparer.format_table(table)
                row = conn.execute(_PLANNER_ROWS, {"name": name}).first()
                if row is None or not needs_analysis(float(row[0]), ours):
                    return True
                conn.exec_driver_sql(f"ANALYZE (SKIP_LOCKED) {name}")  # a name from our own schema
        except Exception as exc:  # noqa: BLE001 - whatever it was, the thread must go on for the next batch
            log.warning("planner_statistics_failed", table=table.name, error=type(exc).__name__)
            return True
        with self._guard:  # rows stored while it ran count towards the next one
            self._stored[table] -= ours
            self._analysed_at[table] = time.monotonic()
        return True
