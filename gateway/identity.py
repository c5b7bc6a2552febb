"""Who is calling: the principal, taken only from the verified peer certificate (DESIGN §4).

A principal's certificate carries exactly one URI SAN of the form
``spiffe://<trust-domain>/agency/<agency>/<role>/<name>``. Request fields and metadata are never
consulted. gRPC has already verified the chain against the consortium CA when this runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, cast

from cryptography import x509

from gateway.errors import Unauthenticated

Role = Literal["agent", "analyst", "auditor", "admin"]
ROLES: tuple[Role, ...] = ("agent", "analyst", "auditor", "admin")
_SEGMENT = r"[a-z0-9][a-z0-9._-]{0,62}"
_SPIFFE = re.compile(
    rf"^spiffe://(?P<td>{_SEGMENT})/agency/(?P<agency>{_SEGMENT})/(?P<role>[a-z]+)/(?P<name>{_SEGMENT})$"
)


@dataclass(frozen=True)
class Principal:
    trust_domain: str
    agency: str
    role: Role
    name: str

    @property
    def spiffe_id(self) -> str:
        return f"spiffe://{self.trust_domain}/agency/{self.agency}/{self.role}/{self.name}"

    def as_policy_input(self) -> dict[str, str]:
        return {"agency": self.agency, "role": self.role, "name": self.name, "id": self.spiffe_id}

    @classmethod
    def parse(cls, uri: str, trust_domain: str) -> Principal:
        match = _SPIFFE.match(uri)
        if match is None:
            raise Unauthenticated("client certificate: URI SAN is not a consortium SPIFFE id")
        if match["td"] != trust_domain:
            raise Unauthenticated("client certificate: SPIFFE id is from another trust domain")
        if match["role"] not in ROLES:
            raise Unauthenticated("client certificate: SPIFFE id names an unknown role")
        return cls(trust_domain, match["agency"], cast(Role, match["role"]), match["name"])


def spiffe_uris(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith("spiffe://")]


def principal_from_pem(pem: bytes, trust_domain: str, known_agencies: frozenset[str]) -> Principal:
    """The principal named by a verified peer certificate; Unauthenticated if it names none."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise Unauthenticated("client certificate: not a readable X.509 certificate") from exc
    try:
        uris = spiffe_uris(cert)
    except ValueError as exc:  # a malformed extension: the caller is refused, and audited, like any other
        raise Unauthenticated("client certificate: its extensions cannot be read") from exc
    if len(uris) != 1:
        raise Unauthenticated("client certificate: must carry exactly one SPIFFE URI SAN")
    principal = Principal.parse(uris[0], trust_domain)
    if principal.agency not in known_agencies:
        raise Unauthenticated("client certificate: agency is not a consortium member")
    return principal
