"""The central gateway of the inter-agency data-sharing consortium.

Public modules re-export from private ones: `gateway.errors`, `gateway.catalogue`,
`gateway.identity`, `gateway.pki`, `gateway.policy`, `gateway.store`, `gateway.disclosure`,
`gateway.audit`, `gateway.server`. Generated protobuf code lives in `gateway._pb`.
"""

__version__ = "0.1.0"
