"""The store interface: one small protocol, the backend (SQLite or PostgreSQL) chosen by URL.

Each dataset lives in its own typed table so aggregation is a plain SQL GROUP BY in the
database. Tokens are stored re-keyed (HMAC-SHA256 with the gateway's rest key) and never read
back out: the store answers only aggregates.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gateway.audit._budget import Quota
from gateway.audit._checkpoint import Checkpoint
from gateway.audit._types import AuditDraft, AuditEntry, AuditFilter
from gateway.query._spec import QuerySpec, RawResult

if TYPE_CHECKING:
    from gateway.catalogue import Catalogue
    from gateway.disclosure._ledger import CellPredicate, Check, LedgerCell
    from gateway.store._ledger import LedgerWrite


@dataclass(frozen=True)
class BatchMeta:
    batch_id: str
    agency: str
    dataset: str
    contract_version: int
    record_count: int
    content_digest: str  # SHA-256 hex of header || ciphertext: same id, other content is a conflict


@dataclass(frozen=True)
class RecordColumns:
    """Validated, re-keyed records in columns; row i is element i of each sequence."""

    subjects: Sequence[bytes]  # HMAC-SHA256(K_rest, T0), 32 bytes
    event_days: Sequence[int]  # days since 1970-01-01
    dimensions: Mapping[str, Sequence[str]]
    measures: Mapping[str, Sequence[float]]  # already clamped


@dataclass(frozen=True)
class StoreOutcome:
    stored: bool  # False: the batch id was stored before, nothing written now
    records: int


class Store(Protocol):
    def create_schema(self) -> None:
        """Create any missing table and index; safe to call on every start."""
        ...

    def ping(self) -> None:
        """Raise StoreError if the database cannot be reached."""
        ...

    def adopt_catalogue(self, catalogue: Catalogue) -> None:
        """Use ``catalogue``'s dimension domains from now on (a policy reload; same tables)."""
        ...

    def store_batch(self, meta: BatchMeta, records: RecordColumns) -> StoreOutcome:
        """Store a batch and its records in one transaction, once per batch id.

        A batch id seen before with the same content digest is a duplicate (nothing written);
        with another digest it is a Conflict. StoreError on database failure, nothing written."""
        ...

    def aggregate(
        self, spec: QuerySpec, *, top_n: int = 0, digest: bool = False, near_percent: int | None = None
    ) -> RawResult:
        """One SQL query (GROUP BY in the database) for the cells and one for the total; with
        ``top_n`` > 0, cells of a query with sums carry their top-n contribution sums (RawCell.tops);
        with ``digest``, every cell its people digest and the result its data version (for noise).
        With ``near_percent``, tops may be an upper bound that shows no cell is dominated at that
        percentage (exact whenever some cell is near the rule)."""
        ...

    def append_audit(
        self,
        draft: AuditDraft,
        quota: Quota | tuple[Quota, ...] | None = None,
        ledger: LedgerWrite | None = None,
    ) -> AuditEntry:
        """Chain and append one entry atomically; AuditWriteError if it could not be written.
        With a quota (or several: a query budget and a privacy budget), BudgetSpent (nothing
        written, its ``quota`` the one spent) if a period's budget is already used. With
        a ledger write, its rows in the same transaction, or LedgerMoved (nothing written)."""
        ...

    def release_ledger(self, agreement_id: str, dataset: str) -> tuple[tuple[LedgerCell, ...], int]:
        """Cells released under the agreement over ``dataset``, and the ledger's highest row id."""
        ...

    def ledger_differences(
        self, dataset: str, checks: Sequence[Check], as_of: str | None = None
    ) -> list[int]:
        """Per check, the distinct subjects of its container outside all of its parts (with
        ``as_of``, an answer's data watermark: among the records that answer read)."""
        ...

    def ledger_newcomers(
        self, dataset: str, repeats: Sequence[tuple[CellPredicate, str]], as_of: str | None = None
    ) -> list[int]:
        """Per (cell, time): distinct subjects new to the cell since that time, every record of
        theirs in it changed after then (with ``as_of``: changed by then)."""
        ...

    def ledger_sum_differences(
        self,
        dataset: str,
        items: Sequence[tuple[Check, str]],
        top_n: int,
        as_of: str | None = None,
        near_percent: int | None = None,
    ) -> list[tuple[float, float]]:
        """Per (check, measure field): the field's sum over the check's difference, and the sum of
        its ``top_n`` largest per-subject sums (with ``as_of``: among the records by then). With
        ``near_percent``, the second may be an upper bound of it where that bound holds at most
        ``near_percent`` % of the sum (the dominance rule answers the same on either)."""
        ...

    def queries_allowed(self, agreement_id: str, since: str, until: str) -> int:
        """Allowed aggregate queries under the agreement with a timestamp in [since, until)."""
        ...

    def audit_entries(self, filt: AuditFilter | None = None) -> Iterator[AuditEntry]:
        """Entries in chain order (seq ascending), filtered."""
        ...

    def audit_head(self) -> tuple[int, str]:
        """The newest entry's (seq, hash); (0, genesis hash) for an empty log."""
        ...

    def audit_checkpoints(self) -> list[Checkpoint]:
        """Every signed checkpoint and prune anchor, in seq order."""
        ...

    def checkpoint_audit_head(self) -> Checkpoint | None:
        """Sign the newest entry unless a checkpoint covers it already (the timer's checkpoint)."""
        ...

    def prune_audit(self, through: int, expected_hash: str, keep_since: str) -> Checkpoint:
        """Delete the exported entries 1..through and leave a signed anchor, in one transaction."""
        ...

    def close(self) -> None: ...
