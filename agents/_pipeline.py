"""The push pipeline: source ▶ map ▶ batch ▶ seal+sign ▶ push, streaming, a few batches in flight.

Start-up does everything that can fail without sending a byte first (config, keys, the source's
header), then fetches and caches the contract and checks the mapping against it. Records stream
in batches; while up to `max_in_flight` batches are on the wire the next one is being mapped and
sealed. The counts in PushSummary are the agency's own local figures.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Protocol

from agents._config import AgentConfig
from agents._contract import Contract, ensure_state_dir, save_contract
from agents._keys import KeySource, key_source, load_hpke_public_key, load_tls_material
from agents._mapping import MappedRecord, Mapper, Rejected, build_mapper
from agents._pb import ingest_pb2
from agents._push import GatewayClient, TlsMaterial
from agents._rejects import RejectLog
from agents._seal import Sealer
from agents._source import BadRow, RecordSource, RowStream, open_source
from agents.errors import ConfigError, PermanentPushError

ROW = "row"  # the "field" of a reject when the line itself could not be read


@dataclass
class PushSummary:
    read: int = 0
    sent: int = 0
    rejected: int = 0
    batches: int = 0
    stored: int = 0
    duplicate: int = 0

    def line(self) -> str:
        return (
            f"read {self.read}, sent {self.sent}, rejected {self.rejected}, "
            f"batches {self.batches} (stored {self.stored}, duplicate {self.duplicate})"
        )

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Progress(Protocol):
    def update(self, summary: PushSummary, fraction: float | None) -> None:
        """Called after each batch; `fraction` of the source read, None when unknown."""


def iter_batches(
    stream: RowStream, mapper: Mapper, rejects: RejectLog, batch_size: int, summary: PushSummary
) -> Iterator[tuple[int, list[MappedRecord]]]:
    """(first source line, records) per batch; bad rows go to the reject log and are counted."""
    records: list[MappedRecord] = []
    first_line = 0
    for line, row in stream:
        summary.read += 1
        if isinstance(row, BadRow):
            rejects.add(line, ROW, row.problem)
            summary.rejected += 1
            continue
        try:
            record = mapper.map(row)
        except Rejected as rejected:
            rejects.add(line, rejected.field, rejected.problem)
            summary.rejected += 1
            continue
        if not records:
            first_line = line
        records.append(record)
        if len(records) >= batch_size:
            yield first_line, records
            records = []
    if records:
        yield first_line, records


def push(
    config: AgentConfig,
    *,
    progress: Progress | None = None,
    keys: KeySource | None = None,
    source: RecordSource | None = None,
    client_factory: Callable[..., GatewayClient] = GatewayClient,
) -> PushSummary:
    """Read the source, send every record that fits the contract, return the local counts."""
    keys = keys or key_source(config.keys)
    linkage_key = keys.linkage_key()
    signing_key = keys.signing_key()
    gateway_key = load_hpke_public_key(config.gateway.hpke_public_key)
    tls = TlsMaterial(*load_tls_material(config.gateway))
    ensure_state_dir(config.agent.state_dir)
    source = source or open_source(config.source)
    summary = PushSummary()
    with source.open(config.source_columns()) as stream, client_factory(config.gateway, tls) as client:
        contract = _fetch_contract(config, client)
        mapper = build_mapper(config, contract, linkage_key)
        sealer = Sealer(config.agent.agency, contract, source.name, signing_key, gateway_key)
        with RejectLog(config.agent.state_dir) as rejects:
            batches = iter_batches(stream, mapper, rejects, config.agent.batch_size, summary)
            _send(
                batches,
                sealer=sealer,
                client=client,
                max_in_flight=config.gateway.max_in_flight,
                summary=summary,
                stream=stream,
                progress=progress,
            )
    return summary


def dry_run(config: AgentConfig, contract: Contract, *, keys: KeySource | None = None) -> PushSummary:
    """Map the whole source against a contract without a gateway: counts and the reject file only."""
    keys = keys or key_source(config.keys)
    mapper = build_mapper(config, contract, keys.linkage_key())
    ensure_state_dir(config.agent.state_dir)
    summary = PushSummary()
    with (
        open_source(config.source).open(config.source_columns()) as stream,
        RejectLog(config.agent.state_dir) as rejects,
    ):
        for _first_line, records in iter_batches(stream, mapper, rejects, config.agent.batch_size, summary):
            summary.batches += 1
            summary.sent += len(records)
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


def _send(
    batches: Iterator[tuple[int, list[MappedRecord]]],
    *,
    sealer: Sealer,
    client: GatewayClient,
    max_in_flight: int,
    summary: PushSummary,
    stream: RowStream,
    progress: Progress | None,
) -> None:
    pending: deque[Future[tuple[int, ingest_pb2.PushAck]]] = deque()

    def send(message: ingest_pb2.SealedBatch, batch_id: str, count: int) -> tuple[int, ingest_pb2.PushAck]:
        return count, client.push(message, batch_id)

    def collect(future: Future[tuple[int, ingest_pb2.PushAck]]) -> None:
        count, ack = future.result()
        summary.batches += 1
        summary.sent += count
        if ack.status == ingest_pb2.PushAck.STATUS_DUPLICATE:
            summary.duplicate += 1
        else:
            summary.stored += 1
        if progress is not None:
            progress.update(summary, stream.progress())

    pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="agent-push")
    try:
        for first_line, records in batches:
            sealed = sealer.seal(records, first_line)
            pending.append(pool.submit(send, sealed.message, sealed.batch_id, sealed.record_count))
            while len(pending) > max_in_flight or (pending and pending[0].done()):
                collect(pending.popleft())
        while pending:
            collect(pending.popleft())
    finally:
        # on failure, calls still queued are dropped; the caller closes the channel, which ends
        # the ones on the wire
        pool.shutdown(wait=not pending, cancel_futures=True)
    if progress is not None:
        progress.update(summary, stream.progress())
