"""The gateway's settings: typed and frozen, read once at start-up from ``gateway.toml``.

Every scalar key can be overridden from the environment as ``DATASHARE_GATEWAY_<SECTION>_<KEY>``
(``DATASHARE_GATEWAY_STORE_URL``, ``DATASHARE_GATEWAY_POLICY_TIMEOUT_MS`` ...), so a container can
change the database or the listen address without editing the file. Relative paths in the file
resolve against the file's directory; relative paths from the environment, against the working
directory. Unknown keys are refused, so a typo is an error rather than a silently ignored setting.

Errors are ``ConfigError`` naming the file and the dotted key at fault, and never carry a key's
material. ``load_gateway_keys`` reads what the settings point at and refuses private key files that
anybody but their owner may read.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, TypeVar, cast

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gateway.errors import ConfigError
from gateway.store._engine import StoreSettings as ConnectionSettings

ENV_PREFIX: Final = "DATASHARE_GATEWAY_"
REST_KEY_BYTES: Final = 32

PolicyEngineName = Literal["embedded", "opa"]
LogFormat = Literal["json", "console"]
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_T = TypeVar("_T")
_MISSING: Final = object()

# The scalar keys of each section; [agencies] is a nested table and has no environment override.
_SECTIONS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "gateway": frozenset({"listen", "trust_domain", "max_message_mb", "health_listen"}),
        "tls": frozenset({"ca", "cert", "key"}),
        "keys": frozenset({"hpke_private", "rest_key", "audit_signing"}),
        "store": frozenset(
            {
                "url",
                "indexes",
                "migrate",
                "pool_size",
                "max_overflow",
                "pool_timeout_s",
                "pool_recycle_s",
                "connect_timeout_s",
                "statement_timeout_ms",
                "lock_timeout_ms",
                "idle_in_transaction_timeout_ms",
            }
        ),
        "policy": frozenset({"engine", "bundle", "opa_url", "timeout_ms", "reload_interval_s"}),
        "observability": frozenset(
            {"metrics_port", "metrics_address", "log_level", "log_format", "health_interval_ms"}
        ),
        "audit": frozenset({"checkpoint_every", "checkpoint_seconds"}),
    }
)


@dataclass(frozen=True)
class TlsSettings:
    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class KeySettings:
    hpke_private: Path
    rest_key: Path
    audit_signing: Path


@dataclass(frozen=True)
class StoreSettings:
    url: str
    # which indexes the dataset tables carry: "ingest" (lean, the default) or "query" (covering);
    # the trade-off is measured in gateway/store/_schema.py
    indexes: str = "ingest"
    # pool, timeouts and migrate mode, each defaulted and explained in gateway/store/_engine.py
    # and _migrate.py (the defaults are those of ConnectionSettings())
    connection: ConnectionSettings = field(default_factory=ConnectionSettings)


@dataclass(frozen=True)
class PolicySettings:
    engine: PolicyEngineName
    bundle: Path
    opa_url: str
    timeout_ms: int
    # how often the bundle directory is checked for edits (0: only on SIGHUP); a change that
    # loads is swapped in whole, one that does not leaves the last good revision serving
    reload_interval_s: int = 5


@dataclass(frozen=True)
class AgencySettings:
    """An agency that may push data: its enrolled signing keys, by key id."""

    signing_keys: Mapping[str, Path]


@dataclass(frozen=True)
class ObservabilitySettings:
    metrics_port: int  # 0: no metrics endpoint
    log_level: str
    log_format: LogFormat
    # loopback by default: the counts are for the operator, not for every host on the network
    metrics_address: str = "127.0.0.1"
    # how often the database and the policy engine are probed for the health service; a probe
    # that takes longer than this counts as a failure (fail closed)
    health_interval_ms: int = 2000


@dataclass(frozen=True)
class AuditSettings:
    """When the audit log gets a checkpoint signed with keys.audit_signing: every this many
    entries, and every this many seconds for a newest entry no checkpoint covers (0: off)."""

    checkpoint_every: int = 1000
    checkpoint_seconds: int = 300


@dataclass(frozen=True)
class GatewaySettings:
    source: Path
    listen: str
    trust_domain: str
    max_message_mb: int
    tls: TlsSettings
    keys: KeySettings
    store: StoreSettings
    policy: PolicySettings
    agencies: Mapping[str, AgencySettings]
    observability: ObservabilitySettings
    audit: AuditSettings = AuditSettings()
    # host:port of a plaintext listener serving the gRPC health service and nothing else, for
    # probes that cannot present a client certificate (Kubernetes' `grpc:` probe); None: off
    health_listen: str | None = None

    @property
    def max_message_bytes(self) -> int:
        return self.max_message_mb * 1024 * 1024

    # Flat read-only views of single values, for callers that need just one of them.
    @property
    def store_url(self) -> str:
        return self.store.url

    @property
    def policy_engine(self) -> PolicyEngineName:
        return self.policy.engine

    @property
    def policy_bundle(self) -> Path:
        return self.policy.bundle

    @property
    def opa_url(self) -> str:
        return self.policy.opa_url

    @property
    def policy_timeout_ms(self) -> int:
        return self.policy.timeout_ms

    @property
    def metrics_port(self) -> int:
        return self.observability.metrics_port

    @property
    def log_level(self) -> str:
        return self.observability.log_level

    @property
    def log_format(self) -> LogFormat:
        return self.observability.log_format

    @classmethod
    def from_file(cls, path: Path, *, environ: Mapping[str, str] | None = None) -> GatewaySettings:
        """Settings from ``path`` with environment overrides (``os.environ`` unless given)."""
        path = Path(path)
        reader = _Reader(path, _load_toml(path), os.environ if environ is None else environ)
        return reader.gateway_settings()


@dataclass(frozen=True)
class ClientProfile:
    """How an analyst's or auditor's command line reaches the gateway, and as whom."""

    address: str
    server_name: str | None
    ca: Path
    cert: Path
    key: Path

    @classmethod
    def from_file(cls, path: Path) -> ClientProfile:
        path = Path(path)
        doc = _load_toml(path)
        base = path.parent
        known = {"address", "server_name", "ca", "cert", "key"}
        for key in doc:
            if key not in known:
                raise ConfigError(f"{path}: {key}: unknown key (expected one of {', '.join(sorted(known))})")

        def text(key: str, *, required: bool = True) -> str | None:
            if key not in doc:
                if required:
                    raise ConfigError(f"{path}: {key}: missing")
                return None
            value = doc[key]
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{path}: {key}: must be a non-empty string")
            return value

        def file(key: str) -> Path:
            resolved = _resolve(base, cast(str, text(key)))
            if not resolved.is_file():
                raise ConfigError(f"{path}: {key}: file not found")
            return resolved

        address = cast(str, text("address"))
        try:
            parse_listen(address)
        except ValueError as exc:
            raise ConfigError(f"{path}: address: {exc}") from exc
        server_name = text("server_name", required=False)
        if server_name is not None and not _is_host_name(server_name):
            raise ConfigError(f"{path}: server_name: not a valid host name")
        return cls(address, server_name, file("ca"), file("cert"), file("key"))


@dataclass(frozen=True)
class GatewayKeys:
    """The key material the gateway runs with, loaded once from the files the settings name."""

    hpke_private: X25519PrivateKey
    rest_key: bytes
    audit_signing: Ed25519PrivateKey
    agency_keys: Mapping[str, Mapping[str, Ed25519PublicKey]]  # agency -> key id -> key

    def __repr__(self) -> str:
        # A repr in a log line must not become a key leak.
        agencies = {agency: sorted(keys) for agency, keys in self.agency_keys.items()}
        return f"GatewayKeys(agency_keys={agencies!r}, secrets=<redacted>)"


def load_gateway_keys(settings: GatewaySettings) -> GatewayKeys:
    """Load the HPKE, re-keying and audit keys and every enrolled agency signing key."""
    keys = settings.keys
    hpke = _load_x25519_private(keys.hpke_private, "keys.hpke_private")
    audit = _load_ed25519_private(keys.audit_signing, "keys.audit_signing")
    rest_key = _load_rest_key(keys.rest_key)
    agency_keys: dict[str, Mapping[str, Ed25519PublicKey]] = {}
    for agency, agency_settings in settings.agencies.items():
        loaded: dict[str, Ed25519PublicKey] = {}
        for key_id, key_path in agency_settings.signing_keys.items():
            label = f"agencies.{agency}.signing_keys.{key_id}"
            loaded[key_id] = _load_public_key(key_path, label)
        agency_keys[agency] = MappingProxyType(loaded)
    return GatewayKeys(hpke, rest_key, audit, MappingProxyType(agency_keys))


def read_private_file(path: Path, label: str) -> bytes:
    """A private file's bytes, refused when its group or others have any access to it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError as exc:
        raise ConfigError(f"{label}: {path}: file not found") from exc
    except OSError as exc:
        raise ConfigError(f"{label}: {path}: cannot be read ({exc.strerror})") from exc
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{label}: {path}: not a regular file")
        if mode & 0o077:
            raise ConfigError(
                f"{label}: {path}: private key file is accessible to group or others "
                f"(mode {stat.S_IMODE(mode):04o}); restrict it to 0600"
            )
        try:
            return handle.read()
        except OSError as exc:
            raise ConfigError(f"{label}: {path}: cannot be read ({exc.strerror})") from exc


def read_public_file(path: Path, label: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"{label}: {path}: file not found") from exc
    except OSError as exc:
        raise ConfigError(f"{label}: {path}: cannot be read ({exc.strerror})") from exc


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` (IPv6 hosts in brackets) as (host, port); ValueError in plain words."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ValueError("must be host:port")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError as exc:
            raise ValueError("bracketed host is not an IPv6 address") from exc
        host = host[1:-1]
    elif not _is_host_name(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError as exc:
            raise ValueError("host is neither a host name nor an IPv4 address") from exc
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError("port must be a number from 0 to 65535")
    return host, int(port_text)


def valid_trust_domain(value: str) -> bool:
    return _NAME.fullmatch(value) is not None


def _is_host_name(value: str) -> bool:
    labels = value.split(".")
    return len(value) <= 253 and all(
        re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", label) for label in labels
    )


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from exc
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc


def _resolve(base: Path, value: str) -> Path:
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else base / candidate


class _Reader:
    """Reads one gateway.toml document, consulting the environment for scalar keys."""

    def __init__(self, source: Path, doc: dict[str, Any], environ: Mapping[str, str]) -> None:
        self.source = source
        self.base = source.absolute().parent
        self.doc = doc
        self.environ = environ

    def fail(self, where: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {where}: {problem}")

    def gateway_settings(self) -> GatewaySettings:
        allowed = {*_SECTIONS, "agencies"}
        for name, value in self.doc.items():
            if name not in allowed:
                raise self.fail(name, f"unknown section (expected one of {', '.join(sorted(allowed))})")
            if not isinstance(value, dict):
                raise self.fail(name, "must be a table")
        self.check_environment()

        listen = self.value("gateway", "listen", str, "127.0.0.1:50051")
        try:
            parse_listen(listen)
        except ValueError as exc:
            raise self.fail(self.where("gateway", "listen"), str(exc)) from exc
        trust_domain = self.value("gateway", "trust_domain", str, "datashare.local")
        if not valid_trust_domain(trust_domain):
            raise self.fail(self.where("gateway", "trust_domain"), "not a valid trust domain name")
        max_message_mb = self.integer("gateway", "max_message_mb", 64, 1, 1024)
        health_listen = self.health_listen()

        tls = TlsSettings(
            ca=self.file("tls", "ca"), cert=self.file("tls", "cert"), key=self.file("tls", "key")
        )
        keys = KeySettings(
            hpke_private=self.file("keys", "hpke_private"),
            rest_key=self.file("keys", "rest_key"),
            audit_signing=self.file("keys", "audit_signing"),
        )
        store = StoreSettings(
            url=self.store_url(), indexes=self.store_indexes(), connection=self.store_connection()
        )
        policy = self.policy()
        observability = ObservabilitySettings(
            metrics_port=self.integer("observability", "metrics_port", 0, 0, 65535),
            log_level=self.choice("observability", "log_level", LOG_LEVELS, "info"),
            log_format=cast(
                LogFormat, self.choice("observability", "log_format", ("json", "console"), "json")
            ),
            metrics_address=self.metrics_address(),
            health_interval_ms=self.integer("observability", "health_interval_ms", 2000, 50, 600_000),
        )
        return GatewaySettings(
            source=self.source.absolute(),
            listen=listen,
            trust_domain=trust_domain,
            max_message_mb=max_message_mb,
            tls=tls,
            keys=keys,
            store=store,
            policy=policy,
            agencies=self.agencies(),
            observability=observability,
            audit=AuditSettings(
                checkpoint_every=self.integer("audit", "checkpoint_every", 1000, 0, 10_000_000),
                checkpoint_seconds=self.integer("audit", "checkpoint_seconds", 300, 0, 31_536_000),
            ),
            health_listen=health_listen,
        )

    def check_environment(self) -> None:
        # A typo in an override would otherwise be ignored silently; variables whose second part
        # is not one of our sections belong to someone else (DATASHARE_GATEWAY_CONFIG, say).
        for name in sorted(self.environ):
            if not name.startswith(ENV_PREFIX):
                continue
            section, _, key = name[len(ENV_PREFIX) :].lower().partition("_")
            if section in _SECTIONS and key not in _SECTIONS[section]:
                raise ConfigError(
                    f"{name}: names no setting ({section} has: {', '.join(sorted(_SECTIONS[section]))})"
                )

    def table(self, section: str) -> dict[str, Any]:
        table = cast(dict[str, Any], self.doc.get(section, {}))
        for key in table:
            if key not in _SECTIONS[section]:
                raise self.fail(f"{section}.{key}", "unknown key")
        return table

    def env_name(self, section: str, key: str) -> str:
        return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"

    def where(self, section: str, key: str) -> str:
        env = self.env_name(section, key)
        return f"{section}.{key} (from {env})" if env in self.environ else f"{section}.{key}"

    def raw(self, section: str, key: str, default: object) -> tuple[object, bool]:
        """The key's value and whether it came from the environment (then always a string)."""
        env = self.env_name(section, key)
        if env in self.environ:
            return self.environ[env], True
        table = self.table(section)
        if key in table:
            return table[key], False
        if default is _MISSING:
            raise self.fail(f"{section}.{key}", "missing")
        return default, False

    def value(self, section: str, key: str, kind: type[_T], default: object = _MISSING) -> _T:
        value, _ = self.raw(section, key, default)
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            raise self.fail(self.where(section, key), f"must be a {_KIND_NAMES.get(kind, kind.__name__)}")
        if isinstance(value, str) and not value.strip():
            raise self.fail(self.where(section, key), "must not be empty")
        return value

    def integer(self, section: str, key: str, default: int, low: int, high: int) -> int:
        value, from_env = self.raw(section, key, default)
        if from_env:
            text = cast(str, value).strip()
            if not re.fullmatch(r"-?[0-9]+", text):
                raise self.fail(self.where(section, key), "must be an integer")
            value = int(text)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(self.where(section, key), "must be an integer")
        if not low <= value <= high:
            raise self.fail(self.where(section, key), f"must be from {low} to {high}")
        return value

    def choice(self, section: str, key: str, options: tuple[str, ...], default: str) -> str:
        value = self.value(section, key, str, default)
        if value not in options:
            raise self.fail(self.where(section, key), f"must be one of {', '.join(options)}")
        return value

    def path(self, section: str, key: str, default: object = _MISSING) -> Path:
        value, from_env = self.raw(section, key, default)
        if isinstance(value, Path):
            return value
        if not isinstance(value, str) or not value.strip():
            raise self.fail(self.where(section, key), "must be a non-empty path string")
        return _resolve(Path.cwd() if from_env else self.base, value)

    def file(self, section: str, key: str) -> Path:
        resolved = self.path(section, key)
        if not resolved.is_file():
            raise self.fail(self.where(section, key), "file not found")
        return resolved

    def health_listen(self) -> str | None:
        value, _ = self.raw("gateway", "health_listen", None)
        if value is None:
            return None
        listen = self.value("gateway", "health_listen", str)
        try:
            parse_listen(listen)
        except ValueError as exc:
            raise self.fail(self.where("gateway", "health_listen"), str(exc)) from exc
        return listen

    def store_url(self) -> str:
        url = self.value("store", "url", str)
        scheme, sep, rest = url.partition("://")
        if not sep or not re.fullmatch(r"(sqlite|postgresql)(\+[a-z0-9_]+)?", scheme):
            raise self.fail(self.where("store", "url"), "must be a sqlite:/// or postgresql:// URL")
        if scheme.startswith("sqlite") and rest.startswith("/"):
            # sqlite:///relative.db would otherwise depend on whichever directory we started in.
            database, query_sep, query = rest[1:].partition("?")
            if database and database != ":memory:" and not Path(database).is_absolute():
                _, from_env = self.raw("store", "url", _MISSING)
                absolute = _resolve(Path.cwd() if from_env else self.base, database)
                url = f"{scheme}:///{absolute}{query_sep}{query}"
        return url

    def store_connection(self) -> ConnectionSettings:
        """[store] pool, timeouts and migrate mode; bounds keep a typo (ms for s) from passing."""
        d = ConnectionSettings()
        migrate, _ = self.raw("store", "migrate", None)  # unset: the backend's default
        if migrate is not None and migrate not in ("auto", "check"):
            raise self.fail(self.where("store", "migrate"), "must be one of auto, check")
        return ConnectionSettings(
            pool_size=self.integer("store", "pool_size", d.pool_size, 1, 1000),
            max_overflow=self.integer("store", "max_overflow", d.max_overflow, 0, 1000),
            pool_timeout_s=self.integer("store", "pool_timeout_s", int(d.pool_timeout_s), 1, 3600),
            pool_recycle_s=self.integer("store", "pool_recycle_s", d.pool_recycle_s, 60, 86_400),
            connect_timeout_s=self.integer("store", "connect_timeout_s", d.connect_timeout_s, 1, 600),
            statement_timeout_ms=self.integer(
                "store", "statement_timeout_ms", d.statement_timeout_ms, 100, 86_400_000
            ),
            lock_timeout_ms=self.integer("store", "lock_timeout_ms", d.lock_timeout_ms, 100, 3_600_000),
            idle_in_transaction_timeout_ms=self.integer(
                "store", "idle_in_transaction_timeout_ms", d.idle_in_transaction_timeout_ms, 1000, 86_400_000
            ),
            migrate="auto" if migrate == "auto" else "check" if migrate == "check" else None,
        )

    def metrics_address(self) -> str:
        address = self.value("observability", "metrics_address", str, "127.0.0.1")
        try:
            ipaddress.ip_address(address)
        except ValueError as exc:
            raise self.fail(self.where("observability", "metrics_address"), "must be an IP address") from exc
        return address

    def store_indexes(self) -> str:
        from gateway.store._schema import DEFAULT_INDEX_PROFILE, INDEX_PROFILES

        return self.choice("store", "indexes", INDEX_PROFILES, DEFAULT_INDEX_PROFILE)

    def policy(self) -> PolicySettings:
        from gateway.policy._locate import shipped_bundle_dir

        engine = cast(PolicyEngineName, self.choice("policy", "engine", ("embedded", "opa"), "embedded"))
        bundle = self.path("policy", "bundle", shipped_bundle_dir())
        if not bundle.is_dir():
            raise self.fail(self.where("policy", "bundle"), "directory not found")
        opa_url = self.value("policy", "opa_url", str, "http://127.0.0.1:8181")
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", opa_url):
            raise self.fail(self.where("policy", "opa_url"), "must be an http:// or https:// URL")
        timeout_ms = self.integer("policy", "timeout_ms", 500, 1, 60_000)
        reload_interval_s = self.integer("policy", "reload_interval_s", 5, 0, 86_400)
        return PolicySettings(engine, bundle, opa_url, timeout_ms, reload_interval_s)

    def agencies(self) -> Mapping[str, AgencySettings]:
        agencies: dict[str, AgencySettings] = {}
        for agency, table in cast(dict[str, Any], self.doc.get("agencies", {})).items():
            where = f"agencies.{agency}"
            if not _NAME.fullmatch(agency):
                raise self.fail(where, "not a valid agency name")
            if not isinstance(table, dict):
                raise self.fail(where, "must be a table")
            for key in table:
                if key != "signing_keys":
                    raise self.fail(f"{where}.{key}", "unknown key")
            signing = table.get("signing_keys")
            if not isinstance(signing, dict) or not signing:
                raise self.fail(f"{where}.signing_keys", "must be a table of key id = public key file")
            keys: dict[str, Path] = {}
            for key_id, value in signing.items():
                key_where = f"{where}.signing_keys.{key_id}"
                if not _NAME.fullmatch(key_id):
                    raise self.fail(key_where, "not a valid key id")
                if not isinstance(value, str) or not value.strip():
                    raise self.fail(key_where, "must be a non-empty path string")
                resolved = _resolve(self.base, value)
                if not resolved.is_file():
                    raise self.fail(key_where, "file not found")
                keys[key_id] = resolved
            agencies[agency] = AgencySettings(MappingProxyType(keys))
        return MappingProxyType(agencies)


_KIND_NAMES: Final[Mapping[type, str]] = MappingProxyType({str: "string", int: "integer", bool: "boolean"})
# A password-protected key raises TypeError; an unknown algorithm, UnsupportedAlgorithm.
_KEY_PARSE_ERRORS: Final = (ValueError, TypeError, UnsupportedAlgorithm)


def _load_x25519_private(path: Path, label: str) -> X25519PrivateKey:
    key = _load_private_key(path, label, "an X25519 private key")
    if not isinstance(key, X25519PrivateKey):
        raise ConfigError(f"{label}: {path}: not an X25519 private key")
    return key


def _load_ed25519_private(path: Path, label: str) -> Ed25519PrivateKey:
    key = _load_private_key(path, label, "an Ed25519 private key")
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{label}: {path}: not an Ed25519 private key")
    return key


def _load_private_key(path: Path, label: str, description: str) -> PrivateKeyTypes:
    data = read_private_file(path, label)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except _KEY_PARSE_ERRORS as exc:
        # cryptography's message is not repeated: nothing read from a key file reaches a log.
        raise ConfigError(f"{label}: {path}: not {description} in PEM form") from exc


def _load_public_key(path: Path, label: str) -> Ed25519PublicKey:
    data = read_public_file(path, label)
    try:
        key = serialization.load_pem_public_key(data)
    except _KEY_PARSE_ERRORS as exc:
        raise ConfigError(f"{label}: {path}: not an Ed25519 public key in PEM form") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{label}: {path}: not an Ed25519 public key")
    return key


def _load_rest_key(path: Path) -> bytes:
    label = "keys.rest_key"
    data = read_private_file(path, label)
    try:
        key = bytes.fromhex(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{label}: {path}: must hold {REST_KEY_BYTES} bytes as hex text") from exc
    if len(key) != REST_KEY_BYTES:
        raise ConfigError(f"{label}: {path}: must hold {REST_KEY_BYTES} bytes as hex text")
    return key
