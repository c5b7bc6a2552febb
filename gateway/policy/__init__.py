"""Policy: the Rego bundle, the engines that evaluate it, and the tools that test and check it."""

from gateway.policy._bundle import Bundle, load_bundle, load_checked_bundle, validate_bundle
from gateway.policy._embedded import GATEWAY_RULES, EmbeddedEngine, make_engine
from gateway.policy._engine import (
    AUDIT_RULE,
    INGEST_RULE,
    LISTING_RULE,
    LOG_MASK_RULE,
    QUERY_RULE,
    PolicyDecision,
    PolicyEngine,
)
from gateway.policy._locate import shipped_bundle_dir
from gateway.policy._opa import UNAVAILABLE_REASON, OpaServerEngine
from gateway.policy._tools import agreement_problems, check_bundle, run_policy_tests

__all__ = [
    "AUDIT_RULE",
    "GATEWAY_RULES",
    "INGEST_RULE",
    "LISTING_RULE",
    "LOG_MASK_RULE",
    "QUERY_RULE",
    "UNAVAILABLE_REASON",
    "Bundle",
    "EmbeddedEngine",
    "OpaServerEngine",
    "PolicyDecision",
    "PolicyEngine",
    "agreement_problems",
    "check_bundle",
    "load_bundle",
    "load_checked_bundle",
    "make_engine",
    "run_policy_tests",
    "shipped_bundle_dir",
    "validate_bundle",
]
