"""Alembic's environment: always run on a connection the store hands over, inside the store's
own transaction (which holds the schema lock), never from a URL of its own."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
