"""Alembic migrations of the store's fixed tables and of every dataset table present
(see gateway/store/_migrate.py). Run by ``gateway db upgrade``, or at start-up with
``[store] migrate = "auto"``."""
