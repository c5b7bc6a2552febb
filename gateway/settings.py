"""The gateway's settings (gateway.toml plus environment overrides), its keys, client profiles."""

from gateway._settings import (
    ENV_PREFIX,
    AgencySettings,
    ClientProfile,
    GatewayKeys,
    GatewaySettings,
    KeySettings,
    ObservabilitySettings,
    PolicySettings,
    StoreSettings,
    TlsSettings,
    load_gateway_keys,
)

__all__ = [
    "ENV_PREFIX",
    "AgencySettings",
    "ClientProfile",
    "GatewayKeys",
    "GatewaySettings",
    "KeySettings",
    "ObservabilitySettings",
    "PolicySettings",
    "StoreSettings",
    "TlsSettings",
    "load_gateway_keys",
]
