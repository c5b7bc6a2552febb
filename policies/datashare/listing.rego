# What the calling analyst may query (DESIGN §7 ListDatasets): one entry per dataset of every
# active, in-force agreement its agency receives, with the terms a query will be held to. The
# entries come from the lib functions the query decision uses too (terms, in_force, sound_terms,
# provided), so what is listed is what a query may use (listing_test.rego checks it).
package datashare.listing

import rego.v1

import data.datashare.lib

default datasets := []

# Sorted by agreement id, then dataset: built from sorted [id, dataset] pairs rather than by
# sorting objects, whose ordering engines need not agree on.
datasets := [entry(pair[0], pair[1]) | some pair in pairs]

principal := input.principal if is_object(input.principal)

default principal := {}

agency := principal.agency if is_string(principal.agency)

pairs := sort({[id, ds] |
	input.action == "list_datasets"
	principal.role == "analyst"
	is_object(data.agencies[agency])
	today := lib.date(object.get(input, "now", ""))
	is_object(data.agreements)
	some id, ag in data.agreements
	is_object(ag)
	is_array(ag.receiving_agencies)
	agency in ag.receiving_agencies
	lib.usable(ag, today)
	is_array(ag.datasets)
	some ds in ag.datasets
	lib.provided(ag, ds)
})

entry(id, ds) := {
	"agreement_id": id,
	"agreement_title": object.get(ag, "title", ""),
	"purposes": sort({p | some p in object.get(ag, "purposes", []); is_object(data.purposes[p])}),
	"dataset": ds,
	"dimensions": sort(terms.dimensions),
	"measures": sort(terms.measures),
	"filters": sort(terms.filters),
	"k": terms.k,
	"round_to": terms.round_to,
	"max_cells": terms.max_cells,
	"max_group_by": terms.max_group_by,
	"forbidden_combinations": object.get(ag, "forbidden_combinations", []),
} if {
	ag := data.agreements[id]
	terms := lib.terms(ag, ds)
}
