"""Bulk insert of a batch's rows, by the fastest path each driver offers, inside the caller's
transaction (DESIGN §12): COPY on PostgreSQL (psycopg), the driver's executemany with tuples on
SQLite. Both skip SQLAlchemy's per-row parameter processing, which costs more than the insert.
"""

from __future__ import annotations

from sqlalchemy import Connection, Table

from gateway.store._records import Rows


class BulkCopyError(Exception):
    """COPY failed in the driver, outside SQLAlchemy. ``orig`` is the driver's error, kept for
    the store's scrubbed description only (its message may quote a row)."""

    def __init__(self, orig: BaseException) -> None:
        super().__init__("COPY failed")
        self.orig = orig


def insert_rows(conn: Connection, table: Table, rows: Rows) -> None:
    if not rows.values:
        return
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(n) for n in rows.names)
    if conn.dialect.name == "postgresql":
        _copy(conn, f"COPY {quote(table.name)} ({columns}) FROM STDIN", rows)
    else:
        marks = ", ".join("?" for _ in rows.names)
        # identifiers come from the catalogue and are quoted; every value is a bound parameter
        statement = f"INSERT INTO {quote(table.name)} ({columns}) VALUES ({marks})"  # noqa: S608
        conn.exec_driver_sql(statement, rows.values)


def _copy(conn: Connection, statement: str, rows: Rows) -> None:
    import psycopg  # only the PostgreSQL path needs the driver itself

    driver = conn.connection.driver_connection
    if driver is None:  # pragma: no cover - a live pooled connection always has one
        raise BulkCopyError(RuntimeError("no driver connection"))
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows.values:
                copy.write_row(row)
    except psycopg.Error as exc:  # COPY bypasses SQLAlchemy's error wrapping
        raise BulkCopyError(exc) from None
