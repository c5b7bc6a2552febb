"""Mutual TLS credentials for the gateway and its command-line clients (DESIGN §4).

The server requires a client certificate chaining to the consortium CA; who the caller is comes
later, from that verified certificate (gateway.identity). Certificates are checked at start-up so
an expired one is a clear configuration error rather than a wall of failed handshakes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509

from gateway._settings import ClientProfile, GatewaySettings, read_private_file, read_public_file
from gateway.errors import ConfigError


def check_certificate(path: Path, *, now: datetime | None = None) -> None:
    """Every certificate in ``path`` is readable and valid now; ConfigError naming the file if not."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: certificate file not found") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: certificate file cannot be read ({exc.strerror})") from exc
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ConfigError(f"{path}: not a PEM X.509 certificate") from exc
    moment = now or datetime.now(UTC)
    for cert in certs:
        if moment < cert.not_valid_before_utc:
            raise ConfigError(
                f"{path}: certificate is not valid until {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
            )
        if moment > cert.not_valid_after_utc:
            raise ConfigError(f"{path}: certificate expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")


def server_credentials(settings: GatewaySettings) -> grpc.ServerCredentials:
    """TLS credentials that admit only clients with a certificate from the consortium CA."""
    tls = settings.tls
    check_certificate(tls.cert)
    check_certificate(tls.ca)
    key = read_private_file(tls.key, "tls.key")
    cert = read_public_file(tls.cert, "tls.cert")
    ca = read_public_file(tls.ca, "tls.ca")
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def client_channel(profile: ClientProfile, *, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    """A mutual-TLS channel to the gateway as the principal whose certificate the profile names."""
    check_certificate(profile.cert)
    check_certificate(profile.ca)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read_public_file(profile.ca, "client profile ca"),
        private_key=read_private_file(profile.key, "client profile key"),
        certificate_chain=read_public_file(profile.cert, "client profile cert"),
    )
    channel_options = list(options)
    if profile.server_name:
        # The profile dials an address (often 127.0.0.1) but checks the gateway's certificate
        # against the name it was issued for.
        channel_options.append(("grpc.ssl_target_name_override", profile.server_name))
    return grpc.secure_channel(profile.address, credentials, options=channel_options)
