"""The agent's durable state: the spool of sealed batches, the read cursor and the watermark, the rejects.

One SQLite file, ``<state_dir>/agent-state.sqlite3`` (stdlib sqlite3, WAL), so every step that must
happen together happens in one transaction:

- **spool** a batch: the sealed bytes go in, the rejects met while reading it go in, and the read
  cursor moves past it — all or nothing. A batch leaves the spool only when the gateway has
  acknowledged it (STORED or DUPLICATE).
- **acknowledge** a batch: it is marked; the contiguous acknowledged prefix of the spool is deleted
  and the **watermark** (the source position up to which the gateway holds everything) moves to the
  end of the last batch of that prefix. Acknowledgements may arrive out of order; the watermark
  never skips an unacknowledged batch.

A restart first resends whatever is in the spool (same bytes, same batch ids, so a batch the gateway
already stored comes back DUPLICATE), then reads the source from the read cursor. Were the spool
lost, reading from the watermark would rebuild the same batches with the same deterministic ids,
so nothing could be stored twice either way.

synchronous=NORMAL in WAL mode survives a killed process; after a power cut it may forget the last
few transactions, which only means re-reading and re-sealing batches whose ids the gateway knows.

Rejects are keyed by (source, start position of the stretch read, ordinal), so re-reading rows
after a crash cannot record them twice. Positions are JSON objects the source defines (a CSV
byte offset, a database watermark).
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Concatenate, ParamSpec, Self, TypeVar

from agents.errors import ConfigError, StateBusyError, StateError

STATE_FILE = "agent-state.sqlite3"
SCHEMA_VERSION = "1"

Position = Mapping[str, object]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS cursor (
        source TEXT PRIMARY KEY,
        read_position TEXT NOT NULL,
        watermark TEXT,
        updated_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS spool (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        source TEXT NOT NULL,
        batch_id TEXT NOT NULL UNIQUE,
        record_count INTEGER NOT NULL,
        end_position TEXT NOT NULL,
        sealed BLOB NOT NULL,
        acked INTEGER NOT NULL DEFAULT 0,
        spooled_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS rejects (
        source TEXT NOT NULL,
        chunk_start TEXT NOT NULL,
        line INTEGER NOT NULL,
        field TEXT NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (source, chunk_start, line))""",
)


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    seq: int
    source: str
    batch_id: str
    record_count: int
    sealed: bytes


@dataclass(frozen=True, slots=True)
class RejectRow:
    line: int
    field: str
    reason: str


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _translated(
    method: Callable[Concatenate[AgentState, _P], _R],
) -> Callable[Concatenate[AgentState, _P], _R]:
    """sqlite3 errors at run time (disk full, I/O error, a lock held too long) become one line
    naming the state file, never an internal error."""

    def wrapper(self: AgentState, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):
                raise StateBusyError(f"{self.path}: another agent process is using this state_dir") from exc
            raise StateError(f"{self.path}: cannot read or write the agent state ({exc})") from exc
        except sqlite3.Error as exc:
            raise StateError(f"{self.path}: the agent state is damaged ({type(exc).__name__})") from exc

    functools.update_wrapper(wrapper, method)
    return wrapper


def encode_position(position: Position) -> str:
    """Canonical JSON of a position: the same position always gives the same text (it is hashed)."""
    return json.dumps(position, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class SpoolPeek:
    """What waits in the spool, read without taking the state over (for ``agent check``)."""

    batches: int
    records: int
    oldest_spooled_at: str | None


def peek_spool(state_dir: Path) -> SpoolPeek | None:
    """The spool's contents, read-only; None when there is no state file yet.

    StateBusyError while a running agent holds the state (it keeps the file locked for as long as
    it runs), StateError for a file that cannot be read."""
    path = state_dir / STATE_FILE
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=0.5)
    except sqlite3.Error as exc:
        raise StateError(f"{path}: cannot open the agent state read-only ({exc})") from exc
    try:
        row = db.execute(
            "SELECT count(*), coalesce(sum(record_count), 0), min(spooled_at) FROM spool WHERE acked=0"
        ).fetchone()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            raise StateBusyError(f"{path}: in use by a running agent") from exc
        raise StateError(f"{path}: cannot read the agent state ({exc})") from exc
    except sqlite3.DatabaseError as exc:
        raise StateError(f"{path}: not an agent state file (or damaged)") from exc
    finally:
        db.close()
    return SpoolPeek(int(row[0]), int(row[1]), row[2])


class AgentState:
    """Open with `AgentState(state_dir)` as a context manager; one writer (this agent) at a time."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STATE_FILE

    def __enter__(self) -> Self:
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=2.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # a second agent on the same state would interleave spools: refuse it instead
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            with self._transaction() as db:
                for statement in _SCHEMA:
                    db.execute(statement)
                db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
                (version,) = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if version != SCHEMA_VERSION:
                raise ConfigError(f"{self.path}: state file from another agent version ({version})")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):
                raise StateBusyError(f"{self.path}: another agent process is using this state_dir") from exc
            raise StateError(f"{self.path}: cannot open the agent state ({exc})") from exc
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{self.path}: not an agent state file (or damaged)") from exc
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._db.close()

    class _Txn:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(
            self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
        ) -> None:
            if exc_type is None:
                self.db.execute("COMMIT")
            elif self.db.in_transaction:
                self.db.execute("ROLLBACK")

    def _transaction(self) -> AgentState._Txn:
        return AgentState._Txn(self._db)

    # --- reading ---------------------------------------------------------------------------

    @_translated
    def read_position(self, source: str) -> Position | None:
        """Where reading resumes: just past the last batch put in the spool (or past rejects only)."""
        row = self._db.execute("SELECT read_position FROM cursor WHERE source=?", (source,)).fetchone()
        return None if row is None else json.loads(row[0])

    @_translated
    def watermark(self, source: str) -> Position | None:
        """The position up to which the gateway has acknowledged every batch."""
        row = self._db.execute("SELECT watermark FROM cursor WHERE source=?", (source,)).fetchone()
        return None if row is None or row[0] is None else json.loads(row[0])

    @_translated
    def pending(self) -> list[SpoolEntry]:
        """Spooled batches not yet acknowledged, oldest first, whatever source they came from."""
        rows = self._db.execute(
            "SELECT seq, source, batch_id, record_count, sealed FROM spool WHERE acked=0 ORDER BY seq"
        ).fetchall()
        return [SpoolEntry(*row) for row in rows]

    @_translated
    def spooled_counts(self) -> tuple[int, int]:
        """(batches, records) waiting in the spool."""
        batches, records = self._db.execute(
            "SELECT count(*), coalesce(sum(record_count), 0) FROM spool WHERE acked=0"
        ).fetchone()
        return int(batches), int(records)

    @_translated
    def rejects(self, source: str) -> list[RejectRow]:
        rows = self._db.execute(
            "SELECT line, field, reason FROM rejects WHERE source=? ORDER BY rowid", (source,)
        ).fetchall()
        return [RejectRow(*row) for row in rows]

    # --- writing ---------------------------------------------------------------------------

    @_translated
    def spool(
        self,
        source: str,
        start: str,
        end_position: Position,
        rejects: Sequence[RejectRow],
        batch: tuple[str, int, bytes] | None,
    ) -> int | None:
        """Record one stretch of the source (starting at `start`, canonical text): its rejects, its
        sealed batch (id, records, bytes) if any, and the read cursor moved to `end_position`.
        Returns the spool seq of the batch (None if none)."""
        end = encode_position(end_position)
        now = _now()
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO rejects VALUES (?, ?, ?, ?, ?)",
                [(source, start, r.line, r.field, r.reason) for r in rejects],
            )
            seq = None
            if batch is not None:
                batch_id, count, sealed = batch
                db.execute(
                    "INSERT OR IGNORE INTO spool (source, batch_id, record_count, end_position, sealed,"
                    " spooled_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (source, batch_id, count, end, sealed, now),
                )
                (seq,) = db.execute("SELECT seq FROM spool WHERE batch_id=?", (batch_id,)).fetchone()
            db.execute(
                "INSERT INTO cursor (source, read_position, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (source) DO UPDATE SET read_position=excluded.read_position,"
                " updated_at=excluded.updated_at",
                (source, end, now),
            )
            if batch is None:
                self._advance_watermark(db, source)
        return seq

    @_translated
    def acknowledge(self, seq: int) -> None:
        """The gateway holds batch `seq`: drop the acknowledged prefix, move the watermark."""
        with self._transaction() as db:
            row = db.execute("SELECT source FROM spool WHERE seq=?", (seq,)).fetchone()
            if row is None:
                return
            db.execute("UPDATE spool SET acked=1 WHERE seq=?", (seq,))
            self._advance_watermark(db, row[0])

    @staticmethod
    def _advance_watermark(db: sqlite3.Connection, source: str) -> None:
        last_end = None
        for seq, acked, end in db.execute(
            "SELECT seq, acked, end_position FROM spool WHERE source=? ORDER BY seq", (source,)
        ).fetchall():
            if not acked:
                break
            db.execute("DELETE FROM spool WHERE seq=?", (seq,))
            last_end = end
        if db.execute("SELECT 1 FROM spool WHERE source=? LIMIT 1", (source,)).fetchone() is None:
            # nothing of this source is waiting: the gateway holds everything read so far
            last_end = db.execute("SELECT read_position FROM cursor WHERE source=?", (source,)).fetchone()
            last_end = None if last_end is None else last_end[0]
        if last_end is not None:
            db.execute(
                "UPDATE cursor SET watermark=?, updated_at=? WHERE source=?", (last_end, _now(), source)
            )

    @_translated
    def sources(self) -> list[tuple[str, Position, Position | None]]:
        """(source, read position, watermark) of every source this state has read."""
        rows = self._db.execute(
            "SELECT source, read_position, watermark FROM cursor ORDER BY source"
        ).fetchall()
        return [
            (name, json.loads(read), None if mark is None else json.loads(mark)) for name, read, mark in rows
        ]

    @_translated
    def oldest_spooled_at(self) -> str | None:
        row = self._db.execute("SELECT min(spooled_at) FROM spool WHERE acked=0").fetchone()
        return None if row is None else row[0]

    @_translated
    def rewind_to_watermark(self) -> tuple[int, int]:
        """Drop every batch waiting in the spool and move each source's read position back to its
        watermark, so the next run reads, seals and sends those records again (with the current
        signing key and contract). Returns (batches, records) dropped. Nothing the gateway holds is
        affected: the watermark only ever covers acknowledged batches."""
        with self._transaction() as db:
            batches, records = db.execute(
                "SELECT count(*), coalesce(sum(record_count), 0) FROM spool WHERE acked=0"
            ).fetchone()
            db.execute("DELETE FROM spool")
            for source, mark in db.execute("SELECT source, watermark FROM cursor").fetchall():
                if mark is None:  # nothing of it acknowledged yet: read it from its beginning
                    db.execute("DELETE FROM cursor WHERE source=?", (source,))
                    db.execute("DELETE FROM rejects WHERE source=?", (source,))
                else:
                    db.execute("UPDATE cursor SET read_position=watermark WHERE source=?", (source,))
        return int(batches), int(records)

    @_translated
    def forget_source(self, source: str) -> None:
        """Start the source again from its beginning (its spooled batches are still delivered)."""
        with self._transaction() as db:
            db.execute("DELETE FROM cursor WHERE source=?", (source,))
            db.execute("DELETE FROM rejects WHERE source=?", (source,))
