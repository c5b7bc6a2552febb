"""The gateway's database: per-dataset tables, the batch register and the audit log.

``open_store(url, catalogue)`` picks the backend from the URL: ``sqlite:///file.db`` (embedded,
WAL) or ``postgresql+psycopg://...`` (production); ``indexes=`` picks the index profile
(``ingest``, the default, or ``query``; see ``_schema``). Its layout is versioned by Alembic
migrations (``_migrate``): ``upgrade_database`` and ``database_revision`` are the operator's.
"""

from gateway.store._admin import database_revision, upgrade_database
from gateway.store._base import BatchMeta, RecordColumns, Store, StoreOutcome
from gateway.store._engine import StoreSettings
from gateway.store._migrate import MIGRATE_MODES, MigrationState, head_revision
from gateway.store._schema import DEFAULT_INDEX_PROFILE, INDEX_PROFILES
from gateway.store._sql import SqlStore, open_store

__all__ = [
    "DEFAULT_INDEX_PROFILE",
    "INDEX_PROFILES",
    "MIGRATE_MODES",
    "BatchMeta",
    "MigrationState",
    "RecordColumns",
    "SqlStore",
    "Store",
    "StoreOutcome",
    "StoreSettings",
    "database_revision",
    "head_revision",
    "open_store",
    "upgrade_database",
]
