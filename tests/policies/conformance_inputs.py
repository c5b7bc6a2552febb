"""Decision inputs for the conformance suite (issue 4 item 5): every one of them must get the same
decision document from the embedded engine and from real OPA.

Generated from a fixed seed, so a failure names an input that can be replayed. Inputs are built
from the bundle's own data (agencies, catalogue, the template agreement), so they follow the data
when agreements change, and they cover every rule the gateway consults (ingest, query, audit
access, dataset listing) and the kinds of request issue 4 names: valid ones, agreements out of
force or out of status, wrong purposes, dimensions and links, wrong callers, and malformed
documents with junk of every JSON type where names and numbers belong.

Some inputs need agreements the shipped data does not hold (a suspended one, an expired one, ...).
Those run against the "variants" data: the shipped data plus copies of the template agreement,
each edited one way (``variant_data``). The policies are the same in both bundles.
"""

from __future__ import annotations

import copy
import datetime as dt
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from policy_testkit import AGREEMENT, NOW

SEED = 20261122
INGEST = "datashare/ingest/decision"
QUERY = "datashare/query/decision"
AUDIT = "datashare/audit/decision"
LISTING = "datashare/listing/datasets"
POLICIES = {INGEST: "ingest", QUERY: "query", AUDIT: "audit", LISTING: "listing"}

SHIPPED = "shipped"
VARIANTS = "variants"

# The kinds of request issue 4 names; each must be present in the generated set.
CATEGORIES = (
    "valid",
    "expired",
    "not-yet-valid",
    "suspended",
    "revoked",
    "draft",
    "wrong-purpose",
    "forbidden-dimension",
    "forbidden-combination",
    "too-many-group-bys",
    "too-many-cells",
    "link-outside-window",
    "link-unlisted-pair",
    "wrong-agency",
    "wrong-role",
    "unknown-principal",
    "malformed",
    "wrong-types",
    "query-budget",
    "audit-scope",
)

AUDIT_ACTIONS = ("audit.list", "audit.verify", "audit.export")
ROLES = ("analyst", "agent", "auditor", "admin")

# Values of every JSON type, and strings that look like numbers, format verbs or other engines'
# escapes: what a buggy or hostile client might put where a name or a number belongs.
JUNK: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    -1,
    1,
    30,
    1.5,
    30.0,
    -0.0,
    1e300,
    2**62,
    -(2**63),
    "",
    "30",
    "1",
    "null",
    "%v",
    "%d %s %q",
    "'quoted' \"double\"",
    "line\nbreak",
    "ünïcödé ✓",
    "x" * 300,
    [],
    {},
    [None],
    ["district", 1],
    [["district"]],
    {"a": [1, {"b": None}]},
    {"first": "2026-01"},
)

# Numbers whose form the engines have disagreed on: huge floats (regorus's round fails past an
# i64, OPA's does not; sprintf prints 1e+20 on OPA and the digits on regorus), past 2^53 (where
# floats stop being exact), negative zero ("-0" on regorus), whole floats, binary fractions.
NUMBER_FORMS: tuple[Any, ...] = (
    -0.0,
    0.0,
    91.0,
    0.1 + 0.2,
    2.5e-7,
    1e15,
    2**53 - 1,
    float(2**53),
    2**53 + 1,
    1e16,
    1e20,
    2**63 - 1,
    -(2**63),
    1e300,
    -1e300,
)

# Dimension names the catalogue does not have; the reasons that name them are sorted, so they
# include upper case, accents, astral characters and format verbs (sort order is by code point).
UNKNOWN_DIMENSIONS = (
    "nope",
    "postcode",
    "date_of_birth",
    "token",
    "District",
    "district ",
    "Ωmega",
    "e\u0301vent",
    "📊",
    "%v%%",
)


@dataclass(frozen=True)
class Case:
    """One decision to take on both engines: which data, which rule, which input, and why."""

    bundle: str  # SHIPPED or VARIANTS
    path: str  # the rule, as the gateway names it (e.g. datashare/query/decision)
    category: str
    input: Any
    note: str  # what makes this input what it is, for a failure message

    @property
    def policy(self) -> str:
        return POLICIES[self.path]


# --- the variants bundle ---------------------------------------------------------------------


Edit = Callable[[dict[str, Any], dict[str, Any]], None]  # (agreement, the bundle's data)


def _linkage_days(days: int) -> Edit:
    def edit(ag: dict[str, Any], data: dict[str, Any]) -> None:
        ag["linkage"] = [{**entry, "max_days": days} for entry in ag.get("linkage", [])]

    return edit


def _set(**fields: Any) -> Edit:
    def edit(ag: dict[str, Any], data: dict[str, Any]) -> None:
        ag.update(copy.deepcopy(fields))

    return edit


def _without(*keys: str) -> Edit:
    def edit(ag: dict[str, Any], data: dict[str, Any]) -> None:
        for key in keys:
            ag.pop(key, None)

    return edit


# Copies of the template agreement, each edited one way. NOW is 2026-11-22.
def _every_purpose(ag: dict[str, Any], data: dict[str, Any]) -> None:
    """Received by every agency, for every catalogued purpose."""
    ag["receiving_agencies"] = sorted(data["agencies"])
    ag["purposes"] = sorted(data.get("purposes") or ag["purposes"])


VARIANT_EDITS: dict[str, Edit] = {
    "ag-conf-suspended": _set(status="suspended"),
    "ag-conf-revoked": _set(status="revoked"),
    "ag-conf-draft": _set(status="draft"),
    "ag-conf-expired": _set(valid_until="2026-06-30"),
    "ag-conf-future": _set(valid_from="2027-01-01"),
    "ag-conf-today": _set(valid_from=NOW[:10], valid_until=NOW[:10]),
    "ag-conf-narrow": _set(
        dimensions=["district", "year"], filters=["district"], max_group_by=1, k=20, max_cells=30
    ),
    "ag-conf-few-cells": _set(max_cells=12, max_group_by=3),
    "ag-conf-wide": _set(max_group_by=6, max_cells=100000),
    "ag-conf-no-linkage": _set(linkage=[]),
    "ag-conf-short-link": _linkage_days(7),
    "ag-conf-zero-link": _linkage_days(0),
    "ag-conf-bare": _without("title", "k", "round_to", "max_cells", "max_group_by", "linkage", "legal_basis"),
    "ag-conf-police": _set(receiving_agencies=["metro-police"]),
    "ag-conf-everyone": _every_purpose,
    "ag-conf-k-low": _set(k=5),
    "ag-conf-combinations": _set(
        max_group_by=4, forbidden_combinations=[["sex", "age_band", "district"], ["month", "district"]]
    ),
    "ag-conf-odd-combinations": _set(
        max_group_by=3, forbidden_combinations=[["age_band"], "sex", [], [1, None]]
    ),
    "ag-conf-budget": _set(query_budget={"queries": 5, "period": "month"}),
    "ag-conf-odd-budget": _set(query_budget={"period": "month", "queries": "5"}),
    "ag-conf-dominance": _set(dominance={"n": 1, "percent": 60}, zeros="show"),
    # not what the schema lets through: the engines must still pass it on alike
    "ag-conf-odd-dominance": _set(dominance={"n": "2", "percent": 85.5}, zeros=None),
}


_COMBINATION_VARIANTS = ("ag-conf-combinations", "ag-conf-odd-combinations", "ag-conf-wide")


def template_agreement(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The agreement the inputs are built around: the testkit's, else the first active one."""
    agreements = data["agreements"]
    if AGREEMENT in agreements:
        return AGREEMENT, agreements[AGREEMENT]
    active = sorted(i for i, ag in agreements.items() if ag.get("status") == "active")
    return active[0], agreements[active[0]]


def variant_data(data: dict[str, Any]) -> dict[str, Any]:
    """The shipped data plus the edited copies of the template agreement."""
    result = copy.deepcopy(data)
    for agreement_id in VARIANT_EDITS:
        result["agreements"][agreement_id] = variant(data, agreement_id)
    # audit scopes of every kind: each agency not listed sees the next one, or all, or junk
    agencies = sorted(data["agencies"])
    auditors = result.setdefault("auditors", {})
    for i, agency in enumerate(agencies):
        auditors.setdefault(agency, {"sees": ([agencies[(i + 1) % len(agencies)]], "all", 7, [None])[i % 4]})
    return result


# --- the generator ---------------------------------------------------------------------------


class _Generator:
    def __init__(self, data: dict[str, Any], seed: int) -> None:
        self.rng = random.Random(seed)
        self.data = data
        self.agencies = sorted(data["agencies"])
        self.datasets: dict[str, dict[str, Any]] = data["catalogue"]["datasets"]
        self.ag_id, self.ag = template_agreement(data)
        self.cases: list[Case] = []

    # -- helpers

    def pick(self, items: Any) -> Any:
        return self.rng.choice(list(items))

    def sample(self, items: Any, low: int, high: int) -> list[Any]:
        items = list(items)
        return self.rng.sample(items, self.rng.randint(low, min(high, len(items))))

    def add(self, bundle: str, path: str, category: str, doc: Any, note: str) -> None:
        self.cases.append(Case(bundle, path, category, doc, note))

    def principal(self, agency: str, role: str) -> dict[str, str]:
        name = self.pick(("ann", "bob", "cy", "dee"))
        return {
            "agency": agency,
            "role": role,
            "name": name,
            "id": f"spiffe://consortium.test/agency/{agency}/{role}/{name}",
        }

    def receiver(self) -> str:
        return self.pick(self.ag["receiving_agencies"])

    def now(self) -> str:
        """A time at which the template agreement is in force."""
        return self.pick(
            (
                NOW,
                NOW,
                f"{self.ag['valid_from']}T00:00:00Z",
                f"{self.ag['valid_until']}T23:59:59Z",
                "2027-02-28T12:30:00.123456Z",
                "2028-02-29T00:00:00+01:00",
            )
        )

    def ag_dataset(self, ag: dict[str, Any]) -> str:
        return self.pick(ds for ds in ag["datasets"] if ds in self.datasets)

    def allowed_dimensions(self, ag: dict[str, Any], dataset: str) -> list[str]:
        columns = set(self.datasets[dataset].get("dimensions") or {})
        return [d for d in ag["dimensions"] if d in columns or d in ("month", "quarter", "year")]

    def allowed_measures(self, ag: dict[str, Any], dataset: str) -> list[str]:
        measures = set(self.datasets[dataset].get("measures") or {})
        return [m for m in ag["measures"] if m in ("subjects", "records") or m.split(":", 1)[-1] in measures]

    def allowed_filters(self, ag: dict[str, Any], dataset: str) -> list[str]:
        columns = set(self.datasets[dataset].get("dimensions") or {})
        return [f for f in ag["filters"] if f in columns]

    def months(self) -> dict[str, str] | None:
        if self.rng.random() < 0.3:
            return None
        first_year = self.rng.randint(2024, 2027)
        last_year = self.rng.randint(first_year, 2028)
        first, last = self.rng.randint(1, 12), self.rng.randint(1, 12)
        if last_year == first_year:
            first, last = min(first, last), max(first, last)
        return {"first": f"{first_year}-{first:02d}", "last": f"{last_year}-{last:02d}"}

    def link_pairs(self, ag: dict[str, Any]) -> list[tuple[str, str, int]]:
        pairs = []
        for entry in ag.get("linkage") or []:
            a, b = entry["datasets"]
            pairs += [(a, b, entry["max_days"]), (b, a, entry["max_days"])]
        return pairs

    def link(self, ag: dict[str, Any], dataset: str) -> dict[str, Any] | None:
        """A link the agreement allows from dataset, or None when it allows none."""
        options = [(b, days) for a, b, days in self.link_pairs(ag) if a == dataset]
        if not options:
            return None
        other, days = self.pick(options)
        return {
            "dataset": other,
            "days_before": self.rng.randint(0, days),
            "days_after": self.rng.randint(0, days),
            "filters": self.sample(self.allowed_filters(ag, other), 0, 2),
        }

    def group_by(self, ag: dict[str, Any], dataset: str, cap: int) -> list[str]:
        """Allowed dimensions, at most cap of them, completing no forbidden combination."""
        forbidden = [set(c) for c in ag.get("forbidden_combinations", []) if _names(c) and c]
        while True:
            group_by = self.sample(self.allowed_dimensions(ag, dataset), 0, cap)
            if not any(c <= set(group_by) for c in forbidden):
                return group_by

    def query(self, ag_id: str | None = None, ag: dict[str, Any] | None = None) -> dict[str, Any]:
        """A query request the agreement's terms allow."""
        ag_id, ag = ag_id or self.ag_id, ag or self.ag
        dataset = self.ag_dataset(ag)
        group_cap = ag.get("max_group_by", 2)
        measures = self.allowed_measures(ag, dataset)
        return {
            "agreement_id": ag_id,
            "purpose": self.pick(ag["purposes"]),
            "dataset": dataset,
            "measures": self.sample(measures, 1, len(measures)),
            "group_by": self.group_by(ag, dataset, group_cap),
            "filters": self.sample(self.allowed_filters(ag, dataset), 0, 3),
            "months": self.months(),
            "link": self.link(ag, dataset) if self.rng.random() < 0.4 else None,
        }

    def query_input(self, request: dict[str, Any], principal: Any = None, now: str | None = None) -> Any:
        return {
            "principal": principal or self.principal(self.receiver(), "analyst"),
            "action": "query",
            "request": request,
            "now": now or self.now(),
        }

    def ingest_input(self, agency: str, role: str, dataset: str, version: Any, action: str) -> Any:
        return {
            "principal": self.principal(agency, role),
            "action": action,
            "request": {"dataset": dataset, "contract_version": version},
            "now": self.now(),
        }

    def owned(self) -> tuple[str, str, int]:
        dataset = self.pick(sorted(self.datasets))
        spec = self.datasets[dataset]
        return dataset, spec["owner"], spec["version"]

    def audit_input(self, agency: str, role: str, action: str) -> Any:
        request = self.pick(({}, {"agency": agency}, {"outcome": "deny", "agreement": self.ag_id}))
        return {"principal": self.principal(agency, role), "action": action, "request": request, "now": NOW}

    def listing_input(self, agency: str, role: str, now: str | None = None) -> Any:
        return {
            "principal": self.principal(agency, role),
            "action": "list_datasets",
            "request": {},
            "now": now or self.now(),
        }

    # -- categories

    def valid(self, n: int) -> None:
        for _ in range(n):
            self.add(SHIPPED, QUERY, "valid", self.query_input(self.query()), "allowed by the template")
        variants = ("ag-conf-wide", "ag-conf-everyone", "ag-conf-bare", "ag-conf-today")
        for ag_id in (*variants, "ag-conf-dominance", "ag-conf-odd-dominance"):
            for _ in range(n // 8):
                ag = variant(self.data, ag_id)
                request = self.query(ag_id, ag)
                principal = self.principal(self.pick(ag["receiving_agencies"]), "analyst")
                now = NOW if ag_id == "ag-conf-today" else None
                self.add(VARIANTS, QUERY, "valid", self.query_input(request, principal, now), ag_id)
        for _ in range(n // 2):
            dataset, owner, version = self.owned()
            action = self.pick(("ingest", "get_contract"))
            version = self.pick((version, 0)) if action == "get_contract" else version
            self.add(
                SHIPPED, INGEST, "valid", self.ingest_input(owner, "agent", dataset, version, action), action
            )
        for agency in self.agencies:
            for action in AUDIT_ACTIONS:
                self.add(SHIPPED, AUDIT, "valid", self.audit_input(agency, "auditor", action), action)
            self.add(SHIPPED, AUDIT, "valid", self.audit_input(agency, "admin", "audit.verify"), "admin")
            for bundle in (SHIPPED, VARIANTS):
                for _ in range(3):
                    self.add(bundle, LISTING, "valid", self.listing_input(agency, "analyst"), agency)

    def out_of_force(self, n: int) -> None:
        """Expired, not yet valid, and every status other than active: by agreement and by date."""
        after = _day(self.ag["valid_until"], 1)
        before = _day(self.ag["valid_from"], -1)
        dated = {
            "expired": ("ag-conf-expired", [f"{after}T00:00:00Z", f"{after[:4]}-07-15T08:00:00+02:00"]),
            "not-yet-valid": ("ag-conf-future", [f"{before}T23:59:59Z", "2020-01-01T00:00:00Z"]),
        }
        for category, (ag_id, shipped_times) in dated.items():
            for i in range(n):
                if i % 2:
                    request = self.query(ag_id, variant(self.data, ag_id))
                    self.add(VARIANTS, QUERY, category, self.query_input(request, now=NOW), ag_id)
                else:
                    now = self.pick(shipped_times)
                    self.add(SHIPPED, QUERY, category, self.query_input(self.query(), now=now), now)
            for bundle in (SHIPPED, VARIANTS):
                for now in shipped_times:
                    self.add(
                        bundle, LISTING, category, self.listing_input(self.receiver(), "analyst", now), now
                    )
        for status in ("suspended", "revoked", "draft"):
            ag_id = f"ag-conf-{status}"
            for _ in range(n):
                request = self.query(ag_id, variant(self.data, ag_id))
                self.add(VARIANTS, QUERY, status, self.query_input(request), ag_id)
            self.add(VARIANTS, LISTING, status, self.listing_input(self.receiver(), "analyst"), ag_id)

    def wrong_purpose(self, n: int) -> None:
        others = ["research", "marketing", "", " ", "Overdose-Prevention", "overdose prevention"]
        for _ in range(n):
            request = self.query()
            purpose = self.pick([*others, f"{request['purpose']} ", request["purpose"].upper()])
            request["purpose"] = purpose
            self.add(SHIPPED, QUERY, "wrong-purpose", self.query_input(request), repr(purpose))
        # Purposes the consortium has catalogued but the agreement does not list.
        unlisted = sorted(set(self.data.get("purposes") or {}) - set(self.ag["purposes"]))
        for _ in range(n // 4 if unlisted else 0):
            request = self.query()
            request["purpose"] = self.pick(unlisted)
            self.add(SHIPPED, QUERY, "wrong-purpose", self.query_input(request), request["purpose"])

    def forbidden_dimension(self, n: int) -> None:
        for i in range(n):
            bundle, ag_id = (VARIANTS, "ag-conf-narrow") if i % 3 == 0 else (SHIPPED, self.ag_id)
            ag = variant(self.data, ag_id) if bundle == VARIANTS else self.ag
            request = self.query(ag_id, ag)
            dataset = request["dataset"]
            catalogued = sorted(set(self.datasets[dataset]["dimensions"]) | {"month", "quarter", "year"})
            not_allowed = [d for d in catalogued if d not in self.allowed_dimensions(ag, dataset)]
            field = self.pick(("group_by", "group_by", "filters"))
            if field == "filters":
                columns = sorted(self.datasets[dataset]["dimensions"])
                not_allowed = [f for f in columns if f not in self.allowed_filters(ag, dataset)] + ["month"]
            bad = self.pick(not_allowed + list(UNKNOWN_DIMENSIONS))
            request[field] = [*request[field][: max(0, len(request[field]) - 1)], bad]
            self.rng.shuffle(request[field])
            self.add(bundle, QUERY, "forbidden-dimension", self.query_input(request), f"{field} {bad!r}")

    def forbidden_combination(self, n: int) -> None:
        """Pairs of dimensions each allowed on its own (the agreement may rule out some pairs), and
        the same dimension twice."""
        for i in range(n):
            bundle, ag_id = (SHIPPED, self.ag_id) if i % 2 else (VARIANTS, self.pick(_COMBINATION_VARIANTS))
            ag = self.ag if bundle == SHIPPED else variant(self.data, ag_id)
            request = self.query(ag_id, ag)
            allowed = self.allowed_dimensions(ag, request["dataset"])
            combinations = [c for c in ag.get("forbidden_combinations", []) if isinstance(c, list) and c]
            if i % 5 == 0:
                group_by = [self.pick(allowed)] * 2
            elif i % 5 in (1, 2) and combinations:
                group_by = [d for d in self.pick(combinations) if isinstance(d, str)]
                group_by += self.sample([d for d in allowed if d not in group_by], 0, 1)
                self.rng.shuffle(group_by)
            else:
                group_by = self.rng.sample(allowed, min(len(allowed), self.rng.randint(2, 3)))
            request["group_by"] = group_by
            self.add(
                bundle, QUERY, "forbidden-combination", self.query_input(request), f"{ag_id} {group_by!r}"
            )

    def too_many(self, n: int) -> None:
        for i in range(n):
            bundle, ag_id = (VARIANTS, "ag-conf-narrow") if i % 3 == 0 else (SHIPPED, self.ag_id)
            ag = variant(self.data, ag_id) if bundle == VARIANTS else self.ag
            request = self.query(ag_id, ag)
            catalogued = sorted(set(self.datasets[request["dataset"]]["dimensions"]) | {"month", "year"})
            allowed = self.allowed_dimensions(ag, request["dataset"])
            size = ag.get("max_group_by", 2) + self.rng.randint(1, 3)
            pool = allowed if len(allowed) >= size else catalogued
            request["group_by"] = self.rng.sample(pool, min(size, len(pool)))
            self.add(bundle, QUERY, "too-many-group-bys", self.query_input(request), f"{size} group-bys")
        for i in range(n):
            # Fine groupings over long month ranges: many cells, within or beyond max_cells.
            ag_id = self.pick(("ag-conf-few-cells", "ag-conf-narrow", "ag-conf-wide", self.ag_id))
            ag = variant(self.data, ag_id)
            request = self.query(ag_id, ag)
            allowed = self.allowed_dimensions(ag, request["dataset"])
            request["group_by"] = self.sample(allowed, 1, ag.get("max_group_by", 2))
            if "month" in allowed and "month" not in request["group_by"] and i % 2:
                request["group_by"][-1] = "month"
            request["months"] = {"first": f"{self.rng.randint(2000, 2026)}-01", "last": "2028-12"}
            self.add(VARIANTS, QUERY, "too-many-cells", self.query_input(request), ag_id)

    def links(self, n: int) -> None:
        for i in range(n):
            bundle, ag_id = (
                (VARIANTS, self.pick(("ag-conf-short-link", "ag-conf-zero-link")))
                if i % 3 == 0
                else (
                    SHIPPED,
                    self.ag_id,
                )
            )
            ag = variant(self.data, ag_id) if bundle == VARIANTS else self.ag
            request = self.query(ag_id, ag)
            pairs = [(a, b, days) for a, b, days in self.link_pairs(ag) if a == request["dataset"]]
            if not pairs:
                continue
            _, other, days = self.pick(pairs)
            side = self.pick(("days_before", "days_after"))
            odd = [x for x in NUMBER_FORMS if not 0 <= x <= days]
            beyond = self.pick((days + 1, days + 30, 365, 10**6, -1, days + 0.5, float(days + 1), *odd))
            link = {"dataset": other, "days_before": 0, "days_after": 0, "filters": []}
            link[side] = beyond
            request["link"] = link
            self.add(bundle, QUERY, "link-outside-window", self.query_input(request), f"{side}={beyond!r}")
        for i in range(n):
            bundle, ag_id = (VARIANTS, "ag-conf-no-linkage") if i % 3 == 0 else (SHIPPED, self.ag_id)
            ag = variant(self.data, ag_id) if bundle == VARIANTS else self.ag
            request = self.query(ag_id, ag)
            listed = {(a, b) for a, b, _ in self.link_pairs(ag)}
            unlisted = [
                b for b in [*self.datasets, "tax_returns", ""] if (request["dataset"], b) not in listed
            ]
            other = self.pick(unlisted)
            request["link"] = {"dataset": other, "days_before": 7, "days_after": 0, "filters": []}
            self.add(bundle, QUERY, "link-unlisted-pair", self.query_input(request), f"link to {other!r}")

    def wrong_callers(self, n: int) -> None:
        receivers = set(self.ag["receiving_agencies"])
        non_receivers = [a for a in self.agencies if a not in receivers]
        strangers = ["evil-corp", "", "HEALTH", "health ", "metro_police", "ünknown"]
        for _ in range(n):
            principal = self.principal(self.pick(non_receivers), "analyst")
            self.add(
                SHIPPED, QUERY, "wrong-agency", self.query_input(self.query(), principal), principal["agency"]
            )
            dataset, owner, version = self.owned()
            agency = self.pick([a for a in self.agencies if a != owner])
            doc = self.ingest_input(agency, "agent", dataset, version, self.pick(("ingest", "get_contract")))
            self.add(SHIPPED, INGEST, "wrong-agency", doc, f"{agency} pushes {dataset}")
        for agency in non_receivers:
            self.add(SHIPPED, LISTING, "wrong-agency", self.listing_input(agency, "analyst"), agency)
            self.add(VARIANTS, LISTING, "wrong-agency", self.listing_input(agency, "analyst"), agency)
        for _ in range(n):
            role = self.pick([*(r for r in ROLES if r != "analyst"), "Analyst", "", "root"])
            principal = self.principal(self.receiver(), role)
            self.add(SHIPPED, QUERY, "wrong-role", self.query_input(self.query(), principal), role)
            dataset, owner, version = self.owned()
            role = self.pick([*(r for r in ROLES if r != "agent"), "Agent"])
            doc = self.ingest_input(owner, role, dataset, version, self.pick(("ingest", "get_contract")))
            self.add(SHIPPED, INGEST, "wrong-role", doc, role)
            role = self.pick(("analyst", "agent", "admin", "Auditor", ""))
            action = self.pick(("audit.list", "audit.export") if role == "admin" else AUDIT_ACTIONS)
            doc = self.audit_input(self.pick(self.agencies), role, action)
            self.add(SHIPPED, AUDIT, "wrong-role", doc, role)
            role = self.pick(("agent", "auditor", "admin"))
            self.add(SHIPPED, LISTING, "wrong-role", self.listing_input(self.receiver(), role), role)
        for _ in range(n):
            agency = self.pick(strangers)
            principal = self.principal(agency, "analyst")
            self.add(SHIPPED, QUERY, "unknown-principal", self.query_input(self.query(), principal), agency)
            dataset, _, version = self.owned()
            doc = self.ingest_input(agency, "agent", dataset, version, "ingest")
            self.add(SHIPPED, INGEST, "unknown-principal", doc, agency)
            doc = self.audit_input(agency, self.pick(("auditor", "admin")), self.pick(AUDIT_ACTIONS))
            self.add(SHIPPED, AUDIT, "unknown-principal", doc, agency)
            self.add(SHIPPED, LISTING, "unknown-principal", self.listing_input(agency, "analyst"), agency)

    def documents(self) -> Iterator[tuple[str, Any]]:
        """A well-formed input for every rule, to be broken by malformed() and wrong_types()."""
        while True:
            yield QUERY, self.query_input(self.query())
            dataset, owner, version = self.owned()
            yield INGEST, self.ingest_input(owner, "agent", dataset, version, "ingest")
            yield AUDIT, self.audit_input(self.pick(self.agencies), "auditor", self.pick(AUDIT_ACTIONS))
            yield LISTING, self.listing_input(self.receiver(), "analyst")

    def number_forms(self) -> None:
        """Every awkward number where the policies read a number: link windows, contract versions."""
        for number in NUMBER_FORMS:
            for side in ("days_before", "days_after"):
                request = self.query()
                link = self.link(self.ag, request["dataset"])
                if link is None:
                    continue
                link[side] = number
                request["link"] = link
                self.add(
                    SHIPPED, QUERY, "wrong-types", self.query_input(request), f"link.{side} = {number!r}"
                )
            for action in ("ingest", "get_contract"):
                dataset, owner, _ = self.owned()
                doc = self.ingest_input(owner, "agent", dataset, number, action)
                self.add(SHIPPED, INGEST, "wrong-types", doc, f"{action} contract_version = {number!r}")

    def malformed(self, n: int) -> None:
        """Fields missing, containers of the wrong shape, whole documents that are not objects."""
        documents = self.documents()
        for _ in range(n):
            path, doc = next(documents)
            spots = list(_spots(doc))
            where, parent, key = self.pick(spots)
            how = self.pick(("delete", "delete", "empty", "wrap"))
            if how == "delete":
                del parent[key]
            elif how == "empty":
                parent[key] = type(parent[key])() if isinstance(parent[key], list | dict | str) else None
            else:
                parent[key] = [parent[key]]
            self.add(SHIPPED, path, "malformed", doc, f"{how} {where}")
        # Not None: the bindings read a None input as "no input at all", which regorus cannot be
        # given, and the gateway always sends an object.
        for path in POLICIES:
            for doc in ([], [{}], "query", 0, 1.5, True, {}, {"input": {}}):
                self.add(SHIPPED, path, "malformed", doc, f"input {doc!r}")

    def query_budget(self, n: int) -> None:
        """The use of an agreement's query budget (input.usage) under, at and over the budget,
        missing, or of the wrong type; and usage given under an agreement with no budget."""
        usages: list[Any] = [
            {"queries_this_period": used, "period": "2026-11", "renews_on": "2026-12-01"} for used in range(8)
        ]
        usages += [None, {}, {"queries_this_period": 5}, {"queries_this_period": 4.5, "period": 7}]
        usages += [{"queries_this_period": junk, "period": junk, "renews_on": "x"} for junk in JUNK[:12]]
        for i in range(n):
            ag_id = ("ag-conf-budget", "ag-conf-odd-budget", self.ag_id)[i % 3]
            ag = variant(self.data, ag_id)
            doc = self.query_input(
                self.query(ag_id, ag), self.principal(self.pick(ag["receiving_agencies"]), "analyst")
            )
            usage = copy.deepcopy(usages[i % len(usages)])
            if usage is not None:
                doc["usage"] = usage
            self.add(VARIANTS, QUERY, "query-budget", doc, f"{ag_id} usage = {usage!r:.60}")

    def audit_scope(self) -> None:
        """Audit decisions under every kind of scope (the variants' data.auditors)."""
        for agency in self.agencies:
            for action in (*AUDIT_ACTIONS, *AUDIT_ACTIONS):
                self.add(VARIANTS, AUDIT, "audit-scope", self.audit_input(agency, "auditor", action), agency)
            self.add(
                VARIANTS, AUDIT, "audit-scope", self.audit_input(agency, "admin", "audit.verify"), agency
            )

    def wrong_types(self, n: int) -> None:
        """Junk of every JSON type where a name, a list or a number belongs."""
        documents = self.documents()
        for i in range(n):
            path, doc = next(documents)
            where, parent, key = self.pick(list(_spots(doc)))
            junk = copy.deepcopy(JUNK[i % len(JUNK)])
            parent[key] = junk
            self.add(SHIPPED, path, "wrong-types", doc, f"{where} = {junk!r:.40}")


def _names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _day(date: str, offset: int) -> str:
    return (dt.date.fromisoformat(date) + dt.timedelta(days=offset)).isoformat()


def _spots(doc: Any, where: str = "input") -> Iterator[tuple[str, Any, Any]]:
    """(where, container, key) of every value in the document, nested ones included."""
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in list(items):
        here = f"{where}.{key}" if isinstance(doc, dict) else f"{where}[{key}]"
        yield here, doc, key
        yield from _spots(value, here)


def variant(data: dict[str, Any], agreement_id: str) -> dict[str, Any]:
    """The variant agreement, as variant_data adds it (or the template itself)."""
    agreement = copy.deepcopy(template_agreement(data)[1])
    if agreement_id in VARIANT_EDITS:
        VARIANT_EDITS[agreement_id](agreement, data)
    return agreement


def generate(data: dict[str, Any], seed: int = SEED, per_category: int = 40) -> list[Case]:
    """The conformance inputs for the shipped data: about 30 * per_category of them."""
    gen = _Generator(data, seed)
    gen.valid(per_category)
    gen.out_of_force(per_category // 2)
    gen.wrong_purpose(per_category)
    gen.forbidden_dimension(per_category)
    gen.forbidden_combination(per_category)
    gen.too_many(per_category)
    gen.links(per_category)
    gen.wrong_callers(per_category // 2)
    gen.malformed(per_category * 2)
    gen.wrong_types(per_category * 3)
    gen.number_forms()
    gen.query_budget(per_category)
    gen.audit_scope()
    return gen.cases
