# Whether an analyst may run an aggregate query under an agreement, and on what terms
# (DESIGN §8, §9). The decision is total: any input yields {allow, reasons}. Allow needs every
# condition to hold positively (`permitted`); the reasons say, in words an analyst can act on,
# which agreement, purpose, dataset, measure, dimension or filter is at fault.
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

agreement_part := {"agreement": {"id": agreement_id, "title": lib.text(ag, "title")}} if is_object(ag)

# What the gateway must enforce on the answer (DESIGN §9).
obligations := {
	"k": lib.k(ag),
	"round_to": lib.round_to(ag),
	"max_cells": lib.max_cells(ag),
	"max_group_by": lib.max_group_by(ag),
	"dimensions": sort(allowed_dimensions),
	"measures": sort(allowed_measures),
	"filters": sort(allowed_filters),
}

# --- the request, read defensively -----------------------------------------------------------

request := input.request if is_object(input.request)

default request := {}

action := lib.text(input, "action")

principal := object.get(input, "principal", {})

role := lib.text(principal, "role")

agency := lib.text(principal, "agency")

today := lib.date(object.get(input, "now", ""))

agreement_id := lib.text(request, "agreement_id")

purpose := lib.text(request, "purpose")

dataset := lib.text(request, "dataset")

ag := lib.agreement(agreement_id)

# Missing lists read as empty; anything but a list of names is a malformed request.
measures := request.measures if lib.names(request.measures)

default measures := []

group_by := request.group_by if lib.names(request.group_by)

default group_by := []

filters := request.filters if lib.names(request.filters)

default filters := []

link := request.link if is_object(request.link)

link_dataset := lib.text(link, "dataset")

link_filters := link.filters if lib.names(link.filters)

default link_filters := []

# Every dataset the query reads: the queried one and the linked one.
named_datasets contains dataset if dataset != ""

named_datasets contains link_dataset if link_dataset != ""

# --- what the catalogue and the agreement say, computed once per decision --------------------

columns := lib.columns(dataset)

groupable := lib.with_time(columns)

measure_labels := lib.measure_labels(dataset)

link_columns := lib.columns(link_dataset)

ag_datasets := lib.set_of(ag, "datasets")

ag_providers := lib.set_of(ag, "providing_agencies")

ag_measures := lib.set_of(ag, "measures")

ag_dimensions := lib.set_of(ag, "dimensions")

ag_filters := lib.set_of(ag, "filters")

# The same sets lib.allowed_* give the listing, from the sets already at hand.
allowed_measures := ag_measures & measure_labels

allowed_dimensions := ag_dimensions & groupable

allowed_filters := ag_filters & columns

max_group_by := lib.max_group_by(ag) if lib.at_least(lib.max_group_by(ag), 1)

status := lib.text(ag, "status")

ag_receivers := lib.set_of(ag, "receiving_agencies")

ag_purposes := lib.set_of(ag, "purposes")

term_problems := lib.term_problems(agreement_id, ag)

known_agency if lib.member(agency)

# Fields of the request that should be lists of names but are not.
malformed_lists := {field |
	some field in ["measures", "group_by", "filters"]
	not lib.names(object.get(request, field, []))
}

# Named datasets the catalogue does not hold.
uncatalogued := {ds | some ds in named_datasets; not lib.dataset(ds)}

link_entries := lib.linkage(ag, dataset, link_dataset)

link_window := lib.max_window(link_entries)

link_allowed_filters := lib.entries_filters(ag, link_entries) & link_columns

# --- allow: every condition, stated positively ------------------------------------------------

permitted if {
	count(reasons) == 0
	action == "query"
	role == "analyst"
	known_agency
	lib.in_force(ag, today)
	count(term_problems) == 0
	agency in ag_receivers
	purpose in ag_purposes
	lib.provided(ag, dataset)
	shape_ok
	count(measures) > 0
	every m in measures {
		m in allowed_measures
	}
	every d in group_by {
		d in allowed_dimensions
	}
	count({d | some d in group_by}) == count(group_by)
	count(group_by) <= max_group_by
	every f in filters {
		f in allowed_filters
	}
	link_permitted
}

shape_ok if {
	count(malformed_lists) == 0
	months_shape_ok
}

months_shape_ok if is_null(object.get(request, "months", null))

months_shape_ok if {
	is_string(request.months.first)
	is_string(request.months.last)
}

link_permitted if is_null(object.get(request, "link", null))

link_permitted if {
	lib.provided(ag, link_dataset)
	every side in ["days_before", "days_after"] {
		lib.whole_number(link[side])
		link[side] >= 0
		link[side] <= link_window
	}
	lib.names(object.get(link, "filters", []))
	every f in link_filters {
		f in link_allowed_filters
	}
}

# --- reasons ---------------------------------------------------------------------------------

reasons contains sprintf("action '%v' is not an aggregate query", [action]) if action != "query"

reasons contains sprintf("role '%v' may not run aggregate queries; only analysts may", [role]) if {
	role != "analyst"
}

reasons contains sprintf("agency '%v' is not a consortium member", [agency]) if not known_agency

reasons contains "the request time (now) is missing or not an RFC 3339 time" if not today

# request shape

reasons contains "request.agreement_id must name an agreement" if agreement_id == ""

reasons contains "request.purpose must name a purpose" if purpose == ""

reasons contains "request.dataset must name a dataset" if dataset == ""

reasons contains sprintf("request.%v must be a list of names", [field]) if some field in malformed_lists

reasons contains "the query names no measure" if count(measures) == 0

reasons contains sprintf("dimension '%v' is grouped by more than once", [d]) if {
	some i, d in group_by
	some j, e in group_by
	i < j
	d == e
}

reasons contains "request.months must be null or a range with first and last" if not months_shape_ok

reasons contains "request.link must be null or a link" if {
	not is_null(object.get(request, "link", null))
	not is_object(request.link)
}

reasons contains "request.link.dataset must name a dataset" if {
	is_object(link)
	link_dataset == ""
}

reasons contains sprintf("request.link.%v must be a whole number of days, 0 or more", [side]) if {
	is_object(link)
	some side in ["days_before", "days_after"]
	not non_negative_whole(object.get(link, side, null))
}

reasons contains "request.link.filters must be a list of names" if {
	is_object(link)
	not lib.names(object.get(link, "filters", []))
}

non_negative_whole(n) if {
	lib.whole_number(n)
	n >= 0
}

# the agreement

reasons contains sprintf("agreement '%v' does not exist", [agreement_id]) if {
	agreement_id != ""
	not ag
}

reasons contains sprintf("agreement %v is %v", [agreement_id, status]) if {
	status != "active"
	status != ""
}

reasons contains sprintf("agreement %v has no status", [agreement_id]) if status == ""

reasons contains sprintf("agreement %v is not in force until %v", [agreement_id, ag.valid_from]) if {
	is_string(ag.valid_from)
	today < ag.valid_from
}

reasons contains sprintf("agreement %v expired on %v", [agreement_id, ag.valid_until]) if {
	is_string(ag.valid_until)
	today > ag.valid_until
}

reasons contains sprintf("agreement %v has no valid dates", [agreement_id]) if {
	is_object(ag)
	not dated
}

dated if {
	is_string(ag.valid_from)
	is_string(ag.valid_until)
}

reasons contains problem if some problem in term_problems

reasons contains sprintf("agency '%v' is not a receiving party of %v", [agency, agreement_id]) if {
	not agency in ag_receivers
}

reasons contains sprintf("purpose '%v' is not a purpose of %v", [purpose, agreement_id]) if {
	not purpose in ag_purposes
	purpose != ""
}

# datasets

reasons contains sprintf("dataset '%v' is not in the catalogue", [ds]) if some ds in uncatalogued

reasons contains sprintf("dataset '%v' is not covered by %v", [ds, agreement_id]) if {
	some ds in named_datasets
	not ds in ag_datasets
	not ds in uncatalogued
}

reasons contains sprintf("dataset '%v' is owned by '%v', which is not a providing party of %v", [
	ds, lib.owner(ds), agreement_id,
]) if {
	some ds in named_datasets
	ds in ag_datasets
	not lib.owner(ds) in ag_providers
}

# measures

reasons contains sprintf("measure '%v' does not exist in dataset '%v'", [m, dataset]) if {
	some m in measures
	not m in measure_labels
	lib.dataset(dataset)
}

reasons contains sprintf("measure '%v' is not allowed by %v", [m, agreement_id]) if {
	some m in measures
	m in measure_labels
	not m in ag_measures
}

# grouping

reasons contains sprintf("dataset '%v' has no dimension '%v' to group by", [dataset, d]) if {
	some d in group_by
	not d in groupable
	lib.dataset(dataset)
}

reasons contains sprintf("grouping by '%v' is not allowed by %v", [d, agreement_id]) if {
	some d in group_by
	d in groupable
	not d in ag_dimensions
}

reasons contains sprintf("the query groups by %v dimensions; %v allows at most %v", [
	count(group_by), agreement_id, max_group_by,
]) if {
	count(group_by) > max_group_by
}

# filters

reasons contains sprintf("dataset '%v' has no dimension '%v' to filter on", [dataset, f]) if {
	some f in filters
	not f in columns
	lib.dataset(dataset)
}

reasons contains sprintf("filtering on '%v' is not allowed by %v", [f, agreement_id]) if {
	some f in filters
	f in columns
	not f in ag_filters
}

# the link

reasons contains sprintf("linking '%v' with '%v' is not allowed by %v", [dataset, link_dataset, agreement_id]) if {
	is_object(ag)
	link_dataset != ""
	not link_window
}

reasons contains sprintf("the link window of %v days %v the event exceeds the %v days %v allows", [
	link[side], word, link_window, agreement_id,
]) if {
	some side, word in {"days_before": "before", "days_after": "after"}
	lib.whole_number(link[side])
	link[side] > link_window
}

reasons contains sprintf("dataset '%v' has no dimension '%v' to filter on", [link_dataset, f]) if {
	some f in link_filters
	not f in link_columns
	lib.dataset(link_dataset)
}

reasons contains sprintf("link filter '%v' is not allowed by %v", [f, agreement_id]) if {
	link_window
	some f in link_filters
	f in link_columns
	not f in link_allowed_filters
}
