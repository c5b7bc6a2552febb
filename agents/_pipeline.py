"""The push pipeline: source ▶ map ▶ batch ▶ seal+sign ▶ spool ▶ push ▶ acknowledge, streaming.

Start-up does everything that can fail without sending a byte first (config, keys, the agent's
state, the source's header), then fetches and caches the contract and checks the mapping against
it. Then, in order:

1. whatever an earlier run left in the spool is resent (same bytes, same batch ids);
2. the source is read from the read cursor (agents/_state.py) in stretches of `batch_size`
   accepted records; each stretch is sealed and put in the spool together with its rejects and
   the new read cursor (one transaction) before it is sent;
3. while up to `max_in_flight` batches are on the wire the next one is read, mapped and sealed;
   each acknowledgement removes its batch from the spool and may advance the watermark.

A kill at any point loses nothing and doubles nothing: sealed batches wait in the spool, and a
re-read stretch gets the same batch id (agents/_seal.py), which the gateway acknowledges as a
duplicate. The counts in PushSummary are the agency's own local figures for this run.
"""

from __future__ import annotations

import contextlib
import threading
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import compress
from typing import Any, Protocol

from agents._config import AgentConfig
from agents._contract import Contract, ensure_state_dir, save_contract
from agents._keys import KeySource, key_source, load_hpke_public_key, load_tls_material
from agents._log import get_logger
from agents._mapping import BatchColumns, Mapper, Rejected, build_mapper
from agents._pb import ingest_pb2
from agents._push import GatewayClient, TlsMaterial
from agents._rejects import write_reject_file
from agents._seal import Sealer
from agents._source import BadRow, Position, RecordSource, RowBlock, RowStream, open_source
from agents._state import AgentState, RejectRow, encode_position
from agents.errors import AgentError, ConfigError, PermanentPushError

ROW = "row"  # the "field" of a reject when the line itself could not be read


@dataclass
class PushSummary:
    read: int = 0
    sent: int = 0
    rejected: int = 0
    batches: int = 0
    stored: int = 0
    duplicate: int = 0
    resent: int = 0  # batches found in the spool from an earlier run and sent again
    spooled: int = 0  # batches still waiting in the spool when the run ended

    def line(self) -> str:
        text = (
            f"read {self.read}, sent {self.sent}, rejected {self.rejected}, "
            f"batches {self.batches} (stored {self.stored}, duplicate {self.duplicate})"
        )
        if self.resent:
            text += f", {self.resent} resent from the spool"
        if self.spooled:
            text += f", {self.spooled} still in the spool"
        return text

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Progress(Protocol):
    def update(self, summary: PushSummary, fraction: float | None) -> None:
        """Called after each batch; `fraction` of the source read, None when unknown."""


@dataclass
class Stretch:
    """Consecutive source rows: up to batch_size accepted records and the rejects met among them."""

    start: str  # canonical text of the position the stretch starts at
    end: Position
    columns: BatchColumns  # the accepted records, as the batch's columns
    count: int = 0
    rejects: list[RejectRow] = field(default_factory=list)


def iter_stretches(
    stream: RowStream, mapper: Mapper, batch_size: int, summary: PushSummary, start: Position
) -> Iterator[Stretch]:
    """The source cut into stretches of `batch_size` accepted records (the last may be shorter or
    hold only rejects). Cuts depend only on the rows and the start, so a re-read cuts the same,
    whether its rows were read one by one or in blocks (agents/_columnar.py)."""
    current = Stretch(encode_position(start), start, mapper.new_columns())
    append = mapper.append_fn
    read = rejected = 0
    blocks = getattr(stream, "blocks", None)
    items = blocks() if mapper.columnar is not None and blocks is not None else iter(stream)
    try:
        for item in items:
            if isinstance(item, RowBlock):
                state = _Cutting(current, read, rejected)
                yield from _block_stretches(item, mapper, batch_size, summary, stream=stream, state=state)
                current, read, rejected = state.current, state.read, state.rejected
                continue
            line, row = item
            read += 1
            if isinstance(row, BadRow):
                current.rejects.append(RejectRow(line, ROW, row.problem))
                rejected += 1
                continue
            try:
                append(row, current.columns)
            except Rejected as problem:
                current.rejects.append(RejectRow(line, problem.field, problem.problem))
                rejected += 1
                continue
            current.count += 1
            if current.count >= batch_size:
                current.end = stream.position()
                summary.read, summary.rejected, read, rejected = (
                    summary.read + read,
                    summary.rejected + rejected,
                    0,
                    0,
                )
                yield current
                current = Stretch(encode_position(current.end), current.end, mapper.new_columns())
        end = stream.position()
        if current.count or current.rejects or encode_position(end) != current.start:
            current.end = end
            yield current
    finally:
        summary.read += read
        summary.rejected += rejected


@dataclass
class _Cutting:
    """iter_stretches' running state, handed to _block_stretches and back."""

    current: Stretch
    read: int  # rows read since the last stretch was yielded
    rejected: int  # rejects among them


def _block_stretches(
    block: RowBlock,
    mapper: Mapper,
    batch_size: int,
    summary: PushSummary,
    *,
    stream: RowStream,
    state: _Cutting,
) -> Iterator[Stretch]:
    """A block's rows into the running stretch, yielding every stretch they fill, cut where the
    row path would cut it: after the record that makes it `batch_size`."""
    mapped = _map_block(block, mapper)
    accepted, current = mapped.accepted, state.current
    taken = done_reads = done_rejects = 0
    while taken < len(accepted):
        more = min(batch_size - current.count, len(accepted) - taken)
        last = accepted[taken + more - 1]
        for column, values in zip(current.columns, mapped.values, strict=True):
            column.extend(values[taken : taken + more])
        taken += more
        current.count += more
        reads, rejects = bisect_right(mapped.reads, last), bisect_right(mapped.reject_lines, last)
        current.rejects += mapped.rejects[done_rejects:rejects]
        state.read += reads - done_reads
        state.rejected += rejects - done_rejects
        done_reads, done_rejects = reads, rejects
        if current.count >= batch_size:
            current.end = stream.position_at(  # type: ignore[attr-defined]
                block.start + block.parsed.line_ends[last], block.first_line + last + 1
            )
            summary.read += state.read
            summary.rejected += state.rejected
            state.read = state.rejected = 0
            yield current
            current = Stretch(encode_position(current.end), current.end, mapper.new_columns())
    current.rejects += mapped.rejects[done_rejects:]
    state.read += len(mapped.reads) - done_reads
    state.rejected += len(mapped.rejects) - done_rejects
    state.current = current


@dataclass(frozen=True)
class _MappedBlock:
    """A block's records and rejects, by line index within the block."""

    accepted: list[int]  # line index of each accepted record, in order
    values: list[list[Any]]  # the accepted records as batch columns
    reads: list[int]  # line index of every row read (accepted, rejected or unreadable), in order
    reject_lines: list[int]  # line index of each reject, in order
    rejects: list[RejectRow]


def _map_block(block: RowBlock, mapper: Mapper) -> _MappedBlock:
    """Map a block with the block mapper, and the rows it cannot vouch for with the row mapper."""
    parsed, first = block.parsed, block.first_line + 1
    from agents._columnar import rows_of  # pyarrow is there: the mapper has a block mapper

    columnar = mapper.columnar
    assert columnar is not None
    problems: list[tuple[int, RejectRow]] = [
        (index, RejectRow(first + index, ROW, problem)) for index, problem in parsed.bad
    ]
    if parsed.rows:
        fits, values = columnar.map_block(parsed.columns)
    else:
        fits, values = [], [[] for _ in mapper.new_columns()]
    unsure = [position for position, fit in enumerate(fits) if not fit]
    rows = rows_of(parsed.columns, unsure) if unsure else []
    for position, row in zip(unsure, rows, strict=True):
        record = mapper.new_columns()
        try:
            mapper.append_fn(row, record)
        except Rejected as problem:
            index = parsed.rows[position]
            problems.append((index, RejectRow(first + index, problem.field, problem.problem)))
            continue
        fits[position] = True
        for column, value in zip(values, record, strict=True):
            column[position] = value[0]
    problems.sort(key=lambda item: item[0])
    if all(fits):
        accepted, kept = parsed.rows, values
    else:
        accepted, kept = (
            list(compress(parsed.rows, fits)),
            [list(compress(column, fits)) for column in values],
        )
    return _MappedBlock(
        accepted=accepted,
        values=kept,
        reads=sorted(parsed.rows + [index for index, _ in parsed.bad]),
        reject_lines=[index for index, _ in problems],
        rejects=[reject for _, reject in problems],
    )


def push(
    config: AgentConfig,
    *,
    progress: Progress | None = None,
    keys: KeySource | None = None,
    source: RecordSource | None = None,
    client_factory: Callable[..., GatewayClient] = GatewayClient,
    from_start: bool = False,
    stop: threading.Event | None = None,
) -> PushSummary:
    """Resend the spool, then read what is new in the source and send every record that fits the
    contract; return the local counts. `from_start` forgets the read position of this source first;
    a set `stop` ends the run after the batch being read (what was read is sent first)."""
    keys = keys or key_source(config.keys)
    linkage_key = keys.linkage_key()
    signing_key = keys.signing_key()
    gateway_key = load_hpke_public_key(config.gateway.hpke_public_key)
    tls = TlsMaterial(*load_tls_material(config.gateway))
    ensure_state_dir(config.agent.state_dir)
    source = source or open_source(config.source)
    summary = PushSummary()
    with AgentState(config.agent.state_dir) as state, client_factory(config.gateway, tls) as client:
        if from_start:
            state.forget_source(source.name)
        resume = state.read_position(source.name)
        log = get_logger()
        log.info("push.started", source=source.name, resuming=resume is not None)
        with source.open(config.source_columns(), resume) as stream:
            contract = _fetch_contract(config, client)
            mapper = build_mapper(config, contract, linkage_key)
            sealer = Sealer(config.agent.agency, contract, source.name, signing_key, gateway_key)
            sender = _Sender(
                client,
                state=state,
                max_in_flight=config.gateway.max_in_flight,
                summary=summary,
                stream=stream,
                progress=progress,
            )
            try:
                with sender:
                    for entry in state.pending():
                        summary.resent += 1
                        sender.send(entry.seq, entry.batch_id, entry.record_count, entry.sealed)
                    start = resume if resume is not None else stream.position()
                    for stretch in iter_stretches(stream, mapper, config.agent.batch_size, summary, start):
                        _spool_and_send(stretch, source.name, sealer, state, sender)
                        if stop is not None and stop.is_set():
                            break
            except BaseException:
                # the run's own error is what the operator must see; the reject file is best effort
                with contextlib.suppress(AgentError):
                    write_reject_file(config.agent.state_dir, state.rejects(source.name))
                raise
            summary.spooled = state.spooled_counts()[0]
            write_reject_file(config.agent.state_dir, state.rejects(source.name))
    log.info("push.finished", **summary.as_dict())
    return summary


def _spool_and_send(
    stretch: Stretch, source_name: str, sealer: Sealer, state: AgentState, sender: _Sender
) -> None:
    if not stretch.count:
        state.spool(source_name, stretch.start, stretch.end, stretch.rejects, None)
        return
    sealed = sealer.seal_columns(stretch.columns, stretch.start)
    payload = sealed.message.SerializeToString()
    seq = state.spool(
        source_name,
        stretch.start,
        stretch.end,
        stretch.rejects,
        (sealed.batch_id, sealed.record_count, payload),
    )
    if seq is not None:
        sender.send(seq, sealed.batch_id, sealed.record_count, payload)


def dry_run(config: AgentConfig, contract: Contract, *, keys: KeySource | None = None) -> PushSummary:
    """Map the whole source against a contract without a gateway: counts and the reject file only."""
    keys = keys or key_source(config.keys)
    mapper = build_mapper(config, contract, keys.linkage_key())
    ensure_state_dir(config.agent.state_dir)
    summary = PushSummary()
    rejects: list[RejectRow] = []
    with open_source(config.source).open(config.source_columns()) as stream:
        for stretch in iter_stretches(stream, mapper, config.agent.batch_size, summary, stream.position()):
            rejects.extend(stretch.rejects)
            if stretch.count:
                summary.batches += 1
                summary.sent += stretch.count
    write_reject_file(config.agent.state_dir, rejects)
    return summary


def _fetch_contract(config: AgentConfig, client: GatewayClient) -> Contract:
    message = client.get_contract(config.agent.dataset)
    if message.dataset != config.agent.dataset:
        raise PermanentPushError("gateway answered with the contract of another dataset")
    contract = Contract.from_proto(message)
    if contract.owner_agency != config.agent.agency:
        raise ConfigError(
            f"{config.path}: agent.agency: dataset {contract.dataset} is owned by another agency"
        )
    save_contract(config.agent.state_dir, message)
    return contract


class _Sender:
    """Up to `max_in_flight` PushBatch calls at once; acknowledgements are applied in this thread."""

    def __init__(
        self,
        client: GatewayClient,
        *,
        state: AgentState,
        max_in_flight: int,
        summary: PushSummary,
        stream: RowStream,
        progress: Progress | None,
    ) -> None:
        self._client, self._state, self._summary = client, state, summary
        self._stream, self._progress = stream, progress
        self._max = max_in_flight
        self._pending: deque[Future[tuple[int, int, ingest_pb2.PushAck]]] = deque()
        self._pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="agent-push")

    def __enter__(self) -> _Sender:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            if exc_type is None:
                while self._pending:
                    self._collect(self._pending.popleft())
        finally:
            # on failure, calls still queued are dropped (their batches stay in the spool); the
            # caller closes the channel, which ends the ones on the wire
            self._pool.shutdown(wait=not self._pending, cancel_futures=True)
        if self._progress is not None:
            self._progress.update(self._summary, self._stream.progress())

    def send(self, seq: int, batch_id: str, count: int, payload: bytes) -> None:
        def call() -> tuple[int, int, ingest_pb2.PushAck]:
            message = ingest_pb2.SealedBatch.FromString(payload)
            return seq, count, self._client.push(message, batch_id)

        self._pending.append(self._pool.submit(call))
        while len(self._pending) > self._max or (self._pending and self._pending[0].done()):
            self._collect(self._pending.popleft())

    def _collect(self, future: Future[tuple[int, int, ingest_pb2.PushAck]]) -> None:
        seq, count, ack = future.result()
        self._state.acknowledge(seq)
        get_logger().debug(
            "batch.acknowledged",
            batch_id=ack.batch_id,
            records=count,
            status=ingest_pb2.PushAck.Status.Name(ack.status),
        )
        summary = self._summary
        summary.batches += 1
        summary.sent += count
        if ack.status == ingest_pb2.PushAck.STATUS_DUPLICATE:
            summary.duplicate += 1
        else:
            summary.stored += 1
        if self._progress is not None:
            self._progress.update(summary, self._stream.progress())
