"""Gateway settings (gateway.toml + environment), the keys they point at, and client profiles."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from gateway.errors import ConfigError
from gateway.pki import DEV_AGENTS, PkiLayout, init_dev_pki
from gateway.settings import ClientProfile, GatewaySettings, load_gateway_keys


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiLayout:
    return init_dev_pki(tmp_path_factory.mktemp("pki") / "dev")


@pytest.fixture
def config_text(pki: PkiLayout) -> str:
    return pki.gateway_config.read_text()


def _write(tmp_path: Path, text: str, name: str = "gateway.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, old  # the edit must land, or the test checks nothing
    return text.replace(old, new, 1)


def _load(pki: PkiLayout, **environ: str) -> GatewaySettings:
    return GatewaySettings.from_file(pki.gateway_config, environ=environ)


# --- round trip ---------------------------------------------------------------------------------


def test_generated_config_round_trips_to_the_layout(pki: PkiLayout) -> None:
    """Every path in the generated gateway.toml comes back as the layout's absolute path."""
    settings = _load(pki)
    assert settings.source == pki.gateway_config
    assert (settings.tls.ca, settings.tls.cert, settings.tls.key) == (
        pki.ca_cert,
        pki.server_cert,
        pki.server_key,
    )
    assert (settings.keys.hpke_private, settings.keys.rest_key, settings.keys.audit_signing) == (
        pki.hpke_key,
        pki.rest_key,
        pki.audit_signing_key,
    )
    assert {agency: dict(a.signing_keys) for agency, a in settings.agencies.items()} == {
        agency: {pki.signing_key_id(agency): pki.signing_pub(agency)} for agency in DEV_AGENTS
    }
    assert (settings.trust_domain, settings.max_message_mb, settings.max_message_bytes) == (
        "datashare.local",
        64,
        64 * 1024 * 1024,
    )
    assert (settings.policy.engine, settings.policy.timeout_ms) == ("embedded", 500)
    assert (settings.observability.metrics_port, settings.observability.log_format) == (0, "json")


def test_flat_views_follow_their_sections(pki: PkiLayout) -> None:
    """The flat shortcuts (store_url, policy_bundle, ...) report the same values as the sections."""
    settings = _load(pki, DATASHARE_GATEWAY_OBSERVABILITY_METRICS_PORT="9100")
    assert settings.store_url == settings.store.url == f"sqlite:///{pki.database}"
    assert (settings.policy_engine, settings.policy_bundle, settings.opa_url, settings.policy_timeout_ms) == (
        settings.policy.engine,
        settings.policy.bundle,
        settings.policy.opa_url,
        settings.policy.timeout_ms,
    )
    assert (settings.metrics_port, settings.log_level, settings.log_format) == (9100, "info", "json")


def test_settings_are_frozen(pki: PkiLayout) -> None:
    """Settings cannot be changed once built."""
    settings = _load(pki)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.listen = "0.0.0.0:1"  # type: ignore[misc]


def test_relative_paths_resolve_against_the_config_directory(
    pki: PkiLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative key path means relative to gateway.toml, whatever the working directory."""
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    relative = os.path.relpath(pki.server_cert, conf_dir)
    path = _write(conf_dir, _replace(pki.gateway_config.read_text(), f'"{pki.server_cert}"', f'"{relative}"'))
    monkeypatch.chdir(tmp_path)
    assert GatewaySettings.from_file(path, environ={}).tls.cert.resolve() == pki.server_cert.resolve()


def test_relative_sqlite_url_resolves_against_the_config_directory(config_text: str, tmp_path: Path) -> None:
    """sqlite:///gateway.db in the file means the database beside the file, not in the working directory."""
    url_line = next(line for line in config_text.splitlines() if line.startswith("url = "))
    path = _write(tmp_path, _replace(config_text, url_line, 'url = "sqlite:///data/gateway.db?timeout=5"'))
    settings = GatewaySettings.from_file(path, environ={})
    assert settings.store.url == f"sqlite:///{tmp_path}/data/gateway.db?timeout=5"


# --- environment overrides ----------------------------------------------------------------------


def test_environment_overrides_scalar_keys(pki: PkiLayout) -> None:
    """DATASHARE_GATEWAY_<SECTION>_<KEY> replaces the file's value, converted to the key's type."""
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    settings = _load(
        pki,
        DATASHARE_GATEWAY_STORE_URL=url,
        DATASHARE_GATEWAY_GATEWAY_LISTEN="0.0.0.0:7000",
        DATASHARE_GATEWAY_POLICY_TIMEOUT_MS="250",
        DATASHARE_GATEWAY_OBSERVABILITY_LOG_FORMAT="console",
    )
    assert settings.store.url == url
    assert settings.listen == "0.0.0.0:7000"
    assert settings.policy.timeout_ms == 250
    assert settings.observability.log_format == "console"


def test_environment_override_with_a_bad_value_names_the_variable(pki: PkiLayout) -> None:
    """A non-integer override is refused, naming the key and the variable it came from."""
    with pytest.raises(ConfigError, match=r"policy\.timeout_ms \(from DATASHARE_GATEWAY_POLICY_TIMEOUT_MS\)"):
        _load(pki, DATASHARE_GATEWAY_POLICY_TIMEOUT_MS="soon")


def test_environment_override_naming_no_setting_is_refused(pki: PkiLayout) -> None:
    """A misspelt override in a known section is an error, not silently ignored."""
    with pytest.raises(ConfigError, match=r"DATASHARE_GATEWAY_STORE_URI: names no setting"):
        _load(pki, DATASHARE_GATEWAY_STORE_URI="sqlite:///x.db")


def test_environment_variables_of_other_sections_are_left_alone(pki: PkiLayout) -> None:
    """A prefixed variable that is not a settings section (e.g. the config path) is not an error."""
    assert _load(pki, DATASHARE_GATEWAY_CONFIG="/etc/gateway.toml").listen == "127.0.0.1:50051"


def test_environment_path_override_must_exist(pki: PkiLayout, tmp_path: Path) -> None:
    """An overriding path to a missing file is refused, naming the key and the variable."""
    with pytest.raises(ConfigError, match=r"tls\.cert \(from DATASHARE_GATEWAY_TLS_CERT\): file not found"):
        _load(pki, DATASHARE_GATEWAY_TLS_CERT=str(tmp_path / "none.pem"))


# --- errors name the file and the key ------------------------------------------------------------


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    """A config path that does not exist is a ConfigError naming it."""
    path = tmp_path / "gateway.toml"
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: file not found$"):
        GatewaySettings.from_file(path, environ={})


def test_invalid_toml_is_named(tmp_path: Path) -> None:
    """A file that is not TOML is a ConfigError naming the file."""
    path = _write(tmp_path, "[gateway\nlisten = ")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: not valid TOML"):
        GatewaySettings.from_file(path, environ={})


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("[tls]\n", "[tls]\ncertificate = 'x'\n", r"tls\.certificate: unknown key"),
        ("[store]\n", "[stores]\nx = 1\n[store]\n", r"stores: unknown section"),
        ("max_message_mb = 64", 'max_message_mb = "64"', r"gateway\.max_message_mb: must be an integer"),
        ("max_message_mb = 64", "max_message_mb = 0", r"gateway\.max_message_mb: must be from 1 to 1024"),
        ("timeout_ms = 500", "timeout_ms = true", r"policy\.timeout_ms: must be an integer"),
        ('engine = "embedded"', 'engine = "magic"', r"policy\.engine: must be one of embedded, opa"),
        ('log_level = "info"', "log_level = 3", r"observability\.log_level: must be a string"),
        ('listen = "127.0.0.1:50051"', 'listen = "127.0.0.1"', r"gateway\.listen: must be host:port"),
        ('trust_domain = "datashare.local"', 'trust_domain = "A B"', r"gateway\.trust_domain: not a valid"),
        ('opa_url = "http://127.0.0.1:8181"', 'opa_url = "ftp://x"', r"policy\.opa_url: must be an http"),
        ("[store]\n", "[store]\nurl2 = 1\n", r"store\.url2: unknown key"),
    ],
)
def test_bad_values_name_the_file_and_key(
    config_text: str, tmp_path: Path, old: str, new: str, message: str
) -> None:
    """Unknown keys and sections, wrong types and out-of-domain values name the file and the key."""
    path = _write(tmp_path, _replace(config_text, old, new))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: {message}"):
        GatewaySettings.from_file(path, environ={})


def test_missing_file_named_by_a_key_is_reported(pki: PkiLayout, config_text: str, tmp_path: Path) -> None:
    """A key file that does not exist is reported as '<file>: tls.cert: file not found'."""
    path = _write(tmp_path, _replace(config_text, str(pki.server_cert), str(tmp_path / "gone.pem")))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: tls\.cert: file not found$"):
        GatewaySettings.from_file(path, environ={})


def test_missing_required_key_is_named(pki: PkiLayout, config_text: str, tmp_path: Path) -> None:
    """A required key left out is named as missing."""
    path = _write(tmp_path, _replace(config_text, f'key = "{pki.server_key}"\n', ""))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: tls\.key: missing$"):
        GatewaySettings.from_file(path, environ={})


def test_unknown_key_in_an_agency_is_named(config_text: str, tmp_path: Path) -> None:
    """A typo inside an agency table names the agency and the key."""
    text = _replace(config_text, "[agencies.health.signing_keys]", "[agencies.health.signing_key]")
    path = _write(tmp_path, text)
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(str(path))}: agencies\.health\.signing_key: unknown key$"
    ):
        GatewaySettings.from_file(path, environ={})


def test_optional_sections_take_their_defaults(pki: PkiLayout, config_text: str, tmp_path: Path) -> None:
    """Without [policy] and [observability] the embedded engine, shipped bundle and JSON logs are used."""
    text = config_text.split("[policy]", maxsplit=1)[0]
    path = _write(tmp_path, text)
    settings = GatewaySettings.from_file(path, environ={})
    assert settings.policy.engine == "embedded"
    assert settings.policy.bundle.is_dir()
    assert settings.observability.log_format == "json"
    assert dict(settings.agencies) == {}
    assert settings.tls.cert == pki.server_cert


# --- keys ---------------------------------------------------------------------------------------


def test_keys_load_and_match_their_public_halves(pki: PkiLayout) -> None:
    """The loaded keys are the ones init wrote: HPKE pair, K_rest bytes, audit and agency keys."""
    keys = load_gateway_keys(_load(pki))
    hpke_pub = serialization.load_pem_public_key(pki.hpke_pub.read_bytes())
    assert isinstance(hpke_pub, X25519PublicKey)
    assert keys.hpke_private.public_key() == hpke_pub
    assert keys.rest_key == bytes.fromhex(pki.rest_key.read_text())
    audit_pub = serialization.load_pem_public_key(pki.audit_signing_pub.read_bytes())
    assert keys.audit_signing.public_key() == audit_pub
    for agency in DEV_AGENTS:
        enrolled = keys.agency_keys[agency][pki.signing_key_id(agency)]
        assert isinstance(enrolled, Ed25519PublicKey)
        assert enrolled == serialization.load_pem_public_key(pki.signing_pub(agency).read_bytes())


def test_keys_repr_hides_secrets(pki: PkiLayout) -> None:
    """Printing the loaded keys shows no secret material."""
    keys = load_gateway_keys(_load(pki))
    assert keys.rest_key.hex() not in repr(keys)
    assert "redacted" in repr(keys)


def _with_key(pki: PkiLayout, tmp_path: Path, field: str, content: bytes, mode: int) -> GatewaySettings:
    path = tmp_path / f"{field}.key"
    path.write_bytes(content)
    path.chmod(mode)
    settings = _load(pki)
    return dataclasses.replace(settings, keys=dataclasses.replace(settings.keys, **{field: path}))


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_private_key_readable_by_others_is_refused(pki: PkiLayout, tmp_path: Path, mode: int) -> None:
    """A private key file with group or world permissions is refused, naming the key and file."""
    settings = _with_key(pki, tmp_path, "hpke_private", pki.hpke_key.read_bytes(), mode)
    with pytest.raises(
        ConfigError,
        match=rf"^keys\.hpke_private: {re.escape(str(settings.keys.hpke_private))}: .*group or others",
    ):
        load_gateway_keys(settings)


def test_world_readable_rest_key_is_refused(pki: PkiLayout, tmp_path: Path) -> None:
    """K_rest left world-readable is refused too."""
    settings = _with_key(pki, tmp_path, "rest_key", pki.rest_key.read_bytes(), 0o644)
    with pytest.raises(ConfigError, match=r"^keys\.rest_key: .*group or others"):
        load_gateway_keys(settings)


def test_key_of_the_wrong_type_is_refused_without_echoing_it(pki: PkiLayout, tmp_path: Path) -> None:
    """An Ed25519 key where the HPKE X25519 key belongs is refused, and the message holds no key."""
    content = pki.audit_signing_key.read_bytes()
    settings = _with_key(pki, tmp_path, "hpke_private", content, 0o600)
    with pytest.raises(ConfigError, match=r"^keys\.hpke_private: .*not an X25519 private key") as caught:
        load_gateway_keys(settings)
    assert "PRIVATE KEY" not in caught.value.message


@pytest.mark.parametrize("content", [b"not a key", b"ab" * 16, b"zz" * 32])
def test_malformed_rest_key_is_refused(pki: PkiLayout, tmp_path: Path, content: bytes) -> None:
    """K_rest must be exactly 32 bytes of hex; anything else is refused without echoing it."""
    settings = _with_key(pki, tmp_path, "rest_key", content, 0o600)
    with pytest.raises(ConfigError, match=r"^keys\.rest_key: .*32 bytes as hex") as caught:
        load_gateway_keys(settings)
    assert content.decode() not in caught.value.message


def test_garbage_audit_key_is_refused(pki: PkiLayout, tmp_path: Path) -> None:
    """A file that is not a PEM key is refused, naming the setting."""
    # a PEM frame around garbage; the marker is split so the repository's key scan does not flag it
    garbage = b"-----BEGIN " + b"PRIVATE KEY-----\nxx\n"
    settings = _with_key(pki, tmp_path, "audit_signing", garbage, 0o600)
    with pytest.raises(ConfigError, match=r"^keys\.audit_signing: .*not an Ed25519 private key in PEM form"):
        load_gateway_keys(settings)


def test_agency_key_of_the_wrong_type_is_refused(pki: PkiLayout, config_text: str, tmp_path: Path) -> None:
    """An agency enrolled with a non-Ed25519 public key is refused, naming agency and key id."""
    text = _replace(config_text, str(pki.signing_pub("health")), str(pki.hpke_pub))
    settings = GatewaySettings.from_file(_write(tmp_path, text), environ={})
    with pytest.raises(
        ConfigError, match=r"^agencies\.health\.signing_keys\.health-1: .*not an Ed25519 public key"
    ):
        load_gateway_keys(settings)


# --- client profiles ----------------------------------------------------------------------------


def test_client_profile_loads(pki: PkiLayout) -> None:
    """A generated client profile gives the address, server name and its principal's files."""
    profile = ClientProfile.from_file(pki.client_profile("police-analyst"))
    assert profile.address == "127.0.0.1:50051"
    assert profile.server_name == "gateway.datashare.local"
    assert profile.cert == pki.client_cert("police-analyst")


def test_client_profile_resolves_relative_paths(pki: PkiLayout, tmp_path: Path) -> None:
    """Relative paths in a profile are relative to the profile's directory."""
    text = (
        'address = "localhost:50051"\n'
        f'ca = "{os.path.relpath(pki.ca_cert, tmp_path)}"\n'
        f'cert = "{os.path.relpath(pki.client_cert("auditor"), tmp_path)}"\n'
        f'key = "{os.path.relpath(pki.client_key("auditor"), tmp_path)}"\n'
    )
    profile = ClientProfile.from_file(_write(tmp_path, text, "auditor.toml"))
    assert profile.server_name is None
    assert profile.key.resolve() == pki.client_key("auditor").resolve()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("server_name", "servername", r"servername: unknown key"),
        ('address = "127.0.0.1:50051"', 'address = "nowhere"', r"address: must be host:port"),
        ('address = "127.0.0.1:50051"\n', "", r"address: missing"),
        ("auditor.pem", "missing.pem", r"cert: file not found"),
    ],
)
def test_bad_client_profile_names_the_file_and_key(
    pki: PkiLayout, tmp_path: Path, old: str, new: str, message: str
) -> None:
    """Profile errors name the profile file and the key at fault."""
    text = _replace(pki.client_profile("auditor").read_text(), old, new)
    path = _write(tmp_path, text, "auditor.toml")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: {message}"):
        ClientProfile.from_file(path)


# --- observability ------------------------------------------------------------------------------


def test_metrics_serve_on_loopback_and_health_probes_every_two_seconds_by_default(pki: PkiLayout) -> None:
    """Without the keys, /metrics would bind loopback only and the health prober runs every 2,000 ms."""
    obs = _load(pki).observability
    assert (obs.metrics_address, obs.health_interval_ms) == ("127.0.0.1", 2000)


def test_metrics_address_and_health_interval_come_from_the_environment(pki: PkiLayout) -> None:
    """DATASHARE_GATEWAY_OBSERVABILITY_METRICS_ADDRESS and _HEALTH_INTERVAL_MS override the file."""
    obs = _load(
        pki,
        DATASHARE_GATEWAY_OBSERVABILITY_METRICS_ADDRESS="::1",
        DATASHARE_GATEWAY_OBSERVABILITY_HEALTH_INTERVAL_MS="250",
    ).observability
    assert (obs.metrics_address, obs.health_interval_ms) == ("::1", 250)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("METRICS_ADDRESS", "metrics.example", r"observability\.metrics_address .*: must be an IP address"),
        ("HEALTH_INTERVAL_MS", "10", r"observability\.health_interval_ms .*: must be from 50 to 600000"),
        ("HEALTH_INTERVAL_MS", "soon", r"observability\.health_interval_ms .*: must be an integer"),
    ],
)
def test_bad_observability_values_are_named(pki: PkiLayout, variable: str, value: str, message: str) -> None:
    """A metrics address that is not an IP address, or a probe interval out of range, is refused naming the key."""
    with pytest.raises(ConfigError, match=message):
        _load(pki, **{f"DATASHARE_GATEWAY_OBSERVABILITY_{variable}": value})
