"""Real parts for the agent's tests: a throwaway CA and certificates, agency keys, and a small
Ingest server over mutual TLS that opens seals and verifies signatures the way the wire contract
(proto/datashare/v1/ingest.proto) describes, written here independently of agents/_seal.py.
"""

from __future__ import annotations

import csv
import ipaddress
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from cryptography.x509.oid import NameOID

from agents._pb import common_pb2, ingest_pb2, ingest_pb2_grpc

SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
AGE_BANDS = ["0-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
AGENT_SPIFFE = "spiffe://test.local/agency/health/agent/ed-agent-1"

ED_HEADER = [
    "attendance_id",
    "patient_national_id",
    "patient_name",
    "date_of_birth",
    "sex",
    "home_postcode",
    "arrival_time",
    "departure_time",
    "triage_code",
    "clinical_notes",
]


def make_contract(granularity: str = "day", owner: str = "health") -> common_pb2.DatasetContract:
    dim, measure = common_pb2.COLUMN_KIND_DIMENSION, common_pb2.COLUMN_KIND_MEASURE
    return common_pb2.DatasetContract(
        dataset="ed_visits",
        owner_agency=owner,
        version=3,
        event_date_granularity=granularity,
        columns=[
            common_pb2.ContractColumn(name="district", kind=dim, domain=["D01", "D02", "D03"]),
            common_pb2.ContractColumn(name="age_band", kind=dim, domain=AGE_BANDS),
            common_pb2.ContractColumn(name="sex", kind=dim, domain=["F", "M", "X"]),
            common_pb2.ContractColumn(name="presentation", kind=dim, domain=["overdose", "injury", "other"]),
            common_pb2.ContractColumn(name="length_of_stay_hours", kind=measure, min=0, max=72),
        ],
    )


# --- PKI -------------------------------------------------------------------------------------


def _pem_key(key: ec.EllipticCurvePrivateKey | Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    sans: list[x509.GeneralName] | None = None,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        usage = (
            x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server else x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
        )
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class TestPki:
    ca: Path
    server_cert: Path
    server_key: Path
    agent_cert: Path
    agent_key: Path


def write_pki(root: Path) -> TestPki:
    root.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("test CA", ca_key, None, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue(
        "gateway",
        server_key,
        ca,
        ca_key,
        sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))],
        server=True,
    )
    agent_key = ec.generate_private_key(ec.SECP256R1())
    agent = _issue("ed-agent-1", agent_key, ca, ca_key, sans=[x509.UniformResourceIdentifier(AGENT_SPIFFE)])
    pki = TestPki(
        ca=root / "ca.pem",
        server_cert=root / "server.pem",
        server_key=root / "server.key",
        agent_cert=root / "agent.pem",
        agent_key=root / "agent.key",
    )
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.server_cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    write_secret(pki.server_key, _pem_key(server_key))
    pki.agent_cert.write_bytes(agent.public_bytes(serialization.Encoding.PEM))
    write_secret(pki.agent_key, _pem_key(agent_key))
    return pki


def write_secret(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o600)


@dataclass(frozen=True)
class AgencyKeys:
    hpke_private: X25519PrivateKey
    signing_private: Ed25519PrivateKey
    linkage_key: bytes

    @classmethod
    def generate(cls) -> AgencyKeys:
        return cls(X25519PrivateKey.generate(), Ed25519PrivateKey.generate(), bytes(range(32)))

    def hpke_public_pem(self) -> bytes:
        return self.hpke_private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def signing_pem(self) -> bytes:
        return _pem_key(self.signing_private)


# --- the server side of the wire contract ----------------------------------------------------


def open_sealed(
    sealed: ingest_pb2.SealedBatch, hpke_private: X25519PrivateKey, signing_public: Ed25519PublicKey
) -> tuple[ingest_pb2.BatchHeader, ingest_pb2.RecordBatch]:
    """Verify then open, as ingest.proto describes; raises InvalidSignature or InvalidTag."""
    header = sealed.header
    signing_public.verify(
        sealed.signature,
        b"datashare/v1/signature\x00" + len(header).to_bytes(4, "big") + header + sealed.ciphertext,
    )
    plaintext = SUITE.decrypt(sealed.ciphertext, hpke_private, info=b"datashare/v1/batch\x00" + header)
    return ingest_pb2.BatchHeader.FromString(header), ingest_pb2.RecordBatch.FromString(plaintext)


@dataclass
class ReceivedBatch:
    header: ingest_pb2.BatchHeader
    records: ingest_pb2.RecordBatch
    plaintext: bytes


@dataclass
class RecordingIngest(ingest_pb2_grpc.IngestServicer):
    """Ingest that stores opened batches in memory; `failures` are answered first, one per call."""

    contract: common_pb2.DatasetContract
    keys: AgencyKeys
    failures: deque[tuple[grpc.StatusCode, str]] = field(default_factory=deque)
    stored: dict[str, ReceivedBatch] = field(default_factory=dict)
    push_calls: int = 0
    statuses: list[int] = field(default_factory=list)
    peers: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def GetContract(  # noqa: N802 - the generated servicer's method name
        self, request: ingest_pb2.GetContractRequest, context: grpc.ServicerContext
    ) -> common_pb2.DatasetContract:
        if request.dataset != self.contract.dataset:
            context.abort(grpc.StatusCode.NOT_FOUND, "dataset: no such dataset")
        return self.contract

    def PushBatch(  # noqa: N802 - the generated servicer's method name
        self, request: ingest_pb2.SealedBatch, context: grpc.ServicerContext
    ) -> ingest_pb2.PushAck:
        with self.lock:
            self.push_calls += 1
            failure = self.failures.popleft() if self.failures else None
            sans: bytes | Iterable[bytes] = context.auth_context().get("x509_subject_alternative_name", [])
            self.peers.extend([sans] if isinstance(sans, bytes) else sans)
        if failure is not None:
            context.abort(*failure)
        try:
            header, records = open_sealed(
                request, self.keys.hpke_private, self.keys.signing_private.public_key()
            )
        except (InvalidSignature, InvalidTag):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "signature: does not verify")
        plaintext = SUITE.decrypt(
            request.ciphertext, self.keys.hpke_private, info=b"datashare/v1/batch\x00" + request.header
        )
        with self.lock:
            if header.batch_id in self.stored:
                status = ingest_pb2.PushAck.STATUS_DUPLICATE
            else:
                self.stored[header.batch_id] = ReceivedBatch(header, records, plaintext)
                status = ingest_pb2.PushAck.STATUS_STORED
            self.statuses.append(status)
        return ingest_pb2.PushAck(batch_id=header.batch_id, status=status, records_stored=header.record_count)

    def all_records(self) -> list[tuple[bytes, int, dict[str, str], dict[str, float]]]:
        """Every stored record as (token, day, dimension values, measures), in batch id order."""
        out = []
        for _, batch in sorted(self.stored.items()):
            records = batch.records
            for i, token in enumerate(records.subject_tokens):
                dims = {d.name: d.dictionary[d.codes[i]] for d in records.dimensions}
                measures = {m.name: m.values[i] for m in records.measures}
                out.append((token, records.event_days[i], dims, measures))
        return out


@dataclass
class RunningServer:
    address: str
    servicer: RecordingIngest
    server: grpc.Server


def start_server(pki: TestPki, servicer: RecordingIngest) -> RunningServer:
    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    ingest_pb2_grpc.add_IngestServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials(
        [(pki.server_key.read_bytes(), pki.server_cert.read_bytes())],
        root_certificates=pki.ca.read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return RunningServer(f"127.0.0.1:{port}", servicer, server)


# --- agent workspace ---------------------------------------------------------------------------


def ed_row(**overrides: str) -> dict[str, str]:
    row = {
        "attendance_id": "A1",
        "patient_national_id": "AB123456C",
        "patient_name": "Wilhelmina Zarathustra",
        "date_of_birth": "1990-05-17",
        "sex": "F",
        "home_postcode": "ZX1 1AA",
        "arrival_time": "2024-03-15 10:00",
        "departure_time": "2024-03-15 14:30",
        "triage_code": "T01",
        "clinical_notes": "confidential note about the visit",
    }
    row.update(overrides)
    return row


def write_csv(path: Path, rows: Iterable[Mapping[str, str]], header: list[str] | None = None) -> None:
    header = header or ED_HEADER
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            writer.writerow([row[c] for c in header])


CONFIG_TEMPLATE = """\
[agent]
agency = "{agency}"
dataset = "ed_visits"
batch_size = {batch_size}
state_dir = "state"

[gateway]
address = "{address}"
server_name = "localhost"
ca = "{ca}"
cert = "{cert}"
key = "{key}"
hpke_public_key = "keys/hpke.pub"
timeout_s = 5
retries = {retries}
backoff_initial_s = 0.01
backoff_max_s = 0.05
max_in_flight = {max_in_flight}

[keys]
linkage_key = "keys/linkage.key"
signing_key = "keys/signing.key"
signing_key_id = "health-1"

[source]
type = "csv"
path = "data/ed_visits.csv"
delimiter = ","
encoding = "utf-8"

[fields.subject]
transform = "pseudonymise"
columns = ["patient_national_id"]

[fields.event_date]
transform = "date"
column = "arrival_time"
format = "%Y-%m-%d %H:%M"

[fields.age_band]
transform = "age_band"
column = "date_of_birth"
format = "%Y-%m-%d"

[fields.sex]
transform = "map"
column = "sex"
map = {{ F = "F", M = "M", U = "X", "" = "X" }}

[fields.district]
transform = "lookup"
column = "home_postcode"
file = "lookups/postcode_district.csv"

[fields.presentation]
transform = "lookup"
column = "triage_code"
file = "lookups/triage_presentation.csv"

[fields.length_of_stay_hours]
transform = "hours_between"
columns = ["arrival_time", "departure_time"]
format = "%Y-%m-%d %H:%M"
"""


@dataclass
class Workspace:
    root: Path
    pki: TestPki
    keys: AgencyKeys
    address: str = "127.0.0.1:9"

    @property
    def config(self) -> Path:
        return self.root / "agent.toml"

    @property
    def data(self) -> Path:
        return self.root / "data" / "ed_visits.csv"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def write_config(
        self,
        *,
        agency: str = "health",
        batch_size: int = 1000,
        retries: int = 3,
        max_in_flight: int = 2,
        extra: str = "",
    ) -> Path:
        self.config.write_text(
            CONFIG_TEMPLATE.format(
                agency=agency,
                batch_size=batch_size,
                address=self.address,
                ca=self.pki.ca,
                cert=self.pki.agent_cert,
                key=self.pki.agent_key,
                retries=retries,
                max_in_flight=max_in_flight,
            )
            + extra,
            encoding="utf-8",
        )
        return self.config

    def write_rows(self, rows: Iterable[Mapping[str, str]]) -> Path:
        write_csv(self.data, rows)
        return self.data


def make_workspace(root: Path, pki: TestPki, keys: AgencyKeys) -> Workspace:
    for folder in ("data", "lookups", "keys"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "keys" / "hpke.pub").write_bytes(keys.hpke_public_pem())
    write_secret(root / "keys" / "linkage.key", keys.linkage_key.hex().encode() + b"\n")
    write_secret(root / "keys" / "signing.key", keys.signing_pem())
    (root / "lookups" / "postcode_district.csv").write_text(
        "postcode,district\nZX1 1AA,D01\nZX2 2BB,D02\nzx3 3cc,D03\n", encoding="utf-8"
    )
    (root / "lookups" / "triage_presentation.csv").write_text(
        "triage_code,presentation\nT01,overdose\nT02,injury\nT03,other\n", encoding="utf-8"
    )
    workspace = Workspace(root, pki, keys)
    workspace.write_config()
    return workspace
