# Whether an analyst may run an aggregate query under an agreement, and on what terms
# (DESIGN §8, §9). The decision is total: any input yields {allow, reasons}.
#
# The policy is stated twice, on purpose: `permitted` says positively what an allowed query is,
# and `reasons` lists everything wrong with a denied one, in words an analyst can act on (the
# agreement, purpose, dataset, measure, dimension, filter or link at fault). Only `permitted`
# decides; `reasons` is evaluated only for a deny, because with regorus it costs about ten
# times the allow check. The two are held to agree by the tests (query_test.rego, and a
# property test over generated requests in tests/policies).
package datashare.query

import rego.v1

import data.datashare.lib

default decision := {"allow": false, "reasons": ["the query policy could not reach a decision"]}

decision := object.union(agreement_part, {"allow": true, "reasons": [], "obligations": obligations}) if {
	permitted
}

decision := object.union(agreement_part, {"allow": false, "reasons": denial_reasons}) if {
	not permitted
}

# A deny always carries at least one reason, even if no specific check fired.
denial_reasons := sort(reasons) if {
	count(reasons) > 0
} else := ["the query does not meet the terms of its agreement"]

default agreement_part := {}

agreement_part := {"agreement": {"id": agreement_id, "title": object.get(ag, "title", "")}} if ag

# What the gateway must enforce on the answer (DESIGN §9).
obligations := {
	"k": terms.k,
	"round_to": terms.round_to,
	"max_cells": terms.max_cells,
	"max_group_by": terms.max_group_by,
	"dimensions": sort(terms.dimensions),
	"measures": sort(terms.measures),
	"filters": sort(terms.filters),
}

# --- the request, read defensively; each value computed once ---------------------------------

request := input.request if is_object(input.request)

default request := {}

principal := input.principal if is_object(input.principal)

default principal := {}

action := text(input, "action")

role := text(principal, "role")

agency := text(principal, "agency")

today := lib.date(input.now)

agreement_id := text(request, "agreement_id")

purpose := text(request, "purpose")

dataset := text(request, "dataset")

text(obj, key) := value if {
	value := obj[key]
	is_string(value)
} else := ""

member if is_object(data.agencies[agency])

ag := data.agreements[agreement_id] if is_object(data.agreements[agreement_id])

spec := data.catalogue.datasets[dataset] if is_object(data.catalogue.datasets[dataset])

terms := lib.terms(ag, dataset)

# Missing lists read as empty; anything but a list of names is a malformed request.
measures := request.measures if lib.names(request.measures)

default measures := []

group_by := request.group_by if lib.names(request.group_by)

default group_by := []

filters := request.filters if lib.names(request.filters)

default filters := []

malformed_lists := {field |
	some field in ["measures", "group_by", "filters"]
	not lib.names(object.get(request, field, []))
}

months_ok if is_null(object.get(request, "months", null))

months_ok if {
	is_string(request.months.first)
	is_string(request.months.last)
}

link := request.link if is_object(request.link)

link_dataset := text(link, "dataset")

link_filters := link.filters if lib.names(link.filters)

default link_filters := []

link_spec := data.catalogue.datasets[link_dataset] if is_object(data.catalogue.datasets[link_dataset])

link_terms := lib.link_terms(ag, dataset, link_dataset)

# --- allow: every condition, stated positively, in one pass ---------------------------------

permitted if {
	input.action == "query"
	principal.role == "analyst"
	is_object(data.agencies[agency])
	lib.in_force(ag, today)
	lib.sound_terms(ag)
	is_array(ag.receiving_agencies)
	agency in ag.receiving_agencies
	is_array(ag.purposes)
	purpose in ag.purposes
	lib.provided(ag, dataset)
	t := terms
	lib.names(request.measures)
	count(request.measures) > 0
	every m in request.measures {
		m in t.measures
	}
	lib.names(object.get(request, "group_by", []))
	every d in group_by {
		d in t.dimensions
	}
	count(group_by) <= t.max_group_by
	count({d | some d in group_by}) == count(group_by)
	lib.names(object.get(request, "filters", []))
	every f in filters {
		f in t.filters
	}
	months_ok
	link_permitted
}

link_permitted if is_null(object.get(request, "link", null))

link_permitted if {
	lib.provided(ag, link_dataset)
	lt := link_terms
	every side in ["days_before", "days_after"] {
		whole_days(link[side])
		link[side] <= lt.max_days
	}
	lib.names(object.get(link, "filters", []))
	every f in link_filters {
		f in lt.filters
	}
}

# Only up to 2^53 - 1, where floats are exact: past an i64, regorus's round fails where OPA's
# does not, and past 2^53 the two print numbers differently (1e+16 against the digits).
whole_days(n) if {
	is_number(n)
	n >= 0
	n <= 9007199254740991
	round(n) == n
}

# --- reasons, for a deny --------------------------------------------------------------------

# --- reasons: who asks -----------------------------------------------------------------------

reasons contains sprintf("action '%v' is not an aggregate query", [action]) if action != "query"

reasons contains sprintf("role '%v' may not run aggregate queries; only analysts may", [role]) if {
	role != "analyst"
}

reasons contains sprintf("agency '%v' is not a consortium member", [agency]) if not member

reasons contains "the request time (now) is missing or not an RFC 3339 time" if not today

# --- reasons: the shape of the request -------------------------------------------------------

reasons contains "request.agreement_id must name an agreement" if agreement_id == ""

reasons contains "request.purpose must name a purpose" if purpose == ""

reasons contains "request.dataset must name a dataset" if dataset == ""

reasons contains sprintf("request.%v must be a list of names", [field]) if some field in malformed_lists

reasons contains "the query names no measure" if count(measures) == 0

reasons contains sprintf("dimension '%v' is grouped by more than once", [d]) if {
	count({d | some d in group_by}) != count(group_by)
	some i, d in group_by
	some j, e in group_by
	i < j
	d == e
}

reasons contains "request.months must be null or a range with first and last" if not months_ok

reasons contains "request.link must be null or a link" if {
	not is_null(object.get(request, "link", null))
	not link
}

reasons contains "request.link.dataset must name a dataset" if {
	link
	link_dataset == ""
}

reasons contains sprintf("request.link.%v must be a whole number of days, 0 or more", [side]) if {
	link
	some side in ["days_before", "days_after"]
	not whole_days(object.get(link, side, null))
}

reasons contains "request.link.filters must be a list of names" if {
	link
	not lib.names(object.get(link, "filters", []))
}

# --- reasons: the agreement ------------------------------------------------------------------

reasons contains sprintf("agreement '%v' does not exist", [agreement_id]) if {
	not ag
	agreement_id != ""
}

reasons contains sprintf("agreement %v is %v", [agreement_id, ag.status]) if {
	ag.status != "active"
}

reasons contains sprintf("agreement %v has no status", [agreement_id]) if {
	ag
	not ag.status
}

reasons contains sprintf("agreement %v is not in force until %v", [agreement_id, ag.valid_from]) if {
	today < ag.valid_from
}

reasons contains sprintf("agreement %v expired on %v", [agreement_id, ag.valid_until]) if {
	today > ag.valid_until
}

reasons contains sprintf("agreement %v has no valid dates", [agreement_id]) if {
	ag
	not dated
}

dated if {
	is_string(ag.valid_from)
	is_string(ag.valid_until)
}

reasons contains problem if some problem in lib.term_problems(agreement_id, ag)

reasons contains sprintf("agency '%v' is not a receiving party of %v", [agency, agreement_id]) if {
	ag
	not agency in object.get(ag, "receiving_agencies", [])
}

reasons contains sprintf("purpose '%v' is not a purpose of %v", [purpose, agreement_id]) if {
	ag
	not purpose in object.get(ag, "purposes", [])
	purpose != ""
}

# --- reasons: datasets -----------------------------------------------------------------------

reasons contains sprintf("dataset '%v' is not in the catalogue", [dataset]) if {
	not spec
	dataset != ""
}

reasons contains sprintf("dataset '%v' is not in the catalogue", [link_dataset]) if {
	not link_spec
	link_dataset != ""
}

reasons contains sprintf("dataset '%v' is not covered by %v", [ds, agreement_id]) if {
	ag
	some ds in named_datasets
	not ds in object.get(ag, "datasets", [])
}

reasons contains sprintf("dataset '%v' is owned by '%v', which is not a providing party of %v", [
	ds, owner, agreement_id,
]) if {
	ag
	some ds in named_datasets
	ds in object.get(ag, "datasets", [])
	owner := data.catalogue.datasets[ds].owner
	not owner in object.get(ag, "providing_agencies", [])
}

# The catalogued datasets the query reads: the queried one and the linked one.
named_datasets contains dataset if spec

named_datasets contains link_dataset if link_spec

# --- reasons: measures, grouping, filters (given the agreement and the dataset) --------------

reasons contains sprintf("measure '%v' does not exist in dataset '%v'", [m, dataset]) if {
	terms
	some m in measures
	not m in terms.measures
	not m in terms.labels
}

reasons contains sprintf("measure '%v' is not allowed by %v", [m, agreement_id]) if {
	terms
	some m in measures
	not m in terms.measures
	m in terms.labels
}

reasons contains sprintf("dataset '%v' has no dimension '%v' to group by", [dataset, d]) if {
	terms
	some d in group_by
	not d in terms.dimensions
	not d in terms.groupable
}

reasons contains sprintf("grouping by '%v' is not allowed by %v", [d, agreement_id]) if {
	terms
	some d in group_by
	not d in terms.dimensions
	d in terms.groupable
}

reasons contains sprintf("the query groups by %v dimensions; %v allows at most %v", [
	count(group_by), agreement_id, terms.max_group_by,
]) if {
	count(group_by) > terms.max_group_by
}

reasons contains sprintf("dataset '%v' has no dimension '%v' to filter on", [dataset, f]) if {
	terms
	some f in filters
	not f in terms.filters
	not f in terms.columns
}

reasons contains sprintf("filtering on '%v' is not allowed by %v", [f, agreement_id]) if {
	terms
	some f in filters
	not f in terms.filters
	f in terms.columns
}

# --- reasons: the link -----------------------------------------------------------------------

reasons contains sprintf("linking '%v' with '%v' is not allowed by %v", [dataset, link_dataset, agreement_id]) if {
	link_dataset != ""
	not link_terms
	ag
}

reasons contains sprintf("the link window of %v days %v the event exceeds the %v days %v allows", [
	link[side], word, link_terms.max_days, agreement_id,
]) if {
	some side, word in {"days_before": "before", "days_after": "after"}
	whole_days(link[side])
	link[side] > link_terms.max_days
}

reasons contains sprintf("dataset '%v' has no dimension '%v' to filter on", [link_dataset, f]) if {
	some f in link_filters
	not f in link_terms.filters
	not f in lib.columns(link_dataset)
	link_spec
}

reasons contains sprintf("link filter '%v' is not allowed by %v", [f, agreement_id]) if {
	some f in link_filters
	not f in link_terms.filters
	f in lib.columns(link_dataset)
	link_terms
}
