"""Helpers for tests that need a PostgreSQL store of their own: a fresh schema per test.

Isolation is by ``search_path``, carried in the URL (``options=-csearch_path=<schema>``), so any
code that takes only a store URL (the gateway's settings, an e2e harness) lands in the schema.

    with fresh_postgres_schema("postgresql+psycopg://postgres@127.0.0.1:5432/test") as url:
        store = open_store(url, catalogue)
        ...
        store.close()  # before the schema is dropped
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def postgres_url_for_schema(base_url: str, schema: str) -> str:
    """``base_url`` with the session's search_path set to ``schema`` (which must exist)."""
    if not _SCHEMA.match(schema):
        raise ValueError("schema: lower-case letters, digits and '_' only")
    url = make_url(base_url)
    options = url.query.get("options", "")
    if isinstance(options, tuple):
        options = " ".join(options)
    combined = f"{options} -csearch_path={schema}".strip()
    return url.update_query_dict({"options": combined}).render_as_string(hide_password=False)


def create_postgres_schema(base_url: str, prefix: str = "t") -> str:
    """Create a schema with a random name and return the name."""
    schema = f"{prefix}_{secrets.token_hex(6)}"
    if not _SCHEMA.match(schema):
        raise ValueError("prefix: lower-case letters, digits and '_' only")
    _run(base_url, f'CREATE SCHEMA "{schema}"')
    return schema


def drop_postgres_schema(base_url: str, schema: str) -> None:
    if not _SCHEMA.match(schema):
        raise ValueError("schema: lower-case letters, digits and '_' only")
    _run(base_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def fresh_postgres_schema(base_url: str, prefix: str = "t") -> Iterator[str]:
    """A new schema for the duration of the block; yields a URL that uses it. Close every
    engine on the URL before leaving the block, or the drop waits for their locks."""
    schema = create_postgres_schema(base_url, prefix)
    try:
        yield postgres_url_for_schema(base_url, schema)
    finally:
        drop_postgres_schema(base_url, schema)


def _run(base_url: str, statement: str) -> None:
    engine = create_engine(make_url(base_url).set(drivername="postgresql+psycopg"), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()
