# Whether an analyst may run an aggregate query under an agreement, and on what terms
# (DESIGN §8, §9). The decision is total: any input yields {allow, reasons}.
#
# The policy is stated twice, on purpose: `granted` says positively what an allowed query is
# (and builds its obligations), and `reasons` lists everything wrong with a denied one, in words
# an analyst can act on (the agreement, purpose, dataset, measure, dimension, filter or link at
# fault). Only `granted` decides; `reasons` is evaluated only for a deny, because with regorus
# it costs several times the allow check. The two are held to agree by the tests
# (query_test.rego, and a property test over generated requests in tests/policies).
package datashare.query

import rego.v1

import data.datashare.lib

default decision := {"allow": false, "reasons": ["the query policy could not reach a decision"]}

decision := granted

decision := object.union(agreement_part, {"allow": false, "reasons": denial_reasons}) if {
	not granted
}

permitted if granted

# A deny always carries at least one reason, even if no specific check fired.
denial_reasons := sort(reasons) if {
	count(reasons) > 0
} else := ["the query does not meet the terms of its agreement"]

default agreement_part := {}

agreement_part := {"agreement": {"id": agreement_id, "title": object.get(ag, "title", "")}} if ag

# --- allow: every condition, stated positively, in one rule ---------------------------------
#
# The hot path (every query) is this one rule body over local variables. regorus charges a few
# microseconds for every rule it evaluates (and a function call is not memoised), so the
# conditions are not spread over helper rules: written as such, the same checks cost 2.5 times
# as much. The decision document it builds carries what the gateway must enforce on the answer
# (DESIGN §8, §9): the disclosure terms, what the query may use, the clamp bounds of the measures
# it sums or averages, the dominance rule and the zeros choice, and the agreement's noise
# settings and query budget (null when unset).
granted := {
	"allow": true,
	"reasons": [],
	"agreement": {"id": r.agreement_id, "title": object.get(a, "title", "")},
	"obligations": {
		"k": terms.k,
		"round_to": terms.round_to,
		"max_cells": terms.max_cells,
		"max_group_by": terms.max_group_by,
		"dimensions": sort({d | some d in a.dimensions; s.dimensions[d]} | {d |
			some d in a.dimensions
			d in {"month", "quarter", "year"} # lib.time_dimensions, spelled out on the hot path
		}),
		"measures": sort({m | some m in a.measures; m in {"subjects", "records"}} | {m |
			some m in a.measures
			parts := split(m, ":")
			count(parts) == 2
			parts[0] in {"sum", "mean"}
			s.measures[parts[1]]
		}),
		"filters": sort({f | some f in a.filters; s.dimensions[f]}),
		"clamp": {name: {"min": s.measures[name].min, "max": s.measures[name].max} |
			some m in r.measures
			parts := split(m, ":")
			count(parts) == 2
			name := parts[1]
		},
		# the (n,k) dominance rule for sums and means, and whether empty cells show as 0 (DESIGN
		# §9.4, §9.7); defaults spelled out here, as lib.term_rules would cost a package evaluation
		"dominance": object.get(a, "dominance", {"n": 2, "percent": 85}),
		"zeros": object.get(a, "zeros", "withhold"),
		"noise": object.get(a, "noise", null),
		"budget": object.get(a, "query_budget", null),
	},
} if {
	# who asks, and when
	input.action == "query"
	p := input.principal
	p.role == "analyst"
	is_string(p.agency)
	is_object(data.agencies[p.agency])
	is_string(input.now)
	regex.match(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T`, input.now)
	day := substring(input.now, 0, 10)

	# the agreement: active, in force today, sound terms, the caller's agency receives under it
	r := input.request
	is_object(r)
	a := data.agreements[r.agreement_id]
	is_object(a)
	a.status == "active"
	is_string(a.valid_from)
	is_string(a.valid_until)
	a.valid_from <= day
	day <= a.valid_until
	terms := lib.disclosure(a)
	lib.sound_disclosure(terms)
	is_array(a.receiving_agencies)
	p.agency in a.receiving_agencies

	# a catalogued purpose the agreement serves
	is_string(r.purpose)
	is_array(a.purposes)
	r.purpose in a.purposes
	is_object(data.purposes[r.purpose])

	# a catalogued dataset the agreement covers, from one of its providing agencies
	is_string(r.dataset)
	s := data.catalogue.datasets[r.dataset]
	is_object(s)
	lib.provided_by(a, r.dataset, s)

	# measures, grouping and filters the agreement allows and the dataset has
	lib.names(r.measures)
	count(r.measures) > 0
	is_array(a.measures)
	every m in r.measures {
		m in a.measures
		lib.measure_of(s, m)
	}
	group_by := object.get(r, "group_by", [])
	lib.names(group_by)
	is_array(a.dimensions)
	every d in group_by {
		d in a.dimensions
		lib.groupable_in(s, d)
	}
	count(group_by) <= terms.max_group_by
	count({d | some d in group_by}) == count(group_by)
	lib.no_forbidden_combination(a, group_by)
	filters := object.get(r, "filters", [])
	lib.names(filters)
	is_array(a.filters)
	every f in filters {
		f in a.filters
		is_object(s.dimensions[f])
	}
	lib.months_ok(object.get(r, "months", null))
	lib.link_ok(a, r.dataset, object.get(r, "link", null))

	# queries left in the agreement's budget this period (input.usage, from the gateway)
	lib.within_budget(object.get(a, "query_budget", null), object.get(input, "usage", null))
}

# --- the request, read defensively; each value computed once ---------------------------------

request := input.request if is_object(input.request)

default request := {}

principal := input.principal if is_object(input.principal)

default principal := {}

# Strings read as themselves and anything else as "", each written out as a rule with a default:
# a helper function would be called, uncached, at every use.
action := input.action if is_string(input.action)

default action := ""

role := principal.role if is_string(principal.role)

default role := ""

agency := principal.agency if is_string(principal.agency)

default agency := ""

# The calendar day of now, an RFC 3339 time ("YYYY-MM-DDT..."); undefined for anything else.
today := substring(input.now, 0, 10) if {
	is_string(input.now)
	regex.match(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T`, input.now)
}

agreement_id := request.agreement_id if is_string(request.agreement_id)

default agreement_id := ""

purpose := request.purpose if is_string(request.purpose)

default purpose := ""

dataset := request.dataset if is_string(request.dataset)

default dataset := ""

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

months_ok if lib.months_ok(object.get(request, "months", null))

link := request.link if is_object(request.link)

link_dataset := link.dataset if is_string(link.dataset)

default link_dataset := ""

link_filters := link.filters if lib.names(link.filters)

default link_filters := []

link_spec := data.catalogue.datasets[link_dataset] if is_object(data.catalogue.datasets[link_dataset])

link_terms := lib.link_terms(ag, dataset, link_dataset)

# --- helper rules, for the reasons ------------------------------------------------------

# The purpose is one the consortium has catalogued (data.purposes), not only a word the
# agreement happens to list.
catalogued_purpose if is_object(data.purposes[purpose])

# Dimensions an agreement rules out together: each entry of forbidden_combinations lists two
# or more dimensions that no single query may group by all at once.
combinations := object.get(ag, "forbidden_combinations", [])

# The forbidden combinations this query's grouping completes.
clashes contains combo if {
	is_array(combinations)
	some combo in combinations
	is_array(combo)
	every d in combo {
		d in group_by
	}
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
	not lib.whole_days(object.get(link, side, null))
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

# Status in words: a draft was never in force; suspended and revoked agreements were.
status_words := {
	"draft": "is a draft, not yet in force",
	"suspended": "is suspended",
	"revoked": "was revoked",
}

reasons contains sprintf("agreement %v %v", [agreement_id, object.get(status_words, ag.status, sprintf("has status '%v', not active", [ag.status]))]) if {
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

reasons contains sprintf("purpose '%v' is not in the consortium's purpose catalogue", [purpose]) if {
	purpose != ""
	not catalogued_purpose
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

reasons contains sprintf("dimension '%v' is not allowed with '%v' under %v", [combo[0], combo[1], agreement_id]) if {
	some combo in clashes
	count(combo) == 2
}

reasons contains sprintf("dimensions %v may not be grouped by together under %v", [
	concat(", ", [sprintf("'%v'", [d]) | some d in combo]), agreement_id,
]) if {
	some combo in clashes
	count(combo) > 2
}

reasons contains sprintf("agreement %v: forbidden_combinations must be a list of lists of dimensions", [agreement_id]) if {
	ag
	not is_array(combinations)
}

# --- reasons: the query budget ---------------------------------------------------------------

# The agreement's query_budget {queries, period}, and the use the gateway reports for the current
# period (input.usage: queries_this_period, and the period and renewal date in words).
budget := ag.query_budget if not is_null(object.get(ag, "query_budget", null))

budget_queries := budget.queries if {
	is_object(budget)
	is_number(budget.queries)
}

usage := input.usage if is_object(input.usage)

used := usage.queries_this_period if is_number(usage.queries_this_period)

usage_words if {
	is_string(usage.period)
	is_string(usage.renews_on)
}

reasons contains sprintf("agreement %v has used its %v queries for %v; the budget renews on %v", [
	agreement_id, budget_queries, usage.period, usage.renews_on,
]) if {
	used >= budget_queries
	usage_words
}

reasons contains sprintf("agreement %v has used its %v queries for this period", [agreement_id, budget_queries]) if {
	used >= budget_queries
	not usage_words
}

reasons contains sprintf("the use of the query budget of %v was not reported, so it cannot be checked", [agreement_id]) if {
	budget
	not used
}

reasons contains sprintf("agreement %v: query_budget must set a number of queries", [agreement_id]) if {
	budget
	not budget_queries
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
	lib.whole_days(link[side])
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
