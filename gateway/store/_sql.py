"""``SqlStore``: the Store protocol on SQLAlchemy Core, for SQLite (WAL) and PostgreSQL.

Every foreign error is translated here, with a message that carries no data: ``StoreError`` for
the database, ``AuditWriteError`` for the audit log (no entry, no release). The driver's own
error is not chained, only a description of it in identifiers (see ``_failures``): database
error messages can quote the rows they refused.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from typing import Any

from sqlalchemy import Connection, Row, RowMapping, Select, bindparam, func, inspect, or_, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from gateway.audit._budget import Quota, budget_period, parse_time
from gateway.audit._chain import chain_hash
from gateway.audit._checkpoint import Checkpoint, CheckpointPolicy
from gateway.audit._types import GENESIS_HASH, AuditDraft, AuditEntry, AuditFilter
from gateway.catalogue import Catalogue
from gateway.disclosure._dominance import dominated
from gateway.disclosure._ledger import CellPredicate, Check, LedgerCell, container_layers, grouped_pairs
from gateway.errors import (
    AuditWriteError,
    BudgetSpent,
    ConfigError,
    Conflict,
    GatewayError,
    InvalidRequest,
    StoreError,
)
from gateway.query._spec import QuerySpec, RawCell, RawResult
from gateway.store._aggregate import SUM_SCALE, AggregateStatements, FastTotal, compile_aggregate
from gateway.store._audit_rows import from_row, normalise, to_row
from gateway.store._base import BatchMeta, RecordColumns, StoreOutcome
from gateway.store._bulk import BulkCopyError, insert_rows
from gateway.store._checkpoints import checkpoint_head, checkpoint_if_due, prune, read_checkpoints
from gateway.store._engine import Database, StoreSettings, open_database
from gateway.store._failures import guarded
from gateway.store._ledger import (
    COLUMNS_PER_STATEMENT,
    AsOf,
    LedgerMoved,
    LedgerWrite,
    count_differences,
    count_grouped,
    difference_statements,
    grouped_statement,
    ledger_of,
    newcomer_statement,
    read_ledger,
    sum_bounds,
    sum_difference_statement,
    sum_differences,
    write_ledger,
)
from gateway.store._locks import AUDIT_LOCK_KEY, SCHEMA_LOCK_KEY, advisory_lock
from gateway.store._migrate import MigrateMode, default_migrate_mode, ensure_at_head
from gateway.store._paired import PairedReader
from gateway.store._records import check_meta, rows_for
from gateway.store._schema import DEFAULT_INDEX_PROFILE, DatasetTable, Schema, build_schema, reconcile_indexes
from gateway.store._statistics import PlannerStatistics
from gateway.store._subject_numbers import SubjectNumbers
from gateway.store._watermark import Stamper, with_watermark

AUDIT_PAGE = 1000


def schema_lock(conn: Connection) -> None:
    """Take the schema lock for the rest of the transaction. Schema work may wait for another
    replica's start-up or migration, and takes table locks of its own (CREATE INDEX), for longer
    than a request's lock timeout: only the statement timeout bounds its waits."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL lock_timeout = 0")
    advisory_lock(conn, SCHEMA_LOCK_KEY)


def open_store(
    url: str,
    catalogue: Catalogue,
    settings: StoreSettings | None = None,
    *,
    create: bool = True,
    indexes: str = DEFAULT_INDEX_PROFILE,
    checkpoints: CheckpointPolicy | None = None,
) -> SqlStore:
    """A store on ``url`` (``sqlite:///file.db`` or ``postgresql+psycopg://...``) for the
    catalogue's datasets, with the ``indexes`` profile (``ingest`` or ``query``, see
    ``_schema``); creates missing tables and brings indexes to the profile unless ``create`` is
    False.

    ConfigError for an unusable URL, catalogue or profile, or a database behind the migrations'
    head that ``settings.migrate`` does not let it upgrade (see ``_migrate``); StoreError if the
    schema cannot be created. With ``checkpoints``, the audit log is signed as that policy says."""
    settings = settings or StoreSettings()
    database = open_database(url, settings)
    try:
        schema = build_schema(catalogue, indexes, database.backend)
    except ConfigError:
        database.engine.dispose()
        raise
    store = SqlStore(
        database,
        schema,
        migrate=settings.migrate or default_migrate_mode(database.backend),
        checkpoints=checkpoints,
    )
    if create:
        try:
            store.create_schema()
        except GatewayError:
            store.close()
            raise
    return store


class SqlStore:
    def __init__(
        self,
        database: Database,
        schema: Schema,
        *,
        migrate: MigrateMode = "check",
        checkpoints: CheckpointPolicy | None = None,
    ) -> None:
        self._db = database
        self._schema = schema
        self._migrate = migrate
        self._checkpoint_policy = checkpoints
        self._closed = False
        self._paired = PairedReader(database)  # an aggregate's cells and total, side by side
        self._statistics = PlannerStatistics(database)  # ANALYZE as ingest grows a table
        # per dataset: (batches stored, domains) -> whether rows outside the domains exist
        self._outside_domain: dict[str, tuple[tuple[int, Any], bool]] = {}
        self._numbers = SubjectNumbers(database, schema.batches)  # whether people count by number
        # Built once and executed with parameters: building a statement per call (and
        # ``insert().values(**row)``, which also defeats the compiled cache) cost ~2 ms a batch.
        batches, log = schema.batches, schema.audit_log
        self._insert_batch = batches.insert()
        self._stamper = Stamper(batches)
        self._insert_audit = log.insert()
        self._batch_seen = select(batches.c.content_digest, batches.c.record_count).where(
            batches.c.batch_id == bindparam("batch_id")
        )
        self._last_audit = select(log.c.seq, log.c.hash).order_by(log.c.seq.desc()).limit(1)
        # allowed queries under an agreement in [since, until): a range scan of ix_audit_log_budget
        self._queries_allowed = select(func.count()).where(
            log.c.agreement_id == bindparam("agreement_id"),
            log.c.action == "query",
            log.c.outcome == "allow",
            log.c.timestamp >= bindparam("since"),
            log.c.timestamp < bindparam("until"),
        )

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._db.backend

    @property
    def index_profile(self) -> str:
        """``ingest`` or ``query``: which indexes the dataset tables carry."""
        return self._schema.index_profile

    def create_schema(self) -> None:
        """The database brought to the migrations' head (a fresh one always, an older one only
        with migrate = "auto", else ConfigError: see ``_migrate``), then missing dataset tables,
        then each dataset table's indexes brought to the profile: missing ones created, the
        other profile's dropped (see ``_schema``); other indexes are left alone."""
        self._check_open()

        def work() -> None:
            with self._db.write() as conn:
                schema_lock(conn)
                ensure_at_head(conn, self._migrate)
                self._schema.metadata.create_all(conn)
                reconcile_indexes(conn, self._schema)
                self._add_audit_indexes(conn)

        guarded(work, lambda: StoreError("store: schema could not be created"), (SQLAlchemyError,))

    def adopt_catalogue(self, catalogue: Catalogue) -> None:
        """Hold queries and ledger counts to ``catalogue``'s domains from now on (a policy reload
        may change domains, never tables: gateway.server._state.check_storable). Kept at the
        domains the store was opened with, "no filter" counted a value the reload dropped while
        the grid and the release ledger, which follow the reload, took it as every current value."""
        datasets = {
            name: dataclasses.replace(table, dataset=catalogue.datasets[name])
            if name in catalogue.datasets
            else table
            for name, table in self._schema.datasets.items()
        }
        self._schema = dataclasses.replace(self._schema, datasets=datasets)  # one store: atomic

    def ping(self) -> None:
        self._check_open()

        def work() -> None:
            with self._db.engine.connect() as conn:
                conn.execute(select(1))

        guarded(work, lambda: StoreError("store: database unreachable"), (SQLAlchemyError,))

    def store_batch(self, meta: BatchMeta, records: RecordColumns) -> StoreOutcome:
        self._check_open()
        check_meta(meta)
        target = self._schema.datasets.get(meta.dataset)
        if target is None:
            raise InvalidRequest("dataset", "is not in the catalogue")
        rows = rows_for(meta, records, target)

        def insert() -> StoreOutcome:
            with self._db.write() as conn:
                seen = self._seen_before(conn, meta)
                if seen is not None:
                    return seen
                conn.execute(self._insert_batch, _batch_row(meta))
                insert_rows(conn, target.table, rows)
                self._stamper.stamp(conn, meta.batch_id)  # last: batches stamped in commit order
            return StoreOutcome(stored=True, records=len(rows.values))

        def work() -> StoreOutcome:
            try:
                outcome = insert()
            except IntegrityError as exc:
                refused = exc
            else:
                if outcome.stored:
                    self._statistics.stored(target.table, outcome.records)
                return outcome
            # PostgreSQL: another replica may have stored this batch id between our check and
            # insert. Look again outside the except block, so a Conflict does not carry the
            # driver's error (which quotes the key) as its context.
            with self._db.read() as conn:
                seen = self._seen_before(conn, meta)
            if seen is None:
                raise refused
            return seen

        return guarded(
            work, lambda: StoreError("store: batch could not be written"), (SQLAlchemyError, BulkCopyError)
        )

    def aggregate(
        self, spec: QuerySpec, *, top_n: int = 0, digest: bool = False, near_percent: int | None = None
    ) -> RawResult:
        """Cells (groups holding at least one record) sorted by key, Python string order, on
        either backend; the total over the same filtered rows, from the same snapshot. With
        ``top_n``, each cell of a query with sums also carries its top-n contribution sums; with
        ``digest``, each cell its people digest and the result the dataset's data version.

        With ``near_percent`` (the dominance rule's percentage) and ``top_n`` of 2 or more, the
        cells are first counted as the analyst's own GROUP BY would count them, with each one's
        largest and smallest value, and the total with one COUNT(DISTINCT) beside them. From a
        cell's records, subjects and largest value comes an upper bound of its top n
        (``_tops_bound``); where that bound already holds at most ``near_percent`` % of every
        cell's sum (the total's too), no cell can be dominated and the bound is returned as the
        tops. Only when some cell is near the rule are the exact top-n ranked, for the whole
        answer. The bound is conservative wherever tops are used (a larger top only ever
        withholds more), and it spares grouping every (cell, subject) row and every subject of
        the selection: the exact ranking and the per-subject total each cost about as much as
        the analyst's GROUP BY.

        People are counted by their numbers (``subject_n``) unless a shared number has been seen;
        an answer from data not yet seen free of them is read again counting subjects
        (gateway/store/_subject_numbers.py)."""
        self._check_open()
        target = self._schema.datasets.get(spec.dataset)
        by_number = target is not None and self._numbers.usable(target)
        answer = partial(self._answer, spec, top_n=top_n, digest=digest, near_percent=near_percent)
        result = answer(by_number=by_number)
        if by_number and target is not None and not self._numbers.exact_through(target, result.watermark):
            result = answer(by_number=False)
        return result

    def _answer(
        self, spec: QuerySpec, *, top_n: int, digest: bool, near_percent: int | None, by_number: bool
    ) -> RawResult:
        versions = self._schema.batches if digest else None
        statements = compile_aggregate(
            spec,
            self._schema.datasets,
            top_n=top_n,
            versions=versions,
            older_rows=self._older_contract_rows(spec.dataset),
            fast_total=_total_counting(self._db.backend, spec),
            by_number=by_number,
        )
        statements = with_watermark(statements, self._schema.batches)
        if near_percent is not None and statements.cells_fast is not None:
            bounded = self._bounded(statements, statements.cells_fast, statements.total_fast, top_n)
            if bounded is not None and not _near(bounded, statements.sum_fields, near_percent):
                return bounded
        exact = bool(statements.top_n)
        return self._aggregate_rows(statements.cells, statements.total, statements, tops=exact)

    def _ledger_tables(self, dataset: str, as_of: str | None) -> Mapping[str, DatasetTable]:
        """The dataset tables for the ledger's counts of ``dataset``: marked rows_in_domain when no
        stored row of it lies outside the current domains, and count_by_number when the rows the
        counts read (by ``as_of``, an answer's watermark) hold one subject per number. Asked after
        the answer whose cells are checked was read, so every record the counts see (the
        answer's, by its watermark) was stored before the look."""
        target = self._schema.datasets.get(dataset)
        if target is None:
            return self._schema.datasets
        in_domain = not self._older_contract_rows(dataset)
        by_number = (
            as_of is not None and self._numbers.usable(target) and self._numbers.exact_through(target, as_of)
        )
        if not (in_domain or by_number):
            return self._schema.datasets
        marked = dataclasses.replace(target, rows_in_domain=in_domain, count_by_number=by_number)
        return {**self._schema.datasets, dataset: marked}

    def _older_contract_rows(self, dataset: str) -> bool:
        """Whether any stored row of ``dataset`` holds a dimension value outside the catalogue's
        current domain (rows kept from an older contract). Remembered per (dataset, number of
        batches, domains): found once with a scan that stops at the first such row, and asked
        again only when a batch has landed or the domains changed. Versions are not trusted for
        this: a domain edited without a version bump would otherwise go unnoticed."""
        current = self._schema.datasets.get(dataset)
        if current is None:
            return True  # compile_aggregate names the unknown dataset
        batches, t = self._schema.batches, current.table
        domains = tuple((d.name, tuple(d.domain)) for d in current.dataset.dimensions if d.domain)
        stored = select(func.count()).select_from(batches).where(batches.c.dataset == dataset)
        outside = select(t.c[domains[0][0]] if domains else t.c.subject).where(
            or_(*(t.c[name].not_in(list(values)) for name, values in domains))
        )

        def work() -> bool:
            with self._db.read() as conn:
                key = (int(conn.execute(stored).scalar_one()), domains)
                seen = self._outside_domain.get(dataset)
                if seen is not None and seen[0] == key:
                    return seen[1]
                found = bool(domains) and conn.execute(outside.limit(1)).first() is not None
                self._outside_domain[dataset] = (key, found)  # the latest answer per dataset
                return found

        return guarded(work, lambda: StoreError("store: aggregate query failed"), (SQLAlchemyError,))

    def _bounded(
        self,
        statements: AggregateStatements,
        cells_fast: Select[*tuple[Any, ...]],
        total_fast: Select[*tuple[Any, ...]] | None,
        top_n: int,
    ) -> RawResult | None:
        """The answer with each tops figure an upper bound of the top-``top_n`` per-subject sums
        (``_tops_bound``), or None when some value is negative (a person's sum is then no longer
        at most their records times the largest value)."""
        fields, k, digest = statements.sum_fields, statements.key_count, statements.digest
        lead = 2 + len(fields) + int(digest)  # subjects, records, the sums, the people digest
        if total_fast is not None:
            cell_rows, total_row = self._read(cells_fast, total_fast)
            total_figures = tuple(total_row)[:lead]
        else:  # the total is the statement's () grouping set, the row GROUPING() flags
            rows = self._read_one(cells_fast)
            cell_rows = [row for row in rows if not row._mapping["g"]]
            (total_row,) = [row for row in rows if row._mapping["g"]]  # one, even over no rows
            total_figures = tuple(total_row)[k : k + lead]
        total = total_row._mapping  # then by name: the data version, the watermark
        cells: list[RawCell] = []
        cell_tops: list[list[int]] = []
        largest = [0] * len(fields)
        for row in cell_rows:
            figures, extremes = row[k : k + lead], row[k + lead : k + lead + 2 * len(fields)]
            hi, lo = extremes[: len(fields)], extremes[len(fields) :]
            if any(v is not None and int(v) < 0 for v in lo):
                return None
            tops = _tops_bound(figures, hi, top_n)
            cell_tops.append(tops)
            largest = [max(m, int(v or 0)) for m, v in zip(largest, hi, strict=True)]
            cells.append(_cell(_keys(row, k), _with_tops(figures, tops, fields), fields, fields, digest))
        # n people's total is at most the sum over the cells of their n largest sums in each
        bound = [
            min(over_all, sum(tops[i] for tops in cell_tops))
            for i, over_all in enumerate(_tops_bound(total_figures, largest, top_n))
        ]
        return RawResult(
            cells=tuple(sorted(cells, key=_key)),
            total=_cell((), _with_tops(total_figures, bound, fields), fields, fields, digest),
            data_version=int((total["v"] if digest else 0) or 0),
            watermark=str(total["watermark"]),
        )

    def _read(
        self, cells_statement: Select[*tuple[Any, ...]], total_statement: Select[*tuple[Any, ...]]
    ) -> tuple[Sequence[Row[Any]], Row[Any]]:
        def work() -> tuple[Sequence[Row[Any]], Row[Any]]:
            return self._paired.read(cells_statement, total_statement)

        return guarded(work, lambda: StoreError("store: aggregate query failed"), (SQLAlchemyError,))

    def _read_one(self, statement: Select[*tuple[Any, ...]]) -> Sequence[Row[Any]]:
        def work() -> Sequence[Row[Any]]:
            with self._db.snapshot() as conn:
                return conn.execute(statement).all()

        return guarded(work, lambda: StoreError("store: aggregate query failed"), (SQLAlchemyError,))

    def _aggregate_rows(
        self,
        cells_statement: Select[*tuple[Any, ...]],
        total_statement: Select[*tuple[Any, ...]],
        statements: AggregateStatements,
        *,
        tops: bool,
    ) -> RawResult:
        digest = statements.digest
        cell_rows, total_row = self._read(cells_statement, total_statement)
        k = statements.key_count
        fields = statements.sum_fields
        top_fields = fields if tops else ()
        # sorted here, not by ORDER BY: PostgreSQL's collation and SQLite's byte order disagree
        cells = tuple(
            sorted((_cell(_keys(row, k), row[k:], fields, top_fields, digest) for row in cell_rows), key=_key)
        )
        total = total_row._mapping
        figures = tuple(total_row)[: 2 + len(fields) + len(top_fields) + int(digest)]
        total_cell = _cell((), figures, fields, top_fields, digest)
        version = total["v"] if digest else 0
        return RawResult(
            cells=cells, total=total_cell, data_version=int(version or 0), watermark=str(total["watermark"])
        )

    def append_audit(
        self,
        draft: AuditDraft,
        quota: Quota | tuple[Quota, ...] | None = None,
        ledger: LedgerWrite | None = None,
    ) -> AuditEntry:
        """Chain and insert under the chain lock; any failure at all is an AuditWriteError.

        With a ``quota`` (an allowed query under an agreement with a query budget), the allowed
        queries of the budget period the entry's timestamp falls in are counted under the same
        lock first; if the budget is used up nothing is written and BudgetSpent carries the
        count. So two racing queries can never both take the last unit.

        With ``ledger``, the release's cells go into the release ledger in the same transaction;
        LedgerMoved (nothing written) if the ledger grew since the release was checked against it."""

        quotas = () if quota is None else quota if isinstance(quota, tuple) else (quota,)

        def work() -> AuditEntry | BudgetSpent | LedgerMoved:
            self._check_open()
            normal = normalise(draft)
            with self._db.write() as conn:
                self._advisory_lock(conn, AUDIT_LOCK_KEY)
                for one in quotas:
                    period = budget_period(one.budget.period, parse_time(normal.timestamp))
                    used = self._count_queries(conn, one.agreement_id, period.since, period.until)
                    if used >= one.budget.queries:
                        spent = BudgetSpent(period.usage(used))
                        spent.quota = one
                        return spent
                if ledger is not None and not write_ledger(conn, ledger_of(self._schema), ledger):
                    return LedgerMoved()
                last = conn.execute(self._last_audit).first()
                seq, prev_hash = (
                    (int(last.seq) + 1, str(last.hash)) if last is not None else (1, GENESIS_HASH)
                )
                entry_hash = chain_hash(prev_hash, normal, seq)
                conn.execute(self._insert_audit, to_row(normal, seq, prev_hash, entry_hash))
                if self._checkpoint_policy is not None:  # signed in the entry's own transaction
                    checkpoint_if_due(
                        conn, self._schema.checkpoints, self._checkpoint_policy, seq, entry_hash
                    )
            drafted = {f.name: getattr(normal, f.name) for f in dataclasses.fields(AuditDraft)}
            return AuditEntry(**drafted, seq=seq, prev_hash=prev_hash, hash=entry_hash)

        # fail closed: whatever went wrong, no entry means no release
        failed = AuditWriteError("audit log: entry could not be written")
        outcome = guarded(work, lambda: failed, (Exception,))
        if isinstance(outcome, (BudgetSpent, LedgerMoved)):
            raise outcome
        return outcome

    # -- release ledger (gateway.store._ledger) --------------------------------------------------

    def release_ledger(self, agreement_id: str, dataset: str) -> tuple[tuple[LedgerCell, ...], int]:
        """The cells released under the agreement over ``dataset``, and the ledger's highest row id."""
        self._check_open()

        def work() -> tuple[tuple[LedgerCell, ...], int]:
            with self._db.read() as conn:
                return read_ledger(conn, ledger_of(self._schema), agreement_id, dataset)

        return guarded(
            work, lambda: StoreError("store: release ledger could not be read"), (SQLAlchemyError,)
        )

    def ledger_differences(
        self, dataset: str, checks: Sequence[Check], as_of: str | None = None
    ) -> list[int]:
        """For each check, the distinct subjects of its container outside all its parts: the
        one-part checks of disjoint parts in one grouped statement, the rest one count each.
        With ``as_of`` (an answer's watermark), over the data that answer read."""
        self._check_open()
        groups, rest = grouped_pairs(checks)
        tables = self._ledger_tables(dataset, as_of)

        def work() -> list[int]:
            with self._db.snapshot() as conn:
                bound = self._bound(conn, as_of)
                counted: dict[int, int] = {}
                known: dict[CellPredicate, int] = {}  # a grouped container's people, for the rest
                for layer in container_layers(groups):
                    figures, people = count_grouped(
                        conn, grouped_statement(dataset, layer, tables, bound), layer
                    )
                    counted |= figures
                    known |= people
                statements = difference_statements(dataset, [checks[n] for n in rest], tables, bound, known)
                counted |= dict(zip(rest, count_differences(conn, statements), strict=True))
            return [counted[n] for n in range(len(checks))]

        return guarded(work, lambda: StoreError("store: release ledger check failed"), (SQLAlchemyError,))

    def ledger_newcomers(
        self, dataset: str, repeats: Sequence[tuple[CellPredicate, str]], as_of: str | None = None
    ) -> list[int]:
        """Per (cell, time): distinct subjects new to the cell since that time, every record of
        theirs in it changed after then (with ``as_of``, an answer's watermark: by ``as_of``)."""
        self._check_open()
        batches = self._schema.batches
        earliest = min((since for _, since in repeats), default="")
        involved = sorted({dataset, *(p.link.dataset for p, _ in repeats if p.link is not None)})
        # the common case, nothing stored since in the dataset or any it links to: one look at
        # the (small) batch register, no scan
        stored_since = (
            select(batches.c.batch_id)
            .where(batches.c.dataset.in_(involved), batches.c.received_at > earliest)
            .limit(1)
        )
        if as_of is not None:  # and by the answer's read: what is stored after it is not counted
            stored_since = stored_since.where(batches.c.received_at <= as_of)

        def work() -> list[int]:
            with self._db.snapshot() as conn:
                if conn.execute(stored_since).first() is None:
                    return [0] * len(repeats)
                # built only now: for a grid of 720 cells asked again, building the statements
                # took 0.25 s of CPU, spent on every repeat though nothing had been stored since.
                # A statement per 64 cells, as the difference counts (each is a distinct count
                # of its own): the cells a release's checks derive from are counted too
                bound = self._bound(conn, as_of)
                step = COLUMNS_PER_STATEMENT
                statements = (
                    newcomer_statement(dataset, repeats[i : i + step], self._schema, bound)
                    for i in range(0, len(repeats), step)
                )
                rows = [conn.execute(statement).one() for statement in statements]
            return [int(value or 0) for row in rows for value in row]

        return guarded(work, lambda: StoreError("store: release ledger check failed"), (SQLAlchemyError,))

    def ledger_sum_differences(
        self,
        dataset: str,
        items: Sequence[tuple[Check, str]],
        top_n: int,
        as_of: str | None = None,
        near_percent: int | None = None,
    ) -> list[tuple[float, float]]:
        """Per (check, measure field): the field's sum over the check's difference, and the sum of
        its ``top_n`` largest per-subject sums (whole micro-units summed in SQL, as cells are).
        With ``as_of`` (an answer's watermark), over the data that answer read.

        With ``near_percent`` (the dominance rule's percentage), an item's top-n figure may be an
        upper bound instead (``sum_bounds``: the container's own top n) wherever that
        bound already holds at most ``near_percent`` % of the difference's sum, as the aggregate
        bounds a cell's: the rule then gives the same answer on either. The others, and any
        item whose container holds a negative value, get the exact figures."""
        self._check_open()
        if not items:
            return []
        # two figures and a CASE each: 32 items to a statement, as the counts are 64 to one. In one
        # statement, the sums of a grid asked again by fewer dimensions (its one-part checks are
        # grouped for the counts, so hundreds reach here) broke SQLite's expression depth (1000
        # ORed terms) and PostgreSQL's 1664 result columns, and the query failed
        step = COLUMNS_PER_STATEMENT // 2
        tables = self._ledger_tables(dataset, as_of)

        def exact(
            conn: Connection, bound: AsOf, chosen: Sequence[tuple[Check, str]]
        ) -> list[tuple[float, float]]:
            chunks = [chosen[i : i + step] for i in range(0, len(chosen), step)]
            return [
                figure
                for chunk in chunks
                for figure in sum_differences(
                    conn, sum_difference_statement(dataset, chunk, tables, top_n, bound), len(chunk)
                )
            ]

        def work() -> list[tuple[float, float]]:
            with self._db.snapshot() as conn:
                bound = self._bound(conn, as_of)
                if near_percent is None:
                    return exact(conn, bound, items)
                bounded = sum_bounds(conn, dataset, items, tables, top_n=top_n, as_of=bound)
                near = [
                    n
                    for n, figure in enumerate(bounded)
                    if figure is None or dominated(*figure, near_percent)
                ]
                figures = dict(zip(near, exact(conn, bound, [items[n] for n in near]), strict=True))
                return [
                    figures[n] if figure is None or n in figures else figure
                    for n, figure in enumerate(bounded)
                ]

        return guarded(work, lambda: StoreError("store: release ledger check failed"), (SQLAlchemyError,))

    def queries_allowed(self, agreement_id: str, since: str, until: str) -> int:
        """Allowed aggregate queries under the agreement with a timestamp in [since, until)."""
        self._check_open()

        def work() -> int:
            with self._db.read() as conn:
                return self._count_queries(conn, agreement_id, since, until)

        return guarded(work, lambda: StoreError("store: query budget could not be read"), (SQLAlchemyError,))

    def audit_entries(self, filt: AuditFilter | None = None) -> Iterator[AuditEntry]:
        """Entries in seq order, read in pages so no transaction stays open between yields."""
        filt = filt or AuditFilter()
        if filt.limit < 0:
            raise InvalidRequest("limit", "must not be negative")
        return self._audit_pages(filt)

    def audit_head(self) -> tuple[int, str]:
        """The newest entry's (seq, hash); (0, genesis) for an empty log."""
        self._check_open()

        def work() -> tuple[int, str]:
            with self._db.read() as conn:
                last = conn.execute(self._last_audit).first()
            return (int(last.seq), str(last.hash)) if last is not None else (0, GENESIS_HASH)

        return guarded(work, lambda: StoreError("store: audit log could not be read"), (SQLAlchemyError,))

    def audit_checkpoints(self) -> list[Checkpoint]:
        """Every signed checkpoint and prune anchor, in seq order."""
        self._check_open()

        def work() -> list[Checkpoint]:
            with self._db.read() as conn:
                return read_checkpoints(conn, self._schema.checkpoints)

        return guarded(
            work, lambda: StoreError("store: audit checkpoints could not be read"), (SQLAlchemyError,)
        )

    def checkpoint_audit_head(self) -> Checkpoint | None:
        """Sign the newest entry now unless a checkpoint covers it already; None if none was due
        (or the store signs nothing). StoreError if it could not be written."""
        self._check_open()
        policy = self._checkpoint_policy
        if policy is None:
            return None

        def work() -> Checkpoint | None:
            with self._db.write() as conn:
                self._advisory_lock(conn, AUDIT_LOCK_KEY)
                return checkpoint_head(conn, self._schema.audit_log, self._schema.checkpoints, policy)

        return guarded(
            work, lambda: StoreError("store: audit checkpoint could not be written"), (SQLAlchemyError,)
        )

    def prune_audit(self, through: int, expected_hash: str, keep_since: str) -> Checkpoint:
        """Delete entries 1..``through`` (already exported, entry ``through`` having
        ``expected_hash``) and leave a signed anchor there, in one transaction under the chain
        lock. InvalidRequest or Conflict (nothing deleted) as gateway.store._checkpoints.prune."""
        self._check_open()
        policy = self._checkpoint_policy
        if policy is None:
            raise StoreError("store: pruning needs the audit signing key for its anchor")

        def work() -> Checkpoint:
            with self._db.write() as conn:
                self._advisory_lock(conn, AUDIT_LOCK_KEY)
                return prune(
                    conn,
                    self._schema.audit_log,
                    self._schema.checkpoints,
                    policy,
                    through=through,
                    expected_hash=expected_hash,
                    keep_since=keep_since,
                )

        return guarded(work, lambda: StoreError("store: audit log could not be pruned"), (SQLAlchemyError,))

    def close(self) -> None:
        self._closed = True
        self._statistics.close()
        self._paired.close()
        self._db.engine.dispose()

    # -- helpers -------------------------------------------------------------------------------

    def _audit_pages(self, filt: AuditFilter) -> Iterator[AuditEntry]:
        self._check_open()
        log = self._schema.audit_log
        conditions: list[Any] = []
        if filt.since:
            conditions.append(log.c.timestamp >= filt.since)
        if filt.until:
            conditions.append(log.c.timestamp < filt.until)
        for name in ("principal", "agency", "agreement_id", "outcome", "decision_id"):
            value = getattr(filt, name)
            if value:
                conditions.append(log.c[name] == value)
        if filt.scope is not None:  # the auditor's scope (audit.rego): by agency or by agreement
            conditions.append(
                or_(
                    log.c.agency.in_(sorted(filt.scope.agencies)),
                    log.c.agreement_id.in_(sorted(filt.scope.agreements)),
                )
            )
        remaining = filt.limit or None
        after: int | None = None
        while True:
            page = AUDIT_PAGE if remaining is None else min(AUDIT_PAGE, remaining)
            query = select(log).where(*conditions).order_by(log.c.seq).limit(page)
            if after is not None:
                query = query.where(log.c.seq > after)
            rows = guarded(
                partial(self._read_all, query),
                lambda: StoreError("store: audit log could not be read"),
                (SQLAlchemyError,),
            )
            for row in rows:
                yield from_row(row)
            if remaining is not None:
                remaining -= len(rows)
            if len(rows) < page or remaining == 0:
                return
            after = int(rows[-1]["seq"])

    def _count_queries(self, conn: Connection, agreement_id: str, since: str, until: str) -> int:
        params = {"agreement_id": agreement_id, "since": since, "until": until}
        return int(conn.execute(self._queries_allowed, params).scalar_one())

    def _add_audit_indexes(self, conn: Connection) -> None:
        """create_all makes indexes only with a new table: add the audit log's newer ones."""
        present = {ix["name"] for ix in inspect(conn).get_indexes(self._schema.audit_log.name)}
        for index in sorted(self._schema.audit_log.indexes, key=lambda ix: str(ix.name)):
            if index.name not in present:
                index.create(conn)

    def _seen_before(self, conn: Connection, meta: BatchMeta) -> StoreOutcome | None:
        """None for a new batch id; the duplicate's outcome; Conflict for other content."""
        row = conn.execute(self._batch_seen, {"batch_id": meta.batch_id}).first()
        if row is None:
            return None
        if row.content_digest != meta.content_digest:
            raise Conflict("batch_id: already used for different content")
        return StoreOutcome(stored=False, records=int(row.record_count))

    def _bound(self, conn: Connection, as_of: str | None) -> AsOf:
        """What the ledger counts in ``conn``'s snapshot should be held to: the data an answer
        with watermark ``as_of`` read. None (no bound to add) without one, or when no batch is
        stamped after it: the snapshot holds exactly that data (one seek of the stamp index)."""
        if as_of is None:
            return None
        batches = self._schema.batches
        later = select(batches.c.batch_id).where(batches.c.received_at > as_of).limit(1)
        return None if conn.execute(later).first() is None else (batches, as_of)

    def _read_all(self, query: Select[*tuple[Any, ...]]) -> Sequence[RowMapping]:
        with self._db.read() as conn:
            return conn.execute(query).mappings().all()

    def _advisory_lock(self, conn: Connection, key: int) -> None:
        advisory_lock(conn, key)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("store: closed")


def _batch_row(meta: BatchMeta) -> dict[str, Any]:
    return {
        "batch_id": meta.batch_id,
        "agency": meta.agency,
        "dataset": meta.dataset,
        "contract_version": meta.contract_version,
        "record_count": meta.record_count,
        "content_digest": meta.content_digest,
        # provisional, never committed: the transaction stamps the batch last (Stamper.stamp)
        "received_at": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
    }


def _total_counting(backend: str, spec: QuerySpec) -> FastTotal:
    """How the fast path counts the total's people on ``backend`` (see compile_aggregate)."""
    if backend != "postgresql":
        return "grouped"
    return "distinct" if spec.link is None else "grouping_set"


def _keys(row: Row[Any], count: int) -> tuple[str, ...]:
    return tuple(str(v) for v in row[:count])


def _tops_bound(figures: Sequence[Any], largest: Sequence[Any], n: int) -> list[int]:
    """Per sum field, in micro-units, an upper bound of the group's top-``n`` per-subject sums
    from its subjects, records, sum and largest value (none negative): the n people hold at most
    the records the others leave them, each of which is at most the largest value, and the n
    together at most the whole sum. Where people have about one record each in a cell, the bound
    is about n times the largest value."""
    subjects, records, *sums = (int(v or 0) for v in figures[: 2 + len(largest)])
    their_records = records - subjects + min(n, subjects)
    return [min(total, int(hi or 0) * their_records) for total, hi in zip(sums, largest, strict=True)]


def _with_tops(figures: Sequence[Any], tops: Sequence[int], fields: Sequence[str]) -> tuple[Any, ...]:
    """``figures`` (subjects, records, sums, then maybe the people digest) with ``tops`` after
    the sums, where ``_cell`` reads them."""
    at = 2 + len(fields)
    return (*figures[:at], *tops, *figures[at:])


def _key(cell: RawCell) -> tuple[str, ...]:
    return cell.key


def _near(result: RawResult, fields: Sequence[str], percent: int) -> bool:
    """Whether any cell's (or the total's) bounded top contributions could dominate its sum."""
    return any(
        dominated(cell.sums[f], cell.tops[f], percent)
        for cell in (*result.cells, result.total)
        for f in fields
    )


def _cell(
    key: tuple[str, ...], figures: Any, sum_fields: tuple[str, ...], top_fields: tuple[str, ...], digest: bool
) -> RawCell:
    subjects, records, *rest = figures
    people = int(rest.pop() or 0) if digest else 0  # SUM over no rows (or only NULLs) is NULL
    sums, tops = rest[: len(sum_fields)], rest[len(sum_fields) :]
    return RawCell(
        key=key,
        subjects=int(subjects),
        records=int(records),
        # SUM over no rows is NULL; only the total of an empty selection has none
        # whole micro-units from SQL (_aggregate.SUM_SCALE), exact up to here
        sums={f: int(s) / SUM_SCALE if s is not None else 0.0 for f, s in zip(sum_fields, sums, strict=True)},
        tops={f: int(s) / SUM_SCALE if s is not None else 0.0 for f, s in zip(top_fields, tops, strict=True)},
        people=people,
    )
