"""`agent check`: everything agency IT wants to know before leaving the agent running.

Each check has a stable name and ends ok, warn or fail with one plain detail line that names the
file, key or setting concerned and never carries a key, a record value or a person's identifier.
In order:

    config                the TOML loads (if not, it is the only check reported)
    linkage_key           the consortium linkage key loads (owner-only file or environment variable)
    signing_key           the agency's Ed25519 signing key loads (likewise)
    tls_key               the TLS client key file is owner-only and parses
    ca_certificate        the CA bundle parses and is valid now
    client_certificate    the client certificate parses and is within its validity period
                          (warn when it expires within 30 days)
    certificate_chain     the client certificate is signed by the configured CA
    certificate_key       the client certificate's public key is the TLS client key's
    certificate_identity  its SPIFFE URI SAN names an agent of agent.agency
    hpke_public_key       the gateway's HPKE public key parses
    state_dir             the state directory is writable (or can be created)
    spool                 what waits to be sent (warn when batches wait), read-only; "in use by a
                          running agent" while the service holds the state
    source                the source opens and its header has every column the mapping reads
    gateway               GetContract answers over mutual TLS within --timeout, no retries
    contract              the mapping compiles against the fetched contract (or, when the gateway
                          was not reached, the cached one), and whether its version changed since
                          the contract cached by the last push

A check whose input did not load says "not checked" (warn), so the list of names never changes.
Nothing is written: not the state, not the contract cache, not the reject file.

A failure carries the exit code of its error class (agents.errors); the command exits with the
lowest one among the failures (the one to fix first, and what `agent push` would end with).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from agents._config import AgentConfig, load_config
from agents._contract import Contract, cache_path, load_cached_contract
from agents._keys import key_source, load_hpke_public_key, read_private_file, read_public_file
from agents._mapping import build_mapper
from agents._pb import common_pb2
from agents._push import GatewayClient, TlsMaterial
from agents._source import open_source
from agents._state import peek_spool
from agents.errors import AgentError, ConfigError, PermanentPushError, StateBusyError, TransientPushError

Status = Literal["ok", "warn", "fail"]

CHECK_NAMES = (
    "config",
    "linkage_key",
    "signing_key",
    "tls_key",
    "ca_certificate",
    "client_certificate",
    "certificate_chain",
    "certificate_key",
    "certificate_identity",
    "hpke_public_key",
    "state_dir",
    "spool",
    "source",
    "gateway",
    "contract",
)
DEFAULT_TIMEOUT_S = 5.0
EXPIRY_WARNING = timedelta(days=30)
# the gateway's own rule for a principal's URI SAN (gateway/identity.py; the agent cannot import it)
_SEGMENT = r"[a-z0-9][a-z0-9._-]{0,62}"
_SPIFFE = re.compile(
    rf"^spiffe://(?P<td>{_SEGMENT})/agency/(?P<agency>{_SEGMENT})/(?P<role>[a-z]+)/(?P<name>{_SEGMENT})$"
)
_SPIFFE_FORM = "spiffe://<domain>/agency/<agency>/agent/<name>"
# build_mapper only compiles the mapping here; no record is mapped, so the real key is not needed
_PLACEHOLDER_LINKAGE_KEY = bytes(32)
_MAX_DETAIL = 300

CHECK_DESCRIPTION = """\
Check everything the agent needs before you leave it running, without sending a record:

  config                the TOML file loads and every setting is valid
  linkage_key           the linkage key loads; a key file must be readable by its owner only
  signing_key           the signing key loads (Ed25519); same rule for its file
  tls_key               the TLS client key file is owner-only and parses
  ca_certificate        the CA certificate parses and is valid now
  client_certificate    the client certificate parses and is valid now (warn when it expires
                        within 30 days; the date is shown)
  certificate_chain     the client certificate is signed by the configured CA
  certificate_key       the client certificate belongs to the TLS client key
  certificate_identity  its SPIFFE id is spiffe://<domain>/agency/<agency>/agent/<name> with
                        <agency> = agent.agency
  hpke_public_key       the gateway's public key (batches are sealed to it) parses
  state_dir             the state directory is writable, or can be created
  spool                 what waits to be sent (warn when batches wait); read-only
  source                the source opens and has every column the mapping reads (only the
                        header row is read)
  gateway               the gateway answers over mutual TLS within --timeout, without retries;
                        its contract version is shown
  contract              the mapping fits the gateway's contract; warn when its version changed
                        since the last push. When the gateway is not reached, the mapping is
                        checked against the contract cached in <state_dir> instead, and says so

Each check prints ok, warn or fail and one line saying why; no key, record value or identifier
is ever printed. Nothing is sent except the contract request, and nothing is written.

The exit code is 0 when no check failed (warnings allowed); otherwise the lowest code among
the failures (the one to fix first): 2 config, key, certificate or contract; 3 source;
4 the gateway refused; 5 the gateway was unreachable.

examples:
  agent check --config /etc/datashare/agent-health.toml
  agent check --config agent-health.toml --json | jq '.checks[] | select(.status != "ok")'
  agent check --config agent-health.toml --timeout 20     # a slow link to the gateway
"""


@dataclass(frozen=True)
class Check:
    """One check's outcome; `exit_code` is that of the error class of a failure (0 otherwise)."""

    name: str
    status: Status
    detail: str
    exit_code: int = 0

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


@dataclass(frozen=True)
class CheckReport:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.status != "fail" for check in self.checks)

    @property
    def exit_code(self) -> int:
        return min((c.exit_code for c in self.checks if c.status == "fail"), default=0)

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "checks": [check.as_dict() for check in self.checks]}

    def summary(self) -> str:
        failed = sum(c.status == "fail" for c in self.checks)
        warned = sum(c.status == "warn" for c in self.checks)
        if failed:
            return f"{failed} check(s) failed, {warned} warning(s): fix the failures (exit {self.exit_code})"
        if warned:
            return f"no check failed, {warned} warning(s): read them before leaving the agent running"
        return f"all {len(self.checks)} checks ok"


def _ok(name: str, detail: str) -> Check:
    return Check(name, "ok", _one_line(detail))


def _warn(name: str, detail: str) -> Check:
    return Check(name, "warn", _one_line(detail))


def _fail(name: str, detail: str, exit_code: int = ConfigError.exit_code) -> Check:
    return Check(name, "fail", _one_line(detail), exit_code)


def _failed(name: str, error: AgentError) -> Check:
    return _fail(name, error.message, error.exit_code)


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


def run_checks(
    config_path: Path, *, timeout_s: float = DEFAULT_TIMEOUT_S, now: datetime | None = None
) -> CheckReport:
    """Run every check in order; a config that does not load is the single (failed) check."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        return CheckReport((_failed("config", exc),))
    return _Checker(config, timeout_s, now or datetime.now(UTC)).run()


class _Checker:
    """Runs the checks in order; later ones use what earlier ones loaded (or say "not checked")."""

    def __init__(self, config: AgentConfig, timeout_s: float, now: datetime) -> None:
        self.config, self.timeout_s, self.now = config, timeout_s, now
        self.tls_key: PrivateKeyTypes | None = None
        self.tls_key_pem: bytes | None = None
        self.ca_pem: bytes | None = None
        self.ca_certs: list[x509.Certificate] | None = None
        self.cert_pem: bytes | None = None
        self.cert_chain: list[x509.Certificate] | None = None
        self.fetched: common_pb2.DatasetContract | None = None

    def run(self) -> CheckReport:
        agent = self.config.agent
        checks = [_ok("config", f"{self.config.path}: agency {agent.agency}, dataset {agent.dataset}")]
        for step in (
            self._linkage_key,
            self._signing_key,
            self._tls_key,
            self._ca_certificate,
            self._client_certificate,
            self._certificate_chain,
            self._certificate_key,
            self._certificate_identity,
            self._hpke_public_key,
            self._state_dir,
            self._spool,
            self._source,
            self._gateway,
            self._contract,
        ):
            checks.append(step())
        return CheckReport(tuple(checks))

    # --- keys ------------------------------------------------------------------------------

    def _linkage_key(self) -> Check:
        settings = self.config.keys
        try:
            key = key_source(settings).linkage_key()
        except ConfigError as exc:
            return _failed("linkage_key", exc)
        return _ok(
            "linkage_key", _key_detail(settings.linkage_key, settings.linkage_key_env, f"{len(key) * 8}-bit")
        )

    def _signing_key(self) -> Check:
        settings = self.config.keys
        try:
            key_source(settings).signing_key()
        except ConfigError as exc:
            return _failed("signing_key", exc)
        return _ok("signing_key", _key_detail(settings.signing_key, settings.signing_key_env, "Ed25519"))

    def _tls_key(self) -> Check:
        path = self.config.gateway.key
        try:
            data = read_private_file(path)
        except ConfigError as exc:
            return _failed("tls_key", exc)
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except TypeError:
            return _fail(
                "tls_key", f"{path}: the TLS client key is encrypted; the agent needs it unencrypted"
            )
        except (ValueError, UnsupportedAlgorithm):
            return _fail("tls_key", f"{path}: not a PEM private key")
        self.tls_key, self.tls_key_pem = key, data
        return _ok("tls_key", f"{path}: {_describe(key.public_key())} key, readable by its owner only")

    def _hpke_public_key(self) -> Check:
        path = self.config.gateway.hpke_public_key
        try:
            load_hpke_public_key(path)
        except ConfigError as exc:
            return _failed("hpke_public_key", exc)
        return _ok("hpke_public_key", f"{path}: X25519 public key")

    # --- certificates ----------------------------------------------------------------------

    def _ca_certificate(self) -> Check:
        name, path = "ca_certificate", self.config.gateway.ca
        try:
            data = read_public_file(path, "CA certificate")
            certs = _load_certificates(path, data, "CA certificate")
        except ConfigError as exc:
            return _failed(name, exc)
        self.ca_pem, self.ca_certs = data, certs
        valid = [c for c in certs if c.not_valid_before_utc <= self.now < c.not_valid_after_utc]
        if not valid:
            return _fail(name, f"{path}: no CA certificate in it is valid now ({_validity(certs[0])})")
        until = min(c.not_valid_after_utc for c in valid)
        if until - self.now < EXPIRY_WARNING:
            return _warn(
                name, f"{path}: the CA certificate expires on {_date(until)}; the consortium must renew it"
            )
        if len(valid) < len(certs):
            stale = len(certs) - len(valid)
            return _warn(
                name, f"{path}: {stale} of its {len(certs)} certificates are expired or not yet valid"
            )
        return _ok(name, f"{path}: {len(certs)} certificate(s), valid until {_date(until)}")

    def _client_certificate(self) -> Check:
        name, path = "client_certificate", self.config.gateway.cert
        try:
            data = read_public_file(path, "client certificate")
            chain = _load_certificates(path, data, "client certificate")
        except ConfigError as exc:
            return _failed(name, exc)
        self.cert_pem, self.cert_chain = data, chain
        leaf = chain[0]
        start, end = leaf.not_valid_before_utc, leaf.not_valid_after_utc
        if self.now < start:
            return _fail(name, f"{path}: not valid before {_date(start)} (is this machine's clock right?)")
        if self.now >= end:
            return _fail(
                name, f"{path}: expired on {_date(end)}; ask the consortium for a new agent certificate"
            )
        left = end - self.now
        if left < EXPIRY_WARNING:
            return _warn(name, f"{path}: expires on {_date(end)}, in {_how_long(left)}; renew it before then")
        return _ok(name, f"{path}: valid until {_date(end)} ({_how_long(left)})")

    def _certificate_chain(self) -> Check:
        name = "certificate_chain"
        if self.cert_chain is None or self.ca_certs is None:
            return _warn(name, "not checked: the client certificate or the CA certificate did not load")
        gateway = self.config.gateway
        if _chains_to(self.cert_chain[0], self.cert_chain[1:], self.ca_certs):
            return _ok(name, f"{gateway.cert}: signed by the CA in {gateway.ca}")
        return _fail(
            name, f"{gateway.cert}: not signed by the CA in {gateway.ca} (a certificate from another CA?)"
        )

    def _certificate_key(self) -> Check:
        name = "certificate_key"
        if self.cert_chain is None or self.tls_key is None:
            return _warn(name, "not checked: the client certificate or the TLS client key did not load")
        gateway = self.config.gateway
        if _spki(self.cert_chain[0].public_key()) != _spki(self.tls_key.public_key()):
            return _fail(
                name, f"{gateway.cert}: its public key is not that of the TLS client key {gateway.key}"
            )
        return _ok(name, f"{gateway.cert}: matches the TLS client key {gateway.key}")

    def _certificate_identity(self) -> Check:
        name, path, agency = "certificate_identity", self.config.gateway.cert, self.config.agent.agency
        if self.cert_chain is None:
            return _warn(name, "not checked: the client certificate did not load")
        found = _spiffe_id(self.cert_chain[0])
        if isinstance(found, str):
            return _fail(name, f"{path}: {found}")
        if found["agency"] != agency:
            return _fail(
                name,
                f"{path}: the certificate is for agency '{found['agency']}' but agent.agency in "
                f"{self.config.path} is '{agency}'",
            )
        if found["role"] != "agent":
            return _fail(name, f"{path}: the certificate is for the role '{found['role']}', not 'agent'")
        return _ok(name, f"agent '{found['name']}' of agency '{agency}' in trust domain '{found['td']}'")

    # --- local state and source ------------------------------------------------------------

    def _state_dir(self) -> Check:
        name, folder = "state_dir", self.config.agent.state_dir
        if folder.exists():
            if not folder.is_dir():
                return _fail(name, f"{folder}: state_dir is not a directory")
            if not os.access(folder, os.W_OK | os.X_OK):
                return _fail(name, f"{folder}: state_dir is not writable by this user")
            return _ok(name, f"{folder}: writable")
        parent = next(p for p in folder.parents if p.exists())
        if not os.access(parent, os.W_OK | os.X_OK):
            return _fail(name, f"{folder}: does not exist, and {parent} is not writable by this user")
        return _ok(name, f"{folder}: does not exist yet; the first push creates it")

    def _spool(self) -> Check:
        """What waits to be sent. Read-only: a check must never change what the agent holds."""
        name = "spool"
        try:
            peek = peek_spool(self.config.agent.state_dir)
        except StateBusyError:
            return _ok(name, "in use by a running agent (the service); its log says what it sends")
        except AgentError as exc:
            return _failed(name, exc)
        if peek is None:
            return _ok(name, "no agent state yet: nothing has been read or sent")
        if peek.batches == 0:
            return _ok(name, "empty: the gateway has acknowledged everything read so far")
        return _warn(
            name,
            f"{peek.batches} batch(es), {peek.records} record(s) wait to be sent (oldest spooled at "
            f"{peek.oldest_spooled_at}); the next push or run sends them first ('agent spool status')",
        )

    def _source(self) -> Check:
        columns = self.config.source_columns()
        try:
            source = open_source(self.config.source)
            with source.open(columns):
                pass  # opening checks the columns (a CSV header, a query's result columns) only
        except AgentError as exc:
            return _failed("source", exc)
        return _ok("source", f"{source.name}: has all {len(columns)} columns the mapping reads")

    # --- gateway and contract --------------------------------------------------------------

    def _gateway(self) -> Check:
        name, address, dataset = "gateway", self.config.gateway.address, self.config.agent.dataset
        if self.tls_key_pem is None or self.cert_pem is None or self.ca_pem is None:
            return _warn(name, "not checked: the TLS client key or a certificate did not load")
        settings = replace(self.config.gateway, timeout_s=self.timeout_s, retries=0)
        tls = TlsMaterial(ca=self.ca_pem, key=self.tls_key_pem, cert=self.cert_pem)
        started = time.monotonic()
        try:
            with GatewayClient(settings, tls) as client:
                message = client.get_contract(dataset)
        except TransientPushError as exc:
            status = _grpc_status(exc)
            if status.startswith(grpc.StatusCode.DEADLINE_EXCEEDED.name):
                return _fail(
                    name, f"{address}: unreachable: no answer within {self.timeout_s:g} s", exc.exit_code
                )
            return _fail(name, f"{address}: unreachable ({status})", exc.exit_code)
        except PermanentPushError as exc:
            return _fail(name, f"{address}: refused ({_grpc_status(exc)})", exc.exit_code)
        elapsed = time.monotonic() - started
        if message.dataset != dataset:
            return _fail(
                name,
                f"{address}: refused (it answered with the contract of another dataset)",
                PermanentPushError.exit_code,
            )
        self.fetched = message
        return _ok(
            name,
            f"{address}: answered over mutual TLS in {elapsed:.2f} s; the contract for {dataset} "
            f"is version {message.version}",
        )

    def _contract(self) -> Check:
        name, dataset = "contract", self.config.agent.dataset
        cached, cache_problem = self._cached_contract()
        if self.fetched is None:
            return self._offline_contract(cached, cache_problem)
        try:
            contract = self._fits(self.fetched)
        except ConfigError as exc:
            return _failed(name, exc)
        fits = f"the mapping fits the contract for {dataset} version {contract.version}"
        if cache_problem is not None:
            return _warn(name, f"{fits}; but {cache_problem}")
        if cached is None:
            return _ok(name, f"{fits}; no push has cached a contract yet")
        if cached.version != contract.version:
            return _warn(
                name,
                f"{fits}, but the last push used version {cached.version}: "
                "run agent preview to see what now leaves",
            )
        return _ok(name, f"{fits}, the version of the last push")

    def _offline_contract(
        self, cached: common_pb2.DatasetContract | None, cache_problem: str | None
    ) -> Check:
        """The gateway was not reached: check the mapping against the cached contract, and say so."""
        name, state_dir = "contract", self.config.agent.state_dir
        if cached is None:
            reason = cache_problem or f"no contract is cached in {state_dir} (a push caches it)"
            return _warn(name, f"not checked: the gateway was not reached, and {reason}")
        try:
            contract = self._fits(cached)
        except ConfigError as exc:
            return _failed(name, exc)
        return _warn(
            name,
            "the gateway was not reached; the mapping fits the contract cached by the last push "
            f"({contract.dataset} version {contract.version})",
        )

    def _cached_contract(self) -> tuple[common_pb2.DatasetContract | None, str | None]:
        """The contract the last push cached (None if there is none), or the problem reading it."""
        state_dir, dataset = self.config.agent.state_dir, self.config.agent.dataset
        if not cache_path(state_dir, dataset).exists():
            return None, None
        try:
            return load_cached_contract(state_dir, dataset), None
        except ConfigError as exc:
            return None, exc.message

    def _fits(self, message: common_pb2.DatasetContract) -> Contract:
        """The contract, after checking the agency owns it and the mapping compiles against it."""
        contract = Contract.from_proto(message)
        if contract.owner_agency != self.config.agent.agency:
            raise ConfigError(
                f"{self.config.path}: agent.agency: dataset {contract.dataset} is owned by another agency"
            )
        build_mapper(self.config, contract, _PLACEHOLDER_LINKAGE_KEY)
        return contract


# --- helpers ---------------------------------------------------------------------------------


def _key_detail(path: Path | None, variable: str | None, kind: str) -> str:
    if path is not None:
        return f"{path}: {kind} key, readable by its owner only"
    return f"environment variable {variable}: {kind} key"


def _load_certificates(path: Path, data: bytes, what: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ConfigError(f"{path}: not a PEM {what}") from exc


def _date(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _how_long(left: timedelta) -> str:
    if left >= timedelta(days=1):
        return f"{left.days} day(s)"
    return f"{max(1, int(left.total_seconds() // 3600))} hour(s)"


def _validity(cert: x509.Certificate) -> str:
    return f"valid from {_date(cert.not_valid_before_utc)} to {_date(cert.not_valid_after_utc)}"


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _chains_to(
    leaf: x509.Certificate, intermediates: list[x509.Certificate], anchors: list[x509.Certificate]
) -> bool:
    """Whether signatures lead from `leaf`, through certificates sent with it, to one of `anchors`."""
    current = leaf
    for _ in range(len(intermediates) + 1):
        if any(_issued_by(current, anchor) for anchor in anchors):
            return True
        parent = next((c for c in intermediates if c is not current and _issued_by(current, c)), None)
        if parent is None:
            return False
        current = parent
    return False


def _spiffe_id(cert: x509.Certificate) -> re.Match[str] | str:
    """The parts of the certificate's one consortium SPIFFE id, or what is wrong with it."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = [
            u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith("spiffe://")
        ]
    except x509.ExtensionNotFound:
        uris = []
    except ValueError:
        return "the certificate's extensions cannot be read"
    if len(uris) != 1:
        return f"must carry exactly one URI SAN {_SPIFFE_FORM}; it has {len(uris)}"
    match = _SPIFFE.match(uris[0])
    return match or f"its URI SAN is not of the form {_SPIFFE_FORM}"


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _describe(key: PublicKeyTypes) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}-bit"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    return "private"


def _grpc_status(error: AgentError) -> str:
    """'CODE: details' of the gRPC error behind a push error (the gateway's words, one line)."""
    cause = error.__cause__
    if isinstance(cause, grpc.RpcError):
        return f"{cause.code().name}: {cause.details() or 'no details'}"
    return error.message


# --- the command -----------------------------------------------------------------------------


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        required=True,
        type=Path,
        metavar="FILE",
        help="the agent's TOML config; relative paths inside it are read from its folder "
        "(example: --config agent-health.toml)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object on stdout instead of a table (example: --json prints {"ok": true, '
        '"checks": [{"name": "config", "status": "ok", "detail": "..."}, ...]})',
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"how long to wait for the gateway's answer; it is asked once, without retries "
        f"(default {DEFAULT_TIMEOUT_S:g}; example: --timeout 20)",
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.1 <= value <= 3600:  # the bounds of gateway.timeout_s
        raise argparse.ArgumentTypeError("must be a number of seconds from 0.1 to 3600")
    return value


def run_check(args: argparse.Namespace) -> int:
    """`agent check`: print the report (table or JSON) and return its exit code."""
    report = run_checks(args.config, timeout_s=args.timeout)
    if args.json:
        sys.stdout.write(json.dumps(report.as_dict()) + "\n")
    else:
        print_report(report)
    return report.exit_code


_STYLES = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def print_report(report: CheckReport) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    if not console.is_terminal:  # a log file or a pipe: wide lines grep better than wrapped ones
        console = Console(highlight=False, width=200)
    table = Table(header_style="bold")
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for check in report.checks:
        # Text, not markup: a path or a gateway message with [brackets] prints as it is
        table.add_row(check.name, Text(check.status, style=_STYLES[check.status]), Text(check.detail))
    console.print(table)
    console.print(Text(report.summary()))
