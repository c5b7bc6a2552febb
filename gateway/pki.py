"""The development PKI and the mutual-TLS credentials built from it (DESIGN §4)."""

from gateway._pki import DEV_AGENTS, DEV_CLIENTS, PkiLayout, init_dev_pki, spiffe_id
from gateway._tls import check_certificate, client_channel, server_credentials

__all__ = [
    "DEV_AGENTS",
    "DEV_CLIENTS",
    "PkiLayout",
    "check_certificate",
    "client_channel",
    "init_dev_pki",
    "server_credentials",
    "spiffe_id",
]
